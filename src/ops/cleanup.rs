//! Gathering the snapshot that `leaks::classify` judges, and carrying out
//! what `gc` decides. Everything is gathered under the state directory's
//! global lock, so no mount can be half-claimed while we look.

use crate::base::cancel::Deadline;
use crate::base::error::ErrorKind;
use crate::base::error::{Result, fail};
use crate::kernel::holders;
use crate::kernel::mount_table;
use crate::kernel::proof::UnmountError;
use crate::ops::elsewhere::{Beyond, ask_kernel, find_copies};
use crate::ops::leaks::{self, Action, Finding, Kind, Snapshot};
use crate::ops::unmounting::{forget, remove_temp_leftovers, unmount_listed};
use crate::state::StateDir;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where first sightings of foreign idmapped mounts are remembered.
const FIRST_SEEN: &str = "foreign-seen.json";

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Looks at the state directory and the mount table, under the global
/// lock (so no id or target is claimed meanwhile), holding no other lock:
/// which ids have an operation running is asked without taking their
/// locks (`StateDir::lock_is_held`), so a look never disturbs an
/// operation, and the number of open files stays the same whatever the
/// number of records. With `remember` (gc, not inspect or a dry run), the
/// first sightings of foreign idmapped mounts are written down.
///
/// `foreign_dirs` are where other programs' idmapped mounts count as
/// leaks (absolute, existing, not `/`, walked safely: an error of kind
/// `InvalidInput` otherwise). `min_age` is how long a foreign mount must
/// have been seen before gc removes it. `timeout` bounds the questions
/// about overlays no longer mounted here (the kernel's, and for read-only
/// ones a walk over the mount namespaces).
///
/// ```no_run
/// use std::time::Duration;
/// let state = idmap_overlay::StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
/// let snap = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::from_secs(5))?;
/// println!("{} records", snap.records.len());
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn gather(
    state: &StateDir,
    foreign_dirs: &[PathBuf],
    min_age: Duration,
    remember: bool,
    timeout: Duration,
) -> Result<Snapshot> {
    let foreign_dirs = foreign_dirs
        .iter()
        .map(|dir| foreign_dir(dir))
        .collect::<Result<Vec<_>>>()?;
    // A look (inspect, a dry run) creates no lock file where none is.
    let _all = match remember {
        true => Some(state.lock_all()?),
        false => state.lock_all_to_read()?,
    };
    // Running operations first, records second: an operation that was
    // running when looked at is left alone even if it changed its record
    // meanwhile; one that starts later is caught when gc takes its lock to
    // act (see `act`).
    let id_of_record = |n: &str| n.strip_suffix(".json").map(str::to_string);
    let id_of_partial = |n: &str| crate::state::partial_write_id(n).map(str::to_string);
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for name in names_in(&state.root.join("mounts")) {
        ids.extend(id_of_record(&name).or_else(|| id_of_partial(&name)));
    }
    ids.extend(names_in(&state.root.join("tmp")));
    let lock_files: Vec<String> = names_in(&state.root.join("locks"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".lock").map(str::to_string))
        .collect();
    ids.extend(lock_files.iter().cloned());
    let in_flight: BTreeSet<String> = ids
        .into_iter()
        .filter(|id| crate::state::check_id(id).is_ok() && state.lock_is_held(id))
        .collect();
    log::debug!("operations running: {in_flight:?}");

    let (records, bad_records) = state.records()?;
    let temp_dirs = names_in(&state.root.join("tmp"));
    let partial_writes: Vec<String> = names_in(&state.root.join("mounts"))
        .into_iter()
        .filter(|n| id_of_partial(n).is_some())
        .collect();
    let table = mount_table::read()?;
    let target_index = state.target_index();
    let probe_dirs = names_in(&state.root)
        .into_iter()
        .filter(|n| n.starts_with(crate::ops::features::PROBE_PREFIX) || n == "probe")
        .collect();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let first_seen = remember_foreign(state, &table, now, remember);
    // The questions about overlays gone from here get `timeout` of their
    // own, from now: reading many records on a slow machine does not use
    // it up.
    let deadline = Deadline::after(timeout, &state.cancel);
    let beyond = ask_about_the_absent(state, &records, &in_flight, &table, &deadline);
    Ok(Snapshot {
        state_root: state.root.clone(),
        records,
        bad_records,
        in_flight,
        table,
        temp_dirs,
        lock_files,
        partial_writes,
        target_index,
        probe_dirs,
        foreign_dirs,
        first_seen,
        now,
        min_age: min_age.as_secs(),
        beyond,
        cancel: state.cancel.clone(),
        ..Default::default()
    })
}

