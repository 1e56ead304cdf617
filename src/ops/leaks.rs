//! One view of the world for `inspect` and `gc`: a snapshot of the state
//! directory, this namespace's mount table and the kernel's answers about
//! overlays not mounted here goes in, a list of findings comes out.
//! `inspect --leaks` renders the findings, `gc` acts on them, so the two can
//! never disagree. `classify` is pure and tested with fixture data.

use crate::kernel::mount_table::MountEntry;
use crate::ops::elsewhere::{Beyond, Elsewhere, describe};
use crate::state::{BadRecord, Record, RecordState, source_tag};
use serde::Serialize;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Everything `classify` looks at, gathered under the state directory's
/// global lock.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub state_root: PathBuf,
    pub records: Vec<Record>,
    pub bad_records: Vec<BadRecord>,
    /// Ids whose lock is held by a running operation: never touched.
    pub in_flight: BTreeSet<String>,
    pub table: Vec<MountEntry>,
    /// Entry names under `<state>/tmp/`.
    pub temp_dirs: Vec<String>,
    /// Ids that have a file under `<state>/locks/`.
    pub lock_files: Vec<String>,
    /// Names of leftover `.<id>.json.<pid>.<n>.tmp` files under `<state>/mounts/`.
    pub partial_writes: Vec<String>,
    /// Probe directories (`probe.<pid>`) in the state directory: the probe
    /// runs under the global lock, so one seen while gc holds it is a
    /// crash's.
    pub probe_dirs: Vec<String>,
    /// Target index entries under `<state>/targets/`: (file name, id named).
    pub target_index: Vec<(String, String)>,
    /// Directories below which idmapped mounts of other programs are leaks
    /// (`gc --foreign DIR`).
    pub foreign_dirs: Vec<PathBuf>,
    /// When each foreign idmapped mount was first seen (key: see
    /// [`foreign_key`]), in seconds since the epoch.
    pub first_seen: BTreeMap<String, u64>,
    pub now: u64,
    pub min_age: u64,
    /// For each record whose overlay is not mounted here: does it live on
    /// elsewhere? The kernel's answer (see `elsewhere`), by record id.
    pub beyond: BTreeMap<String, Beyond>,
    /// Where copies live, by record id, when they were looked for (the
    /// detail of one overlay in `inspect`), with how many there were in
    /// all: the list is cut at [`NAMED_COPIES`]. Empty otherwise.
    pub named: BTreeMap<String, (Vec<Elsewhere>, usize)>,
    /// Caches, built on first use (leave them default) so each record is
    /// judged without rescanning the whole table: records times mounts
    /// grows too fast on a busy host.
    pub(crate) temp_index: OnceCell<BTreeMap<String, Vec<usize>>>,
    /// The cancel flag of the state directory it was gathered from: a
    /// later look (`look_for_copies`) stops on it too.
    pub(crate) cancel: crate::base::cancel::Cancel,
    pub(crate) overlay_index: OnceCell<HashMap<String, Vec<usize>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A mount or umount that died midway (its lock is free): roll it back,
    /// or finish the unmount it had started.
    CrashedOperation,
    /// A `mounted` record whose overlay is gone.
    VanishedOverlay,
    /// A temporary idmapped mount of ours that is still attached.
    TempMount,
    /// A leftover directory under `<state>/tmp/`.
    TempDir,
    /// A lock file or half-written record with no operation behind it.
    StaleFile,
    /// A record file we cannot use (corrupt, symlink, future version):
    /// reported, never touched.
    BadRecord,
    /// An overlay of ours gone from this mount namespace but attached in
    /// another (a container keeps it): not a leak, nothing to clean.
    AliveElsewhere,
    /// An overlay with our source tag but no record here (another
    /// `--state-dir`, or a record lost by hand): reported, left alone.
    UntrackedOverlay,
    /// An idmapped mount of another program that looks leaked (containerd's
    /// `ovl-idmapped*` temp mounts, or any below a `--foreign` directory).
    ForeignMount,
}

/// What `gc` does about a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// Tear down the record `id` (overlay if ours, temp mounts, dirs, record).
    Teardown {
        id: String,
    },
    /// Unmount and remove (rmdir) only the temporary mounts and directories
    /// of `id`: for a healthy overlay's leftovers, or a temp dir with no
    /// record at all.
    RemoveTemps {
        id: String,
    },
    /// Remove a target index entry that names `id`, whose record is gone
    /// (checked again under the global lock, where mount writes entries).
    RemoveStaleIndex {
        id: String,
    },
    /// Unmount the mount `mount_id` at the finding's path.
    Unmount {
        mount_id: u64,
    },
    RemoveFile,
    /// Remove a probe directory (rmdir only).
    RemoveProbe,
    /// Nothing: report only.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub path: PathBuf,
    pub id: Option<String>,
    pub mount_id: Option<u64>,
    pub why: String,
    #[serde(flatten)]
    pub action: Action,
}

