//! Layers on the filesystems container hosts use: ext4, xfs, btrfs and
//! erofs on loop images the test makes in its temp dir, and tmpfs, each
//! mounted inside the test's namespace. Every strategy must mount and map
//! (stat through the overlay shows the shifted owner), or fail with a clear
//! message where the filesystem cannot be idmapped. Also layers spread over
//! two filesystems under one parent.
//!
//! erofs needs mkfs.erofs: the test fails without it (.ci/run installs
//! it); the others fail without their tools.

use crate::support::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// mkfs.* and losetup live in sbin, which a caller's PATH may lack.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host command with a PATH that has the sbin directories.
fn host(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", PATH);
    cmd
}

/// A loop device attached by the test: detached when dropped, whatever
/// happened (the kernel frees it once the namespace's mount is gone).
struct LoopDevice {
    device: String,
    image: PathBuf,
}

impl LoopDevice {
    fn attach(image: &Path) -> LoopDevice {
        let out = host("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDevice {
            device: String::from_utf8(out.stdout).unwrap().trim().to_string(),
            image: image.to_path_buf(),
        }
    }

    /// The loop devices still backed by this image.
    fn attached(image: &Path) -> String {
        let out = host("losetup")
            .args(["--associated"])
            .arg(image)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // On a device still mounted this sets autoclear: it goes when the
        // mount does (at the latest when the namespace dies).
        let _ = host("losetup").args(["--detach", &self.device]).status();
    }
}

fn have(tool: &str) -> bool {
    host("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_host(program: &str, args: &[&str]) {
    let out = host(program).args(args).output().unwrap_or_else(|e| {
        panic!("{program}: {e} (.ci/run installs xfsprogs, btrfs-progs and erofs-utils)")
    });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes layers `<root>/layers/{n..1}/fs` (top first), like `Env::layers`,
/// at `root` as the namespace sees it (or a plain directory, for erofs).
fn write_layers(root: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let rel = PathBuf::from(format!("layers/{}/fs", n - i));
            let dir = root.join(&rel);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("only-{i}")), format!("{i}\n")).unwrap();
            fs::write(dir.join("shared"), format!("{i}\n")).unwrap();
            fs::write(dir.join("user-file"), "u\n").unwrap();
            std::os::unix::fs::chown(dir.join("user-file"), Some(1000), Some(1000)).unwrap();
            rel
        })
        .collect()
}

/// A filesystem of `kind` mounted at `<temp>/<kind>` in the namespace, with
/// three layers on it; returns the mountpoint, the layers and the loop
/// device (none for tmpfs).
fn filesystem(env: &Env, kind: &str) -> (PathBuf, Vec<PathBuf>, Option<LoopDevice>) {
    let mnt = env.mkdir(kind);
    let image = env.path(&format!("{kind}.img"));
    let make_image = |size: u64| {
        fs::File::create(&image).unwrap().set_len(size).unwrap();
    };
    let device = match kind {
        "tmpfs" | "ramfs" => {
            sh(
                env,
                &format!("mount -t {kind} -o size=16m {kind} {}", s(&mnt)),
            );
            None
        }
        "erofs" => {
            // Read-only: built from a directory that already holds the layers.
            let staging = env.mkdir("erofs-staging");
            write_layers(&staging, 3);
            run_host("mkfs.erofs", &[s(&image), s(&staging)]);
            let device = LoopDevice::attach(&image);
            sh(
                env,
                &format!("mount -t erofs -o ro {} {}", device.device, s(&mnt)),
            );
            Some(device)
        }
        _ => {
            let (size, mkfs, args): (u64, &str, &[&str]) = match kind {
                "ext4" => (64 << 20, "mkfs.ext4", &["-q", "-F"]),
                // mkfs.xfs refuses filesystems below 300 MiB; the image is sparse.
                "xfs" => (320 << 20, "mkfs.xfs", &["-q", "-f"]),
                "btrfs" => (256 << 20, "mkfs.btrfs", &["-q", "-f"]),
                other => panic!("no such filesystem kind {other}"),
            };
            make_image(size);
            let mut all: Vec<&str> = args.to_vec();
            all.push(s(&image));
            run_host(mkfs, &all);
            let device = LoopDevice::attach(&image);
            sh(
                env,
                &format!("mount -t {kind} {} {}", device.device, s(&mnt)),
            );
            Some(device)
        }
    };
    let layers = if kind == "erofs" {
        (1..=3)
            .rev()
            .map(|i| mnt.join(format!("layers/{i}/fs")))
            .collect()
    } else {
        write_layers(&env.ns.path(&mnt), 3)
            .into_iter()
            .map(|rel| mnt.join(rel))
            .collect()
    };
    (mnt, layers, device)
}

