//! Attacks by an ordinary user who owns directories on the paths the admin
//! passes (uid 65534 here: a user's home, a container's upperdir, a
//! target's parent). Such a user may rename, swap and symlink what they own
//! at any instant. The tool resolves every path once into a file
//! descriptor, refuses a path that user could redirect to somebody else's
//! files, mounts and unmounts only through descriptors, and so never acts
//! on anything but what it checked: the victim is never touched and the
//! record never lies.

use crate::support::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NOBODY: u32 = 65534;

/// A directory owned by uid 65534, mode 0755.
fn nobody_dir(env: &Env, rel: &str) -> PathBuf {
    let dir = env.mkdir(rel);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs `script` as uid/gid 65534 in the test's namespace.
fn as_nobody(env: &Env, script: &str) {
    let out = env
        .ns
        .command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        stderr(&out)
    );
}

/// The mounts the namespace has at exactly `path`, bottom first.
fn mounts_at(env: &Env, path: &Path) -> Vec<MountLine> {
    env.ns
        .mountinfo()
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect()
}

fn our_overlays(env: &Env) -> Vec<MountLine> {
    env.ns
        .mountinfo()
        .into_iter()
        .filter(|m| m.source.starts_with("idmap-overlay:"))
        .collect()
}

/// A user's symlink (or a symlink in a user's directory) that leads to
/// root's files is refused as the workdir: overlayfs would empty
/// `<workdir>/work` as root. No race needed, so none is used.
#[test]
fn a_users_symlink_cannot_redirect_the_workdir() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let victim = env.mkdir("victim");
    fs::create_dir(victim.join("work")).unwrap();
    fs::write(victim.join("work/precious"), "root's data\n").unwrap();
    let home = nobody_dir(&env, "home");
    nobody_dir(&env, "home/upper");
    nobody_dir(&env, "home/real");
    as_nobody(
        &env,
        &format!(
            "ln -s {0} {1}/w && ln -s ../victim {1}/rel && ln -s real {1}/own",
            s(&victim),
            s(&home)
        ),
    );
    let before = snapshot(&victim);
    for (workdir, refused) in [
        (home.join("w"), true),
        (home.join("rel"), true),
        (home.join("rel/work"), true),
        // The user's own symlink to the user's own directory is fine.
        (home.join("own"), false),
    ] {
        let mut args = mount_args("auto", &layers, &target);
        let tg = args.pop().unwrap();
        args.extend([
            "--upperdir".into(),
            s(&home.join("upper")).into(),
            "--workdir".into(),
            s(&workdir).into(),
            tg,
        ]);
        let out = env.run(&args);
        if refused {
            assert_eq!(out.status.code(), Some(1), "{workdir:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("refusing an unsafe path"),
                "{}",
                stderr(&out)
            );
            assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
            assert!(our_overlays(&env).is_empty());
        } else {
            assert!(out.status.success(), "{workdir:?}: {}", stderr(&out));
            env.ok(&["umount", s(&target)]);
        }
        assert_eq!(snapshot(&victim), before, "{workdir:?}: the victim changed");
    }
    env.assert_clean();
}

/// Swapping a parent of the target or of the upperdir after the tool
/// checked them (it is paused between check and mount): the overlay goes
/// only onto the directories that were checked, and since they moved, the
/// mount is undone and nothing is recorded. The victim, a root-owned
/// `rootfs` the swapped path now leads to, never gets a mount.
#[test]
fn swapping_a_parent_while_mounting_never_mounts_elsewhere() {
    for strategy in strategies() {
        for swapped in ["c", "u"] {
            let what = format!("{strategy}, {swapped} swapped");
            let env = Env::new();
            let layers = env.layers(2);
            let victim = env.mkdir("victim");
            let victim_rootfs = env.mkdir("victim/rootfs");
            fs::write(victim_rootfs.join("passwd"), "root's\n").unwrap();
            let home = nobody_dir(&env, "home");
            nobody_dir(&env, "home/c");
            let target = nobody_dir(&env, "home/c/rootfs");
            nobody_dir(&env, "home/u");
            nobody_dir(&env, "home/u/upper");
            nobody_dir(&env, "home/u/work");
            let args = mount_args_with(
                strategy,
                &layers,
                &target,
                &[
                    "--upperdir",
                    s(&home.join("u/upper")),
                    "--workdir",
                    s(&home.join("u/work")),
                ],
            );
            let before = snapshot(&victim);
            let paused = Paused::start(&env, "record-preparing:pause", &args);
            as_nobody(
                &env,
                &format!(
                    "cd {} && mv {swapped} {swapped}.old && ln -s {} {swapped}",
                    s(&home),
                    s(&victim)
                ),
            );
            let status = paused.resume();
            assert_eq!(status.code(), Some(32), "{what}");
            assert!(mounts_at(&env, &victim_rootfs).is_empty(), "{what}");
            assert!(our_overlays(&env).is_empty(), "{what}: an overlay stayed");
            assert_eq!(snapshot(&victim), before, "{what}: the victim changed");
            env.assert_clean();
        }
    }
}

