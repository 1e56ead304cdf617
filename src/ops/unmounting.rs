//! The umount operation, and the teardown of one record that `gc` shares:
//! prove the overlay at the target is ours, unmount it with EBUSY retries,
//! remove what is temporary, delete the record.

use crate::base::cancel::Cancel;
use crate::base::error::Result;
use crate::base::error::{ErrorKind, fail};
use crate::base::testpoint;
use crate::kernel::mount_table::{self, MountEntry};
use crate::kernel::proof::{BusyMount, Expected, Proof, UnmountError, prove, unmount_proven};
use crate::kernel::resolve::{self, Entry, ResolveError};
use crate::ops::leaks::Elsewhere;
use crate::state::{self, Record, RecordState, StateDir};
use nix::errno::Errno;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// Is this mount the overlay of `record`? The source tag must match, and the
/// mount id too once the record knows it (a crashed mount's record may not).
pub fn is_our_overlay(entry: &MountEntry, record: &Record) -> bool {
    entry.fs_type == "overlay"
        && entry.source == record.source
        && entry.mount_point == record.target
        && record.mount_id.is_none_or(|id| id == entry.id)
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

/// Unmounts the overlay of a locked record (if it is still there) and
/// everything temporary, then deletes the record. On failure the record is
/// left in place (back to `mounted` if the overlay stays busy).
pub fn teardown(
    state: &StateDir,
    record: &mut Record,
    table: &[MountEntry],
    timeout: Duration,
) -> Result<Teardown> {
    let mut late_cancel = None;
    let mut done = Teardown::WasGone;
    let (place, proof) = prove_ours(record, table)?;
    let recorded = record.clone();
    let want = recorded.expected();
    match (proof, &place) {
        (Proof::Proven(ids), Some(place)) => {
            let was = record.state;
            // What the record says again if the overlay stays mounted.
            let restored = if was == RecordState::Preparing {
                was
            } else {
                RecordState::Mounted
            };
            record.state = RecordState::Unmounting;
            state.write_record(record)?;
            if let Err(e) = testpoint::hit(&state.cancel, "record-unmounting") {
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
            if let Err(e) = unmount_proven(place, &proven, None, timeout, &state.cancel) {
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
                        })
                    }
                    e => fail(ErrorKind::Mount, format!("{target}: {e}")),
                });
            }
            done = Teardown::Unmounted;
            // Past the point of no return: the overlay is gone and cannot
            // be put back. An interruption here lets the teardown finish
            // (temp leftovers, record, lock) and is reported after it.
            if let Err(e) = testpoint::hit(&state.cancel, "overlay-unmounted") {
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
    if let Err(problems) = remove_temp_leftovers(state, &record.id, table, timeout) {
        let text = problems
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(match problems.iter().find_map(|p| p.busy.clone()) {
            Some((mount_id, what)) => crate::base::error::Error::busy(BusyMount {
                mount_id,
                what,
                waited: timeout,
            }),
            None => fail(ErrorKind::Mount, text),
        });
    }
    state.remove_record(&record.id)?;
    state.remove_lock(&record.id);
    match late_cancel {
        Some(reason) => Err(fail(
            ErrorKind::Cancelled,
            format!(
                "{reason} after {} was unmounted; finished removing its record",
                record.target.display()
            ),
        )),
        None => Ok(done),
    }
}

/// What a teardown found at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The overlay was there and is unmounted now.
    Unmounted,
    /// The overlay was gone already; only its record (and temporary
    /// leftovers) went.
    WasGone,
}

