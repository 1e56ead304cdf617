//! The umount operation, and the teardown of one record that `gc` shares:
//! prove the overlay at the target is ours, unmount it with EBUSY retries,
//! remove what is temporary, ask the kernel whether the overlay lives on
//! elsewhere, and remove the record or keep it `detached`.

use crate::base::cancel::checkpoint;
use crate::base::cancel::{Cancel, Deadline};
use crate::base::error::Result;
use crate::base::error::{BusyMount, ErrorKind, fail};
use crate::kernel::in_use::{Prober, SuperblockWatch};
use crate::kernel::mount_table::{self, MountEntry};
use crate::kernel::proof::{Expected, Proof, UnmountError, prove, unmount_proven};
use crate::kernel::resolve::{self, Entry, ResolveError};
use crate::kernel::sys::MountIds;
use crate::ops::elsewhere::{Beyond, Elsewhere, ask_kernel, describe, find_copies, summarize};
use crate::state::{self, Record, RecordState, StateDir};
use nix::errno::Errno;
use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A TARGET argument as the canonical path of the place it names, its
/// directories walked safely (see `resolve`). The place itself is not
/// judged by its owner: what is mounted there is proven separately. When
/// it no longer resolves (the overlay's directory was removed), the path
/// as given, made absolute and without `.` or trailing slashes, which is
/// how records store targets.
pub fn resolve_target(arg: &str) -> Result<PathBuf> {
    let path = Path::new(arg);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| {
                fail(
                    ErrorKind::System,
                    format!("reading the current directory: {e}"),
                )
            })?
            .join(path)
    };
    let unsafe_path = |e: ResolveError| fail(ErrorKind::InvalidInput, format!("{arg}: {e}"));
    let place = match resolve::resolve_entry(&absolute) {
        Ok(place) => place,
        Err(ResolveError::NotFound(_)) | Err(ResolveError::NotDirectory(_)) => {
            return Ok(absolute.components().collect());
        }
        Err(e) => return Err(unsafe_path(e)),
    };
    let is_symlink = place
        .open()
        .ok()
        .and_then(|fd| resolve::meta_of(fd.as_fd()).ok())
        .is_some_and(|m| m.is_symlink());
    if is_symlink {
        return resolve::resolve_dir(&absolute)
            .map(|dir| dir.path)
            .map_err(unsafe_path);
    }
    Ok(place.path)
}

/// An argument without `/` is an id: when a directory of that name is
/// here, say how to name it as a path instead.
pub fn path_hint(arg: &str) -> String {
    if !arg.contains('/') && Path::new(arg).is_dir() {
        format!(" (to mean the directory {arg} here, write ./{arg})")
    } else {
        String::new()
    }
}

/// Temporary mounts of `record` still in the table, deepest first.
pub fn temp_mounts_present<'a>(
    state: &StateDir,
    id: &str,
    table: &'a [MountEntry],
) -> Vec<&'a MountEntry> {
    let root = state.temp_root(id);
    let mut found: Vec<&MountEntry> = table
        .iter()
        .filter(|m| m.mount_point.starts_with(&root))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    found
}

/// Unmounts what is left under `<state>/tmp/<id>/` (each mount proven by
/// its id from `table`) and removes its directories with rmdir (never
/// recursively). Returns what failed.
pub fn remove_temp_leftovers(
    state: &StateDir,
    id: &str,
    table: &[MountEntry],
    timeout: Duration,
) -> Result<(), Vec<Leftover>> {
    let mut problems = Vec::new();
    for entry in temp_mounts_present(state, id, table) {
        if let Err(e) = unmount_listed(entry, timeout, &state.cancel) {
            let busy = match &e {
                UnmountError::Busy { mount_id, .. } => Some((*mount_id, entry.mount_point.clone())),
                _ => None,
            };
            problems.push(Leftover {
                busy,
                text: format!("temporary mount {}: {e}", entry.mount_point.display()),
            });
        }
    }
    let mut texts = Vec::new();
    let root = state.temp_root(id);
    // Only the tool creates `tmp/<id>`, as a directory: anything else there
    // was planted and is not followed (read_dir would list, and rmdir
    // below would remove, the empty directories of wherever it points).
    if std::fs::symlink_metadata(&root).is_ok_and(|m| !m.is_dir()) {
        texts.push(format!(
            "{} is not a directory (a symlink?); not followed, remove it by hand",
            root.display()
        ));
    } else {
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                remove_dir_if_present(&entry.path(), &mut texts);
            }
        }
        remove_dir_if_present(&root, &mut texts);
    }
    problems.extend(texts.into_iter().map(|text| Leftover { busy: None, text }));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Something temporary that could not be removed.
