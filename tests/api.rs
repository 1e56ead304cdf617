//! The library as a container runtime would use it: from many threads of
//! one process at once, through the public API only; and every item of
//! that API (docs/API.md) used at least once.
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
    let snapshot =
        idmap_overlay::gather(&state, &[], Duration::ZERO, false, Duration::from_secs(5)).unwrap();
    assert!(idmap_overlay::classify(&snapshot).is_empty());
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

/// Every public item, in the life of one overlay: built from a `-o`
/// string, mounted, looked at, leaked on purpose, found and cleaned.
#[test]
fn every_item_of_the_api_in_one_life() {
    use idmap_overlay::{
        Action, Atime, BadRecord, DEFAULT_STATE_DIR, DEFAULT_TIMEOUT, Elsewhere, Error, Features,
        Finding, FindingKind, Health, KernelIdmaps, MountOptions, Record, Report, ReportItem,
        Result, Snapshot, VfsFlags, Watch,
    };
    if !in_private_namespace("every_item_of_the_api_in_one_life") {
        return;
    }
    assert_eq!(DEFAULT_STATE_DIR, "/run/idmap-overlay");
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_millis(2500));
    let dir = tempfile::tempdir().unwrap();
    let state_root = dir.path().join("state");
    let lowers = layers(dir.path());
    let target = dir.path().join("mnt");
    let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
    for d in [&target, &upper, &work] {
        std::fs::create_dir(d).unwrap();
    }

    // From containerd's option string.
    let text = format!(
        "lowerdir={},upperdir={},workdir={},uidmap=0:100000:65536,nosuid,noatime,index=off,nofail",
        lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        upper.display(),
        work.display()
    );
    assert!(MountOptions::split(&text).unwrap().len() >= 7);
    assert!(MountOptions::is_fstab_only("nofail"));
    let options = MountOptions::parse(&text).unwrap();
    let lowerdirs = options.lowerdirs.clone().unwrap();
    assert_eq!(
        MountOptions::split_lowerdirs(&lowerdirs.join(":")).unwrap(),
        lowerdirs
    );
    let flags: VfsFlags = options.flags;
    assert!(flags.nosuid && flags.atime == Some(Atime::Noatime));
    let uid = options.uidmap.clone().unwrap();
    IdRange::check_list(&uid).unwrap();
    assert_eq!(IdRange::list_to_string(&uid), "0:100000:65536");
    assert_eq!(IdRange::parse("0:100000:65536").unwrap(), uid[0]);
    assert_eq!(IdRange::parse_list("0:100000:65536").unwrap(), uid);
    let mut req = MountRequest::new(
        &target,
        &lowerdirs,
        Maps::Ranges {
            uid: uid.clone(),
            gid: uid,
        },
    );
    req.upperdir = options.upperdir.map(PathBuf::from);
    req.workdir = options.workdir.map(PathBuf::from);
    req.options = options.passthrough;
    req.flags = flags;
    req.strategy = Strategy::Auto;
    let record: Record = idmap_overlay::mount(&req, &state_root).unwrap();
    assert_eq!(record.state, RecordState::Mounted);

    // What this kernel can do, probed for real.
    let state = StateDir::open(&state_root).unwrap();
    let features: Features = {
        let _all = state.lock_all().unwrap();
        idmap_overlay::probe_features(&state).unwrap()
    };
    assert!(features.idmapped_mounts, "{features:?}");
    // mount cached this boot's probe; reading it probes and writes nothing.
    let cached = Features::cached(&state).expect("mount cached the probe");
    assert_eq!(cached.detached, features.detached);

    // Looked at: healthy, found by target and by id prefix.
    let mut snap: Snapshot =
        idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, DEFAULT_TIMEOUT)
            .unwrap();
    assert_eq!(snap.find(&record.id[..8]).unwrap().id, record.id);
    let found = snap.find(&target.display().to_string()).unwrap().clone();
    snap.look_for_copies(&found.id, DEFAULT_TIMEOUT);
    let health: Health = snap.health(&found);
    assert_eq!(health.word(), "ok");
    // Which overlay holds a file (findmnt -T), which a namespace has.
    let holder = snap.holding(&target.join("shared")).unwrap();
    assert_eq!(holder.map(|r| r.id.as_str()), Some(record.id.as_str()));
    assert_eq!(snap.holding(&lowers[0]).unwrap(), None);
    let here = snap
        .mounted_in_namespace(Path::new("/proc/self/ns/mnt"))
        .unwrap();
    assert!(here.contains(&record.id), "{here:?}");
    let copies: &[Elsewhere] = &health.elsewhere;
    assert!(copies.is_empty(), "{copies:?}");
    match health.kernel_idmaps() {
        // Detached keeps no idmapped mount attached; common-dir's is gone.
        KernelIdmaps::NothingAttached => {}
        other => panic!("{other:?}"),
    }
    let none: Vec<Finding> = idmap_overlay::classify(&snap);
    assert!(none.is_empty(), "{none:?}");

    // A record file that is no record: reported, never acted on.
    std::fs::write(state_root.join("mounts/broken.json"), "{").unwrap();
    let (_, bad): (Vec<Record>, Vec<BadRecord>) = state.records().unwrap();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].id(), "broken");
    assert!(bad[0].problem.contains("not valid JSON"), "{bad:?}");
    let snap =
        idmap_overlay::gather(&state, &[], Duration::from_secs(60), true, DEFAULT_TIMEOUT).unwrap();
    assert_eq!(snap.bad_records, bad);
    let err = snap.find("broken").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State, "{err}");
    let findings = idmap_overlay::classify(&snap);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].kind, FindingKind::BadRecord);
    assert_eq!(findings[0].action, Action::None);
    let report: Report = idmap_overlay::collect(&state, &snap, false, DEFAULT_TIMEOUT).unwrap();
    let failed: &[ReportItem] = &report.failed;
    assert_eq!(failed.len(), 1, "{report:?}");
    std::fs::remove_file(state_root.join("mounts/broken.json")).unwrap();

    // A file other programs read, written whole.
    let metrics = dir.path().join("out.prom");
    idmap_overlay::write_file(&metrics, b"x 1\n", 0o644).unwrap();
    assert_eq!(std::fs::read(&metrics).unwrap(), b"x 1\n");

    // Entering a mount namespace (ours, from a thread that may).
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
        idmap_overlay::enter_mount_namespace(Path::new("/proc/self/ns/mnt")).unwrap();
    })
    .join()
    .unwrap();

    // Errors carry their kind: an unknown id.
    let unknown: Result<()> = idmap_overlay::umount(&state, "nosuchid", DEFAULT_TIMEOUT, false);
    let err: Error = unknown.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Mount, "{err}");

    // Watched, and unmounted behind the library's back: the watch wakes,
    // names the overlay that died, and the kernel is asked about it only
    // when asked.
    let mut watch: Watch = Watch::new(&state).unwrap();
    assert!(["fanotify", "mountinfo"].contains(&watch.mount_events()));
    assert!(watch.watch_overlay(&record));
    assert!(
        !watch.wait(Duration::from_millis(50)).unwrap(),
        "no change yet"
    );
    nix::mount::umount(&target).unwrap();
    assert!(watch.wait(Duration::from_secs(5)).unwrap());
    assert_eq!(watch.died(), std::slice::from_ref(&record.id));
    let mut cheap =
        idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::ZERO).unwrap();
    let gone = cheap.find(&record.id).unwrap().clone();
    assert_eq!(cheap.health(&gone).word(), "unknown", "asked already");
    // The watch's word alone says it: it died.
    let mut told =
        idmap_overlay::gather(&state, &[], Duration::from_secs(60), false, Duration::ZERO).unwrap();
    told.died(std::slice::from_ref(&record.id));
    assert_eq!(told.health(&gone).word(), "leaked");
    cheap.ask_about(&state, std::slice::from_ref(&record.id), DEFAULT_TIMEOUT);
    assert_eq!(cheap.health(&gone).word(), "leaked");
    // The record of an overlay already gone: cleaned.
    idmap_overlay::umount(&state, &record.id, DEFAULT_TIMEOUT, false).unwrap();
    assert_eq!(our_mounts(), Vec::<String>::new());
    assert!(state.records().unwrap().0.is_empty());
}
