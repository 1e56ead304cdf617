//! What an admin at a shell meets: the inspect table (on a terminal and in
//! a pipe, findmnt's -o, -n, -r, --sort, -J), ids given by prefix, mount
//! -o with mount(8)'s flags, relative paths, and commands that only look
//! creating nothing.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mounts `n` overlays with similar ids and targets: (target, id) each.
fn crowd(env: &Env, n: usize) -> Vec<(std::path::PathBuf, String)> {
    let layers = env.layers(2);
    (0..n)
        .map(|i| {
            let target = env.mkdir(&format!(
                "run/containerd/io.containerd.runtime.v2.task/k8s.io/{i:03}/rootfs"
            ));
            let id = format!("6b0e3a26-5{:03x}-1c2d", i * 7);
            env.ok(&mount_args_with(best(), &layers, &target, &["--id", &id]));
            (target, id)
        })
        .collect()
}

/// The tool on a pseudo-terminal of `columns` columns (util-linux script).
fn on_terminal(env: &Env, columns: u32, args: &str) -> String {
    let out = env
        .ns
        .command("script")
        .args(["-q", "-e", "-c", &format!("{BIN} {args}"), "/dev/null"])
        .env("COLUMNS", columns.to_string())
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

#[test]
fn the_table_fits_a_terminal_and_every_id_is_accepted_back() {
    let env = Env::new();
    let mounted = crowd(&env, 12);
    for columns in [80, 200] {
        let text = on_terminal(&env, columns, "inspect");
        let rows: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(rows.len(), 13, "{text}");
        for row in &rows {
            assert!(row.chars().count() <= columns as usize, "{columns}: {row}");
        }
        for row in &rows[1..] {
            let id = row.split_whitespace().next().unwrap();
            let detail = env.ok(&["inspect", id]);
            assert!(detail.contains(&format!("id:          {id}")), "{detail}");
        }
        if columns == 80 {
            assert!(text.contains('…'), "a long target was not cut: {text}");
        }
    }
    // In a pipe nothing is cut.
    let piped = env.ok(&["inspect"]);
    for (target, id) in &mounted {
        let row = piped.lines().find(|l| l.starts_with(id.as_str())).unwrap();
        assert!(row.contains(s(target)), "{row}");
    }
    for (_, id) in &mounted {
        env.ok(&["umount", id]);
    }
    env.assert_clean();
}

#[test]
fn findmnt_style_output() {
    let env = Env::new();
    let mounted = crowd(&env, 3);
    let (target0, id0) = &mounted[0];
    let raw = env.ok(&[
        "inspect",
        "-r",
        "-n",
        "-o",
        "ID,TARGET,LAYERS,HEALTH",
        "--sort",
        "TARGET",
    ]);
    let first = raw.lines().next().unwrap();
    assert_eq!(first, format!("{id0} {} 2 ok", s(target0)));
    assert_eq!(raw.lines().count(), 3);
    let headed = env.ok(&["inspect", "-o", "id,health"]);
    assert!(headed.starts_with("ID "), "{headed}");
    let listed = env.ok(&["inspect", "--list-columns"]);
    for column in ["ID", "TARGET", "MAPS", "UPPER", "MOUNTNS", "ELSEWHERE"] {
        assert!(listed.lines().any(|l| l.starts_with(column)), "{listed}");
    }
    let leaks = env.ok(&["inspect", "--leaks", "--list-columns"]);
    assert!(leaks.starts_with("KIND"), "{leaks}");
    let short: Value = serde_json::from_str(&env.ok(&["inspect", "-J"])).unwrap();
    let long: Value = serde_json::from_str(&env.ok(&["inspect", "--json"])).unwrap();
    assert_eq!(short, long);
    for (args, says) in [
        (&["inspect", "-o", "ID,NOPE"][..], "unknown column \"NOPE\""),
        (
            &["inspect", "--sort", "MAPS"],
            "not one of the columns shown",
        ),
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    for (_, id) in &mounted {
        env.ok(&["umount", id]);
    }
    env.assert_clean();
}

#[test]
fn ids_are_taken_by_unique_prefix() {
    let env = Env::new();
    let mounted = crowd(&env, 3); // 6b0e3a26-5000-1c2d, -5007-, -500e-
    let (_, id) = &mounted[1];
    let out = env.run(&["umount", "6b0e"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("prefix of 3 ids"), "{}", stderr(&out));
    assert!(stderr(&out).contains(id.as_str()), "{}", stderr(&out));
    let out = env.run(&["inspect", "6b0"]);
    assert_eq!(out.status.code(), Some(1), "three characters are no prefix");
    let detail = env.ok(&["inspect", "6b0e3a26-5007"]);
    assert!(detail.contains(id.as_str()), "{detail}");
    env.ok(&["umount", "6b0e3a26-5007"]);
    assert_eq!(env.our_mounts().len(), 2);
    for (_, id) in [&mounted[0], &mounted[2]] {
        env.ok(&["umount", id]);
    }
    env.assert_clean();
}

/// A node starting its containers: 150 overlays mounted one after another,
/// as fast as a shell loop in the namespace makes them, get ids that their
/// first 6 characters tell apart, and those 6 name each one back. (Ids
/// used to begin with the time in seconds: ids made together shared their
/// first 8 to 11 characters.)
#[test]
fn ids_made_together_differ_in_their_first_six_characters() {
    let env = Env::new();
    let layers = env.layers(2);
    let targets: Vec<String> = (0..150)
        .map(|i| s(&env.mkdir(&format!("burst/{i}"))).to_string())
        .collect();
    // One shell runs the 150 mounts: no nsenter between them.
    let started = std::time::Instant::now();
    let out = env
        .ns
        .command("sh")
        .args([
            "-c",
            "lower=$1; shift; for t; do \"$BIN\" mount --lowerdir \"$lower\" --uidmap 0:100000:65536 \"$t\" || exit; done",
            "sh",
            &join(&layers),
        ])
        .args(&targets)
        .env("BIN", BIN)
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 150);
    let mut by_prefix: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for id in &ids {
        by_prefix.entry(&id[..6]).or_default().push(id);
    }
    let shared: Vec<_> = by_prefix.values().filter(|ids| ids.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "made in {took:?}, first 6 characters shared: {shared:?}"
    );
    for (id, target) in ids.iter().zip(&targets).step_by(10) {
        let detail = env.ok(&["inspect", &id[..6]]);
        assert!(detail.contains(&format!(" {target}\n")), "{detail}");
    }
    // Ids no longer sort by time: the table still lists the oldest first
    // (to the second a record keeps).
    let listed = env.ok(&["inspect", "-r", "-n", "-o", "CREATED,ID"]);
    let rows: Vec<(&str, &str)> = listed.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert!(rows.is_sorted_by_key(|(created, _)| *created), "{listed}");
    assert_eq!(rows.len(), 150);
    eprintln!("150 ids made in {took:?}");
}

/// A prefix that many ids share (ids of an earlier version, made in the
/// same second) is refused in one short line: the first 5 matches in
/// order, and how many more. (It used to list every match, in the order
/// the directory gave them: 3,640 bytes for 29 ids.)
#[test]
fn an_ambiguous_prefix_names_five_ids_sorted_and_counts_the_rest() {
    let env = Env::new();
    let layers = env.layers(2);
    // Ids as earlier versions made them, mounted out of order.
    let mut ids: Vec<String> = (0..12)
        .map(|n| format!("6b168043-6d{:02x}-45d5d6", (n * 7) % 12))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let target = env.mkdir(&format!("old/{i}"));
        env.ok(&mount_args_with(best(), &layers, &target, &["--id", id]));
    }
    ids.sort();
    let expected = format!(
        "6b16: the prefix of 12 ids ({}, and 7 more); give more of it",
        ids[..5].join(", ")
    );
    for command in ["inspect", "umount"] {
        let out = env.run(&[command, "6b16"]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", stderr(&out));
        let said = stderr(&out);
        assert_eq!(said.lines().count(), 1, "{command}: {said}");
        assert!(said.trim_end().ends_with(&expected), "{command}: {said}");
    }
    assert_eq!(env.our_mounts().len(), 12, "nothing unmounted");
    // Old ids are taken back whole, and by a prefix that is unique.
    env.ok(&["inspect", &ids[3]]);
    env.ok(&["umount", &ids[11][..15]]);
    assert_eq!(env.our_mounts().len(), 11);
}

/// The tool run from the test's directory (nsenter starts it in the
/// namespace holder's working directory).
fn in_test_dir(env: &Env, args: &[&str]) -> std::process::Output {
    env.ns
        .command("sh")
        .args([
            "-c",
            "cd \"$1\" && shift && exec \"$@\"",
            "sh",
            s(env.dir.path()),
            BIN,
        ])
        .args(args)
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .output()
        .unwrap()
}

#[test]
fn relative_paths_say_what_to_write() {
    let env = Env::new();
    let layers = env.layers(2);
    env.mkdir("mnt");
    let out = in_test_dir(
        &env,
        &[
            "mount",
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:100000:65536",
            "mnt",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("did you mean {}?", s(&env.path("mnt")))),
        "{}",
        stderr(&out)
    );
    env.ok(&["gc"]);
    let out = in_test_dir(&env, &["umount", "mnt"]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(stderr(&out).contains("write ./mnt"), "{}", stderr(&out));
    // ./mnt is a path: nothing of ours is there.
    let out = in_test_dir(&env, &["umount", "./mnt"]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert!(!stderr(&out).contains("write ./mnt"), "{}", stderr(&out));
}

#[test]
fn mount_takes_mount_8s_flags_in_o() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    env.ok(&[
        "mount",
        "-o",
        &format!(
            "defaults,lowerdir={},uidmap=0:100000:65536,ro,nosuid,nodev,noexec,noatime,nofail,_netdev,x-systemd.automount",
            join(&layers)
        ),
        s(&target),
    ]);
    let mounts = env.our_mounts();
    assert_eq!(mounts.len(), 1);
    for flag in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(
            mounts[0].options.split(',').any(|o| o == flag),
            "{flag}: {}",
            mounts[0].options
        );
    }
    let record: Value = serde_json::from_str(&env.ok(&["inspect", "--json", s(&target)])).unwrap();
    assert_eq!(
        record["vfs_flags"],
        serde_json::json!(["ro", "nosuid", "nodev", "noexec", "noatime"])
    );
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// Every form of the commands that only look, but those that need a path.
const LOOKS: &[&[&str]] = &[
    &["inspect"],
    &["inspect", "--json"],
    &[
        "inspect",
        "-r",
        "-n",
        "-o",
        "ID,TARGET,HEALTH",
        "--sort",
        "TARGET",
    ],
    &["inspect", "--leaks"],
    &["inspect", "--leaks", "--json"],
    &["inspect", "--format", "prometheus"],
    &["inspect", "--features"],
    &["inspect", "--features", "--json"],
    &["gc", "--dry-run"],
    &["gc", "--dry-run", "--json"],
    &["complete-ids"],
];

/// inspect (every form, --features included), gc --dry-run and
/// complete-ids only look: a fresh state directory stays empty (no lock
/// file, no feature cache), a missing one named by --state-dir is an error
/// (exit 16) and is not created, and at the default place (here a tmpfs on
/// the namespace's /run) nothing recorded is said and nothing made.
#[test]
fn commands_that_only_look_create_nothing() {
    let env = Env::new();
    fs::create_dir(&env.state).unwrap();
    fs::set_permissions(&env.state, fs::Permissions::from_mode(0o700)).unwrap();
    for args in LOOKS {
        env.ok(args);
        assert_eq!(
            env.state_files(""),
            Vec::<String>::new(),
            "{args:?} made files"
        );
    }
    fs::remove_dir(&env.state).unwrap();
    for args in [
        &["inspect"][..],
        &["inspect", "--features"],
        &["gc", "--dry-run"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(16), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
        assert!(!env.state.exists(), "{args:?} made it");
    }

    let status = env
        .ns
        .command("mount")
        .args(["-t", "tmpfs", "test-run", "/run"])
        .status()
        .unwrap();
    assert!(status.success());
    for state_env in [None, Some("")] {
        let run = |args: &[&str]| {
            let mut cmd = env.ns.command(BIN);
            cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
            if let Some(value) = state_env {
                cmd.env("IDMAP_OVERLAY_STATE_DIR", value);
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{args:?} {state_env:?}: {}",
                stderr(&out)
            );
            assert!(
                !env.ns.path(Path::new("/run/idmap-overlay")).exists(),
                "{args:?}"
            );
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run(&["inspect"]), "no idmap-overlay mounts recorded\n");
        for args in LOOKS {
            run(args);
        }
    }
}

/// The same in a state directory in use (an overlay mounted, its record,
/// lock and index, the global lock): nothing in it changes. Without a
/// feature cache, `inspect --features` probes elsewhere and writes none;
/// with one, it shows it.
#[test]
fn looking_at_a_used_state_directory_changes_nothing() {
    let env = Env::new();
    let target = env.mkdir("mnt");
    let (upper, work) = (env.mkdir("upper"), env.mkdir("work"));
    env.ok(&mount_args_with(
        best(),
        &env.layers(2),
        &target,
        &["--upperdir", s(&upper), "--workdir", s(&work)],
    ));
    let foreign = env.mkdir("foreign");
    let cache = env.state.join("features.json");
    let cached: Value = serde_json::from_str(&fs::read_to_string(&cache).unwrap()).unwrap();
    for with_cache in [true, false] {
        if !with_cache {
            fs::remove_file(&cache).unwrap();
        }
        let before = snapshot(&env.state);
        assert!(before.contains_key(Path::new("lock")), "{before:?}");
        let with_paths: [&[&str]; 4] = [
            &["inspect", s(&target)],
            &["inspect", "--json", s(&target)],
            &["inspect", "--leaks", "--foreign", s(&foreign)],
            &["gc", "--dry-run", "--foreign", s(&foreign)],
        ];
        for args in LOOKS.iter().chain(&with_paths) {
            env.ok(args);
            assert_eq!(
                snapshot(&env.state),
                before,
                "{args:?} (cache: {with_cache})"
            );
        }
        let shown: Value =
            serde_json::from_str(&env.ok(&["inspect", "--features", "--json"])).unwrap();
        if with_cache {
            assert_eq!(shown, cached);
        } else {
            assert_eq!(shown["detached"], cached["detached"], "{shown}");
            assert_ne!(shown["probed_on"], cached["probed_on"], "{shown}");
        }
    }
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}