impl Snapshot {
    /// Asks the kernel, as [`gather`] does, whether the overlays of the
    /// records `ids` live on elsewhere (those not mounted here and with no
    /// operation running; a read-only one by a walk over the mount
    /// namespaces), until `timeout`; the answers replace what the snapshot
    /// had. For a snapshot gathered with a zero timeout, which asks about
    /// nothing: `inspect --poll` asks only about the records that changed,
    /// since each question writes a line to the kernel log.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let state = idmap_overlay::StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
    /// let mut snap = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::ZERO)?;
    /// snap.ask_about(&state, &["6b16a2f0".to_string()], Duration::from_secs(5));
    /// # Ok::<(), idmap_overlay::Error>(())
    /// ```
    pub fn ask_about(&mut self, state: &StateDir, ids: &[String], timeout: Duration) {
        let records: Vec<crate::state::Record> = self
            .records
            .iter()
            .filter(|r| ids.contains(&r.id))
            .cloned()
            .collect();
        let deadline = Deadline::after(timeout, &state.cancel);
        let answers =
            ask_about_the_absent(state, &records, &self.in_flight, &self.table, &deadline);
        self.beyond.extend(answers);
    }

    /// Takes the word of a [`Watch`](crate::Watch) that the overlays of the
    /// records `ids` died everywhere ([`Watch::died`](crate::Watch::died)):
    /// where not mounted here, they live on nowhere, whatever
    /// [`Snapshot::ask_about`] was told. The watch hears of a death when
    /// the superblock is shut down, a moment before overlayfs lets go of
    /// the upper directory, which until then still probes in use.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let state = idmap_overlay::StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
    /// # let mut watch = idmap_overlay::Watch::new(&state)?;
    /// let died = watch.died();
    /// let mut snap = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::ZERO)?;
    /// snap.ask_about(&state, &died, Duration::from_secs(5));
    /// snap.died(&died);
    /// # Ok::<(), idmap_overlay::Error>(())
    /// ```
    pub fn died(&mut self, ids: &[String]) {
        for id in ids {
            if self.records.iter().any(|r| &r.id == id) {
                self.beyond.insert(id.clone(), Beyond::Gone);
            }
        }
    }
}

/// For each record whose overlay is not mounted here (and no operation is
/// running on it): does it live on elsewhere? Asked of the kernel, one
/// question per record (is its upperdir in use); for those the kernel
/// cannot answer (read-only overlays have no upperdir), one walk over the
/// mount namespaces for all of them together. What is not asked before
/// `deadline` is unknown, which keeps the record.
fn ask_about_the_absent(
    state: &StateDir,
    records: &[crate::state::Record],
    in_flight: &BTreeSet<String>,
    table: &[mount_table::MountEntry],
    deadline: &Deadline,
) -> BTreeMap<String, Beyond> {
    let mut prober = crate::ops::features::prober(state);
    let mut answers = BTreeMap::new();
    let mut to_walk = Vec::new();
    // Our overlays here by source tag: every record is looked up once,
    // not against the whole table (10,000 records beside 12,000 mounts).
    let mut here: std::collections::HashMap<&str, Vec<&mount_table::MountEntry>> =
        std::collections::HashMap::new();
    for m in table.iter().filter(|m| m.fs_type == "overlay") {
        here.entry(m.source.as_str()).or_default().push(m);
    }
    for record in records {
        let mounted_here = here
            .get(record.source.as_str())
            .is_some_and(|list| list.iter().any(|m| record.is_overlay(m)));
        if in_flight.contains(&record.id) || mounted_here {
            continue;
        }
        let answer = if deadline.is_over() {
            Beyond::Unknown("not asked before the time was up".into())
        } else {
            match (ask_kernel(record, &mut prober), record.device()) {
                (Beyond::Unknown(_), Some(device)) => {
                    to_walk.push((record.id.clone(), device));
                    continue;
                }
                // A read-only overlay never recorded as mounted: nothing
                // to look for, and nothing it could corrupt.
                (Beyond::Unknown(_), None) if record.upperdir.is_none() => Beyond::Gone,
                (answer, _) => answer,
            }
        };
        answers.insert(record.id.clone(), answer);
    }
    if !to_walk.is_empty() {
        let devices = to_walk.iter().map(|(_, d)| *d).collect();
        let own = crate::kernel::namespaces::current_namespace().ok();
        let copies = find_copies(&devices, own, &Default::default(), deadline);
        for (id, device) in to_walk {
            let tag = crate::state::source_tag(&id);
            answers.insert(id, copies.beyond(device, &tag));
        }
    }
    answers
}

