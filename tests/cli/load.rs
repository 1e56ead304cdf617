//! Load: many mounts and umounts at once, with gc running beside them, and
//! races for one target.

use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const WORKERS: usize = 16;

/// 200 mount/umount cycles (a quarter under emulation) on distinct
/// targets from 16 threads, each running the tool, while gc loops: no
/// failure, no leak, no layer changed.
#[test]
fn parallel_cycles_with_gc_beside_them() {
    let cycles = rounds(200);
    let env = Env::new();
    let layers = env.layers(4);
    let lowerdir = join(&layers);
    let before = snapshot(&env.path("layers"));
    let targets: Vec<PathBuf> = (0..cycles)
        .map(|i| env.mkdir(&format!("mnt/{i}")))
        .collect();
    // Every fourth cycle is writable, with its own upper and work dirs.
    let writable: Vec<Option<(PathBuf, PathBuf)>> = (0..cycles)
        .map(|i| {
            (i % 4 == 0).then(|| {
                (
                    env.mkdir(&format!("rw/{i}/upper")),
                    env.mkdir(&format!("rw/{i}/work")),
                )
            })
        })
        .collect();
    let next = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let failures = Mutex::new(Vec::<String>::new());
    let gc_runs = AtomicUsize::new(0);
    let started = Instant::now();

    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let out = env.run(&["gc", "--json", "--timeout", "60s"]);
                gc_runs.fetch_add(1, Ordering::SeqCst);
                if out.status.code() != Some(0) {
                    failures.lock().unwrap().push(format!(
                        "gc exited {:?}: {}{}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stdout),
                        stderr(&out)
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= cycles {
                            break;
                        }
                        if let Err(e) = cycle(&env, i, &lowerdir, &targets[i], &writable[i]) {
                            failures.lock().unwrap().push(format!("cycle {i}: {e}"));
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    let elapsed = started.elapsed();
    eprintln!(
        "{cycles} cycles, {WORKERS} workers, {} gc runs: {elapsed:?}",
        gc_runs.load(Ordering::SeqCst)
    );
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        gc_runs.load(Ordering::SeqCst) >= 2,
        "gc did not run beside the cycles"
    );

    let leaks: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--leaks", "--json"])).unwrap();
    assert_eq!(leaks["leaks"], serde_json::json!([]));
    env.assert_clean();
    assert!(env.ns.mountinfo().iter().all(|m| !m.idmapped()));
    assert_eq!(snapshot(&env.path("layers")), before, "layer data changed");
}

/// One mount, a look through it, one umount.
fn cycle(
    env: &Env,
    i: usize,
    lowerdir: &str,
    target: &Path,
    writable: &Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let strategies = strategies();
    let strategy = strategies[i % strategies.len()];
    let mut args = vec![
        "mount",
        "--strategy",
        strategy,
        "--lowerdir",
        lowerdir,
        "--uidmap",
        "0:100000:65536",
        // 16 workers and gc wait for the state lock in turn: long under
        // emulation (the kernel matrix runs this in QEMU).
        "--timeout",
        "60s",
    ];
    if let Some((upper, work)) = writable {
        args.extend(["--upperdir", s(upper), "--workdir", s(work)]);
    }
    args.push(s(target));
    let out = env.run(&args);
    if !out.status.success() {
        return Err(format!(
            "mount ({strategy}) exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        ));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let seen = std::fs::metadata(env.ns.path(&target.join("user-file")))
        .map_err(|e| format!("stat through {id}: {e}"))?;
    if (seen.uid(), seen.gid()) != (101000, 101000) {
        return Err(format!(
            "{id}: user-file owned by {}:{}",
            seen.uid(),
            seen.gid()
        ));
    }
    if let Some((upper, _)) = writable {
        std::fs::write(env.ns.path(&target.join("written")), id.as_bytes())
            .map_err(|e| format!("{id}: write: {e}"))?;
        if std::fs::read(upper.join("written")).ok().as_deref() != Some(id.as_bytes()) {
            return Err(format!("{id}: the write did not reach upperdir"));
        }
    }
    let by = if i.is_multiple_of(2) {
        id.as_str()
    } else {
        s(target)
    };
    let out = env.run(&["umount", "--timeout", "60s", by]);
    if !out.status.success() {
        return Err(format!(
            "umount {by} exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        ));
    }
    Ok(())
}

/// Two mounts race for one target: exactly one wins, the other fails
/// cleanly (exit 32, one line) and leaves nothing behind.
#[test]
fn two_mounts_on_one_target_one_wins() {
    let env = Env::new();
    let layers = env.layers(2);
    let lowerdir = join(&layers);
    let target = env.mkdir("mnt");
    let all = strategies();
    for round in 0..rounds(20) {
        let strategies = [all[round % all.len()], all[(round + 1) % all.len()]];
        let barrier = Barrier::new(2);
        let outs: Vec<std::process::Output> = std::thread::scope(|scope| {
            let runs: Vec<_> = strategies
                .iter()
                .enumerate()
                .map(|(n, strategy)| {
                    let (barrier, lowerdir, target) = (&barrier, &lowerdir, &target);
                    let env = &env;
                    // Two different overlays: the same one twice would make
                    // the second a no-op (mount -a is idempotent).
                    let map = format!("0:{}:65536", 100000 + 100000 * n);
                    scope.spawn(move || {
                        let mut cmd = env.tool(&[
                            "mount",
                            "--strategy",
                            strategy,
                            "--lowerdir",
                            lowerdir,
                            "--uidmap",
                            &map,
                            s(target),
                        ]);
                        barrier.wait();
                        cmd.output().unwrap()
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let winners: Vec<&std::process::Output> =
            outs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {:?}",
            outs.iter().map(stderr).collect::<Vec<_>>()
        );
        let loser = outs.iter().find(|o| !o.status.success()).unwrap();
        let err = stderr(loser);
        assert_eq!(loser.status.code(), Some(32), "round {round}: {err}");
        assert_eq!(err.lines().count(), 1, "round {round}: {err}");
        assert!(
            err.contains("is already used by idmap-overlay mount"),
            "round {round}: {err}"
        );
        // Only the winner's overlay is there, and only its record.
        let id = String::from_utf8_lossy(&winners[0].stdout)
            .trim()
            .to_string();
        let mounts = env.our_mounts();
        assert_eq!(mounts.len(), 1, "round {round}: {mounts:?}");
        assert_eq!(mounts[0].source, format!("idmap-overlay:{id}"));
        assert_eq!(env.state_files("mounts"), vec![format!("{id}.json")]);
        let winner = outs.iter().position(|o| o.status.success()).unwrap() as u32;
        assert_eq!(
            env.stat(&target.join("shared")).uid(),
            100000 + 100000 * winner
        );
        env.ok(&["umount", s(&target)]);
        env.assert_clean();
    }
}
