use crate::cmd::args::MountArgs;
use crate::cmd::context::{Context, require_root};
use crate::cmd::exit::{Code, usage};
use anyhow::Result;
use idmap_overlay::IdRange;
use idmap_overlay::{Maps, MountOptions, MountRequest};
use std::path::PathBuf;

/// Merges one value that may come from a flag or from `-o`, refusing both.
fn one_of<T>(name: &str, flag: Option<T>, option: Option<T>) -> Result<Option<T>> {
    match (flag, option) {
        (Some(_), Some(_)) => Err(usage(format!("{name} is given both as --{name} and in -o"))),
        (a, b) => Ok(a.or(b)),
    }
}

fn parse_map_flags(name: &str, values: &[String]) -> Result<Option<Vec<IdRange>>> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut ranges = Vec::new();
    for value in values {
        for token in value.split(',') {
            ranges.push(IdRange::parse(token).map_err(|e| usage(format!("--{name}: {e}")))?);
        }
    }
    IdRange::check_list(&ranges).map_err(|e| usage(format!("--{name}: {e}")))?;
    Ok(Some(ranges))
}

/// Turns the flags into a request; pure, so every usage error comes before
/// anything is touched.
pub fn request(args: &MountArgs) -> Result<MountRequest> {
    let opts = match &args.options {
        Some(text) => MountOptions::parse(text).map_err(|e| usage(format!("-o: {e}")))?,
        None => MountOptions::default(),
    };
    let flag_lowerdirs = match &args.lowerdir {
        Some(text) => Some(
            MountOptions::split_lowerdirs(text).map_err(|e| usage(format!("--lowerdir: {e}")))?,
        ),
        None => None,
    };
    let lowerdirs = one_of("lowerdir", flag_lowerdirs, opts.lowerdirs)?.unwrap_or_default();
    let upperdir = one_of(
        "upperdir",
        args.upperdir.clone(),
        opts.upperdir.map(PathBuf::from),
    )?;
    let workdir = one_of(
        "workdir",
        args.workdir.clone(),
        opts.workdir.map(PathBuf::from),
    )?;
    let uid = one_of(
        "uidmap",
        parse_map_flags("uidmap", &args.uidmap)?,
        opts.uidmap,
    )?;
    let gid = one_of(
        "gidmap",
        parse_map_flags("gidmap", &args.gidmap)?,
        opts.gidmap,
    )?;
    let maps = match (&args.userns, uid, gid) {
        (Some(path), None, None) => Maps::Userns(path.clone()),
        (Some(_), _, _) => return Err(usage("--userns cannot be combined with uidmap/gidmap")),
        (None, Some(uid), gid) => Maps::Ranges {
            gid: gid.unwrap_or_else(|| uid.clone()),
            uid,
        },
        (None, None, Some(_)) => {
            return Err(usage(
                "a gid map without a uid map: give --uidmap too (the gid map defaults to it)",
            ));
        }
        (None, None, None) => {
            return Err(usage(
                "no id map: give --uidmap C:H:S, -o uidmap=C:H:S or --userns PATH",
            ));
        }
    };
    Ok(MountRequest {
        target: args.target.clone(),
        lowerdirs: lowerdirs.into_iter().map(PathBuf::from).collect(),
        upperdir,
        workdir,
        options: opts.passthrough,
        flags: opts.flags,
        maps,
        allow_host_root: args.allow_host_root,
        userns_owner: args.userns_owner,
        strategy: args.strategy,
        idmapped_upper: args.idmapped_upper || opts.idmapped_upper,
        id: args.id.clone(),
        timeout: args.timeout,
        cancel: crate::cmd::signals::flag(),
    })
}

pub fn run(args: MountArgs, ctx: &Context) -> Result<Code> {
    let req = request(&args)?;
    require_root()?;
    crate::cmd::signals::cancel_on_interrupt();
    let record = idmap_overlay::mount(&req, &ctx.state_dir)?;
    // -v says what was done, as mount(8) -v does, on stderr: stdout is the
    // id (or the record) for scripts. The same overlay there already was
    // no mount of ours (a warning said so): its record names another pid.
    if record.pid == std::process::id() {
        log::info!(
            "overlay {} mounted on {} (strategy {})",
            record.id,
            record.target.display(),
            record.strategy.name()
        );
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        outln!("{}", record.id);
    }
    Ok(Code::Success)
}
