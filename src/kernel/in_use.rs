//! Two questions about overlays that the kernel answers by itself, each in
//! a few system calls whatever the number of mounts and mount namespaces on
//! the host (the alternative, reading every namespace's mount table, grows
//! with the host and trusts text that any user can write):
//!
//! - **Is a directory the upper or work directory of a live overlay?**
//!   overlayfs marks both directories *in use* (one flag on the inode,
//!   whatever the mount namespace; cleared only when the overlay's
//!   superblock dies, so a copy of the mount in a container keeps it set).
//!   [`Prober::dir_in_use`] asks by starting an overlay that takes the
//!   directory as its upperdir with `index=on` (which turns "in use" into
//!   EBUSY instead of a warning) and a workdir on another mount, so that the
//!   kernel refuses right after the in-use check, with EINVAL, before
//!   anything is written. Seen on Linux 6.1, 6.12, 7.3 and 6.18.
//! - **Did an overlay's superblock die?** An inotify watch on the overlay's
//!   root directory gets `IN_UNMOUNT` when the superblock is shut down,
//!   that is when its last mount anywhere is gone. [`SuperblockWatch`] is
//!   set before our unmount; no event after it means a copy lives on
//!   somewhere (another mount namespace, or a detached mount an fd holds).
//!
//! Both answers are kernel facts about objects no user can forge. What the
//! probe cannot decide (a read-only view of the directory, a kernel that
//! says something else) is [`DirUse::Unknown`], which callers treat as
//! "may be in use".

use crate::base::cancel::Cancel;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_fd,
    fsconfig_set_string, fsmount, fsopen,
};
use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// The kernel's answer about one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirUse {
    /// The upper or work directory of a live overlay, in some namespace.
    InUse,
    /// No live overlay uses it as its upper or work directory.
    Free,
    /// The probe could not decide; why. Count it as possibly in use.
    Unknown(String),
}

/// Asks the kernel whether directories are in use by overlays. Keeps the
/// empty detached tmpfs the probes use as their lower and work directory
/// (never attached anywhere, gone with the prober).
#[derive(Default)]
pub struct Prober {
    scratch: Option<OwnedFd>,
    /// Set when this boot's feature probe found the probe's answers wrong:
    /// every answer is then `Unknown`, and callers walk instead.
    disproven: bool,
}

impl Prober {
    pub fn new() -> Prober {
        Prober::default()
    }

    /// A prober for a kernel whose answers were (`proven`) or were not
    /// found right by this boot's feature probe.
    pub fn trusting(proven: bool) -> Prober {
        Prober {
            scratch: None,
            disproven: !proven,
        }
    }

    /// An empty tmpfs of our own, detached: `fsopen("tmpfs")`,
    /// `FSCONFIG_CMD_CREATE`, `fsmount`. Being a mount of its own, it is
    /// never the mount the probed directory lies on.
    fn scratch(&mut self) -> io::Result<BorrowedFd<'_>> {
        if self.scratch.is_none() {
            let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
            fsconfig_set_string(fs.as_fd(), "mode", "0700")?;
            fsconfig_create(fs.as_fd())?;
            let mnt = fsmount(
                fs.as_fd(),
                FsMountFlags::FSMOUNT_CLOEXEC,
                MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
            )?;
            self.scratch = Some(mnt);
        }
        Ok(self.scratch.as_ref().expect("just made").as_fd())
    }

    /// Is `dir` (an fd on the directory, `O_PATH` will do) the upper or
    /// work directory of a live overlay, in any mount namespace?
    ///
    /// `fsopen("overlay")`; `lowerdir` and `workdir` = the scratch tmpfs;
    /// `upperdir` = `dir`; `index=on`; `FSCONFIG_CMD_CREATE`: EBUSY when
    /// in use ("upperdir is in-use by another mount"), EINVAL when free
    /// ("workdir and upperdir must reside under the same mount"). Nothing
    /// is written: overlayfs fails before it creates its work directory.
    /// Costs about 1.3 ms (free) to 2.4 ms (in use) on the machines
    /// measured, mostly one expedited RCU grace period that the kernel
    /// waits for while it tears the half-made superblock down
    /// (`ovl_free_fs` → `kern_unmount_array`). Probing two directories
    /// from two threads at once does not help: each then takes twice as
    /// long (measured on 6.18, 2 CPUs).
    pub fn dir_in_use(&mut self, dir: BorrowedFd<'_>) -> DirUse {
        // Test point `in-use-probe:fail`: every directory probes in use, as
        // an overlay's upper directory still does for a moment after its
        // superblock watch heard it die (see `Snapshot::died`).
        if crate::base::testpoint::act("in-use-probe", "").is_err() {
            return DirUse::InUse;
        }
        if self.disproven {
            return DirUse::Unknown(
                "the kernel's in-use answer failed its proof on this boot (inspect --features)"
                    .into(),
            );
        }
        // overlayfs refuses an upperdir on a read-only mount with the same
        // EINVAL that means "free" here (at CREATE, before Linux 6.5): a
        // read-only view cannot be asked.
        match nix::sys::statvfs::fstatvfs(dir) {
            Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => {
                return DirUse::Unknown("it is on a read-only mount here".into());
            }
            Ok(_) => {}
            Err(e) => return DirUse::Unknown(format!("statvfs: {e}")),
        }
        let scratch = match self.scratch() {
            Ok(fd) => crate::kernel::resolve::proc_fd_path(fd),
            Err(e) => return DirUse::Unknown(format!("making a scratch tmpfs: {e}")),
        };
        let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
            Ok(fs) => fs,
            Err(e) => return DirUse::Unknown(format!("fsopen overlay: {e}")),
        };
        let fs = fs.as_fd();
        let configured = fsconfig_set_string(fs, "lowerdir", &scratch)
            .and_then(|()| match fsconfig_set_fd(fs, "upperdir", dir) {
                // Kernels whose overlayfs takes no fd parameters: EINVAL,
                // or EOPNOTSUPP before 6.5 (no fs_context of its own).
                Err(_) => {
                    fsconfig_set_string(fs, "upperdir", crate::kernel::resolve::proc_fd_path(dir))
                }
                ok => ok,
            })
            .and_then(|()| fsconfig_set_string(fs, "workdir", &scratch))
            .and_then(|()| fsconfig_set_string(fs, "index", "on"));
        if let Err(e) = configured {
            return DirUse::Unknown(format!("configuring the probe: {e}"));
        }
        match fsconfig_create(fs) {
            Err(Errno::BUSY) => DirUse::InUse,
            Err(Errno::INVAL) => DirUse::Free,
            Err(e) => DirUse::Unknown(format!("the probe said {e}")),
            // Not seen on any kernel: the workdir check did not stop it.
            // The superblock goes with the fs context, unmounted.
            Ok(()) => DirUse::Unknown("the probe was not refused".into()),
        }
    }
}

