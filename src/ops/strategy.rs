//! The three ways to hand idmapped layers to overlayfs. Each works on file
//! descriptors resolved once (see `resolve`), undoes its own partial work on
//! error, and on success leaves nothing temporary behind.

use crate::base::cancel::Cancel;
use crate::base::cancel::checkpoint;
use crate::base::error::Result;
use crate::base::error::{Context, ErrorKind, fail};
use crate::base::overlay::VfsFlags;
use crate::kernel::proof::{Expected, Unmounted, unmount_proven};
use crate::kernel::resolve::{self, Entry, Meta, Resolved, proc_fd_path};
use crate::kernel::sys::{self, MountIds};
use crate::state::StateDir;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create, fsconfig_set_fd,
    fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One directory to clone as an idmapped tree, and the layers read through
/// it: (index in the lowerdir list, path relative to the directory).
pub struct PlannedTree {
    pub dir: Resolved,
    pub layers: Vec<(usize, PathBuf)>,
}

/// The place to mount on: the directory (its fd) and its entry in the
/// parent, through which the new mount is found and, on failure, unmounted.
pub struct Target {
    pub dir: Resolved,
    pub entry: Entry,
}

/// An idmapped upper layer (`--idmapped-upper`): the upper and work
/// directories are seen through one writable idmapped tree of a directory
/// above both (overlayfs wants them on one mount), and the overlay is
/// created by a thread acting on files as the container's root, whom
/// overlayfs then acts as on the upper layer: what the container writes is
/// stored with the container's own ids.
pub struct PlannedUpper {
    /// The directory cloned: the upper and work directories' common parent.
    pub dir: Resolved,
    /// The upper and work directories, relative to `dir`.
    pub upper: PathBuf,
    pub work: PathBuf,
    /// The container root's host uid and gid, whom overlayfs acts as.
    pub creator: (u32, u32),
}

/// What overlayfs is asked to mount, with the layers already planned.
pub struct OverlaySpec<'a> {
    pub target: &'a Target,
    /// `idmap-overlay:<id>`, the source column in mountinfo.
    pub source: &'a str,
    /// The layers, top first, as resolved.
    pub layers: &'a [Resolved],
    pub trees: &'a [PlannedTree],
    pub upperdir: Option<&'a Resolved>,
    pub workdir: Option<&'a Resolved>,
    /// Set with `--idmapped-upper`.
    pub idmapped_upper: Option<&'a PlannedUpper>,
    pub options: &'a [(String, Option<String>)],
    pub flags: VfsFlags,
    pub cancel: &'a Cancel,
}

/// A detached, idmapped, private clone of the directory `dir`, read-only
/// unless `writable` (an idmapped upper layer's): in no mount table, gone
/// when the fd is closed (and the mounts that use it let go).
fn idmapped_tree(dir: &Resolved, userns: BorrowedFd<'_>, writable: bool) -> Result<OwnedFd> {
    let tree = open_tree(
        &dir.fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .fail_as(ErrorKind::Mount, || {
        format!("cloning {} (open_tree)", dir.path.display())
    })?;
    let idmapped = if writable {
        sys::idmap_tree_writable(tree.as_fd(), userns)
    } else {
        sys::idmap_tree(tree.as_fd(), userns)
    };
    idmapped.map_err(|e| {
        let hint = if e.raw_os_error() == Some(nix::errno::Errno::ENOSYS as i32) {
            "this kernel has no mount_setattr: idmapped mounts need Linux 5.12+, idmapped overlay layers 5.19+"
        } else if sys::fs_magic(dir.fd.as_fd()).is_ok_and(|magic| magic == sys::TMPFS_MAGIC) {
            "it is on tmpfs, which takes idmapped mounts from Linux 6.3 on"
        } else {
            "does its filesystem support idmapped mounts?"
        };
        crate::base::error::Error::from(e).context_as(
            ErrorKind::Mount,
            format!("idmapping {} (mount_setattr; {hint})", dir.path.display()),
        )
    })?;
    Ok(tree)
}

/// Opens `rel` beneath `tree` (no symlinks, no other mount, nothing
/// outside the tree) and checks it is the very directory that was resolved
/// as `layer` (a lower layer, the upperdir or the workdir: `what`): its
/// owner could have swapped it since.
fn open_beneath(tree: BorrowedFd<'_>, rel: &Path, layer: &Resolved, what: &str) -> Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = openat2(tree, rel, how).fail_as(ErrorKind::Mount, || {
        format!(
            "opening {what} {} in its idmapped tree",
            layer.path.display()
        )
    })?;
    let found: Meta = resolve::meta_of(fd.as_fd()).fail_as(ErrorKind::Mount, || {
        format!("statx {}", layer.path.display())
    })?;
    if found.file_id() != layer.meta.file_id() {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "{what} {} was replaced while mounting (renamed or swapped); nothing mounted",
                layer.path.display()
            ),
        ));
    }
    Ok(fd)
}

