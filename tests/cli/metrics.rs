//! The fleet view for real: leaks made by killing `mount` and by another
//! program's idmapped mount, counted by `inspect --format prometheus` and
//! in gc's metrics file, then gone after gc; every output accepted by
//! promtool; the metrics file never seen half-written.

use crate::support::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The last line of every metrics output: a reader can tell a whole file.
const FINAL: &str = "idmap_overlay_scrape_duration_seconds";
const KINDS: [&str; 8] = [
    "crashed-operation",
    "vanished-overlay",
    "temp-mount",
    "temp-dir",
    "stale-file",
    "bad-record",
    "untracked-overlay",
    "foreign-mount",
];

/// The samples of a metrics text, by series as printed
/// (`idmap_overlay_leaks{kind="temp-mount"}`), or what is wrong with it:
/// every line a HELP, a TYPE or a sample of ours with a number, the text
/// ending in a whole line that is the final metric.
fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    if !text.ends_with('\n') {
        return Err(format!("no final newline: {:?}", text.lines().last()));
    }
    let mut samples = BTreeMap::new();
    let mut last = "";
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            if !(comment.starts_with("HELP idmap_overlay_")
                || (comment.starts_with("TYPE idmap_overlay_") && comment.ends_with(" gauge")))
            {
                return Err(format!("bad comment line {line:?}"));
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("bad value in {line:?}"))?;
        if !series.starts_with("idmap_overlay_") {
            return Err(format!("bad series in {line:?}"));
        }
        if samples.insert(series.to_string(), value).is_some() {
            return Err(format!("{series} twice"));
        }
        last = series;
    }
    if last != FINAL {
        return Err(format!("last sample is {last:?}, not {FINAL}"));
    }
    Ok(samples)
}