/// An inotify watch on an overlay's root directory, which tells when the
/// overlay's superblock dies: when its last mount, in any namespace, is
/// gone. The watch does not keep the mount busy.
pub struct SuperblockWatch {
    inotify: Inotify,
    died: Cell<bool>,
}

impl SuperblockWatch {
    /// Watches the filesystem whose root directory `root` is (an fd on it,
    /// `O_PATH` will do: the watch is set through `/proc/self/fd/N`).
    /// The fd can be closed right after; the watch stays.
    pub fn new(root: BorrowedFd<'_>) -> io::Result<SuperblockWatch> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        // IN_DELETE_SELF never comes for a root directory; IN_UNMOUNT and
        // IN_IGNORED come whatever the mask.
        inotify.add_watch(
            &crate::kernel::resolve::proc_fd_path(root),
            AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_ONLYDIR,
        )?;
        Ok(SuperblockWatch {
            inotify,
            died: Cell::new(false),
        })
    }

    /// Has the superblock died (an `IN_UNMOUNT` was queued)? Does not wait.
    pub fn died(&self) -> bool {
        if self.died.get() {
            return true;
        }
        while let Ok(events) = self.inotify.read_events() {
            if events
                .iter()
                .any(|e| e.mask.contains(AddWatchFlags::IN_UNMOUNT))
            {
                self.died.set(true);
            }
        }
        self.died.get()
    }

    /// Waits until the superblock dies, `deadline` passes or `cancel` is
    /// raised (looked at every 50 ms at most). True when it died.
    pub fn wait(&self, deadline: Instant, cancel: &Cancel) -> bool {
        loop {
            if self.died() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || cancel.is_cancelled() {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(50));
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(slice).unwrap_or(PollTimeout::ZERO),
            );
        }
    }
}

/// [`SuperblockWatch`]es of many overlays in one inotify instance (one file
/// descriptor, whatever their number), each under a name: which of them
/// died (`inspect --poll`).
pub struct SuperblockWatches {
    inotify: Inotify,
    names: std::collections::HashMap<nix::sys::inotify::WatchDescriptor, String>,
}

impl SuperblockWatches {
    pub fn new() -> io::Result<SuperblockWatches> {
        Ok(SuperblockWatches {
            inotify: Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?,
            names: std::collections::HashMap::new(),
        })
    }

    /// Watches the filesystem whose root directory `root` is (as
    /// [`SuperblockWatch::new`]), under `name`.
    pub fn add(&mut self, root: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        let watch = self.inotify.add_watch(
            &crate::kernel::resolve::proc_fd_path(root),
            AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_ONLYDIR,
        )?;
        self.names.insert(watch, name.to_string());
        Ok(())
    }

    /// Readable (`POLLIN`) when one died.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// The names of those that died since the last call; does not wait.
    pub fn died(&mut self) -> Vec<String> {
        let mut died = Vec::new();
        while let Ok(events) = self.inotify.read_events() {
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_UNMOUNT)
                    && let Some(name) = self.names.get(&event.wd)
                {
                    died.push(name.clone());
                }
                // The watch is gone with the superblock.
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.names.remove(&event.wd);
                }
            }
        }
        died
    }
}
