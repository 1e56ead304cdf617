//! Gathering the snapshot that `findings::classify` judges, and carrying out
//! what `gc` decides. Everything is gathered under the state directory's
//! global lock, so no mount can be half-claimed while we look.

use crate::exit::Code;
use crate::findings::{self, Action, Finding, Kind, Snapshot};
use crate::mountinfo;
use crate::state::{RecordLock, StateDir};
use crate::umount::{forget, remove_temp_leftovers, unmount_listed};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The snapshot, plus (for `gc`) the locks of every idmap-overlay id that
/// is not in flight, held until the actions are done.
pub struct Gathered {
    pub snapshot: Snapshot,
    pub locks: BTreeMap<String, RecordLock>,
}

/// Looks at the state directory and the mount table. With `hold_locks`
/// (gc) it takes and keeps the lock of every id it may act on; without
/// (inspect) it only tests them.
pub fn gather(
    state: &StateDir,
    foreign_dirs: Vec<PathBuf>,
    min_age: Duration,
    hold_locks: bool,
) -> Result<Gathered> {
    let _all = state.lock_all()?;
    // Lock first, read second: an operation that is running can change its
    // record and temp files at any moment, so what we read of an id is only
    // trusted once we hold its lock. New ids cannot appear meanwhile: a
    // mount claims its id under the global lock we hold.
    let id_of_record = |n: &str| n.strip_suffix(".json").map(str::to_string);
    let id_of_partial = |n: &str| {
        n.strip_prefix('.')
            .and_then(|n| n.strip_suffix(".json.tmp"))
            .map(str::to_string)
    };
    let mut ids: BTreeSet<String> = BTreeSet::new();
    for name in names_in(&state.root.join("mounts")) {
        ids.extend(id_of_record(&name).or_else(|| id_of_partial(&name)));
    }
    ids.extend(names_in(&state.root.join("tmp")));
    ids.extend(
        names_in(&state.root.join("locks"))
            .iter()
            .filter_map(|n| n.strip_suffix(".lock").map(str::to_string)),
    );
    // Lock files as found, before we take locks below: taking one creates
    // its file, and what gc creates itself is no leftover to report (it
    // removes those silently when done).
    let lock_files: Vec<String> = names_in(&state.root.join("locks"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".lock").map(str::to_string))
        .collect();
    let mut in_flight = BTreeSet::new();
    let mut locks = BTreeMap::new();
    for id in ids {
        if crate::state::check_id(&id).is_err() {
            continue;
        }
        let free = if hold_locks {
            match state.try_lock_record(&id)? {
                Some(lock) => {
                    locks.insert(id.clone(), lock);
                    true
                }
                None => false,
            }
        } else {
            !state.lock_is_held(&id)
        };
        log::debug!("{id}: lock {}", if free { "free" } else { "held" });
        if !free {
            in_flight.insert(id);
        }
    }

    let (records, bad_records) = state.records()?;
    let temp_dirs = names_in(&state.root.join("tmp"));
    let partial_writes: Vec<String> = names_in(&state.root.join("mounts"))
        .into_iter()
        .filter(|n| id_of_partial(n).is_some())
        .collect();
    let table = mountinfo::read()?;
    let target_index = state.target_index();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let first_seen = remember_foreign(state, &table, now);
    Ok(Gathered {
        snapshot: Snapshot {
            state_root: state.root.clone(),
            records,
            bad_records,
            in_flight,
            table,
            temp_dirs,
            lock_files,
            partial_writes,
            target_index,
            foreign_dirs,
            first_seen,
            now,
            min_age: min_age.as_secs(),
            ..Default::default()
        },
        locks,
    })
}

/// Updates the first-sighting times of idmapped mounts that are not ours
/// (the kernel keeps no mount times) and returns them.
fn remember_foreign(
    state: &StateDir,
    table: &[mountinfo::MountEntry],
    now: u64,
) -> BTreeMap<String, u64> {
    let path = state.root.join(FIRST_SEEN);
    let known: BTreeMap<String, u64> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let seen: BTreeMap<String, u64> = table
        .iter()
        .filter(|m| m.is_idmapped() && !m.mount_point.starts_with(&state.root))
        .map(|m| {
            let key = findings::foreign_key(m);
            let when = known.get(&key).copied().unwrap_or(now);
            (key, when)
        })
        .collect();
    if seen != known {
        let temp = state.root.join(format!(".{FIRST_SEEN}.tmp"));
        let written = serde_json::to_string(&seen)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(&temp, text))
            .and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            log::warn!("cannot remember foreign mounts in {}: {e}", path.display());
        }
    }
    seen
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
    pub cleaned: Vec<Item>,
    pub failed: Vec<Item>,
    /// Found but left alone on purpose (foreign mounts without `--foreign`
    /// or too young).
    pub skipped: Vec<Item>,
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
    table: &[mountinfo::MountEntry],
    timeout: Duration,
) -> Result<(), String> {
    let Some(entry) = table
        .iter()
        .find(|m| m.id == mount_id && m.mount_point == path)
    else {
        return Ok(()); // already gone
    };
    if mountinfo::top_at(table, path).map(|m| m.id) != Some(mount_id) {
        return Err("another mount is stacked on it".into());
    }
    unmount_listed(entry, timeout)
}

