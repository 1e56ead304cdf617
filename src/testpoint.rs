//! Named points in `mount` and `umount` where tests can crash, fail or pause
//! the tool, to prove that every instant is recoverable.
//!
//! `IDMAP_OVERLAY_TESTPOINT=NAME:ACTION` (several separated by `,`), where
//! ACTION is `kill` (SIGKILL ourselves: a crash), `fail` (return an error: the
//! in-process rollback), `panic` (a bug: unwinds through the rollback), or
//! `pause` (print `testpoint NAME pid=P ...` on stderr and wait for a line on
//! stdin). Only a build with the `testpoints` feature (what `cargo test`
//! builds) honours it; any other build, and any program embedding the
//! library, ignores the variable.

use crate::Cancel;
use crate::error::Result;

pub const ENV: &str = "IDMAP_OVERLAY_TESTPOINT";

/// Every test point, in the order `mount` and `umount` reach them. Tests
/// iterate over this list.
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
pub const UMOUNT_POINTS: &[&str] = &["record-unmounting", "overlay-unmounted"];

/// Marks a step. Also where an interrupted operation (SIGINT, SIGTERM)
/// stops and rolls back: the steps are the points where that is clean.
pub fn hit(cancel: &Cancel, name: &str) -> Result<()> {
    hit_with(cancel, name, "")
}

fn check_cancelled(cancel: &Cancel, name: &str) -> Result<()> {
    match cancel.reason() {
        Some(reason) => Err(crate::error::fail(
            crate::ErrorKind::Cancelled,
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
            "fail" => crate::error::bail!("test point {name}: forced failure"),
            "panic" => panic!("test point {name}: forced panic"),
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
