//! `-v` says what was done on success, as mount(8) and umount(8) do with
//! `-v`, but on stderr as `idmap-overlay: info:` lines: stdout keeps its
//! contract (the id, or JSON) for scripts. Without `-v`, a success is
//! silent on stderr.

use crate::support::*;
use std::process::Output;

fn err_lines(out: &Output) -> Vec<String> {
    stderr(out).lines().map(str::to_string).collect()
}

#[test]
fn mount_and_umount_say_what_they_did() {
    let env = Env::new();
    let layers = env.layers(2);
    // A name with an escape character: shown escaped, as every path is.
    let target = env.mkdir("mnt\x1bx");
    let shown = s(&target).replace('\x1b', "\\x1b");

    let mut args = vec!["-v".to_string()];
    args.extend(mount_args("auto", &layers, &target));
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(id.lines().count(), 1, "stdout is the id alone: {id:?}");
    let id = id.trim().to_string();
    let said = format!(
        "idmap-overlay: info: overlay {id} mounted on {shown} (strategy {})",
        best()
    );
    assert!(err_lines(&out).contains(&said), "{:?}", err_lines(&out));

    // The same mount again is no mount: a warning, no "mounted" line.
    let again = env.run(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    let text = stderr(&again);
    assert!(text.contains("mounted there already"), "{text}");
    assert!(!text.contains("mounted on"), "{text}");

    let out = env.run(&["-v", "umount", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let said = format!("idmap-overlay: info: {shown} unmounted (overlay {id}); record removed");
    assert_eq!(err_lines(&out), [said]);

    // Without -v, nothing on stderr; with --json, stdout is the record.
    let mut args = mount_args("auto", &layers, &target);
    args.insert(1, "--json".into());
    let out = env.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let record = json(&out);
    let out = env.run(&["umount", record["id"].as_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
    env.assert_clean();
}

/// An overlay umount(8) removed behind our back: the warning says what
/// `umount` did (removed the record); -v adds no line that says it
/// unmounted anything.
#[test]
fn umount_of_a_vanished_overlay_says_so_once() {
    let env = Env::new();
    let (target, id) = env.mounted();
    env.plain_umount(&target);
    let out = env.run(&["-v", "umount", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = err_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("idmap-overlay: warning: ")
            && lines[0].contains("was already unmounted; removed its record"),
        "{lines:?}"
    );
    env.assert_clean();
}

/// gc -v: one line per item as it is done, saying what was done; stdout
/// (the report, text or JSON) is what it was.
#[test]
fn gc_says_what_it_removed() {
    for json_report in [false, true] {
        let env = Env::new();
        let layers = env.layers(2);
        let target = env.mkdir("mnt");
        let crashed = env.run_at(
            "overlay-mounted:kill",
            &mount_args("auto", &layers, &target),
        );
        assert!(!crashed.status.success());
        let id = env.state_files("mounts")[0]
            .strip_suffix(".json")
            .unwrap()
            .to_string();
        let mut args = vec!["-v", "gc"];
        if json_report {
            args.push("--json");
        }
        let out = env.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let said = format!(
            "idmap-overlay: info: cleaned up {} after the operation on overlay {id} that died",
            s(&target)
        );
        assert!(err_lines(&out).contains(&said), "{:?}", err_lines(&out));
        let stdout = String::from_utf8(out.stdout.clone()).unwrap();
        if json_report {
            assert_eq!(json(&out)["cleaned"][0]["kind"], "crashed-operation");
        } else {
            assert!(
                stdout.starts_with(&format!("cleaned: crashed-operation {} (", s(&target))),
                "{stdout}"
            );
        }
        // Nothing left: a second gc -v does nothing, and says nothing.
        let out = env.run(&["-v", "gc"]);
        assert!(out.status.success());
        assert_eq!(stderr(&out), "");
        env.assert_clean();
    }
}
