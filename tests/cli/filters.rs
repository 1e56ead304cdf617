//! `inspect`'s filters, findmnt's habits: by STATE, HEALTH, where the
//! target is, which mount namespace has the overlay, and which overlay
//! holds a file; `-J` honours `-o`, `-o +COL` adds to the defaults.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

/// Five overlays: `c1` and `c2` under `run/containers`, `c3` under
/// `run/containers-old` (a prefix that is not a parent), `d` read-write and
/// alive only in a copy of the namespace (unmounted here by umount(8)),
/// `e` unmounted by umount(8) before the copy was made (gone).
struct Host {
    env: Env,
    copy: Started,
    ids: std::collections::BTreeMap<&'static str, String>,
    targets: std::collections::BTreeMap<&'static str, PathBuf>,
}

fn host() -> Host {
    let env = Env::new();
    let layers = env.layers(2);
    let mut ids = std::collections::BTreeMap::new();
    let mut targets = std::collections::BTreeMap::new();
    for (name, rel) in [
        ("c1", "run/containers/c1/rootfs"),
        ("c2", "run/containers/c2/rootfs"),
        ("c3", "run/containers-old/c3/rootfs"),
        ("d", "mnt/d"),
        ("e", "mnt/e"),
    ] {
        let target = env.mkdir(rel);
        let mut args = mount_args(best(), &layers, &target);
        if name == "d" {
            let (upper, work) = (env.mkdir("d-upper"), env.mkdir("d-work"));
            args.pop();
            args.extend([
                "--upperdir".into(),
                s(&upper).into(),
                "--workdir".into(),
                s(&work).into(),
                s(&target).into(),
            ]);
        }
        ids.insert(name, env.ok(&args).trim().to_string());
        targets.insert(name, target);
    }
    env.plain_umount(&targets["e"]);
    let mut cmd = env.ns.command("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sleep", "infinity"])
        .stdin(Stdio::null());
    let copy = Started(cmd.spawn().unwrap());
    let ours = std::fs::read_link(format!("/proc/{}/ns/mnt", env.ns.pid())).unwrap();
    for _ in 0..5000 {
        let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", copy.pid())).ok();
        let command = std::fs::read_to_string(format!("/proc/{}/comm", copy.pid()));
        if theirs.is_some_and(|t| t != ours) && command.is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    env.plain_umount(&targets["d"]);
    Host {
        env,
        copy,
        ids,
        targets,
    }
}

impl Host {
    /// The names of the overlays `inspect ARGS` lists (whole ids, raw).
    fn listed(&self, args: &[&str]) -> BTreeSet<&'static str> {
        let mut all = vec!["inspect", "-r", "-n", "-o", "ID"];
        all.extend(args);
        let out = self.env.ok(&all);
        out.lines().map(|id| self.name_of(id)).collect()
    }

    fn name_of(&self, id: &str) -> &'static str {
        self.ids
            .iter()
            .find(|(_, i)| *i == id)
            .unwrap_or_else(|| panic!("{id} is none of ours"))
            .0
    }
}

/// The tool run from `dir` in `env`'s namespace (nsenter itself starts at
/// the namespace's root).
fn in_dir(env: &Env, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = env.ns.command("sh");
    cmd.args(["-c", "cd \"$0\" && exec \"$@\"", s(dir), BIN])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .stdin(Stdio::null());
    cmd.output().unwrap()
}

