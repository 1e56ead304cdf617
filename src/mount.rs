//! The mount operation: validate, plan, record `preparing`, build the
//! overlay with the chosen strategy, record `mounted`. Every failure undoes
//! what was done; a crash at any instant leaves what `gc` rolls back.

use crate::exit::{Code, Coded, fail};
use crate::idmap::IdRange;
use crate::overlay::{self, MAX_LAYERS, Strategy, Tree};
use crate::state::{Record, RecordState, StateDir};
use crate::strategy::{OverlaySpec, TempMounts};
use crate::unmount::{mount_id_of, retry_unmount, unique_mount_id_of};
use crate::{features, state, strategy, testpoint, userns};
use anyhow::Result;
use std::cell::Cell;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::state::RecordLock;

/// Where the id maps come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maps {
    Ranges {
        uid: Vec<IdRange>,
        gid: Vec<IdRange>,
    },
    /// An existing user namespace file, e.g. `/proc/PID/ns/user`.
    Userns(PathBuf),
}

/// A mount request as the user gave it (paths not yet checked).
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub target: PathBuf,
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub options: Vec<(String, Option<String>)>,
    pub maps: Maps,
    pub strategy: Strategy,
    pub id: Option<String>,
    /// How long temporary mounts may stay busy before we give up on them.
    pub timeout: Duration,
}

/// The request with every path checked and canonical.
struct Checked {
    target: PathBuf,
    lowerdirs: Vec<PathBuf>,
    upperdir: Option<PathBuf>,
    workdir: Option<PathBuf>,
}

fn usage(message: String) -> anyhow::Error {
    fail(Code::Usage, message)
}

/// Checks one path argument: absolute, an existing directory, with no
/// character overlayfs options cannot carry, before and after resolving
/// symlinks. Returns the canonical path.
fn check_dir_arg(what: &str, path: &Path, must_be_absolute: bool) -> Result<PathBuf> {
    let text = path
        .to_str()
        .ok_or_else(|| usage(format!("{what} {} is not valid UTF-8", path.display())))?;
    overlay::check_path_chars(what, text).map_err(usage)?;
    if must_be_absolute && !path.is_absolute() {
        return Err(usage(format!("{what} {text} is not an absolute path")));
    }
    // One O_PATH open and one readlink of its /proc/self/fd link give the
    // canonical path of a directory; canonicalize(3) would lstat and
    // readlink every component (265 readlinks for 50 layers).
    use rustix::fs::{Mode, OFlags};
    let dir = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::NOTDIR => usage(format!("{what} {text} is not a directory")),
        e => usage(format!("{what} {text}: {}", crate::describe_io(&e.into()))),
    })?;
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir));
    let target = rustix::fs::readlink(link.as_str(), Vec::new())
        .map_err(|e| usage(format!("{what} {text}: {}", crate::describe_io(&e.into()))))?;
    let canonical = PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(target.into_bytes()),
    );
    let resolved = canonical.to_str().ok_or_else(|| {
        usage(format!(
            "{what} {text} resolves to a path that is not UTF-8"
        ))
    })?;
    overlay::check_path_chars(what, resolved)
        .map_err(|e| usage(format!("{e} (after resolving symlinks in {text})")))?;
    Ok(canonical)
}