/// promtool (Debian: prometheus) accepts the text with no lint problem; a
/// missing promtool fails the test (.ci/run installs it).
fn promtool_accepts(text: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed (Debian: prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{what}: promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parsed, checked by promtool, and every state and kind present.
fn metrics(text: &str, what: &str) -> BTreeMap<String, f64> {
    promtool_accepts(text, what);
    let samples = parse(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    for state in ["preparing", "mounted", "unmounting", "detached"] {
        let series = format!("idmap_overlay_records{{state=\"{state}\"}}");
        assert!(samples.contains_key(&series), "{what}: no {series}");
    }
    for kind in KINDS {
        let series = format!("idmap_overlay_leaks{{kind=\"{kind}\"}}");
        assert!(samples.contains_key(&series), "{what}: no {series}");
    }
    assert!(
        samples.contains_key("idmap_overlay_overlays_elsewhere"),
        "{what}: no idmap_overlay_overlays_elsewhere"
    );
    samples
}

fn inspect_metrics(env: &Env, args: &[&str]) -> BTreeMap<String, f64> {
    let mut all = vec!["inspect", "--format", "prometheus"];
    all.extend(args);
    let text = env.ok(&all);
    metrics(&text, &format!("{all:?}"))
}

fn file_metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = fs::read_to_string(path).unwrap();
    metrics(&text, &path.display().to_string())
}

fn leaks(m: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    series_by(m, "idmap_overlay_leaks", "kind")
}

/// The samples of one family by its one label's value, zeros left out.
fn series_by(m: &BTreeMap<String, f64>, family: &str, label: &str) -> BTreeMap<String, f64> {
    let prefix = format!("{family}{{{label}=\"");
    m.iter()
        .filter(|(_, v)| **v != 0.0)
        .filter_map(|(k, v)| {
            let value = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            Some((value.to_string(), *v))
        })
        .collect()
}

fn counts(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Kinds of `inspect --leaks --json`, counted: what the metrics must agree with.
fn json_leak_counts(env: &Env, extra: &[&str]) -> BTreeMap<String, f64> {
    let mut args = vec!["inspect", "--leaks", "--json"];
    args.extend(extra);
    let mut count = BTreeMap::new();
    for leak in json(&env.run(&args))["leaks"].as_array().unwrap() {
        *count
            .entry(leak["kind"].as_str().unwrap().to_string())
            .or_insert(0.0) += 1.0;
    }
    count
}

/// `mount` of `strategy` killed (SIGKILL) at `point`: a crashed operation.
fn crash_mount(env: &Env, strategy: &str, point: &str, target: &Path) {
    let layers = env.layers(2);
    let out = env.run_at(
        &format!("{point}:kill"),
        &mount_args(strategy, &layers, target),
    );
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
}

/// An idmapped mount of "another program" at `at`: a temporary mount of a
/// killed common-dir mount, moved there, its record then cleaned by gc.
fn foreign_idmapped_mount(env: &Env, at: &Path) {
    let target = env.mkdir("mnt-for-foreign");
    crash_mount(env, "common-dir", "temp-mounted", &target);
    let temp = env.our_mounts().into_iter().find(|m| m.idmapped()).unwrap();
    fs::create_dir_all(at).unwrap();
    assert!(
        env.ns
            .command("mount")
            .args(["--move", s(&temp.mount_point), s(at)])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(env.run(&["gc"]).status.code(), Some(0));
    assert!(env.state_files("mounts").is_empty());
}

fn gc_with_metrics(env: &Env, file: &Path, extra: &[&str]) -> Output {
    // gc rolls back, then decides a read-only overlay gone from here by a
    // walk over the mount namespaces: its default timeout (2.5 s) ran out
    // under emulation.
    let timeout = walk_timeout(2500);
    let mut args = vec![
        "gc",
        "--json",
        "--timeout",
        &timeout,
        "--metrics-file",
        s(file),
    ];
    args.extend(extra);
    env.run(&args)
}

/// Names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn real_leaks_are_counted_then_gone_after_gc() {
    let env = Env::new();
    let foreign = env.mkdir("foreign");
    foreign_idmapped_mount(&env, &foreign.join("leftover"));
    // Two mounts killed midway, one overlay unmounted behind our back, a
    // leftover lock file and temp directory.
    crash_mount(&env, "common-dir", "temp-mounted", &env.mkdir("mnt1"));
    crash_mount(&env, best(), "overlay-mounted", &env.mkdir("mnt2"));
    // Read-write, so that the kernel says it is gone (its upperdir no
    // longer in use): a read-only one is decided by a walk over the mount
    // namespaces, bounded by 2.5 s in inspect, which under emulated 6.1
    // once ran out and left it "perhaps alive elsewhere", not a leak.
    let mnt3 = env.mkdir("mnt3");
    env.ok(&mount_args_with(
        "auto",
        &env.layers(2),
        &mnt3,
        &[
            "--upperdir",
            s(&env.mkdir("mnt3-upper")),
            "--workdir",
            s(&env.mkdir("mnt3-work")),
        ],
    ));
    env.plain_umount(&mnt3);
    fs::write(env.state.join("locks/gone.lock"), "").unwrap();
    fs::create_dir(env.state.join("tmp/gone")).unwrap();

    let ours = [
        ("crashed-operation", 2.0),
        ("vanished-overlay", 1.0),
        ("stale-file", 1.0),
        ("temp-dir", 1.0),
    ];
    let records = counts(&[("preparing", 2.0), ("mounted", 1.0)]);
    let dir_series = format!(
        "idmap_overlay_foreign_idmapped_mounts{{dir=\"{}\"}}",
        s(&foreign)
    );

    // Without --foreign, the other program's mount is nobody's leak.
    let plain = inspect_metrics(&env, &[]);
    assert_eq!(
        leaks(&plain),
        counts(&ours),
        "{}",
        String::from_utf8_lossy(&env.run(&["inspect", "--json"]).stdout)
    );
    assert_eq!(leaks(&plain), json_leak_counts(&env, &[]));
    assert_eq!(series_by(&plain, "idmap_overlay_records", "state"), records);
    assert!(!plain.keys().any(|k| k.contains("foreign_idmapped")));
    // With it, counted, in the plain and the --leaks view alike.
    let mut all = ours.to_vec();
    all.push(("foreign-mount", 1.0));
    for view in [
        &["--foreign", s(&foreign)][..],
        &["--leaks", "--foreign", s(&foreign)],
    ] {
        let m = inspect_metrics(&env, view);
        assert_eq!(leaks(&m), counts(&all), "{view:?}");
        assert_eq!(m[&dir_series], 1.0);
        assert_eq!(series_by(&m, "idmap_overlay_records", "state"), records);
    }
    assert_eq!(
        counts(&all),
        json_leak_counts(&env, &["--foreign", s(&foreign)])
    );

    // A dry run writes the file and cleans nothing.
    let dir = env.mkdir("node-exporter");
    let file = dir.join("idmap_overlay.prom");
    let flags = ["--foreign", s(&foreign), "--min-age", "0"];
    let before = now().floor();
    let dry = gc_with_metrics(&env, &file, &[&["--dry-run"][..], &flags[..]].concat());
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let m = file_metrics(&file);
    assert_eq!(leaks(&m), counts(&all));
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_cleaned", "kind"),
        counts(&[])
    );
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_failed", "kind"),
        counts(&[])
    );
    assert_eq!(m["idmap_overlay_gc_dry_run"], 1.0);
    assert_eq!(json_leak_counts(&env, &flags[..2]), counts(&all));

    // The real run: everything it cleaned, nothing left.
    let out = gc_with_metrics(&env, &file, &flags);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = now().ceil();
    let m = file_metrics(&file);
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_cleaned", "kind"),
        counts(&all)
    );
    let mut reported = BTreeMap::new();
    for item in json(&out)["cleaned"].as_array().unwrap() {
        *reported
            .entry(item["kind"].as_str().unwrap().to_string())
            .or_insert(0.0) += 1.0;
    }
    assert_eq!(reported, counts(&all));
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_failed", "kind"),
        counts(&[])
    );
    assert_eq!(leaks(&m), counts(&[]));
    assert_eq!(series_by(&m, "idmap_overlay_records", "state"), counts(&[]));
    assert_eq!(m[&dir_series], 0.0);
    assert_eq!(m["idmap_overlay_gc_dry_run"], 0.0);
    let ran = m["idmap_overlay_gc_last_run_timestamp_seconds"];
    assert!(
        before <= ran && ran <= after,
        "{before} <= {ran} <= {after}"
    );
    assert!(m["idmap_overlay_gc_duration_seconds"] > 0.0);
    // What node_exporter will read: readable by all, alone in its directory.
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert_eq!(names(&dir), ["idmap_overlay.prom"]);

    // gc's file with --foreign has every family there is.
    every_family_is_documented(&fs::read_to_string(&file).unwrap());

    let m = inspect_metrics(&env, &["--foreign", s(&foreign)]);
    assert_eq!(leaks(&m), counts(&[]));
    assert_eq!(m[&dir_series], 0.0);
    env.assert_clean();
}