#[derive(Debug)]
pub struct Leftover {
    /// The mount id and mountpoint when the reason is that it is busy.
    pub busy: Option<(u64, PathBuf)>,
    pub text: String,
}

/// Unmounts a mount seen in a mount table, once the mount at its place is
/// proven to be that one (by id): the place is walked safely and the mount
/// reached through its held parent, never by re-reading the path.
pub fn unmount_listed(
    entry: &MountEntry,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<(), UnmountError> {
    let place = match resolve::resolve_entry(&entry.mount_point) {
        Ok(place) => place,
        Err(ResolveError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(UnmountError::NotOurs(format!("{e}; not unmounted"))),
    };
    let want = Expected {
        mount_id: Some(entry.id),
        ..Default::default()
    };
    unmount_proven(&place, &want, None, timeout, cancel).map(|_| ())
}

/// rmdir only: a directory with anything in it stays (containerd#10704
/// wiped data with a recursive delete through a still-mounted path).
fn remove_dir_if_present(path: &Path, problems: &mut Vec<String>) {
    match std::fs::remove_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(Errno::ENOTEMPTY as i32) => problems.push(format!(
            "{} is not empty; left alone (remove it by hand)",
            path.display()
        )),
        Err(e) => problems.push(format!("removing {}: {e}", path.display())),
    }
}

/// Where our overlay is in `table` when it is not on top at the target:
/// stacked under another mount there, or moved with a renamed directory.
/// By its tag, and its mount id once the record knows it (a crashed
/// mount's record may not).
fn overlay_elsewhere<'a>(record: &Record, table: &'a [MountEntry]) -> Option<&'a MountEntry> {
    table.iter().find(|m| {
        m.fs_type == "overlay"
            && m.source == record.source
            && record.mount_id.is_none_or(|id| id == m.id)
    })
}

/// Is the mount on top at the record's target the overlay it recorded?
/// The target is walked safely to its entry in its parent (`None` when it
/// is gone); the proof is made on that entry, never on the path again.
fn prove_ours(record: &Record, table: &[MountEntry]) -> Result<(Option<Entry>, Proof)> {
    let place = match resolve::resolve_entry(&record.target) {
        Ok(place) => place,
        Err(ResolveError::NotFound(_)) => return Ok((None, Proof::Nothing)),
        Err(e) => {
            return Err(fail(
                ErrorKind::Mount,
                format!("{e}; overlay {} left alone", record.id),
            ));
        }
    };
    let proof = prove(&place, &record.expected(), Some(table));
    log::debug!(
        "record {} ({:?}) at {}: {proof:?}",
        record.id,
        record.state,
        record.target.display()
    );
    Ok((Some(place), proof))
}

/// What became of a record's overlay in a [`teardown`].
pub enum Teardown {
    /// Unmounted here, and nothing of it is left anywhere: record removed.
    Unmounted,
    /// Gone from here already, and from everywhere: record removed.
    WasGone,
    /// Gone from here (unmounted now, or before), but it lives on
    /// elsewhere, or may: the record is kept, `detached`.
    LivesOn {
        unmounted_here: bool,
        beyond: Beyond,
        /// The watch on its superblock, when it was unmounted here: it
        /// tells when the last copy goes.
        watch: Option<SuperblockWatch>,
    },
}

