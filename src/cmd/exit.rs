//! Exit codes (the mount(8) convention, see docs/CLI.md) and the error type that
//! carries one through an `anyhow` chain.

use idmap_overlay::ErrorKind;
use std::fmt;

/// What the process exit status means. Scripts rely on these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success = 0,
    /// Incorrect invocation or insufficient permissions.
    Usage = 1,
    /// System error: out of memory, cannot fork, a syscall failed unexpectedly.
    System = 2,
    /// Not an error: `inspect --leaks` found leaks (findmnt and diff say
    /// "found" with 1, our usage error). 3 is no mount(8) code, and as
    /// their bits (1|2) it would be a usage and a system error at once,
    /// which no run of ours reports: each exits with exactly one code.
    LeaksFound = 3,
    /// Internal bug.
    Bug = 4,
    /// Interrupted by a signal (SIGINT, SIGTERM).
    Interrupted = 8,
    /// Problem with the state directory or a record.
    State = 16,
    /// Mount or unmount failure.
    Mount = 32,
    /// Some things were done, some failed (gc).
    Partial = 64,
}

impl Code {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// An error that decides the exit status. Attach it with [`Coded::code`] or
/// build one with [`fail`]; `main` looks for the outermost one in the chain
/// and falls back to [`Code::System`].
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A leaf error with an exit code: `return Err(fail(Code::Usage, "..."))`.
pub fn fail(code: Code, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// Incorrect invocation (exit 1), told in one line.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    fail(Code::Usage, message)
}

/// Adds a step description that also decides the exit code.
pub trait Coded<T> {
    fn code(self, code: Code, message: impl FnOnce() -> String) -> anyhow::Result<T>;
}

impl<T, E> Coded<T> for Result<T, E>
where
    E: Into<anyhow::Error>,
{
    fn code(self, code: Code, message: impl FnOnce() -> String) -> anyhow::Result<T> {
        self.map_err(|e| {
            e.into().context(Failure {
                code,
                message: message(),
            })
        })
    }
}

/// The exit code an error chain asks for.
pub fn code_of(err: &anyhow::Error) -> Code {
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return failure.code;
    }
    if let Some(err) = err.downcast_ref::<idmap_overlay::Error>() {
        return code_of_kind(err.kind());
    }
    Code::System
}

/// The exit code for a kind of library error.
pub fn code_of_kind(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput => Code::Usage,
        ErrorKind::System => Code::System,
        ErrorKind::Bug => Code::Bug,
        ErrorKind::Cancelled => Code::Interrupted,
        ErrorKind::State => Code::State,
        ErrorKind::Mount | ErrorKind::Busy => Code::Mount,
        _ => Code::System,
    }
}