/// What the kernel said about a failed fsconfig, read from the fs context
/// (lines such as `e overlay: failed to ...`).
fn kernel_message(fs_fd: BorrowedFd<'_>) -> String {
    let mut messages = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = nix::unistd::read(fs_fd, &mut buf) {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n]);
        messages.push(line.trim_start_matches("e ").trim().to_string());
    }
    messages.join("; ")
}

fn with_kernel_message<T>(
    result: rustix::io::Result<T>,
    fs_fd: BorrowedFd<'_>,
    step: impl FnOnce() -> String,
) -> Result<T> {
    result.map_err(|errno| {
        let said = kernel_message(fs_fd);
        let err = crate::base::error::Error::from(errno);
        let err = if said.is_empty() {
            err
        } else {
            err.context(said)
        };
        err.context_as(ErrorKind::Mount, step())
    })
}

/// Sets `upperdir` or `workdir` to exactly the directory `dir` holds
/// (`shown` in messages): by fd where the kernel takes one
/// (FSCONFIG_SET_FD, newer kernels), else as `/proc/self/fd/N`, which
/// overlayfs resolves to that same directory.
fn set_dir(fs_fd: BorrowedFd<'_>, key: &str, dir: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    match fsconfig_set_fd(fs_fd, key, dir) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) => {
            let _ = kernel_message(fs_fd); // the refusal of the fd form
            with_kernel_message(
                fsconfig_set_string(fs_fd, key, proc_fd_path(dir)),
                fs_fd,
                || format!("setting overlay {key}={}", shown.display()),
            )
        }
        Err(e) => with_kernel_message(Err(e), fs_fd, || {
            format!("setting overlay {key}={}", shown.display())
        }),
    }
}

/// The upper and work directories as overlayfs gets them: `(key, fd,
/// directory)`. Without an idmapped upper, the resolved directories
/// themselves; with one, the same directories opened beneath its tree
/// `upper_tree` (and checked to be them).
fn upper_and_work<'a>(
    spec: &'a OverlaySpec,
    upper_tree: Option<BorrowedFd<'_>>,
) -> Result<Vec<(&'static str, Option<OwnedFd>, &'a Resolved)>> {
    let mut out = Vec::new();
    for (key, dir) in [("upperdir", spec.upperdir), ("workdir", spec.workdir)] {
        let Some(dir) = dir else { continue };
        let beneath = match (upper_tree, spec.idmapped_upper) {
            (Some(tree), Some(up)) => {
                let rel = if key == "upperdir" {
                    &up.upper
                } else {
                    &up.work
                };
                Some(open_beneath(tree, rel, dir, key)?)
            }
            _ => None,
        };
        out.push((key, beneath, dir));
    }
    Ok(out)
}

/// Sets upperdir, workdir and the passthrough options on an fs context.
fn configure_common(
    fs_fd: BorrowedFd<'_>,
    spec: &OverlaySpec,
    upper_tree: Option<BorrowedFd<'_>>,
) -> Result<()> {
    for (key, beneath, dir) in upper_and_work(spec, upper_tree)? {
        let fd = beneath.as_ref().map_or(dir.fd.as_fd(), |fd| fd.as_fd());
        set_dir(fs_fd, key, fd, &dir.path)?;
    }
    for (key, value) in spec.options {
        let result = match value {
            Some(v) => fsconfig_set_string(fs_fd, key.as_str(), v.as_str()),
            None => fsconfig_set_flag(fs_fd, key.as_str()),
        };
        with_kernel_message(result, fs_fd, || {
            format!(
                "setting overlay option {key}{}",
                value.as_ref().map(|v| format!("={v}")).unwrap_or_default()
            )
        })?;
    }
    Ok(())
}

