//! Mount namespaces: which ones exist, which processes are in them, and
//! entering one. Every listing stops at its [`Deadline`]: any user can make
//! tens of thousands of namespaces, and a listing is only ever made to name
//! things for a person, never to decide.

use crate::base::cancel::Deadline;
use crate::base::error::{Context, ErrorKind, Result, fail};
use crate::kernel::holders::namespace_of;
use crate::kernel::sys;
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Moves the calling thread into the mount namespace at `path` (setns(2)
/// with CLONE_NEWNS): `/proc/PID/ns/mnt` or a bind mount of one, opened
/// safely. A process must still be single-threaded to do this.
pub fn enter_mount_namespace(path: &Path) -> Result<()> {
    let file = crate::kernel::resolve::open_namespace_file(path).map_err(|e| {
        fail(
            ErrorKind::InvalidInput,
            format!("opening the namespace: {}", e.describe(path)),
        )
        .with_path(path)
    })?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNS)
        .fail_as(ErrorKind::Mount, || "entering the mount namespace".into())
}

/// The nsfs inode of the calling thread's mount namespace
/// (`/proc/thread-self/ns/mnt`: with threads, `self` is the main thread's).
pub fn current_namespace() -> io::Result<u64> {
    namespace_id(Path::new("/proc/thread-self/ns/mnt"))
}

/// The nsfs inode of a namespace file such as `/proc/PID/ns/mnt` or a bind
/// mount of one (`stat`, following the link: the link text is not compared).
pub fn namespace_id(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// A listing, and whether it got to the end before its deadline.
#[derive(Debug, Clone, Default)]
pub struct Listed<T> {
    pub items: T,
    pub complete: bool,
}

/// Every mount namespace the kernel lets us see, as (nsfs inode, 64-bit
/// id), from the kernel's own list (`NS_MNT_GET_PREV`/`NEXT`, Linux 6.12+),
/// which has the namespaces no process is in too (kept by a bind-mounted
/// namespace file or an open fd). An error when the kernel has no list.
pub fn kernel_list(deadline: &Deadline) -> io::Result<Listed<Vec<(u64, u64)>>> {
    // Tests take the list away, to see the walk of older kernels here.
    if crate::base::testpoint::act("namespace-list", "").is_err() {
        return Err(io::Error::from(nix::errno::Errno::ENOTTY));
    }
    let own = std::fs::File::open("/proc/thread-self/ns/mnt")?;
    let inode = |fd: BorrowedFd<'_>| nix::sys::stat::fstat(fd).map(|st| st.st_ino);
    let mut listed = vec![(
        inode(own.as_fd())?,
        sys::mount_namespace_info_id(own.as_fd())?,
    )];
    for backwards in [true, false] {
        let mut here: Option<OwnedFd> = None;
        loop {
            let _ = crate::base::testpoint::act("walk-step", "");
            if deadline.is_over() {
                return Ok(Listed {
                    items: listed,
                    complete: false,
                });
            }
            let from = here.as_ref().map_or(own.as_fd(), |fd| fd.as_fd());
            match sys::neighbour_mount_namespace(from, backwards) {
                Ok((next, id)) => {
                    listed.push((inode(next.as_fd())?, id));
                    here = Some(next);
                }
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Listed {
        items: listed,
        complete: true,
    })
}

/// The processes under `proc_root` by mount namespace (nsfs inode), each
/// list ascending; only the namespaces in `wanted` when it is given.
pub fn members(
    proc_root: &Path,
    wanted: Option<&HashSet<u64>>,
    deadline: &Deadline,
) -> Listed<BTreeMap<u64, Vec<u32>>> {
    let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Listed::default();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let _ = crate::base::testpoint::act("walk-step", "");
        if deadline.is_over() {
            return Listed {
                items: groups,
                complete: false,
            };
        }
        // A process that exited since the listing, or whose namespace an
        // LSM hides, is simply not counted.
        if let Some(ns) = namespace_of(&proc_root.join(pid.to_string()))
            && wanted.is_none_or(|w| w.contains(&ns))
        {
            groups.entry(ns).or_default().push(pid);
        }
    }
    Listed {
        items: groups,
        complete: true,
    }
}

/// `mnt:[4026532321]`, the text of a mount namespace file's link (or an
/// nsfs mount's root): its inode.
pub fn parse_link(text: &str) -> Option<u64> {
    text.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// The mount namespaces processes hold open as files (an fd whose link is
/// `mnt:[INODE]`), each with a path that reaches the file
/// (`/proc/PID/fd/N`): what keeps a namespace no process is in alive,
/// besides a bind mount of such a file. For kernels that keep no list of
/// namespaces (before Linux 6.12).
pub fn held_by_fds(
    proc_root: &Path,
    deadline: &Deadline,
) -> Listed<Vec<(u64, std::path::PathBuf)>> {
    let mut held = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Listed::default();
    };
    for entry in entries.flatten() {
        let _ = crate::base::testpoint::act("walk-step", "");
        if deadline.is_over() {
            return Listed {
                items: held,
                complete: false,
            };
        }
        if entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let link = std::fs::read_link(fd.path()).ok();
            if let Some(ns) = link
                .as_deref()
                .and_then(|l| l.to_str())
                .and_then(parse_link)
            {
                held.push((ns, fd.path()));
            }
        }
    }
    Listed {
        items: held,
        complete: true,
    }
}

/// The mount table of the namespace whose file `path` reaches (an fd of
/// another process, a bind mount of a namespace file), read from a thread
/// that enters it: the only way into a namespace no process is in, on
/// kernels without listmount(2) for other namespaces.
pub fn table_entering(path: &Path) -> Result<Vec<crate::kernel::mount_table::MountEntry>> {
    let file = std::fs::File::open(path)
        .fail_as(ErrorKind::System, || format!("opening {}", path.display()))?;
    table_inside(file.into(), path)
}

/// The mount table of the mount namespace a person named (`/proc/PID/ns/mnt`,
/// or a bind mount of one), its file opened safely: an error of kind
/// `InvalidInput` when it cannot be opened or is no mount namespace.
pub fn table_of(path: &Path) -> Result<Vec<crate::kernel::mount_table::MountEntry>> {
    let file = crate::kernel::resolve::open_namespace_file(path).map_err(|e| {
        fail(
            ErrorKind::InvalidInput,
            format!("{}: {}", path.display(), e.describe(path)),
        )
        .with_path(path)
    })?;
    table_inside(file, path).map_err(|e| match e.errno() {
        Some(errno) if errno == nix::errno::Errno::EINVAL as i32 => fail(
            ErrorKind::InvalidInput,
            format!("{}: not a mount namespace", path.display()),
        )
        .with_path(path),
        _ => e,
    })
}

/// The mount table of the mount namespace `file` is, read from a thread
/// that enters it.
fn table_inside(file: OwnedFd, path: &Path) -> Result<Vec<crate::kernel::mount_table::MountEntry>> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Vec<crate::kernel::mount_table::MountEntry>> {
                // A thread may join a mount namespace once it has a
                // filesystem context of its own (setns(2)).
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .fail_as(ErrorKind::System, || "unshare(CLONE_FS)".into())?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNS)
                    .fail_as(ErrorKind::System, || format!("entering {}", path.display()))?;
                crate::kernel::mount_table::read()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(fail(
                    ErrorKind::Bug,
                    "the thread entering a namespace panicked",
                ))
            })
    })
}
