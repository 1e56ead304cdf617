use super::{Context, require_root};
use crate::exit::{Code, fail};
use crate::{features, findings, gc, inspect, metrics};
use anyhow::Result;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How `inspect` prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and fields for people.
    Text,
    /// JSON for scripts (the same as --json).
    Json,
    /// Prometheus text exposition format, for node_exporter's textfile
    /// collector: records by state, leaks by kind (the same with or without
    /// --leaks).
    Prometheus,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output JSON for scripts: the same as --format json.
    #[arg(long)]
    pub json: bool,
    /// Output format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// List everything leaked on this host: ours and other programs'.
    #[arg(long, conflicts_with_all = ["features", "what"])]
    pub leaks: bool,
    /// With --leaks or --format prometheus: count other programs' idmapped
    /// mounts below DIR as leaks, as `gc --foreign DIR` would. Repeatable.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["features", "what"])]
    pub foreign: Vec<PathBuf>,
    /// What the running kernel supports, from real probes.
    #[arg(long, conflicts_with = "what")]
    pub features: bool,
    /// One overlay, by mountpoint (contains '/') or record id.
    #[arg(value_name = "TARGET|ID")]
    pub what: Option<String>,
}

impl InspectArgs {
    /// The format asked for, or why the flags contradict each other.
    fn format(&self) -> Result<Format> {
        let format = match (self.json, self.format) {
            (true, Some(format)) if format != Format::Json => {
                return Err(fail(
                    Code::Usage,
                    format!(
                        "--json contradicts --format {}; give one of them",
                        format.to_possible_value().expect("not skipped").get_name()
                    ),
                ));
            }
            (true, _) => Format::Json,
            (false, format) => format.unwrap_or(Format::Text),
        };
        if format == Format::Prometheus && (self.features || self.what.is_some()) {
            return Err(fail(
                Code::Usage,
                "--format prometheus shows the whole host: not one overlay, nor --features",
            ));
        }
        if !self.foreign.is_empty() && !self.leaks && format != Format::Prometheus {
            return Err(fail(
                Code::Usage,
                "--foreign counts leaks: give it with --leaks or --format prometheus",
            ));
        }
        Ok(format)
    }
}

pub fn run(args: InspectArgs, ctx: &Context) -> Result<Code> {
    let format = args.format()?;
    let json = format == Format::Json;
    require_root()?;
    crate::sys::catch_interrupts();
    let state = ctx.state()?;
    if args.features {
        let found = {
            let _all = state.lock_all()?;
            features::probe(&state)?
        };
        if json {
            crate::outln!("{}", serde_json::to_string_pretty(&found)?);
        } else {
            crate::out!("{}", inspect::render_features(&found));
        }
        return Ok(Code::Success);
    }
    let started = Instant::now();
    let foreign = super::gc::foreign_dirs(&args.foreign)?;
    let snapshot = gc::gather(&state, foreign, Duration::from_secs(60), false)?;
    let snap = &snapshot;
    if format == Format::Prometheus {
        let leaks = findings::classify(snap);
        let scrape = metrics::Scrape {
            snapshot: snap,
            findings: &leaks,
            duration: started.elapsed(),
            overlays_elsewhere: Some(metrics::overlays_elsewhere(snap)),
        };
        crate::out!("{}", metrics::render(&scrape, None));
        return Ok(Code::Success);
    }
    if args.leaks {
        let leaks = findings::classify(snap);
        if json {
            let out = serde_json::json!({"version": 1, "leaks": leaks});
            crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            crate::out!("{}", inspect::render_leaks(&leaks));
        }
        return Ok(Code::Success);
    }
    match &args.what {
        None => {
            if json {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&inspect::mounts_json(snap))?
                );
            } else {
                crate::out!("{}", inspect::render_table(snap));
            }
        }
        Some(what) => {
            let path = what
                .contains('/')
                .then(|| crate::umount::resolve_target(what))
                .transpose()?;
            let record = snap
                .records
                .iter()
                .find(|r| match &path {
                    Some(p) => r.target == *p,
                    None => r.id == *what,
                })
                .ok_or_else(|| {
                    fail(
                        Code::Usage,
                        format!("{what}: no idmap-overlay record by that target or id"),
                    )
                })?;
            let detail = inspect::Detail::of(snap, record);
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                crate::out!("{}", inspect::render_detail(&detail, snap.now));
            }
        }
    }
    Ok(Code::Success)
}
