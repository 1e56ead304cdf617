use super::{Context, require_root};
use crate::exit::{Code, fail};
use crate::idmap::{self, IdRange};
use crate::mount::{Maps, MountRequest};
use crate::overlay::{self, Strategy};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount the overlay.
    pub target: PathBuf,
    /// Lower layers, colon-separated, top layer first (overlayfs order).
    #[arg(long, value_name = "DIRS")]
    pub lowerdir: Option<String>,
    /// The writable layer; with --workdir. Both absent: a read-only overlay.
    #[arg(long, value_name = "DIR")]
    pub upperdir: Option<PathBuf>,
    /// overlayfs's work directory, on the same filesystem as --upperdir.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Container id : host id : size. On-disk C..C+S-1 appears as H..H+S-1. Repeatable.
    #[arg(long, value_name = "C:H:S[,C:H:S]")]
    pub uidmap: Vec<String>,
    /// Like --uidmap, for groups; defaults to the uid map.
    #[arg(long, value_name = "C:H:S[,C:H:S]")]
    pub gidmap: Vec<String>,
    /// Take the maps of an existing user namespace (/proc/PID/ns/user).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["uidmap", "gidmap"])]
    pub userns: Option<PathBuf>,
    /// containerd's overlay options: lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536,...
    /// Other overlay options are passed to overlayfs.
    #[arg(short = 'o', long = "options", value_name = "OPTS")]
    pub options: Option<String>,
    /// How the idmapped layers are built.
    #[arg(long, value_enum, default_value = "auto")]
    pub strategy: Strategy,
    /// Accept a map that shows an on-disk id other than 0 as host root (0):
    /// a setuid file owned by that id would then run as root.
    #[arg(long)]
    pub allow_host_root: bool,
    /// Record id (default: generated, unique).
    #[arg(long)]
    pub id: Option<String>,
    /// Print the record as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
    /// How long to retry unmounting a busy temporary mount.
    #[arg(long, default_value = "2.5s", value_parser = crate::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// What clap gives when only a target is named (the mount(8) helper
/// starts from this).
impl Default for MountArgs {
    fn default() -> MountArgs {
        MountArgs {
            target: PathBuf::new(),
            lowerdir: None,
            upperdir: None,
            workdir: None,
            uidmap: Vec::new(),
            gidmap: Vec::new(),
            userns: None,
            options: None,
            strategy: Strategy::Auto,
            allow_host_root: false,
            id: None,
            json: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `--timeout`'s default: how long EBUSY is retried.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2500);

fn usage(message: impl Into<String>) -> anyhow::Error {
    fail(Code::Usage, message)
}

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
            ranges.push(idmap::parse_range(token).map_err(|e| usage(format!("--{name}: {e}")))?);
        }
    }
    idmap::validate(&ranges).map_err(|e| usage(format!("--{name}: {e}")))?;
    Ok(Some(ranges))
}

/// Turns the flags into a request; pure, so every usage error comes before
/// anything is touched.
pub fn request(args: &MountArgs) -> Result<MountRequest> {
    let opts = match &args.options {
        Some(text) => overlay::parse_options(text).map_err(|e| usage(format!("-o: {e}")))?,
        None => overlay::MountOptions::default(),
    };
    let flag_lowerdirs = match &args.lowerdir {
        Some(text) => {
            Some(overlay::split_lowerdirs(text).map_err(|e| usage(format!("--lowerdir: {e}")))?)
        }
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
        strategy: args.strategy,
        id: args.id.clone(),
        timeout: args.timeout,
    })
}

pub fn run(args: MountArgs, ctx: &Context) -> Result<Code> {
    let req = request(&args)?;
    require_root()?;
    crate::sys::catch_interrupts();
    let record = crate::mount::mount(&req, &ctx.state_dir)?;
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        crate::outln!("{}", record.id);
    }
    Ok(Code::Success)
}
