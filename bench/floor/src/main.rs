//! The raw-syscall floor of idmap-overlay's three strategies: only the kernel
//! calls each strategy needs, no state, no locks, no records, no checks, no
//! logging. One process per mount and one per umount, like the tool, so the
//! benchmark can put the tool beside the floor of the same strategy.
//!
//! ```text
//! floor noop
//! floor mount STRATEGY TARGET TMPDIR COMMON UPPER WORK MAPLINE REL...
//! floor umount TARGET
//! floor cycles WARMUP N TARGET COMMON UPPER WORK MAPLINE REL...
//! ```
//! STRATEGY is `detached`, `common-dir` or `per-layer`. COMMON is the
//! directory the layers share (the tool computes the same one), REL the
//! layers relative to it, top layer first (`.` is COMMON itself). MAPLINE is
//! one `uid_map` line (`INSIDE OUTSIDE COUNT`), used for uids and gids.
//! TMPDIR is where the attached strategies put their temporary mountpoints
//! (made and removed here, like the tool's `<state>/tmp/<id>/N`).
//!
//! `cycles` makes WARMUP + N detached mount + umount cycles in this one
//! process (user namespace, idmapped tree, layers, overlay, umount2) and
//! prints the wall time of each of the N measured cycles in nanoseconds, one
//! per line: the in-process floor beside bench/inproc-api.
//!
//! Exit 0 on success, 32 when a kernel call fails (mount(8)'s "mount
//! failure"), 1 on bad arguments.

use idmap_overlay_bench_floor::{Phases, check, die, idmapped_tree, userns};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
    fsconfig_create, fsconfig_set_fd, fsconfig_set_string, fsmount, fsopen, move_mount, unmount,
};
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::exit;
use std::time::Instant;

/// The kernel copies mount(2)'s data into one page and cuts it at 4095
/// bytes; a longer `lowerdir=` would silently lose layers, so (like the tool
/// and any correct program) the floor refuses it.
const MAX_MOUNT_DATA: usize = 4095;

fn join(dir: &str, rel: &str) -> String {
    if rel == "." {
        dir.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

struct Spec<'a> {
    target: &'a str,
    tmpdir: &'a str,
    common: &'a str,
    upper: &'a str,
    work: &'a str,
    rels: &'a [String],
}

fn detached(spec: &Spec, ns: BorrowedFd<'_>, ph: &mut Phases) {
    // The tree must stay open until FSCONFIG_CMD_CREATE has returned.
    let tree = idmapped_tree(spec.common, ns);
    ph.mark("tree");
    let layers: Vec<OwnedFd> = spec
        .rels
        .iter()
        .map(|rel| {
            check(
                "openat2(O_PATH, RESOLVE_BENEATH)",
                openat2(
                    tree.as_fd(),
                    rel.as_str(),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
                ),
            )
        })
        .collect();
    ph.mark("open_layers");
    let fs = check("fsopen", fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC));
    check(
        "fsconfig source",
        fsconfig_set_string(&fs, "source", "floor"),
    );
    for fd in &layers {
        check("fsconfig lowerdir+", fsconfig_set_fd(&fs, "lowerdir+", fd));
    }
    check(
        "fsconfig upperdir",
        fsconfig_set_string(&fs, "upperdir", spec.upper),
    );
    check(
        "fsconfig workdir",
        fsconfig_set_string(&fs, "workdir", spec.work),
    );
    ph.mark("fsconfig");
    check("fsconfig create", fsconfig_create(&fs));
    ph.mark("create");
    let mnt = check(
        "fsmount",
        fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty()),
    );
    ph.mark("fsmount");
    check(
        "move_mount",
        move_mount(
            &mnt,
            "",
            CWD,
            spec.target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ),
    );
    ph.mark("move_mount");
    drop(layers);
    drop(tree);
    drop(mnt);
    drop(fs);
    ph.mark("close");
}

