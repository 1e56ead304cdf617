//! `inspect` on a busy host fits the width it is given, and still tells
//! overlays apart: 150 real overlays of 3 to 10 layers, various maps, with
//! containerd's and podman's long targets, some unmounted behind the
//! tool's back, some alive only in another mount namespace, some detached.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

/// How many overlays the host has.
const OVERLAYS: usize = 150;

/// A 64-digit hex id, different from its neighbours at both ends, like
/// the ids containerd and podman put in their paths.
fn container_id(n: usize) -> String {
    let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..4)
        .map(|_| {
            x ^= x >> 29;
            x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
            format!("{x:016x}")
        })
        .collect()
}

/// The host: every overlay mounted by the tool; then 5 unmounted behind
/// its back (gone: leaked), then a copy of the mount namespace (a
/// container's), then 10 read-write ones unmounted here with plain
/// umount(8) (alive elsewhere) and 2 by `umount --detach` (detached).
struct Host {
    env: Env,
    /// Keeps the copied namespace, with its copies of the overlays.
    _copy: Started,
    /// Every record's (id, target), from `inspect -J`.
    records: Vec<(String, String)>,
}

fn busy_host() -> Host {
    let env = Env::new();
    let layers = env.layers(10);
    let mut read_write = Vec::new();
    let mut targets = Vec::new();
    for n in 0..OVERLAYS {
        let target = match n % 3 {
            0 => format!(
                "run/containerd/io.containerd.runtime.v2.task/k8s.io/{}/rootfs",
                container_id(n)
            ),
            1 => format!(
                "var/lib/containers/storage/overlay/{}/merged",
                container_id(n)
            ),
            _ => format!("mnt/c{n}"),
        };
        let target = env.mkdir(&target);
        let lower = &layers[..3 + n % 8];
        let mut args = mount_args(best(), lower, &target);
        args.pop();
        args[6] = format!("0:{}:65536", 100_000 + 65_536 * n);
        if n % 4 == 0 {
            args.extend(["--gidmap".into(), format!("0:{}:1000", 200_000 + n)]);
        }
        if n % 15 == 1 {
            let upper = env.mkdir(&format!("rw/{n}/upper"));
            let work = env.mkdir(&format!("rw/{n}/work"));
            args.extend([
                "--upperdir".into(),
                s(&upper).into(),
                "--workdir".into(),
                s(&work).into(),
            ]);
            read_write.push(target.clone());
        }
        args.push(s(&target).into());
        env.ok(&args);
        targets.push(target);
    }
    // Gone: unmounted behind our back before any copy was made.
    for target in targets.iter().skip(2).step_by(30) {
        env.plain_umount(target);
    }
    let copy = copy_namespace(&env);
    // Alive only in the copy: the kernel says their upperdir is in use.
    for target in &read_write {
        env.plain_umount(target);
    }
    // Detached: unmounted here by the tool, living on in the copy.
    for target in targets.iter().skip(5).step_by(75) {
        env.ok(&["umount", "--detach", s(target)]);
    }
    let all: Value = serde_json::from_str(&env.ok(&["inspect", "-J"])).unwrap();
    let records = all["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_string(),
                m["target"].as_str().unwrap().to_string(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(records.len(), OVERLAYS);
    Host {
        env,
        _copy: copy,
        records,
    }
}

/// A process in a copy of `env`'s mount namespace (as a container runtime
/// makes one), running until dropped.
fn copy_namespace(env: &Env) -> Started {
    let mut cmd = env.ns.command("unshare");
    cmd.args(["-m", "--propagation", "private", "--", "sleep", "infinity"])
        .stdin(Stdio::null());
    let copy = Started(cmd.spawn().unwrap());
    let ours = std::fs::read_link(format!("/proc/{}/ns/mnt", env.ns.pid())).unwrap();
    for _ in 0..5000 {
        // nsenter first, then unshare: wait for the namespace of the
        // sleep that unshare execs.
        let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", copy.pid())).ok();
        let command = std::fs::read_to_string(format!("/proc/{}/comm", copy.pid()));
        if theirs.is_some_and(|t| t != ours) && command.is_ok_and(|c| c.trim() == "sleep") {
            return copy;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("the copy of the namespace never started");
}

impl Host {
    fn full_ids(&self) -> Vec<&str> {
        self.records.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The record whose id starts with `shown`: exactly one.
    fn id_of(&self, shown: &str) -> &str {
        let matches: Vec<&str> = self
            .full_ids()
            .into_iter()
            .filter(|id| id.starts_with(shown))
            .collect();
        assert_eq!(matches.len(), 1, "{shown} matches {matches:?}");
        matches[0]
    }

    /// The record whose target ends as `shown` does (after a `…`), or is it.
    fn target_of(&self, shown: &str) -> &str {
        let matches: Vec<&str> = self
            .records
            .iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| match shown.strip_prefix('…') {
                Some(end) => t.ends_with(end),
                None => *t == shown,
            })
            .collect();
        assert_eq!(matches.len(), 1, "{shown} matches {matches:?}");
        matches[0]
    }
}

fn widest(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// The table at a width: no line wider, every row one overlay, told apart
/// by its (short) id and its (cut) target.
fn check_table(host: &Host, text: &str, width: Option<usize>) {
    if let Some(width) = width {
        assert!(widest(text) <= width, "wider than {width}:\n{text}");
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header[..2], ["ID", "TARGET"], "{text}");
    let health = header.iter().position(|h| *h == "HEALTH").unwrap();
    let mut ids = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let mut words = BTreeSet::new();
    for line in lines {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let id = host.id_of(cells[0]);
        let target = host.target_of(cells[1]);
        match width {
            Some(_) => assert!(cells[0].len() < id.len(), "{line}"),
            None => assert_eq!((cells[0], cells[1]), (id, target), "a pipe cuts nothing"),
        }
        assert!(ids.insert(id), "{id} twice:\n{text}");
        assert!(targets.insert(target), "{target} twice:\n{text}");
        words.insert(cells[health].to_string());
    }
    assert_eq!(ids.len(), OVERLAYS);
    for word in ["ok", "leaked", "elsewhere"] {
        assert!(words.contains(word), "no {word} row: {words:?}");
    }
}

#[test]
fn a_busy_host_fits_every_width_and_tells_overlays_apart() {
    let started = std::time::Instant::now();
    let host = busy_host();
    let env = &host.env;
    let built = started.elapsed();
    for width in [60, 80, 200] {
        let w = width.to_string();
        let text = env.ok(&["inspect", "--width", &w]);
        check_table(&host, &text, Some(width));
        // -o chosen columns lose none; the defaults may leave some out.
        let chosen = env.ok(&["inspect", "--width", &w, "-o", "ID,TARGET,HEALTH"]);
        check_table(&host, &chosen, Some(width));
        // Exit 3: leaks found (the fixture has some).
        let out = env.run(&["inspect", "--leaks", "--width", &w]);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let leaks = String::from_utf8(out.stdout).unwrap();
        assert!(widest(&leaks) <= width, "--leaks at {width}:\n{leaks}");
        assert!(leaks.contains("vanished-overlay"), "{leaks}");
        // The detail of an overlay alive elsewhere, and of a gone one.
        for (id, _) in host.records.iter().step_by(37) {
            let detail = env.ok(&["inspect", "--width", &w, id]);
            assert!(widest(&detail) <= width, "{id} at {width}:\n{detail}");
        }
    }
    // In a pipe nothing is cut, whatever COLUMNS says (it is the
    // terminal's, and only a terminal's).
    let mut piped = env.tool(&["inspect"]);
    let piped = piped.env("COLUMNS", "60").output().unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    let piped = String::from_utf8(piped.stdout).unwrap();
    check_table(&host, &piped, None);
    assert!(widest(&piped) > 200, "{piped}");
    // --no-trunc: whole ids even where a width is known.
    let whole = env.ok(&["inspect", "--no-trunc", "-n", "-o", "ID"]);
    let mut listed: Vec<&str> = whole.lines().collect();
    listed.sort();
    let mut ids = host.full_ids();
    ids.sort();
    assert_eq!(listed, ids);
    eprintln!(
        "table: {OVERLAYS} overlays built in {built:?}, all checked in {:?}",
        started.elapsed()
    );
}

/// On a terminal, the width is the terminal's (TIOCGWINSZ on stdout), or
/// COLUMNS when it is set.
#[test]
fn a_terminal_gives_its_width() {
    let env = busy_host_small();
    for (stty, columns, width) in [("60", None, 60), ("200", Some("70"), 70)] {
        // script(1) gives the tool a terminal of its own.
        let mut cmd: Command = env.ns.command("script");
        cmd.args([
            "-qec",
            &format!("stty cols {stty} rows 50 && exec '{BIN}' inspect"),
            "/dev/null",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null());
        if let Some(columns) = columns {
            cmd.env("COLUMNS", columns);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        assert!(out.status.success(), "{text}{}", stderr(&out));
        assert!(text.starts_with("ID "), "{text}");
        assert!(widest(&text) <= width, "wider than {width}:\n{text}");
        assert!(text.contains('…'), "nothing cut at {width}:\n{text}");
    }
}

/// Twelve overlays on long containerd targets: enough to cut.
fn busy_host_small() -> Env {
    let env = Env::new();
    let layers = env.layers(3);
    for n in 0..12 {
        let target = env.mkdir(&format!(
            "run/containerd/io.containerd.runtime.v2.task/k8s.io/{}/rootfs",
            container_id(n)
        ));
        env.ok(&mount_args(best(), &layers, &target));
    }
    env
}
