use crate::cmd::args::GcArgs;
use crate::cmd::context::{Context, require_root};
use crate::cmd::exit::{Code, Coded, fail};
use crate::cmd::metrics;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub fn run(args: GcArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    // Before anything is done: a run whose metrics cannot be written would
    // leave the fleet view stale without a word.
    if let Some(path) = &args.metrics_file {
        metrics::check_destination(path).map_err(|why| fail(Code::Usage, why))?;
        if path.extension().is_none_or(|e| e != "prom") {
            log::warn!(
                "--metrics-file {path:?}: node_exporter's textfile collector reads only *.prom files"
            );
        }
    }
    crate::cmd::signals::cancel_on_interrupt();
    // A dry run only looks: it creates nothing.
    let mut state = match args.dry_run {
        true => ctx.state_to_read()?,
        false => ctx.state()?,
    };
    state.lock_wait = args.timeout;
    let foreign = args.foreign.clone();
    let started = Instant::now();
    let snapshot =
        idmap_overlay::gather(&state, &foreign, args.min_age, !args.dry_run, args.timeout)?;
    let report = idmap_overlay::collect(&state, &snapshot, args.dry_run, args.timeout)?;
    let duration = started.elapsed();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", render_gc(&report));
    }
    if let Some(path) = &args.metrics_file {
        write_metrics(path, &state, foreign, args.min_age, &report, duration)?;
    }
    if let Some(signal) = report.interrupted {
        return Err(fail(
            Code::Interrupted,
            format!("interrupted by signal {signal}; what is left is for the next run"),
        ));
    }
    Ok(exit_code(&report))
}

/// Looks again, as `inspect` would, so the leak counts are what this run
/// left (an alert on them means gc could not help), and writes them with
/// the run's own numbers.
fn write_metrics(
    path: &Path,
    state: &idmap_overlay::StateDir,
    foreign: Vec<PathBuf>,
    min_age: Duration,
    report: &idmap_overlay::Report,
    duration: Duration,
) -> Result<()> {
    let started = Instant::now();
    // The look again is bounded like the run (the metrics say what is
    // left, as far as can be told in that time).
    let after = idmap_overlay::gather(
        state,
        &foreign,
        min_age,
        false,
        idmap_overlay::DEFAULT_TIMEOUT,
    )?;
    let snap = &after;
    let leaks = idmap_overlay::classify(snap);
    let scrape = metrics::Scrape {
        snapshot: snap,
        findings: &leaks,
        duration: started.elapsed(),
        overlays_elsewhere: Some(metrics::overlays_elsewhere(snap)),
    };
    let run = metrics::GcRun {
        report,
        duration,
        finished: snap.now,
    };
    metrics::write_file(path, &metrics::render(&scrape, Some(&run)))
        .code(Code::System, || format!("writing metrics file {path:?}"))
}

/// The exit code of a gc run.
fn exit_code(report: &idmap_overlay::Report) -> Code {
    if report.interrupted.is_some() {
        Code::Interrupted
    } else if report.failed.is_empty() {
        Code::Success
    } else {
        Code::Partial
    }
}

/// The human form of a gc report: one line per item.
fn render_gc(report: &idmap_overlay::Report) -> String {
    let mut out = String::new();
    let kind = |k| {
        serde_json::to_value(k)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let (cleaned, left) = match report.dry_run {
        true => ("would clean", "would leave alone"),
        false => ("cleaned", "left alone"),
    };
    for (verb, items) in [
        (cleaned, &report.cleaned),
        ("failed", &report.failed),
        (left, &report.skipped),
    ] {
        for i in items {
            out.push_str(&format!(
                "{verb}: {} {} ({})\n",
                kind(i.kind),
                crate::cmd::escape::path(&i.path),
                crate::cmd::escape::escape(&i.reason)
            ));
        }
    }
    if out.is_empty() {
        out.push_str("nothing to clean\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::views::golden::check;

    #[test]
    fn gc_report() {
        use idmap_overlay::FindingKind as Kind;
        use idmap_overlay::{Report, ReportItem as Item};
        let report = Report {
            version: 1,
            dry_run: false,
            cleaned: vec![Item {
                kind: Kind::CrashedOperation,
                path: "/run/containers/job-7/rootfs".into(),
                reason: "mount by pid 4242 died before it finished".into(),
            }],
            failed: vec![Item {
                kind: Kind::TempMount,
                path: "/run/idmap-overlay/tmp/x/0".into(),
                reason: "busy after 2.5s: held by pid 77 (sh) through its cwd".into(),
            }],
            skipped: vec![],
            interrupted: None,
        };
        check("gc-report.txt", &render_gc(&report));
        check(
            "gc-report.json",
            &(serde_json::to_string_pretty(&report).unwrap() + "\n"),
        );
    }
}