/// Every metric family in `text` is named in the main man page and in
/// docs/CLI.md, and every name there is a family the tool writes.
fn every_family_is_documented(text: &str) {
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for doc in ["man/idmap-overlay.8", "docs/CLI.md"] {
        let doc_text = fs::read_to_string(Path::new(ROOT).join(doc)).unwrap();
        for family in &families {
            assert!(doc_text.contains(family), "{doc} does not name {family}");
        }
        let mut rest = doc_text.as_str();
        while let Some(at) = rest.find("idmap_overlay_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                families.contains(name.as_str()),
                "{doc} names {name}, which the tool does not write"
            );
            rest = &rest[at + name.len()..];
        }
    }
}

/// A run that cannot clean everything (exit 64) writes its file too, with
/// what failed and what is left; the next one, once the mount is free,
/// brings both to 0. Under umask 077 the file is still 0644.
#[test]
fn a_partial_run_writes_what_failed() {
    let env = Env::new();
    let target = env.mkdir("mnt");
    crash_mount(&env, "common-dir", "temp-mounted", &target);
    let temp = env.our_mounts().into_iter().find(|m| m.idmapped()).unwrap();
    let mut holder = hold_busy(&env, &temp.mount_point, "60");
    let file = env.path("idmap_overlay.prom");
    let mut cmd = env.tool(&["gc", "--timeout", "300ms", "--metrics-file", s(&file)]);
    // SAFETY: the closure runs in the forked child before exec and only
    // sets its umask, which exec keeps.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let m = file_metrics(&file);
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_failed", "kind"),
        counts(&[("crashed-operation", 1.0)])
    );
    assert_eq!(leaks(&m), counts(&[("crashed-operation", 1.0)]));
    assert_eq!(
        series_by(&m, "idmap_overlay_records", "state"),
        counts(&[("preparing", 1.0)])
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = gc_with_metrics(&env, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = file_metrics(&file);
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_cleaned", "kind"),
        counts(&[("crashed-operation", 1.0)])
    );
    assert_eq!(
        series_by(&m, "idmap_overlay_gc_failed", "kind"),
        counts(&[])
    );
    assert_eq!(leaks(&m), counts(&[]));
    env.assert_clean();
}

