//! The user namespace that carries an id map, and the helper child that
//! creates it. The helper is killed and reaped on every path, by `Drop`.

use crate::base::cancel::checkpoint_with;
use crate::base::error::ErrorKind;
use crate::base::error::{Context, Result, bail, fail};
use crate::base::idmap::{self, IdRange};
use crate::kernel::sys;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::fs::{self, File};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running helper child; killed (SIGKILL) and reaped when dropped.
struct Helper {
    pid: Pid,
    /// Set once waitpid has collected it: its pid may then be reused.
    reaped: bool,
}

impl Drop for Helper {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

impl Helper {
    fn spawn(new_userns: bool, join: Option<std::os::fd::BorrowedFd<'_>>) -> Result<Helper> {
        let pid = sys::spawn_namespace_helper(new_userns, join)
            .context("starting the namespace helper (clone)")?;
        log::debug!("namespace helper pid {pid}");
        Ok(Helper { pid, reaped: false })
    }

    /// The helper's exit code if it has already died.
    fn exited(&mut self) -> Option<i32> {
        match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                self.reaped = true;
                Some(code)
            }
            Ok(WaitStatus::Signaled(..)) => {
                self.reaped = true;
                Some(-1)
            }
            _ => None,
        }
    }

    fn proc_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{name}", self.pid))
    }
}

/// Creates a user namespace with these maps (uid_map lines `C H S`: on-disk
/// C shows as H through an idmapped mount) and returns an fd that keeps it
/// alive. The helper is gone when this returns.
pub fn create(
    uidmap: &[IdRange],
    gidmap: &[IdRange],
    cancel: &crate::base::cancel::Cancel,
) -> Result<OwnedFd> {
    let helper = Helper::spawn(true, None)?;
    // One write per file: the kernel takes a map in a single write(2).
    fs::write(helper.proc_path("uid_map"), idmap::to_proc_lines(uidmap))
        .context("writing the uid map of the helper namespace")?;
    fs::write(helper.proc_path("setgroups"), "deny")
        .context("writing setgroups of the helper namespace")?;
    fs::write(helper.proc_path("gid_map"), idmap::to_proc_lines(gidmap))
        .context("writing the gid map of the helper namespace")?;
    checkpoint_with(cancel, "userns-helper", &format!("helper={}", helper.pid))?;
    let ns =
        File::open(helper.proc_path("ns/user")).context("opening the helper's user namespace")?;
    drop(helper);
    Ok(ns.into())
}

/// Opens an existing user namespace (`/proc/PID/ns/user` or a bind mount of
/// one) and reads its maps.
pub fn open_existing(path: &Path) -> Result<(OwnedFd, Vec<IdRange>, Vec<IdRange>)> {
    let ns = crate::kernel::resolve::open_namespace_file(path).map_err(|e| {
        fail(
            ErrorKind::System,
            format!(
                "opening user namespace {}: {}",
                path.display(),
                e.describe(path)
            ),
        )
        .with_path(path)
    })?;
    match sys::namespace_type(ns.as_fd()) {
        Ok(t) if t == CloneFlags::CLONE_NEWUSER.bits() => {}
        _ => bail!("{} is not a user namespace", path.display()),
    }
    let (uid, gid) = read_maps(&ns)
        .with_context(|| format!("reading the id maps of user namespace {}", path.display()))?;
    // The initial user namespace maps every id to itself: an idmapped
    // mount through it would shift nothing (and its 4294967295-id range is
    // more than a map can carry).
    let identity = [IdRange {
        container: 0,
        host: 0,
        size: u32::MAX,
    }];
    if uid == identity && gid == identity {
        bail!(
            "{} is the initial user namespace (every id maps to itself): nothing would be shifted; give a container's, e.g. /proc/PID/ns/user",
            path.display()
        );
    }
    Ok((ns, uid, gid))
}

/// Reads a namespace's maps through a helper that joins it: reading
/// `/proc/<helper>/uid_map` from here shows them from our side.
fn read_maps(ns: &OwnedFd) -> Result<(Vec<IdRange>, Vec<IdRange>)> {
    let target = fs::metadata(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(ns)
    ))?;
    let mut helper = Helper::spawn(false, Some(ns.as_fd()))?;
    // Wait until the helper is inside the namespace (or has failed to enter).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(code) = helper.exited() {
            bail!("the helper could not join the namespace (exit {code})");
        }
        let joined = fs::metadata(helper.proc_path("ns/user"))?;
        if joined.ino() == target.ino() && joined.dev() == target.dev() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the helper did not join the namespace within 5s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let parse = |name: &str| -> Result<Vec<IdRange>> {
        let text = fs::read_to_string(helper.proc_path(name))?;
        let map = idmap::from_proc_lines(&text).map_err(|e| fail(ErrorKind::System, e))?;
        if map.is_empty() {
            bail!("the namespace has no {name} written yet");
        }
        Ok(map)
    };
    Ok((parse("uid_map")?, parse("gid_map")?))
}