fn overlay_context(spec: &OverlaySpec) -> Result<OwnedFd> {
    let fs_fd = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).fail_as(ErrorKind::Mount, || {
        "opening an overlay context (fsopen)".into()
    })?;
    with_kernel_message(
        fsconfig_set_string(fs_fd.as_fd(), "source", spec.source),
        fs_fd.as_fd(),
        || "setting the overlay source".into(),
    )?;
    Ok(fs_fd)
}

/// Runs `work` (the call that creates the overlay's superblock) on a thread
/// of its own acting on files as `creator`, the container root's host ids,
/// when there is an idmapped upper: overlayfs keeps the creating task's
/// credentials and acts as them on the upper layer, through its idmap, so
/// the work directory and everything the container writes are stored with
/// container ids. As host root (not in the map) it could not even make its
/// work directory (EOVERFLOW) and would come up read-only. The process's
/// own credentials never change.
fn as_creator<T: Send>(
    creator: Option<(u32, u32)>,
    work: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let Some((uid, gid)) = creator else {
        return work();
    };
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                sys::act_on_files_as(uid, gid).fail_as(ErrorKind::Mount, || {
                    format!("acting as the container's root (host uid {uid}, gid {gid})")
                })?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err(fail(ErrorKind::Bug, "the creating thread panicked")))
    })
}

