//! `inspect --poll`: one line per change to our overlays, as it happens and
//! in order (mounted, unmounted, vanished behind our back, leaked by a
//! `kill -9`, cleaned by gc), through both of the kernel's ways of telling
//! of a change to the mount table: fanotify's mount events (Linux 6.15+)
//! and the mount table file (older kernels; forced here with the
//! `mount-events` fault point). The poller runs in the test's namespace,
//! where the mounts are made, as the tool itself does.

use crate::support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Every JSON line has exactly these keys (docs/CLI.md).
const KEYS: [&str; 8] = [
    "event", "health", "id", "state", "target", "time", "version", "why",
];

/// How long a line may take to come on a busy test machine (six times
/// that under emulation).
fn patience() -> Duration {
    Duration::from_secs(if emulated() { 60 } else { 10 })
}

/// `inspect --poll` running in the background, its stdout and stderr read
/// line by line as they come.
struct Poll {
    child: Started,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

impl Poll {
    /// Starts `inspect -v --poll ARGS` and waits until it watches (its
    /// info line, which names how the kernel tells it of mount changes).
    fn start(env: &Env, args: &[&str], fault: Option<&str>) -> (Poll, String) {
        let mut cmd = env.tool(&[&["-v", "inspect", "--poll"], args].concat());
        if let Some(fault) = fault {
            cmd.env("IDMAP_OVERLAY_TESTPOINT", fault);
        }
        let mut child = Started(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let lines = read_lines(child.0.stdout.take().unwrap());
        let errors = read_lines(child.0.stderr.take().unwrap());
        let poll = Poll {
            child,
            lines,
            errors,
        };
        let watching = poll.error_line("watching");
        (poll, watching)
    }

    /// The next stderr line, which must contain `what`.
    fn error_line(&self, what: &str) -> String {
        let line = self
            .errors
            .recv_timeout(patience())
            .unwrap_or_else(|e| panic!("no stderr line with {what:?}: {e}"));
        assert!(line.contains(what), "{line:?} has no {what:?}");
        line
    }

    /// The next stdout line.
    fn next(&self, waiting_for: &str) -> String {
        self.lines
            .recv_timeout(patience())
            .unwrap_or_else(|e| panic!("no line for {waiting_for} ({e})"))
    }

    /// The next line, as JSON with the keys of the contract.
    fn next_json(&self, waiting_for: &str) -> Value {
        let line = self.next(waiting_for);
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{waiting_for}: not JSON ({e}): {line}"));
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap_or_else(|| panic!("{waiting_for}: not an object: {line}"))
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, KEYS, "{waiting_for}: {line}");
        assert_eq!(value["version"], 1, "{line}");
        let time = value["time"].as_str().unwrap();
        humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("time {time}: {e}"));
        value
    }

    /// No line for `quiet`.
    fn assert_quiet(&self, quiet: Duration, while_what: &str) {
        match self.lines.recv_timeout(quiet) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(line) => panic!("{while_what}: a line nobody should see: {line}"),
            Err(e) => panic!("{while_what}: the poller ended: {e}"),
        }
    }

    /// Sends `signal`; returns how it ended and how long that took.
    fn end_with(&mut self, signal: Signal) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        kill(Pid::from_raw(self.child.pid() as i32), signal).unwrap();
        let status = self.child.0.wait().unwrap();
        (status, sent.elapsed())
    }

    /// Its exit status, once it ended by itself within `within`.
    fn exit_within(&mut self, within: Duration) -> ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What it printed after the last line read, once it has ended.
    fn rest(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

fn read_lines(from: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if send.send(line).is_err() {
                return;
            }
        }
    });
    receive
}

/// The mount of a writable overlay (the kernel answers for it at once
/// whether it lives on) at `name`, with its own upper and work
/// directories: its target and arguments.
fn writable(env: &Env, layers: &[PathBuf], name: &str) -> (PathBuf, Vec<String>) {
    let target = env.mkdir(name);
    let (upper, work) = (
        env.mkdir(&format!("{name}-upper")),
        env.mkdir(&format!("{name}-work")),
    );
    let args = mount_args_with(
        "auto",
        layers,
        &target,
        &["--upperdir", s(&upper), "--workdir", s(&work)],
    );
    (target, args)
}

