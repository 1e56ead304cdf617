//! Who keeps a mount busy: the processes whose working directory, root or
//! open files are on it, for the message of an unmount that gave up.

use std::path::Path;

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

/// The mount id (as mountinfo shows it) of what `path` names, following
/// symlinks. For /proc entries of other processes only: it is how the
/// kernel shows their cwd, root and fds.
fn mount_id_of_proc_link(path: &Path) -> Option<u64> {
    use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
    statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID)
        .ok()
        .map(|st| st.stx_mnt_id)
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
        let on_mount = |p: &Path| mount_id_of_proc_link(p) == Some(mount_id);
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
