//! The kernel's answers and the copies walk on real namespaces: an overlay
//! mounted in the test's namespace, held by processes in two namespaces of
//! their own (one chrooted into it, as a runtime pivots into it; one with
//! its cwd there), then unmounted where it was made. The library runs as a
//! caller in the test's namespace would: on a thread that has entered it.

use crate::support::*;
use idmap_overlay::Cancel;
use idmap_overlay::testing::{
    Copies, Deadline, Device, DirUse, Prober, SuperblockWatch, Via, current_namespace, find_copies,
    namespace_id,
};
use nix::sched::CloneFlags;
use std::collections::HashSet;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Runs `f` on a thread that has entered the mount namespace of `pid`. A
/// thread may join a mount namespace once it has a filesystem context of
/// its own (setns(2): CLONE_FS first).
fn in_namespace_of<T: Send + 'static>(pid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_FS).expect("unshare(CLONE_FS)");
        let ns = fs::File::open(format!("/proc/{pid}/ns/mnt")).unwrap();
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNS).expect("setns into the test namespace");
        f()
    })
    .join()
    .unwrap()
}

/// Waits until `pid` runs `command` in a mount namespace other than `not`,
/// and returns that namespace.
fn wait_until_running(pid: u32, command: &str, not: u64) -> u64 {
    for _ in 0..1000 {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let ns = namespace_id(Path::new(&format!("/proc/{pid}/ns/mnt"))).unwrap_or(not);
        if comm.trim_end() == command && ns != not {
            return ns;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("pid {pid} never ran {command} in a namespace of its own");
}

/// `/bin/sleep` and the libraries it loads, copied into `root` under the
/// name `name`, so that a process chrooted there can run it.
fn install_sleep(root: &Path, name: &str) {
    let ldd = std::process::Command::new("ldd")
        .arg("/bin/sleep")
        .output()
        .unwrap();
    let listing = String::from_utf8(ldd.stdout).unwrap();
    let libraries = listing
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(PathBuf::from);
    for library in libraries {
        let inside = root.join(library.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::copy(&library, &inside).unwrap();
    }
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/sleep", root.join("bin").join(name)).unwrap();
}

/// A plain overlay (not the tool's: the scan must not depend on it) at
/// `target` in the test namespace, tagged like ours; returns the tag. Each
/// tag is new: tests run side by side, and the device number of one's
/// overlay, once gone, may be handed to another's.
fn mount_overlay(env: &Env, lower: &Path, upper: &Path, work: &Path, target: &Path) -> String {
    static MOUNTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MOUNTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let source = format!("idmap-overlay:nstest-{}-{n}", std::process::id());
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        s(lower),
        s(upper),
        s(work)
    );
    let status = env
        .ns
        .command("mount")
        .args(["-t", "overlay", &source, "-o", &options, s(target)])
        .status()
        .unwrap();
    assert!(status.success(), "mount -t overlay");
    source
}

/// Is `dir` in use, as the kernel says, asked from the namespace of `pid`.
fn in_use(pid: u32, dir: &Path) -> DirUse {
    let dir = dir.to_path_buf();
    in_namespace_of(pid, move || {
        let fd = fs::File::open(&dir).unwrap();
        Prober::new().dir_in_use(fd.as_fd())
    })
}

/// The copies of `device` outside the namespace of `pid`, seen from there.
fn copies_from(pid: u32, device: Device) -> Copies {
    in_namespace_of(pid, move || {
        let own = current_namespace().ok();
        let deadline = Deadline::after(Duration::from_secs(10), &Cancel::new());
        find_copies(&[device].into(), own, &HashSet::new(), &deadline)
    })
}

fn device_of(env: &Env, target: &Path) -> Device {
    let dev = env.stat(&env.ns.path(target)).dev();
    Device {
        major: nix::sys::stat::major(dev) as u32,
        minor: nix::sys::stat::minor(dev) as u32,
    }
}

#[test]
fn the_kernel_tells_in_use_and_the_walk_names_copies_until_their_holders_exit() {
    let env = Env::new();
    let lower = env.mkdir("lower");
    install_sleep(&lower, "rootsleep");
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("target");
    let free = env.mkdir("free");
    let holder = env.ns.pid();
    // Before anything is mounted: free.
    assert_eq!(in_use(holder, &upper), DirUse::Free);
    mount_overlay(&env, &lower, &upper, &work, &target);
    let device = device_of(&env, &target);
    let test_ns = namespace_id(Path::new(&format!("/proc/{holder}/ns/mnt"))).unwrap();

    // Mounted here: its upperdir and workdir are in use, another directory
    // is not; no copy anywhere else.
    assert_eq!(in_use(holder, &upper), DirUse::InUse);
    assert_eq!(in_use(holder, &work), DirUse::InUse);
    assert_eq!(in_use(holder, &free), DirUse::Free);
    let alone = copies_from(holder, device);
    assert!(
        alone.complete && alone.elsewhere(device).is_empty(),
        "{alone:?}"
    );

    // A "container": its own namespace, chrooted into the overlay. Another
    // namespace whose process only has its cwd there.
    let in_test_ns = |args: &[&str]| {
        Started(
            env.ns
                .command("unshare")
                .args(["-m", "--propagation", "private"])
                .args(args)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut rooted = in_test_ns(&["--", "chroot", s(&target), "/bin/rootsleep", "1000"]);
    let mut cwd_only = in_test_ns(&["--wd", s(&target), "--", "sleep", "1000"]);
    let rooted_ns = wait_until_running(rooted.pid(), "rootsleep", test_ns);
    let cwd_ns = wait_until_running(cwd_only.pid(), "sleep", test_ns);
    assert_ne!(rooted_ns, cwd_ns);

    // Unmounted where it was made, watched: the superblock outlives it,
    // and the upperdir stays in use.
    let target2 = target.clone();
    let watch_fd = in_namespace_of(holder, move || fs::File::open(&target2).unwrap());
    let watch = SuperblockWatch::new(watch_fd.as_fd()).unwrap();
    drop(watch_fd);
    env.plain_umount(&target);
    assert!(!watch.died(), "the superblock died with copies alive");
    assert_eq!(in_use(holder, &upper), DirUse::InUse);
    assert_eq!(in_use(holder, &work), DirUse::InUse);

    // The walk names both namespaces and the processes using the copies.
    let copies = copies_from(holder, device);
    assert!(copies.complete, "{copies:?}");
    let mut places: Vec<u64> = copies.places[&device]
        .iter()
        .map(|(ns, _, _)| *ns)
        .collect();
    places.sort();
    let mut both = vec![rooted_ns, cwd_ns];
    both.sort();
    assert_eq!(places, both);
    let mut holders: Vec<_> = copies
        .holders
        .iter()
        .map(|h| (h.pid, h.command.clone(), h.ns, h.via))
        .collect();
    holders.sort();
    let mut expected = vec![
        (
            rooted.pid(),
            "rootsleep".to_string(),
            Some(rooted_ns),
            Via::Root,
        ),
        (
            rooted.pid(),
            "rootsleep".to_string(),
            Some(rooted_ns),
            Via::Cwd,
        ),
        (cwd_only.pid(), "sleep".to_string(), Some(cwd_ns), Via::Cwd),
    ];
    expected.sort();
    assert_eq!(holders, expected);
    let named: Vec<_> = copies
        .elsewhere(device)
        .iter()
        .map(|e| (e.pid, e.mount_ns, e.root, e.cwd))
        .collect();
    assert!(
        named.contains(&(Some(rooted.pid()), Some(rooted_ns), true, true)),
        "{named:?}"
    );
    assert!(
        named.contains(&(Some(cwd_only.pid()), Some(cwd_ns), false, true)),
        "{named:?}"
    );
    // Another device: nothing.
    let other = Device {
        major: 0,
        minor: device.minor + 1000,
    };
    assert!(copies_from(holder, other).elsewhere(other).is_empty());

    // Once the holders exit, their namespaces and the overlay are gone:
    // the watch says so, and the kernel frees the upperdir.
    let holder_pids = [rooted.pid(), cwd_only.pid()];
    rooted.stop();
    cwd_only.stop();
    assert!(
        watch.wait(
            std::time::Instant::now() + Duration::from_secs(5),
            &Cancel::new()
        ),
        "the superblock never died"
    );
    assert_eq!(in_use(holder, &upper), DirUse::Free);
    assert_eq!(in_use(holder, &work), DirUse::Free);
    // The walk names none of them any more. (Not "finds nothing on this
    // device": the device number is free again, and a test running beside
    // this one may mount an overlay that takes it.)
    let gone = copies_from(holder, device);
    assert!(
        gone.elsewhere(device)
            .iter()
            .all(|e| !e.pid.is_some_and(|pid| holder_pids.contains(&pid))),
        "{gone:?}"
    );
}

#[test]
fn a_namespace_file_names_the_namespace() {
    require_root();
    let env = Env::new();
    let pid = env.ns.pid();
    let inside = in_namespace_of(pid, || current_namespace().unwrap());
    assert_eq!(
        inside,
        namespace_id(Path::new(&format!("/proc/{pid}/ns/mnt"))).unwrap()
    );
    assert_ne!(inside, current_namespace().unwrap());
}

#[test]
fn finds_a_copy_in_a_namespace_without_processes() {
    let env = Env::new();
    let (lower, upper, work) = (env.mkdir("lower"), env.mkdir("upper"), env.mkdir("work"));
    let target = env.mkdir("target");
    mount_overlay(&env, &lower, &upper, &work, &target);
    let device = device_of(&env, &target);

    // A namespace made from the test's (so with a copy of the overlay),
    // kept alive by an open namespace file once its process is gone. (A
    // bind mount of the file would do too, but the kernel refuses it now
    // and then: its loop check compares namespace ids, which it hands out
    // in per-CPU batches.)
    let mut process = Started(
        env.ns
            .command("unshare")
            .args(["-m", "--propagation", "private", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let test_ns = namespace_id(Path::new(&format!("/proc/{}/ns/mnt", env.ns.pid()))).unwrap();
    let held_ns = wait_until_running(process.pid(), "sleep", test_ns);
    let ns_file = fs::File::open(format!("/proc/{}/ns/mnt", process.pid())).unwrap();
    assert_eq!(ns_file.metadata().unwrap().ino(), held_ns);
    process.stop();
    env.plain_umount(&target);

    let holder = env.ns.pid();
    // The kernel knows, whatever walks can find.
    assert_eq!(in_use(holder, &upper), DirUse::InUse);
    let copies = copies_from(holder, device);
    // No process is in it: the kernel's list of namespaces (NS_MNT_GET_NEXT,
    // 6.12+) has it, and on older kernels the walk finds it through the
    // open file that keeps it, and reads it from a thread that enters it.
    assert_eq!(copies.places[&device].len(), 1, "{copies:?}");
    assert_eq!(copies.places[&device][0].0, held_ns);
    assert_eq!(copies.places[&device][0].2, target);
    let named = copies.elsewhere(device);
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(
        (named[0].pid, named[0].mount_ns, named[0].used()),
        (None, Some(held_ns), false)
    );

    // Closing the file ends the namespace and the overlay (the kernel may
    // take a moment to free it).
    drop(ns_file);
    for _ in 0..500 {
        if in_use(holder, &upper) == DirUse::Free {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the upperdir stayed in use after the last copy went");
}
