use crate::support::*;
use serde_json::Value;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

/// What `inspect --leaks` lists; its exit status says whether it listed
/// anything (3) or not (0).
fn leaks(env: &Env) -> Vec<Value> {
    let out = env.run(&["inspect", "--leaks", "--json"]);
    let found = json(&out)["leaks"].as_array().unwrap().clone();
    let expected = if found.is_empty() { 0 } else { 3 };
    assert_eq!(out.status.code(), Some(expected), "{}", stderr(&out));
    found
}

/// After gc: either nothing at all, or exactly one healthy mounted overlay
/// with its record (and its lock file), and no temporary anything.
fn assert_clean_or_mounted(env: &Env, target: &Path, what: &str) {
    assert!(
        env.ns.mountinfo().iter().all(|m| !m.idmapped()),
        "{what}: idmapped mount left"
    );
    assert_eq!(
        env.state_files("tmp"),
        Vec::<String>::new(),
        "{what}: temp dirs left"
    );
    let records = env.state_files("mounts");
    let mounts = env.our_mounts();
    if records.is_empty() {
        assert!(
            mounts.is_empty(),
            "{what}: mount without record: {mounts:?}"
        );
        assert_eq!(env.state_files("locks"), Vec::<String>::new(), "{what}");
    } else {
        assert_eq!(records.len(), 1, "{what}: {records:?}");
        assert_eq!(mounts.len(), 1, "{what}: {mounts:?}");
        assert_eq!(mounts[0].mount_point, target);
        let out = env.run(&["inspect", "--json"]);
        let view = &json(&out)["mounts"][0];
        assert_eq!(view["state"], "mounted", "{what}");
        assert_eq!(view["health"]["mounted"], true, "{what}");
        assert_eq!(view["mount_id"], mounts[0].id, "{what}");
    }
}

/// Crash `mount` (SIGKILL) at every step of every strategy: inspect sees the
/// leak, gc cleans it, and the layers are untouched.
#[test]
fn crash_at_every_mount_step() {
    let mut reached_points = std::collections::BTreeSet::new();
    for strategy in strategies() {
        for &point in MOUNT_POINTS {
            let what = format!("{strategy}/{point}");
            let env = Env::new();
            let layers = env.layers(3);
            let before = snapshot(&env.path("layers"));
            let (upper, work, target) = (env.mkdir("upper"), env.mkdir("work"), env.mkdir("mnt"));
            let out = env.run_at(
                &format!("{point}:kill"),
                &mount_args_with(
                    strategy,
                    &layers,
                    &target,
                    &["--upperdir", s(&upper), "--workdir", s(&work)],
                ),
            );
            if out.status.signal() != Some(9) {
                assert!(out.status.success(), "{what}: {}", stderr(&out));
                continue; // not a step of this strategy
            }
            reached_points.insert(point);
            let found = leaks(&env);
            if point == "record-mounted" {
                assert!(
                    found.is_empty(),
                    "{what}: a finished mount is no leak: {found:?}"
                );
            } else {
                assert!(!found.is_empty(), "{what}: inspect --leaks saw nothing");
            }
            let gc = env.run(&["gc", "--json"]);
            assert_eq!(gc.status.code(), Some(0), "{what}: {}", stderr(&gc));
            assert_eq!(
                json(&gc)["cleaned"].as_array().unwrap().len(),
                found.len(),
                "{what}"
            );
            assert_clean_or_mounted(&env, &target, &what);
            assert!(leaks(&env).is_empty(), "{what}: still leaking after gc");
            assert_eq!(
                snapshot(&env.path("layers")),
                before,
                "{what}: layer data changed"
            );
        }
    }
    assert_eq!(
        reached_points.len(),
        reachable_mount_points().len(),
        "{reached_points:?}"
    );
}

#[test]
fn crash_at_every_umount_step() {
    for strategy in strategies() {
        for &point in UMOUNT_POINTS {
            let what = format!("{strategy}/{point}");
            let env = Env::new();
            let layers = env.layers(2);
            let target = env.mkdir("mnt");
            env.ok(&mount_args(strategy, &layers, &target));
            let out = env.run_at(&format!("{point}:kill"), &["umount", s(&target)]);
            assert_eq!(out.status.signal(), Some(9), "{what}: {}", stderr(&out));
            let found = leaks(&env);
            assert_eq!(found.len(), 1, "{what}: {found:?}");
            assert_eq!(found[0]["kind"], "crashed-operation");
            assert_eq!(env.run(&["gc"]).status.code(), Some(0));
            // The admin asked for the unmount: gc finishes it.
            env.assert_clean();
        }
    }
}

