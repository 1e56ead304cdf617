//! Named points in `mount` and `umount` where tests can crash, fail or pause
//! the tool, to prove that every instant is recoverable.
//!
//! `IDMAP_OVERLAY_TESTPOINT=NAME:ACTION` (several separated by `,`), where
//! ACTION is `kill` (SIGKILL ourselves: a crash), `fail` (return an error: the
//! in-process rollback), `panic` (a bug: unwinds through the rollback), or
//! `pause` (print `testpoint NAME pid=P ...` on stderr and wait for a line on
//! stdin), or `slow` (sleep 1 ms: a walk over a host far bigger than the
//! test's). Only a build with the `testpoints` feature (what `cargo test`
//! builds) honours it; any other build, and any program embedding the
//! library, ignores the variable.

use crate::base::cancel::Cancel;
use crate::base::error::Result;

#[cfg(feature = "testpoints")]
pub const ENV: &str = "IDMAP_OVERLAY_TESTPOINT";

/// Every test point, in the order `mount` and `umount` reach them. Tests
/// iterate over this list.
#[cfg(feature = "testpoints")]
pub const MOUNT_POINTS: &[&str] = &[
    "record-preparing",
    "userns-helper",
    "tree-open",
    "temp-mounted",
    "overlay-configured",
    "overlay-mounted",
    "temp-unmounted",
    "record-mounted",
];
#[cfg(feature = "testpoints")]
pub const UMOUNT_POINTS: &[&str] = &["record-unmounting", "overlay-unmounted"];
/// Points that are no step of a mount or umount, where a test makes
/// something fail or slow to see what follows: `in-use-proof` (the feature
/// probe finds the kernel's in-use and superblock answers wrong),
/// `walk-step` (each namespace or process a walk looks at),
/// `namespace-list` (the kernel's list of mount namespaces, Linux 6.12+).
#[cfg(feature = "testpoints")]
pub const FAULT_POINTS: &[&str] = &["in-use-proof", "walk-step", "namespace-list"];

/// Marks a step. Also where an interrupted operation (SIGINT, SIGTERM)
/// stops and rolls back: the steps are the points where that is clean.
pub fn hit(cancel: &Cancel, name: &str) -> Result<()> {
    hit_with(cancel, name, "")
}

fn check_cancelled(cancel: &Cancel, name: &str) -> Result<()> {
    match cancel.reason() {
        Some(reason) => Err(crate::base::error::fail(
            crate::base::error::ErrorKind::Cancelled,
            format!("{reason} before {name}; rolled back"),
        )),
        None => Ok(()),
    }
}

#[cfg(feature = "testpoints")]
pub fn hit_with(cancel: &Cancel, name: &str, detail: &str) -> Result<()> {
    check_cancelled(cancel, name)?;
    let Ok(spec) = std::env::var(ENV) else {
        return Ok(());
    };
    for entry in spec.split(',') {
        let Some((point, action)) = entry.split_once(':') else {
            continue;
        };
        if point != name {
            continue;
        }
        match action {
            "kill" => {
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
            "fail" => crate::base::error::bail!("test point {name}: forced failure"),
            "panic" => panic!("test point {name}: forced panic"),
            "slow" => std::thread::sleep(std::time::Duration::from_millis(1)),
            "pause" => {
                eprintln!("testpoint {name} pid={} {detail}", std::process::id());
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                check_cancelled(cancel, name)?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(feature = "testpoints"))]
pub fn hit_with(cancel: &Cancel, name: &str, _detail: &str) -> Result<()> {
    check_cancelled(cancel, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists the tests iterate over name every point the code marks,
    /// so a new step cannot go untested by the crash and rollback tests.
    #[test]
    fn the_lists_name_every_point_in_the_code() {
        let mut marked = Vec::new();
        let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
        let mut files = Vec::new();
        let mut dirs = vec![src.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if !path.ends_with("testpoint.rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for call in ["testpoint::hit(", "testpoint::hit_with("] {
                for (at, _) in text.match_indices(call) {
                    let rest = &text[at..];
                    let name = rest.split('"').nth(1).unwrap().to_string();
                    marked.push(name);
                }
            }
        }
        assert!(marked.len() >= 10, "{marked:?}");
        for name in &marked {
            assert!(
                MOUNT_POINTS.contains(&name.as_str())
                    || UMOUNT_POINTS.contains(&name.as_str())
                    || FAULT_POINTS.contains(&name.as_str()),
                "test point {name} is in no list"
            );
        }
        for name in MOUNT_POINTS.iter().chain(UMOUNT_POINTS).chain(FAULT_POINTS) {
            assert!(marked.iter().any(|m| m == name), "{name} is marked nowhere");
        }
    }
}
