//! Every wait has a deadline and ends on SIGINT or SIGTERM: a state
//! directory whose lock another process holds, an overlay that stays busy
//! during `umount`, busy leaks during `gc`. A signal ends the command soon,
//! with exit 8 and nothing half done; busy leaks are retried together, not
//! one after another.

use crate::support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::{self, File, OpenOptions};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// How soon after a signal a command must have ended. The tool checks its
/// flag at least every 50 ms (lock polls every 5 ms, EBUSY retries sleep
/// at most 50 ms); the rest is room for a loaded CI machine.
fn prompt() -> Duration {
    allowed(Duration::from_millis(400))
}

/// Holds the state directory's global lock as another idmap-overlay would:
/// an OFD write lock on `<state>/lock`, released when dropped.
fn hold_global_lock(env: &Env) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(env.state.join("lock"))
        .unwrap();
    // SAFETY: an all-zero `struct flock` is valid; we set a whole-file
    // write lock on our own open file.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_OFD_SETLK(&lock)).unwrap();
    file
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.tool(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` to `child` once it has run `after`, and returns its
/// output and how long it took to end after the signal.
fn signal_after(mut child: Child, after: Duration, signal: Signal) -> (Output, Duration) {
    // On a loaded machine the command may still be starting after `after`:
    // wait until it catches the signal, so the test sees its handling
    // rather than the default action.
    let pid = child.id();
    let started = Instant::now();
    while !catches(pid, signal) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "pid {pid} never installed a handler for {signal}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(after);
    if child.try_wait().unwrap().is_some() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "the command ended before the signal ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    let sent = Instant::now();
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

/// Does process `pid` catch `signal` (its `SigCgt` mask in /proc)?
fn catches(pid: u32, signal: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal as i32 - 1)) != 0)
}

#[test]
fn a_held_state_lock_ends_on_a_signal_or_at_the_deadline() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let held = hold_global_lock(&env);
    let mount = mount_args("auto", &layers, &target);
    let commands: Vec<Vec<&str>> = vec![
        {
            let mut m: Vec<&str> = mount.iter().map(String::as_str).collect();
            m.insert(1, "--timeout");
            m.insert(2, "60s");
            m
        },
        vec!["gc", "--timeout", "60s"],
        vec!["inspect"],
    ];
    for args in &commands {
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            let what = format!("{args:?} {signal}");
            let (out, took) = signal_after(spawn(&env, args), Duration::from_millis(300), signal);
            assert_eq!(out.status.code(), Some(8), "{what}: {}", stderr(&out));
            assert!(took < prompt(), "{what}: ended {took:?} after the signal");
            assert_eq!(stderr(&out).lines().count(), 1, "{what}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("interrupted"),
                "{what}: {}",
                stderr(&out)
            );
        }
    }
    // Without a signal: the deadline, naming who holds the lock.
    let started = Instant::now();
    let out = env.run(&["gc", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    assert!(started.elapsed() < allowed(Duration::from_secs(3)));
    assert!(
        stderr(&out).contains(&format!("pid {}", std::process::id())),
        "{}",
        stderr(&out)
    );
    // A process that waits for the lock has the file open too, but holds
    // nothing: it is not named (50 waiting mounts were all named as
    // holders, in a line of 28 pids).
    let waiter = spawn(&env, &["gc", "--timeout", "60s"]);
    let lock = env.state.join("lock");
    let fds = format!("/proc/{}/fd", waiter.id());
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(&fds)
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == lock))
    {
        assert!(Instant::now() < until, "the waiter never opened the lock");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = env.run(&["gc", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(16), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("locked by pid {} (", std::process::id())),
        "{said}"
    );
    assert!(!said.contains(&format!("pid {}", waiter.id())), "{said}");
    let (out, _) = signal_after(waiter, Duration::ZERO, Signal::SIGTERM);
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    drop(held);
    assert!(env.our_mounts().is_empty());
    env.ok(&["gc"]);
    env.assert_clean();
}

#[test]
fn a_busy_umount_ends_on_a_signal_with_the_overlay_intact() {
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let env = Env::new();
        let (target, id) = env.mounted();
        let mut holder = hold_busy(&env, &target, "60");
        let (out, took) = signal_after(
            spawn(&env, &["umount", "--timeout", "60s", s(&target)]),
            Duration::from_millis(300),
            signal,
        );
        assert_eq!(out.status.code(), Some(8), "{signal}: {}", stderr(&out));
        assert!(took < prompt(), "{signal}: ended {took:?} after the signal");
        let record: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(env.state.join(format!("mounts/{id}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["state"], "mounted", "{signal}");
        assert_eq!(env.our_mounts().len(), 1, "{signal}");
        let _ = holder.kill();
        let _ = holder.wait();
        env.ok(&["umount", &id]);
        env.assert_clean();
    }
}

/// Busy leaks (crashed mounts whose overlays a process holds) are retried
/// together until one deadline: three at `--timeout 1.5s` take about one
/// and a half seconds, not four and a half (the margin between is wide
/// enough for a run under emulation). A signal ends the run promptly.
#[test]
fn gc_retries_busy_leaks_together_and_ends_on_a_signal() {
    let env = Env::new();
    let layers = env.layers(2);
    let mut holders = Vec::new();
    for n in 0..3 {
        let target = env.mkdir(&format!("mnt{n}"));
        let out = env.run_at(
            "overlay-mounted:kill",
            &mount_args(best(), &layers, &target),
        );
        assert_eq!(out.status.code(), None, "not killed: {}", stderr(&out));
        holders.push(hold_busy(&env, &target, "60"));
    }
    // Retried one after another, the three would take three timeouts;
    // together, one timeout and the time to start, walk and report, which
    // under emulation is itself some 1.6 s (a run there took 3.1 s with
    // a 1.5 s timeout): the timeout is longer there, so that the bound
    // still tells the two apart (timeout + slack < 3 x timeout).
    let timeout = Duration::from_millis(if emulated() { 6000 } else { 1500 });
    let bound = timeout + allowed(Duration::from_millis(1500));
    assert!(bound < timeout * 3);
    let started = Instant::now();
    let out = env.run(&["gc", "--timeout", &format!("{}ms", timeout.as_millis())]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        report.matches("failed: crashed-operation").count(),
        3,
        "{report}"
    );
    assert!(report.contains("busy after"), "{report}");
    assert!(
        took < bound,
        "three busy leaks took {took:?} with a {timeout:?} timeout: retried one after another?"
    );
    // Three overlays, and with common-dir or per-layer their temporary
    // mounts: the rollback stops at the busy overlay.
    let left = env.our_mounts().len();
    assert!(left >= 3, "{left}");
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        let (out, took) = signal_after(
            spawn(&env, &["gc", "--timeout", "60s"]),
            Duration::from_millis(300),
            signal,
        );
        assert_eq!(out.status.code(), Some(8), "{signal}: {}", stderr(&out));
        assert!(took < prompt(), "{signal}: ended {took:?} after the signal");
        assert_eq!(env.our_mounts().len(), left, "{signal}");
    }
    for mut holder in holders {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    env.ok(&["gc"]);
    env.assert_clean();
}
