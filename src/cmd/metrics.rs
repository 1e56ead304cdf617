//! The fleet view: what `inspect` and `gc` found, as Prometheus metrics in
//! the text exposition format, for node_exporter's textfile collector.
//! Rendering is pure (a snapshot, its findings and a gc report go in, text
//! comes out) and golden-tested; [`write_file`] puts the text in place
//! atomically, as the collector requires.
//!
//! Every series that can exist is always present (0 when there is none), so
//! a dashboard or an alert never has to tell "no leaks" from "no data".

use idmap_overlay::Report;
use idmap_overlay::{Finding, FindingKind as Kind, Snapshot};
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

/// What `gc` does about a kind of finding: the HELP text of
/// `idmap_overlay_leaks` says it, so an alert's reader knows whether
/// waiting for the next run can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// gc cleans it on every run.
    Gc,
    /// gc cleans it only below a `--foreign` directory, once older than
    /// `--min-age`.
    GcForeign,
    /// Reported only: gc never touches it, a person decides.
    ReportOnly,
    /// Not a leak at all (an overlay alive in another mount namespace):
    /// left out of `idmap_overlay_leaks`, counted by
    /// `idmap_overlay_overlays_elsewhere`.
    NotALeak,
}

/// Lists every kind of finding with its cleanup, and proves the list
/// complete: a kind added to `idmap_overlay::FindingKind` but not here fails to compile
/// (the match below), so each new kind is classed and always exported.
macro_rules! kinds {
    ($($kind:ident => $cleanup:ident),* $(,)?) => {
        /// Every kind of finding, in the order of `idmap_overlay::FindingKind`.
        pub const KINDS: &[(Kind, Cleanup)] = &[$((Kind::$kind, Cleanup::$cleanup)),*];

        #[allow(dead_code)]
        fn every_kind_is_listed(kind: Kind) {
            match kind {
                $(Kind::$kind => {})*
            }
        }
    };
}

kinds! {
    CrashedOperation => Gc,
    VanishedOverlay => Gc,
    TempMount => Gc,
    TempDir => Gc,
    StaleFile => Gc,
    BadRecord => ReportOnly,
    UntrackedOverlay => ReportOnly,
    ForeignMount => GcForeign,
    AliveElsewhere => NotALeak,
}

/// Every record state, always exported.
pub const STATES: &[&str] = &["preparing", "mounted", "unmounting", "detached"];

/// How many recorded overlays are not mounted here but live on in another
/// mount namespace, as the kernel says.
pub fn overlays_elsewhere(snap: &Snapshot) -> u64 {
    snap.records
        .iter()
        .map(|r| snap.health(r))
        .filter(|h| !h.mounted && h.alive_elsewhere == Some(true))
        .count() as u64
}

/// A finding kind as JSON and the text views spell it: `temp-mount`.
pub fn kind_name(kind: Kind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What one look at the system found: the input of every metric but the gc
/// ones.
pub struct Scrape<'a> {
    pub snapshot: &'a Snapshot,
    /// `idmap_overlay::classify(snapshot)`.
    pub findings: &'a [Finding],
    /// How long gathering and judging took.
    pub duration: Duration,
    /// Overlays of ours alive in other mount namespaces ([`overlays_elsewhere`]).
    /// `None` leaves the metric out (a look that did not scan namespaces),
    /// never shown as a 0 nobody measured.
    pub overlays_elsewhere: Option<u64>,
}

/// One gc run, for the `idmap_overlay_gc_*` metrics.
pub struct GcRun<'a> {
    pub report: &'a Report,
    /// From the start of gathering to the end of the last action.
    pub duration: Duration,
    /// When the run ended, in seconds since the epoch.
    pub finished: u64,
}

/// Writes metric families in the text exposition format.
struct Exposition {
    out: String,
}