/// Mounts `layers` with `strategy` and checks the mapped view, or that the
/// failure says clearly that the filesystem cannot be idmapped.
fn check_mount(
    env: &Env,
    what: &str,
    strategy: &str,
    layers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    idmappable: bool,
) {
    let target = env.mkdir("mnt");
    let mut args = vec![
        "mount",
        "--json",
        "--strategy",
        strategy,
        "--uidmap",
        "0:100000:65536",
    ];
    let lowerdir = join(layers);
    args.extend(["--lowerdir", &lowerdir]);
    if let Some((upper, work)) = rw {
        args.extend(["--upperdir", s(upper), "--workdir", s(work)]);
    }
    args.push(s(&target));
    let out = env.run(&args);
    let err = stderr(&out);
    if !idmappable {
        // Refused with a message that says why, and nothing left behind.
        assert_eq!(out.status.code(), Some(32), "{what}/{strategy}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}/{strategy}: {err}");
        let why = if what == "tmpfs" {
            "it is on tmpfs, which takes idmapped mounts from Linux 6.3 on"
        } else {
            "does its filesystem support idmapped mounts?"
        };
        assert!(err.contains(why), "{what}/{strategy}: unclear: {err}");
        assert!(
            env.our_mounts()
                .iter()
                .all(|m| m.fs_type != "overlay" && !m.idmapped()),
            "{what}/{strategy}: {:?}",
            env.our_mounts()
        );
        for sub in ["mounts", "tmp", "locks", "targets"] {
            assert_eq!(
                env.state_files(sub),
                Vec::<String>::new(),
                "{what}/{strategy}"
            );
        }
        return;
    }
    assert!(out.status.success(), "{what}/{strategy}: {err}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shared = env.stat(&target.join("shared"));
    assert_eq!(
        (shared.uid(), shared.gid()),
        (100000, 100000),
        "{what}/{strategy}"
    );
    let user = env.stat(&target.join("user-file"));
    assert_eq!(
        (user.uid(), user.gid()),
        (101000, 101000),
        "{what}/{strategy}"
    );
    assert_eq!(env.read(&target.join("shared")), "0\n", "{what}/{strategy}");
    for i in 0..layers.len() {
        assert_eq!(
            env.read(&target.join(format!("only-{i}"))),
            format!("{i}\n")
        );
    }
    if let Some((upper, _)) = rw {
        fs::write(env.ns.path(&target.join("new-file")), strategy).unwrap();
        assert_eq!(
            fs::read_to_string(env.ns.path(&upper.join("new-file"))).unwrap(),
            strategy
        );
        fs::remove_file(env.ns.path(&target.join("new-file"))).unwrap();
    }
    assert!(
        env.ns.mountinfo().iter().all(|m| !m.idmapped()),
        "{what}/{strategy}: an idmapped mount stays attached"
    );
    env.ok(&["umount", record["id"].as_str().unwrap()]);
    assert!(
        env.our_mounts().iter().all(|m| m.fs_type != "overlay"),
        "{what}/{strategy}"
    );
}

/// `idmappable`: whether this kernel idmaps the filesystem (ramfs never).
fn layers_on(kind: &str, idmappable: bool) {
    let env = Env::new();
    let (mnt, layers, device) = filesystem(&env, kind);
    let before = snapshot(&env.ns.path(&mnt.join("layers")));
    for strategy in strategies() {
        check_mount(&env, kind, strategy, &layers, None, idmappable);
        if kind != "erofs" {
            // upper and work on the same filesystem as the layers.
            let upper = mnt.join(format!("rw-{strategy}/upper"));
            let work = mnt.join(format!("rw-{strategy}/work"));
            fs::create_dir_all(env.ns.path(&upper)).unwrap();
            fs::create_dir_all(env.ns.path(&work)).unwrap();
            check_mount(
                &env,
                kind,
                strategy,
                &layers,
                Some((&upper, &work)),
                idmappable,
            );
        } else {
            let (upper, work) = (env.mkdir("upper"), env.mkdir("work"));
            check_mount(
                &env,
                kind,
                strategy,
                &layers,
                Some((&upper, &work)),
                idmappable,
            );
        }
    }
    assert_eq!(
        snapshot(&env.ns.path(&mnt.join("layers"))),
        before,
        "{kind}: layer data changed"
    );
    unmount_filesystem(&env, &mnt, device, kind);
}

/// Checks that gc finds nothing, unmounts the test's filesystem and
/// waits for its loop device to go.
fn unmount_filesystem(env: &Env, mnt: &Path, device: Option<LoopDevice>, kind: &str) {
    // Only the test's own filesystem is left, and gc finds nothing.
    let leaks = env.ok(&["inspect", "--leaks", "--json"]);
    assert!(leaks.contains("\"leaks\": []"), "{kind}: {leaks}");
    sh(env, &format!("umount {}", s(mnt)));
    env.assert_clean();
    if let Some(device) = device {
        let image = device.image.clone();
        drop(device);
        // The kernel may let go of the block device a moment after the
        // umount (deferred fput): a detach set autoclear, so wait for it.
        let mut left = LoopDevice::attached(&image);
        for _ in 0..200 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            left = LoopDevice::attached(&image);
        }
        assert_eq!(left, "", "{kind}: loop device left");
    }
}