/// A layer swapped for another directory after the check (here a
/// root-owned one the user keeps in their own directory): the tool reads
/// exactly the layer it checked, or refuses; never the swapped-in one.
#[test]
fn a_layer_swapped_after_the_check_is_never_read() {
    for strategy in strategies() {
        let env = Env::new();
        let home = nobody_dir(&env, "home");
        let l1 = nobody_dir(&env, "home/img/l1");
        let l2 = nobody_dir(&env, "home/img/l2");
        std::os::unix::fs::chown(home.join("img"), Some(NOBODY), Some(NOBODY)).unwrap();
        fs::write(l1.join("file"), "checked\n").unwrap();
        let stash = env.mkdir("home/stash");
        fs::write(stash.join("file"), "root's secret\n").unwrap();
        let target = env.mkdir("mnt");
        let paused = Paused::start(
            &env,
            "record-preparing:pause",
            &mount_args(strategy, &[l1.clone(), l2], &target),
        );
        // nobody owns img, so may exchange l1 with the stash they were given.
        fs::rename(&stash, home.join("img/stash")).unwrap();
        as_nobody(
            &env,
            &format!("cd {}/img && mv l1 l1.old && mv stash l1", s(&home)),
        );
        let status = paused.resume();
        match status.code() {
            Some(0) => {
                assert_eq!(env.read(&target.join("file")), "checked\n", "{strategy}");
                env.ok(&["umount", s(&target)]);
            }
            Some(32) => assert!(our_overlays(&env).is_empty(), "{strategy}"),
            other => panic!("{strategy}: exit {other:?}"),
        }
        env.assert_clean();
    }
}

/// renameat2(a, b, RENAME_EXCHANGE): swaps two directory entries at once.
/// Allocation-free, so a forked child may call it.
fn exchange(a: &CString, b: &CString) -> i64 {
    // SAFETY: two NUL-terminated paths that live across the call.
    unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    }
}

/// Exchanges two paths with renameat2(RENAME_EXCHANGE) in a loop, as uid
/// 65534, until dropped. A forked child of the test: it makes only raw
/// system calls.
struct Flipper {
    pid: libc::pid_t,
}

impl Flipper {
    fn start(a: &Path, b: &Path) -> Flipper {
        let a = CString::new(a.as_os_str().as_bytes()).unwrap();
        let b = CString::new(b.as_os_str().as_bytes()).unwrap();
        // SAFETY: the child only makes async-signal-safe system calls on
        // memory prepared before the fork, and never returns.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let ok = libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setresgid(NOBODY, NOBODY, NOBODY) == 0
                    && libc::setresuid(NOBODY, NOBODY, NOBODY) == 0;
                if !ok {
                    libc::_exit(1);
                }
                loop {
                    exchange(&a, &b);
                }
            }
            Flipper { pid }
        }
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        // SAFETY: our own child, killed and reaped once.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// How each trial of the race ends the overlay.
#[derive(Debug, Clone, Copy)]
enum Remover {
    /// `umount TARGET` while a process keeps the overlay busy (EBUSY
    /// retries until the timeout).
    BusyUmount,
    /// `umount TARGET` of an idle overlay.
    Umount,
    /// `gc` rolling back a mount that was killed after mounting.
    GcOfACrash,
}

