//! Names from outside reach the admin's terminal escaped: a target named
//! with ESC, CR and a bidi override, and a process holding it that renamed
//! itself to clear the screen. Every human-readable output shows them as
//! `\x1b`, `\x0d`, `\u{202e}`; JSON carries them exactly.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::process::{Output, Stdio};

const TARGET_NAME: &str = "mnt\r\x1b[2K\u{202e}evil";
const COMMAND: &str = "\x1b[2J\x1b[H\x1b[8m";

fn assert_escaped(what: &str, text: &str) {
    for raw in ['\x1b', '\r', '\u{202e}'] {
        assert!(!text.contains(raw), "{what}: raw {raw:?} in {text:?}");
    }
}

fn both(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(out)
}

#[test]
fn control_characters_never_reach_the_terminal() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir(TARGET_NAME);
    let id = env
        .ok(&mount_args(best(), &layers, &target))
        .trim()
        .to_string();

    let table = env.ok(&["inspect"]);
    assert_escaped("table", &table);
    assert!(table.contains("mnt\\x0d\\x1b[2K\\u{202e}evil"), "{table}");
    let detail = env.ok(&["inspect", &id]);
    assert_escaped("detail", &detail);
    let json: Value = serde_json::from_str(&env.ok(&["inspect", "--json"])).unwrap();
    assert_eq!(json["mounts"][0]["target"], s(&target), "JSON is exact");

    // A holder whose command name clears the screen: named in the busy
    // message, escaped.
    let mut holder = env
        .ns
        .command("sh")
        .args([
            "-c",
            // `read` blocks on the open pipe: no child keeps a cwd there.
            "cd \"$1\" && printf '%s' \"$2\" > /proc/self/comm && read line",
            "sh",
            s(&target),
            COMMAND,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let comm = format!("/proc/{}/comm", holder.id());
    for _ in 0..2000 {
        if fs::read_to_string(&comm).is_ok_and(|c| c.starts_with('\x1b')) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let busy = env.run(&["umount", "--timeout", &walk_timeout(100), &id]);
    assert_eq!(busy.status.code(), Some(32), "{}", stderr(&busy));
    assert_escaped("busy message", &both(&busy));
    assert!(
        stderr(&busy).contains("\\x1b[2J\\x1b[H\\x1b[8m"),
        "{}",
        stderr(&busy)
    );
    let _ = holder.kill();
    let _ = holder.wait();

    // Unmounted behind the tool's back: the leak list, gc's report and
    // umount's warning all name the target.
    env.plain_umount(&target);
    let leaks = env.run(&["inspect", "--leaks"]);
    assert_eq!(leaks.status.code(), Some(3), "leaks found");
    let leaks = String::from_utf8(leaks.stdout).unwrap();
    assert_escaped("leaks", &leaks);
    assert!(leaks.contains("vanished-overlay"), "{leaks}");
    let dry = env.run(&["gc", "--dry-run"]);
    assert_escaped("gc --dry-run", &both(&dry));
    let gone = env.run(&["umount", &id]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    assert!(
        stderr(&gone).contains("already unmounted"),
        "{}",
        stderr(&gone)
    );
    assert_escaped("umount warning", &both(&gone));

    env.ok(&mount_args(best(), &layers, &target));
    env.plain_umount(&target);
    let gc = env.run(&["gc"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    assert!(String::from_utf8_lossy(&gc.stdout).contains("cleaned: vanished-overlay"));
    assert_escaped("gc report", &both(&gc));
    env.assert_clean();
}

/// The Prometheus view of a `--foreign` directory whose name carries ESC,
/// CR and a bidi override: the label is written, nothing raw reaches the
/// terminal, and the text is still a valid exposition.
#[test]
fn prometheus_labels_never_carry_raw_control_characters() {
    let env = Env::new();
    env.ok(&["gc"]);
    let dir = env.mkdir("f\x1b[2K\r\u{202e}evil");
    let out = env.run(&["inspect", "--format", "prometheus", "--foreign", s(&dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_escaped("prometheus", &both(&out));
    assert!(text.contains("\\\\x1b[2K\\\\x0d\\\\u{202e}evil"), "{text}");
    let file = env.path("metrics.prom");
    fs::write(&file, &text).unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool: {}", stderr(&check));
}