/// A watch on the superblock of the proven mount at `place` (ids `ids`),
/// set before unmounting it. `None` when it cannot be set (then the
/// kernel is asked another way).
fn watch_proven(place: &Entry, ids: &MountIds) -> Option<SuperblockWatch> {
    let fd = place.open().ok()?;
    let now = crate::kernel::sys::mount_ids(fd.as_fd()).ok()?;
    if now.id != ids.id || now.unique != ids.unique || !now.mount_root {
        return None;
    }
    match SuperblockWatch::new(fd.as_fd()) {
        Ok(watch) => Some(watch),
        Err(e) => {
            log::debug!("watching {}: {e}", place.path.display());
            None
        }
    }
}

/// Does the overlay of `record`, gone from this namespace, live on
/// elsewhere? The kernel's answer (its upperdir in use); where the kernel
/// cannot say (a read-only overlay has no upperdir; an upperdir renamed
/// away; a kernel whose answer failed its proof), a walk over the mount
/// namespaces for its superblock, until `deadline`.
pub fn beyond(record: &Record, prober: &mut Prober, deadline: &Deadline) -> Beyond {
    match ask_kernel(record, prober) {
        Beyond::Unknown(why) => {
            let Some(device) = record.device() else {
                // Never recorded as mounted: no superblock was ever shown
                // to anyone under a name we know; nothing to look for.
                // A read-only one could corrupt nothing either.
                return match record.upperdir {
                    None => Beyond::Gone,
                    Some(_) => Beyond::Unknown(why),
                };
            };
            log::debug!("{}: {why}; looking for copies", record.id);
            let own = crate::kernel::namespaces::current_namespace().ok();
            find_copies(&[device].into(), own, &HashSet::new(), deadline)
                .beyond(device, &record.source)
        }
        answer => answer,
    }
}

