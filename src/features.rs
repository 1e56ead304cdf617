//! What the running kernel can do, found by really doing it (a kernel
//! version says nothing about backports or the filesystem), cached per boot.

use crate::exit::{Code, Coded};
use crate::state::StateDir;
use crate::sys;
use anyhow::{Context, Result};
use rustix::fs::{CWD, Mode, OFlags, openat};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags, fsconfig_create, fsconfig_set_fd,
    fsmount, fsopen, open_tree,
};
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    pub version: u32,
    /// /proc/sys/kernel/random/boot_id: the cache is good for this boot only.
    pub boot_id: String,
    pub kernel: String,
    /// open_tree + mount_setattr(MOUNT_ATTR_IDMAP) worked on the state
    /// directory's filesystem.
    pub idmapped_mounts: bool,
    /// An overlay took idmapped layers by fd (`lowerdir+`) from a detached
    /// tree: the detached strategy works.
    pub detached: bool,
    /// statmount(2) reports the maps of an idmapped mount (Linux 6.15+).
    pub statmount_idmaps: bool,
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

/// The cached probe result for this boot, or a fresh probe (then cached).
pub fn cached_or_probe(state: &StateDir) -> Result<Features> {
    let cache = state.root.join("features.json");
    let cached = || {
        crate::state::read_state_file(&cache, 64 * 1024)
            .and_then(|text| serde_json::from_str::<Features>(&text).ok())
            .filter(|found| found.boot_id == boot_id() && found.version == 1)
    };
    if let Some(found) = cached() {
        return Ok(found);
    }
    // Many mounts start at once after a boot: one probes, the others wait
    // for its answer instead of racing on the probe files.
    let _all = state.lock_all()?;
    if let Some(found) = cached() {
        return Ok(found);
    }
    let found = probe(state)?;
    // A full or read-only state filesystem: a state problem (exit 16).
    crate::atomic_write::write(
        &cache,
        (serde_json::to_string_pretty(&found)? + "\n").as_bytes(),
        0o600,
        false,
    )
    .code(Code::State, || format!("writing {}", cache.display()))?;
    Ok(found)
}

/// Probes with real calls on two empty directories under the state
/// directory. Nothing is ever attached: the probe overlay is made with
/// fsmount and dropped.
pub fn probe(state: &StateDir) -> Result<Features> {
    let mut features = Features {
        version: 1,
        boot_id: boot_id(),
        kernel: kernel_release(),
        idmapped_mounts: false,
        detached: false,
        statmount_idmaps: false,
        notes: Vec::new(),
    };
    let dir = state.root.join("probe");
    for sub in ["", "l1", "l2"] {
        let path = dir.join(sub);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e)
                    .with_context(|| format!("creating probe directory {}", path.display()));
            }
            _ => {}
        }
    }
    let map = [crate::idmap::IdRange {
        container: 0,
        host: 100000,
        size: 1,
    }];
    let userns = crate::userns::create(&map, &map)?;
    // By path: `probe` lies in the state directory, root's and checked not
    // writable by anyone else, so nobody can redirect it.
    let tree = match open_tree(
        CWD,
        &dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(std::io::Error::from)
    .and_then(|tree| sys::idmap_tree(tree.as_fd(), userns.as_fd()).map(|()| tree))
    {
        Ok(tree) => tree,
        Err(e) => {
            features
                .notes
                .push(format!("idmapped mount of {}: {e}", dir.display()));
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
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
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
    features.statmount_idmaps = statmount_reports_idmaps();
    Ok(features)
}

/// statmount on our own root mount: a kernel that knows the map flags
/// answers, an older one refuses them with EINVAL.
fn statmount_reports_idmaps() -> bool {
    std::fs::File::open("/")
        .ok()
        .and_then(|root| sys::mount_ids(root.as_fd()).ok())
        .and_then(|ids| ids.unique)
        .is_some_and(|id| sys::statmount_idmaps(id).is_ok())
}
