//! `--idmapped-upper`: the upper layer seen through the same map as the
//! lower ones, so that what a container writes is stored with the
//! container's own ids (a portable layer), and shows as its own again
//! under another map. The container here is real: a user namespace mapping
//! 0..65535 to the map's host range, entered with nsenter as its root or
//! its uid 1000, working in the overlay.
//!
//! The filesystems of the matrix run the same round trip from
//! `filesystems.rs`; this file holds it, the refusals (reachability,
//! mixing, no container root, a read-only result), and crashes.

use crate::support::*;
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// setcap, getfacl and the like live in sbin on Debian.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A container's user namespace: a process in a new user namespace (and
/// the test's mount namespace) whose map shows on-disk ids 0..65535 as
/// `host`..`host`+65535. Killed by pid when dropped.
pub struct ContainerIds {
    holder: Child,
    /// The test's mount namespace (its holder's pid).
    env_ns: u32,
}

impl ContainerIds {
    pub fn new(env: &Env, host: u32) -> ContainerIds {
        let holder = env
            .ns
            .command("unshare")
            .args(["-U", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ids = ContainerIds {
            holder,
            env_ns: env.ns.pid(),
        };
        let pid = ids.holder.id();
        let mine = fs::read_link("/proc/self/ns/user").unwrap();
        for _ in 0..5000 {
            if fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|ns| ns != mine) {
                for file in ["uid_map", "gid_map"] {
                    fs::write(format!("/proc/{pid}/{file}"), format!("0 {host} 65536\n")).unwrap();
                }
                return ids;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("the container's user namespace was never made");
    }

    /// `script` run by sh as the container's `uid` (0: its root, with every
    /// capability in its namespace), in `dir`: opened by nsenter (started
    /// in the test's namespace, where the overlay is) before it takes the
    /// container's ids, as a runtime enters the container's root.
    pub fn run(&self, uid: u32, dir: &Path, script: &str) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.env_ns.to_string(), "-m", "--", "nsenter"])
            .args(["-t", &self.holder.id().to_string(), "-U"])
            .args(["--setuid", &uid.to_string(), "--setgid", &uid.to_string()])
            .arg(format!("--wd={}", dir.display()))
            .args(["--", "sh", "-c", script])
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The same, asserting success; stdout.
    pub fn ok(&self, uid: u32, dir: &Path, script: &str) -> String {
        let out = self.run(uid, dir, script);
        assert!(
            out.status.success(),
            "as container uid {uid}: {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for ContainerIds {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `mount --idmapped-upper` of `layers` with `strategy` and the map
/// `0:<host>:65536`; the output.
pub fn mount_idmapped_upper(
    env: &Env,
    strategy: &str,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    host: u32,
) -> Output {
    env.run(&[
        "mount",
        "--json",
        "--idmapped-upper",
        "--strategy",
        strategy,
        "--lowerdir",
        &join(layers),
        "--upperdir",
        s(upper),
        "--workdir",
        s(work),
        "--uidmap",
        &format!("0:{host}:65536"),
        s(target),
    ])
}

/// What the container does as its root, in the overlay's root: every kind
/// of file, a whiteout (a lower file removed), an opaque directory (a
/// lower one removed and made again), a copy-up, setuid, a file
/// capability, an ACL and an xattr, and a home for its uid 1000.
const AS_ROOT: &str = "set -e
echo c > file
mkdir dir
ln -s file link
ln file hard
mkfifo fifo
rm only-1
rm -r ldir
mkdir ldir
echo n > ldir/new
echo more >> shared
cp /bin/true suid
chmod 4755 suid
cp /bin/true capped
setcap cap_net_raw+ep capped
touch acl
setfacl -m u:1000:rw,g:1000:r acl
setfattr -n user.foo -v bar file
mkdir home
chown 1000:1000 home";

/// What its uid 1000 does, in the overlay's root.
const AS_USER: &str = "set -e
echo u > home/ufile
mkdir home/udir
ln -s ufile home/ulink";

/// The on-disk owner (uid, gid) of `path`, not following a symlink.
fn owner(path: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid())
}

/// Runs a host tool on `path` (as root, on the upper directory itself).
fn host_tool(program: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .env("PATH", PATH)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (.ci/run installs acl, attr and libcap2-bin)"));
    assert!(
        out.status.success(),
        "{program} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The owners `tar --numeric-owner` records for everything in `dir`.
fn tar_owners(dir: &Path) -> BTreeSet<String> {
    let out = Command::new("sh")
        .args([
            "-c",
            "tar --numeric-owner -cf - -C \"$1\" . | tar --numeric-owner -tvf -",
            "sh",
            s(dir),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The whole round trip on one strategy: a container under map 100000
/// writes; on disk (`upper` as the namespace sees it: `disk`) everything
/// carries container ids; host root cannot create files through the
/// overlay; the same upper mounted under map 200000 shows a second
/// container its files, bits, capability, ACL and xattr unchanged, and it
/// writes there too. `what` names the case in messages.
pub fn round_trip(
    env: &Env,
    strategy: &str,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    what: &str,
) {
    let what = format!("{what}/{strategy}");
    let disk = env.ns.path(upper);
    let target = env.mkdir(&format!("mnt-{strategy}"));
    let out = mount_idmapped_upper(env, strategy, layers, upper, work, &target, 100000);
    assert!(out.status.success(), "{what}: {}", stderr(&out));
    let record = json(&out);
    assert_eq!(record["idmapped_upper"], true, "{what}");
    let detail = env.ok(&["inspect", record["id"].as_str().unwrap()]);
    assert!(
        detail.contains("upper ids:") && detail.contains("idmapped (the container's own ids"),
        "{what}: {detail}"
    );
    // No temporary or idmapped mount stays attached.
    assert!(
        env.ns.mountinfo().iter().all(|m| !m.idmapped()),
        "{what}: an idmapped mount stays attached"
    );

    let c1 = ContainerIds::new(env, 100000);
    c1.ok(0, &target, AS_ROOT);
    c1.ok(1000, &target, AS_USER);
    // Seen from the host through the overlay: shifted, as the lowers are.
    assert_eq!(
        owner(&env.ns.path(&target.join("file"))),
        (100000, 100000),
        "{what}"
    );
    assert_eq!(
        owner(&env.ns.path(&target.join("home/ufile"))),
        (101000, 101000),
        "{what}"
    );
    // Host root is not in the map: it cannot create a file there.
    let err = fs::write(env.ns.path(&target.join("by-host-root")), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOVERFLOW), "{what}: {err}");

    // On disk: the container's own ids.
    for name in [
        "file",
        "dir",
        "link",
        "hard",
        "fifo",
        "ldir",
        "ldir/new",
        "shared",
        "suid",
        "capped",
        "acl",
        "home/ufile",
    ] {
        let want = if name.starts_with("home/") {
            (1000, 1000)
        } else {
            (0, 0)
        };
        assert_eq!(owner(&disk.join(name)), want, "{what}: {name}");
    }
    for name in ["home", "home/udir", "home/ulink"] {
        assert_eq!(owner(&disk.join(name)), (1000, 1000), "{what}: {name}");
    }
    assert_eq!(
        fs::metadata(disk.join("hard")).unwrap().nlink(),
        2,
        "{what}"
    );
    assert_eq!(
        fs::metadata(disk.join("hard")).unwrap().ino(),
        fs::metadata(disk.join("file")).unwrap().ino(),
        "{what}"
    );
    assert!(
        fs::symlink_metadata(disk.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let whiteout = fs::symlink_metadata(disk.join("only-1")).unwrap();
    assert!(whiteout.file_type().is_char_device(), "{what}: no whiteout");
    assert_eq!(
        (whiteout.rdev(), whiteout.uid(), whiteout.gid()),
        (0, 0, 0),
        "{what}"
    );
    assert_eq!(
        host_tool(
            "getfattr",
            &["--only-values", "-n", "trusted.overlay.opaque"],
            &disk.join("ldir")
        ),
        "y",
        "{what}"
    );
    assert_eq!(
        fs::metadata(disk.join("suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o4755,
        "{what}"
    );
    assert!(
        host_tool("getcap", &[], &disk.join("capped")).contains("cap_net_raw=ep"),
        "{what}"
    );
    let acl = host_tool("getfacl", &["-n", "--omit-header"], &disk.join("acl"));
    assert!(
        acl.contains("user:1000:rw-") && acl.contains("group:1000:r--"),
        "{what}: {acl}"
    );
    assert_eq!(
        host_tool(
            "getfattr",
            &["--only-values", "-n", "user.foo"],
            &disk.join("file")
        ),
        "bar",
        "{what}"
    );
    // A tar of the upper is a portable layer: container ids only.
    let owners = tar_owners(&disk);
    assert_eq!(
        owners,
        BTreeSet::from(["0/0".to_string(), "1000/1000".to_string()]),
        "{what}"
    );
    drop(c1);
    env.ok(&["umount", s(&target)]);

    // Another map: the same files are the second container's own.
    let out = mount_idmapped_upper(env, strategy, layers, upper, work, &target, 200000);
    assert!(
        out.status.success(),
        "{what} (map 200000): {}",
        stderr(&out)
    );
    let c2 = ContainerIds::new(env, 200000);
    let seen = c2.ok(
        0,
        &target,
        "set -e
stat -c '%n %u:%g %a' file dir hard suid capped acl ldir ldir/new home home/ufile
test ! -e only-1
ls ldir
cat shared
getcap capped
getfacl -n --omit-header acl
getfattr --only-values -n user.foo file; echo",
    );
    for line in [
        "file 0:0 644",
        "dir 0:0 755",
        "suid 0:0 4755",
        "home 1000:1000 755",
        "home/ufile 1000:1000 644",
        "ldir/new 0:0 644",
        "capped cap_net_raw=ep",
        "user:1000:rw-",
        "group:1000:r--",
        "bar",
        "more",
    ] {
        assert!(
            seen.contains(line),
            "{what} (map 200000): no {line:?} in:\n{seen}"
        );
    }
    assert!(
        !seen.contains("inner"),
        "{what}: the opaque dir shows a lower entry:\n{seen}"
    );
    c2.ok(
        1000,
        &target,
        "echo again >> home/ufile && echo x > home/second",
    );
    assert_eq!(owner(&disk.join("home/second")), (1000, 1000), "{what}");
    assert_eq!(
        owner(&env.ns.path(&target.join("home/second"))),
        (201000, 201000),
        "{what}"
    );
    drop(c2);
    env.ok(&["umount", s(&target)]);
}

/// Makes `dir` root's and closed to others (0700), as containerd's
/// snapshot directory is: what --idmapped-upper wants above the upper.
pub fn close(dir: &Path) {
    std::os::unix::fs::chown(dir, Some(0), Some(0)).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
}

/// Two layers with a directory to remove in the bottom one, an upper and
/// a work directory in a directory closed to users (`store`, 0700).
fn fixture(env: &Env) -> (Vec<PathBuf>, PathBuf, PathBuf) {
    let layers = env.layers(2);
    fs::create_dir_all(layers[1].join("ldir")).unwrap();
    fs::write(layers[1].join("ldir/inner"), "i\n").unwrap();
    close(&env.mkdir("store"));
    (layers, env.mkdir("store/upper"), env.mkdir("store/work"))
}

/// The round trip on every strategy this kernel has, on the test's own
/// filesystem (filesystems.rs runs it on ext4, xfs, btrfs and tmpfs).
#[test]
fn container_writes_are_stored_with_container_ids() {
    for strategy in strategies() {
        let env = Env::new();
        let (layers, upper, work) = fixture(&env);
        let before = snapshot(&env.path("layers"));
        round_trip(&env, strategy, &layers, &upper, &work, "root fs");
        assert_eq!(
            snapshot(&env.path("layers")),
            before,
            "{strategy}: layers changed"
        );
        env.assert_clean();
    }
}

/// A refused mount: exit 1, one line saying `says`, nothing mounted,
/// nothing recorded, no mark left on the upper.
fn assert_refused_with(env: &Env, out: &Output, says: &str, upper: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(says), "{err}");
    assert!(env.our_mounts().is_empty(), "{:?}", env.our_mounts());
    assert_eq!(env.state_files("mounts"), Vec::<String>::new());
    assert!(!marked(upper), "a refused mount marked the upper");
}

fn marked(upper: &Path) -> bool {
    Command::new("getfattr")
        .args(["-n", "trusted.idmap-overlay.upper"])
        .arg(upper)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What the container stores as root is host root's on disk: an upper
/// directory that users other than root can reach by path (every directory
/// above it open to others, or a user's, or open to a user's group) is
/// refused; the same under a root directory closed to others is taken.
#[test]
fn an_upper_users_can_reach_is_refused() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    // The test's directory is open to all (0755): only the directories
    // below decide.
    assert_eq!(env.stat(&env.path("")).mode() & 0o777, 0o755);
    let cases: &[(&str, u32, u32, u32, bool)] = &[
        // (directory above upper and work, mode, owner uid, gid, closed?)
        ("open", 0o755, 0, 0, false),
        ("users", 0o700, 1000, 0, false),
        ("group", 0o750, 0, 1000, false),
        ("closed", 0o700, 0, 0, true),
        ("root-group", 0o750, 0, 0, true),
    ];
    for &(name, mode, uid, gid, closed) in cases {
        let above = env.mkdir(name);
        let (upper, work) = (
            env.mkdir(&format!("{name}/u")),
            env.mkdir(&format!("{name}/w")),
        );
        // A user's directory holds the user's own (the path rule refuses
        // root's directories below a user's before this one is asked).
        for dir in [&above, &upper, &work] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        }
        fs::set_permissions(&above, fs::Permissions::from_mode(mode)).unwrap();
        let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 100000);
        if closed {
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert!(marked(&upper), "{name}: not marked");
            env.ok(&["umount", s(&target)]);
        } else {
            assert_refused_with(
                &env,
                &out,
                &format!(
                    "--idmapped-upper: upperdir {} can be reached by users other than root",
                    upper.display()
                ),
                &upper,
            );
        }
    }
    // The workdir counts too.
    let upper = env.mkdir("closed/u2");
    let work = env.mkdir("open/w2");
    let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 100000);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("workdir {} can be reached", work.display())),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

/// The two ways of storing a container's files are never mixed in one
/// upper: shifted data (written without the flag, its root owned by a
/// host id of the map) is refused with it; an upper written with it is
/// refused without it. Each says which and why, and changes nothing.
#[test]
fn mixing_shifted_and_idmapped_uppers_is_refused() {
    let env = Env::new();
    let (layers, upper, work) = fixture(&env);
    let target = env.mkdir("mnt");
    // Shifted: the upper's root belongs to the container's root as host
    // uid 100000, as a plain mount of a userns container leaves it.
    std::os::unix::fs::chown(&upper, Some(100000), Some(100000)).unwrap();
    let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 100000);
    assert_refused_with(
        &env,
        &out,
        &format!(
            "--idmapped-upper: upperdir {} holds shifted data (its root is owned by host uid 100000",
            upper.display()
        ),
        &upper,
    );
    // A container id owns it: an idmapped upper, taken, and marked.
    std::os::unix::fs::chown(&upper, Some(0), Some(0)).unwrap();
    let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 100000);
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["umount", s(&target)]);
    assert!(marked(&upper));
    // Without the flag now: refused, the mark says why.
    let out = env.run(&mount_args_with(
        best(),
        &layers,
        &target,
        &["--upperdir", s(&upper), "--workdir", s(&work)],
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "upperdir {} was written with --idmapped-upper",
            upper.display()
        )),
        "{err}"
    );
    assert!(env.our_mounts().is_empty());
    // -o idmapped_upper, as an fstab line gives it, is the flag.
    let out = env.ok(&[
        "mount",
        "-o",
        &format!(
            "lowerdir={},upperdir={},workdir={},uidmap=0:100000:65536,idmapped_upper",
            join(&layers),
            s(&upper),
            s(&work)
        ),
        s(&target),
    ]);
    let id = out.trim();
    let record = json(&env.run(&["inspect", "--json", id]));
    let record = if record.is_array() {
        record[0].clone()
    } else {
        record
    };
    assert_eq!(record["idmapped_upper"], true, "{record}");
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// The flag needs something to idmap and someone to act as.
#[test]
fn idmapped_upper_needs_an_upper_and_a_container_root() {
    let env = Env::new();
    let (layers, upper, work) = fixture(&env);
    let target = env.mkdir("mnt");
    let out = env.run(&[
        "mount",
        "--idmapped-upper",
        "--lowerdir",
        &join(&layers),
        "--uidmap",
        "0:100000:65536",
        s(&target),
    ]);
    assert_refused_with(
        &env,
        &out,
        "--idmapped-upper needs an upperdir and a workdir",
        &upper,
    );
    // No container id 0 in the map: nobody for overlayfs to act as.
    let out = env.run(&[
        "mount",
        "--idmapped-upper",
        "--lowerdir",
        &join(&layers),
        "--upperdir",
        s(&upper),
        "--workdir",
        s(&work),
        "--uidmap",
        "1:100001:65535",
        s(&target),
    ]);
    assert_refused_with(&env, &out, "needs maps that map container id 0", &upper);
    env.assert_clean();
}

/// A work directory holding a file of an id outside the map (left by a
/// mount without the flag) makes overlayfs come up read-only, saying so
/// only in the kernel log: the mount is undone with a message, not
/// recorded as a writable overlay.
#[test]
fn a_read_only_result_is_undone() {
    for strategy in strategies() {
        let env = Env::new();
        let (layers, upper, work) = fixture(&env);
        let target = env.mkdir("mnt");
        let stale = env.mkdir("store/work/work");
        fs::write(stale.join("left"), "x").unwrap();
        std::os::unix::fs::chown(stale.join("left"), Some(100000), Some(100000)).unwrap();
        let out = mount_idmapped_upper(&env, strategy, &layers, &upper, &work, &target, 100000);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(32), "{strategy}: {err}");
        assert_eq!(err.lines().count(), 1, "{strategy}: {err}");
        assert!(err.contains("made the overlay at"), "{strategy}: {err}");
        assert!(err.contains("read-only"), "{strategy}: {err}");
        assert!(
            env.our_mounts().is_empty(),
            "{strategy}: {:?}",
            env.our_mounts()
        );
        assert!(
            !marked(&upper),
            "{strategy}: the failed mount left its mark"
        );
        env.assert_clean();
    }
}

/// A crash (SIGKILL) at every step of every strategy with an idmapped
/// upper: gc returns the host to clean, the writable idmapped tree
/// included, and the layers are untouched.
#[test]
fn crash_at_every_step_then_gc() {
    for strategy in strategies() {
        for &point in MOUNT_POINTS {
            let what = format!("{strategy}/{point}");
            let env = Env::new();
            let (layers, upper, work) = fixture(&env);
            let target = env.mkdir("mnt");
            let before = snapshot(&env.path("layers"));
            let out = env.run_at(
                &format!("{point}:kill"),
                &[
                    "mount",
                    "--idmapped-upper",
                    "--strategy",
                    strategy,
                    "--lowerdir",
                    &join(&layers),
                    "--upperdir",
                    s(&upper),
                    "--workdir",
                    s(&work),
                    "--uidmap",
                    "0:100000:65536",
                    s(&target),
                ],
            );
            if out.status.signal() != Some(9) {
                assert!(out.status.success(), "{what}: {}", stderr(&out));
                env.ok(&["umount", s(&target)]);
                continue;
            }
            let gc = env.run(&["gc"]);
            assert_eq!(gc.status.code(), Some(0), "{what}: {}", stderr(&gc));
            if point == "record-mounted" {
                // The mount had finished: the overlay stays, recorded.
                env.ok(&["umount", s(&target)]);
            }
            assert!(
                env.ns.mountinfo().iter().all(|m| !m.idmapped()),
                "{what}: an idmapped mount left"
            );
            env.assert_clean();
            assert_eq!(
                snapshot(&env.path("layers")),
                before,
                "{what}: layers changed"
            );
        }
    }
}

/// crun, a real OCI runtime: a container in a user namespace 0:100000
/// writes into its root (our overlay with an idmapped upper) and stops;
/// the upper holds its files with container ids; a second container under
/// 0:200000, on the same upper mounted with that map, owns them.
#[test]
fn a_real_oci_runtime_writes_and_another_map_reads() {
    let env = Env::new();
    let base = crate::containers::rootfs_layer(&env);
    close(&env.mkdir("store"));
    let (upper, work) = (env.mkdir("store/upper"), env.mkdir("store/work"));
    let target = env.mkdir("rootfs");
    crate::containers::cgroups_for_crun(&env);
    let crun_state = env.mkdir("crun-state");
    // Runs `script` with /bin/sh as root in a container under `host`.
    let run = |name: &str, host: u32, script: &str| {
        let bundle = env.mkdir(&format!("bundle-{name}"));
        let map = serde_json::json!([{"containerID": 0, "hostID": host, "size": 65536}]);
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "cwd": "/",
                "env": ["PATH=/bin"]
            },
            "root": {"path": s(&target), "readonly": false},
            "hostname": name,
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
        let out = env
            .ns
            .command("crun")
            .args(["--root", s(&crun_state), "--cgroup-manager=disabled"])
            .args(["run", "--bundle", s(&bundle), name])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "crun run {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    };
    let layers = [base];
    let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 100000);
    assert!(out.status.success(), "{}", stderr(&out));
    run(
        "c1",
        100000,
        "echo from-c1 > /written && [ -O /written ] && echo yes > /c1-owns-it",
    );
    env.ok(&["umount", s(&target)]);
    let disk = env.ns.path(&upper);
    assert_eq!(owner(&disk.join("written")), (0, 0));
    assert_eq!(
        fs::read_to_string(disk.join("c1-owns-it")).unwrap(),
        "yes\n"
    );

    let out = mount_idmapped_upper(&env, best(), &layers, &upper, &work, &target, 200000);
    assert!(out.status.success(), "{}", stderr(&out));
    run(
        "c2",
        200000,
        "[ -O /written ] && read x < /written && echo \"$x\" > /c2-read-its-own",
    );
    assert_eq!(
        fs::read_to_string(env.ns.path(&target.join("c2-read-its-own"))).unwrap(),
        "from-c1\n"
    );
    assert_eq!(
        owner(&env.ns.path(&target.join("written"))),
        (200000, 200000)
    );
    env.ok(&["umount", s(&target)]);
    assert_eq!(owner(&disk.join("c2-read-its-own")), (0, 0));
    env.assert_clean();
}