/// `--idmapped-upper` with the layers, upper and work directories on a
/// filesystem of `kind`: the round trip of idmapped_upper.rs on every
/// strategy, or the clear refusal where this kernel cannot idmap it.
fn idmapped_upper_on(kind: &str, idmappable: bool) {
    let env = Env::new();
    let (mnt, layers, device) = filesystem(&env, kind);
    let bottom = env.ns.path(&layers[layers.len() - 1]);
    fs::create_dir_all(bottom.join("ldir")).unwrap();
    fs::write(bottom.join("ldir/inner"), "i\n").unwrap();
    let before = snapshot(&env.ns.path(&mnt.join("layers")));
    for strategy in strategies() {
        let store = mnt.join(format!("store-{strategy}"));
        fs::create_dir_all(env.ns.path(&store)).unwrap();
        crate::idmapped_upper::close(&env.ns.path(&store));
        let (upper, work) = (store.join("upper"), store.join("work"));
        fs::create_dir_all(env.ns.path(&upper)).unwrap();
        fs::create_dir_all(env.ns.path(&work)).unwrap();
        if idmappable {
            crate::idmapped_upper::round_trip(&env, strategy, &layers, &upper, &work, kind);
        } else {
            let target = env.mkdir("mnt");
            let out = crate::idmapped_upper::mount_idmapped_upper(
                &env, strategy, &layers, &upper, &work, &target, 100000,
            );
            assert_eq!(
                out.status.code(),
                Some(32),
                "{kind}/{strategy}: {}",
                stderr(&out)
            );
            assert!(env.our_mounts().iter().all(|m| m.fs_type != "overlay"));
        }
    }
    assert_eq!(
        snapshot(&env.ns.path(&mnt.join("layers"))),
        before,
        "{kind}: layer data changed"
    );
    unmount_filesystem(&env, &mnt, device, kind);
}

#[test]
fn idmapped_upper_on_ext4() {
    idmapped_upper_on("ext4", true);
}

#[test]
fn idmapped_upper_on_xfs() {
    idmapped_upper_on("xfs", true);
}

#[test]
fn idmapped_upper_on_btrfs() {
    idmapped_upper_on("btrfs", true);
}

#[test]
fn idmapped_upper_on_tmpfs() {
    idmapped_upper_on("tmpfs", kernel().idmapped_tmpfs);
}