fn check(req: &MountRequest) -> Result<Checked> {
    if req.lowerdirs.is_empty() {
        return Err(usage(
            "no lower layers given (--lowerdir or -o lowerdir=)".into(),
        ));
    }
    if req.lowerdirs.len() > MAX_LAYERS {
        return Err(usage(format!(
            "{} lower layers given; overlayfs allows at most {MAX_LAYERS}",
            req.lowerdirs.len()
        )));
    }
    let target = check_dir_arg("target", &req.target, false)?;
    let mut lowerdirs: Vec<PathBuf> = Vec::new();
    // Canonical path -> position, so the duplicate check stays linear (a
    // scan per layer was a third of a 500-layer mount).
    let mut seen: std::collections::HashMap<PathBuf, usize> = std::collections::HashMap::new();
    for (given, layer) in req.lowerdirs.iter().enumerate() {
        let canonical = check_dir_arg("lower layer", layer, true)?;
        if canonical == Path::new("/") {
            return Err(usage("lower layer / is not allowed".into()));
        }
        if let Some(&first) = seen.get(&canonical) {
            return Err(usage(format!(
                "lower layer {} is given twice (positions {} and {})",
                layer.display(),
                first + 1,
                given + 1
            )));
        }
        seen.insert(canonical.clone(), given);
        lowerdirs.push(canonical);
    }
    let (upperdir, workdir) = match (&req.upperdir, &req.workdir) {
        (None, None) => {
            if lowerdirs.len() < 2 {
                return Err(usage(
                    "a read-only overlay (no upperdir) needs at least two lower layers".into(),
                ));
            }
            (None, None)
        }
        (Some(_), None) => return Err(usage("upperdir given without workdir".into())),
        (None, Some(_)) => return Err(usage("workdir given without upperdir".into())),
        (Some(upper), Some(work)) => {
            let upper = check_dir_arg("upperdir", upper, true)?;
            let work = check_dir_arg("workdir", work, true)?;
            let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).unwrap_or(0);
            if dev(&upper) != dev(&work) {
                return Err(usage(format!(
                    "workdir {} is on another filesystem than upperdir {}; overlayfs needs them on the same one",
                    work.display(),
                    upper.display()
                )));
            }
            if upper == work || work.starts_with(&upper) || upper.starts_with(&work) {
                return Err(usage(format!(
                    "upperdir {} and workdir {} must be separate directories, neither inside the other",
                    upper.display(),
                    work.display()
                )));
            }
            for layer in &lowerdirs {
                for (name, dir) in [("upperdir", &upper), ("workdir", &work)] {
                    if dir.starts_with(layer) || layer.starts_with(dir) {
                        return Err(usage(format!(
                            "{name} {} overlaps lower layer {}",
                            dir.display(),
                            layer.display()
                        )));
                    }
                }
            }
            (Some(upper), Some(work))
        }
    };
    for (name, dir) in [
        (
            "lower layer",
            lowerdirs.iter().find(|l| target.starts_with(l)),
        ),
        (
            "upperdir",
            upperdir.as_ref().filter(|u| target.starts_with(u)),
        ),
    ] {
        if let Some(dir) = dir {
            return Err(usage(format!(
                "target {} lies inside {name} {}",
                target.display(),
                dir.display()
            )));
        }
    }
    Ok(Checked {
        target,
        lowerdirs,
        upperdir,
        workdir,
    })
}

/// Picks the strategy and the trees to clone.
fn plan(req: &MountRequest, checked: &Checked, state: &StateDir) -> Result<(Strategy, Vec<Tree>)> {
    let mut layer_mounts = Vec::new();
    for layer in &checked.lowerdirs {
        layer_mounts
            .push(mount_id_of(layer).code(Code::System, || format!("statx {}", layer.display()))?);
    }
    let mount_of = |p: &Path| mount_id_of(p).map_err(|e| format!("statx {}: {e}", p.display()));
    let strategy = match req.strategy {
        Strategy::Auto => {
            if features::cached_or_probe(state)?.detached {
                Strategy::Detached
            } else {
                // common-dir unless the layers share no directory but /.
                let shared =
                    overlay::plan_trees(&checked.lowerdirs, &layer_mounts, false, false, &mount_of);
                if shared.is_ok() {
                    Strategy::CommonDir
                } else {
                    Strategy::PerLayer
                }
            }
        }
        chosen => chosen,
    };
    // Detached never attaches anything, so a layer group it cannot clone
    // whole simply gets a tree per layer; common-dir refuses instead.
    let trees = overlay::plan_trees(
        &checked.lowerdirs,
        &layer_mounts,
        strategy == Strategy::PerLayer,
        strategy == Strategy::Detached,
        &mount_of,
    )
    .map_err(|e| usage(format!("{e}; use --strategy per-layer or detached")))?;
    Ok((strategy, trees))
}

