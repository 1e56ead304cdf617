use crate::support::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn by_id_and_by_target() {
    let env = Env::new();
    let (target, id) = env.mounted();
    env.ok(&["umount", &id]);
    env.assert_clean();
    let (target2, _) = env.mounted();
    assert_eq!(target, target2);
    // A trailing slash names the same target.
    env.ok(&["umount", &format!("{}/", s(&target))]);
    env.assert_clean();
}

#[test]
fn already_gone_cleans_the_record() {
    let env = Env::new();
    let (target, id) = env.mounted();
    env.plain_umount(&target);
    let out = env.run(&["umount", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already unmounted"),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

#[test]
fn unknown_target_or_id_exits_32() {
    let env = Env::new();
    let dir = env.mkdir("nothing-here");
    for arg in [s(&dir), "no-such-id"] {
        let out = env.run(&["umount", arg]);
        assert_eq!(out.status.code(), Some(32), "{arg}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no idmap-overlay record"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn never_unmounts_a_foreign_mount() {
    let env = Env::new();
    let dir = env.mkdir("foreign");
    assert!(
        env.ns
            .command("mount")
            .args(["-t", "tmpfs", "other", s(&dir)])
            .status()
            .unwrap()
            .success()
    );
    let out = env.run(&["umount", s(&dir)]);
    assert_eq!(out.status.code(), Some(32));
    assert_eq!(env.our_mounts().len(), 1, "the foreign tmpfs must stay");
}

#[test]
fn busy_briefly_succeeds_by_retrying() {
    let env = Env::new();
    let (target, _) = env.mounted();
    let mut holder = hold_busy(&env, &target, "0.3");
    let started = Instant::now();
    env.ok(&["umount", "--timeout", "5s", s(&target)]);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "it was not busy at all"
    );
    holder.wait().unwrap();
    env.assert_clean();
}

#[test]
fn busy_for_good_names_the_holder() {
    let env = Env::new();
    let (target, id) = env.mounted();
    let mut holder = hold_busy(&env, &target, "60");
    let out = env.run(&["umount", "--timeout", &walk_timeout(200), s(&target)]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    let msg = stderr(&out);
    assert!(msg.contains(&format!("pid {}", holder.id())), "{msg}");
    assert!(msg.contains("(sleep) through its cwd"), "{msg}");
    // Still mounted, still recorded as mounted.
    assert_eq!(env.our_mounts().len(), 1);
    let record = std::fs::read_to_string(env.state.join(format!("mounts/{id}.json"))).unwrap();
    assert!(record.contains("\"state\": \"mounted\""), "{record}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

#[test]
fn rolls_back_a_crashed_mount() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let out = env.run_at(
        "overlay-mounted:kill",
        &mount_args("common-dir", &layers, &target),
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    // The overlay and the temporary mount are both there, the record says preparing.
    assert_eq!(env.our_mounts().len(), 2);
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// A plain umount(8) (or a stopped .mount unit) leaves our record behind;
/// the next mount at that target replaces the stale record instead of
/// refusing, and says so.
#[test]
fn a_record_left_by_plain_umount_does_not_block_the_target() {
    let env = Env::new();
    let (target, old_id) = env.mounted();
    env.plain_umount(&target);
    let layers = env.layers(2);
    let out = env.run(&mount_args("auto", &layers, &target));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already unmounted"),
        "{}",
        stderr(&out)
    );
    let new_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(env.state_files("mounts"), vec![format!("{new_id}.json")]);
    assert!(!env.state_files("locks").contains(&format!("{old_id}.lock")));
    // A live record still blocks another overlay there; the very same one
    // again is a no-op (mount -a twice).
    let same = env.run(&mount_args("auto", &layers, &target));
    assert!(same.status.success(), "{}", stderr(&same));
    assert_eq!(String::from_utf8_lossy(&same.stdout).trim(), new_id);
    assert!(
        stderr(&same).contains("mounted there already"),
        "{}",
        stderr(&same)
    );
    let other = mount_args("auto", &layers, &target)
        .into_iter()
        .map(|a| {
            if a == "0:100000:65536" {
                "0:200000:65536".to_string()
            } else {
                a
            }
        })
        .collect::<Vec<_>>();
    let again = env.run(&other);
    assert_eq!(again.status.code(), Some(32));
    assert!(
        stderr(&again).contains("already used by idmap-overlay mount"),
        "{}",
        stderr(&again)
    );
    env.ok(&["umount", s(&target)]);
    env.assert_clean();
}

/// Warnings go to stderr and -q silences them; -v and RUST_LOG add debug
/// logs there; stdout stays for results only.
#[test]
fn quiet_and_verbose() {
    let env = Env::new();
    let (target, id) = env.mounted();
    env.plain_umount(&target);
    let quiet = env.run(&["-q", "umount", &id]);
    assert!(quiet.status.success());
    assert_eq!(stderr(&quiet), "");
    assert!(quiet.stdout.is_empty());

    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let mut args = vec!["-vv".to_string()];
    args.extend(mount_args("auto", &layers, &target));
    let verbose = env.run(&args);
    assert!(verbose.status.success());
    assert!(
        stderr(&verbose).contains("idmap-overlay: debug: "),
        "{}",
        stderr(&verbose)
    );
    // stdout holds the id and nothing else.
    let id = String::from_utf8(verbose.stdout).unwrap();
    assert_eq!(id.lines().count(), 1);
    let out = env
        .tool(&["umount", id.trim()])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("idmap-overlay: debug: "),
        "{}",
        stderr(&out)
    );
    env.assert_clean();
}

/// The global lock held past `--timeout` (a long gc, here a process that
/// holds it): umount needs only the overlay's own lock to unmount and drop
/// the record, so it succeeds, and leaves the target's index entry (a hint,
/// checked on use) for gc. It once unmounted, dropped the record, then
/// failed with 16 "try again", and the retry failed with 32.
#[test]
fn the_global_lock_held_by_another_never_turns_a_done_umount_into_a_failure() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let id = env
        .ok(&mount_args(best(), &layers, &target))
        .trim()
        .to_string();
    let lock = env.state.join("lock");
    // A POSIX record lock conflicts with the tool's OFD locks.
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'r+'); fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            s(&lock),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "held");
    let out = env.run(&["umount", "--timeout", "300ms", s(&target)]);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("left for gc"), "{}", stderr(&out));
    assert!(env.our_mounts().is_empty());
    assert!(!env.state.join(format!("mounts/{id}.json")).exists());
    // Umount again: nothing of it is left to fail on.
    let again = env.run(&["umount", s(&target)]);
    assert_eq!(again.status.code(), Some(32), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("no idmap-overlay record"),
        "{}",
        stderr(&again)
    );
    env.ok(&["gc"]);
    env.assert_clean();
}

/// A process in another mount namespace that holds the overlay through an
/// open file is named with its fd, its command escaped: while its copy is
/// attached there, and once that copy is unmounted (`umount -l`) so that
/// no mount table shows the overlay any more (it used to be named
/// without its fd, and not at all then: umount called the overlay idle
/// and exited 0).
#[test]
fn a_file_open_in_another_namespace_is_named_with_its_fd() {
    const COMMAND: &str = "\x1b[2Jholder";
    for copy_unmounted in [false, true] {
        let env = Env::new();
        let layers = env.layers(2);
        let (upper, work) = (env.mkdir("upper"), env.mkdir("work"));
        let target = env.mkdir("mnt");
        let extra = ["--upperdir", s(&upper), "--workdir", s(&work)];
        let id = env
            .ok(&mount_args_with(best(), &layers, &target, &extra))
            .trim()
            .to_string();
        let script = format!(
            "exec 3< \"$1\"/shared && {}printf '%s' \"$2\" > /proc/self/comm && echo ready && read line",
            if copy_unmounted {
                "umount -l \"$1\" && "
            } else {
                ""
            }
        );
        let mut child = env
            .ns
            .command("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &script])
            .args(["sh", s(&target), COMMAND])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut ready,
        )
        .unwrap();
        assert_eq!(ready, "ready\n");
        let holder = Started(child);
        let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.pid())).unwrap();
        let ns = ns.to_str().unwrap();
        let ns = &ns["mnt:[".len()..ns.len() - 1];

        let out = env.run(&["umount", "--timeout", &walk_timeout(300), s(&target)]);
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(32), "{copy_unmounted}: {said}");
        let named = format!(
            "pid {} (\\x1b[2Jholder) in mount namespace {ns}, it has a file open on the overlay (fd 3)",
            holder.pid()
        );
        assert!(said.contains(&named), "{copy_unmounted}: {said}");
        assert!(!said.contains('\x1b'), "{copy_unmounted}: raw escape");
        assert_eq!(said.lines().count(), 1, "{copy_unmounted}: {said}");

        // inspect names it the same way; its JSON has the fd and the
        // command exactly.
        let detail = env.ok(&["inspect", &id]);
        assert!(detail.contains(&named), "{copy_unmounted}: {detail}");
        let one = json(&env.run(&["inspect", "-J", &id]));
        let copy = &one["health"]["elsewhere"][0];
        assert_eq!(copy["pid"], holder.pid(), "{one}");
        assert_eq!(copy["command"], COMMAND, "{one}");
        assert_eq!(copy["fds"], serde_json::json!([3]), "{one}");
    }
}

/// A file opened here by a process that then moved to a mount namespace of
/// its own keeps the overlay busy here: the holder is named with its fd
/// and, as it is not in ours, its namespace.
#[test]
fn a_holder_that_moved_to_another_namespace_is_named_with_it() {
    let env = Env::new();
    let (target, _) = env.mounted();
    let mut child = env
        .ns
        .command("sh")
        .args([
            "-c",
            "exec 3< \"$1\"/shared && exec unshare -m --propagation private sh -c 'echo ready && read line'",
            "sh",
            s(&target),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    let holder = Started(child);
    let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.pid())).unwrap();
    let ns = ns.to_str().unwrap();
    let ns = &ns["mnt:[".len()..ns.len() - 1];
    let out = env.run(&["umount", "--timeout", &walk_timeout(100), s(&target)]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    let named = format!(
        "pid {} (sh) through its fd 3 in mount namespace {ns}",
        holder.pid()
    );
    assert!(stderr(&out).contains(&named), "{}", stderr(&out));
    assert_eq!(env.our_mounts().len(), 1, "nothing unmounted");
}
