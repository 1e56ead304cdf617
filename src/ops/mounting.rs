//! The mount operation: validate, plan, record `preparing`, build the
//! overlay with the chosen strategy, record `mounted`. Every failure undoes
//! what was done; a crash at any instant leaves what `gc` rolls back.

use crate::base::cancel::Cancel;
use crate::base::cancel::Deadline;
use crate::base::cancel::checkpoint;
use crate::base::error::Result;
use crate::base::error::{Context, ErrorKind, fail};
use crate::base::idmap::{self, IdRange};
use crate::base::overlay::{self, MAX_LAYERS, Strategy, VfsFlags};
use crate::kernel::in_use::{DirUse, Prober};
use crate::kernel::proof::{Expected, unmount_proven};
use crate::kernel::resolve::{Resolved, Resolver};
use crate::kernel::sys::MountIds;
use crate::ops::elsewhere::{overlays_using, summarize};
use crate::ops::strategy::{OverlaySpec, PlannedTree, PlannedUpper, Target, TempMounts};
use crate::state::{Record, RecordState, StateDir};
use crate::{kernel::userns, ops::features, ops::strategy, state};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
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
    /// mount(8)'s per-mount flags, set when the overlay's mount is made.
    pub flags: VfsFlags,
    pub maps: Maps,
    /// Accept a map that shows an on-disk id other than 0 as host root.
    pub allow_host_root: bool,
    /// Accept a user namespace ([`Maps::Userns`]) created by this uid; by
    /// default only one root created is taken (a user's namespace may have
    /// taken over the pid of an exited container, with a map of the user's
    /// choosing).
    pub userns_owner: Option<u32>,
    pub strategy: Strategy,
    /// Idmap the upper layer too (`--idmapped-upper`): what the container
    /// writes is stored with its own ids, a portable layer. Needs an
    /// upperdir no user but root can reach (see `Resolved::closed`).
    pub idmapped_upper: bool,
    pub id: Option<String>,
    /// How long temporary mounts may stay busy before we give up on them.
    pub timeout: Duration,
    /// Raised, it stops the mount at the next step and rolls it back.
    pub cancel: Cancel,
}

/// How long a temporary mount may stay busy, and a lock be waited for,
/// unless the request says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);

impl MountRequest {
    /// A read-only overlay of `lowerdirs` (top first) at `target`, its
    /// layers shown through `maps`, with the defaults: the `auto` strategy,
    /// no extra options, a new id, [`DEFAULT_TIMEOUT`]. Set `upperdir` and
    /// `workdir` for a writable one.
    ///
    /// ```
    /// use idmap_overlay::{IdRange, Maps, MountRequest, Strategy};
    ///
    /// let map = vec![IdRange { container: 0, host: 100_000, size: 65_536 }];
    /// let mut req = MountRequest::new(
    ///     "/mnt/c1",
    ///     ["/layers/2", "/layers/1"],
    ///     Maps::Ranges { uid: map.clone(), gid: map },
    /// );
    /// req.strategy = Strategy::Detached;
    /// req.options.push(("redirect_dir".into(), Some("on".into())));
    /// assert_eq!(req.lowerdirs.len(), 2);
    /// ```
    pub fn new<P: Into<PathBuf>>(
        target: impl Into<PathBuf>,
        lowerdirs: impl IntoIterator<Item = P>,
        maps: Maps,
    ) -> MountRequest {
        MountRequest {
            target: target.into(),
            lowerdirs: lowerdirs.into_iter().map(Into::into).collect(),
            upperdir: None,
            workdir: None,
            options: Vec::new(),
            flags: VfsFlags::default(),
            maps,
            allow_host_root: false,
            userns_owner: None,
            strategy: Strategy::Auto,
            idmapped_upper: false,
            id: None,
            timeout: DEFAULT_TIMEOUT,
            cancel: Cancel::default(),
        }
    }
}

/// The request with every path resolved (once, safely) to a file
/// descriptor; from here on only these are used.
struct Checked {
    target: Target,
    lowerdirs: Vec<Resolved>,
    upperdir: Option<Resolved>,
    workdir: Option<Resolved>,
}

fn usage(message: String) -> crate::base::error::Error {
    fail(ErrorKind::InvalidInput, message)
}

