//! The three ways to hand idmapped layers to overlayfs. Each undoes its own
//! partial work on error; on success nothing temporary is left behind.

use crate::exit::{Code, Coded, fail};
use crate::overlay::Tree;
use crate::testpoint;
use crate::unmount::retry_unmount;
use anyhow::{Context, Result};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create,
    fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree,
};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What overlayfs is asked to mount, with the layers already planned.
pub struct OverlaySpec<'a> {
    pub target: &'a Path,
    /// `idmap-overlay:<id>`, the source column in mountinfo.
    pub source: &'a str,
    pub lowerdir_count: usize,
    pub trees: &'a [Tree],
    pub upperdir: Option<&'a Path>,
    pub workdir: Option<&'a Path>,
    pub options: &'a [(String, Option<String>)],
}

/// A detached, idmapped, read-only, private clone of `dir`: in no mount
/// table, gone when the fd is closed (and the mounts that use it let go).
fn idmapped_tree(dir: &Path, userns: BorrowedFd<'_>) -> Result<OwnedFd> {
    let tree = open_tree(
        CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .code(Code::Mount, || {
        format!("cloning {} (open_tree)", dir.display())
    })?;
    crate::sys::idmap_tree(tree.as_fd(), userns).code(Code::Mount, || {
        format!(
            "idmapping {} (mount_setattr; does its filesystem support idmapped mounts?)",
            dir.display()
        )
    })?;
    Ok(tree)
}

/// What the kernel said about a failed fsconfig, read from the fs context
/// (lines such as `e overlay: failed to ...`).
fn kernel_message(fs_fd: BorrowedFd<'_>) -> String {
    let mut messages = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs_fd, &mut buf) {
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
        let err = anyhow::Error::from(std::io::Error::from(errno));
        let err = if said.is_empty() {
            err
        } else {
            err.context(said)
        };
        err.context(crate::exit::Failure {
            code: Code::Mount,
            message: step(),
        })
    })
}

