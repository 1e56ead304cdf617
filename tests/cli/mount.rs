use crate::support::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Mounts `n` layers with `strategy` and checks everything issue #2 asks:
/// mapped owners, layer order, writes landing in upperdir, no temporary
/// mount left, a clean umount, and untouched layers. On a kernel without
/// the strategy: its clear refusal.
fn mount_and_check(strategy: &str, n: usize) {
    let env = Env::new();
    let layers = env.layers(n);
    if !supported(strategy) {
        return assert_refused(&env, strategy, &layers, &env.mkdir("mnt"));
    }
    let before = snapshot(&env.path("layers"));
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("mnt");
    let id = env
        .ok(&mount_args_with(
            strategy,
            &layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ))
        .trim()
        .to_string();

    // Exactly one mount is left in our directory: the overlay, tagged.
    let mounts = env.our_mounts();
    assert_eq!(mounts.len(), 1, "{strategy}/{n}: {mounts:#?}");
    assert_eq!(mounts[0].mount_point, target);
    assert_eq!(mounts[0].fs_type, "overlay");
    assert_eq!(mounts[0].source, format!("idmap-overlay:{id}"));
    assert!(
        env.ns.mountinfo().iter().all(|m| !m.idmapped()),
        "an idmapped mount is attached"
    );
    assert_eq!(env.state_files("tmp"), Vec::<String>::new());

    // Owners are shifted: root's files appear as 100000, uid 1000's as 101000.
    let shared = env.stat(&target.join("shared"));
    assert_eq!((shared.uid(), shared.gid()), (100000, 100000));
    let user = env.stat(&target.join("user-file"));
    assert_eq!((user.uid(), user.gid()), (101000, 101000));
    // The top layer wins, every layer is visible.
    assert_eq!(env.read(&target.join("shared")), "0\n");
    for i in 0..n {
        assert_eq!(
            env.read(&target.join(format!("only-{i}"))),
            format!("{i}\n")
        );
    }
    // A write lands in upperdir.
    fs::write(env.ns.path(&target.join("new-file")), "hello").unwrap();
    assert_eq!(fs::read_to_string(upper.join("new-file")).unwrap(), "hello");

    // The record says what happened.
    let record: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(env.state.join(format!("mounts/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["state"], "mounted");
    assert_eq!(record["strategy"], strategy);
    assert_eq!(record["lowerdirs"].as_array().unwrap().len(), n);
    assert_eq!(record["mount_id"], mounts[0].id);

    env.ok(&["umount", s(&target)]);
    env.assert_clean();
    assert_eq!(snapshot(&env.path("layers")), before, "layer data changed");
}

#[test]
fn detached_1_layer() {
    mount_and_check("detached", 1);
}
#[test]
fn detached_2_layers() {
    mount_and_check("detached", 2);
}
#[test]
fn detached_50_layers() {
    mount_and_check("detached", 50);
}
#[test]
fn common_dir_1_layer() {
    mount_and_check("common-dir", 1);
}
#[test]
fn common_dir_2_layers() {
    mount_and_check("common-dir", 2);
}
#[test]
fn common_dir_50_layers() {
    mount_and_check("common-dir", 50);
}
#[test]
fn per_layer_1_layer() {
    mount_and_check("per-layer", 1);
}
#[test]
fn per_layer_2_layers() {
    mount_and_check("per-layer", 2);
}
#[test]
fn per_layer_50_layers() {
    mount_and_check("per-layer", 50);
}

/// Mounts `n` layers, reads the bottom one through the overlay, unmounts.
fn mount_many(strategy: &str, n: usize) {
    let env = Env::new();
    let layers = env.layers(n);
    let target = env.mkdir("mnt");
    if !supported(strategy) {
        return assert_refused(&env, strategy, &layers, &target);
    }
    env.ok(&mount_args(strategy, &layers, &target));
    let bottom = target.join(format!("only-{}", n - 1));
    assert_eq!(env.read(&bottom), format!("{}\n", n - 1));
    assert_eq!(env.stat(&bottom).uid(), 100000);
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// overlayfs's maximum, only possible with layers passed by fd.
#[test]
fn detached_500_layers() {
    mount_many("detached", 500);
}

/// `auto` picks `detached` where the kernel takes layers by fd, else
/// `common-dir`, as the probe says.
#[test]
fn auto_picks_what_the_kernel_has() {
    let env = Env::new();
    let layers = env.layers(3);
    let target = env.mkdir("mnt");
    let out = env.ok(&[
        "mount",
        "--json",
        "--lowerdir",
        &join(&layers),
        "--uidmap",
        "0:100000:65536",
        s(&target),
    ]);
    let record: serde_json::Value = serde_json::from_str(&out).unwrap();
    let features: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(env.state.join("features.json")).unwrap())
            .unwrap();
    assert_eq!(features["detached"], kernel().detached);
    assert_eq!(record["strategy"], best());
    env.ok(&["umount", record["id"].as_str().unwrap()]);
    env.assert_clean();
}

#[test]
fn two_uid_ranges_and_a_separate_gid_map() {
    for strategy in strategies() {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        // uid 0 -> 5000, uids 1..65536 -> 200001..; gids 0.. -> 300000..
        env.ok(&[
            "mount",
            "--strategy",
            strategy,
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:5000:1",
            "--uidmap",
            "1:200001:65535",
            "--gidmap",
            "0:300000:65536",
            s(&target),
        ]);
        let shared = env.stat(&target.join("shared"));
        assert_eq!((shared.uid(), shared.gid()), (5000, 300000), "{strategy}");
        let user = env.stat(&target.join("user-file"));
        assert_eq!((user.uid(), user.gid()), (201000, 301000), "{strategy}");
        env.ok(&["umount", s(&target)]);
        env.assert_clean();
    }
}

#[test]
fn containerd_option_string() {
    let env = Env::new();
    let layers = env.layers(3);
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("mnt");
    let opts = format!(
        "index=off,lowerdir={},upperdir={},workdir={},uidmap=0:100000:1,1:200001:65535,gidmap=0:100000:65536,volatile",
        join(&layers),
        s(&upper),
        s(&work)
    );
    let id = env
        .ok(&["mount", "-o", &opts, s(&target)])
        .trim()
        .to_string();
    let overlay = env
        .our_mounts()
        .into_iter()
        .find(|m| m.mount_point == target)
        .unwrap();
    // A flag passed through to overlayfs shows in its options.
    assert!(
        overlay.super_options.contains("volatile"),
        "{}",
        overlay.super_options
    );
    assert_eq!(env.stat(&target.join("user-file")).uid(), 201000);
    assert_eq!(env.stat(&target.join("user-file")).gid(), 101000);
    env.ok(&["umount", &id]);
    env.assert_clean();
}

#[test]
fn read_only_overlay() {
    for strategy in strategies() {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        env.ok(&mount_args(strategy, &layers, &target));
        let err = fs::write(env.ns.path(&target.join("x")), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{strategy}");
        env.ok(&["umount", s(&target)]);
        env.assert_clean();
    }
}

#[test]
fn maps_of_an_existing_user_namespace() {
    let env = Env::new();
    // A user namespace of our own: unshare -U keeps it alive in `sleep`.
    let mut holder = std::process::Command::new("unshare")
        .args(["-U", "--", "sleep", "infinity"])
        .spawn()
        .unwrap();
    let pid = holder.id();
    let ns = PathBuf::from(format!("/proc/{pid}/ns/user"));
    for _ in 0..500 {
        if fs::read_link(&ns).unwrap() != fs::read_link("/proc/self/ns/user").unwrap() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    fs::write(format!("/proc/{pid}/uid_map"), "0 400000 65536\n").unwrap();
    fs::write(format!("/proc/{pid}/setgroups"), "deny").unwrap();
    fs::write(format!("/proc/{pid}/gid_map"), "0 500000 65536\n").unwrap();

    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.ok(&[
        "mount",
        "--json",
        "--lowerdir",
        &join(&layers),
        "--userns",
        s(&ns),
        s(&target),
    ]);
    let user = env.stat(&target.join("user-file"));
    assert_eq!((user.uid(), user.gid()), (401000, 501000));
    let record: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["uidmap"][0]["host"], 400000);
    assert_eq!(record["gidmap"][0]["host"], 500000);
    env.ok(&["umount", s(&target)]);
    env.assert_clean();

    // A bind mount of the namespace file works the same (the maps are read
    // by joining it, not from /proc/PID).
    holder.kill().unwrap();
    holder.wait().unwrap();
}

/// `--userns /proc/PID/ns/user` of a container that exited names whatever
/// took its pid: a user's namespace, with a map of the user's choosing,
/// is refused (exit 1, naming its owner) unless `--userns-owner` says that
/// owner is meant.
#[test]
fn a_users_user_namespace_is_refused_unless_its_owner_is_named() {
    let env = Env::new();
    let user = Started(
        std::process::Command::new("setpriv")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .args([
                "unshare",
                "-U",
                "--map-user=0",
                "--map-group=0",
                "--",
                "sleep",
                "infinity",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = user.pid();
    let ns = PathBuf::from(format!("/proc/{pid}/ns/user"));
    for _ in 0..500 {
        if fs::read_to_string(format!("/proc/{pid}/uid_map")).is_ok_and(|m| m.contains("65534")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let args = |extra: &[&str]| {
        let mut args = vec!["mount", "--lowerdir", &join(&layers), "--userns", s(&ns)]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(s(&target).to_string());
        args
    };
    let out = env.run(&args(&[]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("created by uid 65534"),
        "{}",
        stderr(&out)
    );
    assert!(env.our_mounts().is_empty());
    let out = env.run(&args(&["--userns-owner", "1000"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    env.ok(&args(&["--userns-owner", "65534"]));
    // On disk 1000, outside the one-id map: shown as the overflow uid.
    let file = env.stat(&target.join("user-file"));
    assert_eq!(file.uid(), 65534);
    env.ok(&["umount", s(&target)]);
    drop(user);
    env.assert_clean();
}

#[test]
fn a_layer_that_is_a_mountpoint_is_read_from_its_own_mount() {
    for strategy in ["detached", "common-dir"]
        .into_iter()
        .filter(|s| supported(s))
    {
        let env = Env::new();
        let layers = env.layers(3);
        // The middle layer gets a tmpfs mounted on it, with its own files;
        // a clone of the common parent would show the directory underneath.
        // (Where tmpfs takes no idmap, before 6.3: a bind mount of an empty
        // directory.)
        let mount = if kernel().idmapped_tmpfs {
            "mount -t tmpfs none".to_string()
        } else {
            format!("mount --bind {}", s(&env.mkdir("elsewhere")))
        };
        let status = env
            .ns
            .command("sh")
            .args([
                "-c",
                &format!(
                    "{mount} {0} && echo tmpfs > {0}/only-1 && echo tmpfs > {0}/from-tmpfs",
                    s(&layers[1])
                ),
            ])
            .status()
            .unwrap();
        assert!(status.success());
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
        assert_eq!(
            env.read(&target.join("from-tmpfs")),
            "tmpfs\n",
            "{strategy}"
        );
        assert_eq!(env.read(&target.join("only-1")), "tmpfs\n", "{strategy}");
        assert_eq!(env.stat(&target.join("from-tmpfs")).uid(), 100000);
        let record: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            record["idmapped_dirs"].as_array().unwrap().len(),
            2,
            "{strategy}: {record}"
        );
        env.ok(&["umount", s(&target)]);
        // Only the test's tmpfs is left.
        assert_eq!(env.our_mounts().len(), 1);
    }
}

/// A forced failure at every step of every strategy leaves nothing behind.
#[test]
fn failure_at_any_step_rolls_back() {
    let mut reached_points = std::collections::BTreeSet::new();
    for strategy in strategies() {
        for &point in MOUNT_POINTS {
            let env = Env::new();
            let layers = env.layers(3);
            let before = snapshot(&env.path("layers"));
            let upper = env.mkdir("upper");
            let work = env.mkdir("work");
            let target = env.mkdir("mnt");
            let out = env.run_at(
                &format!("{point}:fail"),
                &mount_args_with(
                    strategy,
                    &layers,
                    &target,
                    &["--upperdir", s(&upper), "--workdir", s(&work)],
                ),
            );
            let reached = stderr(&out).contains("forced failure");
            if !reached {
                // Points of the other strategies (tree-open is detached
                // only, temp-* attached only) are simply not on this path.
                assert!(out.status.success(), "{strategy}/{point}: {}", stderr(&out));
                env.ok(&["umount", s(&target)]);
            } else {
                reached_points.insert(point);
                assert!(!out.status.success());
                assert_eq!(
                    stderr(&out).lines().count(),
                    1,
                    "{strategy}/{point}: {}",
                    stderr(&out)
                );
            }
            env.assert_clean();
            assert_eq!(snapshot(&env.path("layers")), before);
        }
    }
    // Every point is on some strategy's path.
    assert_eq!(
        reached_points.len(),
        reachable_mount_points().len(),
        "{reached_points:?}"
    );
}

/// `kcmp(a, b, KCMP_FILES, 0, 0)`: 0 when the two processes share one fd
/// table (kcmp(2)).
fn same_fd_table(a: u32, b: u32) -> i64 {
    const KCMP_FILES: i32 = 2;
    // SAFETY: kcmp only compares kernel objects of the two pids; no memory
    // is passed.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) };
    assert!(ret >= 0, "kcmp: {}", std::io::Error::last_os_error());
    ret
}

/// The namespace helper shares our fd table (CLONE_FILES): while it lives,
/// it holds no copy of the fds the tool has open on layers and target, so
/// it can pin no mount (containerd#12139), and it is gone once the tool has
/// its namespace.
#[test]
fn userns_helper_holds_no_fds_and_is_reaped() {
    for strategy in strategies() {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        let paused = Paused::start(
            &env,
            "userns-helper:pause",
            &mount_args(strategy, &layers, &target),
        );
        let helper = paused.value("helper");
        let tool = paused.value("pid");
        // It is a live child of the tool, in a user namespace of its own.
        let status = fs::read_to_string(format!("/proc/{helper}/status")).unwrap();
        assert!(status.contains(&format!("PPid:\t{tool}\n")), "{status}");
        assert_ne!(
            fs::read_link(format!("/proc/{helper}/ns/user")).unwrap(),
            fs::read_link("/proc/self/ns/user").unwrap()
        );
        // It shares the tool's fd table (kcmp KCMP_FILES says 0: the same
        // table), so the fds the tool holds on the layers and the target
        // are not copied: the helper adds no reference of its own.
        assert_eq!(
            same_fd_table(tool, helper),
            0,
            "the helper has an fd table of its own"
        );
        assert!(paused.resume().success());
        assert!(
            !PathBuf::from(format!("/proc/{helper}")).exists(),
            "helper {helper} still exists"
        );
        env.ok(&["umount", s(&target)]);
        env.assert_clean();
    }
}

#[test]
fn helper_dies_with_a_killed_tool() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let paused = Paused::start(
        &env,
        "userns-helper:pause",
        &[
            "mount",
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:100000:65536",
            s(&target),
        ],
    );
    let helper = paused.value("helper");
    let mut child = paused.child;
    child.kill().unwrap();
    child.wait().unwrap();
    // PR_SET_PDEATHSIG: the kernel kills it as soon as its parent is gone
    // (it may linger as a zombie until whoever inherited it reaps it).
    for _ in 0..500 {
        match fs::read_to_string(format!("/proc/{helper}/status")) {
            Err(_) => return,
            Ok(status) if status.contains("State:\tZ") => return,
            Ok(_) => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("helper {helper} outlived the killed tool");
}

/// The attached strategies name each layer by the number of the fd that
/// holds it, from a thread whose working directory is /proc/self/fd: even
/// overlayfs's maximum fits in mount(2)'s one page of options.
#[test]
fn common_dir_500_layers() {
    mount_many("common-dir", 500);
}

/// Bad input is refused before the state directory is touched: on a first
/// use nothing at all is created.
#[test]
fn bad_input_on_first_use_creates_nothing() {
    let env = Env::new();
    let target = env.mkdir("mnt");
    let missing = env.path("no-such-layer");
    let out = env.run(&mount_args("auto", &[missing.clone(), missing], &target));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!env.state.exists(), "the state directory was created");
}

/// A map that shows a non-root on-disk id as host root needs
/// --allow-host-root; an identity map for root is fine without.
#[test]
fn host_root_maps_need_to_be_asked_for() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let map = |uidmap: &str, extra: &[&str]| {
        let mut args = vec!["mount", "--lowerdir"];
        let joined = join(&layers);
        args.push(&joined);
        args.extend(["--uidmap", uidmap]);
        args.extend(extra);
        args.push(s(&target));
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let refused = env.run(&map("0:100000:1000,1000:0:1", &[]));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(env.our_mounts().is_empty());
    env.ok(&map("0:100000:1000,1000:0:1", &["--allow-host-root"]));
    // user-file is owned by 1000 on disk: host root through the mount.
    assert_eq!(env.stat(&target.join("user-file")).uid(), 0);
    env.ok(&["umount", s(&target)]);
    env.ok(&map("0:0:1,1:100000:65535", &[]));
    assert_eq!(env.stat(&target.join("shared")).uid(), 0);
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// The kernel reads a map in one write of under a page: the largest map
/// text it takes (4095 bytes) mounts; one byte more is a usage error, not a
/// bare "Invalid argument".
#[test]
fn the_largest_map_the_kernel_takes_and_the_first_it_refuses() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    // 170 lines of 24 bytes ("1000000000 2000000000 1\n"), then one of 15
    // or 16 bytes: 4095 or 4096 bytes of uid_map text.
    let args_with_map = |last_host: u32| {
        let mut ranges: Vec<String> = (0..170)
            .map(|i| format!("{}:{}:1", 1_000_000_000 + i, 2_000_000_000 + i))
            .collect();
        ranges.push(format!("4000000:{last_host}:1"));
        let mut args = mount_args("auto", &layers, &target);
        let at = args.iter().position(|a| a == "0:100000:65536").unwrap();
        args[at] = ranges.join(",");
        args
    };
    env.ok(&args_with_map(5000));
    env.ok(&["umount", s(&target)]);
    let args = args_with_map(50000);
    let out = env.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("at most 4095"), "{}", stderr(&out));
    env.assert_clean();
}

/// A bug (a panic) unwinds through the rollback: nothing stays mounted or
/// recorded, and the tool says so on one line and exits 4.
#[test]
fn a_panic_rolls_back_and_exits_4() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.run_at(
        "overlay-mounted:panic",
        &mount_args(best(), &layers, &target),
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("idmap-overlay: internal error: "), "{err}");
    assert!(err.contains("(please report)"), "{err}");
    env.assert_clean();
}

/// The mount table names the overlay's directories by their paths wherever
/// no user but root can redirect them (findmnt and every other program then
/// show where the overlay is), and by fd number where a user could (their
/// directory in the path): never a path the kernel would look up again
/// after a user changed it. The detached strategy hands the upper and work
/// directories over as fds, which the kernel shows by their paths.
#[test]
fn the_mount_table_shows_real_paths_where_that_is_safe() {
    for strategy in strategies() {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        let (upper, work) = (env.mkdir("c1/upper"), env.mkdir("c1/work"));
        env.ok(&mount_args_with(
            strategy,
            &layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ));
        let ours = env.our_mounts();
        let options = &ours[0].super_options;
        assert!(
            options.contains(&format!("upperdir={}", s(&upper)))
                && options.contains(&format!("workdir={}", s(&work))),
            "{strategy}: {options}"
        );
        if strategy != "detached" {
            // Layers through their temporary mountpoints, by path.
            let temp = env.state.join("tmp");
            assert!(
                options.contains(&format!("lowerdir={}/", temp.display())),
                "{strategy}: {options}"
            );
        }
        env.ok(&["umount", s(&target)]);

        // The same under a directory of uid 65534, who could rename it.
        let home = env.mkdir("home");
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
        let (upper, work) = (env.mkdir("home/upper"), env.mkdir("home/work"));
        for dir in [&upper, &work] {
            std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
        }
        env.ok(&mount_args_with(
            strategy,
            &layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ));
        let options = env.our_mounts()[0].super_options.clone();
        if strategy == "detached" {
            // Handed over by fd: the kernel names the directory it got.
            assert!(
                options.contains(&format!("upperdir={}", s(&upper))),
                "{options}"
            );
        } else {
            assert!(
                !options.contains(s(&upper)) && !options.contains(s(&work)),
                "{strategy}: a user's path went to the kernel as text: {options}"
            );
        }
        env.ok(&["umount", s(&target)]);
        env.assert_clean();
    }
}