/// The key under which a foreign mount's first sighting is remembered: the
/// kernel keeps no mount times, and reuses mount ids, so id and place.
pub fn foreign_key(entry: &MountEntry) -> String {
    format!("{}:{}", entry.id, entry.mount_point.display())
}

/// Does this mountpoint look like a temporary idmapped mount of containerd
/// (`.../tmpmounts/ovl-idmapped*`, or the shim's `/tmp/ovl-idmapped*`)?
pub fn looks_like_containerd_leak(mount_point: &Path) -> bool {
    mount_point
        .ancestors()
        .filter_map(|a| a.file_name())
        .any(|name| name.to_string_lossy().starts_with("ovl-idmapped"))
}

/// At most this many copies are listed for one overlay (a flood of
/// namespaces could hold tens of thousands); the count says how many more.
pub const NAMED_COPIES: usize = 100;

/// Health of one record, for `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// One word: see [`Health::word`].
    pub word: String,
    /// The overlay at the target is ours (source tag and mount id), in the
    /// mount namespace looking.
    pub mounted: bool,
    /// The operation's process still holds the record's lock.
    pub owner_alive: bool,
    pub temp_mounts_present: Vec<PathBuf>,
    /// For an overlay not mounted here: does it live on elsewhere? `true`,
    /// `false`, or `null` when the kernel could not say (or, mounted
    /// here, it was not asked).
    pub alive_elsewhere: Option<bool>,
    /// How that is known, or why it cannot be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elsewhere_because: Option<String>,
    /// Where copies live, when they were looked for (`inspect` of one
    /// overlay); empty otherwise. At most [`NAMED_COPIES`] of them.
    pub elsewhere: Vec<Elsewhere>,
    /// How many copies were found in all, when more than are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elsewhere_total: Option<usize>,
    pub leaked: bool,
}

impl Health {
    /// One word for the table: `running` (an operation holds its lock),
    /// `leaked`, `ok` (mounted here), `elsewhere` (not here, alive in
    /// another mount namespace), `unknown` (not here, and the kernel cannot
    /// say whether it lives on), `gone`.
    fn word_of(&self) -> &'static str {
        match (
            self.owner_alive,
            self.leaked,
            self.mounted,
            self.alive_elsewhere,
        ) {
            (true, ..) => "running",
            (_, true, ..) => "leaked",
            (_, _, true, _) => "ok",
            (_, _, false, Some(true)) => "elsewhere",
            (_, _, false, None) => "unknown",
            (_, _, false, Some(false)) => "gone",
        }
    }

    pub fn word(&self) -> String {
        self.word.clone()
    }

    /// The id maps the kernel reports for one of the overlay's idmapped
    /// mounts: a temporary one still attached, if any (statmount(2),
    /// Linux 6.15+).
    pub fn kernel_idmaps(&self) -> crate::kernel::mount_table::KernelIdmaps {
        match self.temp_mounts_present.first() {
            Some(temp) => crate::kernel::mount_table::kernel_idmaps(temp),
            None => crate::kernel::mount_table::KernelIdmaps::NothingAttached,
        }
    }

    /// Is the overlay alive anywhere, here or elsewhere, or perhaps?
    pub fn alive(&self) -> bool {
        self.mounted || self.alive_elsewhere != Some(false)
    }
}

impl Snapshot {
    fn temp_root(&self) -> PathBuf {
        self.state_root.join("tmp")
    }

