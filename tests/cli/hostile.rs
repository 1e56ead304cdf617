//! Hostile state: a state directory that someone else could have planted or
//! can write, records that are not what they claim, and records whose
//! target now holds somebody else's mount. The tool refuses or skips with a
//! clear message, follows no symlink it did not create, and never unmounts a
//! mount it cannot prove is its own.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

const MAP: &str = "0:100000:65536";

fn mount_id(env: &Env, layers: &[PathBuf], id: &str, target: &Path) {
    env.ok(&[
        "mount",
        "--id",
        id,
        "--lowerdir",
        &join(layers),
        "--uidmap",
        MAP,
        s(target),
    ]);
}

/// A plain overlay that is not ours, mounted with mount(8) under `source`.
fn foreign_overlay(env: &Env, source: &str, target: &Path) {
    let dir = source.replace(':', "-");
    let a = env.mkdir(&format!("foreign/{dir}/a"));
    let b = env.mkdir(&format!("foreign/{dir}/b"));
    fs::write(a.join("foreign-file"), "theirs\n").unwrap();
    sh(
        env,
        &format!(
            "mount -t overlay '{source}' -o lowerdir={}:{} {}",
            s(&a),
            s(&b),
            s(target)
        ),
    );
}

/// Name -> (type, mode, content) of every entry of `dir`, not recursing and
/// opening nothing but regular files (a FIFO must not be opened).
fn listing(dir: &Path) -> BTreeMap<String, (String, u32, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let content = if meta.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (
                e.file_name().to_string_lossy().into_owned(),
                (format!("{:?}", meta.file_type()), meta.mode(), content),
            )
        })
        .collect()
}

fn mounts_at(env: &Env, target: &Path) -> Vec<MountLine> {
    env.ns
        .mountinfo()
        .into_iter()
        .filter(|m| m.mount_point == target)
        .collect()
}

fn assert_refused(out: &Output, code: i32, says: &str, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: {err}");
    assert!(err.contains(says), "{what}: want {says:?} in {err:?}");
}

/// Every command that opens the state directory, with valid arguments.
fn every_command(layers: &[PathBuf], target: &Path) -> Vec<Vec<String>> {
    let owned = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        owned(&[
            "mount",
            "--lowerdir",
            &join(layers),
            "--uidmap",
            MAP,
            s(target),
        ]),
        owned(&["umount", s(target)]),
        owned(&["umount", "some-id"]),
        owned(&["gc"]),
        owned(&["inspect"]),
        owned(&["inspect", "--leaks", "--json"]),
    ]
}

fn refused_everywhere(env: &Env, says: &str) {
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    for args in every_command(&layers, &target) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&env.run(&args), 16, says, &args.join(" "));
    }
    assert!(env.our_mounts().is_empty(), "{:?}", env.our_mounts());
}

#[test]
fn state_dir_that_is_a_symlink_is_refused() {
    let env = Env::new();
    let real = env.path("real-state");
    make_private_dir(&real);
    symlink(&real, &env.state).unwrap();
    refused_everywhere(&env, "is a symlink; refusing to follow it");
    // Nothing was created through the link.
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0);
}

#[test]
fn state_dir_owned_by_another_user_is_refused() {
    let env = Env::new();
    make_private_dir(&env.state);
    std::os::unix::fs::chown(&env.state, Some(65534), Some(65534)).unwrap();
    refused_everywhere(&env, "is owned by uid 65534, not by root");
    assert_eq!(fs::read_dir(&env.state).unwrap().count(), 0);
}

#[test]
fn state_dir_writable_by_others_is_refused() {
    for mode in [0o777, 0o1777, 0o770, 0o702] {
        let env = Env::new();
        make_private_dir(&env.state);
        fs::set_permissions(&env.state, fs::Permissions::from_mode(mode)).unwrap();
        refused_everywhere(&env, "is writable by others");
        assert_eq!(fs::read_dir(&env.state).unwrap().count(), 0, "{mode:o}");
    }
}

