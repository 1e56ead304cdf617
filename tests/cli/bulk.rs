//! `umount A B C` and `umount --all`, umount(8)'s habits: each overlay as
//! if alone, the rest still going when one fails, mount(8)'s exit status
//! for several (0 all, 64 some failed, the shared code when all failed),
//! and `--all` taking the rows `inspect` lists with the same filters.

use crate::support::*;
use std::path::PathBuf;

/// `names` mounted, each at `mnt/NAME` on the same two layers: their
/// (target, id).
fn mounted(env: &Env, names: &[&str]) -> Vec<(PathBuf, String)> {
    let layers = env.layers(2);
    names
        .iter()
        .map(|name| {
            let target = env.mkdir(&format!("mnt/{name}"));
            let id = env.ok(&mount_args(best(), &layers, &target));
            (target, id.trim().to_string())
        })
        .collect()
}

fn mounted_here(env: &Env, target: &PathBuf) -> bool {
    env.our_mounts().iter().any(|m| m.mount_point == *target)
}

fn recorded(env: &Env, id: &str) -> bool {
    env.state.join(format!("mounts/{id}.json")).exists()
}

#[test]
fn several_targets_and_ids_each_as_if_alone() {
    let env = Env::new();
    let all = mounted(&env, &["a", "b", "c"]);
    // By target, by id, by id prefix: all three, silently, exit 0.
    let out = env.run(&["umount", s(&all[0].0), &all[1].1, &all[2].1[..12]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    env.assert_clean();
}

#[test]
fn an_unknown_one_among_good_ones_is_told_and_the_rest_go() {
    let env = Env::new();
    let all = mounted(&env, &["a", "b"]);
    let out = env.run(&["umount", &all[0].1, "no-such-id", s(&all[1].0)]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no-such-id: no idmap-overlay record"), "{err}");
    env.assert_clean();
    // All failed, with one code: that code; with several: 32.
    let out = env.run(&["umount", "no-such-id", "nor-this-one"]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 2, "{}", stderr(&out));
    let out = env.run(&["umount", "bad id!", "--timeout", "0", "nor-this-one"]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    let out = env.run(&["umount", "bad id!", "worse id!"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn a_busy_one_fails_alone() {
    let env = Env::new();
    let all = mounted(&env, &["a", "busy", "c"]);
    let mut holder = hold_busy(&env, &all[1].0, "60");
    let out = env.run(&[
        "umount",
        "--timeout",
        "200ms",
        s(&all[0].0),
        s(&all[1].0),
        s(&all[2].0),
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("pid {}", holder.id())), "{err}");
    assert!(!mounted_here(&env, &all[0].0) && !mounted_here(&env, &all[2].0));
    assert!(mounted_here(&env, &all[1].0) && recorded(&env, &all[1].1));
    // --all the same way: what can go goes, the busy one stays.
    let more = mounted(&env, &["d"]);
    let out = env.run(&["umount", "--all", "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        said,
        format!("{} ({}): unmounted\n", s(&more[0].0), more[0].1),
        "{}",
        stderr(&out)
    );
    assert!(mounted_here(&env, &all[1].0));
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.ok(&["umount", "--all"]);
    env.assert_clean();
}

#[test]
fn all_takes_what_the_filters_keep() {
    let env = Env::new();
    let all = mounted(&env, &["ok", "gone-1", "gone-2", "kept"]);
    for gone in &all[1..3] {
        env.plain_umount(&gone.0);
    }
    // A dry run says what would go, and leaves everything.
    let out = env.ok(&["umount", "--all", "--health", "leaked", "--dry-run"]);
    let mut said: Vec<&str> = out.lines().collect();
    said.sort();
    let mut want: Vec<String> = all[1..3]
        .iter()
        .map(|(t, id)| format!("{} ({id}): would be unmounted", s(t)))
        .collect();
    want.sort();
    assert_eq!(said, want);
    assert!(all.iter().all(|(_, id)| recorded(&env, id)));
    // The same for real: the records of the two gone, nothing else.
    let out = env.run(&["umount", "--all", "--health", "leaked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert!(!recorded(&env, &all[1].1) && !recorded(&env, &all[2].1));
    assert!(mounted_here(&env, &all[0].0) && mounted_here(&env, &all[3].0));
    // --under: whole components.
    let out = env.ok(&["umount", "--all", "--under", s(&all[3].0)]);
    assert_eq!(out, format!("{} ({}): unmounted\n", s(&all[3].0), all[3].1));
    assert!(mounted_here(&env, &all[0].0));
    // Nothing matches: a warning, nothing done, exit 0.
    let out = env.run(&["umount", "--all", "--state", "detached"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("nothing unmounted"),
        "{}",
        stderr(&out)
    );
    assert!(mounted_here(&env, &all[0].0));
    env.ok(&["umount", "--all"]);
    env.assert_clean();
}

/// An overlay mounted inside another's target goes first, as umount(8) -a
/// goes deepest first: the other would be busy otherwise.
#[test]
fn all_goes_deepest_first() {
    let env = Env::new();
    let layers = env.layers(2);
    std::fs::create_dir(layers[0].join("inner")).unwrap();
    let outer = env.mkdir("outer");
    env.ok(&mount_args(best(), &layers, &outer));
    let inner = outer.join("inner");
    let id = env.ok(&mount_args(best(), &layers, &inner));
    // Older on paper than the overlay it is mounted in: the depth decides,
    // not the time.
    let record = env.state.join(format!("mounts/{}.json", id.trim()));
    let text = std::fs::read_to_string(&record).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["created"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(&record, json.to_string()).unwrap();
    let out = env.run(&["umount", "--all", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.starts_with(&format!("{} (", s(&inner))), "{said}");
    env.assert_clean();
}

#[test]
fn bulk_usage_errors() {
    let env = Env::new();
    let all = mounted(&env, &["a"]);
    for args in [
        &["umount"][..],
        &["umount", "--health", "leaked"],
        &["umount", "--health", "leaked", &all[0].1],
        &["umount", "--dry-run", &all[0].1],
        &["umount", "--all", &all[0].1],
        &["umount", "--all", "--state", "exploded"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(mounted_here(&env, &all[0].0));
    env.ok(&["umount", &all[0].1]);
    env.assert_clean();
}

/// A signal stops the run where it is (exit 8): the overlay in hand is
/// left as a lone umount leaves it, the rest are not tried, and one line
/// says so.
#[test]
fn a_signal_stops_the_rest() {
    use std::io::{BufRead, BufReader, Read, Write};
    let env = Env::new();
    let all = mounted(&env, &["a", "b"]);
    let mut child = env
        .tool(&["umount", s(&all[0].0), s(&all[1].0)])
        .env("IDMAP_OVERLAY_TESTPOINT", "record-unmounting:pause")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child_err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("testpoint ") {
        line.clear();
        assert_ne!(child_err.read_line(&mut line).unwrap(), 0, "never paused");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let mut err = String::new();
    child_err.read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(8), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("0 of 2 unmounted, the rest not tried"),
        "{err}"
    );
    assert!(mounted_here(&env, &all[0].0) && mounted_here(&env, &all[1].0));
    env.ok(&["umount", "--all"]);
    env.assert_clean();
}
