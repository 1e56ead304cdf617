//! The state directory: one JSON record per overlay, written atomically, and
//! a lock per record held by the operation that owns it.
//!
//! ```text
//! <state>/mounts/<id>.json   the records (a temp file `.<id>.json.<pid>.<n>.tmp` while writing)
//! <state>/locks/<id>.lock    flock(2)ed by the running mount/umount of <id>
//! <state>/targets/<key>      the id whose record claims a target (a hint)
//! <state>/tmp/<id>/N         temporary mountpoints (common-dir, per-layer)
//! <state>/lock               flock(2)ed while an id or target is claimed
//! ```

pub mod atomic_write;

use crate::base::cancel::Cancel;
use crate::base::error::Result;
use crate::base::error::{Context, ErrorKind, fail};
use crate::base::idmap::IdRange;
use crate::base::overlay::Strategy;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_DIR: &str = "/run/idmap-overlay";
/// How long to wait for the global lock unless a command says otherwise.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(2500);
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    Preparing,
    Mounted,
    Unmounting,
    /// Gone from the mount namespace it was mounted in (unmounted by
    /// `umount`, gc or someone else) while the kernel says it lives on
    /// elsewhere (a container's copy) or cannot say; gc drops the record
    /// once the kernel says it is gone.
    Detached,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub id: String,
    pub target: PathBuf,
    pub state: RecordState,
    pub strategy: Strategy,
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// The upperdir's device and inode (`major:minor:inode`), to know later
    /// that its path still names the directory that was mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upperdir_file: Option<String>,
    /// Other overlay options, as `key` or `key=value`.
    pub options: Vec<String>,
    pub uidmap: Vec<IdRange>,
    pub gidmap: Vec<IdRange>,
    /// The user namespace the maps came from, when `--userns` was used.
    pub userns: Option<PathBuf>,
    /// The directory cloned once for all layers, when there is one.
    pub common_dir: Option<PathBuf>,
    /// Every directory that was cloned as an idmapped tree.
    pub idmapped_dirs: Vec<PathBuf>,
    /// The temporary mountpoints this operation uses (common-dir and
    /// per-layer); they are gone once the overlay is mounted.
    pub temp_mounts: Vec<PathBuf>,
    /// The upper layer is idmapped too (`--idmapped-upper`): the last of
    /// `idmapped_dirs` is the upper and work directories' common parent.
    #[serde(default)]
    pub idmapped_upper: bool,
    /// The overlay's source column in mountinfo: `idmap-overlay:<id>`.
    pub source: String,
    /// The overlay's mount id as mountinfo shows it, once mounted.
    pub mount_id: Option<u64>,
    /// The overlay's unique 64-bit mount id (statx STATX_MNT_ID_UNIQUE).
    pub mount_id_unique: Option<u64>,
    /// The overlay's device, `major:minor` (its superblock's, shared by
    /// every copy of the mount in every mount namespace).
    #[serde(default)]
    pub dev: Option<String>,
    /// mountinfo's super options of the overlay, kept only on kernels
    /// without unique mount ids (before 6.8), where they help tell our
    /// overlay from a later one with a reused mount id and device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_options: Option<String>,
    /// mount(8)'s per-mount flags the overlay was made with (`ro`, ...).
    #[serde(default)]
    pub vfs_flags: Vec<String>,
    /// The mount namespace the overlay was mounted in (its nsfs inode, as
    /// `stat -L /proc/PID/ns/mnt` shows it).
    #[serde(default)]
    pub mount_ns: Option<u64>,
    /// The process that made the mount.
    pub pid: u32,
    /// RFC 3339, UTC.
    pub created: String,
}

impl RecordState {
    /// As records and people spell it: `mounted`.
    pub fn name(self) -> &'static str {
        match self {
            RecordState::Preparing => "preparing",
            RecordState::Mounted => "mounted",
            RecordState::Unmounting => "unmounting",
            RecordState::Detached => "detached",
        }
    }
}

impl Record {
    /// The paths this record claims: its target, upperdir and workdir. No
    /// other overlay of ours may use them while it lives.
    pub(crate) fn claimed_paths(&self) -> Vec<&Path> {
        std::iter::once(self.target.as_path())
            .chain(self.upperdir.as_deref())
            .chain(self.workdir.as_deref())
            .collect()
    }