/// Updates the first-sighting times of idmapped mounts that are not ours
/// (the kernel keeps no mount times) and returns them.
fn remember_foreign(
    state: &StateDir,
    table: &[mount_table::MountEntry],
    now: u64,
    remember: bool,
) -> BTreeMap<String, u64> {
    let path = state.root.join(FIRST_SEEN);
    let known: BTreeMap<String, u64> = crate::state::read_state_file(&path, 16 << 20)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let seen: BTreeMap<String, u64> = table
        .iter()
        .filter(|m| m.is_idmapped() && !m.mount_point.starts_with(&state.root))
        .map(|m| {
            let key = leaks::foreign_key(m);
            let when = known.get(&key).copied().unwrap_or(now);
            (key, when)
        })
        .collect();
    if remember && seen != known {
        let written = serde_json::to_string(&seen)
            .map_err(std::io::Error::other)
            .and_then(|text| {
                crate::state::atomic_write::write(&path, text.as_bytes(), 0o600, false)
            });
        if let Err(e) = written {
            log::warn!("cannot remember foreign mounts in {}: {e}", path.display());
        }
    }
    seen
}

/// Checks a directory where foreign leaks (another tool's idmapped mounts)
/// are looked for: absolute, existing, not `/`, walked safely (a directory
/// a user could redirect would let them choose what gc unmounts). Returns
/// its canonical path.
pub fn foreign_dir(dir: &Path) -> Result<PathBuf> {
    let invalid = |why: String| fail(ErrorKind::InvalidInput, why).with_path(dir);
    if !dir.is_absolute() {
        return Err(invalid(format!("{}: not an absolute path", dir.display())));
    }
    let resolved = crate::kernel::resolve::resolve_dir(dir)
        .map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
    if resolved.path == Path::new("/") {
        return Err(invalid(
            "foreign directory /: every idmapped mount on the host would count as leaked; name the directory where leaks appear".into(),
        ));
    }
    Ok(resolved.path)
}

/// One line of the gc report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub kind: Kind,
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub version: u32,
    pub dry_run: bool,
    /// Cleaned, or in a dry run what would be.
    pub cleaned: Vec<Item>,
    /// Could not be cleaned; bad records, which gc never touches, too.
    /// Empty in a dry run: nothing is done, so nothing fails.
    pub failed: Vec<Item>,
    /// Found but left alone on purpose (foreign mounts without `--foreign`
    /// or too young, an operation running on it; in a dry run, bad
    /// records).
    pub skipped: Vec<Item>,
    /// The run was cancelled before it was done: the signal that did it,
    /// or 0 when [`Cancel::cancel`](crate::base::cancel::Cancel::cancel) was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<i32>,
}

fn item(finding: &Finding, reason: String) -> Item {
    Item {
        kind: finding.kind,
        path: finding.path.clone(),
        reason,
    }
}

