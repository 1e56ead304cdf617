//! Bad input, table-driven: every case goes through the CLI and must exit
//! with the code docs/CLI.md gives (1 usage or permissions, 16 state, 32 mount),
//! say what is wrong on exactly one stderr line, and change nothing: the
//! namespace's mount table and the whole state directory tree are compared
//! byte for byte before and after each case.

use crate::support::*;
use std::fs;
use std::process::{Command, Output, Stdio};

/// One bad invocation: what it is, the arguments, the exit code and a piece
/// of the message that names the problem.
struct Case {
    what: &'static str,
    args: Vec<String>,
    code: i32,
    says: &'static str,
    /// Run as uid/gid 65534 instead of root.
    unprivileged: bool,
}

fn case(what: &'static str, args: &[&str], code: i32, says: &'static str) -> Case {
    Case {
        what,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        says,
        unprivileged: false,
    }
}

/// `args` run as nobody (uid/gid 65534, no groups) inside the namespace.
fn run_unprivileged(env: &Env, args: &[String]) -> Output {
    let mut cmd: Command = env.ns.command("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        BIN,
    ])
    .args(args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
    .stdin(Stdio::null());
    cmd.output().unwrap()
}

fn mount_args(rest: &[&str]) -> Vec<String> {
    std::iter::once("mount")
        .chain(rest.iter().copied())
        .map(str::to_string)
        .collect()
}