impl Exposition {
    /// HELP and TYPE lines; every family here is a gauge: counts of what
    /// is there now, or of what one run did.
    fn family(&mut self, name: &str, help: &str) {
        self.out
            .push_str(&format!("# HELP {name} {}\n", escape_help(help)));
        self.out.push_str(&format!("# TYPE {name} gauge\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            self.out.push_str(&format!("{{{}}}", labels.join(",")));
        }
        self.out.push_str(&format!(" {value}\n"));
    }

    /// One sample per kind of leak, every kind, 0 where `count` has none.
    fn per_kind(&mut self, name: &str, help: &str, count: &BTreeMap<Kind, u64>) {
        self.family(name, help);
        for (kind, _) in KINDS.iter().filter(|(_, c)| *c != Cleanup::NotALeak) {
            let n = count.get(kind).copied().unwrap_or(0);
            self.sample(name, &[("kind", &kind_name(*kind))], n);
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped. Other control and format characters (an ESC in a
/// `--foreign` path) are written as the text `\xNN` or `\u{...}`, as for a
/// terminal (`escape`): the same output goes to one, and the format has no
/// escape of its own for them.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => {
                let mut buf = [0u8; 4];
                let one = crate::cmd::escape::escape(c.encode_utf8(&mut buf));
                // The escape's own backslash, escaped for the format.
                out.push_str(&one.replace('\\', "\\\\"));
            }
        }
    }
    out
}

/// A HELP text as the text format wants it: backslash and line feed
/// escaped (a double quote is fine there).
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn kinds_with(cleanup: Cleanup) -> String {
    KINDS
        .iter()
        .filter(|(_, c)| *c == cleanup)
        .map(|(k, _)| kind_name(*k))
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_kinds<'a>(kinds: impl Iterator<Item = &'a Kind>) -> BTreeMap<Kind, u64> {
    let mut count = BTreeMap::new();
    for kind in kinds {
        *count.entry(*kind).or_insert(0) += 1;
    }
    count
}

/// The metrics of `inspect --format prometheus` (`gc` is `None`) and of
/// `gc --metrics-file` (then `scrape` is a look taken after the run, so the
/// leak counts are what the run left).
pub fn render(scrape: &Scrape, gc: Option<&GcRun>) -> String {
    let mut m = Exposition { out: String::new() };
    let snap = scrape.snapshot;

    let name = "idmap_overlay_records";
    m.family(
        name,
        "Records in the state directory, by state (preparing and unmounting: an operation running, or one that crashed).",
    );
    for state in STATES {
        let n = snap
            .records
            .iter()
            .filter(|r| r.state.name() == *state)
            .count();
        m.sample(name, &[("state", state)], n);
    }

    let leaks = count_kinds(scrape.findings.iter().map(|f| &f.kind));
    m.per_kind(
        "idmap_overlay_leaks",
        &format!(
            "Leaks found, by kind (in the gc metrics file: what the run left). gc cleans {}; gc --foreign cleans {} below its directories once older than --min-age; report-only, left to a person: {}.",
            kinds_with(Cleanup::Gc),
            kinds_with(Cleanup::GcForeign),
            kinds_with(Cleanup::ReportOnly),
        ),
        &leaks,
    );

    if let Some(n) = scrape.overlays_elsewhere {
        let name = "idmap_overlay_overlays_elsewhere";
        m.family(
            name,
            "Recorded overlays not mounted here that live on in another mount namespace (a container's): the kernel's answer for one with an upperdir, a walk over the mount namespaces for a read-only one; one that cannot be told about is not counted.",
        );
        m.sample(name, &[], n);
    }

    // One series per directory given: the same directory given twice (or
    // two that only differ in bytes that are not UTF-8) is one series.
    let mut dirs: BTreeMap<String, u64> = BTreeMap::new();
    for dir in &snap.foreign_dirs {
        let n = scrape
            .findings
            .iter()
            .filter(|f| f.kind == Kind::ForeignMount && f.path.starts_with(dir))
            .count() as u64;
        dirs.entry(dir.to_string_lossy().into_owned()).or_insert(n);
    }
    if !dirs.is_empty() {
        let name = "idmap_overlay_foreign_idmapped_mounts";
        m.family(
            name,
            "Idmapped mounts of other programs below each --foreign directory, young ones included.",
        );
        for (dir, n) in &dirs {
            m.sample(name, &[("dir", dir)], n);
        }
    }

    if let Some(run) = gc {
        let report = run.report;
        let cleaned = if report.dry_run {
            BTreeMap::new() // a dry run cleans nothing
        } else {
            count_kinds(report.cleaned.iter().map(|i| &i.kind))
        };
        m.per_kind(
            "idmap_overlay_gc_cleaned",
            "Items the last gc run cleaned, by kind (0 in a dry run).",
            &cleaned,
        );
        m.per_kind(
            "idmap_overlay_gc_failed",
            "Items the last gc run could not clean, by kind (bad records always, gc never touches them; 0 in a dry run).",
            &count_kinds(report.failed.iter().map(|i| &i.kind)),
        );
        let name = "idmap_overlay_gc_dry_run";
        m.family(
            name,
            "1 when the last gc run was a dry run (nothing cleaned), else 0.",
        );
        m.sample(name, &[], u8::from(report.dry_run));
        let name = "idmap_overlay_gc_duration_seconds";
        m.family(name, "How long the last gc run took.");
        m.sample(name, &[], run.duration.as_secs_f64());
        let name = "idmap_overlay_gc_last_run_timestamp_seconds";
        m.family(
            name,
            "When the last gc run ended, in seconds since the epoch.",
        );
        m.sample(name, &[], run.finished);
    }

    // Always the last line: a reader can tell a whole file by it.
    let name = "idmap_overlay_scrape_duration_seconds";
    m.family(
        name,
        "How long the look took: reading the state directory and the mount table, and asking about the overlays not mounted here.",
    );
    m.sample(name, &[], scrape.duration.as_secs_f64());
    m.out
}

/// Why `path` cannot take the metrics file, checked before gc does
/// anything: it must be absolute, name a file, and lie in a directory that
/// exists.
pub fn check_destination(path: &Path) -> Result<(), String> {
    idmap_overlay::check_file_path(path).map_err(|e| format!("--metrics-file {e}"))
}

/// Replaces `path` with `text` so that no reader ever sees half of it: a
/// new file beside it (created exclusively, never through a symlink), mode
/// 0644 whatever the umask (node_exporter runs as another user), flushed to
/// disk, then renamed over `path`. The temporary name does not end in
/// `.prom`, so the textfile collector never reads it; it is removed on any
/// failure. Each writer has its own temporary file, so two gc runs at once
/// cannot mix their output.
///
/// The directory is walked safely (`resolve`: a user's directory leads
/// only to that user's things) and written into through its fd: a user who
/// owns a directory above it cannot swap it for a symlink to one of
/// root's and have root replace a file there.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    idmap_overlay::write_file(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn kinds_are_listed_once_with_distinct_names() {
        let names: BTreeSet<String> = KINDS.iter().map(|(k, _)| kind_name(*k)).collect();
        assert_eq!(names.len(), KINDS.len());
        assert!(names.iter().all(|n| !n.is_empty()));
    }

    #[test]
    fn state_names_are_the_records_own() {
        use idmap_overlay::RecordState;
        for state in [
            RecordState::Preparing,
            RecordState::Mounted,
            RecordState::Unmounting,
            RecordState::Detached,
        ] {
            let serde_name = serde_json::to_value(state).unwrap();
            assert_eq!(serde_name, state.name());
            assert!(STATES.contains(&state.name()));
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("plain /x"), "plain /x");
        assert_eq!(
            escape_label("a\\b\"c\nd"),
            "a\\\\b\\\"c\\nd",
            "backslash, quote, newline"
        );
        // Nothing raw that would reach a terminal: the text \x1b, its
        // backslash escaped for the format.
        assert_eq!(
            escape_label("x\u{1b}[2K\ty\u{202e}"),
            "x\\\\x1b[2K\\\\x09y\\\\u{202e}"
        );
        assert_eq!(escape_help("x\\y\nz \"q\""), "x\\\\y\\nz \"q\"");
    }

    #[test]
    fn destinations() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("x.prom");
        assert_eq!(check_destination(&ok), Ok(()));
        for (bad, says) in [
            (Path::new("x.prom").to_path_buf(), "not an absolute path"),
            (Path::new("/").to_path_buf(), "names no file"),
            (
                dir.path().join("missing/x.prom"),
                "no such file or directory",
            ),
            (ok.join("under-a-file.prom"), "is not a directory"),
            (dir.path().to_path_buf(), "is a directory"),
        ] {
            if bad == ok.join("under-a-file.prom") {
                fs::write(&ok, "").unwrap();
            }
            let err = check_destination(&bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // A name with a newline stays on one line.
        let err = check_destination(Path::new("a\nb")).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_file_replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        // (Mode 0644 under a restrictive umask is tested through gc in
        // tests/cli/metrics.rs: the umask is the whole process's.)
        write_file(&path, "a 1\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a 1\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        write_file(&path, "b 2\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "b 2\n");
        assert_eq!(names_in(dir.path()), ["m.prom"]);
    }

    #[test]
    fn write_file_replaces_a_symlink_never_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep\n").unwrap();
        let path = dir.path().join("m.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_file(&path, "a 1\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: a non-empty directory holds the final name.
        let path = dir.path().join("m.prom");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "").unwrap();
        assert!(write_file(&path, "a 1\n").is_err());
        assert_eq!(names_in(dir.path()), ["m.prom"]);
        assert_eq!(names_in(&path), ["inside"]);
    }
}

