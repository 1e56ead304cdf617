//! The namespace scan on real namespaces: an overlay mounted in the test's
//! namespace, held by processes in two namespaces of their own (one
//! chrooted into it, as a runtime pivots into it; one with its cwd there),
//! then unmounted where it was made. The scan runs as a caller in the
//! test's namespace would: on a thread that has entered it.

use crate::support::*;
use idmap_overlay::namespaces::{
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

#[test]
fn finds_copies_in_other_namespaces_until_their_holders_exit() {
    let env = Env::new();
    let lower = env.mkdir("lower");
    install_sleep(&lower, "rootsleep");
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("target");
    let source = format!("idmap-overlay:nstest-{}", std::process::id());
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        s(&lower),
        s(&upper),
        s(&work)
    );
    let status = env
        .ns
        .command("mount")
        .args(["-t", "overlay", &source, "-o", &options, s(&target)])
        .status()
        .unwrap();
    assert!(status.success(), "mount -t overlay");
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
    let (scan, using_upper, using_link, using_work, listmount) =
        in_namespace_of(holder, move || {
            let scan = Scan::live().unwrap();
            let using_upper = scan.overlays_using(&upper2);
            let using_link = scan.overlays_using(&upper_link);
            let using_work = scan.overlays_using(&work2);
            let listmount = Scan::read(
                Path::new("/proc"),
                Some(current_namespace().unwrap()),
                None,
                TableSource::Listmount,
            )
            .unwrap();
            (scan, using_upper, using_link, using_work, listmount)
        });
    assert!(
        scan.attached(device, &source2)
            .iter()
            .all(|(n, _)| n.ns != test_ns)
    );

    let copies = scan.copies(device, &source);
    let summary: Vec<_> = copies
        .iter()
        .map(|c| {
            let ids: Vec<u64> = c.mounts.iter().map(|m| m.mount_id).collect();
            let points: Vec<&Path> = c.mounts.iter().map(|m| m.mount_point.as_path()).collect();
            (
                c.ns,
                c.pid,
                c.command.as_str(),
                c.is_root,
                c.is_cwd,
                ids.len(),
                points,
            )
        })
        .collect();
    let mut expected = vec![
        // The chrooted process sees the overlay as its "/".
        (
            rooted_ns,
            rooted.pid(),
            "rootsleep",
            true,
            true,
            1,
            vec![Path::new("/")],
        ),
        (
            cwd_ns,
            cwd_only.pid(),
            "sleep",
            false,
            true,
            1,
            vec![target.as_path()],
        ),
    ];
    expected.sort();
    assert_eq!(summary, expected);
    assert!(scan.copies(device, "idmap-overlay:someone-else").is_empty());

    // listmount/statmount find the same copies (mount points there are
    // relative to each namespace's root mount, not to a chroot).
    let same = |scan: &Scan| {
        scan.copies(device, &source)
            .into_iter()
            .map(|c| (c.ns, c.pid, c.is_root, c.is_cwd, c.mounts[0].mount_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(same(&listmount), same(&scan));

    // The upperdir and workdir are in use, whatever the name they are
    // given.
    let namespaces_of = |uses: &[idmap_overlay::namespaces::DirUse]| {
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
        .holders(&[device])
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
    let upper3 = upper.clone();
    let (scan, using) = in_namespace_of(holder, move || {
        let scan = Scan::live().unwrap();
        let using = scan.overlays_using(&upper3);
        (scan, using)
    });
    assert!(scan.namespace(rooted_ns).is_none() && scan.namespace(cwd_ns).is_none());
    assert!(scan.attached(device, &source).is_empty());
    assert!(scan.copies(device, &source).is_empty());
    assert!(using.is_empty(), "{using:?}");
    assert!(scan.holders(&[device]).is_empty());
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
