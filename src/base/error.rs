//! The library's error: what kind of failure, the steps that led to it
//! (outermost first), and where known the path and the errno.
//!
//! One line of text, ready for a person: `"mounting /mnt/x: lowerdir
//! /l1: no such file or directory"`. Programs look at [`Error::kind`],
//! [`Error::errno`] and [`Error::path`] instead of parsing it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in the terms a caller decides on. The command-line tool
/// maps each to a mount(8) exit status (see docs/CLI.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request itself is wrong: a bad path, map or option. Nothing was
    /// done.
    InvalidInput,
    /// A system call failed unexpectedly.
    System,
    /// A bug in this crate.
    Bug,
    /// The [`Cancel`](crate::base::cancel::Cancel) flag was raised; what was half done
    /// was rolled back.
    Cancelled,
    /// The state directory or a record is unusable, or a lock could not be
    /// taken in time.
    State,
    /// The kernel refused a mount or an unmount, or what is mounted is not
    /// what was expected.
    Mount,
    /// A mount stayed busy until the time was up. [`Error::busy_mount`]
    /// says which.
    Busy,
}

#[derive(Debug)]
enum Cause {
    /// The text of a system error.
    Text(String),
    /// A mount that stayed busy.
    Busy(Box<BusyMount>),
}

/// An error from this crate: one line of text for a person, and its
/// [`kind`](Error::kind), [`errno`](Error::errno) and [`path`](Error::path)
/// for a program.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// Outermost first.
    steps: Vec<String>,
    /// What the steps led to, if not a step of ours.
    cause: Option<Cause>,
    errno: Option<i32>,
    path: Option<PathBuf>,
    /// An overlay was mounted but could not be identified afterwards.
    pub(crate) overlay_left: bool,
}

impl Error {
    /// A new error of `kind`, described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            steps: vec![message.into()],
            cause: None,
            errno: None,
            path: None,
            overlay_left: false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The errno of the system call that failed, if one did.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }

    /// The path the failure is about, where one is known.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The descriptions of the steps, outermost first, without the system
    /// error's text.
    pub fn steps(&self) -> &[String] {
        &self.steps
    }

    /// For [`ErrorKind::Busy`]: the id of the mount that stayed busy (as
    /// mountinfo shows it, not the unique one), to look up who holds it.
    pub fn busy_mount(&self) -> Option<u64> {
        match &self.cause {
            Some(Cause::Busy(busy)) => Some(busy.mount_id),
            _ => None,
        }
    }

    /// Describes the step that failed in terms of the step around it.
    pub(crate) fn context(mut self, step: impl Into<String>) -> Error {
        self.steps.insert(0, step.into());
        self
    }

    /// Like [`Error::context`], and the outer step decides the kind.
    pub(crate) fn context_as(mut self, kind: ErrorKind, step: impl Into<String>) -> Error {
        self.kind = kind;
        self.context(step)
    }

    /// The same failure (its errno and path) told as one new message.
    pub(crate) fn reworded(mut self, kind: ErrorKind, message: String) -> Error {
        self.kind = kind;
        self.steps = vec![message];
        self.cause = None;
        self
    }

    pub(crate) fn with_path(mut self, path: &Path) -> Error {
        self.path.get_or_insert_with(|| path.to_path_buf());
        self
    }

    /// A busy error, with who holds the mount (looked up by the caller
    /// once it gives up); any other error unchanged.
    pub(crate) fn held_by(mut self, name: impl FnOnce(u64) -> String) -> Error {
        if let Some(Cause::Busy(busy)) = &mut self.cause {
            busy.held_by = Some(name(busy.mount_id));
        }
        self
    }

    pub(crate) fn busy(busy: BusyMount) -> Error {
        Error {
            kind: ErrorKind::Busy,
            steps: Vec::new(),
            errno: Some(nix::errno::Errno::EBUSY as i32),
            path: Some(busy.what.clone()),
            cause: Some(Cause::Busy(Box::new(busy))),
            overlay_left: false,
        }
    }

    fn from_cause(cause: String, errno: Option<i32>) -> Error {
        Error {
            kind: ErrorKind::System,
            steps: Vec::new(),
            cause: Some(Cause::Text(cause)),
            errno,
            path: None,
            overlay_left: false,
        }
    }
}