/// The detached strategy: one idmapped tree per group, never attached; each
/// layer handed to overlayfs as an fd opened beneath its tree. Overlayfs
/// takes private clones of its layers, so once the superblock exists every
/// fd can go and nothing temporary is left anywhere. Returns the new
/// mount's ids, read from its own fd.
pub fn mount_detached(spec: &OverlaySpec, userns: BorrowedFd<'_>) -> Result<MountIds> {
    // Keep the trees open until FSCONFIG_CMD_CREATE has returned: closing one
    // first dissolves it and CREATE fails with EINVAL.
    let mut trees = Vec::new();
    for tree in spec.trees {
        trees.push(idmapped_tree(&tree.dir, userns, false)?);
    }
    let upper_tree = spec
        .idmapped_upper
        .map(|up| idmapped_tree(&up.dir, userns, true))
        .transpose()?;
    checkpoint(spec.cancel, "tree-open")?;
    let layer_fds = layers_beneath(spec, &trees)?;
    let fs_fd = overlay_context(spec)?;
    for (index, fd) in layer_fds.iter().enumerate() {
        with_kernel_message(
            fsconfig_set_fd(fs_fd.as_fd(), "lowerdir+", fd),
            fs_fd.as_fd(),
            || {
                format!(
                    "adding lower layer {} (fsconfig lowerdir+ by fd: the detached strategy needs an overlayfs that takes layers by fd, a kernel after 6.12; on older ones use --strategy common-dir)",
                    index + 1
                )
            },
        )?;
    }
    configure_common(fs_fd.as_fd(), spec, upper_tree.as_ref().map(|t| t.as_fd()))?;
    checkpoint(spec.cancel, "overlay-configured")?;
    let creator = spec.idmapped_upper.map(|up| up.creator);
    as_creator(creator, || {
        with_kernel_message(fsconfig_create(fs_fd.as_fd()), fs_fd.as_fd(), || {
            format!(
                "creating the overlay for {}",
                spec.target.dir.path.display()
            )
        })
    })?;
    let mnt = fsmount(
        fs_fd.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        spec.flags.mount_attr(),
    )
    .fail_as(ErrorKind::Mount, || {
        "making the overlay mount (fsmount)".into()
    })?;
    let ids = sys::mount_ids(mnt.as_fd())
        .fail_as(ErrorKind::Mount, || "statx of the new overlay mount".into())?;
    move_mount(
        mnt.as_fd(),
        "",
        &spec.target.dir.fd,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .fail_as(ErrorKind::Mount, || {
        format!(
            "attaching the overlay at {}",
            spec.target.dir.path.display()
        )
    })?;
    Ok(ids)
}

/// Every layer opened beneath its (idmapped) tree and checked, in lowerdir
/// order.
fn layers_beneath(spec: &OverlaySpec, trees: &[impl AsFd]) -> Result<Vec<OwnedFd>> {
    let mut layer_fds: Vec<Option<OwnedFd>> = (0..spec.layers.len()).map(|_| None).collect();
    for (tree, tree_fd) in spec.trees.iter().zip(trees) {
        for (index, rel) in &tree.layers {
            layer_fds[*index] = Some(open_beneath(
                tree_fd.as_fd(),
                rel,
                &spec.layers[*index],
                "layer",
            )?);
        }
    }
    layer_fds
        .into_iter()
        .map(|fd| fd.ok_or_else(|| fail(ErrorKind::Bug, "a layer missing from the plan")))
        .collect()
}

/// Makes sure temporary mounts attached under `<state>/tmp` propagate
/// nowhere. Attaching below a shared mount (systemd makes `/` and `/run`
/// shared) copies the mount into every peer and slave namespace, whatever
/// the new mount's own propagation. So when the mount holding `tmp` is
/// shared, `tmp` becomes a private bind mount of itself, once; it stays
/// (like /run/netns) and is not a leak. Call under the global lock.
pub fn ensure_private_temp_area(state: &StateDir) -> Result<()> {
    let tmp = state.root.join("tmp");
    let ids_of = |path: &Path| -> Result<crate::kernel::sys::MountIds> {
        let dir = std::fs::File::open(path)
            .fail_as(ErrorKind::State, || format!("opening {}", path.display()))?;
        crate::kernel::sys::mount_ids(std::os::fd::AsFd::as_fd(&dir))
            .fail_as(ErrorKind::State, || format!("statx {}", path.display()))
    };
    let holder = ids_of(&tmp)?;
    // Ask the kernel about that one mount (statmount, Linux 6.8+) rather
    // than read the whole table under the global lock on every mount: that
    // cost grows with every mount on the host.
    let asked = holder
        .unique
        .and_then(|unique| crate::kernel::sys::mount_is_shared(unique).ok().flatten());
    let shared = match asked {
        Some(shared) => shared,
        None => crate::kernel::mount_table::read()?
            .iter()
            .find(|m| m.id == holder.id)
            .is_some_and(|m| m.tags.iter().any(|t| t.starts_with("shared:"))),
    };
    if !shared {
        return Ok(());
    }
    let is_own_mount = ids_of(&state.root)?.id != holder.id;
    // By path: the state directory and `tmp` are root's, checked not
    // writable by anyone else (`check_dir`), so nobody can redirect them.
    use nix::mount::{MsFlags, mount};
    if !is_own_mount {
        mount(
            Some(&tmp),
            &tmp,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .fail_as(ErrorKind::State, || {
            format!("bind-mounting {} on itself", tmp.display())
        })?;
    }
    mount(
        None::<&str>,
        &tmp,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .fail_as(ErrorKind::State, || {
        format!("making {} a private mount", tmp.display())
    })?;
    log::info!(
        "{} is now a private mount: temporary mounts there propagate nowhere",
        tmp.display()
    );
    Ok(())
}

/// Temporary mountpoints under `<state>/tmp/<id>/`: each directory and each
/// mount is undone separately, and only if it was made. Never a recursive
/// delete: a directory is removed with rmdir only after its mount is gone
/// (containerd#10704 wiped data through a still-mounted path).
pub struct TempMounts {
    /// `<state>/tmp/<id>`; under the root-owned, checked state directory.
    root: PathBuf,
    root_dir: Option<Entry>,
    dirs: Vec<Entry>,
    /// Attached trees: the mountpoint, the mount's id, and the tree's fd
    /// (closed before unmounting: an open fd keeps a mount busy).
    mounted: Vec<(Entry, u64, Option<OwnedFd>)>,
    timeout: Duration,
    cancel: Cancel,
}

impl TempMounts {
    pub fn new(root: PathBuf, timeout: Duration, cancel: &Cancel) -> TempMounts {
        TempMounts {
            root,
            root_dir: None,
            dirs: Vec::new(),
            mounted: Vec::new(),
            timeout,
            cancel: cancel.clone(),
        }
    }

    fn make_dir(path: &Path) -> Result<Entry> {
        let entry = resolve::resolve_entry(path).fail_as(ErrorKind::State, || {
            format!("temporary directory {}", path.display())
        })?;
        mkdirat(&entry.parent, entry.name.as_os_str(), Mode::S_IRWXU)
            .fail_as(ErrorKind::State, || {
                format!("creating temporary directory {}", path.display())
            })?;
        Ok(entry)
    }

    /// Attaches an idmapped clone of `dir` (read-only unless `writable`)
    /// at the next temporary mountpoint and returns the attached tree's fd.
    pub fn attach(
        &mut self,
        dir: &Resolved,
        userns: BorrowedFd<'_>,
        writable: bool,
    ) -> Result<BorrowedFd<'_>> {
        if self.root_dir.is_none() {
            self.root_dir = Some(Self::make_dir(&self.root)?);
        }
        let path = self.root.join(self.dirs.len().to_string());
        let entry = Self::make_dir(&path)?;
        let mountpoint = entry
            .open()
            .fail_as(ErrorKind::State, || format!("opening {}", path.display()))?;
        self.dirs.push(entry);
        let tree = idmapped_tree(dir, userns, writable)?;
        move_mount(
            tree.as_fd(),
            "",
            &mountpoint,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .fail_as(ErrorKind::Mount, || {
            format!(
                "attaching the idmapped {} at {}",
                dir.path.display(),
                path.display()
            )
        })?;
        let mount_id = sys::mount_ids(tree.as_fd())
            .fail_as(ErrorKind::Mount, || format!("statx {}", path.display()))?
            .id;
        let entry = resolve::resolve_entry(&path).fail_as(ErrorKind::State, || {
            format!("temporary mountpoint {}", path.display())
        })?;
        self.mounted.push((entry, mount_id, Some(tree)));
        let (_, _, tree) = self.mounted.last().expect("just pushed");
        Ok(tree.as_ref().expect("just set").as_fd())
    }

    /// The temporary mountpoints of the attached trees, in the order they
    /// were attached.
    fn mountpoints(&self) -> Vec<PathBuf> {
        self.mounted
            .iter()
            .map(|(entry, _, _)| entry.path.clone())
            .collect()
    }

    /// The attached trees' fds, in the order they were attached.
    fn trees(&self) -> Vec<BorrowedFd<'_>> {
        self.mounted
            .iter()
            .filter_map(|(_, _, fd)| fd.as_ref().map(|fd| fd.as_fd()))
            .collect()
    }

    /// Unmounts (with EBUSY retries, each mount proven by its id) and
    /// removes what was made, newest first. Returns what could not be
    /// undone; those stay for `gc`.
    pub fn release(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut still_mounted = Vec::new();
        for (_, _, fd) in &mut self.mounted {
            drop(fd.take());
        }
        for (entry, mount_id, _) in self.mounted.drain(..).rev() {
            let want = Expected {
                mount_id: Some(mount_id),
                ..Default::default()
            };
            match unmount_proven(&entry, &want, None, self.timeout, &self.cancel) {
                Ok(Unmounted::Done(_)) => {}
                Ok(Unmounted::NothingThere) => {}
                Err(e) => {
                    problems.push(format!("unmounting {}: {e}", entry.path.display()));
                    still_mounted.push(entry.path);
                }
            }
        }
        for entry in self.dirs.drain(..).rev() {
            if still_mounted.contains(&entry.path) {
                continue;
            }
            if let Err(e) = unlinkat(
                &entry.parent,
                entry.name.as_os_str(),
                UnlinkatFlags::RemoveDir,
            ) {
                // io::Error's text ("Directory not empty (os error 39)"),
                // not nix's Errno's.
                let e = std::io::Error::from(e);
                problems.push(format!("removing {}: {e}", entry.path.display()));
            }
        }
        if let Some(root) = self.root_dir.take()
            && still_mounted.is_empty()
            && let Err(e) = unlinkat(
                &root.parent,
                root.name.as_os_str(),
                UnlinkatFlags::RemoveDir,
            )
        {
            let e = std::io::Error::from(e);
            problems.push(format!("removing {}: {e}", root.path.display()));
        }
        problems
    }
}

impl Drop for TempMounts {
    fn drop(&mut self) {
        for problem in self.release() {
            log::warn!("cleanup: {problem}");
        }
    }
}

/// The kernel copies mount(2) data into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// The attached strategies (common-dir, per-layer): each tree is attached at
/// a temporary mountpoint, the layers are opened beneath it and checked, and
/// overlayfs is given them by path in `lowerdir=`, the only form kernels
/// before 6.8 take. A path goes as text where no user but root can make it
/// lead elsewhere (see [`option_paths`]), so the mount table shows where
/// the overlay's directories are; any other as the number of one of our fds,
/// resolved from `/proc/self/fd` (see [`mount_from_fds`]): exactly the
/// directory that was checked, whatever is renamed meanwhile. The caller
/// releases `temps` right after this returns.
pub fn mount_attached(
    spec: &OverlaySpec,
    userns: BorrowedFd<'_>,
    temps: &mut TempMounts,
) -> Result<MountIds> {
    for tree in spec.trees {
        temps.attach(&tree.dir, userns, false)?;
    }
    // The idmapped upper's tree goes last: the layers' trees keep the
    // positions the plan gave them.
    let upper_mountpoint = match spec.idmapped_upper {
        Some(up) => {
            temps.attach(&up.dir, userns, true)?;
            temps.mountpoints().pop()
        }
        None => None,
    };
    checkpoint(spec.cancel, "temp-mounted")?;
    let trees = temps.trees();
    let layer_fds = layers_beneath(spec, &trees)?;
    let upper_work = upper_and_work(
        spec,
        upper_mountpoint.is_some().then(|| trees[trees.len() - 1]),
    )?;
    // Where each is, as text: its own path, or beneath the upper's
    // temporary mountpoint.
    let upper_work: Vec<_> = upper_work
        .iter()
        .map(|(key, beneath, dir)| {
            let fd = beneath.as_ref().map_or(dir.fd.as_fd(), |fd| fd.as_fd());
            let path = match (&upper_mountpoint, spec.idmapped_upper) {
                (Some(mountpoint), Some(up)) => mountpoint.join(if *key == "upperdir" {
                    &up.upper
                } else {
                    &up.work
                }),
                _ => dir.path.clone(),
            };
            (*key, fd, path, dir.fixed)
        })
        .collect();
    let mut data = option_paths(spec, temps, &layer_fds, &upper_work, true);
    if data.len() > MAX_MOUNT_DATA {
        // Long paths: the short form always fits 500 layers.
        data = option_paths(spec, temps, &layer_fds, &upper_work, false);
    }
    for (key, value) in spec.options {
        data.push(',');
        data.push_str(key);
        if let Some(v) = value {
            // Only context options may carry commas (checked when parsed);
            // quoted, as mount(8) passes them.
            if v.contains(',') {
                data.push_str(&format!("=\"{v}\""));
            } else {
                data.push('=');
                data.push_str(v);
            }
        }
    }
    if data.len() > MAX_MOUNT_DATA {
        return Err(fail(
            ErrorKind::Mount,
            format!(
                "the overlay options are {} bytes, more than the {MAX_MOUNT_DATA} mount(2) takes; use --strategy detached, which passes layers by fd",
                data.len()
            ),
        ));
    }
    checkpoint(spec.cancel, "overlay-configured")?;
    let target = proc_fd_path(spec.target.dir.fd.as_fd());
    let creator = spec.idmapped_upper.map(|up| up.creator);
    mount_from_fds(spec.source, &target, spec.flags.ms_flags(), &data, creator)
        .fail_as(ErrorKind::Mount, || {
            format!("mounting the overlay at {}", spec.target.dir.path.display())
        })?;
    drop(layer_fds);
    drop(upper_work);
    identify_new_mount(spec.target, spec.source)
}

/// `lowerdir=A:B,upperdir=U,workdir=W` for mount(2). With `as_text`, each
/// directory goes as its path where that is safe: no user but root can
/// make it lead elsewhere (`Resolved::fixed`; a layer is reached through
/// its temporary mountpoint, under the root-owned state directory, then
/// the same directories as its own path), and it has none of the
/// characters the option syntax gives a meaning (`,`, `:`, `\`, `=`,
/// whitespace). Every other directory, and every one without `as_text`,
/// goes as the number of the fd that holds it.
fn option_paths(
    spec: &OverlaySpec,
    temps: &TempMounts,
    layer_fds: &[OwnedFd],
    upper_work: &[(&str, BorrowedFd<'_>, PathBuf, bool)],
    as_text: bool,
) -> String {
    let number = |fd: BorrowedFd<'_>| fd.as_raw_fd().to_string();
    let plain = |path: &Path| {
        path.to_str()
            .filter(|p| {
                !p.contains(|c: char| {
                    c == ',' || c == ':' || c == '\\' || c == '=' || c.is_whitespace()
                })
            })
            .map(str::to_string)
    };
    let name = |fixed: bool, path: Option<PathBuf>, fd: BorrowedFd<'_>| {
        path.filter(|_| as_text && fixed)
            .and_then(|p| plain(&p))
            .unwrap_or_else(|| number(fd))
    };
    let mountpoints = temps.mountpoints();
    let mut layer_paths: Vec<Option<PathBuf>> = vec![None; spec.layers.len()];
    for (tree, mountpoint) in spec.trees.iter().zip(&mountpoints) {
        for (index, rel) in &tree.layers {
            layer_paths[*index] = Some(mountpoint.join(rel));
        }
    }
    let lowerdir = layer_fds
        .iter()
        .zip(spec.layers)
        .zip(layer_paths)
        .map(|((fd, layer), path)| name(layer.fixed, path, fd.as_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let mut data = format!("lowerdir={lowerdir}");
    for (key, fd, path, fixed) in upper_work {
        let value = name(*fixed, Some(path.clone()), *fd);
        data.push_str(&format!(",{key}={value}"));
    }
    data
}

/// mount(2) of an overlay whose option paths are fd numbers, made from a
/// thread whose working directory is `/proc/self/fd` (a thread of its own,
/// after unshare(CLONE_FS), so the process's directory never changes):
/// `lowerdir=12:13` stays short enough for 500 layers in one page, and each
/// name is a magic link to exactly the directory its fd holds. With an
/// idmapped upper the thread acts on files as `creator` (see [`as_creator`]).
fn mount_from_fds(
    source: &str,
    target: &Path,
    flags: nix::mount::MsFlags,
    data: &str,
    creator: Option<(u32, u32)>,
) -> Result<()> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .context("unshare(CLONE_FS)")?;
                if let Some((uid, gid)) = creator {
                    sys::act_on_files_as(uid, gid).fail_as(ErrorKind::Mount, || {
                        format!("acting as the container's root (host uid {uid}, gid {gid})")
                    })?;
                }
                std::env::set_current_dir("/proc/self/fd").context("entering /proc/self/fd")?;
                nix::mount::mount(Some(source), target, Some("overlay"), flags, Some(data))?;
                Ok(())
            })
            .join()
            .unwrap_or_else(|_| Err(fail(ErrorKind::Bug, "the mounting thread panicked")))
    })
}