    /// The overlay's device, as recorded once it was mounted.
    pub(crate) fn device(&self) -> Option<crate::kernel::mount_table::Device> {
        self.dev
            .as_deref()
            .and_then(crate::kernel::mount_table::Device::parse)
    }

    /// Is this mount-table line the overlay of this record? Its source tag
    /// and place, and its mount id once the record knows it (a crashed
    /// mount's record may not). Only for our own namespace's table, where
    /// no other user can mount: a tag is a label anyone can write elsewhere.
    pub(crate) fn is_overlay(&self, entry: &crate::kernel::mount_table::MountEntry) -> bool {
        entry.fs_type == "overlay"
            && entry.source == self.source
            && entry.mount_point == self.target
            && self.mount_id.is_none_or(|id| id == entry.id)
    }

    /// What the overlay of this record must be for the tool to unmount it.
    pub(crate) fn expected(&self) -> crate::kernel::proof::Expected<'_> {
        crate::kernel::proof::Expected {
            mount_id: self.mount_id,
            unique: self.mount_id_unique,
            dev: self.dev.as_deref().and_then(parse_dev),
            source: Some(&self.source),
            super_options: self.super_options.as_deref(),
        }
    }
}

/// `major:minor:inode`: a file's identity, as records keep it.
pub fn format_file_id((major, minor, ino): (u32, u32, u64)) -> String {
    format!("{major}:{minor}:{ino}")
}

/// `major:minor` as mountinfo writes a device.
pub fn format_dev(dev: (u32, u32)) -> String {
    format!("{}:{}", dev.0, dev.1)
}

pub fn parse_dev(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The id a leftover temporary record file (`.<id>.json.<pid>.<n>.tmp`, a
/// crash mid-write) belongs to.
pub fn partial_write_id(name: &str) -> Option<&str> {
    atomic_write::temp_target(name)?.strip_suffix(".json")
}

pub fn source_tag(id: &str) -> String {
    format!("idmap-overlay:{id}")
}

/// IDs are letters, digits, `-`, `_` and `.`, not starting with `.`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "id {id:?} is not valid: use 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

/// At most this many ids are named when a prefix matches several.
const LISTED_MATCHES: usize = 5;

/// The one id among `ids` that `given` names: itself, or a unique prefix
/// of at least 4 characters. `Ok(None)` when none does; an ambiguous
/// prefix is a one-line error naming the first few matches, sorted, and
/// how many more there are (a prefix of a busy host's ids could match
/// thousands).
pub fn match_id<'a>(given: &str, ids: &[&'a str]) -> Result<Option<&'a str>, String> {
    if let Some(exact) = ids.iter().find(|id| **id == given) {
        return Ok(Some(exact));
    }
    if given.chars().count() < 4 {
        return Ok(None);
    }
    let mut matches: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| id.starts_with(given))
        .collect();
    matches.sort_unstable();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => {
            let listed = many[..many.len().min(LISTED_MATCHES)].join(", ");
            let more = match many.len().saturating_sub(LISTED_MATCHES) {
                0 => String::new(),
                n => format!(", and {n} more"),
            };
            Err(format!(
                "{given}: the prefix of {} ids ({listed}{more}); give more of it",
                many.len()
            ))
        }
    }
}

/// A fresh id: 16 lowercase hex digits, the first 6 telling it apart from
/// the ids made around the same time, so that a prefix of 4 to 6
/// characters names one overlay in practice.
///
/// The first 6 are the microsecond clock modulo 2^24 (16.7 s), its hex
/// digits last first: ids made one after another within 16 seconds (a
/// node starting its containers) never share them, and ids made further
/// apart share them only by chance. The other 10 are random (40 bits), so
/// that ids made in the same microsecond (two processes at once) differ
/// too. Nothing reads the time back out of an id: the record keeps when
/// and by whom it was made (`created`, `pid`). Ids of earlier versions
/// (`<seconds>-<pid>-<nanoseconds>` in hex) remain valid.
pub fn new_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let clock: String = format!("{:06x}", now.as_micros() % (1 << 24))
        .chars()
        .rev()
        .collect();
    let mut random = [0u8; 5];
    if rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).is_err() {
        // Never seen (getrandom(2) fails only when interrupted, or on a
        // kernel before 3.17): our pid and the clock's nanoseconds instead.
        let fallback = u64::from(std::process::id()) << 30 ^ u64::from(now.subsec_nanos());
        random.copy_from_slice(&fallback.to_le_bytes()[..5]);
    }
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    clock + &random
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A record file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub path: PathBuf,
    /// Why, as the end of a sentence that begins with the file's path:
    /// `is not valid JSON (...)`.
    pub problem: String,
}