    /// Temporary mounts of `id` still attached, deepest first.
    fn temp_mounts_of(&self, id: &str) -> Vec<&MountEntry> {
        let index = self.temp_index.get_or_init(|| {
            let root = self.temp_root();
            let mut index: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, m) in self.table.iter().enumerate() {
                if let Some(id) = id_under(&root, &m.mount_point) {
                    index.entry(id).or_default().push(i);
                }
            }
            for list in index.values_mut() {
                list.sort_by_key(|i| {
                    std::cmp::Reverse(self.table[*i].mount_point.components().count())
                });
            }
            index
        });
        index
            .get(id)
            .map(|list| list.iter().map(|i| &self.table[*i]).collect())
            .unwrap_or_default()
    }

    /// Is the overlay of `record` in the table (source tag, place, mount id)?
    pub fn overlay_mounted(&self, record: &Record) -> bool {
        let index = self.overlay_index.get_or_init(|| {
            let mut index: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, m) in self.table.iter().enumerate() {
                if m.fs_type == "overlay" {
                    index.entry(m.source.clone()).or_default().push(i);
                }
            }
            index
        });
        index
            .get(&record.source)
            .is_some_and(|list| list.iter().any(|i| record.is_overlay(&self.table[*i])))
    }

    /// The record `what` names: a target (an argument with a `/`, walked
    /// as `umount` walks it), or a record id or a unique prefix of one (4
    /// characters or more). An error of kind `InvalidInput` names what is
    /// wrong; one of kind `State` says why the record it names cannot be
    /// read.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let state = idmap_overlay::StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
    /// let snap = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::from_secs(5))?;
    /// let record = snap.find("/run/c1/rootfs")?;
    /// println!("{} is {}", record.id, snap.health(record).word());
    /// # Ok::<(), idmap_overlay::Error>(())
    /// ```
    pub fn find(&self, what: &str) -> crate::base::error::Result<&Record> {
        let invalid = |message: String| {
            crate::base::error::fail(crate::base::error::ErrorKind::InvalidInput, message)
        };
        let found = match what.contains('/') {
            true => {
                let path = crate::ops::unmounting::resolve_target(what)?;
                self.records.iter().find(|r| r.target == path)
            }
            false => {
                // Unreadable records count too: a prefix is ambiguous
                // whether or not the file it also names can be read.
                let unreadable: Vec<String> = self.bad_records.iter().map(|b| b.id()).collect();
                let ids: Vec<&str> = self
                    .records
                    .iter()
                    .map(|r| r.id.as_str())
                    .chain(unreadable.iter().map(String::as_str))
                    .collect();
                let id = crate::state::match_id(what, &ids).map_err(invalid)?;
                if let Some(bad) = self
                    .bad_records
                    .iter()
                    .find(|b| Some(b.id().as_str()) == id)
                {
                    return Err(crate::base::error::fail(
                        crate::base::error::ErrorKind::State,
                        format!(
                            "{what}: record {} {}; not touched, inspect and remove it by hand",
                            bad.path.display(),
                            bad.problem
                        ),
                    ));
                }
                self.records.iter().find(|r| Some(r.id.as_str()) == id)
            }
        };
        found.ok_or_else(|| {
            invalid(format!(
                "{what}: no idmap-overlay record by that {}{}",
                if what.contains('/') { "target" } else { "id" },
                crate::ops::unmounting::path_hint(what)
            ))
        })
    }

    /// The record whose overlay holds `file` here, as findmnt -T finds a
    /// file's mount: the mount `file` lies on (its mount id, asked of the
    /// kernel; symlinks followed, a relative path taken from the current
    /// directory) is the overlay of a record, in this namespace's table.
    /// `None` when it lies on anything else (another mount inside the
    /// overlay included). An error of kind `InvalidInput` when `file`
    /// cannot be reached.
    pub fn holding(&self, file: &Path) -> crate::base::error::Result<Option<&Record>> {
        let mount_id = crate::kernel::resolve::mount_id_of(file).map_err(|e| {
            crate::base::error::fail(
                crate::base::error::ErrorKind::InvalidInput,
                format!("{}: {}", file.display(), e.describe(file)),
            )
        })?;
        let Some(mount) = self.table.iter().find(|m| m.id == mount_id) else {
            return Ok(None);
        };
        Ok(self.records.iter().find(|r| r.is_overlay(mount)))
    }

    /// The ids of the records whose overlay is mounted in the mount
    /// namespace `ns` names (`/proc/PID/ns/mnt`, or a bind mount of one):
    /// that namespace has a mount of the overlay's superblock (its device
    /// as recorded; source tags there are anyone's to write). A record
    /// whose overlay is known to be gone is never counted: its device
    /// number may belong to another filesystem by now. One read of that
    /// one mount table, no walk. An error of kind `InvalidInput` when
    /// `ns` is no mount namespace that can be entered.
    pub fn mounted_in_namespace(&self, ns: &Path) -> crate::base::error::Result<BTreeSet<String>> {
        let table = crate::kernel::namespaces::table_of(ns)?;
        let devices: std::collections::HashSet<crate::kernel::mount_table::Device> = table
            .iter()
            .filter(|m| m.fs_type == "overlay")
            .map(|m| m.device)
            .collect();
        Ok(self
            .records
            .iter()
            .filter(|r| r.device().is_some_and(|d| devices.contains(&d)))
            .filter(|r| self.health(r).alive())
            .map(|r| r.id.clone())
            .collect())
    }

    /// Looks for where the overlay of record `id` lives in other mount
    /// namespaces (one walk, until `timeout`), when it may live anywhere,
    /// so that [`Snapshot::health`] names them (at most [`NAMED_COPIES`]).
    pub fn look_for_copies(&mut self, id: &str, timeout: std::time::Duration) {
        let Some(record) = self.records.iter().find(|r| r.id == id) else {
            return;
        };
        let (Some(device), true) = (record.device(), self.health(record).alive()) else {
            return;
        };
        let here = record.mount_id.into_iter().collect();
        let own = crate::kernel::namespaces::current_namespace().ok();
        let deadline = crate::base::cancel::Deadline::after(timeout, &self.cancel);
        let copies = crate::ops::elsewhere::find_copies(&[device].into(), own, &here, &deadline);
        let mut elsewhere = copies.elsewhere(device);
        let total = elsewhere.len();
        elsewhere.truncate(NAMED_COPIES);
        self.named.insert(id.to_string(), (elsewhere, total));
    }

    pub fn health(&self, record: &Record) -> Health {
        let mounted = self.overlay_mounted(record);
        let owner_alive = self.in_flight.contains(&record.id);
        let temp_mounts_present: Vec<PathBuf> = self
            .temp_mounts_of(&record.id)
            .iter()
            .map(|m| m.mount_point.clone())
            .collect();
        let beyond = (!mounted).then(|| self.beyond.get(&record.id)).flatten();
        let (alive_elsewhere, elsewhere_because) = match beyond {
            Some(Beyond::Alive(how)) => (Some(true), Some(how.clone())),
            Some(Beyond::Gone) => (Some(false), None),
            Some(Beyond::Unknown(why)) => (None, Some(why.clone())),
            None if mounted => (None, None),
            None => (None, Some("not asked".into())),
        };
        let leaked = !owner_alive
            && match record.state {
                // A crashed operation is a leak: gc rolls back what is
                // here, and keeps the record if the overlay lives on.
                RecordState::Preparing | RecordState::Unmounting => true,
                RecordState::Mounted | RecordState::Detached => {
                    (!mounted && alive_elsewhere == Some(false)) || !temp_mounts_present.is_empty()
                }
            };
        let mut health = Health {
            word: String::new(),
            mounted,
            owner_alive,
            temp_mounts_present,
            alive_elsewhere,
            elsewhere_because,
            elsewhere: self
                .named
                .get(&record.id)
                .map(|(listed, _)| listed.clone())
                .unwrap_or_default(),
            elsewhere_total: self
                .named
                .get(&record.id)
                .and_then(|(listed, total)| (*total > listed.len()).then_some(*total)),
            leaked,
        };
        health.word = health.word_of().to_string();
        health
    }
}