#[test]
fn layers_on_ext4() {
    layers_on("ext4", true);
}

#[test]
fn layers_on_xfs() {
    layers_on("xfs", true);
}

#[test]
fn layers_on_btrfs() {
    layers_on("btrfs", true);
}

#[test]
/// tmpfs takes idmapped mounts from 6.3 on: before, the clear refusal.
fn layers_on_tmpfs() {
    layers_on("tmpfs", kernel().idmapped_tmpfs);
}

/// ramfs has no idmapped mounts at all: every strategy must say so.
#[test]
fn layers_on_ramfs_are_refused_clearly() {
    layers_on("ramfs", false);
}

#[test]
fn layers_on_erofs() {
    require_root(); // without root this fails, whatever is installed
    // Fails rather than skips when missing; .ci/run installs it.
    assert!(
        have("mkfs.erofs"),
        "mkfs.erofs is not installed (Debian: erofs-utils)"
    );
    layers_on("erofs", true);
}

/// Layers on two filesystems (ext4 and xfs) and on the parent's own, all
/// under one parent directory: one idmapped tree per filesystem, none read
/// through a mount that hides another.
#[test]
fn layers_spread_over_two_filesystems_under_one_parent() {
    let env = Env::new();
    let parent = env.mkdir("parent");
    let mut devices = Vec::new();
    let mut layers = Vec::new();
    for (i, kind) in ["ext4", "xfs"].into_iter().enumerate() {
        let image = env.path(&format!("{kind}.img"));
        let size: u64 = if kind == "xfs" { 320 << 20 } else { 64 << 20 };
        fs::File::create(&image).unwrap().set_len(size).unwrap();
        run_host(
            &format!("mkfs.{kind}"),
            &["-q", if kind == "xfs" { "-f" } else { "-F" }, s(&image)],
        );
        let device = LoopDevice::attach(&image);
        let mnt = env.mkdir(&format!("parent/{kind}"));
        sh(
            &env,
            &format!("mount -t {kind} {} {}", device.device, s(&mnt)),
        );
        devices.push(device);
        let dir = env.ns.path(&mnt.join("fs"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("only-{i}")), format!("{i}\n")).unwrap();
        fs::write(dir.join("shared"), format!("{i}\n")).unwrap();
        fs::write(dir.join(format!("from-{kind}")), kind).unwrap();
        layers.push(mnt.join("fs"));
    }
    // A third layer on the parent's own filesystem.
    let plain = env.mkdir("parent/plain/fs");
    fs::write(plain.join("only-2"), "2\n").unwrap();
    fs::write(plain.join("user-file"), "u\n").unwrap();
    std::os::unix::fs::chown(plain.join("user-file"), Some(1000), Some(1000)).unwrap();
    layers.push(plain);

    for strategy in strategies() {
        let target = env.mkdir("mnt");
        let out = env.ok(&[
            "mount",
            "--json",
            "--strategy",
            strategy,
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:100000:65536",
            s(&target),
        ]);
        let record: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            record["idmapped_dirs"].as_array().unwrap().len(),
            3,
            "{strategy}: {record}"
        );
        for (i, kind) in ["ext4", "xfs"].into_iter().enumerate() {
            assert_eq!(
                env.read(&target.join(format!("from-{kind}"))),
                kind,
                "{strategy}"
            );
            assert_eq!(
                env.read(&target.join(format!("only-{i}"))),
                format!("{i}\n")
            );
            assert_eq!(
                env.stat(&target.join(format!("from-{kind}"))).uid(),
                100000,
                "{strategy}"
            );
        }
        assert_eq!(
            env.read(&target.join("shared")),
            "0\n",
            "{strategy}: top layer wins"
        );
        assert_eq!(
            env.stat(&target.join("user-file")).uid(),
            101000,
            "{strategy}"
        );
        env.ok(&["umount", s(&target)]);
    }
    for kind in ["xfs", "ext4"] {
        sh(&env, &format!("umount {}", s(&parent.join(kind))));
    }
    env.assert_clean();
    for device in devices {
        let image = device.image.clone();
        drop(device);
        assert_eq!(LoopDevice::attached(&image), "", "loop device left");
    }
}