/// Unmounts a mount found in a table, after checking the same mount (by
/// id) is still the one on top at that place.
fn unmount_checked(
    path: &Path,
    mount_id: u64,
    table: &[mount_table::MountEntry],
    timeout: Duration,
    cancel: &crate::base::cancel::Cancel,
) -> Result<(), Problem> {
    let Some(entry) = table
        .iter()
        .find(|m| m.id == mount_id && m.mount_point == path)
    else {
        return Ok(()); // already gone
    };
    if mount_table::top_at(table, path).map(|m| m.id) != Some(mount_id) {
        return Err(Problem::Failed("another mount is stacked on it".into()));
    }
    unmount_listed(entry, timeout, cancel).map_err(Problem::from)
}

/// Another program's mount under a `--foreign` directory is unmounted only
/// if the ownership rule allows it where it is: when a user's directory
/// (or symlink) leads to it, the mount must be that user's own, since the
/// user could have moved somebody else's mount there (renaming a directory
/// that holds a mountpoint moves the mount along).
fn placed_by_root(path: &Path) -> Result<(), Problem> {
    let entry = crate::kernel::resolve::resolve_entry(path)
        .map_err(|e| Problem::Failed(format!("{e}; not unmounted")))?;
    let (leader, through) = &entry.leader;
    if *leader == 0 {
        return Ok(());
    }
    let owner = entry
        .open()
        .and_then(|fd| crate::kernel::resolve::meta_of(std::os::fd::AsFd::as_fd(&fd)))
        .map_err(|e| Problem::Failed(format!("{e}; not unmounted")))?
        .uid;
    if owner == *leader {
        return Ok(());
    }
    Err(Problem::Failed(format!(
        "it is reached through {} of uid {leader}, who could have moved it there, and is not theirs (uid {owner}); not unmounted",
        through.display()
    )))
}

/// Removes a target index entry if it still names `id` and `id` still has
/// no record, under the global lock (mount writes entries under it).
fn remove_stale_index(state: &StateDir, path: &Path, id: &str) -> Result<(), Problem> {
    let _all = state
        .lock_all()
        .map_err(|e| Problem::Failed(format!("{e:#}")))?;
    let leftover_temp = id.is_empty();
    let still = leftover_temp
        || (crate::state::read_small_file(path).as_deref() == Some(id)
            && std::fs::symlink_metadata(state.record_path(id)).is_err());
    if still && std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path).map_err(|e| Problem::Failed(e.to_string()))?;
    }
    Ok(())
}

/// Why one action did not complete.
#[derive(Debug)]
enum Problem {
    /// Still busy (EBUSY): tried again until gc's deadline. The mount id,
    /// to name the holders if it stays busy.
    Busy(u64),
    /// Not acted on, on purpose (an operation on it is running, or it
    /// changed since gc looked): for the next run.
    Skipped(String),
    Failed(String),
}

impl From<UnmountError> for Problem {
    fn from(e: UnmountError) -> Problem {
        match e {
            UnmountError::Busy { mount_id, .. } => Problem::Busy(mount_id),
            e => Problem::Failed(e.to_string()),
        }
    }
}