/// Everything leaked, in the order `gc` should act: records first (a
/// teardown also takes their temp mounts), then loose temp mounts deepest
/// first, then directories and files, then foreign mounts, deepest first.
/// Pure: the same snapshot always gives the same findings.
///
/// ```no_run
/// use idmap_overlay::StateDir;
/// use std::time::Duration;
///
/// let state = StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
/// let snapshot = idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::from_secs(5))?;
/// for finding in idmap_overlay::classify(&snapshot) {
///     println!("{:?} {}: {}", finding.kind, finding.path.display(), finding.why);
/// }
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn classify(snap: &Snapshot) -> Vec<Finding> {
    let known = Known::of(snap);
    let mut findings = Vec::new();
    findings.extend(snap.records.iter().flat_map(|r| recorded_overlay(snap, r)));
    findings.extend(loose_temp_mounts(snap, &known));
    findings.extend(loose_temp_dirs(snap, &known));
    findings.extend(stale_lock_files(snap, &known));
    findings.extend(partial_writes(snap));
    findings.extend(probe_dirs(snap));
    findings.extend(stale_index_entries(snap, &known));
    findings.extend(bad_records(snap));
    findings.extend(untracked_overlays(snap, &known));
    findings.extend(foreign_mounts(snap));
    findings
}

/// The ids the snapshot accounts for: recorded, unreadable but present, or
/// with an operation running.
struct Known<'a> {
    recorded: BTreeSet<&'a str>,
    /// Ids whose record file exists but cannot be read: what belongs to
    /// them stays with them.
    unreadable: BTreeSet<&'a str>,
    in_flight: &'a BTreeSet<String>,
}