/// Unmounts the overlay of a locked record (if it is still here) and
/// everything temporary, then asks the kernel whether the overlay lives
/// on anywhere: if not, the record goes; if it does (or may), the record
/// stays, `detached`. `known` is what the caller already knows of an
/// overlay not mounted here (gc asks once for every record). On failure
/// the record is left in place (back to `mounted` if the overlay stays
/// busy).
pub fn teardown(
    state: &StateDir,
    record: &mut Record,
    table: &[MountEntry],
    deadline: &Deadline,
    known: Option<Beyond>,
) -> Result<Teardown> {
    let mut late_cancel = None;
    let mut watch = None;
    let mut unmounted_here = false;
    let (place, proof) = prove_ours(record, table)?;
    let recorded = record.clone();
    let want = recorded.expected();
    match (proof, &place) {
        (Proof::Proven(ids), Some(place)) => {
            let was = record.state;
            // What the record says again if the overlay stays mounted.
            let restored = match was {
                RecordState::Preparing | RecordState::Detached => was,
                _ => RecordState::Mounted,
            };
            record.state = RecordState::Unmounting;
            state.write_record(record)?;
            if let Err(e) = checkpoint(&state.cancel, "record-unmounting") {
                // Interrupted (SIGINT, SIGTERM) before anything was
                // unmounted: roll back to the record as it was, so no leak
                // is left for gc (the overlay is still ours and healthy).
                record.state = restored;
                state.write_record(record)?;
                return Err(e);
            }
            // From here on, exactly the mount that was proven.
            let proven = Expected {
                mount_id: Some(ids.id),
                unique: ids.unique,
                dev: Some(ids.dev),
                ..want
            };
            watch = watch_proven(place, &ids);
            if let Err(e) = unmount_proven(place, &proven, None, deadline.left(), &state.cancel) {
                record.state = restored;
                state.write_record(record)?;
                let target = record.target.display();
                return Err(match e {
                    UnmountError::Cancelled(reason) => fail(
                        ErrorKind::Cancelled,
                        format!("{reason} while {target} was busy; nothing unmounted"),
                    ),
                    UnmountError::Busy { mount_id, waited } => {
                        crate::base::error::Error::busy(BusyMount {
                            mount_id,
                            what: record.target.clone(),
                            waited,
                            held_by: None,
                        })
                    }
                    e => fail(ErrorKind::Mount, format!("{target}: {e}")),
                });
            }
            unmounted_here = true;
            // Past the point of no return: the overlay is gone from here
            // and cannot be put back. An interruption here lets the
            // teardown finish (temp leftovers, record, lock) and is
            // reported after it.
            if let Err(e) = checkpoint(&state.cancel, "overlay-unmounted") {
                match state.cancel.reason() {
                    Some(reason) => late_cancel = Some(reason),
                    None => return Err(e),
                }
            }
        }
        (proof, _) => {
            if let Some(ours) = overlay_elsewhere(record, table) {
                let target = record.target.display();
                let why = if ours.mount_point != record.target {
                    format!(
                        "overlay {} is no longer at {target} but at {} (moved with a renamed directory?); nothing unmounted",
                        record.id,
                        ours.mount_point.display()
                    )
                } else if mount_table::top_at(table, &record.target).map(|t| t.id) != Some(ours.id)
                {
                    format!(
                        "another mount is stacked on {target} above overlay {}; unmount it first",
                        record.id
                    )
                } else {
                    // Our tag and mount id on top, yet not proven ours: a
                    // later overlay that got the same id (ids are reused).
                    let found = match &proof {
                        Proof::NotOurs(found) => found.as_str(),
                        _ => "it is not the mount that was recorded",
                    };
                    format!(
                        "{target}: {found}; the overlay there has the tag and mount id of {} but is not it, left alone",
                        record.id
                    )
                };
                return Err(fail(ErrorKind::Mount, why));
            }
        }
    }
    if let Err(problems) = remove_temp_leftovers(state, &record.id, table, deadline.left()) {
        let text = problems
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(match problems.iter().find_map(|p| p.busy.clone()) {
            Some((mount_id, what)) => crate::base::error::Error::busy(BusyMount {
                mount_id,
                what,
                waited: deadline.left(),
                held_by: None,
            }),
            None => fail(ErrorKind::Mount, text),
        });
    }
    // Does anything of it live on? The watch saw the superblock die, or
    // not; without one, the kernel is asked about the upperdir.
    let trusted = crate::ops::features::watch_trusted(state);
    let beyond = match (watch.as_ref().filter(|_| trusted), known) {
        (Some(watch), _) => {
            // The last reference usually goes before umount2 returns; a
            // path walk of another process that held the mount for an
            // instant puts it a moment later.
            let settle = Deadline::after(Duration::from_millis(20), &Cancel::new());
            if watch.died() || watch.wait(settle.at, &settle.cancel) {
                Beyond::Gone
            } else {
                Beyond::Alive("its superblock outlived the unmount".into())
            }
        }
        (None, Some(known)) if !unmounted_here => known,
        (None, _) => beyond(record, &mut crate::ops::features::prober(state), deadline),
    };
    let done = match beyond {
        Beyond::Gone => {
            state.remove_record(&record.id)?;
            state.remove_lock(&record.id);
            if unmounted_here {
                Teardown::Unmounted
            } else {
                Teardown::WasGone
            }
        }
        beyond => {
            record.state = RecordState::Detached;
            state.write_record(record)?;
            Teardown::LivesOn {
                unmounted_here,
                beyond,
                watch,
            }
        }
    };
    match late_cancel {
        Some(reason) => Err(fail(
            ErrorKind::Cancelled,
            format!(
                "{reason} after {} was unmounted; {}",
                record.target.display(),
                match done {
                    Teardown::LivesOn { .. } =>
                        "its record is kept as detached: it lives on elsewhere",
                    _ => "finished removing its record",
                }
            ),
        )),
        None => Ok(done),
    }
}