/// Carries out one finding, once (no waiting on a busy mount: `collect`
/// retries). The id's lock is taken first, and the record read again under
/// it must be the one that was judged: an operation may have run on it
/// since the snapshot.
fn act(state: &StateDir, snap: &Snapshot, finding: &Finding) -> Result<(), Problem> {
    let _lock = match &finding.id {
        Some(id) if crate::state::check_id(id).is_ok() => match state.try_lock_record(id) {
            Ok(Some(lock)) => Some(lock),
            Ok(None) => return Err(Problem::Skipped("an operation on it is running".into())),
            Err(e) => return Err(Problem::Failed(format!("{e:#}"))),
        },
        _ => None,
    };
    if let Some(id) = &finding.id {
        let judged = snap.records.iter().find(|r| &r.id == id);
        let now = StateDir::read_record_file(&state.record_path(id)).ok();
        if judged != now.as_ref() {
            return Err(Problem::Skipped(
                "its record changed since gc looked; left for the next run".into(),
            ));
        }
    }
    let table = &snap.table;
    match &finding.action {
        Action::Teardown { id } => match StateDir::read_record_file(&state.record_path(id)) {
            Ok(mut record) => forget(
                state,
                &mut record,
                table,
                &Deadline::after(Duration::ZERO, &state.cancel),
                snap.beyond.get(id).cloned(),
            )
            .map(|_| ())
            .map_err(|e| match e.busy_mount() {
                Some(mount_id) => Problem::Busy(mount_id),
                None => Problem::Failed(format!("{e:#}")),
            }),
            Err(problem) => Err(Problem::Failed(format!("record {problem}"))),
        },
        Action::RemoveTemps { id } => remove_temp_leftovers(state, id, table, Duration::ZERO)
            .map_err(
                |problems| match problems.iter().find_map(|p| p.busy.as_ref()) {
                    Some((mount_id, _)) => Problem::Busy(*mount_id),
                    None => Problem::Failed(
                        problems
                            .iter()
                            .map(|p| p.text.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                },
            ),
        Action::RemoveStaleIndex { id } => remove_stale_index(state, &finding.path, id),
        Action::Unmount { mount_id } if finding.kind == Kind::TempMount => unmount_checked(
            &finding.path,
            *mount_id,
            table,
            Duration::ZERO,
            &state.cancel,
        ),
        // Other programs' mounts change under us: look again first, and
        // only what no user could have moved there.
        Action::Unmount { mount_id } => match mount_table::read() {
            Ok(now) => placed_by_root(&finding.path).and_then(|()| {
                unmount_checked(
                    &finding.path,
                    *mount_id,
                    &now,
                    Duration::ZERO,
                    &state.cancel,
                )
            }),
            Err(e) => Err(Problem::Failed(format!("{e:#}"))),
        },
        Action::RemoveFile => match std::fs::remove_file(&finding.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Problem::Failed(e.to_string()))
            }
            _ => Ok(()),
        },
        Action::RemoveProbe => match crate::ops::features::remove_probe_dir(&finding.path) {
            None => Ok(()),
            Some(why) => Err(Problem::Failed(why)),
        },
        Action::None => Ok(()),
    }
}

/// Acts on every finding (or, with `dry_run`, only says what it would do).
///
/// ```no_run
/// use idmap_overlay::StateDir;
/// use std::time::Duration;
///
/// let state = StateDir::open("/run/idmap-overlay".as_ref())?;
/// let snapshot = idmap_overlay::gather(&state, &[], Duration::from_secs(60), true, Duration::from_secs(5))?;
/// let report = idmap_overlay::collect(&state, &snapshot, false, Duration::from_secs(5))?;
/// for item in &report.failed {
///     eprintln!("{}: {}", item.path.display(), item.reason);
/// }
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
///
/// A busy mount does not hold the others up: every busy one is tried
/// again, round after round, until one deadline `timeout` after the start,
/// so a timer run takes at most the scan plus `timeout` plus one pass.
/// A signal (SIGINT, SIGTERM) stops it after the item in hand; what is
/// left is for the next run, and the report says `interrupted`.
pub fn collect(
    state: &StateDir,
    snap: &Snapshot,
    dry_run: bool,
    timeout: Duration,
) -> Result<Report> {
    let started = Instant::now();
    let findings = leaks::classify(snap);
    let mut report = Report {
        version: 1,
        dry_run,
        ..Default::default()
    };
    let mut busy: Vec<(&Finding, u64)> = Vec::new();
    // Ids whose lock file gc may have created by taking the lock.
    let touched: BTreeSet<String> = findings.iter().filter_map(|f| f.id.clone()).collect();
    for finding in &findings {
        if finding.action == Action::None {
            // A bad record is a failure of the run (a person must look),
            // but a dry run fails nothing: it only says gc leaves it.
            if finding.kind == Kind::BadRecord && !dry_run {
                report.failed.push(item(finding, finding.why.clone()));
            } else {
                report.skipped.push(item(finding, finding.why.clone()));
            }
            continue;
        }
        if dry_run {
            report.cleaned.push(item(finding, finding.why.clone()));
            continue;
        }
        if state.cancel.is_cancelled() {
            report
                .skipped
                .push(item(finding, "interrupted; left for the next run".into()));
            continue;
        }
        record_outcome(&mut report, &mut busy, finding, act(state, snap, finding));
    }
    let mut pause = Duration::from_millis(5);
    while !busy.is_empty() && !state.cancel.is_cancelled() {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(100));
        for (finding, _) in std::mem::take(&mut busy) {
            record_outcome(&mut report, &mut busy, finding, act(state, snap, finding));
        }
    }
    // Whenever the signal landed (between items, while one was in hand,
    // during a pause), the run was interrupted.
    if state.cancel.is_cancelled() {
        report.interrupted = Some(state.cancel.signal().unwrap_or(0));
    }
    let waited = started.elapsed();
    // Who holds what stayed busy: one walk over /proc for all of them.
    let targets = holders::Targets {
        mount_ids: busy.iter().map(|(_, id)| *id).collect(),
        devices: Default::default(),
    };
    let found = if busy.is_empty() {
        holders::Found::default()
    } else {
        holders::find(
            Path::new("/proc"),
            &targets,
            Some(std::process::id()),
            &Deadline::after(Duration::from_secs(1), &state.cancel),
        )
    };
    for (finding, mount_id) in busy {
        let of_this = holders::Found {
            holders: found
                .holders
                .iter()
                .filter(|h| h.mount_id == mount_id)
                .cloned()
                .collect(),
            complete: found.complete,
        };
        report.failed.push(item(
            finding,
            format!(
                "busy after {}: held by {}",
                crate::base::duration::human(waited),
                holders::describe(&of_this)
            ),
        ));
    }
    if !dry_run {
        sweep_lock_files(
            state,
            snap.lock_files.iter().chain(&touched),
            &snap.in_flight,
        );
    }
    Ok(report)
}