impl<'a> Known<'a> {
    fn of(snap: &'a Snapshot) -> Known<'a> {
        Known {
            recorded: snap.records.iter().map(|r| r.id.as_str()).collect(),
            unreadable: snap
                .bad_records
                .iter()
                .filter_map(|b| b.path.file_stem().and_then(|s| s.to_str()))
                .collect(),
            in_flight: &snap.in_flight,
        }
    }

    /// Recorded, or busy with an operation.
    fn claims(&self, id: &str) -> bool {
        self.recorded.contains(id) || self.in_flight.contains(id)
    }
}

/// A record whose overlay crashed halfway, vanished, left temporary mounts,
/// or lives on only in other mount namespaces (with its leaked temporary
/// mounts apart: those are a leak, the overlay is not).
fn recorded_overlay(snap: &Snapshot, record: &Record) -> Vec<Finding> {
    if snap.in_flight.contains(&record.id) {
        return Vec::new();
    }
    let health = snap.health(record);
    let finding = |kind, path: PathBuf, why: String, action| Finding {
        kind,
        path,
        id: Some(record.id.clone()),
        mount_id: record.mount_id,
        why,
        action,
    };
    let id = record.id.clone();
    let temps = (!health.temp_mounts_present.is_empty()).then(|| {
        finding(
            Kind::TempMount,
            snap.temp_root().join(&record.id),
            format!(
                "{} temporary mount(s) of {} were never unmounted",
                health.temp_mounts_present.len(),
                if health.mounted {
                    "a mounted overlay"
                } else {
                    "an overlay not mounted here"
                }
            ),
            Action::RemoveTemps { id: id.clone() },
        )
    });
    match record.state {
        // A crashed operation is rolled back: what it left here goes, and
        // its record too unless the overlay lives on elsewhere (then it is
        // kept, detached). Never judged by another namespace's tags.
        RecordState::Preparing => vec![finding(
            Kind::CrashedOperation,
            record.target.clone(),
            format!("mount by pid {} died before it finished", record.pid),
            Action::Teardown { id },
        )],
        RecordState::Unmounting => vec![finding(
            Kind::CrashedOperation,
            record.target.clone(),
            format!(
                "umount died before it finished (record by pid {})",
                record.pid
            ),
            Action::Teardown { id },
        )],
        RecordState::Mounted | RecordState::Detached if health.mounted => {
            temps.into_iter().collect()
        }
        RecordState::Mounted | RecordState::Detached => match health.alive_elsewhere {
            Some(false) => vec![finding(
                Kind::VanishedOverlay,
                record.target.clone(),
                format!(
                    "overlay {} is no longer mounted at {}, and the kernel says nothing of it is left",
                    record.source,
                    record.target.display()
                ),
                Action::Teardown { id },
            )],
            // Alive elsewhere (a container keeps a copy), or perhaps: not a
            // leak, nothing to clean; the record stays, listed. Its
            // temporary mounts, if any leaked, are a leak of their own.
            alive => temps
                .into_iter()
                .chain([finding(
                    Kind::AliveElsewhere,
                    record.target.clone(),
                    format!(
                        "not mounted here; {}",
                        match alive {
                            Some(_) => format!(
                                "alive elsewhere: {}",
                                health.elsewhere_because.clone().unwrap_or_default()
                            ),
                            None => format!(
                                "it may live on elsewhere ({}); kept",
                                health.elsewhere_because.clone().unwrap_or_default()
                            ),
                        }
                    ) + &if health.elsewhere.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", describe(&health.elsewhere))
                    },
                    Action::None,
                )])
                .collect(),
        },
    }
}

/// Temporary mounts under `<state>/tmp` of ids that have no record, deepest
/// first.
fn loose_temp_mounts(snap: &Snapshot, known: &Known) -> Vec<Finding> {
    let mut loose_mounts: Vec<&MountEntry> = snap
        .table
        .iter()
        // `<state>/tmp` itself may be our private bind mount: not a leak.
        .filter(|m| {
            m.mount_point.starts_with(snap.temp_root()) && m.mount_point != snap.temp_root()
        })
        .filter(|m| {
            let id = id_under(&snap.temp_root(), &m.mount_point);
            !id.is_some_and(|id| known.claims(&id))
        })
        .collect();
    loose_mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    loose_mounts
        .into_iter()
        .map(|m| Finding {
            kind: Kind::TempMount,
            path: m.mount_point.clone(),
            id: id_under(&snap.temp_root(), &m.mount_point),
            mount_id: Some(m.id),
            why: "temporary mount with no record".into(),
            action: Action::Unmount { mount_id: m.id },
        })
        .collect()
}

/// Temporary directories of ids that have no record.
fn loose_temp_dirs(snap: &Snapshot, known: &Known) -> Vec<Finding> {
    snap.temp_dirs
        .iter()
        .filter(|name| !known.claims(name))
        .map(|name| Finding {
            kind: Kind::TempDir,
            path: snap.temp_root().join(name),
            id: Some(name.clone()),
            mount_id: None,
            why: "temporary directory with no record".into(),
            action: Action::RemoveTemps { id: name.clone() },
        })
        .collect()
}

/// Lock files of ids with no record and no operation.
fn stale_lock_files(snap: &Snapshot, known: &Known) -> Vec<Finding> {
    snap.lock_files
        .iter()
        .filter(|id| !known.claims(id))
        .map(|id| Finding {
            kind: Kind::StaleFile,
            path: snap.state_root.join("locks").join(format!("{id}.lock")),
            id: Some(id.clone()),
            mount_id: None,
            why: "lock file with no record and no operation".into(),
            action: Action::RemoveFile,
        })
        .collect()
}

/// Half-written records a crash left.
fn partial_writes(snap: &Snapshot) -> Vec<Finding> {
    snap.partial_writes
        .iter()
        .filter_map(|name| {
            let id = crate::state::partial_write_id(name)?.to_string();
            (!snap.in_flight.contains(&id)).then(|| Finding {
                kind: Kind::StaleFile,
                path: snap.state_root.join("mounts").join(name),
                id: Some(id),
                mount_id: None,
                why: "half-written record left by a crash".into(),
                action: Action::RemoveFile,
            })
        })
        .collect()
}