/// The target's parent `p` is exchanged, over and over, with `q`, whose
/// `rootfs` is a symlink to somebody else's mount (a tmpfs). umount and gc
/// prove the overlay on a held directory and unmount through it, so the
/// other mount is never unmounted, and the record is gone exactly when
/// our overlay is.
#[test]
fn umount_and_gc_never_unmount_through_a_swapped_parent() {
    let env = Env::new();
    let layers = env.layers(2);
    let victim = env.mkdir("victim");
    sh(&env, &format!("mount -t tmpfs theirs {}", s(&victim)));
    let victim_id = mounts_at(&env, &victim)[0].id;
    // nobody owns `home`, so may exchange its entries `p` and `q`.
    nobody_dir(&env, "home");
    let p = nobody_dir(&env, "home/p");
    let target = nobody_dir(&env, "home/p/rootfs");
    let q = nobody_dir(&env, "home/q");
    as_nobody(&env, &format!("ln -s {} {}/rootfs", s(&victim), s(&q)));
    let p_ino = fs::metadata(&p).unwrap().ino();
    let put_p_back = || {
        if fs::metadata(&p).unwrap().ino() != p_ino {
            let a = CString::new(p.as_os_str().as_bytes()).unwrap();
            let b = CString::new(q.as_os_str().as_bytes()).unwrap();
            assert_eq!(exchange(&a, &b), 0);
        }
        assert_eq!(fs::metadata(&p).unwrap().ino(), p_ino);
    };
    // The flipper really flips.
    {
        let flipper = Flipper::start(&p, &q);
        let swapped = (0..100_000).any(|_| fs::metadata(&p).is_ok_and(|m| m.ino() != p_ino));
        drop(flipper);
        assert!(swapped, "the flipper never exchanged p and q");
        put_p_back();
    }
    let mut unmounted = 0;
    for remover in [Remover::BusyUmount, Remover::Umount, Remover::GcOfACrash] {
        for trial in 0..rounds(20) {
            let what = format!("{remover:?} trial {trial}");
            let args = mount_args(best(), &layers, &target);
            let id = match remover {
                Remover::GcOfACrash => {
                    let out = env.run_at("overlay-mounted:kill", &args);
                    assert_eq!(out.status.code(), None, "{what}: not killed");
                    let records = env.state_files("mounts");
                    assert_eq!(records.len(), 1, "{what}");
                    records[0].trim_end_matches(".json").to_string()
                }
                _ => env.ok(&args).trim().to_string(),
            };
            let holder =
                matches!(remover, Remover::BusyUmount).then(|| hold_busy(&env, &target, "30"));
            let flipper = Flipper::start(&p, &q);
            let out = match remover {
                Remover::GcOfACrash => env.run(&["gc", "--timeout", "100ms"]),
                _ => env.run(&["umount", "--timeout", "150ms", s(&target)]),
            };
            drop(flipper);
            if let Some(mut holder) = holder {
                let _ = holder.kill();
                let _ = holder.wait();
            }
            put_p_back();
            let victim_now: Vec<u64> = mounts_at(&env, &victim).iter().map(|m| m.id).collect();
            assert_eq!(
                victim_now,
                vec![victim_id],
                "{what}: their mount was touched: {}",
                stderr(&out)
            );
            let ours = our_overlays(&env);
            let record = env.state.join(format!("mounts/{id}.json"));
            assert_eq!(
                !ours.is_empty(),
                record.exists(),
                "{what}: the record lies ({:?}): {}",
                ours.iter().map(|m| &m.mount_point).collect::<Vec<_>>(),
                stderr(&out)
            );
            if ours.is_empty() {
                unmounted += 1;
            } else {
                assert_ne!(out.status.code(), Some(0), "{what}: success, yet mounted");
                env.ok(&["umount", &id]);
            }
            env.ok(&["gc"]);
            assert!(our_overlays(&env).is_empty(), "{what}");
            for sub in ["mounts", "tmp", "locks", "targets"] {
                assert!(env.state_files(sub).is_empty(), "{what}: state/{sub}");
            }
        }
    }
    // The race is real only if the tool got to unmount in some trials.
    assert!(unmounted > 0, "no trial ever unmounted the overlay");
    sh(&env, &format!("umount {}", s(&victim)));
}