/// Resolves one directory argument: absolute (unless `may_be_relative`),
/// under the ownership rule of `resolve`, with no character overlayfs
/// options cannot carry, before and after resolving symlinks.
fn check_dir_arg(
    resolver: &mut Resolver,
    what: &str,
    path: &Path,
    may_be_relative: bool,
) -> Result<Resolved> {
    let text = path
        .to_str()
        .ok_or_else(|| usage(format!("{what} {} is not valid UTF-8", path.display())))?;
    overlay::check_path_chars(what, text).map_err(usage)?;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else if may_be_relative {
        std::env::current_dir()
            .fail_as(ErrorKind::System, || "reading the current directory".into())?
            .join(path)
    } else {
        let suggestion = std::env::current_dir()
            .map(|cwd| format!(" (did you mean {}?)", cwd.join(path).display()))
            .unwrap_or_default();
        return Err(usage(format!(
            "{what} {text} is not an absolute path{suggestion}"
        )));
    };
    let resolved = resolver.resolve_dir(&absolute).map_err(|e| {
        let message = format!("{what} {text}: {}", e.describe(&absolute));
        crate::base::error::Error::from(e).reworded(ErrorKind::InvalidInput, message)
    })?;
    let canonical = resolved.path.to_str().ok_or_else(|| {
        usage(format!(
            "{what} {text} resolves to a path that is not UTF-8"
        ))
    })?;
    overlay::check_path_chars(what, canonical)
        .map_err(|e| usage(format!("{e} (after resolving symlinks in {text})")))?;
    Ok(resolved)
}

/// Resolves the target and the entry that names it in its parent (the
/// new mount is found, and on failure unmounted, through that entry, each
/// time proven by its ids, so the entry needs no other check).
fn check_target(resolver: &mut Resolver, path: &Path) -> Result<Target> {
    let dir = check_dir_arg(resolver, "target", path, false)?;
    let entry = resolver
        .resolve_entry(&dir.path)
        .map_err(|e| usage(format!("target {}: {e}", path.display())))?;
    Ok(Target { dir, entry })
}

/// The upperdir and workdir, both or neither: separate directories on one
/// filesystem, overlapping no lower layer. Neither makes a read-only
/// overlay, which needs two layers.
fn check_upper_work(
    resolver: &mut Resolver,
    req: &MountRequest,
    lowerdirs: &[Resolved],
) -> Result<(Option<Resolved>, Option<Resolved>)> {
    match (&req.upperdir, &req.workdir) {
        (None, None) if !req.idmapped_upper => {
            if lowerdirs.len() < 2 {
                return Err(usage(
                    "a read-only overlay (no upperdir) needs at least two lower layers".into(),
                ));
            }
            Ok((None, None))
        }
        (None, None) => Err(usage(
            "--idmapped-upper needs an upperdir and a workdir: there is no upper layer to idmap"
                .into(),
        )),
        (Some(_), None) => Err(usage("upperdir given without workdir".into())),
        (None, Some(_)) => Err(usage("workdir given without upperdir".into())),
        (Some(upper), Some(work)) => {
            let upper = check_dir_arg(resolver, "upperdir", upper, false)?;
            let work = check_dir_arg(resolver, "workdir", work, false)?;
            if upper.meta.dev != work.meta.dev {
                return Err(usage(format!(
                    "workdir {} is on another filesystem than upperdir {}; overlayfs needs them on the same one",
                    work.path.display(),
                    upper.path.display()
                )));
            }
            let (u, w) = (&upper.path, &work.path);
            if u == w || w.starts_with(u) || u.starts_with(w) {
                return Err(usage(format!(
                    "upperdir {} and workdir {} must be separate directories, neither inside the other",
                    u.display(),
                    w.display()
                )));
            }
            if req.idmapped_upper {
                check_idmapped_upper_reach(&upper, &work)?;
            }
            for layer in lowerdirs {
                for (name, dir) in [("upperdir", u), ("workdir", w)] {
                    if dir.starts_with(&layer.path) || layer.path.starts_with(dir) {
                        return Err(usage(format!(
                            "{name} {} overlaps lower layer {}",
                            dir.display(),
                            layer.path.display()
                        )));
                    }
                }
            }
            Ok((Some(upper), Some(work)))
        }
    }
}

/// `--idmapped-upper` stores what the container writes with its own ids:
/// a file its root makes setuid is, on disk, a host-root setuid file. So
/// no user but root may reach the upper or work directory by path: some
/// directory above each is root's and closed to others (containerd's
/// snapshot and podman's storage directories are 0700). And both must be
/// on one mount, which the idmapped tree of their common parent clones.
fn check_idmapped_upper_reach(upper: &Resolved, work: &Resolved) -> Result<()> {
    for (what, dir) in [("upperdir", upper), ("workdir", work)] {
        if !dir.closed {
            return Err(usage(format!(
                "--idmapped-upper: {what} {} can be reached by users other than root (no directory above it is root's and closed to others, as a 0700 one is); what the container stores there as its root, setuid files included, is owned by host root on disk",
                dir.path.display()
            )));
        }
    }
    if upper.meta.mnt_id != work.meta.mnt_id {
        return Err(usage(format!(
            "--idmapped-upper: upperdir {} and workdir {} are on different mounts; one idmapped mount must hold both",
            upper.path.display(),
            work.path.display()
        )));
    }
    Ok(())
}

