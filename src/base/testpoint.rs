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
/// `namespace-list` (the kernel's list of mount namespaces, Linux 6.12+),
/// `mount-events` (fanotify's mount events, Linux 6.15+), `in-use-probe`
/// (`fail`: every directory probes in use).
#[cfg(feature = "testpoints")]
pub const FAULT_POINTS: &[&str] = &[
    "in-use-proof",
    "in-use-probe",
    "walk-step",
    "namespace-list",
    "mount-events",
];

/// Runs the test action asked for at the point `name` (see the module
/// doc); `detail` goes into the `pause` line. Nothing at all in a build
/// without the `testpoints` feature. Operations mark their steps with
/// [`checkpoint`](crate::base::cancel::checkpoint), which also looks at the
/// cancel flag; walks mark theirs with this alone.
#[cfg(feature = "testpoints")]
pub fn act(name: &str, detail: &str) -> Result<()> {
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
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(feature = "testpoints"))]
pub fn act(_name: &str, _detail: &str) -> Result<()> {
    Ok(())
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
                } else if !path.ends_with("testpoint.rs") && !path.ends_with("cancel.rs") {
                    files.push(path);
                }
            }
        }
        for path in files {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for call in ["checkpoint(", "checkpoint_with(", "testpoint::act("] {
                for (at, _) in text.match_indices(call) {
                    // A call naming its point: a string before the `)`.
                    let rest = &text[at..];
                    let args = &rest[..rest.find(')').unwrap_or(rest.len())];
                    if let Some(name) = args.split('"').nth(1) {
                        marked.push(name.to_string());
                    }
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
