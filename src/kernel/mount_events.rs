//! Being told that the mount table of this mount namespace changed, for a
//! caller that then looks at it again (`inspect --poll`). Two ways, the
//! best the kernel has:
//!
//! - **fanotify's mount events** (Linux 6.15+): a group marked on this
//!   namespace (`FAN_MARK_MNTNS`) reads one event per mount attached or
//!   detached, with the mount's unique id.
//! - **the mount table file** (every kernel): `poll(2)` on an open
//!   `/proc/thread-self/mountinfo` reports `POLLPRI | POLLERR` once after
//!   each change of the namespace's table, and the poll itself re-arms it
//!   (nothing needs to be read).
//!
//! Either is a wake-up for this namespace's table only: a mount in another
//! mount namespace (a container's) is not seen here.

use crate::kernel::sys;
use nix::poll::PollFlags;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Where the news of a change comes from.
#[derive(Debug)]
pub enum MountEvents {
    /// A fanotify group marked on this mount namespace.
    Fanotify(OwnedFd),
    /// `/proc/thread-self/mountinfo`, open.
    Mountinfo(File),
}

impl MountEvents {
    /// fanotify's mount events where the kernel has them, else the mount
    /// table file. Tests take fanotify away with the `mount-events` fault
    /// point, to see the older kernels' way here.
    pub fn open() -> io::Result<MountEvents> {
        let fanotify = match crate::base::testpoint::act("mount-events", "") {
            Err(_) => Err(io::Error::from(nix::errno::Errno::EINVAL)),
            Ok(()) => {
                File::open("/proc/thread-self/ns/mnt").and_then(|ns| sys::mount_events(ns.as_fd()))
            }
        };
        match fanotify {
            Ok(group) => Ok(MountEvents::Fanotify(group)),
            Err(e) => {
                // EINVAL: a kernel before 6.15, which does not know the
                // flags; anything else (no fanotify in this kernel, a
                // security module's refusal) falls back the same way.
                log::debug!("no fanotify mount events ({e}); polling the mount table instead");
                File::open("/proc/thread-self/mountinfo").map(MountEvents::Mountinfo)
            }
        }
    }

    /// `fanotify` or `mountinfo`, for a person.
    pub fn name(&self) -> &'static str {
        match self {
            MountEvents::Fanotify(_) => "fanotify",
            MountEvents::Mountinfo(_) => "mountinfo",
        }
    }

    /// The descriptor to poll, and what it signals a change with.
    pub fn poll_on(&self) -> (BorrowedFd<'_>, PollFlags) {
        match self {
            MountEvents::Fanotify(group) => (group.as_fd(), PollFlags::POLLIN),
            MountEvents::Mountinfo(file) => (file.as_fd(), PollFlags::POLLPRI | PollFlags::POLLERR),
        }
    }

    /// Takes what is queued, so the next poll waits for the next change:
    /// the unique ids of the mounts attached or detached (fanotify), or
    /// nothing (the mount table file re-arms when polled).
    pub fn drain(&self) -> io::Result<Vec<sys::MountEvent>> {
        match self {
            MountEvents::Fanotify(group) => sys::read_mount_events(group.as_fd()),
            MountEvents::Mountinfo(_) => Ok(Vec::new()),
        }
    }
}
