//! `umount TARGET|ID...` and `umount --all`, umount(8)'s habits: each
//! overlay is unmounted as `umount` of it alone would be, one after the
//! other; a failure is told and the rest still go. The exit status is
//! mount(8)'s for several (see [`overall`]).

use crate::cmd::args::UmountArgs;
use crate::cmd::context::{Context, require_root};
use crate::cmd::escape::{escape, path};
use crate::cmd::exit::{Code, Failure, code_of, usage};
use crate::cmd::filters::{self, Selection};
use anyhow::Result;
use idmap_overlay::{Record, StateDir};

pub fn run(args: UmountArgs, ctx: &Context) -> Result<Code> {
    if !args.all && filters::any_given(&args.filters) {
        return Err(usage(
            "--state, --health, --under and --namespace choose what --all unmounts: add --all",
        ));
    }
    // Checked here, not by clap: --all is a flag, present to clap even
    // when not given (false), and a dry run must never unmount.
    if args.dry_run && !args.all {
        return Err(usage("--dry-run goes with --all"));
    }
    if !args.all && args.what.is_empty() {
        return Err(usage(
            "name a TARGET or ID to unmount (several may be given), or --all",
        ));
    }
    require_root()?;
    crate::cmd::signals::cancel_on_interrupt();
    // A dry run only looks: it creates nothing.
    let mut state = match args.dry_run {
        true => ctx.state_to_read()?,
        false => ctx.state()?,
    };
    state.lock_wait = args.timeout;
    if let [one] = args.what.as_slice() {
        idmap_overlay::umount(&state, one, args.timeout, args.detach)?;
        return Ok(Code::Success);
    }
    if !args.all {
        let named: Vec<(String, String)> = args
            .what
            .iter()
            .map(|one| (one.clone(), escape(one).into_owned()))
            .collect();
        return several(&state, &args, &named, false);
    }
    let chosen = chosen(&state, &args)?;
    if chosen.is_empty() {
        log::warn!("no recorded overlay matches; nothing unmounted");
        return Ok(Code::Success);
    }
    if args.dry_run {
        for (_, name) in &chosen {
            outln!("{name}: would be unmounted");
        }
        return Ok(Code::Success);
    }
    several(&state, &args, &chosen, true)
}

/// `--all`: the records the filters keep, as (id, `TARGET (ID)` escaped),
/// deepest targets first (an overlay mounted inside another goes before
/// it), the newest first among equals (umount(8) -a goes in reverse
/// order).
fn chosen(state: &StateDir, args: &UmountArgs) -> Result<Vec<(String, String)>> {
    let snap = idmap_overlay::gather(
        state,
        &[],
        std::time::Duration::from_secs(60),
        false,
        args.timeout,
    )?;
    let selection = Selection::new(&args.filters, None, &snap)?;
    let mut records: Vec<&Record> = selection.records(&snap);
    records.sort_by(|a, b| {
        let depth = |r: &Record| r.target.components().count();
        depth(b)
            .cmp(&depth(a))
            .then_with(|| b.created.cmp(&a.created))
    });
    Ok(records
        .into_iter()
        .map(|r| {
            let name = format!("{} ({})", path(&r.target), escape(&r.id));
            (r.id.clone(), name)
        })
        .collect())
}

/// Unmounts each of `what` (a target or id, and how to name it) in turn.
/// A failure is told on stderr as a lone umount's would be, and the rest
/// still go; a signal stops at once. With `tell`, each success is printed
/// (`--all` says what it did).
fn several(
    state: &StateDir,
    args: &UmountArgs,
    what: &[(String, String)],
    tell: bool,
) -> Result<Code> {
    let mut failed = Vec::new();
    for (tried, (one, name)) in what.iter().enumerate() {
        match idmap_overlay::umount(state, one, args.timeout, args.detach) {
            Ok(()) if tell => outln!("{name}: unmounted"),
            Ok(()) => {}
            Err(err) => {
                let err = anyhow::Error::from(err);
                let code = code_of(&err);
                if code == Code::Interrupted {
                    return Err(err.context(Failure {
                        code,
                        message: format!(
                            "{} of {} unmounted, the rest not tried",
                            tried - failed.len(),
                            what.len()
                        ),
                    }));
                }
                errln!("idmap-overlay: {}", escape(&format!("{err:#}")));
                failed.push(code);
            }
        }
    }
    Ok(overall(what.len(), &failed))
}

/// mount(8)'s exit status for several: 0 when each worked; when each
/// failed, their code if they all share one, else 32 (as `mount -a` says
/// 32 for "all failed"); when some failed, 64.
fn overall(tried: usize, failed: &[Code]) -> Code {
    match failed {
        [] => Code::Success,
        [first, rest @ ..] if failed.len() == tried => {
            if rest.iter().all(|c| c == first) {
                *first
            } else {
                Code::Mount
            }
        }
        _ => Code::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_of_several() {
        assert_eq!(overall(3, &[]), Code::Success);
        assert_eq!(overall(3, &[Code::Mount]), Code::Partial);
        assert_eq!(overall(2, &[Code::Usage, Code::Usage]), Code::Usage);
        assert_eq!(overall(2, &[Code::Usage, Code::Mount]), Code::Mount);
        assert_eq!(overall(1, &[Code::State]), Code::State);
    }
}
