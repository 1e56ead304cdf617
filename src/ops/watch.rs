//! Waiting for something worth looking at again, for `inspect --poll`:
//! this mount namespace's mount table changed (`kernel/mount_events.rs`:
//! fanotify's mount events, or the mount table file), or a record was
//! written or removed (an inotify watch on `<state>/mounts/`: `mount`
//! writes `preparing` then `mounted`, `umount` `unmounting`, and gc
//! removes records). A wake-up, not a description: the caller gathers a
//! snapshot again and compares it with the last.
//!
//! What changes no file and no mount table here is not seen: an operation
//! killed midway (its lock is released, nothing is written), and an
//! overlay that lives on only in another mount namespace dying there. The
//! caller looks again on a timer for the first while an operation runs.

use crate::base::cancel::{Cancel, Deadline};
use crate::base::error::{Context, ErrorKind, Result, fail};
use crate::kernel::in_use::SuperblockWatches;
use crate::kernel::mount_events::MountEvents;
use crate::kernel::proof::{Proof, prove};
use crate::state::{Record, StateDir};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often a wait looks at the cancel flag (a signal also ends the
/// `poll(2)` at once; this covers one that comes just before it).
const LOOK_AT_CANCEL: Duration = Duration::from_millis(100);
/// A change is reported once nothing else changed for this long...
const QUIET: Duration = Duration::from_millis(20);
/// ...or this long after it, whichever comes first: one mount writes its
/// record twice and attaches and detaches several mounts.
const BURST: Duration = Duration::from_millis(200);

/// Tells when this mount namespace's mount table or the records of a
/// state directory change.
///
/// ```no_run
/// use idmap_overlay::{StateDir, Watch};
/// use std::time::Duration;
///
/// let state = StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
/// let mut watch = Watch::new(&state)?;
/// loop {
///     if watch.wait(Duration::from_secs(60))? {
///         let snap = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::from_secs(5))?;
///         println!("{} records now", snap.records.len());
///     }
/// }
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub struct Watch {
    mounts: MountEvents,
    records: Inotify,
    /// `<state>/mounts`, watched once it exists (the first mount makes it).
    records_dir: PathBuf,
    records_watched: bool,
    /// The overlays named to [`Watch::watch_overlay`], by record id.
    overlays: SuperblockWatches,
    /// Record ids whose overlays died since [`Watch::died`] was last asked.
    died: Vec<String>,
    cancel: Cancel,
}

impl Watch {
    /// Starts watching, before the caller's first look, so that no change
    /// after it is missed. A raised `state.cancel` ends [`Watch::wait`].
    pub fn new(state: &StateDir) -> Result<Watch> {
        let mounts =
            MountEvents::open().fail_as(ErrorKind::System, || "watching the mount table".into())?;
        let records = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .fail_as(ErrorKind::System, || "inotify_init".into())?;
        let overlays =
            SuperblockWatches::new().fail_as(ErrorKind::System, || "inotify_init".into())?;
        let mut watch = Watch {
            mounts,
            records,
            records_dir: state.root.join("mounts"),
            records_watched: false,
            overlays,
            died: Vec::new(),
            cancel: state.cancel.clone(),
        };
        watch.watch_records();
        Ok(watch)
    }

    /// How the kernel tells of a change to the mount table here:
    /// `fanotify` (its mount events, Linux 6.15+) or `mountinfo` (the
    /// mount table file, polled).
    pub fn mount_events(&self) -> &'static str {
        self.mounts.name()
    }

    /// Also wakes when the overlay of `record` dies everywhere (its last
    /// mount in any namespace is gone; [`Watch::died`] then names it): for
    /// an overlay mounted here now, proven the record's at its target.
    /// False when it is not, or the watch could not be set.
    pub fn watch_overlay(&mut self, record: &Record) -> bool {
        let Ok(place) = crate::kernel::resolve::resolve_entry(&record.target) else {
            return false;
        };
        let Proof::Proven(ids) = prove(&place, &record.expected(), None) else {
            return false;
        };
        // The watch goes on the very mount just proven, through its fd.
        let Ok(fd) = place.open() else {
            return false;
        };
        match crate::kernel::sys::mount_ids(fd.as_fd()) {
            Ok(now) if now.id == ids.id && now.unique == ids.unique && now.mount_root => {}
            _ => return false,
        }
        self.overlays.add(fd.as_fd(), &record.id).is_ok()
    }

    /// The record ids whose overlays (named to [`Watch::watch_overlay`])
    /// died everywhere since the last call.
    pub fn died(&mut self) -> Vec<String> {
        std::mem::take(&mut self.died)
    }

    /// Waits up to `timeout` for a change: `true` once one came and the
    /// burst it belongs to is over, `false` when the time is up. An error
    /// of kind `Cancelled` when the cancel flag is raised (a signal).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        let until = Deadline::after(timeout, &self.cancel);
        loop {
            // The records directory appeared (the first mount made it):
            // records may have been written before the watch was set.
            if !self.records_watched && self.watch_records() {
                break;
            }
            if let Some(reason) = self.cancel.reason() {
                return Err(fail(ErrorKind::Cancelled, reason));
            }
            if until.is_over() {
                return Ok(false);
            }
            if self.changed(until.left().min(LOOK_AT_CANCEL))? {
                break;
            }
        }
        let burst = Instant::now() + BURST;
        while Instant::now() < burst && self.changed(QUIET)? {}
        Ok(true)
    }

    /// Sets the watch on the records directory if it exists; true when it
    /// was set now.
    fn watch_records(&mut self) -> bool {
        let what = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR
            | AddWatchFlags::IN_DONT_FOLLOW;
        self.records_watched = self.records.add_watch(&self.records_dir, what).is_ok();
        self.records_watched
    }

    /// Polls both sources for up to `wait`; true if either changed (what
    /// they queued is taken, so the next poll waits for the next change).
    fn changed(&mut self, wait: Duration) -> Result<bool> {
        let (mounts_fd, mounts_flags) = self.mounts.poll_on();
        let mut fds = [
            PollFd::new(mounts_fd, mounts_flags),
            PollFd::new(self.records.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.overlays.fd(), PollFlags::POLLIN),
        ];
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => return Ok(false),
            Ok(_) => {}
            Err(e) => return Err(e).fail_as(ErrorKind::System, || "poll".into()),
        }
        let mounts_changed = fds[0].any().unwrap_or(true);
        let records_changed = fds[1].any().unwrap_or(true);
        let overlays_changed = fds[2].any().unwrap_or(true);
        if mounts_changed {
            let events = self
                .mounts
                .drain()
                .fail_as(ErrorKind::System, || "reading mount events".into())?;
            log::debug!("mount table changed: {events:?}");
        }
        if records_changed {
            // EAGAIN (nothing left) is no error here.
            for event in self.records.read_events().unwrap_or_default() {
                log::debug!("records changed: {:?} {:?}", event.mask, event.name);
                if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The directory went (or moved): set the watch again
                    // when it is back.
                    self.records_watched = false;
                }
            }
        }
        let mut died = false;
        if overlays_changed {
            for id in self.overlays.died() {
                log::debug!("overlay {id} died");
                self.died.push(id);
                died = true;
            }
        }
        Ok(mounts_changed || records_changed || died)
    }
}
