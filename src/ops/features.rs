//! What the running kernel can do, found by really doing it (a kernel
//! version says nothing about backports or the filesystem), cached per boot.

use crate::base::error::Result;
use crate::base::error::{Context, ErrorKind};
use crate::kernel::sys;
use crate::state::StateDir;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::{Mode, mkdirat};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags, fsconfig_create, fsconfig_set_fd,
    fsmount, fsopen, open_tree,
};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The cache's version: 2 since the statmount probe asks a real idmapped
/// mount (version 1 caches could say yes on 6.8 to 6.14); 3 since it says
/// whether tmpfs takes an idmap and whether mounts have unique ids; 4
/// since it proves the kernel's two answers the tool relies on.
const VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub version: u32,
    /// /proc/sys/kernel/random/boot_id: the cache is good for this boot only.
    pub boot_id: String,
    pub kernel: String,
    /// Where the probe ran: the state directory and its filesystem type
    /// (idmapped mounts depend on the filesystem: tmpfs only since 6.3).
    #[serde(default)]
    pub probed_on: String,
    /// open_tree + mount_setattr(MOUNT_ATTR_IDMAP) worked on the state
    /// directory's filesystem.
    pub idmapped_mounts: bool,
    /// An overlay took idmapped layers by fd (`lowerdir+`) from a detached
    /// tree: the detached strategy works.
    pub detached: bool,
    /// statmount(2) reports the maps of an idmapped mount (Linux 6.15+).
    pub statmount_idmaps: bool,
    /// A tmpfs takes an idmap (Linux 6.3+): layers on tmpfs can be used.
    #[serde(default)]
    pub idmapped_tmpfs: bool,
    /// statx reports unique mount ids (`STATX_MNT_ID_UNIQUE`, Linux 6.8+),
    /// never reused; without them a mount is proven ours by its id, its
    /// device and its superblock's options together.
    #[serde(default)]
    pub unique_mount_ids: bool,
    /// overlayfs's in-use flag answers the tool's probe (`kernel::in_use`):
    /// the upperdir and workdir of a probe overlay probed in use while it
    /// lived, and free once it was gone. Without it, `mount` decides by a
    /// walk over the mount namespaces, and says so.
    #[serde(default)]
    pub in_use_probe: bool,
    /// An inotify watch saw the probe overlay's superblock die
    /// (`IN_UNMOUNT`). Without it, whether an overlay outlived its unmount
    /// is asked another way (its upperdir, or a walk).
    #[serde(default)]
    pub superblock_watch: bool,
    /// Why a probe failed, for `inspect --features`.
    pub notes: Vec<String>,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Features {
    /// This boot's probe result as cached in the state directory (what
    /// `mount --strategy auto` goes by), if there is one: nothing is probed
    /// or written, so a look (`inspect --features`) may call it.
    ///
    /// ```no_run
    /// let state = idmap_overlay::StateDir::open_to_read("/run/idmap-overlay".as_ref(), false)?;
    /// if let Some(found) = idmap_overlay::Features::cached(&state) {
    ///     println!("detached strategy: {}", found.detached);
    /// }
    /// # Ok::<(), idmap_overlay::Error>(())
    /// ```
    pub fn cached(state: &StateDir) -> Option<Features> {
        cached(state)
    }
}

/// The cached probe result for this boot, if there is one (nothing is
/// probed or written).
pub fn cached(state: &StateDir) -> Option<Features> {
    let cache = state.root.join("features.json");
    crate::state::read_state_file(&cache, 64 * 1024)
        .and_then(|text| serde_json::from_str::<Features>(&text).ok())
        .filter(|found| found.boot_id == boot_id() && found.version == VERSION)
}

/// A prober that trusts the kernel's in-use answer unless this boot's
/// probe found it wrong (no probe yet: it is trusted, as on every kernel
/// measured since 5.19).
pub fn prober(state: &StateDir) -> crate::kernel::in_use::Prober {
    crate::kernel::in_use::Prober::trusting(cached(state).is_none_or(|f| f.in_use_probe))
}

/// Whether a superblock watch can be believed when it sees no death (see
/// [`prober`]).
pub fn watch_trusted(state: &StateDir) -> bool {
    cached(state).is_none_or(|f| f.superblock_watch)
}

/// The cached probe result for this boot, or a fresh probe (then cached).
pub fn cached_or_probe(state: &StateDir) -> Result<Features> {
    let cache = state.root.join("features.json");
    if let Some(found) = cached(state) {
        return Ok(found);
    }
    // Many mounts start at once after a boot: one probes, the others wait
    // for its answer instead of racing on the probe files.
    let _all = state.lock_all()?;
    if let Some(found) = cached(state) {
        return Ok(found);
    }
    let found = probe(state)?;
    // A full or read-only state filesystem: a state problem (exit 16).
    crate::state::atomic_write::write(
        &cache,
        (serde_json::to_string_pretty(&found)? + "\n").as_bytes(),
        0o600,
        false,
    )
    .fail_as(ErrorKind::State, || format!("writing {}", cache.display()))?;
    Ok(found)
}

