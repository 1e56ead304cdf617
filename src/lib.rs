//! Overlayfs mounts whose lower layers are seen through an idmapped mount,
//! so a container in a user namespace sees its image layers owned by its
//! own ids, with crash-safe records under `/run` that find and clean up
//! anything a crash or a busy unmount left behind.
//!
//! This is the library the `idmap-overlay` command is built on; a container
//! runtime can call it directly. Every path it is given is resolved once,
//! safely, to a file descriptor, and only that descriptor is used after;
//! every mount it unmounts is first proven to be the one it made. It
//! installs no signal handler, changes no process-wide state (no chdir, no
//! umask) and may be called from several threads at once.
//!
//! The calls, each with an example where it is documented:
//!
//! | to | call |
//! |---|---|
//! | describe an overlay | [`MountRequest::new`], then set its fields |
//! | mount it | [`mount()`] → its [`Record`] |
//! | unmount it, by target or record id | [`umount()`] |
//! | read what is recorded | [`StateDir::open`], [`StateDir::records`] |
//! | find leaks | [`gc::gather`] then [`findings::classify`] |
//! | clean them up | [`gc::collect`] |
//! | know what this kernel can do | [`features::probe`] |
//! | stop a call in progress | [`Cancel`] |
//!
//! Errors are [`Error`]s: a [`ErrorKind`], the steps that led to it, and the
//! path and errno where known.
//!
//! ```no_run
//! use idmap_overlay::{IdRange, Maps, MountRequest, StateDir};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! # fn main() -> idmap_overlay::Result<()> {
//! let shift = vec![IdRange { container: 0, host: 100_000, size: 65_536 }];
//! let mut request = MountRequest::new(
//!     "/run/c1/rootfs",
//!     ["/var/lib/layers/2", "/var/lib/layers/1"],
//!     Maps::Ranges { uid: shift.clone(), gid: shift },
//! );
//! request.upperdir = Some("/var/lib/c1/upper".into());
//! request.workdir = Some("/var/lib/c1/work".into());
//! let state_root = Path::new(idmap_overlay::state::DEFAULT_DIR);
//! let record = idmap_overlay::mount(&request, state_root)?;
//! println!("mounted {} as {}", record.target.display(), record.id);
//!
//! let state = StateDir::open(state_root)?;
//! idmap_overlay::umount(&state, &record.id, Duration::from_secs(5), false)?;
//! # Ok(())
//! # }
//! ```

pub mod atomic_write;
mod cancel;
mod error;
pub mod features;
pub mod findings;
pub mod gc;
mod holders;
pub mod idmap;
pub mod mount;
pub mod mountinfo;
pub mod namespaces;
pub mod overlay;
mod proof;
mod resolve;
pub mod state;
mod strategy;
mod sys;
// The test points are the tests' to name (their lists are what the tests
// iterate over); nothing else sees them.
#[cfg(feature = "testpoints")]
#[doc(hidden)]
pub mod testpoint;
#[cfg(not(feature = "testpoints"))]
mod testpoint;
pub mod umount;
mod userns;

pub use cancel::Cancel;
pub use error::{Error, ErrorKind, Result};
pub use idmap::IdRange;
pub use mount::{Maps, MountRequest, mount};
pub use overlay::{Strategy, VfsFlags};
pub use state::{Record, RecordState, StateDir};
pub use umount::umount;

use std::time::Duration;

/// An io error as a short phrase: "no such file or directory".
pub fn describe_io(err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => err.to_string(),
    }
}

/// A duration as people write it: `300ms`, `2.5s`, `1m30s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Parses `2.5s`, `300ms`, `1m`, `1m30s`, `2h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let not_a_duration = || format!("{text:?} is not a duration (e.g. 2.5s, 300ms, 1m)");
    let mut rest = text;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return Err(not_a_duration());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| not_a_duration())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        seconds += match unit {
            "" if after.is_empty() && rest.len() == text.len() => value,
            "s" => value,
            "ms" => value / 1000.0,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ));
            }
        };
        rest = after;
    }
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        for (d, text) in [
            (Duration::ZERO, "0ms"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m30s"),
        ] {
            assert_eq!(human_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
        for bad in ["", "s", "-1s", "1.2.3s", "5 parsecs", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
