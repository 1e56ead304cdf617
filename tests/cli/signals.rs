//! SIGINT and SIGTERM during `mount` and `umount`: the tool is paused at
//! each of its steps (test points), the signal is sent to its pid, and once
//! resumed it must roll back cleanly and exit 8 (mount(8): interrupted).

use crate::support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Stdio};

const SIGNALS: [Signal; 2] = [Signal::SIGINT, Signal::SIGTERM];

/// The tool stopped at a test point, or finished without reaching it.
struct Stopped {
    child: Child,
    line: String,
    rest: BufReader<ChildStderr>,
}

/// A tool left paused by a failed assertion is killed and reaped.
impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stopped {
    /// Runs the tool paused at `point`; `None` if it never got there.
    fn start(env: &Env, point: &str, args: &[&str]) -> Option<Stopped> {
        let mut child = env
            .tool(args)
            .env("IDMAP_OVERLAY_TESTPOINT", format!("{point}:pause"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rest = BufReader::new(child.stderr.take().unwrap());
        // Owned by `Stopped` from here: its Drop reaps it on every path.
        let mut stopped = Stopped {
            child,
            line: String::new(),
            rest,
        };
        loop {
            stopped.line.clear();
            if stopped.rest.read_line(&mut stopped.line).unwrap() == 0 {
                let status = stopped.child.wait().unwrap();
                assert!(status.success(), "{point}: failed before reaching it");
                return None;
            }
            if stopped.line.starts_with("testpoint ") {
                return Some(stopped);
            }
        }
    }

    fn value(&self, key: &str) -> i32 {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
            .parse()
            .unwrap()
    }

    /// Sends `signal` to the tool, lets it go on, and returns its exit code
    /// and the rest of its stderr.
    fn signal_and_resume(mut self, signal: Signal) -> (Option<i32>, String) {
        kill(Pid::from_raw(self.value("pid")), signal).unwrap();
        self.child.stdin.take().unwrap().write_all(b"\n").unwrap();
        let mut err = String::new();
        self.rest.read_to_string(&mut err).unwrap();
        (self.child.wait().unwrap().code(), err)
    }
}

fn mount_args<'a>(
    strategy: &'a str,
    layers: &'a str,
    upper: &'a str,
    work: &'a str,
    target: &'a str,
) -> Vec<&'a str> {
    vec![
        "mount",
        "--strategy",
        strategy,
        "--lowerdir",
        layers,
        "--upperdir",
        upper,
        "--workdir",
        work,
        "--uidmap",
        "0:100000:65536",
        target,
    ]
}

#[test]
fn a_signal_during_mount_rolls_back() {
    let mut reached = std::collections::BTreeSet::new();
    for signal in SIGNALS {
        for strategy in strategies() {
            for &point in MOUNT_POINTS {
                let what = format!("{signal:?} at {strategy}/{point}");
                let env = Env::new();
                let layers = env.layers(3);
                let before = snapshot(&env.path("layers"));
                let (upper, work, target) =
                    (env.mkdir("upper"), env.mkdir("work"), env.mkdir("mnt"));
                let lowerdir = join(&layers);
                let args = mount_args(strategy, &lowerdir, s(&upper), s(&work), s(&target));
                let Some(stopped) = Stopped::start(&env, point, &args) else {
                    // Not a step of this strategy: it mounted; undo that.
                    env.ok(&["umount", s(&target)]);
                    continue;
                };
                reached.insert(point);
                let helper = stopped
                    .line
                    .contains("helper=")
                    .then(|| stopped.value("helper"));
                let (code, err) = stopped.signal_and_resume(signal);
                assert_eq!(code, Some(8), "{what}: {err}");
                assert_eq!(err.lines().count(), 1, "{what}: {err}");
                assert!(
                    err.contains(&format!("interrupted by signal {}", signal as i32))
                        && err.contains("rolled back"),
                    "{what}: {err}"
                );
                env.assert_clean();
                assert!(
                    env.ns.mountinfo().iter().all(|m| !m.idmapped()),
                    "{what}: idmapped mount left"
                );
                assert_eq!(snapshot(&env.path("layers")), before, "{what}");
                if let Some(helper) = helper {
                    assert!(
                        !PathBuf::from(format!("/proc/{helper}")).exists(),
                        "{what}: namespace helper {helper} left"
                    );
                }
                // Nothing for gc to find either.
                let leaks = env.ok(&["inspect", "--leaks", "--json"]);
                let leaks: serde_json::Value = serde_json::from_str(&leaks).unwrap();
                assert_eq!(leaks["leaks"], serde_json::json!([]), "{what}");
            }
        }
    }
    assert_eq!(reached.len(), reachable_mount_points().len(), "{reached:?}");
}