/// Feature probe directories a crash left.
fn probe_dirs(snap: &Snapshot) -> Vec<Finding> {
    snap.probe_dirs
        .iter()
        .map(|name| Finding {
            kind: Kind::StaleFile,
            path: snap.state_root.join(name),
            id: None,
            mount_id: None,
            why: "feature probe directory left by a crash".into(),
            action: Action::RemoveProbe,
        })
        .collect()
}

/// Target index entries of records that are gone, or half-written.
fn stale_index_entries(snap: &Snapshot, known: &Known) -> Vec<Finding> {
    snap.target_index
        .iter()
        .filter(|(_, id)| !known.claims(id) && !known.unreadable.contains(id.as_str()))
        .map(|(name, id)| Finding {
            kind: Kind::StaleFile,
            path: snap.state_root.join("targets").join(name),
            id: (!id.is_empty()).then(|| id.clone()),
            mount_id: None,
            why: if id.is_empty() {
                "half-written target index entry left by a crash".into()
            } else {
                "target index entry of a record that is gone".into()
            },
            action: Action::RemoveStaleIndex { id: id.clone() },
        })
        .collect()
}

/// Files under `mounts/` that are not usable records: reported only.
fn bad_records(snap: &Snapshot) -> Vec<Finding> {
    snap.bad_records
        .iter()
        .map(|bad| Finding {
            kind: Kind::BadRecord,
            path: bad.path.clone(),
            id: None,
            mount_id: None,
            why: format!(
                "record {}; not touched, inspect and remove it by hand",
                bad.problem
            ),
            action: Action::None,
        })
        .collect()
}

/// Overlays tagged as ours that no record here accounts for (another state
/// directory's, or a record lost): reported only.
fn untracked_overlays(snap: &Snapshot, known: &Known) -> Vec<Finding> {
    let ours_tag = source_tag("");
    snap.table
        .iter()
        .filter(|m| m.fs_type == "overlay")
        .filter_map(|m| Some((m, m.source.strip_prefix(&ours_tag)?)))
        .filter(|(_, id)| !known.claims(id) && !known.unreadable.contains(id))
        .map(|(m, id)| Finding {
            kind: Kind::UntrackedOverlay,
            path: m.mount_point.clone(),
            id: Some(id.to_string()),
            mount_id: Some(m.id),
            why: "overlay tagged by idmap-overlay with no record in this state directory; `idmap-overlay umount ID` removes it".into(),
            action: Action::None,
        })
        .collect()
}

/// Other programs' idmapped mounts that look leaked (containerd's temporary
/// mounts) or lie under a `--foreign` directory, deepest first: removed
/// only under such a directory and once older than the minimum age.
fn foreign_mounts(snap: &Snapshot) -> Vec<Finding> {
    let ours_tag = source_tag("");
    let mut foreign: Vec<&MountEntry> = snap
        .table
        .iter()
        .filter(|m| m.is_idmapped() && !m.mount_point.starts_with(&snap.state_root))
        .filter(|m| !m.source.starts_with(&ours_tag))
        .filter(|m| {
            looks_like_containerd_leak(&m.mount_point)
                || snap
                    .foreign_dirs
                    .iter()
                    .any(|d| m.mount_point.starts_with(d))
        })
        .collect();
    foreign.sort_by_key(|m| std::cmp::Reverse(m.mount_point.components().count()));
    foreign
        .into_iter()
        .map(|m| {
        let below = snap
            .foreign_dirs
            .iter()
            .any(|d| m.mount_point.starts_with(d));
        let age = snap
            .first_seen
            .get(&foreign_key(m))
            .map(|seen| snap.now.saturating_sub(*seen))
            .unwrap_or(0);
        let (action, why) = if !below {
            (
                Action::None,
                "idmapped mount of another program that looks leaked; `gc --foreign DIR` removes it".to_string(),
            )
        } else if age < snap.min_age {
            (
                Action::None,
                format!(
                    "idmapped mount of another program, seen {age}s ago; removed once older than {}s",
                    snap.min_age
                ),
            )
        } else {
            (
                Action::Unmount { mount_id: m.id },
                format!("idmapped mount of another program, seen {age}s ago"),
            )
        };
        Finding {
            kind: Kind::ForeignMount,
            path: m.mount_point.clone(),
            id: None,
            mount_id: Some(m.id),
            why,
            action,
        }
        })
        .collect()
}