/// Sets upperdir, workdir and the passthrough options on an fs context.
fn configure_common(fs_fd: BorrowedFd<'_>, spec: &OverlaySpec) -> Result<()> {
    for (key, dir) in [("upperdir", spec.upperdir), ("workdir", spec.workdir)] {
        if let Some(dir) = dir {
            with_kernel_message(fsconfig_set_string(fs_fd, key, dir), fs_fd, || {
                format!("setting overlay {key}={}", dir.display())
            })?;
        }
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

/// Creates the superblock, makes a mount of it and attaches it at the target.
fn create_and_attach(fs_fd: BorrowedFd<'_>, spec: &OverlaySpec) -> Result<()> {
    testpoint::hit("overlay-configured")?;
    with_kernel_message(fsconfig_create(fs_fd), fs_fd, || {
        format!("creating the overlay for {}", spec.target.display())
    })?;
    let mnt = fsmount(
        fs_fd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .code(Code::Mount, || "making the overlay mount (fsmount)".into())?;
    move_mount(
        mnt.as_fd(),
        "",
        CWD,
        spec.target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .code(Code::Mount, || {
        format!("attaching the overlay at {}", spec.target.display())
    })
}

fn overlay_context(spec: &OverlaySpec) -> Result<OwnedFd> {
    let fs_fd = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .code(Code::Mount, || "opening an overlay context (fsopen)".into())?;
    with_kernel_message(
        fsconfig_set_string(fs_fd.as_fd(), "source", spec.source),
        fs_fd.as_fd(),
        || "setting the overlay source".into(),
    )?;
    Ok(fs_fd)
}

/// The detached strategy: one idmapped tree per group, never attached; each
/// layer handed to overlayfs as an fd opened beneath its tree. Overlayfs
/// takes private clones of its layers, so once the superblock exists every
/// fd can go and nothing temporary is left anywhere.
pub fn mount_detached(spec: &OverlaySpec, userns: BorrowedFd<'_>) -> Result<()> {
    // Keep the trees open until FSCONFIG_CMD_CREATE has returned: closing one
    // first dissolves it and CREATE fails with EINVAL.
    let mut trees = Vec::new();
    for tree in spec.trees {
        trees.push(idmapped_tree(&tree.dir, userns)?);
    }
    testpoint::hit("tree-open")?;
    let mut layer_fds: Vec<Option<OwnedFd>> = (0..spec.lowerdir_count).map(|_| None).collect();
    for (tree, tree_fd) in spec.trees.iter().zip(&trees) {
        for (index, rel) in &tree.layers {
            // Beneath the tree, no symlinks, no other mount: exactly the
            // directory the canonical path named when we planned.
            let fd = openat2(
                tree_fd.as_fd(),
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
            )
            .code(Code::Mount, || {
                format!(
                    "opening layer {} in its idmapped tree",
                    tree.dir.join(rel).display()
                )
            })?;
            layer_fds[*index] = Some(fd);
        }
    }
    let fs_fd = overlay_context(spec)?;
    for (index, fd) in layer_fds.iter().enumerate() {
        let fd = fd.as_ref().context("a layer missing from the plan")?;
        with_kernel_message(
            fsconfig_set_fd(fs_fd.as_fd(), "lowerdir+", fd.as_fd()),
            fs_fd.as_fd(),
            || format!("adding lower layer {index} (fsconfig lowerdir+)"),
        )?;
    }
    configure_common(fs_fd.as_fd(), spec)?;
    create_and_attach(fs_fd.as_fd(), spec)
}

/// Temporary mountpoints under `<state>/tmp/<id>/`: each directory and each
/// mount is undone separately, and only if it was made. Never a recursive
/// delete: a directory is removed with rmdir only after its mount is gone
/// (containerd#10704 wiped data through a still-mounted path).
pub struct TempMounts {
    root: PathBuf,
    root_created: bool,
    dirs: Vec<PathBuf>,
    mounted: Vec<PathBuf>,
    timeout: Duration,
}

impl TempMounts {
    pub fn new(root: PathBuf, timeout: Duration) -> TempMounts {
        TempMounts {
            root,
            root_created: false,
            dirs: Vec::new(),
            mounted: Vec::new(),
            timeout,
        }
    }

    fn make_dir(&mut self, path: &Path) -> Result<()> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .code(Code::State, || {
                format!("creating temporary directory {}", path.display())
            })
    }

    /// Attaches an idmapped clone of `dir` at the next temporary mountpoint.
    pub fn attach(&mut self, dir: &Path, userns: BorrowedFd<'_>) -> Result<PathBuf> {
        if !self.root_created {
            let root = self.root.clone();
            self.make_dir(&root)?;
            self.root_created = true;
        }
        let path = self.root.join(self.dirs.len().to_string());
        self.make_dir(&path)?;
        self.dirs.push(path.clone());
        let tree = idmapped_tree(dir, userns)?;
        move_mount(
            tree.as_fd(),
            "",
            CWD,
            &path,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .code(Code::Mount, || {
            format!(
                "attaching the idmapped {} at {}",
                dir.display(),
                path.display()
            )
        })?;
        self.mounted.push(path.clone());
        Ok(path)
    }

    /// Unmounts (with EBUSY retries) and removes what was made, newest first.
    /// Returns what could not be undone; those stay for `gc`.
    pub fn release(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut still_mounted = Vec::new();
        for path in self.mounted.drain(..).rev() {
            if let Err(e) = retry_unmount(&path, self.timeout) {
                problems.push(format!("unmounting {}: {e}", path.display()));
                still_mounted.push(path);
            }
        }
        for path in self.dirs.drain(..).rev() {
            if still_mounted.contains(&path) {
                continue;
            }
            if let Err(e) = fs::remove_dir(&path) {
                problems.push(format!("removing {}: {e}", path.display()));
            }
        }
        if self.root_created
            && still_mounted.is_empty()
            && let Err(e) = fs::remove_dir(&self.root)
        {
            problems.push(format!("removing {}: {e}", self.root.display()));
        }
        // What is left is gc's now: a second release (Drop) must not retry.
        self.root_created = false;
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
/// a temporary mountpoint and the layers are named by path in `lowerdir=`,
/// the only form kernels before 6.8 take. The caller releases `temps` right
/// after this returns.
pub fn mount_attached(
    spec: &OverlaySpec,
    userns: BorrowedFd<'_>,
    temps: &mut TempMounts,
) -> Result<()> {
    // Layers are named relative to the temp root, and the mount is made from
    // inside it (containerd's chdir trick): `0/3/fs` instead of a full path
    // per layer leaves room for several times more layers in one page.
    let mut layer_paths: Vec<Option<PathBuf>> = vec![None; spec.lowerdir_count];
    for tree in spec.trees {
        let mountpoint = temps.attach(&tree.dir, userns)?;
        let short = mountpoint.strip_prefix(&temps.root).unwrap_or(&mountpoint);
        for (index, rel) in &tree.layers {
            layer_paths[*index] = Some(if rel == Path::new(".") {
                short.to_path_buf()
            } else {
                short.join(rel)
            });
        }
    }
    testpoint::hit("temp-mounted")?;
    let lowerdir = layer_paths
        .iter()
        .map(|p| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .context("a layer missing from the plan")
        })
        .collect::<Result<Vec<_>>>()?
        .join(":");
    let mut data = format!("lowerdir={lowerdir}");
    for (key, dir) in [("upperdir", spec.upperdir), ("workdir", spec.workdir)] {
        if let Some(dir) = dir {
            data.push_str(&format!(",{key}={}", dir.display()));
        }
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
            Code::Mount,
            format!(
                "the overlay options are {} bytes, more than the {MAX_MOUNT_DATA} mount(2) takes; use --strategy detached, which passes layers by fd",
                data.len()
            ),
        ));
    }
    testpoint::hit("overlay-configured")?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    std::env::set_current_dir(&temps.root).code(Code::System, || {
        format!("entering {}", temps.root.display())
    })?;
    let mounted = nix::mount::mount(
        Some(spec.source),
        spec.target,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    );
    // Leave the temp area before anything tries to remove it.
    if std::env::set_current_dir(&cwd).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    mounted.code(Code::Mount, || {
        format!("mounting the overlay at {}", spec.target.display())
    })
}