/// The extended attribute `--idmapped-upper` marks an upper layer's root
/// directory with (root's `trusted.` namespace, which no user can write):
/// its files carry container ids, and it must be mounted that way again.
pub const IDMAPPED_UPPER_XATTR: &str = "trusted.idmap-overlay.upper";
const IDMAPPED_UPPER_VALUE: &[u8] = b"idmapped";

fn marked_idmapped(upper: &Resolved) -> bool {
    let mut value = [0u8; 16];
    rustix::fs::getxattr(
        crate::kernel::resolve::proc_fd_path(upper.fd.as_fd()),
        IDMAPPED_UPPER_XATTR,
        &mut value,
    )
    .is_ok_and(|n| &value[..n] == IDMAPPED_UPPER_VALUE)
}

/// Refuses to mix the two ways of storing a container's files in one
/// upper layer: shifted host ids (without `--idmapped-upper`) and the
/// container's own ids (with it). Mixed, the container sees half its
/// files as nobody and cannot write them. Returns the container root's
/// host uid and gid, whom an idmapped upper's overlay is created as.
fn check_upper_ids(
    req: &MountRequest,
    checked: &Checked,
    uidmap: &[IdRange],
    gidmap: &[IdRange],
) -> Result<Option<(u32, u32)>> {
    let Some(upper) = &checked.upperdir else {
        return Ok(None);
    };
    let marked = marked_idmapped(upper);
    if !req.idmapped_upper {
        if marked {
            return Err(usage(format!(
                "upperdir {} was written with --idmapped-upper (it stores the container's own ids, xattr {IDMAPPED_UPPER_XATTR}); mount it with --idmapped-upper, or its files show as nobody to the container",
                upper.path.display()
            )));
        }
        return Ok(None);
    }
    let owner = upper.meta.uid;
    if !marked && idmap::shows_as(uidmap, owner) && !idmap::maps_container_id(uidmap, owner) {
        return Err(usage(format!(
            "--idmapped-upper: upperdir {} holds shifted data (its root is owned by host uid {owner}, inside the map's host range): it was written without --idmapped-upper; mounted with it, the container would see those files as nobody",
            upper.path.display()
        )));
    }
    match (idmap::host_of(uidmap, 0), idmap::host_of(gidmap, 0)) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(usage(
            "--idmapped-upper needs maps that map container id 0 (the container's root, whom overlayfs acts as on the upper layer)".into(),
        )),
    }
}

/// The idmapped upper's plan: the upper and work directories' common
/// parent, resolved, and each relative to it.
fn plan_upper(checked: &Checked, creator: (u32, u32)) -> Result<Option<PlannedUpper>> {
    let (Some(upper), Some(work)) = (&checked.upperdir, &checked.workdir) else {
        return Ok(None);
    };
    let parent = overlay::common_dir(&[upper.path.clone(), work.path.clone()]);
    let dir = Resolver::new().resolve_dir(&parent).map_err(|e| {
        usage(format!(
            "--idmapped-upper: the directory above upperdir and workdir, {}: {e}",
            parent.display()
        ))
    })?;
    if dir.meta.mnt_id != upper.meta.mnt_id {
        return Err(usage(format!(
            "--idmapped-upper: {} (above upperdir and workdir) is on another mount than they are",
            parent.display()
        )));
    }
    let relative = |p: &Path| p.strip_prefix(&parent).map(Path::to_path_buf);
    match (relative(&upper.path), relative(&work.path)) {
        (Ok(upper), Ok(work)) => Ok(Some(PlannedUpper {
            dir,
            upper,
            work,
            creator,
        })),
        _ => Err(fail(
            ErrorKind::Bug,
            "upperdir or workdir outside their common parent",
        )),
    }
}

/// Marks the upper layer as idmapped (before the overlay writes anything
/// there); removed again if the mount fails and the mark was ours.
struct UpperMark {
    path: Option<PathBuf>,
}

impl UpperMark {
    fn set(upper: &Resolved) -> Result<UpperMark> {
        if marked_idmapped(upper) {
            return Ok(UpperMark { path: None });
        }
        let path = crate::kernel::resolve::proc_fd_path(upper.fd.as_fd());
        rustix::fs::setxattr(
            &path,
            IDMAPPED_UPPER_XATTR,
            IDMAPPED_UPPER_VALUE,
            rustix::fs::XattrFlags::empty(),
        )
        .fail_as(ErrorKind::Mount, || {
            format!(
                "marking upperdir {} as idmapped (xattr {IDMAPPED_UPPER_XATTR})",
                upper.path.display()
            )
        })?;
        Ok(UpperMark { path: Some(path) })
    }

    fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for UpperMark {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = rustix::fs::removexattr(&path, IDMAPPED_UPPER_XATTR);
        }
    }
}