impl BadRecord {
    /// The id its file name gives (`<id>.json`): all that is known of the
    /// record, and perhaps not a valid id (a file somebody put there).
    pub fn id(&self) -> String {
        self.path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

pub struct StateDir {
    pub root: PathBuf,
    /// How long to wait for the global lock (a command's `--timeout`).
    pub lock_wait: Duration,
    /// Raised, it ends lock waits and the operations on this directory.
    pub cancel: Cancel,
}

/// Refuses a directory that someone other than root could have planted or
/// can write: the tool acts as root on what it finds there.
fn check_dir(path: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(path).fail_as(ErrorKind::State, || {
        format!("state directory {}", path.display())
    })?;
    check_dir_meta(path, &meta)
}

fn check_dir_meta(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if meta.file_type().is_symlink() {
        return Err(fail(
            ErrorKind::State,
            format!(
                "state directory {} is a symlink; refusing to follow it",
                path.display()
            ),
        ));
    }
    if !meta.is_dir() {
        return Err(fail(
            ErrorKind::State,
            format!("state directory {} is not a directory", path.display()),
        ));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(fail(
            ErrorKind::State,
            format!(
                "state directory {} is owned by uid {}, not by root",
                path.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(fail(
            ErrorKind::State,
            format!(
                "state directory {} is writable by others (mode {:o}); expected 0700",
                path.display(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// The directories above the state directory must be root's and not
/// writable by anyone else, unless sticky (like /tmp): whoever could write
/// there could rename the state directory away and put their own in its
/// place. Symlinks among them are followed only if root's (see `resolve`).
fn check_ancestors(root: &Path) -> Result<()> {
    let Some(parent) = root.parent() else {
        return Ok(());
    };
    let resolved = crate::kernel::resolve::resolve_dir(parent).map_err(|e| {
        fail(
            ErrorKind::State,
            format!("state directory {}: {e}", root.display()),
        )
    })?;
    for dir in resolved.path.ancestors() {
        let meta = fs::symlink_metadata(dir).fail_as(ErrorKind::State, || {
            format!("state directory {}: {}", root.display(), dir.display())
        })?;
        let writable_by_others = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
        if meta.uid() != 0 || writable_by_others {
            return Err(fail(
                ErrorKind::State,
                format!(
                    "state directory {}: {} above it is {} (mode {:o}); it must be root's and not writable by others unless sticky",
                    root.display(),
                    dir.display(),
                    if meta.uid() != 0 {
                        format!("owned by uid {}", meta.uid())
                    } else {
                        "writable by others".to_string()
                    },
                    meta.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Creates the directory 0700 if it is missing (usually it is there: no
/// failing mkdir then), and checks it either way.
fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => return check_dir_meta(path, &meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).fail_as(ErrorKind::State, || {
                format!("state directory {}", path.display())
            });
        }
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).fail_as(ErrorKind::State, || {
                format!("creating state directory {}", path.display())
            });
        }
    }
    check_dir(path)
}

impl StateDir {
    /// The state directory at `root`, neither created nor checked: for a
    /// look that must not create anything and can live with what it finds
    /// (shell completion), or a directory made by the caller.
    pub fn unchecked(root: &Path) -> StateDir {
        StateDir {
            root: root.to_path_buf(),
            lock_wait: DEFAULT_LOCK_WAIT,
            cancel: Cancel::default(),
        }
    }

    /// Opens (creating it 0700 if needed) and checks the state directory.
    pub fn open(root: &Path) -> Result<StateDir> {
        if !root.is_absolute() {
            return Err(fail(
                ErrorKind::InvalidInput,
                format!("state directory {} is not an absolute path", root.display()),
            ));
        }
        if let Some(parent) = root.parent()
            && !parent.exists()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .fail_as(ErrorKind::State, || {
                    format!("creating {}", parent.display())
                })?;
        }
        check_ancestors(root)?;
        ensure_dir(root)?;
        let dir = StateDir::unchecked(root);
        for sub in ["mounts", "locks", "tmp", "targets"] {
            ensure_dir(&dir.root.join(sub))?;
        }
        Ok(dir)
    }

    /// Opens the state directory for looking only: checked like [`Self::open`],
    /// nothing created. A missing directory is an error (exit 16) when
    /// `explicit`, else an empty state: nothing recorded.
    pub fn open_to_read(root: &Path, explicit: bool) -> Result<StateDir> {
        if !root.is_absolute() {
            return Err(fail(
                ErrorKind::InvalidInput,
                format!("state directory {} is not an absolute path", root.display()),
            ));
        }
        let dir = StateDir::unchecked(root);
        match fs::symlink_metadata(root) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if explicit {
                    return Err(fail(
                        ErrorKind::State,
                        format!("state directory {} does not exist", root.display()),
                    ));
                }
                Ok(dir)
            }
            _ => {
                check_ancestors(root)?;
                check_dir(root)?;
                for sub in ["mounts", "locks", "tmp", "targets"] {
                    let path = root.join(sub);
                    if fs::symlink_metadata(&path).is_ok() {
                        check_dir(&path)?;
                    }
                }
                Ok(dir)
            }
        }
    }

    /// `targets/<key>`: which record claims a path (its target, upperdir or
    /// workdir), so that `mount` and `umount TARGET` need not read every
    /// record: their cost stays the same however many there are.
    pub(crate) fn target_index_path(&self, target: &Path) -> PathBuf {
        self.root.join("targets").join(target_key(target))
    }

    /// The record that claims `path` as its target, upperdir or workdir,
    /// found through its index entry. The entry is only a hint: the record
    /// it names must exist and agree. An entry left by a crash or a removed
    /// record is stale and ignored.
    pub(crate) fn record_claiming(&self, path: &Path) -> Option<Record> {
        let id = read_small_file(&self.target_index_path(path))?;
        check_id(&id).ok()?;
        let record = Self::read_record_file(&self.record_path(&id)).ok()?;
        record.claimed_paths().contains(&path).then_some(record)
    }

    /// The record whose target is `target` (see [`Self::record_claiming`]).
    pub(crate) fn record_at(&self, target: &Path) -> Option<Record> {
        self.record_claiming(target)
            .filter(|record| record.target == target)
    }

    /// Points the index entries of the record's target, upperdir and
    /// workdir at it, atomically. Only `mount` writes entries, under the
    /// global lock; `unindex` removes them under the same lock, only those
    /// that still name the same id.
    pub(crate) fn index(&self, record: &Record) -> Result<()> {
        for claimed in record.claimed_paths() {
            let path = self.target_index_path(claimed);
            atomic_write::write(&path, record.id.as_bytes(), 0o600, false)
                .fail_as(ErrorKind::State, || format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Removes the index entries of `paths` that still name `id`. Takes the
    /// global lock, under which `mount` writes entries, so an entry a new
    /// mount just wrote for the same path is never lost. Not for callers
    /// that hold the global lock already.
    pub(crate) fn unindex(&self, paths: &[&Path], id: &str) -> Result<()> {
        let _all = self.lock_all()?;
        for claimed in paths {
            let path = self.target_index_path(claimed);
            if read_small_file(&path).as_deref() == Some(id) {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e)
                            .fail_as(ErrorKind::State, || format!("removing {}", path.display()));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Index entries as (file name, id they name; empty for a leftover
    /// temp file).
    pub(crate) fn target_index(&self) -> Vec<(String, String)> {
        let mut entries: Vec<(String, String)> = fs::read_dir(self.root.join("targets"))
            .map(|dir| {
                dir.flatten()
                    .map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        // A `.<key>.tmp` left by a crash names no id.
                        let id = match name.starts_with('.') {
                            true => String::new(),
                            false => read_small_file(&e.path()).unwrap_or_default(),
                        };
                        (name, id)
                    })
                    .collect()
            })
            .unwrap_or_default();
        entries.sort();
        entries
    }

    /// The id `given` names (itself, or a unique prefix of 4 or more
    /// characters, see [`match_id`]) among the records, if any.
    pub fn resolve_id(&self, given: &str) -> Result<Option<String>, String> {
        if fs::symlink_metadata(self.record_path(given)).is_ok() {
            return Ok(Some(given.to_string()));
        }
        let names: Vec<String> = fs::read_dir(self.root.join("mounts"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(match_id(given, &ids)?.map(str::to_string))
    }

    pub(crate) fn record_path(&self, id: &str) -> PathBuf {
        self.root.join("mounts").join(format!("{id}.json"))
    }

    pub(crate) fn lock_path(&self, id: &str) -> PathBuf {
        self.root.join("locks").join(format!("{id}.lock"))
    }

    pub(crate) fn temp_root(&self, id: &str) -> PathBuf {
        self.root.join("tmp").join(id)
    }

    /// Writes a record so that no reader ever sees half of it: a temp file
    /// renamed over the record. No fsync: `/run` is tmpfs and records share
    /// the mounts' fate at reboot.
    pub(crate) fn write_record(&self, record: &Record) -> Result<()> {
        let path = self.record_path(&record.id);

        let text = serde_json::to_string_pretty(record).context("encoding the record")? + "\n";
        atomic_write::write(&path, text.as_bytes(), 0o600, false).fail_as(ErrorKind::State, || {
            format!("writing record {}", path.display())
        })
    }

    pub(crate) fn remove_record(&self, id: &str) -> Result<()> {
        let path = self.record_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).fail_as(ErrorKind::State, || {
                format!("removing record {}", path.display())
            }),
        }
    }

    /// Reads one record, refusing symlinks and anything but a regular file.
    pub fn read_record_file(path: &Path) -> Result<Record, String> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(Errno::ELOOP as i32) {
                    "is a symlink; not followed".to_string()
                } else {
                    e.to_string()
                }
            })?;
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("is not a regular file".into());
        }
        if meta.len() > 1 << 20 {
            return Err(format!("is {} bytes, too large for a record", meta.len()));
        }
        let text = std::io::read_to_string(file).map_err(|e| e.to_string())?;
        if text.trim().is_empty() {
            return Err("is empty".into());
        }
        // The common case in one pass; the slow path only to say what is wrong.
        let record = match serde_json::from_str::<Record>(&text) {
            Ok(record) if record.version == RECORD_VERSION => record,
            _ => return Err(Self::why_unreadable(&text)),
        };
        // Ids become paths (`tmp/<id>`, `locks/<id>.lock`): a record whose
        // id is not one of ours (`..`, `a/b`) is never used.
        if let Err(e) = check_id(&record.id) {
            return Err(format!("holds an invalid id: {e}"));
        }
        let expected = path.file_stem().and_then(|s| s.to_str());
        if expected != Some(record.id.as_str()) {
            return Err(format!(
                "holds id {:?}, not the one its name says",
                record.id
            ));
        }
        Ok(record)
    }

    /// Why a record's text is not a record of ours.
    fn why_unreadable(text: &str) -> String {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return format!("is not valid JSON ({e})"),
        };
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(RECORD_VERSION) => {}
            Some(v) => {
                return format!(
                    "has version {v}; this idmap-overlay understands version {RECORD_VERSION}"
                );
            }
            None => return "has no version".into(),
        }
        match serde_json::from_value::<Record>(value) {
            Err(e) => format!("is not a valid record ({e})"),
            Ok(_) => "is not a valid record".into(),
        }
    }

    /// Every record, oldest first (by `created`, then id: ids no longer
    /// sort by time), plus the files under `mounts/` that are not usable
    /// records (reported, never acted on), by file name.
    ///
    /// ```no_run
    /// use idmap_overlay::StateDir;
    ///
    /// let state = StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
    /// let (records, unusable) = state.records()?;
    /// for record in &records {
    ///     println!("{} {} {}", record.id, record.state.name(), record.target.display());
    /// }
    /// assert!(unusable.is_empty(), "files under mounts/ that are not records");
    /// # Ok::<(), idmap_overlay::Error>(())
    /// ```
    pub fn records(&self) -> Result<(Vec<Record>, Vec<BadRecord>)> {
        let dir = self.root.join("mounts");
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let listing = match fs::read_dir(&dir) {
            // Nothing was ever recorded here (a look at a fresh place).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((good, bad)),
            listing => listing,
        };
        let mut names: Vec<PathBuf> = listing
            .fail_as(ErrorKind::State, || format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        // Reading and parsing thousands of records is most of a gc scan:
        // spread it over the CPUs, keeping the order.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let chunk = names.len().div_ceil(workers).max(256);
        let results: Vec<Vec<(PathBuf, Result<Record, String>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|path| (path.clone(), Self::read_record_file(path)))
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a record reader panicked"))
                .collect()
        });
        for (path, result) in results.into_iter().flatten() {
            match result {
                Ok(record) => good.push(record),
                // Removed since the listing (an umount finished meanwhile:
                // it does not take the global lock): gone, not bad.
                Err(_)
                    if fs::symlink_metadata(&path)
                        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) => {}
                Err(problem) => bad.push(BadRecord { path, problem }),
            }
        }
        good.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        Ok((good, bad))
    }

    /// The global lock, held while an id or target is claimed or while gc
    /// and inspect take their snapshot. Waited for (polling, so a signal
    /// ends the wait) until `self.lock_wait` has passed.
    pub fn lock_all(&self) -> Result<Lock> {
        let path = self.root.join("lock");
        let file = open_lock_file(&path, true)?;
        self.wait_for(file, &path)
    }

    /// The global lock for a look that creates nothing: `None` when there is
    /// no lock file, which means no operation ever ran here to hold it.
    pub(crate) fn lock_all_to_read(&self) -> Result<Option<Lock>> {
        let path = self.root.join("lock");
        if fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let file = open_lock_file(&path, false)?;
        self.wait_for(file, &path).map(Some)
    }

    fn wait_for(&self, file: File, path: &Path) -> Result<Lock> {
        let started = Instant::now();
        loop {
            if crate::kernel::sys::try_lock_whole_file(file.as_fd())
                .fail_as(ErrorKind::State, || format!("locking {}", path.display()))?
            {
                return Ok(Lock { _file: file });
            }
            if let Some(reason) = self.cancel.reason() {
                return Err(fail(
                    ErrorKind::Cancelled,
                    format!(
                        "{reason} while waiting for the lock of {}",
                        self.root.display()
                    ),
                ));
            }
            if started.elapsed() >= self.lock_wait {
                return Err(fail(
                    ErrorKind::State,
                    format!(
                        "{} is locked by {} for more than {}; try again, or look at that process",
                        self.root.display(),
                        describe_lock_holders(path),
                        crate::base::duration::human(self.lock_wait)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Takes the lock of record `id` without waiting: `None` when another
    /// live process holds it (an operation in progress).
    pub(crate) fn try_lock_record(&self, id: &str) -> Result<Option<Lock>> {
        let path = self.lock_path(id);
        let file = open_lock_file(&path, true)?;
        match crate::kernel::sys::try_lock_whole_file(file.as_fd()) {
            Ok(true) => Ok(Some(Lock { _file: file })),
            Ok(false) => Ok(None),
            Err(e) => Err(e).fail_as(ErrorKind::State, || format!("locking {}", path.display())),
        }
    }

    /// Is the lock of `id` held by a running operation? Asked without
    /// taking it (F_OFD_GETLK) and without creating a lock file, so a
    /// look (inspect, gc's scan) never makes an operation think its id is
    /// busy.
    pub(crate) fn lock_is_held(&self, id: &str) -> bool {
        open_lock_file(&self.lock_path(id), false)
            .ok()
            .is_some_and(|file| {
                crate::kernel::sys::whole_file_is_locked(file.as_fd()).unwrap_or(false)
            })
    }

    /// Removes the lock file of `id`; call while holding that lock, after the
    /// record is gone.
    pub(crate) fn remove_lock(&self, id: &str) {
        let _ = fs::remove_file(self.lock_path(id));
    }
}

/// FNV-1a (64 bits) of the path's bytes, as 16 hex digits: a stable file
/// name for a target of any length.
fn target_key(target: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in target.as_os_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The text of a file of the state directory, or `None` unless it is a
/// regular file of at most `limit` bytes. It is never followed through a
/// symlink and never waited on: a FIFO planted under its name opens at once
/// (O_NONBLOCK) and is then refused by its type.
pub fn read_state_file(path: &Path, limit: u64) -> Option<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, limit), &mut text).ok()?;
    Some(text)
}

/// A short file's trimmed content (a target index entry).
pub(crate) fn read_small_file(path: &Path) -> Option<String> {
    read_state_file(path, 256).map(|text| text.trim().to_string())
}

/// A held lock of the state directory: an open file description with an
/// OFD lock (fcntl(2) `F_OFD_SETLK`), released when dropped (or when the
/// process dies). OFD locks, unlike flock(2), can be tested without taking
/// them (`F_OFD_GETLK`).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// The held lock of one record.
pub type RecordLock = Lock;

/// Opens a lock file (creating it 0600 with `create`): never through a
/// symlink, never waiting (a FIFO opens at once), and only a regular file.
fn open_lock_file(path: &Path, create: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits())
        .open(path)
        .fail_as(ErrorKind::State, || {
            format!("opening lock {}", path.display())
        })?;
    let regular = file.metadata().is_ok_and(|m| m.is_file());
    if !regular {
        return Err(fail(
            ErrorKind::State,
            format!("lock {} is not a regular file; remove it", path.display()),
        ));
    }
    Ok(file)
}

/// Who holds the lock on `path`: the processes with an open file of it
/// that holds a lock (a `lock:` line in its `/proc/PID/fdinfo`), not
/// those that only wait for it (they have it open too). The first
/// [`NAMED`], then how many more.
fn describe_lock_holders(path: &Path) -> String {
    use crate::kernel::holders::{NAMED, read_command};
    let holders: Vec<String> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == std::process::id() {
                return None;
            }
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            let holds = fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l == path)
                    && std::fs::read_to_string(entry.path().join("fdinfo").join(fd.file_name()))
                        .is_ok_and(|info| info.lines().any(|l| l.starts_with("lock:")))
            });
            holds.then(|| {
                let command = read_command(&entry.path()).unwrap_or_default();
                format!("pid {pid} ({command})")
            })
        })
        .collect();
    match holders.len() {
        0 => "another process".into(),
        n if n <= NAMED => holders.join(", "),
        n => format!("{} and {} more", holders[..NAMED].join(", "), n - NAMED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_are_stable_and_distinct() {
        assert_eq!(
            target_key(Path::new("/mnt/a")),
            target_key(Path::new("/mnt/a"))
        );
        assert_ne!(
            target_key(Path::new("/mnt/a")),
            target_key(Path::new("/mnt/b"))
        );
        assert_eq!(target_key(Path::new("")).len(), 16);
        // FNV-1a 64 of "a", a published test vector.
        assert_eq!(target_key(Path::new("a")), "af63dc4c8601ec8c");
    }

    #[test]
    fn ids() {
        for good in ["a", "web-1", "x_y.z", "0123"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert!(check_id(&new_id()).is_ok());
        // Ids of earlier versions stay valid.
        assert!(check_id("6b085fcb-1b8a-31a866ff").is_ok());
    }

    #[test]
    fn new_ids_differ_at_once() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "made in one process, at once");
    }

    #[test]
    fn an_ambiguous_prefix_names_a_few_matches_sorted_and_counts_the_rest() {
        let ids: Vec<String> = (0..29).rev().map(|n| format!("6b16{n:02}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let said = match_id("6b16", &ids).unwrap_err();
        assert_eq!(
            said,
            "6b16: the prefix of 29 ids (6b1600, 6b1601, 6b1602, 6b1603, 6b1604, and 24 more); give more of it"
        );
        let said = match_id("6b162", &ids).unwrap_err();
        assert!(
            said.contains("of 9 ids (6b1620, 6b1621, 6b1622, 6b1623, 6b1624, and 4 more)"),
            "{said}"
        );
        let few = ["6b16ff", "6b16aa"];
        let said = match_id("6b16", &few).unwrap_err();
        assert!(said.contains("of 2 ids (6b16aa, 6b16ff);"), "{said}");
        assert_eq!(match_id("6b1628", &ids), Ok(Some("6b1628")));
        assert_eq!(match_id("6b1", &ids), Ok(None), "too short");
    }
}
