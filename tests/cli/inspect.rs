use crate::support::*;
use serde_json::Value;

#[test]
fn table_detail_and_json() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let out = env.ok(&["inspect"]);
    assert_eq!(out, "no idmap-overlay mounts recorded\n");
    let layers = env.layers(3);
    let target = env.mkdir("mnt");
    env.ok(&[
        "mount",
        "--id",
        "web-1",
        "--lowerdir",
        &join(&layers),
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:200000:65536",
        s(&target),
    ]);

    let table = env.ok(&["inspect"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    // In a pipe nothing is cut.
    assert!(lines[1].contains(s(&target)), "{table}");
    for word in ["web-1", best(), "mounted", " ok"] {
        assert!(lines[1].contains(word), "{word} missing: {table}");
    }

    let detail = env.ok(&["inspect", "web-1"]);
    assert!(
        detail.contains(&format!("target:      {}", s(&target))),
        "{detail}"
    );
    assert!(detail.contains("gidmap:      0:200000:65536"), "{detail}");
    assert!(detail.contains(s(&layers[2])), "{detail}");
    assert!(detail.contains("mounted:     yes"), "{detail}");
    // Same by target.
    assert_eq!(
        env.ok(&["inspect", s(&target)]).lines().next(),
        detail.lines().next()
    );

    let all: Value = serde_json::from_str(&env.ok(&["inspect", "--json"])).unwrap();
    assert_eq!(all["version"], 1);
    let m = &all["mounts"][0];
    assert_eq!(m["id"], "web-1");
    assert_eq!(m["health"]["mounted"], true);
    assert_eq!(m["health"]["owner_alive"], false);
    assert_eq!(m["health"]["leaked"], false);
    assert_eq!(m["health"]["temp_mounts_present"], serde_json::json!([]));

    let one: Value = serde_json::from_str(&env.ok(&["inspect", "--json", "web-1"])).unwrap();
    assert_eq!(one["gidmap"][0]["host"], 200000);
    assert!(
        one["kernel_maps"]["note"]
            .as_str()
            .unwrap()
            .contains("private clones")
    );
}

#[test]
fn kernel_maps_of_a_leaked_temp_mount() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.run_at(
        "temp-mounted:kill",
        &[
            "mount",
            "--id",
            "x",
            "--strategy",
            "common-dir",
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:100000:65536",
            "--gidmap",
            "0:200000:1000",
            s(&target),
        ],
    );
    assert!(!out.status.success());
    let one: Value = serde_json::from_str(&env.ok(&["inspect", "--json", "x"])).unwrap();
    // statmount(2) reads the maps back from the kernel (Linux 6.15+);
    // before, inspect says which kernel it needs.
    let maps = &one["kernel_maps"];
    if kernel().statmount_idmaps {
        assert_eq!(maps["uid_lines"], serde_json::json!(["0 100000 65536"]));
        assert_eq!(maps["gid_lines"], serde_json::json!(["0 200000 1000"]));
    } else {
        let needs = if kernel().unique_mount_ids {
            "does not report id maps (Linux 6.15+)"
        } else {
            "has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8+)"
        };
        assert!(maps["note"].as_str().unwrap().contains(needs), "{one}");
        assert!(
            maps["uid_lines"].as_array().is_none_or(|l| l.is_empty()),
            "{one}"
        );
    }
    assert_eq!(one["health"]["leaked"], true);
    env.ok(&["gc"]);
}

#[test]
fn unknown_id_exits_1() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let out = env.run(&["inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope: no idmap-overlay record"));
}