/// The overlay came up writable, as asked: with an idmapped upper,
/// overlayfs mounts read-only (only a line in the kernel log) when it
/// cannot make its work directory as the creating credentials.
fn check_writable(target: &Target, req: &MountRequest) -> Result<()> {
    if req.flags.rdonly || !req.idmapped_upper {
        return Ok(());
    }
    let mounted = target.entry.open().fail_as(ErrorKind::Mount, || {
        format!("opening {} after mounting", target.dir.path.display())
    })?;
    let st = nix::sys::statvfs::fstatvfs(&mounted).fail_as(ErrorKind::Mount, || {
        format!("statvfs {} after mounting", target.dir.path.display())
    })?;
    if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "overlayfs made the overlay at {} read-only: it could not prepare the idmapped upper layer's work directory as the container's root (the kernel log says why; a workdir holding files of ids outside the map does that); the overlay was undone",
                target.dir.path.display()
            ),
        ));
    }
    Ok(())
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
    if let Maps::Ranges { uid, gid } = &req.maps {
        check_host_root(uid, gid, req.allow_host_root)?;
    }
    let mut resolver = Resolver::new();
    let mut lowerdirs: Vec<Resolved> = Vec::new();
    // File identity -> position: a layer given twice, by any path.
    let mut seen: HashMap<(u32, u32, u64), usize> = HashMap::new();
    for (given, layer) in req.lowerdirs.iter().enumerate() {
        let resolved = check_dir_arg(&mut resolver, "lower layer", layer, false)?;
        if resolved.path == Path::new("/") {
            return Err(usage("lower layer / is not allowed".into()));
        }
        if let Some(&first) = seen.get(&resolved.meta.file_id()) {
            return Err(usage(format!(
                "lower layer {} is given twice (positions {} and {})",
                layer.display(),
                first + 1,
                given + 1
            )));
        }
        seen.insert(resolved.meta.file_id(), given);
        lowerdirs.push(resolved);
    }
    let (upperdir, workdir) = check_upper_work(&mut resolver, req, &lowerdirs)?;
    let target = check_target(&mut resolver, &req.target)?;
    let t = &target.dir.path;
    let inside_layer = lowerdirs.iter().find(|l| t.starts_with(&l.path));
    let inside_upper = upperdir.as_ref().filter(|u| t.starts_with(&u.path));
    for (name, dir) in [("lower layer", inside_layer), ("upperdir", inside_upper)] {
        if let Some(dir) = dir {
            return Err(usage(format!(
                "target {} lies inside {name} {}",
                t.display(),
                dir.path.display()
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

/// Refuses (exit 1) a map that shows an on-disk id other than 0 as host
/// root, unless `allowed`: see [`idmap::maps_to_host_root`].
fn check_host_root(uid: &[IdRange], gid: &[IdRange], allowed: bool) -> Result<()> {
    if allowed {
        return Ok(());
    }
    for (name, map) in [("uid", uid), ("gid", gid)] {
        if let Some(range) = idmap::maps_to_host_root(map) {
            return Err(usage(format!(
                "{name} map range {range} shows on-disk id {} as host root (0): a setuid file of that id would run as root; give --allow-host-root if that is intended",
                range.container
            )));
        }
    }
    Ok(())
}

/// The record of the overlay mounted at the target when it is the very one
/// asked for: the same layers, upper and work directories, maps, overlay
/// options and mount flags (how it was built does not matter), proven
/// attached at the target right now.
fn already_mounted(
    state_root: &Path,
    checked: &Checked,
    req: &MountRequest,
    uidmap: &[IdRange],
    gidmap: &[IdRange],
) -> Option<Record> {
    let state = StateDir::open_to_read(state_root, false).ok()?;
    let record = state.record_at(&checked.target.dir.path)?;
    let path = |dir: &Option<Resolved>| dir.as_ref().map(|d| d.path.clone());
    let same = record.state == RecordState::Mounted
        && record
            .lowerdirs
            .iter()
            .eq(checked.lowerdirs.iter().map(|l| &l.path))
        && record.upperdir == path(&checked.upperdir)
        && record.workdir == path(&checked.workdir)
        && record.uidmap == uidmap
        && record.gidmap == gidmap
        && record.options == option_strings(&req.options)
        && record.vfs_flags == req.flags.words()
        && record.idmapped_upper == req.idmapped_upper;
    let proven = matches!(
        crate::kernel::proof::prove(&checked.target.entry, &record.expected(), None),
        crate::kernel::proof::Proof::Proven(_)
    );
    (same && proven).then_some(record)
}

/// Refuses an upperdir or workdir that a live overlay uses, ours or
/// anyone's, in any mount namespace, whatever made it: two overlays on one
/// upperdir corrupt each other's files (overlayfs only warns, in dmesg).
/// The kernel is asked about each directory, by its fd; no mount table
/// is read and no path text compared. Our own records name the user
/// when one of them claims the directory; anyone else's is named by one
/// bounded walk, once the kernel has said so. Where this boot's feature
/// probe found the kernel's answer wrong, that walk decides instead, and
/// a warning says so.
fn refuse_dirs_in_use(prober: &mut Prober, state: &StateDir, checked: &Checked) -> Result<()> {
    for (what, dir) in [
        ("upperdir", &checked.upperdir),
        ("workdir", &checked.workdir),
    ] {
        let Some(dir) = dir else { continue };
        let deadline = Deadline::after(Duration::from_secs(1), &state.cancel);
        let mut users = None;
        let why = match prober.dir_in_use(dir.fd.as_fd()) {
            DirUse::Free => continue,
            DirUse::InUse => "is the upper or work directory of a live overlay".to_string(),
            DirUse::Unknown(why) => {
                log::warn!(
                    "{what} {}: {why}; looking for overlays that use it in every mount namespace instead",
                    dir.path.display()
                );
                let found = overlays_using(&dir.meta, &deadline);
                if found.items.is_empty() && state.record_claiming(&dir.path).is_none() {
                    continue;
                }
                users = Some(found);
                "is the upper or work directory of a live overlay".to_string()
            }
        };
        let whose = state
            .record_claiming(&dir.path)
            .map(|other| {
                format!(
                    " (idmap-overlay mount {} at {}, {})",
                    other.id,
                    other.target.display(),
                    other.state.name()
                )
            })
            .or_else(|| {
                let users = users.unwrap_or_else(|| overlays_using(&dir.meta, &deadline));
                (!users.items.is_empty()).then(|| format!(" ({})", summarize(&users.items)))
            })
            .unwrap_or_else(|| {
                " (in some mount namespace; findmnt -t overlay there names it)".into()
            });
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{what} {} {why}{whose}; two overlays on one {what} corrupt each other's files",
                dir.path.display()
            ),
        ));
    }
    Ok(())
}

/// Picks the strategy and the trees to clone, each tree's directory
/// resolved to an fd (the layers are checked beneath it when mounting).
fn plan(
    req: &MountRequest,
    checked: &Checked,
    features: Option<&features::Features>,
) -> Result<(Strategy, Vec<PlannedTree>)> {
    let layer_paths: Vec<PathBuf> = checked.lowerdirs.iter().map(|l| l.path.clone()).collect();
    let layer_mounts: Vec<u64> = checked.lowerdirs.iter().map(|l| l.meta.mnt_id).collect();
    let resolver = RefCell::new(Resolver::new());
    let mount_of = |p: &Path| {
        resolver
            .borrow_mut()
            .resolve_dir(p)
            .map(|dir| dir.meta.mnt_id)
            .map_err(|e| e.to_string())
    };
    let strategy = match req.strategy {
        Strategy::Auto => {
            if features.is_some_and(|f| f.detached) {
                Strategy::Detached
            } else {
                // common-dir unless the layers share no directory but /.
                let shared =
                    overlay::plan_trees(&layer_paths, &layer_mounts, false, false, &mount_of);
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
        &layer_paths,
        &layer_mounts,
        strategy == Strategy::PerLayer,
        strategy == Strategy::Detached,
        &mount_of,
    )
    .map_err(|e| usage(format!("{e}; use --strategy per-layer or detached")))?;
    let mut planned = Vec::new();
    for tree in trees {
        let dir = resolver
            .borrow_mut()
            .resolve_dir(&tree.dir)
            .map_err(|e| usage(format!("idmapped tree {}: {e}", tree.dir.display())))?;
        planned.push(PlannedTree {
            dir,
            layers: tree.layers,
        });
    }
    Ok((strategy, planned))
}

/// Claims the id and the target under the global lock, takes the record's
/// own lock and writes the `preparing` record: from here on a crash leaves a
/// record that `gc` can find.
fn claim(
    state: &StateDir,
    record: &Record,
    checked: &Checked,
    timeout: Duration,
    prober: &mut Prober,
) -> Result<RecordLock> {
    let _all = state.lock_all()?;
    let at_target = state.record_at(&record.target);
    // The id must be free, but for the record of a stale overlay at this
    // very target, replaced below: an fstab line's `idmap-overlay:ID`
    // mounted again after a plain umount(8).
    let id_taken = || fs::symlink_metadata(state.record_path(&record.id)).is_ok();
    let id_error = || usage(format!("id {} is already in use", record.id));
    if id_taken() && at_target.as_ref().is_none_or(|other| other.id != record.id) {
        return Err(id_error());
    }
    // A detached record's overlay lives on in other namespaces only: its
    // target here is free.
    if let Some(other) = at_target
        && other.state != RecordState::Detached
        && !replaced_stale(state, &other, timeout)?
    {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{} is already used by idmap-overlay mount {} ({})",
                record.target.display(),
                other.id,
                other.state.name()
            ),
        ));
    }
    if id_taken() {
        return Err(id_error());
    }
    // Two overlays on one upperdir or workdir corrupt each other's data
    // (overlayfs only warns in dmesg). The kernel said the directories
    // were free before the lock was taken; one of our records claiming
    // them now is an operation running (its lock is held), or one that
    // mounted since (the kernel is asked again).
    let dirs = [
        ("upperdir", &record.upperdir, &checked.upperdir),
        ("workdir", &record.workdir, &checked.workdir),
    ];
    for (what, dir, resolved) in dirs {
        let (Some(dir), Some(resolved)) = (dir, resolved) else {
            continue;
        };
        let Some(other) = state.record_claiming(dir) else {
            continue;
        };
        let alive =
            state.lock_is_held(&other.id) || prober.dir_in_use(resolved.fd.as_fd()) != DirUse::Free;
        if other.id != record.id && alive {
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "{what} {} is in use by idmap-overlay mount {} at {}; two overlays on one {what} corrupt each other's files",
                    dir.display(),
                    other.id,
                    other.target.display()
                ),
            ));
        }
    }
    if !record.temp_mounts.is_empty() {
        strategy::ensure_private_temp_area(state)?;
    }
    let lock = state
        .try_lock_record(&record.id)?
        .ok_or_else(|| usage(format!("id {} is in use by a running operation", record.id)))?;
    // The index entry first: a crash between the two leaves a stale entry
    // (ignored, and removed by gc), never a record the index misses.
    let written = state
        .index(record)
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
    let table = crate::kernel::mount_table::read()?;
    if table.iter().any(|m| other.is_overlay(m)) {
        return Ok(false);
    }
    let deadline = crate::base::cancel::Deadline::after(timeout, &state.cancel);
    let kept = matches!(
        crate::ops::unmounting::teardown(state, &mut other.clone(), &table, &deadline, None)?,
        crate::ops::unmounting::Teardown::LivesOn { .. }
    );
    log::warn!(
        "{}: overlay {} was already unmounted here (behind idmap-overlay's back){}",
        other.target.display(),
        other.id,
        if kept {
            "; it lives on elsewhere, so its record is kept as detached"
        } else {
            "; replacing its record"
        }
    );
    Ok(true)
}