/// Waits (up to `deadline`) for a record's lock: another mount or umount
/// of the same overlay may be running.
fn lock_record(
    state: &StateDir,
    record: &Record,
    deadline: &Deadline,
) -> Result<state::RecordLock> {
    loop {
        if let Some(lock) = state.try_lock_record(&record.id)? {
            return Ok(lock);
        }
        if let Some(reason) = state.cancel.reason() {
            return Err(fail(
                ErrorKind::Cancelled,
                format!("{reason} while waiting for overlay {}", record.id),
            ));
        }
        if !deadline.sleep(Duration::from_millis(10)) && !state.cancel.is_cancelled() {
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "overlay {} is busy with another idmap-overlay operation (a mount, umount or gc of it); try again",
                    record.id
                ),
            ));
        }
    }
}

/// Unmounts the overlay recorded for `what`: its target (an absolute path)
/// or its record id (or a unique prefix of one), once the mount there is
/// proven to be the one recorded; removes what was temporary; then asks
/// the kernel whether the overlay lives on elsewhere (a container's copy).
/// Gone everywhere: the record goes. Living on: the record stays,
/// `detached`, until gc sees it gone; if a process uses a copy, this waits
/// for it until `timeout` and then fails naming it, unless `detach` says
/// that is expected.
///
/// An overlay of ours without a record (a crashed mount) is unmounted too,
/// when its source tag proves it ours.
///
/// ```no_run
/// use idmap_overlay::StateDir;
/// use std::time::Duration;
///
/// let state = StateDir::open("/run/idmap-overlay".as_ref())?;
/// // By target, or by record id: the same overlay.
/// idmap_overlay::umount(&state, "/run/c1/rootfs", Duration::from_secs(5), false)?;
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn umount(state: &StateDir, arg: &str, timeout: Duration, detach: bool) -> Result<()> {
    let deadline = Deadline::after(timeout, &state.cancel);
    let by_path = arg.contains('/');
    let path = by_path.then(|| resolve_target(arg)).transpose()?;
    if !by_path {
        state::check_id(arg).map_err(|e| fail(ErrorKind::InvalidInput, e))?;
    }
    // By id (or a unique prefix of one), the record is one file; by target,
    // the records are searched.
    let found = match &path {
        None => match state
            .resolve_id(arg)
            .map_err(|e| fail(ErrorKind::InvalidInput, e))?
        {
            Some(id) => StateDir::read_record_file(&state.record_path(&id)).ok(),
            None => None,
        },
        // The index finds it at once; a scan is the fallback for a record
        // whose index entry went missing.
        Some(p) => match state.record_at(p) {
            Some(record) => Some(record),
            None => state.records()?.0.into_iter().find(|r| r.target == *p),
        },
    };
    let Some(record) = found else {
        return umount_untracked(arg, path.as_deref(), timeout, &state.cancel);
    };
    let _lock = lock_record(state, &record, &deadline)?;
    // Read it again under the lock: the operation we waited for may have
    // changed or removed it.
    let mut record = match StateDir::read_record_file(&state.record_path(&record.id)) {
        Ok(r) => r,
        Err(_) => {
            log::warn!(
                "{arg}: record {} went away while waiting for its lock",
                record.id
            );
            return Ok(());
        }
    };
    let table = match proven_on_top(state, &record) {
        Some(entry) => vec![entry],
        None => mount_table::read()?,
    };
    if record.state != RecordState::Detached {
        refuse_foreign_at_target(&record, &table)?;
    }
    let own_ns = crate::kernel::namespaces::current_namespace().ok();
    let here = table.iter().any(|m| record.is_overlay(m));
    if record.state == RecordState::Mounted
        && !here
        && record.mount_ns.is_some_and(|ns| Some(ns) != own_ns)
    {
        // Mounted in another namespace and not here: umount(8) would say
        // "not mounted"; the record is that namespace's business while the
        // overlay lives.
        let answer = beyond(&record, &mut crate::ops::features::prober(state), &deadline);
        if answer.may_live() {
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "{}: overlay {} is not mounted in this mount namespace; it was mounted in mount namespace {} (run this there, e.g. with nsenter -t PID -m); nothing unmounted",
                    record.target.display(),
                    record.id,
                    record.mount_ns.unwrap_or_default()
                ),
            ));
        }
    }
    let was = record.state;
    let done = forget(state, &mut record, &table, &deadline, None).map_err(|e| {
        // Given up on a busy mount: who holds it, one walk over /proc
        // (bounded; a signal ends it).
        e.held_by(|mount_id| {
            let look = Deadline::after(Duration::from_secs(1), &state.cancel);
            crate::kernel::holders::describe(&crate::kernel::holders::of_mount(mount_id, &look))
        })
    })?;
    // What was done, for -v (as umount(8) -v says "/mnt unmounted"); a
    // warning says it where something was not as expected.
    match done {
        Teardown::Unmounted => {
            log::info!(
                "{} unmounted (overlay {}); record removed",
                record.target.display(),
                record.id
            );
            Ok(())
        }
        Teardown::WasGone => {
            if was == RecordState::Mounted {
                log::warn!(
                    "{}: overlay {} was already unmounted; removed its record",
                    record.target.display(),
                    record.id
                );
            } else {
                log::info!(
                    "{}: overlay {} ({}) is gone everywhere; record removed",
                    record.target.display(),
                    record.id,
                    was.name()
                );
            }
            Ok(())
        }
        Teardown::LivesOn {
            unmounted_here,
            beyond,
            watch,
        } => lives_on(
            state,
            &mut record,
            unmounted_here,
            beyond,
            watch,
            &deadline,
            detach,
        ),
    }
}