/// An unmount that failed because the mount stayed busy, as an error a
/// caller can recognise (gc retries these, see [`Error::busy_mount`]).
/// Exit 32.
#[derive(Debug)]
pub struct BusyMount {
    /// The mount id as mountinfo shows it.
    pub mount_id: u64,
    /// The mountpoint, for the message.
    pub what: PathBuf,
    pub waited: std::time::Duration,
    /// Who holds it, when that was looked up (one walk over `/proc`, made
    /// once, by whoever gives up on the mount).
    pub held_by: Option<String>,
}

impl fmt::Display for BusyMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: busy after {}",
            self.what.display(),
            crate::base::duration::human(self.waited)
        )?;
        match &self.held_by {
            Some(held_by) => write!(f, ": held by {held_by}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BusyMount {}

/// Shorthand for `Error::new`: `return Err(fail(ErrorKind::Mount, "..."))`.
pub(crate) fn fail(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error::new(kind, message)
}

/// `return Err(...)` of a [`ErrorKind::System`] error, like anyhow's.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::base::error::fail($crate::base::error::ErrorKind::System, format!($($arg)*)))
    };
}
pub(crate) use bail;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cause = match &self.cause {
            Some(Cause::Text(text)) => Some(text.clone()),
            Some(Cause::Busy(busy)) => Some(busy.to_string()),
            None => None,
        };
        let mut parts = self
            .steps
            .iter()
            .map(String::as_str)
            .chain(cause.as_deref());
        if let Some(first) = parts.next() {
            f.write_str(first)?;
        }
        for part in parts {
            write!(f, ": {part}")?;
        }
        Ok(())
    }
}

// The whole story is in the one line `Display` writes; `source` stays empty
// so that reporters that walk sources do not print the cause twice.
impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::from_cause(e.to_string(), e.raw_os_error())
    }
}

impl From<nix::errno::Errno> for Error {
    fn from(e: nix::errno::Errno) -> Error {
        std::io::Error::from(e).into()
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Error {
        std::io::Error::from(e).into()
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::from_cause(e.to_string(), None)
    }
}

impl Error {
    /// An error with its cause's text, its errno and the path it concerns
    /// (for the `From` conversions of other rooms' errors).
    pub(crate) fn with_cause(cause: String, errno: Option<i32>, path: Option<PathBuf>) -> Error {
        let mut err = Error::from_cause(cause, errno);
        err.path = path;
        err
    }
}

/// Adds the description of a step to a failed result (anyhow's `context`,
/// for this crate's [`Error`]).
pub(crate) trait Context<T> {
    fn context(self, step: impl Into<String>) -> Result<T>;
    fn with_context(self, step: impl FnOnce() -> String) -> Result<T>;
    /// The step's description, and its kind decides the error's kind.
    fn fail_as(self, kind: ErrorKind, step: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, step: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(step))
    }

    fn with_context(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(step()))
    }

    fn fail_as(self, kind: ErrorKind, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context_as(kind, step()))
    }
}

/// An io error as a short phrase: "no such file or directory".
pub fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_outermost_first_and_the_kind_of_the_outermost_step() {
        let io = std::io::Error::from_raw_os_error(libc_enoent());
        let err: Error = Err::<(), _>(io)
            .with_context(|| "opening /l1".into())
            .fail_as(ErrorKind::InvalidInput, || "lowerdir /l1".into())
            .context("mounting /mnt")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mounting /mnt: lowerdir /l1: opening /l1: No such file or directory (os error 2)"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.errno(), Some(libc_enoent()));
        assert_eq!(err.steps().len(), 3);
    }

    fn libc_enoent() -> i32 {
        nix::errno::Errno::ENOENT as i32
    }
}