/// Removes a target index entry if it still names `id` and `id` still has
/// no record, under the global lock (mount writes entries under it).
fn remove_stale_index(state: &StateDir, path: &Path, id: &str) -> Result<(), String> {
    let _all = state.lock_all().map_err(|e| format!("{e:#}"))?;
    let leftover_temp = id.is_empty();
    let still = leftover_temp
        || (crate::state::read_small_file(path).as_deref() == Some(id)
            && std::fs::symlink_metadata(state.record_path(id)).is_err());
    if still && std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Acts on every finding (or, with `dry_run`, only says what it would do).
pub fn collect(
    state: &StateDir,
    mut gathered: Gathered,
    dry_run: bool,
    timeout: Duration,
) -> Result<Report> {
    let findings = findings::classify(&gathered.snapshot);
    // Let go at once of the ids we will not touch, so a umount of a
    // healthy overlay need not wait for a long gc.
    let acting: BTreeSet<String> = findings
        .iter()
        .filter(|f| f.action != Action::None)
        .filter_map(|f| f.id.clone())
        .collect();
    gathered.locks.retain(|id, _| acting.contains(id));
    let table = &gathered.snapshot.table;
    let mut report = Report {
        version: 1,
        dry_run,
        ..Default::default()
    };
    for finding in &findings {
        if finding.action == Action::None {
            if finding.kind == Kind::BadRecord {
                report.failed.push(item(finding, finding.why.clone()));
            } else {
                report.skipped.push(item(finding, finding.why.clone()));
            }
            continue;
        }
        if dry_run {
            report
                .cleaned
                .push(item(finding, format!("would clean: {}", finding.why)));
            continue;
        }
        let result: Result<(), String> = match &finding.action {
            // We hold the lock of every id we act on, so what the snapshot
            // says of our own mounts still holds: no need to re-read the
            // table (12,000 lines) for each of thousands of leaks.
            Action::Teardown { id } => match StateDir::read_record_file(&state.record_path(id)) {
                Ok(mut record) => {
                    forget(state, &mut record, table, timeout).map_err(|e| format!("{e:#}"))
                }
                Err(problem) => Err(format!("record {problem}")),
            },
            Action::RemoveTemps { id } => {
                let problems = remove_temp_leftovers(state, id, table, timeout);
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
            Action::RemoveStaleIndex { id } => remove_stale_index(state, &finding.path, id),
            Action::Unmount { mount_id } if finding.kind == Kind::TempMount => {
                unmount_checked(&finding.path, *mount_id, table, timeout)
            }
            // Other programs' mounts change under us: look again first.
            Action::Unmount { mount_id } => match mountinfo::read() {
                Ok(now) => unmount_checked(&finding.path, *mount_id, &now, timeout),
                Err(e) => Err(format!("{e:#}")),
            },
            Action::RemoveFile => match std::fs::remove_file(&finding.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Action::None => Ok(()),
        };
        match result {
            Ok(()) => report.cleaned.push(item(finding, finding.why.clone())),
            Err(why) => report.failed.push(item(finding, why)),
        }
    }
    if !dry_run {
        // Lock files of ids that now have no record: under the global lock,
        // so a mount that just claimed one of these ids again keeps its own.
        let _all = state.lock_all()?;
        for id in gathered.locks.keys() {
            if std::fs::symlink_metadata(state.record_path(id)).is_err() {
                state.remove_lock(id);
            }
        }
    }
    drop(gathered.locks);
    Ok(report)
}

/// The exit code of a gc run.
pub fn exit_code(report: &Report) -> Code {
    if report.failed.is_empty() {
        Code::Success
    } else {
        Code::Partial
    }
}