#[cfg(test)]
mod golden {
    //! The metrics as node_exporter will read them, and `promtool check
    //! metrics` accepting every one. `UPDATE_GOLDEN=1 cargo test` rewrites
    //! the files after a deliberate change.
    use super::*;
    use crate::cmd::views::golden::{check, fixture};
    use idmap_overlay::BadRecord;
    use idmap_overlay::ReportItem as Item;
    use idmap_overlay::classify;
    use idmap_overlay::testing::mount_table::parse_line;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// promtool (Debian: prometheus) must accept the text without a single
    /// lint problem. A missing promtool fails the test: a skip would pass
    /// unchecked; .ci/run installs it.
    pub(crate) fn promtool_accepts(text: &str) {
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = child.expect("promtool is not installed (Debian: prometheus)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The inspect fixture, plus a bad record and two --foreign directories
    /// (one with every character the format escapes) with a mount below each.
    fn world() -> Snapshot {
        let mut snap = fixture();
        snap.bad_records.push(BadRecord {
            path: "/run/idmap-overlay/mounts/broken.json".into(),
            problem: "is empty".into(),
        });
        snap.foreign_dirs = vec![
            "/var/lib/containerd/tmpmounts".into(),
            "/srv/odd \"dir\"\\with\nnewline".into(),
            "/var/lib/empty".into(),
        ];
        snap.table.push(
            parse_line(
                b"81 1 254:0 /data /srv/odd\\040\"dir\"\\134with\\012newline/vol ro,idmapped - ext4 /dev/vda rw",
            )
            .unwrap(),
        );
        snap
    }

    fn scrape<'a>(snap: &'a Snapshot, findings: &'a [Finding]) -> Scrape<'a> {
        Scrape {
            snapshot: snap,
            findings,
            duration: Duration::from_micros(4250),
            overlays_elsewhere: None,
        }
    }

    #[test]
    fn inspect() {
        let snap = world();
        let found = classify(&snap);
        let text = render(&scrape(&snap, &found), None);
        check("inspect-metrics.prom", &text);
        promtool_accepts(&text);
    }

    #[test]
    fn nothing_at_all_is_zeros_not_silence() {
        let snap = Snapshot::default();
        let text = render(&scrape(&snap, &[]), None);
        check("inspect-metrics-empty.prom", &text);
        promtool_accepts(&text);
        for state in STATES {
            assert!(text.contains(&format!("idmap_overlay_records{{state=\"{state}\"}} 0\n")));
        }
        for (kind, cleanup) in KINDS {
            let line = format!("idmap_overlay_leaks{{kind=\"{}\"}} 0\n", kind_name(*kind));
            assert_eq!(
                text.contains(&line),
                *cleanup != Cleanup::NotALeak,
                "{line}"
            );
        }
        // Not measured by this look: absent, not a made-up 0.
        assert!(!text.contains("elsewhere"));
        assert!(!text.contains("foreign_idmapped_mounts"));
    }

    fn report(dry_run: bool) -> Report {
        let item = |kind, path: &str, reason: &str| Item {
            kind,
            path: path.into(),
            reason: reason.into(),
        };
        let mut report = Report {
            version: 1,
            dry_run,
            interrupted: None,
            cleaned: vec![
                item(Kind::CrashedOperation, "/run/containers/job-7/rootfs", "x"),
                item(Kind::VanishedOverlay, "/mnt/gone", "x"),
                item(Kind::TempDir, "/run/idmap-overlay/tmp/y", "x"),
                item(Kind::TempDir, "/run/idmap-overlay/tmp/z", "x"),
            ],
            failed: vec![
                item(Kind::TempMount, "/run/idmap-overlay/tmp/x/0", "busy"),
                item(Kind::BadRecord, "/run/idmap-overlay/mounts/b.json", "empty"),
            ],
            skipped: vec![
                item(
                    Kind::ForeignMount,
                    "/var/lib/containerd/tmpmounts/ovl-idmapped42",
                    "young",
                ),
                item(
                    Kind::ForeignMount,
                    "/srv/odd \"dir\"\\with\nnewline/vol",
                    "young",
                ),
            ],
        };
        // As `collect` reports a dry run: nothing is done, so nothing
        // fails; the busy mount would be cleaned, the bad record is left.
        if dry_run {
            let [busy, bad] = <[Item; 2]>::try_from(std::mem::take(&mut report.failed)).unwrap();
            report.cleaned.push(busy);
            report.skipped.push(bad);
        }
        report
    }

    #[test]
    fn gc() {
        // What the run left: the fixture less the records it tore down,
        // whose leaked temp mount stayed (busy).
        let mut snap = world();
        snap.records.retain(|r| r.id == "web-1" || r.id == "web-2");
        snap.temp_dirs.clear();
        snap.lock_files.retain(|id| id.starts_with("web-"));
        let found = classify(&snap);
        let report = report(false);
        let run = GcRun {
            report: &report,
            duration: Duration::from_millis(1500),
            finished: snap.now,
        };
        let text = render(&scrape(&snap, &found), Some(&run));
        check("gc-metrics.prom", &text);
        promtool_accepts(&text);
        assert!(text.ends_with("\nidmap_overlay_scrape_duration_seconds 0.00425\n"));
    }

    #[test]
    fn gc_dry_run_cleans_nothing() {
        let snap = world();
        let found = classify(&snap);
        let report = report(true);
        let run = GcRun {
            report: &report,
            duration: Duration::from_millis(20),
            finished: snap.now,
        };
        let text = render(&scrape(&snap, &found), Some(&run));
        check("gc-metrics-dry-run.prom", &text);
        promtool_accepts(&text);
        for (kind, cleanup) in KINDS {
            let line = format!(
                "idmap_overlay_gc_cleaned{{kind=\"{}\"}} 0\n",
                kind_name(*kind)
            );
            assert_eq!(
                text.contains(&line),
                *cleanup != Cleanup::NotALeak,
                "{line}"
            );
        }
        assert!(text.contains("idmap_overlay_gc_dry_run 1\n"));
        // What a dry run leaves alone (a bad record) is no failure; it is
        // still a leak.
        assert!(text.contains("idmap_overlay_gc_failed{kind=\"bad-record\"} 0\n"));
        assert!(text.contains("idmap_overlay_leaks{kind=\"bad-record\"} 1\n"));
    }

    #[test]
    fn elsewhere_once_measured() {
        let snap = world();
        let found = classify(&snap);
        let mut scrape = scrape(&snap, &found);
        scrape.overlays_elsewhere = Some(2);
        let text = render(&scrape, None);
        assert!(
            text.contains("\nidmap_overlay_overlays_elsewhere 2\n"),
            "{text}"
        );
        promtool_accepts(&text);
    }
}
