//! Containers live in mount namespaces of their own and keep copies of the
//! overlay: a runtime pivots (or chroots) into it. "The overlay" is the
//! superblock the tool made, wherever it is attached: umount waits for
//! such copies and names them, `--detach` leaves them and keeps the
//! record, gc never drops a record whose overlay lives on anywhere, and
//! mount refuses an upperdir or workdir a live overlay uses.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A bottom layer that can be a container's root: /bin/sleep and /bin/sh
/// with the libraries they need, and the directories a runtime mounts on.
pub fn rootfs_layer(env: &Env) -> PathBuf {
    let layer = env.mkdir("layers/base/fs");
    let mut files = vec![PathBuf::from("/bin/sleep"), PathBuf::from("/bin/sh")];
    for program in ["/bin/sleep", "/bin/sh"] {
        let ldd = Command::new("ldd").arg(program).output().unwrap();
        for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
            if word.starts_with('/') {
                files.push(PathBuf::from(word));
            }
        }
    }
    for file in files {
        let real = fs::canonicalize(&file).unwrap();
        let at = layer.join(file.strip_prefix("/").unwrap());
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        fs::copy(&real, &at).unwrap();
    }
    for dir in ["proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(layer.join(dir)).unwrap();
    }
    layer
}

/// Two layers (a file on top of a root filesystem), an upper and a work
/// directory, mounted at `mnt` with the default strategy: (target, id).
fn container_overlay(env: &Env) -> (PathBuf, String) {
    let base = rootfs_layer(env);
    let top = env.mkdir("layers/top/fs");
    fs::write(top.join("hello"), "from the top layer\n").unwrap();
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("mnt");
    let id = env
        .ok(&mount_args_with(
            "auto",
            &[top, base],
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ))
        .trim()
        .to_string();
    (target, id)
}

/// A process in a mount namespace of its own (a copy of the test's),
/// chrooted into `target` as runtimes pivot into a container's root, or
/// with its cwd there. Killed by pid when dropped.
struct Container {
    child: Child,
}