/// Claims the id and the target under the global lock, takes the record's
/// own lock and writes the `preparing` record: from here on a crash leaves a
/// record that `gc` can find.
fn claim(state: &StateDir, record: &Record, timeout: Duration) -> Result<RecordLock> {
    let _all = state.lock_all()?;
    if fs::symlink_metadata(state.record_path(&record.id)).is_ok() {
        return Err(usage(format!("id {} is already in use", record.id)));
    }
    if let Some(other) = state.record_at(&record.target)
        && !replaced_stale(state, &other, timeout)?
    {
        return Err(fail(
            Code::Mount,
            format!(
                "{} is already used by idmap-overlay mount {} ({:?})",
                record.target.display(),
                other.id,
                other.state
            ),
        ));
    }
    if !record.temp_mounts.is_empty() {
        state.ensure_private_temp_area()?;
    }
    let lock = state
        .try_lock_record(&record.id)?
        .ok_or_else(|| usage(format!("id {} is in use by a running operation", record.id)))?;
    // The index entry first: a crash between the two leaves a stale entry
    // (ignored, and removed by gc), never a record the index misses.
    let written = state
        .index_target(&record.target, &record.id)
        .and_then(|()| state.write_record(record));
    if let Err(e) = written {
        // A full or read-only state filesystem: leave no lock file behind
        // (the RecordGuard that would remove it is not armed yet).
        state.remove_lock(&record.id);
        return Err(e);
    }
    Ok(lock)
}

/// A `mounted` record whose overlay is gone (a plain umount(8), or a
/// systemd .mount unit stopped) must not block the target forever: with its
/// lock free and no overlay of its own in the table, it is torn down like
/// `gc` would, and the new mount goes ahead.
fn replaced_stale(state: &StateDir, other: &Record, timeout: Duration) -> Result<bool> {
    if other.state != RecordState::Mounted {
        return Ok(false);
    }
    let Some(_lock) = state.try_lock_record(&other.id)? else {
        return Ok(false);
    };
    let table = crate::mountinfo::read()?;
    if table
        .iter()
        .any(|m| crate::umount::is_our_overlay(m, other))
    {
        return Ok(false);
    }
    crate::umount::teardown(state, &mut other.clone(), &table, timeout)?;
    Ok(true)
}

/// Removes the record (and its lock file) of an operation that failed,
/// unless disarmed on success.
struct RecordGuard<'a> {
    state: &'a StateDir,
    id: String,
    target: &'a Path,
    armed: bool,
    /// Set when our overlay could not be unmounted on the way out: then the
    /// `preparing` record stays, so gc finds and rolls back the overlay.
    overlay_left: &'a Cell<bool>,
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        if self.overlay_left.get() {
            log::warn!(
                "cleanup: the overlay at {} stays mounted; record {} is kept for `idmap-overlay gc`",
                self.target.display(),
                self.id
            );
            return;
        }
        if self.armed {
            let removed = self
                .state
                .remove_record(&self.id)
                .and_then(|()| self.state.unindex_target(self.target, &self.id));
            if let Err(e) = removed {
                log::warn!("cleanup: {e:#}");
            }
            self.state.remove_lock(&self.id);
        }
    }
}

/// Unmounts the overlay we attached if a later step fails, after checking
/// that the mount at the target is still the one we made.
struct OverlayGuard<'a> {
    target: &'a Path,
    mount_id: Option<u64>,
    timeout: Duration,
    overlay_left: &'a Cell<bool>,
}

impl Drop for OverlayGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.mount_id
            && mount_id_of(self.target).is_ok_and(|now| now == id)
            && let Err(e) = retry_unmount(self.target, self.timeout)
        {
            log::warn!("cleanup: unmounting {}: {e}", self.target.display());
            self.overlay_left.set(true);
        }
    }
}

fn option_strings(options: &[(String, Option<String>)]) -> Vec<String> {
    options
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect()
}

