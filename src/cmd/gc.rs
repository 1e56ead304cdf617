use super::{Context, require_root};
use crate::exit::Code;
use crate::gc;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also unmount other programs' idmapped mounts below DIR (for example
    /// /var/lib/containerd/tmpmounts) once older than --min-age. Repeatable.
    #[arg(long, value_name = "DIR")]
    pub foreign: Vec<PathBuf>,
    /// Age a foreign mount must reach (counted from the first gc or inspect
    /// that saw it) before it is removed.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration, value_name = "DURATION")]
    pub min_age: Duration,
    /// How long to retry unmounting a busy mount.
    #[arg(long, default_value = "2.5s", value_parser = crate::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

pub fn run(args: GcArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    let state = ctx.state()?;
    let foreign = args
        .foreign
        .iter()
        .map(|d| crate::umount::resolve_target(&d.to_string_lossy()))
        .collect();
    let gathered = gc::gather(&state, foreign, args.min_age, true)?;
    let report = gc::collect(&state, gathered, args.dry_run, args.timeout)?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::out!("{}", crate::inspect::render_gc(&report));
    }
    Ok(gc::exit_code(&report))
}
