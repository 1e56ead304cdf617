//! Who holds a mount: the processes whose root, working directory or open
//! files lie on it, found in one walk over `/proc`. Only to name them for a
//! person (an unmount that gave up, a copy in a container): whether a mount
//! is busy or an overlay alive is the kernel's answer, never this walk's.

use crate::base::cancel::Deadline;
use crate::kernel::mount_table::Device;
use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// How a process holds a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    Root,
    Cwd,
    Fd(u32),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Root => f.write_str("root"),
            Via::Cwd => f.write_str("cwd"),
            Via::Fd(n) => write!(f, "fd {n}"),
        }
    }
}

/// A process that holds a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`, raw (lossy UTF-8): whoever shows it escapes it.
    pub command: String,
    /// Its mount namespace (nsfs inode), when it could be read.
    pub ns: Option<u64>,
    pub via: Via,
    /// The mount the held file lies on, and its device.
    pub mount_id: u64,
    pub device: Device,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} ({}) through its {}",
            self.pid, self.command, self.via
        )
    }
}

/// What to look for: files on any of `mount_ids` (as statx reports them:
/// ids are global, the same in every namespace), or on any of `devices`.
/// A directory on an overlay always shows the overlay's device; another
/// file shows it when the layers share a filesystem or `xino` maps their
/// inodes (the common case), else a device of its layer's: such a file is
/// found only by the mount id of a copy it was opened through. A file
/// whose copy was unmounted since (`umount -l`) has no mount to be found
/// by: only its device names it.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub mount_ids: HashSet<u64>,
    pub devices: HashSet<Device>,
}

impl Targets {
    /// The processes holding the mount `mount_id`.
    pub fn mount(mount_id: u64) -> Targets {
        Targets {
            mount_ids: [mount_id].into(),
            devices: HashSet::new(),
        }
    }

    /// The mount and device of what `path` (a `/proc` magic link) leads
    /// to, when it is one of the targets.
    fn matches(&self, path: &Path) -> Option<(u64, Device)> {
        let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID).ok()?;
        let device = Device::from((st.stx_dev_major, st.stx_dev_minor));
        (self.mount_ids.contains(&st.stx_mnt_id) || self.devices.contains(&device))
            .then_some((st.stx_mnt_id, device))
    }
}

/// What a walk found, and whether it saw every process.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub holders: Vec<Holder>,
    /// False when the deadline or a cancel stopped the walk early.
    pub complete: bool,
}

/// Walks `proc_root` (`/proc`, or a fixture) for processes holding
/// `targets`, leaving out `skip_pid` (ourselves), until `deadline`.
pub fn find(
    proc_root: &Path,
    targets: &Targets,
    skip_pid: Option<u32>,
    deadline: &Deadline,
) -> Found {
    let mut found = Found::default();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return found;
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut dir = PathBuf::from(proc_root);
    for pid in pids {
        let _ = crate::base::testpoint::act("walk-step", "");
        if deadline.is_over() {
            return found;
        }
        if Some(pid) == skip_pid {
            continue;
        }
        dir.push(pid.to_string());
        let mut held = Vec::new();
        for (link, via) in [("root", Via::Root), ("cwd", Via::Cwd)] {
            if let Some(on) = targets.matches(&dir.join(link)) {
                held.push((via, on));
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                let Some(n) = fd.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some(on) = targets.matches(&fd.path()) {
                    held.push((Via::Fd(n), on));
                }
            }
        }
        if !held.is_empty() {
            let command = read_command(&dir).unwrap_or_else(|| "?".into());
            let ns = namespace_of(&dir);
            found
                .holders
                .extend(held.into_iter().map(|(via, (mount_id, device))| Holder {
                    pid,
                    command: command.clone(),
                    ns,
                    via,
                    mount_id,
                    device,
                }));
        }
        dir.pop();
    }
    found.complete = true;
    found
}

/// The processes in any namespace holding the mount `mount_id`, except us.
pub fn of_mount(mount_id: u64, deadline: &Deadline) -> Found {
    find(
        Path::new("/proc"),
        &Targets::mount(mount_id),
        Some(std::process::id()),
        deadline,
    )
}

/// `/proc/PID/comm` without its newline.
pub fn read_command(proc_dir: &Path) -> Option<String> {
    let mut raw = std::fs::read(proc_dir.join("comm")).ok()?;
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// The nsfs inode of a process's mount namespace, read from the link's
/// text (`mnt:[4026531841]`): the kernel formats it without opening the
/// namespace.
pub fn namespace_of(proc_dir: &Path) -> Option<u64> {
    let text = std::fs::read_link(proc_dir.join("ns/mnt")).ok()?;
    text.to_str()?
        .strip_prefix("mnt:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// How many of a long list a message names before "and N more".
pub const NAMED: usize = 5;

/// "pid 12 (sh) through its cwd, pid 40 (cat) through its fd 3 in mount
/// namespace 4026532321" (the namespace named when it is not ours: a file
/// opened here stays open in the namespace its process moved to), at most
/// [`NAMED`] of them and then how many more.
pub fn describe(found: &Found) -> String {
    if found.holders.is_empty() {
        return if found.complete {
            "no process found holding it (a kernel reference, or a process that just exited)".into()
        } else {
            "no process found before the time was up".into()
        };
    }
    let own = namespace_of(Path::new("/proc/self"));
    let mut text = found
        .holders
        .iter()
        .take(NAMED)
        .map(|h| match h.ns {
            Some(ns) if own.is_some_and(|own| own != ns) => {
                format!("{h} in mount namespace {ns}")
            }
            _ => h.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    if found.holders.len() > NAMED {
        text.push_str(&format!(" and {} more", found.holders.len() - NAMED));
    }
    if !found.complete {
        text.push_str(" (not every process was looked at before the time was up)");
    }
    text
}