/// The mount(8) helper sets `ro,nosuid,...` as it makes the overlay's
/// mount, never afterwards by path: a target swapped while it runs cannot
/// make it change another mount's flags.
#[test]
fn the_helper_never_changes_another_mounts_flags() {
    let env = Env::new();
    let layers = env.layers(2);
    let victim = env.mkdir("victim");
    let victim_rootfs = env.mkdir("victim/rootfs");
    sh(
        &env,
        &format!(
            "mount -t tmpfs -o rw,nosuid,nodev,noexec theirs {}",
            s(&victim_rootfs)
        ),
    );
    let victim_options = mounts_at(&env, &victim_rootfs)[0].options.clone();
    let home = nobody_dir(&env, "home");
    nobody_dir(&env, "home/c");
    let target = nobody_dir(&env, "home/c/rootfs");
    let helper = env.path("bin/mount.idmap-overlay");
    fs::create_dir_all(helper.parent().unwrap()).unwrap();
    symlink(BIN, &helper).unwrap();
    let mut cmd: Command = env.ns.command(s(&helper));
    cmd.args([
        "none",
        s(&target),
        "-o",
        &format!("ro,nosuid,lowerdir={},uidmap=0:100000:65536", join(&layers)),
    ])
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
    .env("IDMAP_OVERLAY_TESTPOINT", "overlay-mounted:pause")
    .stdin(Stdio::piped());
    let paused = Paused::spawn(cmd, "overlay-mounted:pause");
    as_nobody(
        &env,
        &format!("cd {} && mv c c.old && ln -s {} c", s(&home), s(&victim)),
    );
    let status = paused.resume();
    // The overlay was made ro,nosuid on the directory that was checked; it
    // moved along with its renamed parent, the victim kept its flags.
    assert!(status.success());
    assert_eq!(mounts_at(&env, &victim_rootfs).len(), 1);
    assert_eq!(mounts_at(&env, &victim_rootfs)[0].options, victim_options);
    let ours = our_overlays(&env);
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].mount_point, home.join("c.old/rootfs"));
    assert!(
        ours[0].options.starts_with("ro,nosuid"),
        "{}",
        ours[0].options
    );
    // The recorded target now passes through nobody's symlink: umount
    // refuses that path until the directory is back.
    let out = env.run(&["umount", s(&target)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("unsafe path"), "{}", stderr(&out));
    sh(&env, &format!("cd {} && rm c && mv c.old c", s(&home)));
    env.ok(&["umount", s(&target)]);
    sh(&env, &format!("umount {}", s(&victim_rootfs)));
    env.assert_clean();
}

/// A mount that fails after its overlay is attached unmounts it only once
/// proven to be the mount it made: a tmpfs stacked on the target meanwhile
/// stays, and so does the overlay under it, with its record for gc.
#[test]
fn the_rollback_unmounts_only_its_own_overlay() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let paused = Paused::start(
        &env,
        "temp-unmounted:pause,record-mounted:fail",
        &mount_args(best(), &layers, &target),
    );
    sh(&env, &format!("mount -t tmpfs stacked {}", s(&target)));
    let status = paused.resume();
    assert_ne!(status.code(), Some(0));
    let here = mounts_at(&env, &target);
    assert_eq!(here.len(), 2, "{here:?}");
    assert_eq!(here[1].source, "stacked", "the stacked tmpfs was unmounted");
    assert!(here[0].source.starts_with("idmap-overlay:"));
    assert_eq!(env.state_files("mounts").len(), 1, "the record was dropped");
    sh(&env, &format!("umount {}", s(&target)));
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// gc removes leftover temporary directories with rmdir only: a file in one
/// (planted, or data) stays, and gc says the directory is not empty.
#[test]
fn gc_never_deletes_inside_a_temp_dir() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let stray = env.state.join("tmp/stray");
    fs::create_dir(&stray).unwrap();
    fs::write(stray.join("data"), "keep me\n").unwrap();
    let out = env.run(&["gc"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("not empty"), "{said}");
    assert_eq!(fs::read_to_string(stray.join("data")).unwrap(), "keep me\n");
    fs::remove_file(stray.join("data")).unwrap();
    env.ok(&["gc"]);
    env.assert_clean();
}