/// `umount` found the overlay living on outside this namespace (the record
/// is `detached` now): names where, with one walk bounded by the deadline,
/// and when a process uses a copy waits for the last copy to go (the
/// superblock watch says when), else fails naming it. An idle copy (no
/// process uses it: anybody can make one by creating a mount namespace at
/// the right moment) is not a failure.
#[allow(clippy::too_many_arguments)]
fn lives_on(
    state: &StateDir,
    record: &mut Record,
    unmounted_here: bool,
    beyond: Beyond,
    watch: Option<SuperblockWatch>,
    deadline: &Deadline,
    detach: bool,
) -> Result<()> {
    let target = record.target.display().to_string();
    let done_here = if unmounted_here {
        "unmounted here"
    } else {
        "already unmounted here"
    };
    let own_ns = crate::kernel::namespaces::current_namespace().ok();
    let copies = record.device().map(|device| {
        let found = find_copies(&[device].into(), own_ns, &HashSet::new(), deadline);
        (found.elsewhere(device), found)
    });
    let (elsewhere, unread, complete) = match &copies {
        Some((elsewhere, found)) => (elsewhere.clone(), found.unread.clone(), found.complete),
        None => (Vec::new(), Vec::new(), true),
    };
    let mut place = if elsewhere.is_empty() {
        match &beyond {
            Beyond::Alive(how) => format!("somewhere it could not be found ({how})"),
            Beyond::Unknown(why) => format!("perhaps, somewhere ({why})"),
            Beyond::Gone => "nowhere".into(),
        }
    } else {
        describe(&elsewhere)
    };
    if !unread.is_empty() {
        place.push_str(&format!(
            "; mount namespaces not read: {}",
            summarize(&unread)
        ));
    }
    if !complete {
        place.push_str("; not every mount namespace was looked at before the time was up");
    }
    if let Some(reason) = state.cancel.reason() {
        return Err(fail(
            ErrorKind::Cancelled,
            format!(
                "{reason}: {target} is {done_here}; the overlay lives on elsewhere; record {} kept as detached",
                record.id
            ),
        ));
    }
    let used = elsewhere.iter().any(Elsewhere::used);
    if used && !detach {
        // A container that is stopping lets go in a moment: wait for the
        // last copy to go, as long as the timeout allows. The watch says
        // when; without one (the overlay was gone from here already) the
        // kernel is asked about the upperdir every 100 ms.
        if wait_until_gone(state, record, watch.as_ref(), deadline) {
            log::info!(
                "{target} is {done_here}, and the last copy elsewhere is gone (overlay {}); record removed",
                record.id
            );
            return forget_gone(state, record);
        }
        if let Some(reason) = state.cancel.reason() {
            return Err(fail(
                ErrorKind::Cancelled,
                format!(
                    "{reason}: {target} is {done_here}; still in use in {place}; record {} kept as detached",
                    record.id
                ),
            ));
        }
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{target} is {done_here}, but the overlay is still in use in {place}; record {} kept as detached until the last copy is gone (gc removes it then; --detach when that is expected)",
                record.id
            ),
        ));
    }
    // Nobody uses a copy. A container that just stopped leaves its
    // namespace for the kernel to free a moment later: give that a moment
    // before calling the copy idle.
    let moment = Deadline::after(
        Duration::from_millis(50).min(deadline.left()),
        &state.cancel,
    );
    if wait_until_gone(state, record, watch.as_ref(), &moment) {
        log::info!(
            "{target} is {done_here}, and the copy elsewhere is gone (overlay {}); record removed",
            record.id
        );
        return forget_gone(state, record);
    }
    log::warn!(
        "{target}: {done_here}; the overlay lives on in {place}: record {} kept as detached until it is gone (gc removes it then)",
        record.id
    );
    Ok(())
}