/// A metrics file gc could not write is refused before gc does anything:
/// exit 1, one line, the leak still there, nothing written.
#[test]
fn bad_metrics_files_are_refused_before_anything_is_done() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    fs::write(env.state.join("locks/gone.lock"), "").unwrap();
    let dir = env.mkdir("out");
    let a_file = dir.join("a-file");
    fs::write(&a_file, "").unwrap();
    let newline = format!("{}/new\nline/x.prom", s(&dir));
    for (path, says) in [
        ("idmap_overlay.prom".to_string(), "not an absolute path"),
        (
            format!("{}/missing/x.prom", s(&dir)),
            "no such file or directory",
        ),
        (s(&dir).to_string(), "is a directory"),
        (format!("{}/x.prom", s(&a_file)), "is not a directory"),
        (newline, "no such file or directory"),
    ] {
        for dry in [false, true] {
            let mut args = vec!["gc", "--metrics-file", &path];
            if dry {
                args.push("--dry-run");
            }
            let out = env.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{path:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{path:?}: {err}");
            assert!(err.contains(says), "{path:?}: {err}");
            assert!(out.stdout.is_empty(), "{path:?}: gc ran");
            assert_eq!(env.state_files("locks"), ["gone.lock"], "{path:?}");
            assert_eq!(names(&dir), ["a-file"], "{path:?}");
        }
    }
}

