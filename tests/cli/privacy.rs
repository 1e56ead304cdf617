//! The common-dir view exposes every sibling of the layers while it exists:
//! only root may reach it, it is read-only, and it appears in no other mount
//! namespace, even when the host's mounts are shared (as systemd makes them).

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

/// A second mount namespace made from inside `env`'s, as a peer of it: what
/// a container runtime's namespaces look like after `mount --make-rshared /`.
struct Peer {
    holder: std::process::Child,
}

impl Peer {
    fn new(env: &Env) -> Peer {
        let holder = env
            .ns
            .command("unshare")
            .args([
                "-m",
                "--propagation",
                "unchanged",
                "--",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let peer = Peer { holder };
        // Ready once it is in a namespace that is neither the test's nor
        // ours (nsenter starts out in ours, then joins the test's).
        let test_ns = fs::read_link(format!("/proc/{}/ns/mnt", env.ns.pid())).unwrap();
        let host_ns = fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..500 {
            if let Ok(ns) = fs::read_link(format!("/proc/{}/ns/mnt", peer.holder.id()))
                && ns != test_ns
                && ns != host_ns
            {
                return peer;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("peer namespace never appeared");
    }

    fn mountinfo(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.holder.id())).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn common_dir_view_reaches_no_one_else() {
    let env = Env::new();
    // Share everything in the test's namespace, then make a peer of it.
    assert!(
        env.ns
            .command("mount")
            .args(["--make-rshared", "/"])
            .status()
            .unwrap()
            .success()
    );
    let peer = Peer::new(&env);
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let paused = Paused::start(
        &env,
        "temp-mounted:pause",
        &mount_args("common-dir", &layers, &target),
    );

    let temp: Vec<MountLine> = env
        .our_mounts()
        .into_iter()
        .filter(|m| m.idmapped())
        .collect();
    assert_eq!(temp.len(), 1, "{temp:?}");
    let temp = &temp[0];
    // Read-only, under a 0700 directory owned by root.
    assert!(
        temp.options.split(',').any(|o| o == "ro"),
        "{}",
        temp.options
    );
    let dir = temp.mount_point.parent().unwrap();
    for d in [dir, dir.parent().unwrap()] {
        assert_eq!(
            fs::metadata(d).unwrap().permissions().mode() & 0o777,
            0o700,
            "{}",
            d.display()
        );
    }
    // An unprivileged user cannot even look.
    let out = env
        .ns
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "ls",
            s(&temp.mount_point),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    // The peer namespace never received the temporary mount.
    let theirs = peer.mountinfo();
    assert!(
        !theirs.contains("idmapped"),
        "temporary mount propagated:\n{theirs}"
    );
    assert!(!theirs.contains(s(&temp.mount_point)));

    assert!(paused.resume().success());
    // The overlay itself is a normal mount: it propagates like any other.
    assert!(peer.mountinfo().contains("idmap-overlay:"));
    env.ok(&["umount", s(&target)]);
    // gc and inspect do not mistake the private temp area for a leak.
    let leaks = env.ok(&["inspect", "--leaks"]);
    assert_eq!(leaks, "no leaks found\n");
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
}