fn record_outcome<'a>(
    report: &mut Report,
    busy: &mut Vec<(&'a Finding, u64)>,
    finding: &'a Finding,
    outcome: Result<(), Problem>,
) {
    match outcome {
        Ok(()) => {
            log::info!("{}", what_was_done(finding));
            report.cleaned.push(item(finding, finding.why.clone()));
        }
        Err(Problem::Busy(mount_id)) => busy.push((finding, mount_id)),
        Err(Problem::Skipped(why)) => report.skipped.push(item(finding, why)),
        Err(Problem::Failed(why)) => report.failed.push(item(finding, why)),
    }
}

/// What gc did about a finding, for `-v`, as `umount -v` says what it
/// unmounted (the report says why it was a leak).
fn what_was_done(finding: &Finding) -> String {
    let path = finding.path.display();
    let kind = serde_json::to_value(finding.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match &finding.action {
        Action::Teardown { id } if finding.kind == Kind::CrashedOperation => {
            format!("cleaned up {path} after the operation on overlay {id} that died")
        }
        Action::Teardown { id } => {
            format!("removed the record of overlay {id}, gone from {path} and everywhere")
        }
        Action::RemoveTemps { id } => {
            format!("removed the temporary mounts of overlay {id} ({path})")
        }
        Action::RemoveStaleIndex { id } => {
            format!("removed {path}, an index entry of record {id}, which is gone")
        }
        Action::Unmount { mount_id } => format!("unmounted {path} (mount {mount_id}, {kind})"),
        Action::RemoveFile | Action::RemoveProbe => format!("removed {path} ({kind})"),
        Action::None => format!("{path}: nothing to do ({kind})"),
    }
}

/// Lock files of ids that have no record and no operation: removed under
/// the global lock, so a mount claiming one of these ids again (it claims
/// under that lock) keeps its own. Only ids gc looked at or acted on, and
/// only when their lock is free right now.
fn sweep_lock_files<'a>(
    state: &StateDir,
    ids: impl Iterator<Item = &'a String>,
    in_flight: &BTreeSet<String>,
) {
    let Ok(_all) = state.lock_all() else {
        return;
    };
    for id in ids {
        if crate::state::check_id(id).is_err()
            || in_flight.contains(id)
            || state.lock_is_held(id)
            || std::fs::symlink_metadata(state.record_path(id)).is_ok()
        {
            continue;
        }
        state.remove_lock(id);
    }
}