/// The common case without reading the whole mount table (2,000 lines at
/// scale, and 100 umounts at once): the mount on top at the target has the
/// overlay's unique id (never reused), so it is ours and nothing is stacked
/// on it, and no temporary area is left. Then that one mount is all the
/// teardown needs to see. Anything else: `None`, read the table.
fn proven_on_top(state: &StateDir, record: &Record) -> Option<MountEntry> {
    let unique = record.mount_id_unique?;
    let id = record.mount_id?;
    if record.state != RecordState::Mounted
        || std::fs::symlink_metadata(state.temp_root(&record.id)).is_ok()
    {
        return None;
    }
    let place = resolve::resolve_entry(&record.target).ok()?;
    let want = Expected {
        unique: Some(unique),
        ..Default::default()
    };
    let Proof::Proven(ids) = prove(&place, &want, None) else {
        return None;
    };
    Some(MountEntry {
        id,
        parent: 0,
        device: ids.dev.into(),
        root: "/".into(),
        mount_point: record.target.clone(),
        options: String::new(),
        tags: Vec::new(),
        fs_type: "overlay".into(),
        source: record.source.clone(),
        super_options: record.super_options.clone().unwrap_or_default(),
        super_raw: Vec::new(),
    })
}

/// Waits (until `until`) for the last copy of a `detached` record's
/// overlay to go: the superblock watch says when; without one, the kernel
/// is asked about the upperdir every 50 ms (a read-only overlay without a
/// watch is not waited for).
fn wait_until_gone(
    state: &StateDir,
    record: &Record,
    watch: Option<&SuperblockWatch>,
    until: &Deadline,
) -> bool {
    match watch {
        Some(watch) => watch.wait(until.at, &until.cancel),
        None if record.upperdir.is_some() => {
            let mut prober = crate::ops::features::prober(state);
            loop {
                if ask_kernel(record, &mut prober) == Beyond::Gone {
                    return true;
                }
                if !until.sleep(Duration::from_millis(50)) {
                    return false;
                }
            }
        }
        None => false,
    }
}

/// The record of an overlay now gone everywhere: removed, with its lock
/// file and index entries.
fn forget_gone(state: &StateDir, record: &Record) -> Result<()> {
    state.remove_record(&record.id)?;
    state.remove_lock(&record.id);
    unindex_quietly(state, record);
    Ok(())
}

/// `teardown`, then the record's target index entry once the record is
/// gone. The index is a hint checked on use: when its lock cannot be had
/// in time (a long gc holds it), the entry is left for gc and the teardown
/// still counts as done. Not for callers holding the global lock (`mount`
/// overwrites the entry instead).
pub fn forget(
    state: &StateDir,
    record: &mut Record,
    table: &[MountEntry],
    deadline: &Deadline,
    known: Option<Beyond>,
) -> Result<Teardown> {
    let result = teardown(state, record, table, deadline, known);
    unindex_quietly(state, record);
    result
}

