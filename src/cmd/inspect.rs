use super::{Context, require_root};
use crate::exit::{Code, fail};
use crate::{features, gc, inspect};
use anyhow::Result;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Output JSON for scripts.
    #[arg(long)]
    pub json: bool,
    /// List everything leaked on this host: ours and other programs'.
    #[arg(long, conflicts_with_all = ["features", "what"])]
    pub leaks: bool,
    /// What the running kernel supports, from real probes.
    #[arg(long, conflicts_with = "what")]
    pub features: bool,
    /// One overlay, by mountpoint (contains '/') or record id.
    #[arg(value_name = "TARGET|ID")]
    pub what: Option<String>,
}

pub fn run(args: InspectArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    let state = ctx.state()?;
    if args.features {
        let found = features::probe(&state)?;
        if args.json {
            crate::outln!("{}", serde_json::to_string_pretty(&found)?);
        } else {
            crate::out!("{}", inspect::render_features(&found));
        }
        return Ok(Code::Success);
    }
    let gathered = gc::gather(&state, Vec::new(), Duration::from_secs(60), false)?;
    let snap = &gathered.snapshot;
    if args.leaks {
        let leaks = crate::findings::classify(snap);
        if args.json {
            let out = serde_json::json!({"version": 1, "leaks": leaks});
            crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            crate::out!("{}", inspect::render_leaks(&leaks));
        }
        return Ok(Code::Success);
    }
    match &args.what {
        None => {
            if args.json {
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
            if args.json {
                crate::outln!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                crate::out!("{}", inspect::render_detail(&detail, snap.now));
            }
        }
    }
    Ok(Code::Success)
}