/// An error saying an overlay was mounted but could not be identified
/// afterwards, so it cannot be proven ours to unmount: it stays for gc,
/// which finds it by its source tag ([`crate::base::error::Error`]'s `overlay_left`).
fn unidentified(err: crate::base::error::Error, step: String) -> crate::base::error::Error {
    let mut err = err
        .context("the new mount could not be identified")
        .context_as(ErrorKind::Mount, step);
    err.overlay_left = true;
    err
}

/// After mount(2), which returns no fd: the mount now on top at the target,
/// looked up by name in the held parent directory: a mount root, not the
/// directory's own mount, with our source tag in the mount table.
fn identify_new_mount(target: &Target, source: &str) -> Result<MountIds> {
    let path = target.dir.path.display();
    let fd = target
        .entry
        .open()
        .map_err(|e| unidentified(e.into(), format!("opening {path} after mounting")))?;
    let ids = sys::mount_ids(fd.as_fd())
        .map_err(|e| unidentified(e.into(), format!("statx {path} after mounting")))?;
    // Its source tag, from the table: another mount stacked on ours in the
    // meantime is not taken for it.
    let tagged = crate::kernel::mount_table::read()
        .is_ok_and(|table| table.iter().any(|m| m.id == ids.id && m.source == source));
    if !ids.mount_root || ids.id == target.dir.meta.mnt_id || !tagged {
        let mut err = fail(
            ErrorKind::Mount,
            format!("after mounting, the mount at {path} is not the new overlay"),
        );
        err.overlay_left = true;
        return Err(err);
    }
    Ok(ids)
}