/// Mounts the overlay and returns its record (state `mounted`).
/// Bad input is refused before the state directory is even opened (or
/// created): no side effect at all.
pub fn mount(req: &MountRequest, state_root: &Path) -> Result<Record> {
    let checked = check(req)?;
    let state = &StateDir::open(state_root)?;
    let id = match &req.id {
        Some(id) => {
            state::check_id(id).map_err(usage)?;
            id.clone()
        }
        None => state::new_id(),
    };
    let (userns_fd, uidmap, gidmap): (Option<OwnedFd>, _, _) = match &req.maps {
        Maps::Ranges { uid, gid } => (None, uid.clone(), gid.clone()),
        Maps::Userns(path) => {
            let (fd, uid, gid) = userns::open_existing(path)
                .code(Code::Usage, || format!("--userns {}", path.display()))?;
            (Some(fd), uid, gid)
        }
    };
    let (strategy, trees) = plan(req, &checked, state)?;
    let attached = strategy != Strategy::Detached;
    let temp_root = state.temp_root(&id);
    let mut record = Record {
        version: state::RECORD_VERSION,
        id: id.clone(),
        target: checked.target.clone(),
        state: RecordState::Preparing,
        strategy,
        lowerdirs: checked.lowerdirs.clone(),
        upperdir: checked.upperdir.clone(),
        workdir: checked.workdir.clone(),
        options: option_strings(&req.options),
        uidmap,
        gidmap,
        userns: match &req.maps {
            Maps::Userns(p) => Some(p.clone()),
            Maps::Ranges { .. } => None,
        },
        common_dir: (strategy != Strategy::PerLayer && trees.len() == 1)
            .then(|| trees[0].dir.clone()),
        idmapped_dirs: trees.iter().map(|t| t.dir.clone()).collect(),
        temp_mounts: if attached {
            (0..trees.len())
                .map(|n| temp_root.join(n.to_string()))
                .collect()
        } else {
            Vec::new()
        },
        source: state::source_tag(&id),
        mount_id: None,
        mount_id_unique: None,
        pid: std::process::id(),
        created: state::now_rfc3339(),
    };

    let _lock = claim(state, &record, req.timeout)?;
    let overlay_left = Cell::new(false);
    let mut record_guard = RecordGuard {
        overlay_left: &overlay_left,
        state,
        id: id.clone(),
        target: &checked.target,
        armed: true,
    };
    testpoint::hit("record-preparing")?;

    let userns_fd = match userns_fd {
        Some(fd) => fd,
        None => userns::create(&record.uidmap, &record.gidmap)?,
    };
    let spec = OverlaySpec {
        target: &checked.target,
        source: &record.source,
        lowerdir_count: checked.lowerdirs.len(),
        trees: &trees,
        upperdir: checked.upperdir.as_deref(),
        workdir: checked.workdir.as_deref(),
        options: &req.options,
    };
    let mut temps = TempMounts::new(temp_root, req.timeout);
    if attached {
        strategy::mount_attached(&spec, userns_fd.as_fd(), &mut temps)?;
    } else {
        strategy::mount_detached(&spec, userns_fd.as_fd())?;
    }
    drop(userns_fd);
    // Without the new mount's id we cannot prove what to unmount: on that
    // (unlikely) failure the overlay and its `preparing` record stay for gc.
    let mounted_id = mount_id_of(&checked.target);
    overlay_left.set(mounted_id.is_err());
    let mut overlay_guard = OverlayGuard {
        target: &checked.target,
        mount_id: Some(mounted_id.code(Code::Mount, || {
            format!("statx {} after mounting", checked.target.display())
        })?),
        timeout: req.timeout,
        overlay_left: &overlay_left,
    };
    testpoint::hit("overlay-mounted")?;

    // The overlay holds its own clones of the layers: the temporary mounts
    // can go now. One that stays busy is left for gc, not a reason to undo
    // a working overlay.
    for problem in temps.release() {
        log::warn!("temporary mount left for gc: {problem}");
    }
    testpoint::hit("temp-unmounted")?;

    record.state = RecordState::Mounted;
    record.mount_id = overlay_guard.mount_id;
    record.mount_id_unique = unique_mount_id_of(&checked.target);
    state.write_record(&record)?;
    testpoint::hit("record-mounted")?;
    overlay_guard.mount_id = None;
    record_guard.armed = false;
    Ok(record)
}