/// The `<id>` of a path `<temp_root>/<id>/...`.
fn id_under(temp_root: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(temp_root)
        .ok()?
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::overlay::Strategy;
    use crate::kernel::mount_table::parse_line;

    fn record(id: &str, state: RecordState, mount_id: Option<u64>) -> Record {
        Record {
            version: 1,
            id: id.into(),
            target: format!("/mnt/{id}").into(),
            state,
            strategy: Strategy::CommonDir,
            lowerdirs: vec!["/l/2".into(), "/l/1".into()],
            upperdir: None,
            workdir: None,
            options: vec![],
            uidmap: vec![],
            gidmap: vec![],
            userns: None,
            common_dir: Some("/l".into()),
            idmapped_dirs: vec!["/l".into()],
            temp_mounts: vec![format!("/run/io/tmp/{id}/0").into()],
            idmapped_upper: false,
            upperdir_file: None,
            source: source_tag(id),
            mount_id,
            mount_id_unique: None,
            dev: None,
            super_options: None,
            vfs_flags: Vec::new(),
            mount_ns: None,
            pid: 42,
            created: "2026-11-26T00:00:00Z".into(),
        }
    }

    fn overlay(mount_id: u64, id: &str) -> MountEntry {
        parse_line(
            format!("{mount_id} 1 0:50 / /mnt/{id} rw - overlay idmap-overlay:{id} rw,lowerdir=/x")
                .as_bytes(),
        )
        .unwrap()
    }

    fn idmapped(mount_id: u64, at: &str) -> MountEntry {
        parse_line(format!("{mount_id} 1 254:0 /l {at} ro,idmapped - ext4 /dev/vda rw").as_bytes())
            .unwrap()
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            state_root: "/run/io".into(),
            now: 1000,
            min_age: 60,
            ..Default::default()
        }
    }

    fn kinds(findings: &[Finding]) -> Vec<(Kind, String)> {
        findings
            .iter()
            .map(|f| (f.kind, f.path.display().to_string()))
            .collect()
    }

    #[test]
    fn a_healthy_mount_is_not_a_finding() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Mounted, Some(70))];
        snap.table = vec![overlay(70, "a")];
        assert_eq!(classify(&snap), vec![]);
        let health = snap.health(&snap.records[0]);
        assert!(health.mounted && !health.leaked);
        assert_eq!(health.word(), "ok");
    }

    #[test]
    fn a_different_mount_id_is_not_ours() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Mounted, Some(70))];
        snap.table = vec![overlay(71, "a")];
        snap.beyond.insert("a".into(), Beyond::Gone);
        assert_eq!(
            kinds(&classify(&snap)),
            vec![(Kind::VanishedOverlay, "/mnt/a".into())]
        );
    }

    /// Gone from here: what the kernel says decides, and a record is never
    /// dropped on "cannot tell".
    #[test]
    fn an_overlay_gone_from_here_is_judged_by_the_kernel() {
        for state in [RecordState::Mounted, RecordState::Detached] {
            let mut snap = snapshot();
            snap.records = vec![record("a", state, Some(70))];
            for (answer, kind, action, word) in [
                (
                    Beyond::Gone,
                    Kind::VanishedOverlay,
                    Action::Teardown { id: "a".into() },
                    "leaked",
                ),
                (
                    Beyond::Alive("its upperdir is in use".into()),
                    Kind::AliveElsewhere,
                    Action::None,
                    "elsewhere",
                ),
                (
                    Beyond::Unknown("the probe said EPERM".into()),
                    Kind::AliveElsewhere,
                    Action::None,
                    "unknown",
                ),
            ] {
                snap.beyond.insert("a".into(), answer);
                let found = classify(&snap);
                assert_eq!(
                    (found[0].kind, &found[0].action),
                    (kind, &action),
                    "{state:?}"
                );
                let health = snap.health(&snap.records[0]);
                assert_eq!(health.word(), word);
                assert_eq!(health.leaked, kind == Kind::VanishedOverlay);
            }
            // Its temporary mounts go either way: the overlay needs none.
            // (A new snapshot: the indexes are built on first use.)
            let mut snap = Snapshot {
                records: snap.records.clone(),
                beyond: snap.beyond.clone(),
                ..snapshot()
            };
            snap.table = vec![idmapped(80, "/run/io/tmp/a/0")];
            // Two findings: the temporary mounts are a leak, the overlay
            // that may live on is not.
            let found = classify(&snap);
            assert_eq!(
                kinds(&found),
                vec![
                    (Kind::TempMount, "/run/io/tmp/a".into()),
                    (Kind::AliveElsewhere, "/mnt/a".into())
                ]
            );
            assert_eq!(found[0].action, Action::RemoveTemps { id: "a".into() });
            assert_eq!(found[1].action, Action::None);
        }
    }

    /// A crashed mount is rolled back whatever other namespaces show: a
    /// user's overlay there may carry its tag (found by a forged tag that
    /// kept a leaked temporary mount attached).
    #[test]
    fn a_crashed_mount_is_rolled_back_even_if_it_may_live_elsewhere() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Preparing, None)];
        snap.table = vec![idmapped(80, "/run/io/tmp/a/0")];
        snap.beyond
            .insert("a".into(), Beyond::Alive("its upperdir is in use".into()));
        let found = classify(&snap);
        assert_eq!(found[0].kind, Kind::CrashedOperation);
        assert_eq!(found[0].action, Action::Teardown { id: "a".into() });
    }

    #[test]
    fn in_flight_operations_are_never_touched() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Preparing, None)];
        snap.table = vec![idmapped(80, "/run/io/tmp/a/0")];
        snap.temp_dirs = vec!["a".into()];
        snap.lock_files = vec!["a".into()];
        snap.partial_writes = vec![".a.json.12.0.tmp".into()];
        snap.in_flight.insert("a".into());
        assert_eq!(classify(&snap), vec![]);
        assert!(snap.health(&snap.records[0]).owner_alive);
    }

    #[test]
    fn crashed_mount_is_rolled_back() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Preparing, None)];
        snap.table = vec![idmapped(80, "/run/io/tmp/a/0"), overlay(81, "a")];
        snap.temp_dirs = vec!["a".into()];
        snap.lock_files = vec!["a".into()];
        let found = classify(&snap);
        // One teardown takes care of the overlay, the temp mount, the dir
        // and the lock of the recorded id.
        assert_eq!(
            kinds(&found),
            vec![(Kind::CrashedOperation, "/mnt/a".into())]
        );
        assert_eq!(found[0].action, Action::Teardown { id: "a".into() });
    }

    #[test]
    fn leftovers_without_a_record() {
        let mut snap = snapshot();
        snap.table = vec![
            idmapped(80, "/run/io/tmp/b/0"),
            idmapped(81, "/run/io/tmp/b/0/sub"),
        ];
        snap.temp_dirs = vec!["b".into()];
        snap.lock_files = vec!["c".into()];
        snap.partial_writes = vec![".d.json.12.0.tmp".into()];
        snap.target_index = vec![("00000000000000ff".into(), "e".into())];
        assert_eq!(
            kinds(&classify(&snap)),
            vec![
                (Kind::TempMount, "/run/io/tmp/b/0/sub".into()),
                (Kind::TempMount, "/run/io/tmp/b/0".into()),
                (Kind::TempDir, "/run/io/tmp/b".into()),
                (Kind::StaleFile, "/run/io/locks/c.lock".into()),
                (Kind::StaleFile, "/run/io/mounts/.d.json.12.0.tmp".into()),
                (Kind::StaleFile, "/run/io/targets/00000000000000ff".into()),
            ]
        );
    }

    #[test]
    fn mounted_record_with_a_leaked_temp_mount() {
        let mut snap = snapshot();
        snap.records = vec![record("a", RecordState::Mounted, Some(70))];
        snap.table = vec![overlay(70, "a"), idmapped(80, "/run/io/tmp/a/0")];
        let found = classify(&snap);
        assert_eq!(
            kinds(&found),
            vec![(Kind::TempMount, "/run/io/tmp/a".into())]
        );
        assert!(snap.health(&snap.records[0]).leaked);
    }

    #[test]
    fn tagged_overlays_without_a_record_are_reported() {
        let mut snap = snapshot();
        snap.table = vec![overlay(70, "lost")];
        let found = classify(&snap);
        assert_eq!(
            kinds(&found),
            vec![(Kind::UntrackedOverlay, "/mnt/lost".into())]
        );
        assert_eq!(found[0].action, Action::None);
    }

    #[test]
    fn bad_records_are_reported_not_acted_on() {
        let mut snap = snapshot();
        snap.bad_records = vec![BadRecord {
            path: "/run/io/mounts/x.json".into(),
            problem: "is empty".into(),
        }];
        let found = classify(&snap);
        assert_eq!(found[0].kind, Kind::BadRecord);
        assert_eq!(found[0].action, Action::None);
        assert!(found[0].why.contains("is empty"));
    }

    #[test]
    fn foreign_mounts_need_a_foreign_dir_and_age() {
        let mut snap = snapshot();
        let leak = idmapped(90, "/var/lib/containerd/tmpmounts/ovl-idmapped123");
        let other = idmapped(91, "/srv/volume");
        snap.table = vec![leak.clone(), other.clone()];
        // Without --foreign: listed (looks like containerd's), never acted on.
        let found = classify(&snap);
        assert_eq!(
            kinds(&found),
            vec![(Kind::ForeignMount, leak.mount_point.display().to_string())]
        );
        assert_eq!(found[0].action, Action::None);
        // With --foreign but too young.
        snap.foreign_dirs = vec!["/var/lib/containerd/tmpmounts".into()];
        snap.first_seen.insert(foreign_key(&leak), 990);
        assert_eq!(classify(&snap)[0].action, Action::None);
        // Old enough.
        snap.first_seen.insert(foreign_key(&leak), 900);
        assert_eq!(classify(&snap)[0].action, Action::Unmount { mount_id: 90 });
        // An idmapped mount elsewhere is nobody's leak unless a --foreign dir holds it.
        snap.foreign_dirs.push("/srv".into());
        snap.first_seen.insert(foreign_key(&other), 0);
        assert_eq!(classify(&snap).len(), 2);
    }
}
