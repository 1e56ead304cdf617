//! Faults of the state filesystem: full (no space, no inodes) or read-only.
//! `mount` must fail with exit 16 before it mounts anything, and leave the
//! state as it was. (EBUSY on umount, held briefly or for good, is tested in
//! tests/cli/umount.rs: `busy_briefly_succeeds_by_retrying` and
//! `busy_for_good_names_the_holder`.)

use crate::support::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The state directory on a small tmpfs of its own, inside the namespace.
fn state_on_tmpfs(env: &Env, options: &str) {
    make_private_dir(&env.state);
    sh(
        env,
        &format!(
            "mount -t tmpfs -o mode=0700,{options} state-fs {}",
            s(&env.state)
        ),
    );
}

/// Fills the filesystem at `dir` (seen from the namespace) with one big
/// file: no space is left, inodes are (a lock file can be made, a record
/// cannot be written).
fn fill(env: &Env, dir: &Path) {
    let dir = env.ns.path(dir);
    let mut big = fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match big.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
}

fn unfill(env: &Env, dir: &Path) {
    for entry in fs::read_dir(env.ns.path(dir)).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        if name == "filler" || name.starts_with("inode-") {
            fs::remove_file(env.ns.path(&dir.join(&*name))).unwrap();
        }
    }
}

/// What the state tree holds, through the namespace (the tmpfs is there).
fn state_tree(env: &Env) -> Vec<PathBuf> {
    let root = env.ns.path(&env.state);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(&root).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// Runs a mount that must fail with 16, and checks it mounted nothing and
/// left the state as it found it.
fn mount_fails_cleanly(env: &Env, strategy: &str, says: &[&str], what: &str) {
    let layers = env.layers(2);
    let (upper, work, target) = (env.mkdir("upper"), env.mkdir("work"), env.mkdir("mnt"));
    let table = env.ns.mountinfo_text();
    // Empty but for the filler on first use.
    let tree = state_tree(env);
    let tree = if tree.iter().all(|p| p == Path::new("filler")) {
        Vec::new()
    } else {
        tree
    };
    let out = env.run(&[
        "mount",
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
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(16), "{what}/{strategy}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}/{strategy}: {err}");
    eprintln!("{what}/{strategy}: {}", err.trim());
    assert!(
        says.iter().any(|s| err.contains(s)),
        "{what}/{strategy}: want one of {says:?} in {err:?}"
    );
    assert_eq!(
        env.ns.mountinfo_text(),
        table,
        "{what}/{strategy}: a mount was made"
    );
    if tree.is_empty() {
        // First use: the tool made its directories (and its lock file) and
        // nothing else.
        for path in state_tree(env) {
            assert!(
                [
                    "filler", "mounts", "locks", "tmp", "targets", "probe", "probe/l1", "probe/l2",
                    // The (empty) global lock file, taken for the probe.
                    "lock",
                ]
                .iter()
                .any(|d| path == Path::new(d)),
                "{what}/{strategy}: left {}",
                path.display()
            );
        }
    } else {
        assert_eq!(
            state_tree(env),
            tree,
            "{what}/{strategy}: the state changed"
        );
    }
}

/// Only the state tmpfs is mounted in our directory, and no record, lock or
/// temp directory is left.
fn assert_only_the_state_fs(env: &Env) {
    let mounts: Vec<PathBuf> = env
        .our_mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .collect();
    assert_eq!(mounts, vec![env.state.clone()]);
    for sub in ["mounts", "tmp", "locks", "targets"] {
        assert_eq!(env.state_files(sub), Vec::<String>::new(), "state/{sub}");
    }
}

fn works_again(env: &Env) {
    let target = env.mkdir("mnt");
    let layers = env.layers(2);
    env.ok(&[
        "mount",
        "--lowerdir",
        &join(&layers),
        "--uidmap",
        "0:100000:65536",
        s(&target),
    ]);
    env.ok(&["umount", s(&target)]);
    assert_only_the_state_fs(env);
}

#[test]
fn a_full_state_filesystem_fails_before_mounting() {
    for strategy in strategies() {
        let env = Env::new();
        state_on_tmpfs(&env, "size=256k,nr_inodes=64");
        works_again(&env);
        fill(&env, &env.state);
        mount_fails_cleanly(&env, strategy, &["No space left on device"], "full");
        assert_only_the_state_fs(&env);
        unfill(&env, &env.state);
        works_again(&env);
    }
}

/// Space left for files but no inode: the lock file cannot be created.
#[test]
fn a_state_filesystem_without_inodes_fails_before_mounting() {
    let env = Env::new();
    state_on_tmpfs(&env, "size=1m,nr_inodes=64");
    works_again(&env);
    let dir = env.ns.path(&env.state);
    for i in 0.. {
        match fs::File::create(dir.join(format!("inode-{i}"))) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("{e}"),
        }
    }
    mount_fails_cleanly(&env, best(), &["No space left on device"], "no inodes");
    unfill(&env, &env.state);
    works_again(&env);
}

/// A full state filesystem on first use (no cached probe yet).
#[test]
fn a_full_state_filesystem_on_first_use_fails_before_mounting() {
    let env = Env::new();
    state_on_tmpfs(&env, "size=256k,nr_inodes=64");
    fill(&env, &env.state);
    mount_fails_cleanly(
        &env,
        "auto",
        &["No space left on device"],
        "full, first use",
    );
    unfill(&env, &env.state);
    works_again(&env);
}

#[test]
fn a_read_only_state_filesystem_fails_before_mounting() {
    for strategy in strategies() {
        let env = Env::new();
        state_on_tmpfs(&env, "size=1m");
        works_again(&env);
        sh(&env, &format!("mount -o remount,ro {}", s(&env.state)));
        mount_fails_cleanly(&env, strategy, &["Read-only file system"], "read-only");
        sh(&env, &format!("mount -o remount,rw {}", s(&env.state)));
        works_again(&env);
    }
}

/// Read-only before the state tree exists: it cannot even be created.
#[test]
fn a_read_only_empty_state_filesystem_fails_before_mounting() {
    let env = Env::new();
    state_on_tmpfs(&env, "size=1m,ro");
    mount_fails_cleanly(&env, "auto", &["Read-only file system"], "read-only, empty");
    sh(&env, &format!("mount -o remount,rw {}", s(&env.state)));
    works_again(&env);
}
