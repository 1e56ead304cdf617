use super::{Context, require_root};
use crate::exit::{Code, fail};
use crate::gc;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
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

/// A `--foreign` directory: absolute, existing, not `/`, walked safely (a
/// directory a user could redirect would let them choose what gc unmounts).
fn foreign_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.is_absolute() {
        return Err(fail(
            Code::Usage,
            format!("--foreign {}: not an absolute path", dir.display()),
        ));
    }
    let resolved = crate::resolve::resolve_dir(dir)
        .map_err(|e| fail(Code::Usage, format!("--foreign {}: {e}", dir.display())))?;
    if resolved.path == Path::new("/") {
        return Err(fail(
            Code::Usage,
            "--foreign /: every idmapped mount on the host would count as leaked; name the directory where leaks appear",
        ));
    }
    Ok(resolved.path)
}

pub fn run(args: GcArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    let state = ctx.state()?;
    let foreign = args
        .foreign
        .iter()
        .map(|dir| foreign_dir(dir))
        .collect::<Result<Vec<_>>>()?;
    let gathered = gc::gather(&state, foreign, args.min_age, true)?;
    let report = gc::collect(&state, gathered, args.dry_run, args.timeout)?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::out!("{}", crate::inspect::render_gc(&report));
    }
    Ok(gc::exit_code(&report))
}
