//! The namespace scan on real namespaces: an overlay mounted in the test's
//! namespace, held by processes in two namespaces of their own (one
//! chrooted into it, as a runtime pivots into it; one with its cwd there),
//! then unmounted where it was made. The scan runs as a caller in the
//! test's namespace would: on a thread that has entered it.

use crate::support::*;
use idmap_overlay::kernel::namespaces::{
    Device, DirRole, Scan, TableSource, Via, current_namespace, namespace_id,
};
use nix::sched::CloneFlags;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
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

/// A process we started, killed by pid when dropped.
struct Started(Child);

impl Started {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
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

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap(), parts.next().unwrap()) >= (major, minor)
}

#[test]
fn finds_copies_in_other_namespaces_until_their_holders_exit() {
    let env = Env::new();
    let lower = env.mkdir("lower");
    install_sleep(&lower, "rootsleep");
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("target");
    let source = mount_overlay(&env, &lower, &upper, &work, &target);
    let test_ns = namespace_id(Path::new(&format!("/proc/{}/ns/mnt", env.ns.pid()))).unwrap();

    // Seen from the test namespace: attached there only.
    let holder = env.ns.pid();
    let scan = in_namespace_of(holder, Scan::live).unwrap();
    assert_eq!(scan.own_ns, Some(test_ns));
    let here = scan
        .namespace(test_ns)
        .and_then(|n| n.table.as_ref().ok())
        .and_then(|t| t.overlays.iter().find(|o| o.source == source))
        .expect("the overlay in the test namespace's table")
        .clone();
    let device = here.device;
    assert_eq!(
        Device::from_dev_t(env.stat(&env.ns.path(&target)).dev()),
        device,
        "mountinfo's device is the one stat reports"
    );
    assert_eq!(
        (here.mount_point.as_path(), here.upperdir.as_deref()),
        (target.as_path(), Some(upper.as_path()))
    );
    assert!(scan.copies(device, &source).is_empty());

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

    // Unmounted where it was made: alive in the other two.
    env.plain_umount(&target);
    assert!(!env.ns.mountinfo().iter().any(|m| m.source == source));

    let (source2, upper2, work2) = (source.clone(), upper.clone(), work.clone());
    // The same directory under another name: found by device and inode.
    let upper_link = env.path("upper-link");
    std::os::unix::fs::symlink(&upper, &upper_link).unwrap();
    let (scan, using_upper, using_link, using_work, by_mountinfo) =
        in_namespace_of(holder, move || {
            let scan = Scan::live().unwrap();
            let using_upper = scan.overlays_using(&upper2);
            let using_link = scan.overlays_using(&upper_link);
            let using_work = scan.overlays_using(&work2);
            let by_mountinfo = Scan::read(
                Path::new("/proc"),
                Some(current_namespace().unwrap()),
                None,
                TableSource::Mountinfo,
            )
            .unwrap();
            (scan, using_upper, using_link, using_work, by_mountinfo)
        });
    assert!(
        scan.attached(device, &source2)
            .iter()
            .all(|(n, _)| n.ns != test_ns)
    );

    // The same copies whichever way the tables are read (listmount where
    // the kernel has it, which `live` prefers, and mountinfo).
    for scan in [&scan, &by_mountinfo] {
        let copies = scan.copies(device, &source);
        let summary: Vec<_> = copies
            .iter()
            .map(|c| {
                let points: Vec<&Path> = c.mounts.iter().map(|m| m.mount_point.as_path()).collect();
                {
                    let p = c.process.as_ref().expect("a process in the namespace");
                    (c.ns, p.pid, p.command.as_str(), c.is_root, c.is_cwd, points)
                }
            })
            .collect();
        // The chrooted process's mountinfo shows the overlay as its "/";
        // statmount names mount points from the namespace's root mount.
        let rooted_at = match scan.namespace(rooted_ns).unwrap().source {
            TableSource::Mountinfo => Path::new("/"),
            TableSource::Listmount => target.as_path(),
        };
        let mut expected = vec![
            (
                rooted_ns,
                rooted.pid(),
                "rootsleep",
                true,
                true,
                vec![rooted_at],
            ),
            (
                cwd_ns,
                cwd_only.pid(),
                "sleep",
                false,
                true,
                vec![target.as_path()],
            ),
        ];
        expected.sort();
        assert_eq!(summary, expected);
        assert!(scan.copies(device, "idmap-overlay:someone-else").is_empty());
    }
    let ids = |scan: &Scan| {
        scan.copies(device, &source)
            .iter()
            .map(|c| c.mounts[0].mount_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&scan), ids(&by_mountinfo));
    assert!(
        by_mountinfo
            .namespaces()
            .iter()
            .all(|n| n.source == TableSource::Mountinfo)
    );

    // The upperdir and workdir are in use, whatever the name they are
    // given.
    let namespaces_of = |uses: &[idmap_overlay::kernel::namespaces::DirUse]| {
        let mut ns: Vec<u64> = uses
            .iter()
            .flat_map(|u| u.places.iter().map(|p| p.ns))
            .collect();
        ns.sort();
        ns
    };
    let mut both = vec![rooted_ns, cwd_ns];
    both.sort();
    assert_eq!(using_upper.len(), 1, "{using_upper:?}");
    assert_eq!(
        (
            using_upper[0].device,
            using_upper[0].role,
            using_upper[0].by_path
        ),
        (device, DirRole::Upper, true)
    );
    assert_eq!(namespaces_of(&using_upper), both);
    assert_eq!(using_link.len(), 1, "{using_link:?}");
    assert_eq!(
        (using_link[0].role, using_link[0].by_path),
        (DirRole::Upper, false)
    );
    assert_eq!(using_link[0].dir, upper);
    assert_eq!(using_work.len(), 1);
    assert_eq!(using_work[0].role, DirRole::Work);

    // Who holds it, across namespaces.
    let mut holders: Vec<_> = scan
        .holders(&[(device, source.as_str())])
        .into_iter()
        .map(|h| (h.pid, h.command, h.ns, h.via))
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

    // Once the holders exit, their namespaces and the overlay are gone.
    rooted.stop();
    cwd_only.stop();
    let (scan, using) = scan_until(holder, &upper, |scan| {
        scan.namespace(rooted_ns).is_none() && scan.namespace(cwd_ns).is_none()
    });
    assert!(scan.attached(device, &source).is_empty());
    assert!(scan.copies(device, &source).is_empty());
    assert!(using.is_empty(), "{using:?}");
    assert!(scan.holders(&[(device, source.as_str())]).is_empty());
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
    let source = mount_overlay(&env, &lower, &upper, &work, &target);
    let device = Device::from_dev_t(env.stat(&env.ns.path(&target)).dev());

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
    let upper2 = upper.clone();
    let (scan, using) = in_namespace_of(holder, move || {
        let scan = Scan::live().unwrap();
        let using = scan.overlays_using(&upper2);
        (scan, using)
    });
    let copies = scan.copies(device, &source);
    // No walk of /proc finds it: the kernel's list of namespaces
    // (NS_MNT_GET_NEXT) and listmount do, on kernels that have them (all
    // since 6.15 at least); older ones fall back to mountinfo and miss it.
    if kernel_at_least(6, 15) {
        let held = scan.namespace(held_ns).expect("the namespace in the scan");
        assert!(held.pids.is_empty() && held.process.is_none());
        assert_eq!(held.source, TableSource::Listmount);
        let summary: Vec<_> = copies
            .iter()
            .map(|c| {
                (
                    c.ns,
                    c.process.clone(),
                    c.is_root,
                    c.is_cwd,
                    c.mounts[0].mount_point.clone(),
                )
            })
            .collect();
        assert_eq!(summary, vec![(held_ns, None, false, false, target.clone())]);
        assert_eq!(using.len(), 1);
        assert_eq!(using[0].places.len(), 1);
        assert_eq!(
            (using[0].places[0].ns, &using[0].places[0].process),
            (held_ns, &None)
        );
        assert!(scan.holders(&[(device, source.as_str())]).is_empty());
    } else {
        assert!(copies.is_empty() && scan.namespace(held_ns).is_none());
    }

    // Closing the file ends the namespace and the overlay (the kernel may
    // take a moment to free it).
    drop(ns_file);
    let (scan, using) = scan_until(holder, &upper, |scan| scan.namespace(held_ns).is_none());
    assert!(scan.copies(device, &source).is_empty());
    assert!(using.is_empty());
}

/// Scans from the namespace of `pid` until `done` holds (at most 5 s),
/// with the overlays using `dir`: what the kernel frees once the last
/// process or reference goes, it may free a moment later.
fn scan_until(
    pid: u32,
    dir: &Path,
    done: impl Fn(&Scan) -> bool,
) -> (Scan, Vec<idmap_overlay::kernel::namespaces::DirUse>) {
    for _ in 0..500 {
        let dir = dir.to_path_buf();
        let (scan, using) = in_namespace_of(pid, move || {
            let scan = Scan::live().unwrap();
            let using = scan.overlays_using(&dir);
            (scan, using)
        });
        if done(&scan) {
            return (scan, using);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the scan never showed the expected change");
}