/// common-dir (`per_layer == false`): one idmapped tree of COMMON attached
/// at TMPDIR/0. per-layer: one per layer, at TMPDIR/0..N-1. Then mount(2)
/// with `lowerdir=` naming paths inside them (relative to TMPDIR, from
/// inside it), then unmount them.
fn attached(spec: &Spec, ns: BorrowedFd<'_>, per_layer: bool, ph: &mut Phases) {
    // Layers are named relative to TMPDIR and mount(2) is called from
    // inside it (containerd's chdir trick, which the tool uses too): `0/3/fs`
    // rather than a full path per layer.
    let mut lowers = Vec::with_capacity(spec.rels.len());
    let mut trees = Vec::new();
    if per_layer {
        for (i, rel) in spec.rels.iter().enumerate() {
            trees.push((join(spec.common, rel), format!("{}/{i}", spec.tmpdir)));
            lowers.push(i.to_string());
        }
    } else {
        for rel in spec.rels {
            lowers.push(join("0", rel));
        }
        trees.push((spec.common.to_string(), format!("{}/0", spec.tmpdir)));
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        spec.upper,
        spec.work
    );
    if data.len() > MAX_MOUNT_DATA {
        die(
            "mount(2) data",
            format!(
                "lowerdir= option string is {} bytes; the kernel takes one page ({MAX_MOUNT_DATA})",
                data.len()
            ),
        );
    }
    let mode = Mode::from_raw_mode(0o700);
    check(spec.tmpdir, rustix::fs::mkdir(spec.tmpdir, mode));
    let mut mounted: Vec<&str> = Vec::new();
    let mut failure = None;
    for (dir, mountpoint) in &trees {
        if let Err(e) = rustix::fs::mkdir(mountpoint.as_str(), mode) {
            failure = Some(format!("mkdir {mountpoint}: {e}"));
            break;
        }
        let tree = idmapped_tree(dir, ns);
        if let Err(e) = move_mount(
            &tree,
            "",
            CWD,
            mountpoint.as_str(),
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ) {
            failure = Some(format!("move_mount {mountpoint}: {e}"));
            break;
        }
        mounted.push(mountpoint);
    }
    ph.mark("attach_temps");
    if failure.is_none() {
        let data = CString::new(data).unwrap();
        if let Err(e) = rustix::process::chdir(spec.tmpdir) {
            failure = Some(format!("chdir {}: {e}", spec.tmpdir));
        } else {
            if let Err(e) = rustix::mount::mount(
                "floor",
                spec.target,
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            ) {
                failure = Some(format!("mount overlay: {e}"));
            }
            let _ = rustix::process::chdir("/");
        }
        ph.mark("mount");
    }
    for mountpoint in mounted.iter().rev() {
        if let Err(e) = unmount(*mountpoint, UnmountFlags::empty()) {
            eprintln!("floor: umount2 {mountpoint}: {e}");
            exit(32);
        }
    }
    ph.mark("umount_temps");
    for (_, mountpoint) in trees.iter().rev() {
        let _ = rustix::fs::rmdir(mountpoint.as_str());
    }
    let _ = rustix::fs::rmdir(spec.tmpdir);
    ph.mark("rmdir");
    if let Some(f) = failure {
        die("attached strategy", f);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: floor noop | floor umount TARGET |\n       floor mount detached|common-dir|per-layer TARGET TMPDIR COMMON UPPER WORK MAPLINE REL... |\n       floor cycles WARMUP N TARGET COMMON UPPER WORK MAPLINE REL..."
    );
    exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("noop") => {}
        Some("umount") if args.len() == 2 => {
            let mut ph = Phases::new();
            check("umount2", unmount(args[1].as_str(), UnmountFlags::empty()));
            ph.mark("umount2");
        }
        Some("mount") if args.len() >= 9 => {
            let spec = Spec {
                target: &args[2],
                tmpdir: &args[3],
                common: &args[4],
                upper: &args[5],
                work: &args[6],
                rels: &args[8..],
            };
            let mut ph = Phases::new();
            let ns = userns(&args[7]);
            ph.mark("userns");
            match args[1].as_str() {
                "detached" => detached(&spec, ns.as_fd(), &mut ph),
                "common-dir" => attached(&spec, ns.as_fd(), false, &mut ph),
                "per-layer" => attached(&spec, ns.as_fd(), true, &mut ph),
                _ => usage(),
            }
        }
        Some("cycles") if args.len() >= 9 => cycles(&args),
        _ => usage(),
    }
}

fn cycles(args: &[String]) {
    let count = |text: &str| {
        text.parse::<usize>().unwrap_or_else(|_| {
            eprintln!("floor: {text}: not a count");
            exit(1)
        })
    };
    let (warmup, n) = (count(&args[1]), count(&args[2]));
    let spec = Spec {
        target: &args[3],
        tmpdir: "",
        common: &args[4],
        upper: &args[5],
        work: &args[6],
        rels: &args[8..],
    };
    let mut ph = Phases::new();
    let mut times = Vec::with_capacity(n);
    for cycle in 0..warmup + n {
        let started = Instant::now();
        let ns = userns(&args[7]);
        detached(&spec, ns.as_fd(), &mut ph);
        drop(ns);
        check("umount2", unmount(spec.target, UnmountFlags::empty()));
        if cycle >= warmup {
            times.push(started.elapsed().as_nanos());
        }
    }
    let text: String = times.iter().map(|t| format!("{t}\n")).collect();
    print!("{text}");
}