impl Container {
    fn start(env: &Env, target: &Path, chroot: bool) -> Container {
        let mut cmd = env.ns.command("unshare");
        cmd.args(["-m", "--propagation", "private", "--"]);
        if chroot {
            cmd.args(["chroot", s(target), "/bin/sleep", "60"]);
        } else {
            cmd.args(["sh", "-c", "cd \"$1\" && exec sleep 60", "sh", s(target)]);
        }
        let child = cmd.stdin(Stdio::null()).spawn().unwrap();
        let container = Container { child };
        // Wait until it sits on the overlay in its own namespace.
        let pid = container.pid();
        let link = if chroot { "root" } else { "cwd" };
        for _ in 0..2000 {
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt"));
            let ours = fs::read_link(format!("/proc/{}/ns/mnt", env.ns.pid()));
            let there = fs::read_link(format!("/proc/{pid}/{link}"));
            if ns.is_ok()
                && ns.ok() != ours.ok()
                && there.is_ok_and(|p| p == Path::new("/") || p == target)
            {
                std::thread::sleep(Duration::from_millis(20));
                return container;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the container never entered {}", target.display());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn record(env: &Env, id: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(env.state.join(format!("mounts/{id}.json"))).unwrap())
        .unwrap()
}

fn inspect_json(env: &Env, args: &[&str]) -> Value {
    serde_json::from_str(&env.ok(args)).unwrap()
}

/// A container chrooted into the overlay keeps it alive: umount unmounts
/// it here, waits for the container to let go, then fails naming the
/// process, with the record kept `detached` (the kernel says the overlay
/// lives on). Once the container is gone, gc removes the record; a
/// container that stops while umount waits lets it finish (exit 0).
#[test]
fn umount_waits_for_a_container_that_holds_the_overlay() {
    let env = Env::new();
    let (target, id) = container_overlay(&env);
    let container = Container::start(&env, &target, true);
    let out = env.run(&["umount", "--timeout", "2s", s(&target)]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "still in use in 1 other mount namespace: pid {} (sleep) in mount namespace",
            container.pid()
        )) && err.contains("the overlay is its root")
            && err.contains("kept as detached"),
        "{err}"
    );
    assert_eq!(record(&env, &id)["state"], "detached");
    assert!(env.our_mounts().is_empty(), "still mounted here");
    // inspect names the container.
    let detail = inspect_json(&env, &["inspect", "--json", &id]);
    let elsewhere = &detail["health"]["elsewhere"];
    assert_eq!(elsewhere[0]["pid"], container.pid());
    assert_eq!(elsewhere[0]["root"], true);
    assert_eq!(detail["health"]["word"], "elsewhere");
    assert!(env.ok(&["inspect"]).contains("elsewhere"));
    // umount again waits for it; the container stops meanwhile.
    let waiting = env
        .tool(&["umount", "--timeout", "10s", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    container.stop();
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    env.assert_clean();
}

/// `umount --detach` unmounts here only: the record stays, `detached`,
/// listed as alive elsewhere (not a leak); gc keeps it while the container
/// lives and removes it once the container is gone.
#[test]
fn detach_keeps_the_record_until_no_copy_is_left() {
    for chroot in [true, false] {
        let env = Env::new();
        let (target, id) = container_overlay(&env);
        let container = Container::start(&env, &target, chroot);
        let out = env.run(&["umount", "--detach", s(&target)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("kept as detached"),
            "{}",
            stderr(&out)
        );
        assert!(env.our_mounts().is_empty(), "still mounted here");
        assert_eq!(record(&env, &id)["state"], "detached");
        assert!(env.ok(&["inspect"]).contains("elsewhere"));
        // Alive elsewhere is no leak: not listed, exit 0 (it was a row,
        // and the exit was 0 whatever was found).
        let leaks = env.ok(&["inspect", "--leaks"]);
        assert_eq!(leaks, "no leaks found\n");
        let leaks = json(&env.run(&["inspect", "--leaks", "--json"]));
        assert_eq!(leaks["leaks"], serde_json::json!([]), "{leaks}");
        env.ok(&["gc"]);
        assert_eq!(
            record(&env, &id)["state"],
            "detached",
            "gc dropped a live record"
        );
        // The container still reads its files.
        let hello = fs::read_to_string(format!(
            "/proc/{}/{}hello",
            container.pid(),
            if chroot { "root/" } else { "cwd/" }
        ))
        .unwrap();
        assert_eq!(hello, "from the top layer\n");
        container.stop();
        let gc = env.run(&["gc"]);
        assert!(gc.status.success(), "{}", stderr(&gc));
        assert!(
            String::from_utf8_lossy(&gc.stdout).contains("vanished-overlay"),
            "{}",
            String::from_utf8_lossy(&gc.stdout)
        );
        env.assert_clean();
    }
}

/// An overlay mounted inside another mount namespace (through nsenter, or
/// the mount(8) helper's -N) records that namespace; from the host, umount
/// refuses (it is not mounted here) and gc asks the kernel: kept while the
/// overlay lives, removed after.
#[test]
fn an_overlay_mounted_in_another_namespace_is_judged_by_the_scan() {
    for through in ["nsenter", "helper -N"] {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        let other = Namespace::new();
        let helper = env.mkdir("bin").join("mount.idmap-overlay");
        std::os::unix::fs::symlink(BIN, &helper).unwrap();
        let mut cmd: Command = match through {
            "nsenter" => {
                let mut cmd = Command::new("nsenter");
                cmd.args(["-t", &other.pid().to_string(), "-m", "--", BIN]);
                cmd.args(mount_args("auto", &layers, &target));
                cmd
            }
            _ => {
                let mut cmd = env.ns.command(s(&helper));
                cmd.args([
                    "-N",
                    &format!("/proc/{}/ns/mnt", other.pid()),
                    "-o",
                    &format!("lowerdir={},uidmap=0:100000:65536", join(&layers)),
                    "none",
                    s(&target),
                ]);
                cmd
            }
        };
        let out = cmd
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{through}: {}", stderr(&out));
        let records = env.state_files("mounts");
        assert_eq!(records.len(), 1, "{through}");
        let id = records[0].trim_end_matches(".json").to_string();
        let ns = fs::metadata(format!("/proc/{}/ns/mnt", other.pid())).unwrap();
        assert_eq!(
            record(&env, &id)["mount_ns"],
            std::os::unix::fs::MetadataExt::ino(&ns),
            "{through}"
        );
        assert!(env.our_mounts().is_empty(), "{through}: mounted here");
        // umount(8) here would say "not mounted": so does umount, and the
        // record stays as it is.
        let out = env.run(&["umount", &id]);
        assert_eq!(out.status.code(), Some(32), "{through}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not mounted in this mount namespace"),
            "{through}: {}",
            stderr(&out)
        );
        assert_eq!(record(&env, &id)["state"], "mounted", "{through}");
        env.ok(&["gc"]);
        assert!(
            env.state.join(format!("mounts/{id}.json")).exists(),
            "{through}: gc dropped it"
        );
        let leaks = env.ok(&["inspect", "--leaks"]);
        assert_eq!(leaks, "no leaks found\n", "{through}");
        assert!(env.ok(&["inspect"]).contains("elsewhere"), "{through}");
        drop(other);
        // The kernel frees a namespace a moment after its last process.
        let mut gone = false;
        for _ in 0..200 {
            let gc = env.run(&["gc"]);
            assert!(gc.status.success(), "{through}: {}", stderr(&gc));
            if !env.state.join(format!("mounts/{id}.json")).exists() {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "{through}: gc kept the record of a vanished overlay");
        env.assert_clean();
    }
}

/// A second overlay on an upperdir or workdir in use corrupts both: refused
/// (exit 32, naming the other overlay), nothing left behind. Ours is found
/// by its record, anyone's by the namespace scan, even in another namespace.
#[test]
fn an_upperdir_or_workdir_in_use_is_refused() {
    let env = Env::new();
    let layers = env.layers(2);
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let first = env.mkdir("first");
    // common-dir names upper and work to overlayfs as /proc/self/fd/N, so
    // only our record says which directories it uses.
    let id = env
        .ok(&mount_args_with(
            "common-dir",
            &layers,
            &first,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ))
        .trim()
        .to_string();
    let second = env.mkdir("second");
    let other_work = env.mkdir("other-work");
    let other_upper = env.mkdir("other-upper");
    for (u, w) in [(&upper, &other_work), (&other_upper, &work)] {
        let out = env.run(&mount_args_with(
            "auto",
            &layers,
            &second,
            &["--upperdir", s(u), "--workdir", s(w)],
        ));
        assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
        assert!(stderr(&out).contains(&id), "{}", stderr(&out));
        assert_eq!(env.our_mounts().len(), 1);
        assert_eq!(env.state_files("mounts"), [format!("{id}.json")]);
    }
    env.ok(&["umount", &id]);

    // Somebody's plain overlay in a namespace of its own.
    let other = Namespace::new();
    let theirs = env.mkdir("theirs");
    let out = other
        .command("mount")
        .args(["-t", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            join(&layers),
            s(&upper),
            s(&work)
        ))
        .args(["their-overlay", s(&theirs)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env.run(&mount_args_with(
        "auto",
        &layers,
        &second,
        &["--upperdir", s(&upper), "--workdir", s(&other_work)],
    ));
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(stderr(&out).contains("their-overlay"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {}", other.pid())),
        "{}",
        stderr(&out)
    );
    drop(other);
    env.assert_clean();
}

/// crun refuses a host whose cgroups are mixed v1 and v2 (as this kind of
/// machine's are), even with no cgroup manager: in the test's private
/// namespace, a plain cgroup2 hierarchy is mounted over them.
pub fn cgroups_for_crun(env: &Env) {
    if fs::metadata("/sys/fs/cgroup/unified").is_ok() {
        let out = env
            .ns
            .command("mount")
            .args(["-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"])
            .output()
            .unwrap();
        assert!(out.status.success(), "cgroup2: {}", stderr(&out));
    }
}

/// crun, a real OCI runtime, runs a container whose root is our overlay in
/// a user namespace 0:100000:65536: it sees its files owned by its root,
/// and the tool treats the container's copy as above.
#[test]
fn a_real_oci_runtime_on_our_overlay() {
    let env = Env::new();
    let (target, id) = container_overlay(&env);
    let bundle = env.mkdir("bundle");
    let crun_state = env.mkdir("crun-state");
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sleep", "60"],
            "cwd": "/",
            "env": ["PATH=/bin"]
        },
        "root": {"path": s(&target), "readonly": true},
        "hostname": "c1",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "uidMappings": map,
            "gidMappings": map,
            "namespaces": [
                {"type": "pid"}, {"type": "mount"}, {"type": "user"},
                {"type": "ipc"}, {"type": "uts"}
            ]
        }
    });
    fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    cgroups_for_crun(&env);
    let crun = |args: &[&str]| {
        let out = env
            .ns
            .command("crun")
            .args(["--root", s(&crun_state), "--cgroup-manager=disabled"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out),
        )
    };
    // The container inherits crun's stdio: a file, not a pipe we would
    // wait on until the container ends.
    let log = env.path("crun.log");
    let status = env
        .ns
        .command("crun")
        .args(["--root", s(&crun_state), "--cgroup-manager=disabled"])
        .args(["run", "--detach", "--bundle", s(&bundle), "c1"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(env.path("crun.err")).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "crun run: {}",
        fs::read_to_string(env.path("crun.err")).unwrap()
    );
    let (ok, said) = crun(&["state", "c1"]);
    assert!(ok, "crun state: {said}");
    let state: Value = serde_json::from_str(said.trim()).unwrap();
    let pid = state["pid"].as_u64().unwrap() as u32;
    // Inside: the container's root owns its files, read through the copy.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Uid:\t100000"), "{status}");
    let sleep = fs::metadata(format!("/proc/{pid}/root/bin/sleep")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&sleep), 100000);

    let out = env.run(&["umount", "--timeout", "2s", s(&target)]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {pid} (sleep) in mount namespace"))
            && stderr(&out).contains("the overlay is its root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(record(&env, &id)["state"], "detached");
    // Again, with --detach: that is expected, exit 0.
    env.ok(&["umount", "--detach", &id]);
    env.ok(&["gc"]);
    assert_eq!(record(&env, &id)["state"], "detached");

    let (ok, said) = crun(&["kill", "c1", "KILL"]);
    assert!(ok, "crun kill: {said}");
    for _ in 0..200 {
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ok, said) = crun(&["delete", "--force", "c1"]);
    assert!(ok, "crun delete: {said}");
    let mut gone = false;
    for _ in 0..200 {
        env.ok(&["gc"]);
        if !env.state.join(format!("mounts/{id}.json")).exists() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "gc kept the record after the container ended");
    env.assert_clean();
}