#[test]
fn bad_inputs_are_refused_without_side_effects() {
    let env = Env::new();
    let layers = env.layers(2);
    let (l0, l1) = (s(&layers[0]).to_string(), s(&layers[1]).to_string());
    let two = join(&layers);
    let upper = env.mkdir("upper");
    let work = env.mkdir("work");
    let target = env.mkdir("mnt");
    let (up, wk, tg) = (s(&upper), s(&work), s(&target));
    let file = env.path("a-file");
    fs::write(&file, "not a directory\n").unwrap();
    let file = s(&file).to_string();
    let missing = s(&env.path("does-not-exist")).to_string();

    // A target one of our records already uses (a real, live overlay).
    let used = env.mkdir("used");
    let used_id = env
        .ok(&[
            "mount",
            "--id",
            "in-use",
            "--lowerdir",
            &two,
            "--uidmap",
            "0:100000:65536",
            s(&used),
        ])
        .trim()
        .to_string();
    assert_eq!(used_id, "in-use");

    // Another filesystem for the workdir: a small tmpfs in the namespace.
    let other_fs = env.mkdir("other-fs");
    let status = env
        .ns
        .command("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "other-fs", s(&other_fs)])
        .status()
        .unwrap();
    assert!(status.success());
    fs::create_dir(env.ns.path(&other_fs.join("work"))).unwrap();
    let other_work = s(&other_fs.join("work")).to_string();

    // Directories whose names overlayfs options cannot carry, and a layer
    // that is a symlink to one of them.
    let colon = env.mkdir("odd/with:colon");
    let comma = env.mkdir("odd/with,comma");
    let newline = env.mkdir("odd/with\nnewline");
    let backslash = env.mkdir("odd/with\\backslash");
    let trailing = env.mkdir("odd/trailing\\");
    let via_link = env.path("odd/link-to-colon");
    std::os::unix::fs::symlink(&colon, &via_link).unwrap();
    let (colon, comma, newline, via_link) = (s(&colon), s(&comma), s(&newline), s(&via_link));
    let (backslash, trailing) = (s(&backslash), s(&trailing));
    // A user's directory holding a symlink to root's files.
    let home = env.mkdir("home");
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let planted = home.join("layer");
    std::os::unix::fs::symlink(&layers[1], &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let planted = s(&planted);

    // An upperdir inside a lower layer, a target inside one.
    let upper_in_layer = env.mkdir("layers/1/fs/upper");
    let work_beside = env.mkdir("layers/1/work");
    let target_in_layer = env.mkdir("layers/2/fs/mnt");
    let (upper_in_layer, work_beside, target_in_layer) =
        (s(&upper_in_layer), s(&work_beside), s(&target_in_layer));

    let ranges_341: String = (0..341)
        .map(|i| format!("{i}:{}:1", 100000 + i))
        .collect::<Vec<_>>()
        .join(",");
    let layers_501: String = (0..501)
        .map(|i| format!("/nonexistent/{i}"))
        .collect::<Vec<_>>()
        .join(":");
    let with_upper = format!("lowerdir={two},upperdir={up},workdir={wk}");
    let not_userns = "/proc/self/ns/mnt";
    let m = "0:100000:65536";

    #[rustfmt::skip]
    let mut cases = vec![
        // Maps.
        case("map with two fields", &["--lowerdir", &two, "--uidmap", "0:100000", tg], 1, "not CONTAINER:HOST:SIZE"),
        case("map with four fields", &["--lowerdir", &two, "--uidmap", "0:1:1:1", tg], 1, "not CONTAINER:HOST:SIZE"),
        case("map with a word", &["--lowerdir", &two, "--uidmap", "root:100000:1", tg], 1, "is not a number"),
        case("map with a negative id", &["--lowerdir", &two, "--uidmap=-1:100000:1", tg], 1, "is not a number"),
        case("empty map", &["--lowerdir", &two, "--uidmap", "", tg], 1, "not CONTAINER:HOST:SIZE"),
        case("map with an empty range", &["--lowerdir", &two, "--uidmap", "0:1:1,,2:2:1", tg], 1, "not CONTAINER:HOST:SIZE"),
        case("zero-size range", &["--lowerdir", &two, "--uidmap", "0:100000:0", tg], 1, "size is zero"),
        case("id past 32 bits", &["--lowerdir", &two, "--uidmap", "0:4294967296:1", tg], 1, "does not fit in 32 bits"),
        case("host range overflowing", &["--lowerdir", &two, "--uidmap", "0:4294967295:1", tg], 1, "host ids run past"),
        case("container range overflowing", &["--lowerdir", &two, "--uidmap", "1:0:4294967295", tg], 1, "container ids run past"),
        case("overlap, container side", &["--lowerdir", &two, "--uidmap", "0:100:10,5:1000:10", tg], 1, "overlap on the container side"),
        case("overlap across two flags", &["--lowerdir", &two, "--uidmap", "0:100:10", "--uidmap", "50:105:10", tg], 1, "overlap on the host side"),
        case("overlapping gid map", &["--lowerdir", &two, "--uidmap", m, "--gidmap", "0:1:5,4:100:1", tg], 1, "--gidmap: id ranges"),
        case("341 ranges", &["--lowerdir", &two, "--uidmap", &ranges_341, tg], 1, "at most 340"),
        case("map onto host root", &["--lowerdir", &two, "--uidmap", "0:100000:1000,1000:0:1", tg], 1, "shows on-disk id 1000 as host root"),
        case("gid map onto host root", &["--lowerdir", &two, "--uidmap", m, "--gidmap", "5:0:1", tg], 1, "gid map range 5:0:1"),
        case("-o map onto host root", &["-o", &format!("lowerdir={two},uidmap=1:0:10"), tg], 1, "--allow-host-root"),
        case("gid map without uid map", &["--lowerdir", &two, "--gidmap", m, tg], 1, "gid map without a uid map"),
        case("gidmap= without uidmap= in -o", &["-o", &format!("lowerdir={two},gidmap={m}"), tg], 1, "gid map without a uid map"),
        case("no map at all", &["--lowerdir", &two, tg], 1, "no id map"),
        case("overlap in -o uidmap", &["-o", &format!("lowerdir={two},uidmap=0:1:1,0:2:1"), tg], 1, "overlap"),
        case("uidmap as flag and in -o", &["-o", &format!("lowerdir={two},uidmap={m}"), "--uidmap", m, tg], 1, "given both"),
        case("--userns with --uidmap", &["--lowerdir", &two, "--uidmap", m, "--userns", "/proc/self/ns/user", tg], 1, "cannot be used with '--userns"),
        // Layers.
        case("no layers", &["--uidmap", m, tg], 1, "no lower layers"),
        case("missing layer", &["--lowerdir", &format!("{l0}:{missing}"), "--uidmap", m, tg], 1, "no such file or directory"),
        case("relative layer", &["--lowerdir", &format!("{l0}:layers/1/fs"), "--uidmap", m, tg], 1, "not an absolute path"),
        case("duplicate layer", &["--lowerdir", &format!("{l0}:{l1}:{l0}"), "--uidmap", m, tg], 1, "given twice"),
        case("duplicate layer, other spelling", &["--lowerdir", &format!("{l0}:{l0}/."), "--uidmap", m, tg], 1, "given twice"),
        case("layer that is a file", &["--lowerdir", &format!("{l0}:{file}"), "--uidmap", m, tg], 1, "is not a directory"),
        case("501 layers", &["--lowerdir", &layers_501, "--uidmap", m, tg], 1, "at most 500"),
        case("empty layer entry", &["--lowerdir", &format!("{l0}::{l1}"), "--uidmap", m, tg], 1, "empty entry"),
        case("layer /", &["--lowerdir", &format!("{l0}:/"), "--uidmap", m, tg], 1, "lower layer / is not allowed"),
        case("read-only with one layer", &["--lowerdir", &l0, "--uidmap", m, tg], 1, "at least two lower layers"),
        case("layer path with ','", &["--lowerdir", &format!("{l0}:{comma}"), "--uidmap", m, tg], 1, "contains ','"),
        case("layer path with a newline", &["--lowerdir", &format!("{l0}:{newline}"), "--uidmap", m, tg], 1, "contains '\\n'"),
        case("layer path with a backslash", &["--lowerdir", &format!("{l0}:{backslash}"), "--uidmap", m, tg], 1, "contains '\\\\'"),
        case("layer path ending in a backslash", &["--lowerdir", &format!("{trailing}:{l1}"), "--uidmap", m, tg], 1, "contains '\\\\'"),
        case("layer through a user's symlink to root's", &["--lowerdir", &format!("{l0}:{planted}"), "--uidmap", m, tg], 1, "refusing an unsafe path"),
        case("layer resolving to a ':' path", &["--lowerdir", &format!("{l0}:{via_link}"), "--uidmap", m, tg], 1, "after resolving symlinks"),
        case("lowerdir as flag and in -o", &["-o", &format!("lowerdir={two}"), "--lowerdir", &two, "--uidmap", m, tg], 1, "given both"),
        // Upper and work.
        case("upperdir without workdir", &["--lowerdir", &two, "--upperdir", up, "--uidmap", m, tg], 1, "upperdir given without workdir"),
        case("workdir without upperdir", &["--lowerdir", &two, "--workdir", wk, "--uidmap", m, tg], 1, "workdir given without upperdir"),
        case("workdir on another filesystem", &["--lowerdir", &two, "--upperdir", up, "--workdir", &other_work, "--uidmap", m, tg], 1, "on another filesystem than upperdir"),
        case("upperdir inside a lower layer", &["--lowerdir", &two, "--upperdir", upper_in_layer, "--workdir", work_beside, "--uidmap", m, tg], 1, "overlaps lower layer"),
        case("workdir inside upperdir", &["--lowerdir", &two, "--upperdir", up, "--workdir", &format!("{up}/."), "--uidmap", m, tg], 1, "must be separate directories"),
        case("missing upperdir", &["--lowerdir", &two, "--upperdir", &missing, "--workdir", wk, "--uidmap", m, tg], 1, "no such file or directory"),
        case("relative upperdir", &["--lowerdir", &two, "--upperdir", "upper", "--workdir", wk, "--uidmap", m, tg], 1, "not an absolute path"),
        case("upperdir with a backslash", &["--lowerdir", &two, "--upperdir", backslash, "--workdir", wk, "--uidmap", m, tg], 1, "contains '\\\\'"),
        case("upperdir with ':'", &["--lowerdir", &two, "--upperdir", colon, "--workdir", wk, "--uidmap", m, tg], 1, "contains ':'"),
        // Target.
        case("missing target", &["--lowerdir", &two, "--uidmap", m, &missing], 1, "no such file or directory"),
        case("target that is a file", &["--lowerdir", &two, "--uidmap", m, &file], 1, "is not a directory"),
        case("target used by another overlay", &["--lowerdir", &two, "--uidmap", "0:200000:65536", s(&used)], 32, "already used by idmap-overlay mount in-use (mounted)"),
        case("target inside a lower layer", &["--lowerdir", &two, "--uidmap", m, target_in_layer], 1, "lies inside lower layer"),
        case("target with ','", &["--lowerdir", &two, "--uidmap", m, comma], 1, "contains ','"),
        case("target with a newline", &["--lowerdir", &two, "--uidmap", m, newline], 1, "contains '\\n'"),
        // -o strings.
        case("empty -o", &["-o", "", tg], 1, "option string is empty"),
        case("blank -o", &["-o", "  ", tg], 1, "option string is empty"),
        case("unterminated quote", &["-o", &format!("lowerdir=\"{two},uidmap={m}"), tg], 1, "unterminated quote"),
        case("repeated lowerdir=", &["-o", &format!("lowerdir={l0},lowerdir={l1},uidmap={m}"), tg], 1, "\"lowerdir\" is given twice"),
        case("repeated overlay option", &["-o", &format!("lowerdir={two},uidmap={m},index=off,index=on"), tg], 1, "\"index\" is given twice"),
        case("empty option in -o", &["-o", &format!("lowerdir={two},,uidmap={m}"), tg], 1, "has an empty option"),
        case("option without a name", &["-o", &format!("lowerdir={two},=x,uidmap={m}"), tg], 1, "has no name"),
        case("reserved option", &["-o", &format!("{with_upper},uidmap={m},source=evil"), tg], 1, "set by idmap-overlay itself"),
        case("lowerdir= without value", &["-o", &format!("lowerdir=,uidmap={m}"), tg], 1, "needs a value"),
        // Strategy, userns, id, timeout, flags.
        case("unknown strategy", &["--strategy", "fastest", "--lowerdir", &two, "--uidmap", m, tg], 1, "invalid value 'fastest' for '--strategy"),
        case("--userns not a namespace", &["--lowerdir", &two, "--userns", not_userns, tg], 1, "is not a user namespace"),
        case("--userns a plain file", &["--lowerdir", &two, "--userns", &file, tg], 1, "is not a user namespace"),
        case("--userns missing", &["--lowerdir", &two, "--userns", &missing, tg], 1, "opening user namespace"),
        case("invalid id", &["--id", "../escape", "--lowerdir", &two, "--uidmap", m, tg], 1, "is not valid"),
        case("id already in use", &["--id", "in-use", "--lowerdir", &two, "--uidmap", m, tg], 1, "id in-use is already in use"),
        case("bad timeout", &["--timeout", "soon", "--lowerdir", &two, "--uidmap", m, tg], 1, "is not a duration"),
        case("unknown flag", &["--lowerdirs", &two, "--uidmap", m, tg], 1, "unexpected argument '--lowerdirs'"),
        case("no target", &["--lowerdir", &two, "--uidmap", m], 1, "required arguments were not provided"),
    ];
    for c in &mut cases {
        c.args = std::iter::once("mount".to_string())
            .chain(c.args.drain(..))
            .collect();
    }
    // Not root: refused before anything is looked at, also for a request
    // that would be fine for root, and for the other commands.
    for (what, args, says) in [
        (
            "mount, not root",
            mount_args(&["--lowerdir", &two, "--uidmap", m, tg]),
            "must be run as root",
        ),
        (
            "umount, not root",
            vec!["umount".to_string(), s(&used).to_string()],
            "must be run as root",
        ),
    ] {
        cases.push(Case {
            what,
            args,
            code: 1,
            says,
            unprivileged: true,
        });
    }
    // A relative state directory is a usage error too.
    cases.push(Case {
        what: "relative --state-dir",
        args: vec!["--state-dir".into(), "state".into(), "inspect".into()],
        code: 1,
        says: "not an absolute path",
        unprivileged: false,
    });
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let table = env.ns.mountinfo_text();
    let state = snapshot(&env.state);
    let layer_data = snapshot(&env.path("layers"));
    let mut failures = Vec::new();
    for c in &cases {
        let out = if c.unprivileged {
            run_unprivileged(&env, &c.args)
        } else {
            env.tool(&c.args.iter().map(String::as_str).collect::<Vec<_>>())
                .output()
                .unwrap()
        };
        let err = stderr(&out);
        let mut problems = Vec::new();
        if out.status.code() != Some(c.code) {
            problems.push(format!("exit {:?}, want {}", out.status.code(), c.code));
        }
        if err.lines().count() != 1 {
            problems.push(format!("{} stderr lines, want 1", err.lines().count()));
        }
        if !err.contains(c.says) {
            problems.push(format!("message lacks {:?}", c.says));
        }
        if err.contains("panicked") {
            problems.push("panicked".into());
        }
        if !out.stdout.is_empty() {
            problems.push(format!(
                "printed on stdout: {:?}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        if env.ns.mountinfo_text() != table {
            problems.push("the mount table changed".into());
        }
        if snapshot(&env.state) != state {
            problems.push("the state directory changed".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {err:?}",
                c.what,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(snapshot(&env.path("layers")), layer_data);

    // The live overlay survived every attempt and unmounts cleanly.
    env.ok(&["umount", "in-use"]);
    let status = env.ns.command("umount").arg(&other_fs).status().unwrap();
    assert!(status.success());
    env.assert_clean();
}

/// An invalid `--id` is refused even when the very same overlay is already
/// mounted there (that case returns the existing record, and once did so
/// before the id was looked at).
#[test]
fn an_invalid_id_is_refused_even_for_an_overlay_already_there() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let args = crate::support::mount_args(best(), &layers, &target);
    let id = env.ok(&args).trim().to_string();
    let long = "x".repeat(129);
    for bad in [long.as_str(), "../escape"] {
        let mut again = args.clone();
        again.splice(1..1, ["--id".to_string(), bad.to_string()]);
        let out = env.run(&again);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("id"), "{}", stderr(&out));
    }
    env.ok(&["umount", &id]);
    env.assert_clean();
}