fn set(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

#[test]
fn filters_by_state_health_place_namespace_and_file() {
    let host = host();
    let env = &host.env;
    let all = set(&["c1", "c2", "c3", "d", "e"]);
    assert_eq!(host.listed(&[]), all);
    // STATE and HEALTH, by the table's own words, lists allowed.
    assert_eq!(host.listed(&["--state", "unmounted"]), set(&["e"]));
    assert_eq!(
        host.listed(&["--state", "mounted"]),
        set(&["c1", "c2", "c3", "d"])
    );
    assert_eq!(host.listed(&["--health", "elsewhere"]), set(&["d"]));
    assert_eq!(
        host.listed(&["--health", "ok,leaked"]),
        set(&["c1", "c2", "c3", "e"])
    );
    // --under: whole components, absolute or from the current directory.
    let containers = env.path("run/containers");
    assert_eq!(
        host.listed(&["--under", s(&containers)]),
        set(&["c1", "c2"])
    );
    assert_eq!(
        host.listed(&["--under", &format!("{}/", s(&containers))]),
        set(&["c1", "c2"])
    );
    let relative = in_dir(
        env,
        env.dir.path(),
        &[
            "inspect",
            "-r",
            "-n",
            "-o",
            "ID",
            "--under",
            "run/containers",
        ],
    );
    assert!(relative.status.success(), "{}", stderr(&relative));
    assert_eq!(
        String::from_utf8(relative.stdout).unwrap().lines().count(),
        2
    );
    assert_eq!(
        host.listed(&["--under", s(&env.path("mnt")), "--health", "elsewhere"]),
        set(&["d"])
    );
    assert_eq!(host.listed(&["--under", s(&env.path("nothing"))]), set(&[]));
    let dotdot = env.run(&["inspect", "--under", "/run/../run"]);
    assert_eq!(dotdot.status.code(), Some(1), "{}", stderr(&dotdot));
    // --namespace: what that namespace has mounted, by the superblock.
    let here = env.ns.pid().to_string();
    assert_eq!(
        host.listed(&["--namespace", &here]),
        set(&["c1", "c2", "c3"])
    );
    let copy = host.copy.pid();
    assert_eq!(
        host.listed(&["--namespace", &copy.to_string()]),
        set(&["c1", "c2", "c3", "d"])
    );
    assert_eq!(
        host.listed(&[
            "--namespace",
            &format!("/proc/{copy}/ns/mnt"),
            "--state",
            "mounted",
            "--under",
            s(&env.path("mnt"))
        ]),
        set(&["d"])
    );
    for bad in ["999999999", "/etc/hostname", "/proc/self/ns/net"] {
        let out = env.run(&["inspect", "--namespace", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{bad}: {}", stderr(&out));
    }
    // -T: the overlay that holds a file, also by a relative path.
    let file = host.targets["c2"].join("shared");
    assert_eq!(host.listed(&["-T", s(&file)]), set(&["c2"]));
    let relative = in_dir(
        env,
        env.dir.path(),
        &[
            "inspect",
            "-r",
            "-n",
            "-o",
            "ID",
            "-T",
            "run/containers/c1/rootfs/shared",
        ],
    );
    assert!(relative.status.success(), "{}", stderr(&relative));
    assert_eq!(
        String::from_utf8(relative.stdout).unwrap().trim(),
        host.ids["c1"]
    );
    let outside = env.run(&["inspect", "-T", s(&env.path("layers/1/fs/shared"))]);
    assert_eq!(outside.status.code(), Some(1));
    assert!(
        stderr(&outside).contains("on no overlay of ours"),
        "{}",
        stderr(&outside)
    );
    // -J with the same filters lists the same records.
    let json: Value =
        serde_json::from_str(&env.ok(&["inspect", "-J", "--health", "ok,elsewhere"])).unwrap();
    let listed: BTreeSet<&str> = json["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| host.name_of(m["id"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, set(&["c1", "c2", "c3", "d"]));
    // Filters are for the list: not with one overlay, --leaks or metrics.
    for args in [
        &["inspect", "--health", "ok", "c1"][..],
        &["inspect", "--leaks", "--state", "mounted"],
        &["inspect", "--format", "prometheus", "--under", "/run"],
        &["inspect", "--state", "exploded"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn json_honours_the_columns_and_plus_adds_to_the_defaults() {
    let env = Env::new();
    let layers = env.layers(3);
    let target = env.mkdir("mnt");
    let id = env.ok(&mount_args(best(), &layers, &target));
    let id = id.trim();
    let json: Value =
        serde_json::from_str(&env.ok(&["inspect", "-J", "-o", "ID,TARGET,LAYERS,UPPER"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "version": 1,
            "mounts": [{"id": id, "target": s(&target), "layers": 3, "upper": null}],
        })
    );
    let leaks: Value =
        serde_json::from_str(&env.ok(&["inspect", "--leaks", "-J", "-o", "KIND,PATH"])).unwrap();
    assert_eq!(leaks, serde_json::json!({"version": 1, "leaks": []}));
    let table = env.ok(&["inspect", "-o", "+MAPS,DEV"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "TARGET", "STRATEGY", "LAYERS", "STATE", "AGE", "HEALTH", "MAPS", "DEV"
        ]
    );
}