#[test]
fn a_signal_before_the_unmount_rolls_back_to_mounted() {
    for signal in SIGNALS {
        for strategy in strategies() {
            let what = format!("{signal:?} {strategy}");
            let env = Env::new();
            let layers = env.layers(2);
            let (upper, work, target) = (env.mkdir("upper"), env.mkdir("work"), env.mkdir("mnt"));
            let lowerdir = join(&layers);
            let id = env
                .ok(&mount_args(
                    strategy,
                    &lowerdir,
                    s(&upper),
                    s(&work),
                    s(&target),
                ))
                .trim()
                .to_string();
            let stopped = Stopped::start(&env, "record-unmounting", &["umount", s(&target)])
                .expect("umount reaches record-unmounting");
            let (code, err) = stopped.signal_and_resume(signal);
            assert_eq!(code, Some(8), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert!(err.contains("interrupted by signal"), "{what}: {err}");
            // Still mounted, recorded as mounted, healthy, no leak.
            let mounts = env.our_mounts();
            assert_eq!(mounts.len(), 1, "{what}: {mounts:?}");
            assert_eq!(mounts[0].source, format!("idmap-overlay:{id}"));
            let view: serde_json::Value =
                serde_json::from_str(&env.ok(&["inspect", "--json"])).unwrap();
            assert_eq!(view["mounts"][0]["state"], "mounted", "{what}");
            assert_eq!(view["mounts"][0]["health"]["mounted"], true, "{what}");
            assert_eq!(view["mounts"][0]["health"]["leaked"], false, "{what}");
            assert_eq!(env.read(&target.join("shared")), "0\n");
            env.ok(&["umount", s(&target)]);
            env.assert_clean();
        }
    }
}

#[test]
fn a_signal_after_the_unmount_finishes_it() {
    for signal in SIGNALS {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        env.ok(&[
            "mount",
            "--lowerdir",
            &join(&layers),
            "--uidmap",
            "0:100000:65536",
            s(&target),
        ]);
        let stopped = Stopped::start(&env, "overlay-unmounted", &["umount", s(&target)])
            .expect("umount reaches overlay-unmounted");
        let (code, err) = stopped.signal_and_resume(signal);
        assert_eq!(code, Some(8), "{signal:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{signal:?}: {err}");
        assert!(
            err.contains("finished removing its record"),
            "{signal:?}: {err}"
        );
        env.assert_clean();
    }
}

/// A signal that lands while gc works on its last item (here its only
/// one) still makes the run `interrupted` (exit 8), not a partial run
/// (exit 64) whose failure is the interruption itself.
#[test]
fn a_signal_during_gcs_last_item_is_reported_as_interrupted() {
    for signal in SIGNALS {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        let out = env.run_at(
            "overlay-mounted:kill",
            &crate::support::mount_args(best(), &layers, &target),
        );
        assert_eq!(out.status.code(), None, "not killed: {}", stderr(&out));
        let stopped = Stopped::start(&env, "record-unmounting", &["gc"])
            .expect("gc reaches record-unmounting");
        let (code, err) = stopped.signal_and_resume(signal);
        assert_eq!(code, Some(8), "{signal:?}: {err}");
        assert!(err.contains("interrupted by signal"), "{signal:?}: {err}");
        env.ok(&["gc"]);
        env.assert_clean();
    }
}