/// Removes the record's target index entries once its record is gone, or
/// says why it could not (gc removes stale entries).
fn unindex_quietly(state: &StateDir, record: &Record) {
    if std::fs::symlink_metadata(state.record_path(&record.id)).is_ok() {
        return;
    }
    if let Err(e) = state.unindex(&record.claimed_paths(), &record.id) {
        log::warn!(
            "{}: its target index entry is left for gc: {e:#}",
            record.target.display()
        );
    }
}

/// `umount` was asked for a target, and the record's overlay is not there:
/// when something else is (somebody's mount), or our overlay is found at
/// another place (its parent was renamed), refuse rather than call the
/// overlay "already unmounted" and drop the record. Nothing is unmounted.
/// `gc` still drops such a stale record: it never unmounts anything but
/// what `is_our_overlay` proves ours.
fn refuse_foreign_at_target(record: &Record, table: &[MountEntry]) -> Result<()> {
    if table.iter().any(|m| record.is_overlay(m)) {
        return Ok(());
    }
    if let Some(moved) = table.iter().find(|m| {
        m.fs_type == "overlay" && m.source == record.source && record.mount_id == Some(m.id)
    }) {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "overlay {} is no longer at {} but at {} (moved with a renamed directory?); nothing unmounted",
                record.id,
                record.target.display(),
                moved.mount_point.display()
            ),
        ));
    }
    if let Some(other) = mount_table::top_at(table, &record.target) {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{} now holds another mount ({} {}, mount id {}), not overlay {}: left alone; `gc` removes the stale record",
                record.target.display(),
                other.fs_type,
                other.source,
                other.id,
                record.id
            ),
        ));
    }
    Ok(())
}

/// No record: unmount an overlay at the target (or with the id's tag) only
/// if its source tag says it is ours, proven again on the mount itself.
fn umount_untracked(
    arg: &str,
    path: Option<&Path>,
    timeout: Duration,
    cancel: &Cancel,
) -> Result<()> {
    let table = mount_table::read()?;
    let candidate = match path {
        Some(p) => mount_table::top_at(&table, p)
            .filter(|m| m.fs_type == "overlay" && m.source.starts_with("idmap-overlay:")),
        None => table
            .iter()
            .find(|m| m.fs_type == "overlay" && m.source == state::source_tag(arg)),
    };
    let Some(entry) = candidate else {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{arg}: no idmap-overlay record and no overlay of ours there{}",
                path_hint(arg)
            ),
        ));
    };
    if mount_table::top_at(&table, &entry.mount_point).map(|t| t.id) != Some(entry.id) {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "another mount is stacked on {} above overlay {}",
                entry.mount_point.display(),
                entry.source
            ),
        ));
    }
    log::warn!(
        "{arg}: no record; unmounting overlay {} found at {}",
        entry.source,
        entry.mount_point.display()
    );
    let place = resolve::resolve_entry(&entry.mount_point)
        .map_err(|e| fail(ErrorKind::Mount, format!("{e}; not unmounted")))?;
    let want = Expected {
        mount_id: Some(entry.id),
        source: Some(&entry.source),
        ..Default::default()
    };
    match unmount_proven(&place, &want, Some(&table), timeout, cancel) {
        Ok(_) => {
            log::info!(
                "{} unmounted (overlay {}, no record)",
                entry.mount_point.display(),
                entry.source
            );
            Ok(())
        }
        Err(UnmountError::Cancelled(reason)) => Err(fail(
            ErrorKind::Cancelled,
            format!("{reason}; nothing unmounted"),
        )),
        Err(e) => Err(fail(
            ErrorKind::Mount,
            format!("{}: {e}", entry.mount_point.display()),
        )),
    }
}