/// [`writable`], mounted: its target and id.
fn mount_writable(env: &Env, layers: &[PathBuf], name: &str) -> (PathBuf, String) {
    let (target, args) = writable(env, layers, name);
    (target, env.ok(&args).trim().to_string())
}

fn assert_line(line: &Value, event: &str, id: &str, target: &Path, state: Value, health: Value) {
    assert_eq!(line["event"], event, "{line}");
    assert_eq!(line["id"], id, "{line}");
    assert_eq!(line["target"], s(target), "{line}");
    assert_eq!(line["state"], state, "{line}");
    assert_eq!(line["health"], health, "{line}");
}

/// One life watched from start to end: the lines come in order, each right
/// after what caused it, and SIGTERM ends the poller at once with 0.
fn watch_a_life(fault: Option<&str>, mount_events: &str) {
    let env = Env::new();
    env.ok(&["gc"]); // the state directory, as any host has it
    let layers = env.layers(2);
    let (mut poll, watching) = Poll::start(&env, &["-J"], fault);
    assert!(
        watching.contains(&format!("mount table ({mount_events})")),
        "{watching}"
    );

    // Mounted by the tool: said once the mount is done (has let go of its
    // lock), not as soon as its record says `mounted`.
    let (a, args) = writable(&env, &layers, "a");
    let paused = Paused::start(&env, "record-mounted:pause", &args);
    poll.assert_quiet(Duration::from_millis(800), "a mount not yet done");
    assert!(paused.resume().success());
    let line = poll.next_json("mount a");
    let id_a = line["id"].as_str().unwrap().to_string();
    assert_line(&line, "mounted", &id_a, &a, "mounted".into(), "ok".into());
    assert_eq!(line["why"], Value::Null, "{line}");
    // Unmounted by the tool.
    env.ok(&["umount", &id_a]);
    let line = poll.next_json("umount a");
    assert_line(&line, "unmounted", &id_a, &a, Value::Null, Value::Null);

    // Unmounted behind our back by umount(8): only the mount table says so.
    let (b, id_b) = mount_writable(&env, &layers, "b");
    assert_line(
        &poll.next_json("mount b"),
        "mounted",
        &id_b,
        &b,
        "mounted".into(),
        "ok".into(),
    );
    env.plain_umount(&b);
    let line = poll.next_json("umount(8) of b");
    assert_line(
        &line,
        "vanished",
        &id_b,
        &b,
        "mounted".into(),
        "leaked".into(),
    );
    assert!(
        line["why"].as_str().unwrap().contains("no longer mounted"),
        "{line}"
    );
    env.ok(&["gc"]);
    let line = poll.next_json("gc after b");
    assert_line(&line, "cleaned", &id_b, &b, Value::Null, Value::Null);

    // A mount paused midway is running, not leaked; when it then fails
    // and rolls back, nothing changed: no line.
    let c = env.mkdir("c");
    let paused = Paused::start(
        &env,
        "overlay-mounted:pause,overlay-mounted:fail",
        &mount_args("auto", &layers, &c),
    );
    poll.assert_quiet(Duration::from_millis(800), "a mount in progress");
    assert!(!paused.resume().success(), "the mount did not fail");
    poll.assert_quiet(Duration::from_millis(800), "a mount rolled back");

    // Killed midway, it leaked.
    let paused = Paused::start(
        &env,
        "overlay-mounted:pause",
        &mount_args("auto", &layers, &c),
    );
    let mut child = paused.child;
    child.kill().unwrap(); // SIGKILL: nsenter exec'd the tool, same pid
    child.wait().unwrap();
    let line = poll.next_json("kill -9 of a mount");
    assert_eq!(line["event"], "leaked", "{line}");
    assert_eq!(line["target"], s(&c), "{line}");
    assert_eq!(line["state"], "preparing", "{line}");
    assert_eq!(line["health"], "leaked", "{line}");
    assert!(
        line["why"]
            .as_str()
            .unwrap()
            .contains("died before it finished"),
        "{line}"
    );
    let id_c = line["id"].as_str().unwrap().to_string();
    env.ok(&["gc"]);
    let line = poll.next_json("gc after c");
    assert_line(&line, "cleaned", &id_c, &c, Value::Null, Value::Null);

    let (status, took) = poll.end_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        took < allowed(Duration::from_millis(500)),
        "SIGTERM took {took:?}"
    );
    assert_eq!(poll.rest(), Vec::<String>::new());
    let errors: Vec<String> = poll.errors.try_iter().collect();
    assert!(errors.is_empty(), "{errors:?}");
    env.assert_clean();
}