#[test]
fn features_are_probed() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let f: Value = serde_json::from_str(&env.ok(&["inspect", "--features", "--json"])).unwrap();
    // The suite needs idmapped mounts; the rest is what this kernel has
    // (by the same probe, in another state directory), and auto follows.
    assert_eq!(f["idmapped_mounts"], true);
    for (key, has) in [
        ("detached", kernel().detached),
        ("idmapped_tmpfs", kernel().idmapped_tmpfs),
        ("statmount_idmaps", kernel().statmount_idmaps),
        ("unique_mount_ids", kernel().unique_mount_ids),
    ] {
        assert_eq!(f[key], has, "{key}: {f}");
    }
    assert!(
        env.ok(&["inspect", "--features"])
            .contains(&format!("auto strategy:       {}", best()))
    );
    // mount's probe (in the state directory, cached there) attaches
    // nothing and leaves nothing but the cache, which inspect then shows.
    let target = env.mkdir("mnt");
    env.ok(&mount_args("auto", &env.layers(2), &target));
    env.ok(&["umount", s(&target)]);
    assert!(env.our_mounts().is_empty());
    let cached: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.join("features.json")).unwrap())
            .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&env.ok(&["inspect", "--features", "--json"])).unwrap(),
        cached
    );
    let left: Vec<String> = env
        .state_files("")
        .into_iter()
        .filter(|n| n.starts_with("probe"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A crashed probe's directories are gc's: rmdir only.
    let crashed = env.state.join("probe.999999");
    for sub in ["l1", "l2"] {
        std::fs::create_dir_all(crashed.join(sub)).unwrap();
    }
    let gc = env.ok(&["gc"]);
    assert!(gc.contains("feature probe directory"), "{gc}");
    assert!(!crashed.exists());
}

/// A record file that cannot be read (not JSON, a record that fails its
/// checks, a name a person could not type) is a row of the table and an
/// entry of `-J`, named by its file, with `corrupt` where the state and
/// health go; `inspect ID` says why. They were shown only by `--leaks`
/// and gc.
#[test]
fn corrupt_records_are_rows_and_entries() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    env.ok(&mount_args_with(
        best(),
        &layers,
        &target,
        &["--id", "web-1"],
    ));
    let good: Value = serde_json::from_str(&env.ok(&["inspect", "-J", "web-1"])).unwrap();
    let mut mismatched = good.clone();
    mismatched["id"] = "web-9".into();
    let mounts = env.state.join("mounts");
    for (name, text) in [
        (
            "broken.json".to_string(),
            "{\"version\": 1, \"id\"".to_string(),
        ),
        ("web-2.json".to_string(), mismatched.to_string()),
        ("evil\x1b[31m.json".to_string(), String::new()),
    ] {
        std::fs::write(mounts.join(name), text).unwrap();
    }

    let table = env.ok(&["inspect", "-o", "ID,STATE,HEALTH,TARGET"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    fn corrupt(id: &str) -> Vec<&str> {
        vec![id, "corrupt", "corrupt", "-"]
    }
    assert_eq!(
        rows,
        [
            corrupt("broken"),
            corrupt("evil\\x1b[31m"),
            corrupt("web-2"),
            vec!["web-1", "mounted", "ok", s(&target)],
        ],
        "{table}"
    );
    assert!(!table.contains('\x1b'), "a raw escape reached the terminal");

    let all: Value = serde_json::from_str(&env.ok(&["inspect", "-J"])).unwrap();
    let entries = all["mounts"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{all}");
    let entry = |id: &str| entries.iter().find(|m| m["id"] == id).unwrap();
    let why = |id: &str| {
        entry(id)["corrupt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(why("broken").contains("is not valid JSON"), "{all}");
    assert!(why("web-2").contains("holds id \"web-9\""), "{all}");
    assert!(why("evil\x1b[31m").contains("is empty"), "{all}");
    assert_eq!(entry("web-2")["path"], s(&mounts.join("web-2.json")));
    assert_eq!(entry("web-1")["health"]["word"], "ok");
    assert!(entry("web-1").get("corrupt").is_none(), "{all}");

    // One of them by id (or a prefix): why, exit 16 (a record's problem).
    let out = env.run(&["inspect", "brok"]);
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "brok: record {} is not valid JSON",
            s(&mounts.join("broken.json"))
        )),
        "{}",
        stderr(&out)
    );
    // A prefix both a record and a corrupt file have is ambiguous.
    let out = env.run(&["inspect", "web-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("(web-1, web-2)"), "{}", stderr(&out));
}

/// `inspect --leaks` says "found" with exit 3, text or JSON, and 0 when it
/// lists nothing; an error keeps its own code. (It exited 0 whatever it
/// found: a script had to parse the list.)
#[test]
fn leaks_found_exit_3_and_errors_keep_their_codes() {
    let env = Env::new();
    let (target, _) = env.mounted();
    let out = env.run(&["inspect", "--leaks"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no leaks found\n");

    env.plain_umount(&target);
    for args in [&["inspect", "--leaks"][..], &["inspect", "--leaks", "-J"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("vanished-overlay"),
            "{args:?}"
        );
        assert_eq!(stderr(&out), "", "{args:?}: found is no error");
    }

    let out = env.run(&["inspect", "--leaks", "--foreign", "relative"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = env
        .tool(&["inspect", "--leaks"])
        .env("IDMAP_OVERLAY_STATE_DIR", env.path("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));

    env.ok(&["gc"]);
    let out = env.run(&["inspect", "--leaks", "-J"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// After umount(8) behind the tool's back, every view says the same STATE
/// and HEALTH: the table, the detail, `-J` and `-J ID`.
#[test]
fn every_view_says_the_same_state_and_health() {
    let env = Env::new();
    let layers = env.layers(2);
    let mut ids = Vec::new();
    for name in ["behind", "kept"] {
        let target = env.mkdir(name);
        let id = env.ok(&mount_args(best(), &layers, &target));
        ids.push((id.trim().to_string(), target));
    }
    env.plain_umount(&ids[0].1);
    let table = env.ok(&["inspect", "-r", "-n", "-o", "ID,STATE,HEALTH"]);
    let listed: Value = serde_json::from_str(&env.ok(&["inspect", "-J"])).unwrap();
    let mut seen = Vec::new();
    for (id, _) in &ids {
        let row: Vec<&str> = table
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not in {table}"))
            .split(' ')
            .collect();
        let (state, health) = (row[1], row[2]);
        let detail = env.ok(&["inspect", id]);
        let field = |key: &str| {
            let line = detail.lines().find(|l| l.starts_with(key)).unwrap();
            line[key.len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            (field("state:"), field("health:")),
            (state.to_string(), health.to_string()),
            "{detail}"
        );
        let one: Value = serde_json::from_str(&env.ok(&["inspect", "-J", id])).unwrap();
        let entry = listed["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .unwrap();
        for json in [&one, entry] {
            assert_eq!(json["state"], state, "{json}");
            assert_eq!(json["health"]["word"], health, "{json}");
            assert_eq!(json["recorded_state"], "mounted", "{json}");
        }
        seen.push((state.to_string(), health.to_string()));
    }
    assert_eq!(
        seen,
        [
            ("unmounted".into(), "leaked".into()),
            ("mounted".into(), "ok".into())
        ]
    );
    assert!(
        env.ok(&["inspect", &ids[0].0])
            .contains("unmounted (the record says mounted)")
    );
}