/// Waits (up to `timeout`) for a record's lock: another mount or umount of
/// the same overlay may be running.
fn lock_record(state: &StateDir, record: &Record, timeout: Duration) -> Result<state::RecordLock> {
    let deadline = Instant::now() + timeout;
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
        if Instant::now() >= deadline {
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "overlay {} is busy with another idmap-overlay operation (a mount, umount or gc of it); try again",
                    record.id
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Unmounts the overlay recorded for `what`: its target (an absolute path)
/// or its record id (or a unique prefix of one), once the mount there is
/// proven to be the one recorded; then removes what was temporary and the
/// record. Waits up to `timeout` for a busy overlay and for copies held in
/// other mount namespaces (containers); with `detach`, unmounts this copy
/// and leaves the record `detached` until gc sees no copy anywhere.
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
    let started = Instant::now();
    let _lock = lock_record(state, &record, timeout)?;
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
    // Copies in other mount namespaces (a container runtime pivoted into
    // the overlay) count as busy: unmounting ours would leave the overlay
    // alive and unrecorded. --detach unmounts ours and keeps the record.
    let elsewhere = wait_for_other_namespaces(
        &record,
        timeout.saturating_sub(started.elapsed()),
        detach,
        &state.cancel,
    )?;
    let table = match proven_on_top(state, &record) {
        Some(entry) => vec![entry],
        None => mount_table::read()?,
    };
    if !elsewhere.is_empty() {
        return detach_here(state, &mut record, &table, timeout, &elsewhere);
    }
    if record.state != RecordState::Detached {
        refuse_foreign_at_target(&record, &table)?;
    }
    let was = record.state;
    let done = forget(state, &mut record, &table, timeout)?;
    if done == Teardown::WasGone && was == RecordState::Mounted {
        log::warn!(
            "{}: overlay {} was already unmounted; removed its record",
            record.target.display(),
            record.id
        );
    }
    // A container that copied the mount namespace between the look and the
    // unmount keeps the overlay: then the record comes back, detached.
    let late = scan_elsewhere(&record)?;
    if !late.is_empty() {
        record.state = RecordState::Detached;
        let _all = state.lock_all()?;
        state.index(&record)?;
        state.write_record(&record)?;
        log::warn!(
            "{}: unmounted here, but the overlay is still in use in {}; record {} kept as detached",
            record.target.display(),
            crate::ops::leaks::describe_elsewhere(&late),
            record.id
        );
    }
    Ok(())
}

fn scan_namespaces() -> Result<crate::kernel::namespaces::Scan> {
    crate::kernel::namespaces::Scan::live().map_err(|e| {
        fail(
            ErrorKind::System,
            format!("looking into the mount namespaces: {e}"),
        )
    })
}

/// The copies of `record`'s overlay in mount namespaces other than ours.
fn scan_elsewhere(record: &Record) -> Result<Vec<Elsewhere>> {
    Ok(crate::ops::leaks::elsewhere_of(
        &scan_for_copies(record)?,
        record,
    ))
}

/// A scan to look for `record`'s copies in: the tables alone when they
/// show none (the usual answer, at a cost that does not grow with the
/// number of processes), every process when there is one to describe.
fn scan_for_copies(record: &Record) -> Result<crate::kernel::namespaces::Scan> {
    let tables = crate::kernel::namespaces::Scan::live_tables().map_err(|e| {
        fail(
            ErrorKind::System,
            format!("looking into the mount namespaces: {e}"),
        )
    })?;
    if !tables.tables_only() || crate::ops::leaks::elsewhere_of(&tables, record).is_empty() {
        return Ok(tables);
    }
    scan_namespaces()
}

/// Waits (up to `timeout`, polling) while a process in another mount
/// namespace holds a copy of the overlay of `record` (a container pivoted
/// into it, say). Without `detach`, still held at the end is a failure that
/// names them; with it, the held copies are returned at once. Copies nobody
/// holds do not count: see `namespaces::Scan::held_copies_of`.
fn wait_for_other_namespaces(
    record: &Record,
    timeout: Duration,
    detach: bool,
    cancel: &Cancel,
) -> Result<Vec<Elsewhere>> {
    let deadline = Instant::now() + timeout;
    loop {
        let copies = crate::ops::leaks::held_elsewhere(&scan_for_copies(record)?, record);
        if copies.is_empty() || detach {
            return Ok(copies);
        }
        if let Some(reason) = cancel.reason() {
            return Err(fail(
                ErrorKind::Cancelled,
                format!("{reason}; nothing unmounted"),
            ));
        }
        if Instant::now() >= deadline {
            let in_its_own = record
                .mount_ns
                .is_some_and(|ns| copies.iter().any(|c| c.mount_ns == ns));
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "{} is still in use in {}{}; nothing unmounted (--detach unmounts it here only)",
                    record.target.display(),
                    crate::ops::leaks::describe_elsewhere(&copies),
                    if in_its_own {
                        " (it was mounted there: run umount in that namespace, e.g. nsenter -t PID -m)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50).min(deadline - Instant::now()));
    }
}

/// `umount --detach` while copies live in other namespaces: our copy (if
/// any) and temporary leftovers go, the record stays as `detached` until
/// gc finds no copy anywhere.
fn detach_here(
    state: &StateDir,
    record: &mut Record,
    table: &[MountEntry],
    timeout: Duration,
    elsewhere: &[Elsewhere],
) -> Result<()> {
    if record.state != RecordState::Detached {
        refuse_foreign_at_target(record, table)?;
        let place = resolve::resolve_entry(&record.target).map_err(|e| {
            fail(
                ErrorKind::Mount,
                format!("{e}; overlay {} left alone", record.id),
            )
        })?;
        let recorded = record.clone();
        match prove(&place, &recorded.expected(), Some(table)) {
            Proof::Proven(ids) => {
                let proven = Expected {
                    mount_id: Some(ids.id),
                    unique: ids.unique,
                    dev: Some(ids.dev),
                    ..recorded.expected()
                };
                unmount_proven(&place, &proven, None, timeout, &state.cancel).map_err(
                    |e| match e {
                        UnmountError::Cancelled(reason) => {
                            fail(ErrorKind::Cancelled, format!("{reason}; nothing unmounted"))
                        }
                        e => fail(
                            ErrorKind::Mount,
                            format!("{}: {e}", record.target.display()),
                        ),
                    },
                )?;
            }
            Proof::Nothing => {}
            Proof::NotOurs(why) => {
                return Err(fail(
                    ErrorKind::Mount,
                    format!("{}: {why}; left alone", record.target.display()),
                ));
            }
        }
    }
    if let Err(problems) = remove_temp_leftovers(state, &record.id, table, timeout) {
        let text: Vec<&str> = problems.iter().map(|p| p.text.as_str()).collect();
        return Err(fail(ErrorKind::Mount, text.join("; ")));
    }
    record.state = RecordState::Detached;
    state.write_record(record)?;
    log::warn!(
        "{}: unmounted here; still in use in {}: record {} kept as detached until no copy is left (gc removes it then)",
        record.target.display(),
        crate::ops::leaks::describe_elsewhere(elsewhere),
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
    if !matches!(prove(&place, &want, None), Proof::Proven(_)) {
        return None;
    }
    Some(MountEntry {
        id,
        parent: 0,
        root: "/".into(),
        mount_point: record.target.clone(),
        options: String::new(),
        tags: Vec::new(),
        fs_type: "overlay".into(),
        source: record.source.clone(),
        super_options: record.super_options.clone().unwrap_or_default(),
    })
}

/// `teardown`, then the record's target index entry once the record is gone
/// (even when teardown reports an interruption after finishing). Not for
/// callers holding the global lock (`mount` overwrites the entry instead).
pub fn forget(
    state: &StateDir,
    record: &mut Record,
    table: &[MountEntry],
    timeout: Duration,
) -> Result<Teardown> {
    let result = teardown(state, record, table, timeout);
    if std::fs::symlink_metadata(state.record_path(&record.id)).is_err() {
        state.unindex(&record.claimed_paths(), &record.id)?;
    }
    result
}

/// `umount` was asked for a target, and the record's overlay is not there:
/// when something else is (somebody's mount), or our overlay is found at
/// another place (its parent was renamed), refuse rather than call the
/// overlay "already unmounted" and drop the record. Nothing is unmounted.
/// `gc` still drops such a stale record: it never unmounts anything but
/// what `is_our_overlay` proves ours.
fn refuse_foreign_at_target(record: &Record, table: &[MountEntry]) -> Result<()> {
    if table.iter().any(|m| is_our_overlay(m, record)) {
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
        Ok(_) => Ok(()),
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