#[test]
fn inspect_flags_that_contradict_are_refused() {
    let env = Env::new();
    let (target, id) = env.mounted();
    for (args, says) in [
        (
            vec!["inspect", "--json", "--format", "prometheus"],
            "--json contradicts --format prometheus",
        ),
        (
            vec!["inspect", "--format", "text", "--json"],
            "--json contradicts --format text",
        ),
        (
            vec!["inspect", "--format", "prometheus", id.as_str()],
            "--format prometheus shows the whole host",
        ),
        (
            vec!["inspect", "--format", "prometheus", s(&target)],
            "--format prometheus shows the whole host",
        ),
        (
            vec!["inspect", "--features", "--format", "prometheus"],
            "--format prometheus shows the whole host",
        ),
        (
            vec!["inspect", "--foreign", "/srv"],
            "--foreign counts leaks",
        ),
        (
            vec!["inspect", "--format", "json", "--foreign", "/srv"],
            "--foreign counts leaks",
        ),
        (vec!["inspect", "--format", "yaml"], "invalid value 'yaml'"),
        // Checked as gc checks its --foreign.
        (
            vec!["inspect", "--leaks", "--foreign", "relative"],
            "not an absolute path",
        ),
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // The same format twice is no contradiction; --json is --format json.
    let json = env.ok(&["inspect", "--json"]);
    assert_eq!(env.ok(&["inspect", "--format", "json"]), json);
    assert_eq!(env.ok(&["inspect", "--json", "--format", "json"]), json);
    // (Without AGE, which can tick between the two runs.)
    let columns = "ID,TARGET,STRATEGY,LAYERS,STATE,HEALTH";
    assert_eq!(
        env.ok(&["inspect", "--format", "text", "-o", columns]),
        env.ok(&["inspect", "-o", columns])
    );
    let m = inspect_metrics(&env, &[]);
    assert_eq!(
        series_by(&m, "idmap_overlay_records", "state"),
        counts(&[("mounted", 1.0)])
    );
    assert_eq!(leaks(&m), counts(&[]));
}

/// A reader loops beside 200 gc runs (two writers at once) that rewrite the
/// metrics file: every read is a whole file, and no temporary file stays.
#[test]
fn the_metrics_file_is_never_seen_half_written() {
    let env = Env::new();
    // Some leaks that gc cannot clean, so the file has every family.
    env.ok(&["gc"]); // makes the state directory
    fs::write(env.state.join("mounts/broken.json"), "{").unwrap();
    let foreign: Vec<PathBuf> = (0..20).map(|i| env.mkdir(&format!("f/{i}"))).collect();
    let dir = env.mkdir("node-exporter");
    let file = dir.join("idmap_overlay.prom");
    let mut args: Vec<String> = ["gc", "--metrics-file", s(&file)]
        .map(String::from)
        .to_vec();
    for f in &foreign {
        args.extend(["--foreign".to_string(), s(f).to_string()]);
    }
    assert_eq!(env.run(&args).status.code(), Some(64), "the bad record");

    let done = std::sync::atomic::AtomicBool::new(false);
    let (reads, distinct) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0u64;
            let mut seen = std::collections::BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = fs::read_to_string(&file).expect("the file is always there");
                let m = parse(&text).unwrap_or_else(|e| panic!("read {reads}: {e}\n{text}"));
                // records, leaks, overlays elsewhere, foreign dirs, gc
                // cleaned and failed, the run's three, the scrape time.
                assert_eq!(m.len(), 4 + 8 + 1 + 20 + 8 + 8 + 3 + 1, "{text}");
                seen.insert(text);
                reads += 1;
            }
            (reads, seen.len())
        });
        let writers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..100 {
                        let out = env.run(&args);
                        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
                    }
                })
            })
            .collect();
        // The reader stops whatever the writers did: a failed writer fails
        // the test instead of leaving the reader looping forever.
        let written: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in written {
            w.unwrap();
        }
        reader.join().unwrap()
    });
    // The reader really ran beside the writers: many reads, and files
    // from many runs (each has its own durations).
    assert!(reads >= 200, "only {reads} reads");
    assert!(distinct >= 50, "only {distinct} different files read");
    assert_eq!(names(&dir), ["idmap_overlay.prom"]);
    promtool_accepts(&fs::read_to_string(&file).unwrap(), "after 200 runs");
}

