//! The library as a container runtime would use it: from many threads of
//! one process at once, through the public API only.
//!
//! The test re-runs itself under `unshare -m --propagation private` (its
//! mounts stay in that namespace, and every thread of the child shares it,
//! so `/proc/self/mountinfo` shows what the threads mount).

use idmap_overlay::{
    Cancel, ErrorKind, IdRange, Maps, MountRequest, RecordState, StateDir, Strategy,
};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CHILD: &str = "IDMAP_OVERLAY_API_TEST_CHILD";
const THREADS: usize = 16;
const CYCLES: usize = 5;

/// Runs `name` again in a private mount namespace; true in that child.
fn in_private_namespace(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .status()
        .expect("running unshare (util-linux)");
    assert!(
        status.success(),
        "{name} in a private mount namespace: {status}"
    );
    false
}

fn shift() -> Maps {
    let map = vec![IdRange {
        container: 0,
        host: 100_000,
        size: 65_536,
    }];
    Maps::Ranges {
        uid: map.clone(),
        gid: map,
    }
}

/// Two layers (top first) under `dir/layers`, each with a file owned by
/// uid 0 and one of its own.
fn layers(dir: &Path) -> Vec<PathBuf> {
    (1..=2)
        .rev()
        .map(|n| {
            let layer = dir.join(format!("layers/l{n}"));
            std::fs::create_dir_all(&layer).unwrap();
            std::fs::write(layer.join("shared"), format!("layer {n}")).unwrap();
            std::fs::write(layer.join(format!("only-{n}")), "").unwrap();
            layer
        })
        .collect()
}

fn our_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("idmap-overlay"))
        .map(String::from)
        .collect()
}

#[test]
fn sixteen_threads_mount_and_unmount_through_the_api() {
    if !in_private_namespace("sixteen_threads_mount_and_unmount_through_the_api") {
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts for real and must run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let state_root = dir.path().join("state");
    let cwd = std::env::current_dir().unwrap();
    let strategies = [
        Strategy::Detached,
        Strategy::CommonDir,
        Strategy::PerLayer,
        Strategy::Auto,
    ];
    std::thread::scope(|scope| {
        for n in 0..THREADS {
            let (dir, state_root) = (dir.path(), &state_root);
            let strategy = strategies[n % strategies.len()];
            scope.spawn(move || {
                // Each thread its own layers (so common-dir has a parent
                // of its own) and its own target.
                let mine = dir.join(format!("t{n}"));
                let lowers = layers(&mine);
                let target = mine.join("mnt");
                std::fs::create_dir(&target).unwrap();
                for cycle in 0..CYCLES {
                    let mut req = MountRequest::new(&target, &lowers, shift());
                    req.strategy = strategy;
                    let record = idmap_overlay::mount(&req, state_root)
                        .unwrap_or_else(|e| panic!("thread {n} cycle {cycle} {strategy:?}: {e}"));
                    assert_eq!(record.state, RecordState::Mounted);
                    // Seen through the overlay: the top layer's file, owned
                    // by the shifted id.
                    let shared = target.join("shared");
                    assert_eq!(std::fs::read_to_string(&shared).unwrap(), "layer 2");
                    assert_eq!(std::fs::metadata(&shared).unwrap().uid(), 100_000);
                    assert!(target.join("only-1").exists());
                    let state = StateDir::open(state_root).unwrap();
                    let by = if cycle % 2 == 0 {
                        record.id.clone()
                    } else {
                        target.display().to_string()
                    };
                    idmap_overlay::umount(&state, &by, Duration::from_secs(10), false)
                        .unwrap_or_else(|e| panic!("thread {n} cycle {cycle}: umount: {e}"));
                    assert!(!target.join("shared").exists(), "thread {n}: still mounted");
                }
            });
        }
    });
    assert_eq!(our_mounts(), Vec::<String>::new(), "nothing left mounted");
    let state = StateDir::open(&state_root).unwrap();
    let (records, bad) = state.records().unwrap();
    assert!(records.is_empty() && bad.is_empty(), "{records:?} {bad:?}");
    let temps: Vec<_> = std::fs::read_dir(state_root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(temps.is_empty(), "temporary directories left: {temps:?}");
    // No process-wide side effect: the working directory is where it was.
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    // And nothing for gc to find.
    let snapshot = idmap_overlay::ops::cleanup::gather(
        &state,
        Vec::new(),
        Duration::ZERO,
        false,
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(idmap_overlay::ops::leaks::classify(&snapshot).is_empty());
}

/// A raised [`Cancel`] stops a mount before it starts and leaves nothing;
/// bad input is refused with its kind and path, before anything is made.
#[test]
fn cancelled_and_invalid_requests_leave_nothing() {
    if !in_private_namespace("cancelled_and_invalid_requests_leave_nothing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_root = dir.path().join("state");
    let lowers = layers(dir.path());
    let target = dir.path().join("mnt");
    std::fs::create_dir(&target).unwrap();

    let mut req = MountRequest::new(&target, &lowers, shift());
    req.cancel = Cancel::new();
    req.cancel.cancel();
    let err = idmap_overlay::mount(&req, &state_root).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(our_mounts(), Vec::<String>::new());
    let (records, _) = StateDir::open(&state_root).unwrap().records().unwrap();
    assert!(records.is_empty(), "{records:?}");

    let missing = dir.path().join("no-such-layer");
    let req = MountRequest::new(&target, [&lowers[0], &missing], shift());
    let fresh_state = dir.path().join("state-2");
    let err = idmap_overlay::mount(&req, &fresh_state).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.errno(), Some(nix::libc::ENOENT), "{err}");
    assert_eq!(err.path(), Some(missing.as_path()), "{err}");
    assert!(
        !fresh_state.exists(),
        "bad input created the state directory"
    );
}