/// Removes the record (and its lock file) of an operation that failed,
/// unless disarmed on success.
struct RecordGuard<'a> {
    state: &'a StateDir,
    id: String,
    /// Where the overlay was to go, for the message.
    target: &'a Path,
    /// The record's target, upperdir and workdir: their index entries go.
    claimed: Vec<&'a Path>,
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
                .and_then(|()| self.state.unindex(&self.claimed, &self.id));
            if let Err(e) = removed {
                log::warn!("cleanup: {e:#}");
            }
            self.state.remove_lock(&self.id);
        }
    }
}

/// Unmounts the overlay we attached if a later step fails: through the
/// target's entry in its held parent, and only once the mount there is
/// proven to be the one we made (by its ids), never by path.
struct OverlayGuard<'a> {
    target: &'a Target,
    ids: Option<MountIds>,
    timeout: Duration,
    cancel: &'a Cancel,
    overlay_left: &'a Cell<bool>,
}

impl Drop for OverlayGuard<'_> {
    fn drop(&mut self) {
        let Some(ids) = self.ids else {
            return;
        };
        let want = Expected {
            mount_id: Some(ids.id),
            unique: ids.unique,
            dev: Some(ids.dev),
            ..Default::default()
        };
        if let Err(e) = unmount_proven(&self.target.entry, &want, None, self.timeout, self.cancel) {
            log::warn!(
                "cleanup: unmounting {}: {e}",
                self.target.dir.path.display()
            );
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

/// The target, upperdir and workdir must still be where the record says:
/// their owner may have renamed a parent meanwhile, and then the overlay
/// went with them (onto the directories that were checked, never onto
/// others). Then the mount is undone rather than recorded under paths
/// that lie.
fn check_unmoved(checked: &Checked) -> Result<()> {
    let dirs = [
        Some(("target", &checked.target.dir)),
        checked.upperdir.as_ref().map(|d| ("upperdir", d)),
        checked.workdir.as_ref().map(|d| ("workdir", d)),
    ];
    for (what, dir) in dirs.into_iter().flatten() {
        let now = std::fs::read_link(crate::kernel::resolve::proc_fd_path(dir.fd.as_fd()))
            .fail_as(ErrorKind::Mount, || {
                format!("reading where {what} {} is now", dir.path.display())
            })?;
        if now != dir.path {
            return Err(fail(
                ErrorKind::Mount,
                format!(
                    "{what} {} was moved to {} while mounting (a parent directory renamed); the overlay was undone",
                    dir.path.display(),
                    now.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The maps to shift by, and the user namespace that carries them when
/// the request names one (else it is made from the maps when mounting).
fn maps_of(req: &MountRequest) -> Result<(Option<OwnedFd>, Vec<IdRange>, Vec<IdRange>)> {
    match &req.maps {
        Maps::Ranges { uid, gid } => Ok((None, uid.clone(), gid.clone())),
        Maps::Userns(path) => {
            let (fd, uid, gid) = userns::open_existing(path)
                .fail_as(ErrorKind::InvalidInput, || {
                    format!("--userns {}", path.display())
                })?;
            let owner = crate::kernel::sys::user_namespace_owner(fd.as_fd())
                .fail_as(ErrorKind::InvalidInput, || {
                    format!("--userns {}: who created it", path.display())
                })?;
            if owner != 0 && req.userns_owner != Some(owner) {
                return Err(usage(format!(
                    "--userns {}: the user namespace was created by uid {owner}, not root; a user's namespace may have taken over the pid of an exited container, with maps of the user's choosing (give --userns-owner {owner} if it is the one meant)",
                    path.display()
                )));
            }
            check_host_root(&uid, &gid, req.allow_host_root)?;
            Ok((Some(fd), uid, gid))
        }
    }
}

/// The record written before anything is mounted (state `preparing`): what
/// gc needs to roll back whatever a crash leaves.
#[allow(clippy::too_many_arguments)]
fn preparing_record(
    req: &MountRequest,
    checked: &Checked,
    state: &StateDir,
    id: &str,
    strategy: Strategy,
    trees: &[PlannedTree],
    upper: Option<&PlannedUpper>,
    uidmap: Vec<IdRange>,
    gidmap: Vec<IdRange>,
) -> Record {
    let idmapped_dirs = trees.iter().map(|t| &t.dir).chain(upper.map(|u| &u.dir));
    Record {
        version: state::RECORD_VERSION,
        id: id.to_string(),
        target: checked.target.dir.path.clone(),
        state: RecordState::Preparing,
        strategy,
        lowerdirs: checked.lowerdirs.iter().map(|l| l.path.clone()).collect(),
        upperdir: checked.upperdir.as_ref().map(|d| d.path.clone()),
        workdir: checked.workdir.as_ref().map(|d| d.path.clone()),
        upperdir_file: checked
            .upperdir
            .as_ref()
            .map(|d| state::format_file_id(d.meta.file_id())),
        options: option_strings(&req.options),
        uidmap,
        gidmap,
        userns: match &req.maps {
            Maps::Userns(p) => Some(p.clone()),
            Maps::Ranges { .. } => None,
        },
        common_dir: (strategy != Strategy::PerLayer && trees.len() == 1)
            .then(|| trees[0].dir.path.clone()),
        idmapped_dirs: idmapped_dirs.clone().map(|d| d.path.clone()).collect(),
        temp_mounts: if strategy != Strategy::Detached {
            (0..idmapped_dirs.count())
                .map(|n| state.temp_root(id).join(n.to_string()))
                .collect()
        } else {
            Vec::new()
        },
        idmapped_upper: upper.is_some(),
        source: state::source_tag(id),
        mount_id: None,
        mount_id_unique: None,
        dev: None,
        super_options: None,
        vfs_flags: req.flags.words(),
        mount_ns: crate::kernel::namespaces::current_namespace().ok(),
        pid: std::process::id(),
        created: state::now_rfc3339(),
    }
}

/// The record once the overlay is mounted: state `mounted` and the ids
/// that prove it ours later.
fn record_mounted(record: &mut Record, ids: MountIds) -> Result<()> {
    record.state = RecordState::Mounted;
    record.mount_id = Some(ids.id);
    record.mount_id_unique = ids.unique;
    record.dev = Some(state::format_dev(ids.dev));
    if ids.unique.is_none() {
        // No unique mount ids (before Linux 6.8): the superblock's options
        // help tell this overlay from a later one with a reused mount id.
        record.super_options = crate::kernel::mount_table::read()?
            .into_iter()
            .find(|m| m.id == ids.id)
            .map(|m| m.super_options);
    }
    Ok(())
}

/// Mounts the overlay and returns its record (state `mounted`), kept in the
/// state directory at `state_root` (created if missing).
///
/// Bad input is refused ([`ErrorKind::InvalidInput`]) before the state
/// directory is even opened: no side effect at all. Any later failure, or
/// the request's [`Cancel`], undoes what was done; a crash at any instant
/// leaves what [`gc`](crate::ops::cleanup) rolls back. Mounting the very same overlay
/// at the same target again returns the existing record.
///
/// ```no_run
/// # use idmap_overlay::{IdRange, Maps, MountRequest};
/// # let map = vec![IdRange { container: 0, host: 100_000, size: 65_536 }];
/// # let request = MountRequest::new("/mnt/c1", ["/l2", "/l1"], Maps::Ranges { uid: map.clone(), gid: map });
/// let record = idmap_overlay::mount(&request, "/run/idmap-overlay".as_ref())?;
/// assert_eq!(record.state, idmap_overlay::RecordState::Mounted);
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn mount(req: &MountRequest, state_root: &Path) -> Result<Record> {
    let checked = check(req)?;
    if let Some(id) = &req.id {
        state::check_id(id).map_err(usage)?;
    }
    let (userns_fd, uidmap, gidmap) = maps_of(req)?;
    let creator = check_upper_ids(req, &checked, &uidmap, &gidmap)?;
    let upper_plan = match creator {
        Some(creator) => plan_upper(&checked, creator)?,
        None => None,
    };
    // `mount -a` twice, or a unit started again: the very same overlay is
    // there already. Looked up without creating anything.
    if let Some(existing) = already_mounted(state_root, &checked, req, &uidmap, &gidmap) {
        log::warn!(
            "{}: this overlay is mounted there already (record {}); nothing done",
            existing.target.display(),
            existing.id
        );
        return Ok(existing);
    }
    let mut state = StateDir::open(state_root)?;
    state.cancel = req.cancel.clone();
    // As for umount and gc: the timeout also bounds the wait for the lock.
    state.lock_wait = req.timeout;
    let state = &state;
    let id = match &req.id {
        Some(id) => id.clone(),
        None => state::new_id(),
    };
    // What the kernel can do, probed once per boot, where it matters: to
    // choose a strategy, and to trust the kernel's in-use answer (only a
    // writable overlay can corrupt another's upper layer).
    let needed = req.strategy == Strategy::Auto || checked.upperdir.is_some();
    let features = needed
        .then(|| features::cached_or_probe(state))
        .transpose()?;
    let mut prober = Prober::trusting(features.as_ref().is_none_or(|f| f.in_use_probe));
    refuse_dirs_in_use(&mut prober, state, &checked)?;
    let (strategy, trees) = plan(req, &checked, features.as_ref())?;
    let attached = strategy != Strategy::Detached;
    let temp_root = state.temp_root(&id);
    let target = &checked.target;
    let mut record = preparing_record(
        req,
        &checked,
        state,
        &id,
        strategy,
        &trees,
        upper_plan.as_ref(),
        uidmap,
        gidmap,
    );

    let _lock = claim(state, &record, &checked, req.timeout, &mut prober)?;
    let overlay_left = Cell::new(false);
    let claimed = std::iter::once(&target.dir)
        .chain(checked.upperdir.as_ref())
        .chain(checked.workdir.as_ref())
        .map(|dir| dir.path.as_path())
        .collect();
    let mut record_guard = RecordGuard {
        overlay_left: &overlay_left,
        state,
        id: id.clone(),
        target: &target.dir.path,
        claimed,
        armed: true,
    };
    checkpoint(&req.cancel, "record-preparing")?;

    let userns_fd = match userns_fd {
        Some(fd) => fd,
        None => userns::create(&record.uidmap, &record.gidmap, &req.cancel)?,
    };
    let upper_mark = match (&upper_plan, &checked.upperdir) {
        (Some(_), Some(upper)) => Some(UpperMark::set(upper)?),
        _ => None,
    };
    let spec = OverlaySpec {
        target,
        source: &record.source,
        layers: &checked.lowerdirs,
        trees: &trees,
        upperdir: checked.upperdir.as_ref(),
        workdir: checked.workdir.as_ref(),
        idmapped_upper: upper_plan.as_ref(),
        options: &req.options,
        flags: req.flags,
        cancel: &req.cancel,
    };
    let mut temps = TempMounts::new(temp_root, req.timeout, &req.cancel);
    let mounted = if attached {
        strategy::mount_attached(&spec, userns_fd.as_fd(), &mut temps)
    } else {
        strategy::mount_detached(&spec, userns_fd.as_fd())
    };
    drop(userns_fd);
    let ids = match mounted {
        Ok(ids) => ids,
        Err(e) => {
            // An overlay that is there but could not be identified cannot
            // be proven ours to unmount: it and its `preparing` record stay
            // for gc, which finds it by its source tag.
            if e.overlay_left {
                overlay_left.set(true);
            }
            return Err(e);
        }
    };
    let mut overlay_guard = OverlayGuard {
        target,
        ids: Some(ids),
        timeout: req.timeout,
        cancel: &req.cancel,
        overlay_left: &overlay_left,
    };
    check_unmoved(&checked)?;
    check_writable(target, req)?;
    checkpoint(&req.cancel, "overlay-mounted")?;

    // The overlay holds its own clones of the layers: the temporary mounts
    // can go now. One that stays busy is left for gc, not a reason to undo
    // a working overlay.
    for problem in temps.release() {
        log::warn!("temporary mount left for gc: {problem}");
    }
    checkpoint(&req.cancel, "temp-unmounted")?;

    record_mounted(&mut record, ids)?;
    state.write_record(&record)?;
    checkpoint(&req.cancel, "record-mounted")?;
    overlay_guard.ids = None;
    record_guard.armed = false;
    if let Some(mark) = upper_mark {
        mark.keep();
    }
    Ok(record)
}