/// The same checks hold for the subdirectories the tool keeps.
#[test]
fn state_subdirectories_are_checked_too() {
    for sub in ["mounts", "locks", "tmp"] {
        for tamper in ["world-writable", "symlink", "foreign owner"] {
            let env = Env::new();
            env.ok(&["gc"]); // makes the state directory
            let dir = env.state.join(sub);
            let says = match tamper {
                "world-writable" => {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
                    "is writable by others"
                }
                "symlink" => {
                    fs::remove_dir(&dir).unwrap();
                    let elsewhere = env.path("elsewhere");
                    make_private_dir(&elsewhere);
                    symlink(&elsewhere, &dir).unwrap();
                    "is a symlink"
                }
                _ => {
                    std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
                    "is owned by uid 65534"
                }
            };
            let layers = env.layers(2);
            let target = env.mkdir("mnt");
            let args = [
                "mount",
                "--lowerdir",
                &join(&layers),
                "--uidmap",
                MAP,
                s(&target),
            ];
            assert_refused(&env.run(&args), 16, says, &format!("{sub} {tamper}"));
            assert!(env.our_mounts().is_empty());
        }
    }
}

/// A record file replaced by a symlink is reported and never followed: not
/// by inspect, gc, umount or mount, even when what it points to is a valid
/// record describing a real overlay.
#[test]
fn record_replaced_by_a_symlink_is_not_followed() {
    let env = Env::new();
    let layers = env.layers(2);
    // Somebody else's overlay, and a valid-looking record of a crashed mount
    // that names it: gc would tear it down if it trusted that record.
    let theirs = env.mkdir("theirs");
    foreign_overlay(&env, "their-overlay", &theirs);
    let stash = env.mkdir("stash");
    let evil = serde_json::json!({
        "version": 1, "id": "evil", "target": theirs, "state": "preparing",
        "strategy": "detached", "lowerdirs": layers, "upperdir": null,
        "workdir": null, "options": [], "uidmap": [], "gidmap": [],
        "userns": null, "common_dir": null, "idmapped_dirs": [],
        "temp_mounts": [], "source": "their-overlay", "mount_id": null,
        "mount_id_unique": null, "pid": 999999, "created": "2026-01-01T00:00:00Z"
    });
    fs::write(stash.join("evil.json"), evil.to_string()).unwrap();
    // Our own overlay, whose record is moved away and linked back.
    let ours = env.mkdir("ours");
    mount_id(&env, &layers, "linked", &ours);
    fs::rename(
        env.state.join("mounts/linked.json"),
        stash.join("linked.json"),
    )
    .unwrap();
    for id in ["evil", "linked"] {
        symlink(
            stash.join(format!("{id}.json")),
            env.state.join(format!("mounts/{id}.json")),
        )
        .unwrap();
    }
    let before = snapshot(&stash);

    let leaks = json(&env.run(&["inspect", "--leaks", "--json"]));
    for id in ["evil", "linked"] {
        let path = env.state.join(format!("mounts/{id}.json"));
        let found = leaks["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["path"] == s(&path))
            .unwrap_or_else(|| panic!("{id} not reported: {leaks}"));
        assert_eq!(found["kind"], "bad-record");
        assert!(
            found["why"]
                .as_str()
                .unwrap()
                .contains("is a symlink; not followed"),
            "{found}"
        );
    }
    let gc = env.run(&["gc", "--json"]);
    assert_eq!(gc.status.code(), Some(64), "{}", stderr(&gc));
    assert_eq!(json(&gc)["failed"].as_array().unwrap().len(), 2);

    // umount by id finds no record behind the link; the foreign overlay
    // has no tag of ours, so it is refused.
    assert_refused(
        &env.run(&["umount", "evil"]),
        32,
        "no idmap-overlay record and no overlay of ours there",
        "umount evil",
    );
    assert_refused(
        &env.run(&["umount", s(&theirs)]),
        32,
        "no idmap-overlay record and no overlay of ours there",
        "umount theirs",
    );
    // Nothing was followed, written or removed.
    assert_eq!(snapshot(&stash), before);
    assert!(
        fs::symlink_metadata(env.state.join("mounts/evil.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        mounts_at(&env, &theirs).len(),
        1,
        "their overlay was touched"
    );
    assert_eq!(mounts_at(&env, &ours).len(), 1, "our overlay was touched");
    assert_eq!(env.read(&theirs.join("foreign-file")), "theirs\n");

    // Clean up what the test made (the tool's untracked path removes our
    // overlay by its tag; the planted links are the test's to remove).
    env.ok(&["umount", s(&ours)]);
    sh(&env, &format!("umount {}", s(&theirs)));
    for id in ["evil", "linked"] {
        fs::remove_file(env.state.join(format!("mounts/{id}.json"))).unwrap();
    }
    env.ok(&["gc"]);
    env.assert_clean();
}

/// Corrupt, truncated, empty, future-version and otherwise unusable records
/// are reported and never acted on, and do not keep the tool from working.
#[test]
fn unusable_records_are_skipped_and_reported() {
    let env = Env::new();
    let layers = env.layers(2);
    // A live overlay of ours whose record gets truncated, and somebody
    // else's overlay that the unusable records name.
    let live = env.mkdir("live");
    mount_id(&env, &layers, "truncated", &live);
    let theirs = env.mkdir("theirs");
    foreign_overlay(&env, "their-overlay", &theirs);
    let mounts = env.state.join("mounts");
    let good: Value =
        serde_json::from_str(&fs::read_to_string(mounts.join("truncated.json")).unwrap()).unwrap();
    let text = fs::read(mounts.join("truncated.json")).unwrap();
    fs::write(mounts.join("truncated.json"), &text[..text.len() / 2]).unwrap();

    // A crashed mount's record naming their overlay, under various faults.
    let naming_theirs = |id: &str, version: u64| {
        let mut r = good.clone();
        r["id"] = id.into();
        r["version"] = version.into();
        r["state"] = "preparing".into();
        r["target"] = s(&theirs).into();
        r["source"] = "their-overlay".into();
        r["mount_id"] = Value::Null;
        r["mount_id_unique"] = Value::Null;
        r["pid"] = 999999.into();
        r
    };
    fs::write(
        mounts.join("future.json"),
        naming_theirs("future", 2).to_string(),
    )
    .unwrap();
    let mut no_version = naming_theirs("noversion", 1);
    no_version.as_object_mut().unwrap().remove("version");
    fs::write(mounts.join("noversion.json"), no_version.to_string()).unwrap();
    fs::write(
        mounts.join("misnamed.json"),
        naming_theirs("somebody-else", 1).to_string(),
    )
    .unwrap();
    let mut bad_state = naming_theirs("badstate", 1);
    bad_state["state"] = "exploded".into();
    fs::write(mounts.join("badstate.json"), bad_state.to_string()).unwrap();
    fs::write(mounts.join("corrupt.json"), "{\"version\": 1, \"id\": [[[").unwrap();
    fs::write(mounts.join("empty.json"), "").unwrap();
    fs::write(mounts.join("binary.json"), [0u8, 0xff, 0xfe, b'{', 0, 1, 2]).unwrap();
    fs::write(mounts.join("huge.json"), vec![b' '; 2 << 20]).unwrap();
    fs::create_dir(mounts.join("directory.json")).unwrap();
    // A FIFO: opening it for reading without O_NONBLOCK would hang forever.
    nix::unistd::mkfifo(
        &mounts.join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let bad = [
        ("truncated", "is not valid JSON"),
        ("future", "has version 2"),
        ("noversion", "has no version"),
        ("misnamed", "not the one its name says"),
        ("badstate", "is not a valid record"),
        ("corrupt", "is not valid JSON"),
        ("empty", "is empty"),
        ("binary", "stream did not contain valid UTF-8"),
        ("huge", "too large for a record"),
        ("directory", "is not a regular file"),
        ("fifo", "is not a regular file"),
    ];
    let before = listing(&mounts);

    let leaks = json(&env.run(&["inspect", "--leaks", "--json"]));
    let leaks = leaks["leaks"].as_array().unwrap();
    for (name, why) in bad {
        let path = mounts.join(format!("{name}.json"));
        let found = leaks
            .iter()
            .find(|l| l["path"] == s(&path))
            .unwrap_or_else(|| panic!("{name} not reported: {leaks:?}"));
        assert_eq!(found["kind"], "bad-record", "{name}");
        assert!(
            found["why"].as_str().unwrap().contains(why),
            "{name}: want {why:?} in {found}"
        );
    }
    // Besides them, only the lock file of the truncated record's id (no
    // usable record names it any more).
    let others: Vec<&Value> = leaks.iter().filter(|l| l["kind"] != "bad-record").collect();
    assert_eq!(others.len(), 1, "{others:#?}");
    assert_eq!(
        others[0]["path"],
        s(&env.state.join("locks/truncated.lock"))
    );
    assert_eq!(leaks.len(), bad.len() + 1, "{leaks:#?}");
    // The plain table works too, and says so.
    let table = env.run(&["inspect"]);
    assert!(table.status.success(), "{}", stderr(&table));

    // gc reports each as failed and touches none of them, nor what they name.
    let gc = env.run(&["gc", "--json"]);
    assert_eq!(gc.status.code(), Some(64), "{}", stderr(&gc));
    let report = json(&gc);
    assert_eq!(report["failed"].as_array().unwrap().len(), bad.len());
    assert_eq!(report["cleaned"].as_array().unwrap().len(), 1, "{report}");
    for id in ["future", "noversion", "somebody-else", "corrupt", "empty"] {
        assert_refused(
            &env.run(&["umount", id]),
            32,
            "no idmap-overlay record and no overlay of ours there",
            id,
        );
    }
    assert_eq!(listing(&mounts), before, "an unusable record was changed");
    assert_eq!(
        mounts_at(&env, &theirs).len(),
        1,
        "their overlay was touched"
    );
    assert_eq!(mounts_at(&env, &live).len(), 1, "our overlay was touched");

    // Mounting and unmounting still work beside them.
    let fresh = env.mkdir("fresh");
    mount_id(&env, &layers, "fresh", &fresh);
    env.ok(&["umount", "fresh"]);
    assert_eq!(listing(&mounts), before);

    // Clean up: our live overlay (its record is unusable: the untracked
    // path finds it by tag), their overlay, and the planted files.
    env.ok(&["umount", s(&live)]);
    sh(&env, &format!("umount {}", s(&theirs)));
    for (name, _) in bad {
        let path = mounts.join(format!("{name}.json"));
        if path.is_dir() {
            fs::remove_dir(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
    env.ok(&["gc"]);
    env.assert_clean();
}

/// How a record's target can come to hold a mount that is not ours.
#[derive(Debug, Clone, Copy)]
enum Foreign {
    /// Another mount stacked on top of our overlay.
    StackedOnTop,
    /// Our overlay unmounted behind our back, a tmpfs in its place.
    Tmpfs,
    /// ... an overlay that even carries our source tag.
    SameTag,
    /// ... with our tag and, as the kernel reuses mount ids, our mount id:
    /// only the unique mount id tells it apart.
    SameTagAndMountId,
    /// The target's parent renamed (our overlay moves along) and the old
    /// path made a symlink to a directory with somebody's mount.
    PathRedirected,
}

#[test]
fn a_recorded_target_holding_somebody_elses_mount_is_left_alone() {
    for case in [
        Foreign::StackedOnTop,
        Foreign::Tmpfs,
        Foreign::SameTag,
        Foreign::SameTagAndMountId,
        Foreign::PathRedirected,
    ] {
        let what = format!("{case:?}");
        let env = Env::new();
        let layers = env.layers(2);
        let parent = env.mkdir("p");
        let target = env.mkdir("p/mnt");
        // An id no other test uses: the namespace scan sees every test's
        // overlays, and a device number is reused once its overlay is gone.
        let id = format!("ours-{}", env.ns.pid());
        mount_id(&env, &layers, &id, &target);
        let record_path = env.state.join(format!("mounts/{id}.json"));
        let record: Value =
            serde_json::from_str(&fs::read_to_string(&record_path).unwrap()).unwrap();
        // Where somebody else's mount ends up, and where ours is after.
        let (theirs, ours_now): (PathBuf, Option<PathBuf>) = match case {
            Foreign::StackedOnTop => {
                sh(&env, &format!("mount -t tmpfs stacked {}", s(&target)));
                (target.clone(), Some(target.clone()))
            }
            Foreign::Tmpfs => {
                sh(
                    &env,
                    &format!("umount {0} && mount -t tmpfs theirs {0}", s(&target)),
                );
                (target.clone(), None)
            }
            Foreign::SameTag | Foreign::SameTagAndMountId => {
                sh(&env, &format!("umount {}", s(&target)));
                foreign_overlay(&env, &format!("idmap-overlay:{id}"), &target);
                if let Foreign::SameTagAndMountId = case {
                    let mut forged = record.clone();
                    forged["mount_id"] = mounts_at(&env, &target)[0].id.into();
                    fs::write(&record_path, forged.to_string()).unwrap();
                }
                (target.clone(), None)
            }
            Foreign::PathRedirected => {
                let moved = env.path("p.old");
                fs::rename(&parent, &moved).unwrap();
                let elsewhere = env.mkdir("elsewhere");
                sh(&env, &format!("mount -t tmpfs theirs {}", s(&elsewhere)));
                fs::create_dir(&parent).unwrap();
                symlink(&elsewhere, &target).unwrap();
                (elsewhere, Some(moved.join("mnt")))
            }
        };
        let mounts_before = env.ns.mountinfo().len();
        let theirs_before: Vec<u64> = mounts_at(&env, &theirs).iter().map(|m| m.id).collect();
        assert!(!theirs_before.is_empty(), "{what}");

        for arg in [id.as_str(), s(&target)] {
            let out = env.run(&["umount", "--timeout", &walk_timeout(100), arg]);
            assert_eq!(
                out.status.code(),
                Some(32),
                "{what}: umount {arg}: {}",
                stderr(&out)
            );
            assert_eq!(stderr(&out).lines().count(), 1, "{what}: {}", stderr(&out));
            assert_eq!(
                mounts_at(&env, &theirs)
                    .iter()
                    .map(|m| m.id)
                    .collect::<Vec<_>>(),
                theirs_before,
                "{what}: umount {arg} touched their mount"
            );
            assert_eq!(
                env.ns.mountinfo().len(),
                mounts_before,
                "{what}: umount {arg}"
            );
        }
        assert!(record_path.exists(), "{what}: umount dropped the record");
        // gc never unmounts their mount either (it may drop our stale
        // record). Our overlay moved with its renamed parent is alive: gc
        // keeps its record and says where it is (exit 64).
        let gc = env.run(&["gc"]);
        if let Foreign::PathRedirected = case {
            let said = String::from_utf8_lossy(&gc.stdout);
            assert_eq!(gc.status.code(), Some(64), "{what}: {said}{}", stderr(&gc));
            assert!(said.contains("p.old/mnt"), "{what}: {said}");
            assert!(record_path.exists(), "{what}: gc dropped the record");
        } else {
            assert_eq!(gc.status.code(), Some(0), "{what}: {}", stderr(&gc));
        }
        assert_eq!(
            mounts_at(&env, &theirs)
                .iter()
                .map(|m| m.id)
                .collect::<Vec<_>>(),
            theirs_before,
            "{what}: gc touched their mount"
        );

        // Clean up: theirs by the test, ours by the tool.
        sh(&env, &format!("umount {}", s(&theirs)));
        if let Some(ours) = ours_now {
            let top = mounts_at(&env, &ours);
            assert_eq!(top.len(), 1, "{what}: our overlay is gone");
            assert_eq!(top[0].source, format!("idmap-overlay:{id}"));
            env.ok(&["umount", s(&ours)]);
        }
        env.ok(&["gc"]);
        env.assert_clean();
    }
}

/// Symlinks planted where the tool keeps locks and temporary directories
/// are not followed: nothing they point to is opened, written or removed.
#[test]
fn planted_symlinks_in_locks_and_tmp_are_not_followed() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let victim = env.mkdir("victim");
    fs::write(victim.join("file"), "keep\n").unwrap();
    fs::create_dir(victim.join("empty-dir")).unwrap();
    let before = snapshot(&victim);
    symlink(victim.join("file"), env.state.join("locks/planted.lock")).unwrap();
    symlink(&victim, env.state.join("tmp/planted")).unwrap();

    // A mount claiming that id cannot open its lock through the link.
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.run(&[
        "mount",
        "--id",
        "planted",
        "--lowerdir",
        &join(&layers),
        "--uidmap",
        MAP,
        s(&target),
    ]);
    assert_refused(&out, 16, "opening lock", "mount --id planted");
    assert!(env.our_mounts().is_empty());
    // gc cannot take that id's lock through the link either: it reports
    // the item failed, touches nothing of it, and goes on with the rest.
    let gc = env.run(&["gc", "--json"]);
    assert_eq!(gc.status.code(), Some(64), "{}", stderr(&gc));
    let failed = &json(&gc)["failed"];
    assert!(failed.to_string().contains("opening lock"), "{failed}");
    assert_eq!(snapshot(&victim), before, "gc followed the planted link");
    // A stale lock file with no record: gc removed the link itself.
    assert!(fs::symlink_metadata(env.state.join("locks/planted.lock")).is_err());
    let gc = env.run(&["gc", "--json"]);
    assert_eq!(gc.status.code(), Some(64), "{}", stderr(&gc));
    let failed = &json(&gc)["failed"];
    assert!(failed.to_string().contains("not followed"), "{failed}");
    assert_eq!(snapshot(&victim), before, "gc followed the planted link");

    fs::remove_file(env.state.join("tmp/planted")).unwrap();
    env.ok(&["gc"]);
    env.assert_clean();
}

/// A FIFO or a symlink planted under every name the tool keeps in the
/// state directory: no command hangs (each is killed after 10 s if it
/// does), none writes through a link, each says what is wrong or goes on.
#[test]
fn fifos_and_symlinks_at_every_state_file_name_never_hang() {
    for kind in ["fifo", "symlink"] {
        for name in [
            "lock",
            "features.json",
            "foreign-seen.json",
            "locks/ours.lock",
            "targets/INDEX",
            "mounts/planted.json",
        ] {
            let what = format!("{kind} at {name}");
            let env = Env::new();
            let layers = env.layers(2);
            let target = env.mkdir("mnt");
            mount_id(&env, &layers, "ours", &target);
            let victim = env.path("victim");
            fs::write(&victim, "keep\n").unwrap();
            let index = env.state_files("targets")[0].clone();
            let planted = env.state.join(name.replace("INDEX", &index));
            let _ = fs::remove_file(&planted);
            match kind {
                "fifo" => nix::unistd::mkfifo(&planted, nix::sys::stat::Mode::S_IRWXU).unwrap(),
                _ => symlink(&victim, &planted).unwrap(),
            }
            let other = env.mkdir("other");
            for args in [
                vec!["inspect"],
                vec!["inspect", "--leaks"],
                vec!["gc", "--dry-run"],
                vec![
                    "mount",
                    "--lowerdir",
                    &join(&layers),
                    "--uidmap",
                    MAP,
                    s(&other),
                ],
                vec!["umount", s(&target)],
                vec!["gc"],
            ] {
                let out = env
                    .ns
                    .command("timeout")
                    // SIGKILL: a process blocked in open(2) on a FIFO would
                    // shrug off timeout's SIGTERM (the tool catches it).
                    .args(["-s", "KILL", "10"])
                    .arg(BIN)
                    .args(&args)
                    .env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .unwrap();
                let code = out.status.code();
                assert!(code.is_some(), "{what}: {args:?} hung and was killed");
                // 3: `inspect --leaks` found some (the planted file).
                let leaks_found = args[..] == ["inspect", "--leaks"] && code == Some(3);
                assert!(
                    matches!(code, Some(0 | 1 | 16 | 32 | 64)) || leaks_found,
                    "{what}: {args:?} exited {code:?}: {}",
                    stderr(&out)
                );
                assert!(
                    stderr(&out).lines().count() <= 2,
                    "{what}: {args:?}: {}",
                    stderr(&out)
                );
                assert_eq!(
                    fs::read_to_string(&victim).unwrap(),
                    "keep\n",
                    "{what}: {args:?}"
                );
            }
            // Without the plant everything is cleaned up as usual.
            let _ = fs::remove_file(&planted);
            for t in [&target, &other] {
                let _ = env.run(&["umount", s(t)]);
            }
            env.ok(&["gc"]);
            assert!(env.our_mounts().is_empty(), "{what}");
        }
    }
}

/// A record whose id is not an id (here `..`, in `mounts/...json`, whose
/// name agrees) is a bad record: never turned into a path (`tmp/..` is the
/// state directory itself), never acted on.
#[test]
fn a_record_with_a_hostile_id_is_never_used_as_a_path() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let neighbour = env.mkdir("empty-neighbour");
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/inspect.json"))
            .unwrap();
    let listed: Value = serde_json::from_str(&text).unwrap();
    let mut record = listed["mounts"][3].clone();
    record.as_object_mut().unwrap().remove("health");
    record["id"] = "..".into();
    record["source"] = "idmap-overlay:..".into();
    record["state"] = "preparing".into();
    fs::write(env.state.join("mounts/...json"), record.to_string()).unwrap();
    let leaks = env.run(&["inspect", "--leaks"]);
    assert_eq!(leaks.status.code(), Some(3), "{}", stderr(&leaks));
    let said = String::from_utf8_lossy(&leaks.stdout);
    assert!(
        said.contains("bad-record") && said.contains("invalid id"),
        "{said}"
    );
    let gc = env.run(&["gc"]);
    assert_eq!(gc.status.code(), Some(64), "{}", stderr(&gc));
    assert!(
        neighbour.is_dir(),
        "gc removed a directory beside the state dir"
    );
    for sub in ["mounts", "locks", "tmp", "targets"] {
        assert!(env.state.join(sub).is_dir(), "gc removed state/{sub}");
    }
    assert!(env.state.join("mounts/...json").exists());
}

/// Whoever can write to a directory above the state directory could rename
/// it away and put their own in its place: such a parent (not sticky, or
/// not root's) is refused like the state directory itself.
#[test]
fn the_state_dirs_parents_are_checked_too() {
    let env = Env::new();
    let open = env.mkdir("open");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let theirs = env.mkdir("theirs");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let sticky = env.mkdir("sticky");
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    for (parent, says) in [
        (&open, "writable by others"),
        (&theirs, "owned by uid 65534"),
    ] {
        let state = parent.join("state");
        let out = env.run(&["--state-dir", s(&state), "gc"]);
        assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert!(!state.exists(), "the state dir was made under {parent:?}");
    }
    let state = sticky.join("state");
    env.ok(&["--state-dir", s(&state), "gc"]);
    assert!(state.is_dir());
}