/// fanotify's mount events where the kernel has them (Linux 6.15+), else
/// the mount table file, by itself.
#[test]
fn lines_in_order_with_the_kernels_mount_events() {
    let expected = match kernel_has_fanotify_mount_events() {
        true => "fanotify",
        false => "mountinfo",
    };
    watch_a_life(None, expected);
}

#[test]
fn lines_in_order_with_the_mount_table_file() {
    watch_a_life(Some("mount-events:fail"), "mountinfo");
}

/// Linux 6.15+, by the release string: the tool's own choice is what the
/// test checks, so it cannot be the test's oracle.
fn kernel_has_fanotify_mount_events() -> bool {
    let release = &kernel().release;
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (6, 15)
}

/// A copy of the test's mount namespace (as a container's is) held by a
/// process, with every overlay mounted there now.
fn copy_namespace(env: &Env) -> Started {
    let holder = Started(
        env.ns
            .command("unshare")
            .args(["-m", "--propagation", "private", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Neither the test's (before nsenter) nor the namespace it copies.
    let not_yet = [
        std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        std::fs::read_link(format!("/proc/{}/ns/mnt", env.ns.pid())).unwrap(),
    ];
    for _ in 0..5000 {
        if std::fs::read_link(format!("/proc/{}/ns/mnt", holder.pid()))
            .is_ok_and(|ns| !not_yet.contains(&ns))
        {
            return holder;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the copy never got a namespace of its own");
}

/// Overlay `b`, with a copy in another namespace, is unmounted here by
/// umount(8): `vanished` (health `elsewhere`); the copy's namespace ends:
/// `leaked`; gc: `cleaned`.
fn vanishes_then_dies_elsewhere(env: &Env, poll: &Poll, layers: &[PathBuf]) {
    let (b, id_b) = mount_writable(env, layers, "b");
    assert_eq!(poll.next_json("mount b")["event"], "mounted");
    let mut copy = copy_namespace(env);
    env.plain_umount(&b);
    let line = poll.next_json("umount(8) of b");
    assert_line(
        &line,
        "vanished",
        &id_b,
        &b,
        "mounted".into(),
        "elsewhere".into(),
    );
    copy.stop();
    let line = poll.next_json("the copy of b dies");
    assert_line(
        &line,
        "leaked",
        &id_b,
        &b,
        "mounted".into(),
        "leaked".into(),
    );
    env.ok(&["gc"]);
    assert_eq!(poll.next_json("gc after b")["event"], "cleaned");
}

/// An overlay that lives on in another namespace (a container's) when it
/// goes from here, by `umount --detach` or behind our back, is seen to die
/// there: `leaked`, which gc then cleans.
#[test]
fn copies_elsewhere_are_seen_to_die() {
    let env = Env::new();
    env.ok(&["gc"]);
    let layers = env.layers(2);
    let (mut poll, _) = Poll::start(&env, &["-J"], None);

    let (a, id_a) = mount_writable(&env, &layers, "a");
    assert_eq!(poll.next_json("mount a")["event"], "mounted");
    let mut copy = copy_namespace(&env);
    env.ok(&["umount", "--detach", &id_a]);
    let line = poll.next_json("umount --detach a");
    assert_line(
        &line,
        "detached",
        &id_a,
        &a,
        "detached".into(),
        "elsewhere".into(),
    );
    copy.stop();
    let line = poll.next_json("the copy of a dies");
    assert_line(
        &line,
        "leaked",
        &id_a,
        &a,
        "detached".into(),
        "leaked".into(),
    );
    env.ok(&["gc"]);
    assert_eq!(poll.next_json("gc after a")["event"], "cleaned");

    vanishes_then_dies_elsewhere(&env, &poll, &layers);

    let (status, _) = poll.end_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    env.assert_clean();
}

/// The superblock watch hears of an overlay's death a moment before
/// overlayfs lets go of its upper directory, which until then still probes
/// in use (under emulation that moment was long enough to see: the death
/// was never told). The watch is taken at its word; the `in-use-probe`
/// fault point makes the moment last.
#[test]
fn a_death_is_told_while_the_upper_still_probes_in_use() {
    let env = Env::new();
    env.ok(&["gc"]);
    let layers = env.layers(2);
    let (mut poll, _) = Poll::start(&env, &["-J"], Some("in-use-probe:fail"));
    vanishes_then_dies_elsewhere(&env, &poll, &layers);
    let (status, _) = poll.end_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    env.assert_clean();
}

/// The kernel shuts an overlay's superblock down a moment after its last
/// mount goes (here: after the last process using a lazily unmounted one
/// lets go): an overlay gone from here that dies within a moment gets one
/// line, `vanished` with health `leaked`, not first `elsewhere`.
#[test]
fn a_lazy_umount_is_told_once_its_last_user_lets_go() {
    let env = Env::new();
    env.ok(&["gc"]);
    let layers = env.layers(2);
    let (mut poll, _) = Poll::start(&env, &["-J"], None);
    let (b, id_b) = mount_writable(&env, &layers, "b");
    assert_eq!(poll.next_json("mount b")["event"], "mounted");
    let mut user = hold_busy(&env, &b, "0.4");
    let status = env
        .ns
        .command("umount")
        .args(["-l", s(&b)])
        .status()
        .unwrap();
    assert!(status.success(), "umount -l");
    let line = poll.next_json("umount -l of b");
    assert_line(
        &line,
        "vanished",
        &id_b,
        &b,
        "mounted".into(),
        "leaked".into(),
    );
    user.wait().unwrap();
    poll.assert_quiet(Duration::from_millis(500), "after the last user");
    env.ok(&["gc"]);
    assert_eq!(poll.next_json("gc after b")["event"], "cleaned");
    let (status, _) = poll.end_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status:?}");
    env.assert_clean();
}

/// `--first-only` ends after one line; `--timeout` once that long passed
/// without one; SIGINT ends it like SIGTERM; the text form escapes.
#[test]
fn first_only_timeout_and_text() {
    let env = Env::new();
    env.ok(&["gc"]);
    let layers = env.layers(2);

    let started = Instant::now();
    let (mut poll, _) = Poll::start(&env, &["--timeout", "300ms"], None);
    let status = poll.exit_within(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(poll.rest(), Vec::<String>::new());
    assert_eq!(
        poll.errors.try_iter().collect::<Vec<_>>(),
        Vec::<String>::new()
    );

    let (mut poll, _) = Poll::start(&env, &["--first-only", "--timeout", "20s"], None);
    let (a, id_a) = mount_writable(&env, &layers, "a\x1bb");
    let line = poll.next("mount");
    assert!(
        line.ends_with(&format!(
            " mounted {} (id {id_a}, state mounted, health ok)",
            s(&a).replace('\x1b', "\\x1b")
        )),
        "{line:?}"
    );
    // Another change, which a poller that went on would print.
    env.ok(&["umount", &id_a]);
    let status = poll.exit_within(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(poll.rest(), Vec::<String>::new());

    let (mut poll, _) = Poll::start(&env, &[], None);
    let (status, _) = poll.end_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// What `--poll` cannot be combined with, and its own flags without it:
/// usage errors (exit 1), one line each.
#[test]
fn poll_usage_errors() {
    let env = Env::new();
    for args in [
        &["inspect", "--first-only"][..],
        &["inspect", "--timeout", "1s"],
        &["inspect", "--poll", "--leaks"],
        &["inspect", "--poll", "--features"],
        &["inspect", "--poll", "some-id"],
        &["inspect", "--poll", "-o", "ID"],
        &["inspect", "--poll", "--format", "prometheus"],
        &["inspect", "--poll", "--timeout", "soon"],
    ] {
        let out = env.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