/// The alert rules load, and fire when the README says: leaks above 0 for
/// 30 minutes, gc silent for over an hour.
#[test]
fn alert_rules_pass_promtool() {
    let rules = Path::new(ROOT).join("contrib/prometheus/idmap-overlay.rules.yml");
    for args in [
        vec!["check", "rules", s(&rules)],
        vec!["test", "rules", "idmap-overlay.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(Path::new(ROOT).join("tests/prometheus"))
            .output()
            .expect("promtool is not installed (Debian: prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The commands the gc unit and the README's recipe show are ones this
/// version accepts, and the rules file they name exists.
#[test]
fn shipped_metrics_commands_parse() {
    use clap::Parser;
    let service =
        fs::read_to_string(Path::new(ROOT).join("contrib/systemd/idmap-overlay-gc.service"))
            .unwrap();
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let recipe = readme
        .split("\n### Fleet metrics\n")
        .nth(1)
        .expect("README has a Fleet metrics recipe");
    let mut commands: Vec<&str> = Vec::new();
    for line in service.lines().chain(recipe.lines()) {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(command) = line.strip_prefix("ExecStart=/usr/sbin/") {
            commands.push(command);
        }
    }
    let metrics_lines: Vec<&&str> = commands
        .iter()
        .filter(|c| c.contains("--metrics-file /var/lib/prometheus/node-exporter/"))
        .collect();
    assert_eq!(metrics_lines.len(), 2, "unit and README: {commands:?}");
    for command in commands {
        let argv: Vec<&str> = command.split_whitespace().collect();
        if let Err(e) = crate::cli::Cli::try_parse_from(&argv) {
            panic!("{command}: {e}");
        }
    }
    assert!(recipe.contains("contrib/prometheus/idmap-overlay.rules.yml"));
    assert!(
        Path::new(ROOT)
            .join("contrib/prometheus/idmap-overlay.rules.yml")
            .is_file()
    );
}

/// node_exporter reads only `*.prom`: another name is written as asked,
/// with a warning.
#[test]
fn a_file_not_named_prom_is_written_with_a_warning() {
    let env = Env::new();
    let file = env.path("idmap_overlay.txt");
    let out = env.run(&["gc", "--metrics-file", s(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reads only *.prom files"),
        "{}",
        stderr(&out)
    );
    file_metrics(&file);
    let quiet = env.run(&["gc", "--metrics-file", s(&env.path("idmap_overlay.prom"))]);
    assert_eq!(stderr(&quiet), "");
}

/// A user who owns a directory above the textfile directory swaps it for
/// a symlink to one of root's: gc refuses the path (its walk lets a user's
/// directory lead only to that user's things) and writes nothing there; a
/// swap after the check changes nothing either, as the file is written
/// through the directory's fd.
#[test]
fn a_users_symlink_cannot_aim_the_metrics_file_at_roots_directory() {
    let env = Env::new();
    env.ok(&["gc"]);
    let users = env.mkdir("prometheus");
    std::os::unix::fs::chown(&users, Some(65534), Some(65534)).unwrap();
    let roots = env.mkdir("root-only");
    fs::write(roots.join("idmap.prom"), "root's own\n").unwrap();
    let textfile = users.join("textfile");
    std::os::unix::fs::symlink(&roots, &textfile).unwrap();
    std::os::unix::fs::lchown(&textfile, Some(65534), Some(65534)).unwrap();
    let out = gc_with_metrics(&env, &textfile.join("idmap.prom"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("owned by uid 65534"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(roots.join("idmap.prom")).unwrap(),
        "root's own\n"
    );
    assert_eq!(names(&roots), ["idmap.prom"]);
    // The user's own directory there is fine.
    fs::remove_file(&textfile).unwrap();
    fs::create_dir(&textfile).unwrap();
    std::os::unix::fs::chown(&textfile, Some(65534), Some(65534)).unwrap();
    let out = gc_with_metrics(&env, &textfile.join("idmap.prom"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(names(&textfile), ["idmap.prom"]);
}

/// A durable write (the metrics file lives on disk) flushes the file, then
/// renames it, then flushes the directory, so the rename survives a crash.
#[test]
fn the_metrics_file_and_its_directory_are_flushed() {
    let env = Env::new();
    env.ok(&["gc"]);
    let dir = env.mkdir("node-exporter");
    let file = dir.join("idmap.prom");
    let out = env
        .ns
        .command("strace")
        .args([
            "-f",
            "-e",
            "trace=openat,fsync,renameat,renameat2,rename",
            "--",
            BIN,
        ])
        .args(["gc", "--metrics-file", s(&file)])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let trace = stderr(&out);
    let lines: Vec<&str> = trace.lines().collect();
    let renamed = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains("\"idmap.prom\""))
        .unwrap_or_else(|| panic!("no rename onto idmap.prom:\n{trace}"));
    // The directory's fd: opened as "." with O_DIRECTORY.
    let dir_fd = lines[..renamed]
        .iter()
        .rev()
        .find(|l| l.contains("openat(") && l.contains("\".\"") && l.contains("O_DIRECTORY"))
        .and_then(|l| l.rsplit("= ").next())
        .map(|fd| fd.trim().to_string())
        .unwrap_or_else(|| panic!("the directory was not opened:\n{trace}"));
    assert!(
        lines[..renamed].iter().any(|l| l.contains("fsync(")),
        "the file was not flushed before the rename:\n{trace}"
    );
    assert!(
        lines[renamed..]
            .iter()
            .any(|l| l.contains(&format!("fsync({dir_fd})"))),
        "the directory (fd {dir_fd}) was not flushed after the rename:\n{trace}"
    );
}
