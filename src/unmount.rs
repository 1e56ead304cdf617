//! Unmounting with EBUSY retries, and finding who keeps a mount busy.
//!
//! We retry instead of detaching (MNT_DETACH): a detached mount lives on,
//! invisible to the admin (containerd#12139 chose retries for that reason).

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
use std::path::Path;
use std::time::{Duration, Instant};

/// Unmounts `path` (not recursively, not detached), retrying while it is
/// EBUSY until `timeout` has passed. EINVAL means nothing is mounted there.
pub fn retry_unmount(path: &Path, timeout: Duration) -> Result<(), Errno> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match umount2(path, MntFlags::empty()) {
            Err(Errno::EBUSY) if Instant::now() < deadline => {
                log::debug!("{} is busy, retrying in {pause:?}", path.display());
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The mount id (as mountinfo shows it) of the mount `path` lies on.
pub fn mount_id_of(path: &Path) -> std::io::Result<u64> {
    let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

/// The mount id of what sits at `path` itself, not following a symlink
/// there: what `umount2(path)` would act on.
pub fn mount_id_at(path: &Path) -> std::io::Result<u64> {
    let st = statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

/// The unique 64-bit mount id (`STATX_MNT_ID_UNIQUE`, Linux 6.8+), if known.
pub fn unique_mount_id_of(path: &Path) -> Option<u64> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let st = statx(
        CWD,
        path,
        AtFlags::empty(),
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )
    .ok()?;
    (st.stx_mask & STATX_MNT_ID_UNIQUE != 0).then_some(st.stx_mnt_id)
}

/// A process that keeps a mount busy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// `cwd`, `root`, or `fd N`.
    pub via: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}) through its {}",
            self.pid, self.command, self.via
        )
    }
}

/// Scans `/proc/*/{cwd,root,fd/*}` for anything on the mount `mount_id`.
/// Compares mount ids, not paths or devices: an overlay's files may report
/// the device of the layer they come from.
pub fn holders(mount_id: u64) -> Vec<Holder> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = entry.path();
        let on_mount = |p: &Path| mount_id_of(p).is_ok_and(|id| id == mount_id);
        let mut via = Vec::new();
        for link in ["cwd", "root"] {
            if on_mount(&dir.join(link)) {
                via.push(link.to_string());
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if on_mount(&fd.path()) {
                    via.push(format!("fd {}", fd.file_name().to_string_lossy()));
                }
            }
        }
        if via.is_empty() {
            continue;
        }
        let command = std::fs::read_to_string(dir.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        for v in via {
            found.push(Holder {
                pid,
                command: command.clone(),
                via: v,
            });
        }
    }
    found
}

/// "pid 12 (sh) through its cwd, pid 40 (cat) through its fd 3".
pub fn describe_holders(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "no process found holding it (a kernel reference, or a process that just exited)"
            .into();
    }
    holders
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