/// Probes with real calls on two empty directories made for the purpose
/// in the state directory (`probe.<pid>/l1`, `l2`), removed again after.
/// Nothing is ever attached: the probe overlay is made with fsmount and
/// dropped. Call with the global lock held: `gc` then knows any probe
/// directory it sees is a crash's, and removes it.
///
/// ```no_run
/// use idmap_overlay::StateDir;
///
/// let state = StateDir::open("/run/idmap-overlay".as_ref())?;
/// let _all = state.lock_all()?;
/// let found = idmap_overlay::probe_features(&state)?;
/// println!("{}", serde_json::to_string_pretty(&found).unwrap());
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn probe(state: &StateDir) -> Result<Features> {
    let mut features = Features {
        version: VERSION,
        boot_id: boot_id(),
        kernel: kernel_release(),
        probed_on: String::new(),
        idmapped_mounts: false,
        detached: false,
        statmount_idmaps: false,
        idmapped_tmpfs: false,
        unique_mount_ids: false,
        in_use_probe: false,
        superblock_watch: false,
        notes: Vec::new(),
    };
    let dirs = ProbeDirs::make(state)?;
    features.probed_on = format!(
        "{} ({})",
        state.root.display(),
        fs_type_name(dirs.fd.as_fd())
    );
    match sys::mount_ids(dirs.fd.as_fd()) {
        Ok(ids) => features.unique_mount_ids = ids.unique.is_some(),
        Err(e) => features.notes.push(format!("unique mount ids: {e}")),
    }
    match prove_kernel_answers(&dirs) {
        Ok((in_use, watch)) => {
            features.in_use_probe = in_use;
            features.superblock_watch = watch;
            if !in_use {
                features.notes.push(
                    "the in-use probe did not tell a live overlay's upperdir from a free one"
                        .into(),
                );
            }
            if !watch {
                features
                    .notes
                    .push("no IN_UNMOUNT came when a probe overlay was gone".into());
            }
        }
        Err(e) => features.notes.push(format!("a plain probe overlay: {e}")),
    }
    let map = [crate::base::idmap::IdRange {
        container: 0,
        host: 100000,
        size: 1,
    }];
    let userns = crate::kernel::userns::create(&map, &map, &state.cancel)?;
    match idmap_a_tmpfs(userns.as_fd()) {
        Ok(()) => features.idmapped_tmpfs = true,
        Err(e) => features.notes.push(format!("idmapped tmpfs: {e}")),
    }
    let tree = match open_tree(
        &dirs.fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(std::io::Error::from)
    .and_then(|tree| sys::idmap_tree(tree.as_fd(), userns.as_fd()).map(|()| tree))
    {
        Ok(tree) => tree,
        Err(e) => {
            features
                .notes
                .push(format!("idmapped mount of {}: {e}", dirs.path.display()));
            return Ok(features);
        }
    };
    features.idmapped_mounts = true;
    let detached = (|| -> std::io::Result<()> {
        let fs_fd = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for layer in ["l1", "l2"] {
            let fd = openat(
                tree.as_fd(),
                layer,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            fsconfig_set_fd(fs_fd.as_fd(), "lowerdir+", fd.as_fd())?;
        }
        fsconfig_create(fs_fd.as_fd())?;
        fsmount(
            fs_fd.as_fd(),
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::empty(),
        )?;
        Ok(())
    })();
    match detached {
        Ok(()) => features.detached = true,
        Err(e) => features
            .notes
            .push(format!("overlay with idmapped layers by fd: {e}")),
    }
    features.statmount_idmaps = statmount_reports_idmaps(tree, &dirs.path, &mut features.notes);
    Ok(features)
}

/// Proves the kernel's two answers on a real overlay, never attached
/// (fsmount's mount goes with its descriptor): its upperdir `u` and workdir
/// `w` (in the probe directory) must probe in use while it lives, and its
/// superblock watch must see it die and the upperdir probe free once its
/// last descriptor is closed. Returns (in-use probe, superblock watch).
fn prove_kernel_answers(dirs: &ProbeDirs) -> std::io::Result<(bool, bool)> {
    use crate::kernel::in_use::{DirUse, Prober, SuperblockWatch};
    let at = |name: &str| {
        openat(
            dirs.fd.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let (lower, upper, work) = (at("l1")?, at("u")?, at("w")?);
    let fs_fd = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, fd) in [
        ("lowerdir", &lower),
        ("upperdir", &upper),
        ("workdir", &work),
    ] {
        let path = crate::kernel::resolve::proc_fd_path(fd.as_fd());
        rustix::mount::fsconfig_set_string(fs_fd.as_fd(), key, path)?;
    }
    fsconfig_create(fs_fd.as_fd())?;
    let mnt = fsmount(
        fs_fd.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    // The upperdir is enough: overlayfs marks the workdir with the same
    // flag, in the same function.
    let mut prober = Prober::new();
    let alive = prober.dir_in_use(upper.as_fd()) == DirUse::InUse;
    let watch = SuperblockWatch::new(mnt.as_fd())?;
    drop(mnt);
    drop(fs_fd);
    let settle = std::time::Instant::now() + std::time::Duration::from_millis(500);
    let died = watch.wait(settle, &crate::base::cancel::Cancel::new());
    let freed = prober.dir_in_use(upper.as_fd()) == DirUse::Free;
    // Tests make the proof fail here to see every fallback.
    if crate::base::testpoint::act("in-use-proof", "").is_err() {
        return Ok((false, false));
    }
    Ok((alive && freed, died))
}

/// Idmaps a new tmpfs that is never attached anywhere (fsmount's mount
/// goes with its descriptor).
fn idmap_a_tmpfs(userns: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    let fs_fd = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(fs_fd.as_fd())?;
    let mnt = fsmount(
        fs_fd.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    sys::idmap_tree(mnt.as_fd(), userns)
}

/// `probe.<pid>` with `l1` and `l2` in it, made new (a name that exists
/// already, planted or not, is an error) and removed with rmdir when
/// dropped.
struct ProbeDirs {
    path: PathBuf,
    fd: OwnedFd,
}

impl ProbeDirs {
    fn make(state: &StateDir) -> Result<ProbeDirs> {
        let path = state
            .root
            .join(format!("{PROBE_PREFIX}{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .fail_as(ErrorKind::State, || {
                format!("creating probe directory {}", path.display())
            })?;
        let dirs = ProbeDirs {
            fd: open(
                &path,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .fail_as(ErrorKind::State, || format!("opening {}", path.display()))?,
            path,
        };
        for layer in PROBE_SUBDIRS {
            mkdirat(&dirs.fd, layer, Mode::S_IRWXU).fail_as(ErrorKind::State, || {
                format!("creating {}", dirs.path.join(layer).display())
            })?;
        }
        Ok(dirs)
    }
}

impl Drop for ProbeDirs {
    fn drop(&mut self) {
        remove_probe_dir(&self.path);
    }
}

/// The name prefix of probe directories in the state directory.
pub const PROBE_PREFIX: &str = "probe.";

/// What a probe directory holds: two layers, an upper and a work directory.
const PROBE_SUBDIRS: [&str; 4] = ["l1", "l2", "u", "w"];

/// Removes a probe directory and what it holds, rmdir only (anything else
/// in it stays, and so does the directory). Returns what could not go.
pub fn remove_probe_dir(path: &Path) -> Option<String> {
    // overlayfs made `work` (and `index`, where the kernel turns it on) in
    // the probe overlay's workdir.
    for made in ["w/work", "w/index"] {
        let _ = std::fs::remove_dir(path.join(made));
    }
    for sub in PROBE_SUBDIRS {
        let _ = std::fs::remove_dir(path.join(sub));
    }
    match std::fs::remove_dir(path) {
        Ok(()) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(format!("removing {}: {e}", path.display())),
    }
}

/// The name of a filesystem type, for `inspect --features`.
fn fs_type_name(fd: std::os::fd::BorrowedFd<'_>) -> String {
    match sys::fs_magic(fd) {
        Ok(sys::TMPFS_MAGIC) => "tmpfs".into(),
        Ok(0xef53) => "ext4".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683e) => "btrfs".into(),
        Ok(magic) => format!("filesystem type {magic:#x}"),
        Err(e) => format!("unknown filesystem: {e}"),
    }
}

/// Does statmount(2) really return the maps of an idmapped mount? Asked
/// about the probe's own idmapped tree, which statmount can only see once
/// attached: it is attached at the probe directory in a mount namespace of
/// a thread of its own (every mount there private first, so nothing
/// propagates anywhere), which goes with the thread. Kernels 6.8 to 6.14
/// accept the mask bits and return nothing, which is a no.
fn statmount_reports_idmaps(tree: OwnedFd, dir: &Path, notes: &mut Vec<String>) -> bool {
    let asked = std::thread::scope(|scope| {
        scope
            .spawn(move || -> std::io::Result<Option<sys::MountIdmaps>> {
                use nix::mount::{MsFlags, mount};
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )?;
                // By path, in this thread's own namespace: the state
                // directory is root's and checked.
                rustix::mount::move_mount(
                    &tree,
                    "",
                    rustix::fs::CWD,
                    dir,
                    rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )?;
                let Some(unique) = sys::mount_ids(tree.as_fd())?.unique else {
                    return Ok(None);
                };
                sys::statmount_idmaps(unique)
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the probing thread panicked")))
    });
    match asked {
        Ok(Some(maps)) if !maps.uid_lines.is_empty() => true,
        Ok(_) => false,
        Err(e) => {
            notes.push(format!("statmount id maps: {e}"));
            false
        }
    }
}
