use crate::cmd::args::{Format, InspectArgs};
use crate::cmd::context::{Context, require_root};
use crate::cmd::exit::{Code, Coded, fail};
use crate::cmd::filters::{self, Selection};
use crate::cmd::metrics;
use crate::cmd::table::{self, Layout};
use crate::cmd::views;
use anyhow::Result;
use clap::ValueEnum;
use idmap_overlay::KernelIdmaps;
use std::time::{Duration, Instant};

impl InspectArgs {
    /// The format asked for, or why the flags contradict each other.
    pub fn format(&self) -> Result<Format> {
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
        let filtered = filters::any_given(&self.filters) || self.target_of.is_some();
        if format == Format::Prometheus && (self.features || self.what.is_some() || filtered) {
            return Err(fail(
                Code::Usage,
                "--format prometheus shows the whole host: not one overlay, no filter, nor --features",
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

/// This boot's probe result where the state directory has one (what
/// `mount` goes by); else a probe in a private temporary directory, removed
/// after and cached nowhere. Looking creates nothing in the state
/// directory: not the directory, not its lock, not the cache (a probe
/// there would need the lock, so that gc can tell a crash's probe
/// directory).
/// Where a probe without a cache runs: beside the state directory (in its
/// parent, so on the filesystem where `mount` would probe: idmapped mounts
/// depend on it, tmpfs before 6.3 has none) when only root can change what
/// is there; else (or where nothing can be made there, a read-only
/// filesystem) /tmp, whose sticky bit keeps others from moving our
/// directory.
fn probe_parent(state: &idmap_overlay::StateDir) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    state
        .root
        .parent()
        .filter(|parent| {
            std::fs::metadata(parent)
                .is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0)
        })
        .map_or_else(|| "/tmp".into(), std::path::Path::to_path_buf)
}

fn features(state: &idmap_overlay::StateDir) -> Result<idmap_overlay::Features> {
    if let Some(found) = idmap_overlay::Features::cached(state) {
        return Ok(found);
    }
    let name = "idmap-overlay-features.XXXXXX";
    let temp = nix::unistd::mkdtemp(&probe_parent(state).join(name))
        .or_else(|_| nix::unistd::mkdtemp(&std::path::Path::new("/tmp").join(name)))
        .code(Code::System, || "making a temporary probe directory".into())?;
    let mut probe_state = idmap_overlay::StateDir::unchecked(&temp);
    probe_state.cancel = crate::cmd::signals::flag();
    let probed = idmap_overlay::probe_features(&probe_state);
    let _ = std::fs::remove_dir(&temp);
    Ok(probed?)
}

pub fn run(args: InspectArgs, ctx: &Context) -> Result<Code> {
    let format = args.format()?;
    let json = format == Format::Json;
    let columns = if args.leaks {
        views::LEAK_COLUMNS
    } else {
        views::RECORD_COLUMNS
    };
    if args.list_columns {
        out!("{}", table::list(columns));
        return Ok(Code::Success);
    }
    let chosen =
        table::choose(columns, args.output.as_deref()).map_err(|e| fail(Code::Usage, e))?;
    // A terminal's width, or the one asked for; nothing is cut in a pipe,
    // in raw output or with --no-trunc.
    let width = match (args.width, args.raw || args.no_trunc) {
        (Some(width), _) => Some(usize::from(width)),
        (None, true) => None,
        (None, false) => table::terminal_width(),
    };
    let layout = Layout {
        headings: !args.noheadings,
        raw: args.raw,
        width,
        spare_defaults: args.output.as_deref().is_none_or(|o| o.starts_with('+')),
    };
    require_root()?;
    crate::cmd::signals::cancel_on_interrupt();
    // Looking creates nothing: not the state directory, not a lock file.
    let state = ctx.state_to_read()?;
    if args.features {
        let found = features(&state)?;
        if json {
            outln!("{}", serde_json::to_string_pretty(&found)?);
        } else {
            out!("{}", views::render_features(&found));
        }
        return Ok(Code::Success);
    }
    let started = Instant::now();
    // Looking is bounded like umount and gc by default; a signal ends it.
    let mut snapshot = idmap_overlay::gather(
        &state,
        &args.foreign,
        Duration::from_secs(60),
        false,
        idmap_overlay::DEFAULT_TIMEOUT,
    )?;
    // One overlay: where its copies live too.
    let one = match &args.what {
        Some(what) if !args.leaks && format != Format::Prometheus => {
            let id = snapshot.find(what)?.id.clone();
            snapshot.look_for_copies(&id, idmap_overlay::DEFAULT_TIMEOUT);
            Some(id)
        }
        _ => None,
    };
    let snap = &snapshot;
    if format == Format::Prometheus {
        let leaks = idmap_overlay::classify(snap);
        let scrape = metrics::Scrape {
            snapshot: snap,
            findings: &leaks,
            duration: started.elapsed(),
            overlays_elsewhere: Some(metrics::overlays_elsewhere(snap)),
        };
        out!("{}", metrics::render(&scrape, None));
        return Ok(Code::Success);
    }
    let sort = args.sort.as_deref();
    let usage = |e: String| fail(Code::Usage, e);
    if args.leaks {
        // An overlay alive in another mount namespace is no leak: the
        // table (HEALTH `elsewhere`) and `inspect ID` show it.
        let leaks: Vec<idmap_overlay::Finding> = idmap_overlay::classify(snap)
            .into_iter()
            .filter(|f| f.kind != idmap_overlay::FindingKind::AliveElsewhere)
            .collect();
        if json && args.output.is_some() {
            let rows = views::leak_rows(&leaks, &chosen, sort).map_err(usage)?;
            let out = views::rows_json(&chosen, rows, "leaks");
            outln!("{}", serde_json::to_string_pretty(&out)?);
        } else if json {
            let out = serde_json::json!({"version": 1, "leaks": leaks});
            outln!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            let text = views::render_leaks(&leaks, &chosen, layout, sort).map_err(usage)?;
            out!("{text}");
        }
        return Ok(match leaks.is_empty() {
            true => Code::Success,
            false => Code::LeaksFound,
        });
    }
    match &args.what {
        None => {
            let selection = Selection::new(&args.filters, args.target_of.as_deref(), snap)?;
            let records = selection.records(snap);
            // Record files that cannot be read are listed when no filter
            // picks records.
            let corrupt = !filters::any_given(&args.filters) && args.target_of.is_none();
            if json && args.output.is_some() {
                let rows = views::record_rows(snap, &records, corrupt, &chosen, false, sort)
                    .map_err(usage)?;
                let out = views::rows_json(&chosen, rows, "mounts");
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else if json {
                let out = views::mounts_json(snap, &records, corrupt);
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let text = views::render_table(snap, &records, corrupt, &chosen, layout, sort)
                    .map_err(usage)?;
                out!("{text}");
            }
        }
        Some(_) => {
            let record = snap
                .records
                .iter()
                .find(|r| Some(&r.id) == one.as_ref())
                .expect("found above");
            let detail = views::Detail::of(snap, record, kernel_maps(&snap.health(record)));
            if json {
                outln!("{}", serde_json::to_string_pretty(&detail.json())?);
            } else {
                out!("{}", views::render_detail(&detail, snap.now, width));
            }
        }
    }
    Ok(Code::Success)
}

/// The maps as the kernel reports them for one of the overlay's idmapped
/// mounts, where one is attached and the kernel can say.
fn kernel_maps(health: &idmap_overlay::Health) -> views::KernelMaps {
    let unavailable = |note: &str| views::KernelMaps {
        from: None,
        uid_lines: vec![],
        gid_lines: vec![],
        note: note.into(),
    };
    match health.kernel_idmaps() {
        KernelIdmaps::Read {
            from,
            uid_lines,
            gid_lines,
        } => views::KernelMaps {
            from: Some(from),
            uid_lines,
            gid_lines,
            note: "read with statmount(2)".into(),
        },
        KernelIdmaps::NothingAttached => unavailable(
            "no idmapped mount of this overlay is attached (overlayfs keeps private clones of its layers), so the kernel cannot be asked; the maps above are as recorded",
        ),
        KernelIdmaps::NoUniqueId => {
            unavailable("this kernel has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8+)")
        }
        KernelIdmaps::NotReported => {
            unavailable("this kernel's statmount(2) does not report id maps (Linux 6.15+)")
        }
        KernelIdmaps::Failed(e) => unavailable(&format!("statmount(2) failed: {e}")),
    }
}