/// Leaves a temporary idmapped mount behind: common-dir killed right after
/// attaching it. Returns its path.
fn leaked_temp_mount(env: &Env) -> PathBuf {
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.run_at(
        "temp-mounted:kill",
        &mount_args("common-dir", &layers, &target),
    );
    assert_eq!(out.status.signal(), Some(9));
    let temp: Vec<_> = env
        .our_mounts()
        .into_iter()
        .filter(|m| m.idmapped())
        .collect();
    assert_eq!(temp.len(), 1);
    temp[0].mount_point.clone()
}

#[test]
fn gc_retries_a_briefly_busy_temp_mount() {
    let env = Env::new();
    let temp = leaked_temp_mount(&env);
    let mut holder = hold_busy(&env, &temp, "0.3");
    let out = env.run(&["gc", "--timeout", "5s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    holder.wait().unwrap();
    env.assert_clean();
}

#[test]
fn gc_reports_a_temp_mount_busy_for_good() {
    let env = Env::new();
    let temp = leaked_temp_mount(&env);
    let mut holder = hold_busy(&env, &temp, "60");
    let out = env.run(&["gc", "--json", "--timeout", &walk_timeout(300)]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let report = json(&out);
    let reason = report["failed"][0]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains(&format!("pid {}", holder.id())), "{reason}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    env.assert_clean();
}

#[test]
fn foreign_leaks_are_listed_and_removed_only_with_foreign() {
    let env = Env::new();
    let temp = leaked_temp_mount(&env);
    // Make it look like containerd's: move the idmapped mount under a fake
    // tmpmounts directory, then let gc clean what is left of ours.
    let tmpmounts = env.mkdir("containerd/tmpmounts");
    let leak = env.mkdir("containerd/tmpmounts/ovl-idmapped123");
    assert!(
        env.ns
            .command("mount")
            .args(["--move", s(&temp), s(&leak)])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    assert_eq!(env.state_files("mounts"), Vec::<String>::new());

    let found = leaks(&env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], "foreign-mount");
    assert_eq!(found[0]["path"], s(&leak));
    // Plain gc leaves other programs' mounts alone; so does a young one.
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    let young = env.run(&["gc", "--json", "--foreign", s(&tmpmounts)]);
    assert_eq!(json(&young)["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(env.our_mounts().len(), 1);
    // Old enough (or --min-age 0): removed.
    let out = env.run(&["gc", "--json", "--foreign", s(&tmpmounts), "--min-age", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["cleaned"][0]["kind"], "foreign-mount");
    assert!(env.our_mounts().is_empty());
    assert!(leaks(&env).is_empty());
}

/// The kernel keeps no mount times: a foreign mount's age counts from the
/// first real gc that saw it. `inspect` and `gc --dry-run` read those times
/// but never write them, so they never start the clock.
#[test]
fn a_foreign_mounts_age_counts_from_the_first_real_gc() {
    let env = Env::new();
    let temp = leaked_temp_mount(&env);
    let tmpmounts = env.mkdir("containerd/tmpmounts");
    let leak = env.mkdir("containerd/tmpmounts/ovl-idmapped7");
    assert!(
        env.ns
            .command("mount")
            .args(["--move", s(&temp), s(&leak)])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    // As if no gc had seen it yet.
    let seen = env.state.join("foreign-seen.json");
    fs::remove_file(&seen).unwrap();
    let dry_run = |min_age: &str| {
        let out = env.run(&[
            "gc",
            "--dry-run",
            "--json",
            "--foreign",
            s(&tmpmounts),
            "--min-age",
            min_age,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        json(&out)
    };
    for _ in 0..2 {
        assert_eq!(leaks(&env).len(), 1);
        assert_eq!(dry_run("1s")["skipped"].as_array().unwrap().len(), 1);
        assert!(!seen.exists(), "a look remembered the foreign mount");
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    // Two seconds after inspect and a dry run first saw it: still young,
    // for the first real gc too, which starts the clock.
    let out = env.run(&[
        "gc",
        "--json",
        "--foreign",
        s(&tmpmounts),
        "--min-age",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let skipped = &json(&out)["skipped"];
    assert_eq!(skipped.as_array().unwrap().len(), 1, "{skipped}");
    assert!(seen.exists());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let would = dry_run("1s");
    assert_eq!(would["cleaned"][0]["kind"], "foreign-mount", "{would}");
    let out = env.run(&["gc", "--foreign", s(&tmpmounts), "--min-age", "1s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(env.our_mounts().is_empty());
}

#[test]
fn gc_never_touches_operations_in_flight() {
    let env = Env::new();
    let layers = env.layers(3);
    let lowerdir = join(&layers);
    // 50 at once wait for the state lock in turn, with gc between them;
    // under emulation not all got it within a minute: a quarter there.
    let n = rounds(50);
    let targets: Vec<PathBuf> = (0..n).map(|i| env.mkdir(&format!("mnt/{i}"))).collect();
    let strategies = strategies();
    let mut mounts: Vec<std::process::Child> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            env.tool(&[
                "mount",
                "--strategy",
                strategies[i % strategies.len()],
                "--lowerdir",
                &lowerdir,
                "--uidmap",
                "0:100000:65536",
                "--timeout",
                "60s",
                s(t),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    // gc runs over and over for as long as any mount is still running.
    let mut gc_runs = 0;
    while !mounts.iter_mut().all(|m| m.try_wait().unwrap().is_some()) {
        let out = env.run(&["gc", "--json", "--timeout", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let report = json(&out);
        assert_eq!(
            report["cleaned"],
            serde_json::json!([]),
            "gc removed something in flight"
        );
        gc_runs += 1;
    }
    for m in mounts {
        let out = m.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(gc_runs >= 1, "gc never ran beside the mounts");
    assert_eq!(env.state_files("mounts").len(), n);
    assert_eq!(env.our_mounts().len(), n);
    assert!(env.ns.mountinfo().iter().all(|m| !m.idmapped()));
    assert!(leaks(&env).is_empty());
}

#[test]
fn stale_records_and_files_are_removed() {
    let env = Env::new();
    let (target, id) = env.mounted();
    // Someone unmounts the overlay behind our back; a crash left files.
    env.plain_umount(&target);
    std::fs::write(env.state.join("mounts/.gone.json.4242.0.tmp"), "{").unwrap();
    std::fs::write(env.state.join("locks/gone.lock"), "").unwrap();
    std::fs::create_dir_all(env.state.join("tmp/gone/0")).unwrap();
    let found = leaks(&env);
    let kinds: Vec<&str> = found.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["vanished-overlay", "temp-dir", "stale-file", "stale-file"],
        "{found:?}"
    );
    assert_eq!(found[0]["id"], id);
    let dry = env.run(&["gc", "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stdout).contains("would clean: vanished-overlay"));
    assert_eq!(
        env.state_files("mounts").len(),
        2,
        "dry run removed something"
    );
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    env.assert_clean();
}

#[test]
fn corrupt_records_are_reported_and_left_alone() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    for (name, text) in [
        ("empty.json", ""),
        ("broken.json", "{\"version\": 1, \"id\""),
        ("future.json", "{\"version\": 99}"),
    ] {
        std::fs::write(env.state.join("mounts").join(name), text).unwrap();
    }
    let found = leaks(&env);
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|f| f["kind"] == "bad-record"));
    // A dry run does nothing, so nothing fails: it says gc leaves them,
    // exit 0, and its metrics count no failure (they did: exit 64,
    // `failed: bad-record`).
    let metrics = env.mkdir("metrics").join("gc.prom");
    let dry = env.run(&["gc", "--dry-run", "--metrics-file", s(&metrics)]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let said = String::from_utf8_lossy(&dry.stdout).into_owned();
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    for (line, name) in lines.iter().zip(["broken", "empty", "future"]) {
        let path = env.state.join(format!("mounts/{name}.json"));
        assert!(
            line.starts_with(&format!("would leave alone: bad-record {} (", s(&path))),
            "{said}"
        );
    }
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("\nidmap_overlay_gc_failed{kind=\"bad-record\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("\nidmap_overlay_leaks{kind=\"bad-record\"} 3\n"),
        "{text}"
    );
    let dry = json(&env.run(&["gc", "--dry-run", "--json"]));
    assert_eq!(dry["failed"], serde_json::json!([]), "{dry}");
    assert_eq!(dry["skipped"].as_array().unwrap().len(), 3, "{dry}");
    // gc itself still fails on them: a person must look.
    let out = env.run(&["gc", "--json"]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(json(&out)["failed"].as_array().unwrap().len(), 3);
    assert_eq!(
        env.state_files("mounts").len(),
        3,
        "gc must not delete what it cannot read"
    );
}

/// A temporary mount that stayed busy while `mount` finished leaves a
/// healthy overlay and a leaked temp mount: gc removes the temp mount only.
#[test]
fn gc_keeps_a_healthy_overlay_whose_temp_mount_leaked() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let args = mount_args_with("common-dir", &layers, &target, &["--timeout", "100ms"]);
    let paused = Paused::start(&env, "overlay-mounted:pause", &args);
    let temp = env.our_mounts().into_iter().find(|m| m.idmapped()).unwrap();
    let mut holder = hold_busy(&env, &temp.mount_point, "60");
    assert!(paused.resume().success());

    let found = leaks(&env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], "temp-mount");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = env.run(&["gc", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The overlay and its record are untouched and healthy.
    assert!(env.ns.mountinfo().iter().all(|m| !m.idmapped()));
    assert_eq!(env.state_files("tmp"), Vec::<String>::new());
    assert_eq!(env.our_mounts().len(), 1);
    let view = &json(&env.run(&["inspect", "--json"]))["mounts"][0];
    assert_eq!(view["state"], "mounted");
    assert_eq!(view["health"]["mounted"], true);
    assert_eq!(view["health"]["leaked"], false);
    assert_eq!(env.read(&target.join("shared")), "0\n");
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// A failure after the overlay is mounted, while something keeps it busy:
/// the rollback cannot unmount it, so the `preparing` record stays (never an
/// overlay without a record), and gc finishes the job once it is free.
#[test]
fn a_rollback_that_cannot_unmount_leaves_the_record_for_gc() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let args = mount_args_with(best(), &layers, &target, &["--timeout", "100ms"]);
    let paused = Paused::start(&env, "overlay-mounted:pause,overlay-mounted:fail", &args);
    let mut holder = hold_busy(&env, &target, "60");
    let status = paused.resume();
    assert_eq!(status.code(), Some(2), "the forced failure");
    assert_eq!(env.our_mounts().len(), 1, "the overlay stays");
    let found = leaks(&env);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], "crashed-operation");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    env.assert_clean();
}

/// A user who owns a directory under a `--foreign` directory (or the
/// `--foreign` directory itself) can move there, by renaming a directory
/// of theirs that holds it, an idmapped mount that is not theirs: gc
/// leaves it alone (exit 64, saying why), whatever its age. The same
/// mount under root's own tree is removed.
#[test]
fn gc_never_unmounts_what_a_user_could_have_moved_under_foreign() {
    let env = Env::new();
    let temp = leaked_temp_mount(&env);
    let home = env.mkdir("home");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let leaks_dir = env.mkdir("home/leaks");
    let theirs = env.mkdir("home/x");
    for dir in [&leaks_dir, &theirs] {
        std::os::unix::fs::chown(dir, Some(65534), Some(65534)).unwrap();
    }
    let at = env.mkdir("home/x/ovl-idmapped7");
    assert!(
        env.ns
            .command("mount")
            .args(["--move", s(&temp), s(&at)])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    // The user moves their directory, mount and all, under --foreign.
    let moved = leaks_dir.join("x");
    sh(
        &env,
        &format!(
            "setpriv --reuid 65534 --regid 65534 --clear-groups mv {} {}",
            s(&theirs),
            s(&moved)
        ),
    );
    let mount_point = moved.join("ovl-idmapped7");
    assert!(
        env.ns
            .mountinfo()
            .iter()
            .any(|m| m.mount_point == mount_point)
    );
    let out = env.run(&["gc", "--json", "--foreign", s(&leaks_dir), "--min-age", "0"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let report = json(&out);
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("who could have moved it there"),
        "{report}"
    );
    assert!(
        env.ns
            .mountinfo()
            .iter()
            .any(|m| m.mount_point == mount_point)
    );

    // Root's own tree: removed.
    let roots = env.mkdir("srv/leaks");
    let there = env.mkdir("srv/leaks/ovl-idmapped7");
    assert!(
        env.ns
            .command("mount")
            .args(["--move", s(&mount_point), s(&there)])
            .status()
            .unwrap()
            .success()
    );
    let out = env.run(&["gc", "--foreign", s(&roots), "--min-age", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!env.ns.mountinfo().iter().any(|m| m.mount_point == there));
    env.assert_clean();
}
