//! The command line as clap reads it: every subcommand's flags and
//! arguments, and nothing else. The binary runs them (`src/cmd/`); the man
//! pages and shell completions are generated from them (`examples/gen-docs`
//! includes this file), so it depends on clap and the library only.

use clap::{Args, Parser, Subcommand, ValueEnum};
use idmap_overlay::Strategy;
use std::path::PathBuf;
use std::time::Duration;

/// The heading the options every subcommand takes are listed under, apart
/// from each subcommand's own (in --help and the man pages).
pub const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "idmap-overlay",
    version,
    about = "Mount overlayfs with idmapped lower layers, and clean up what leaks",
    propagate_version = true
)]
pub struct Cli {
    /// Where records, locks and temporary mountpoints live [env:
    /// IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay].
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub state_dir: Option<PathBuf>,
    /// Say on stderr what was done on success (-v, info lines; -vv adds
    /// debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only errors on stderr: no warnings.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount an overlay whose lower layers appear owned by shifted ids.
    Mount(MountArgs),
    /// Unmount an overlay and remove its record.
    Umount(UmountArgs),
    /// Remove leaked temporary mounts, stale records and leftover directories.
    Gc(GcArgs),
    /// Show what is mounted, by us and by others, and whether anything leaked.
    Inspect(InspectArgs),
    /// Recorded ids and targets, one per line, for shell completion.
    #[command(name = "complete-ids", hide = true)]
    CompleteIds(CompleteIdsArgs),
}

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
    /// Accept a --userns created by this uid (by default only root's: a
    /// user's namespace may have taken the pid of an exited container).
    #[arg(long, value_name = "UID", requires = "userns")]
    pub userns_owner: Option<u32>,
    /// containerd's overlay options: lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536,...
    /// Other overlay options are passed to overlayfs. mount(8)'s per-mount
    /// flags (ro, rw, nosuid, nodev, noexec, noatime, ...) are set on the
    /// overlay's mount: rw (the default) undoes an earlier ro; an overlay
    /// without an upper layer is read-only all the same.
    #[arg(short = 'o', long = "options", value_name = "OPTS")]
    pub options: Option<String>,
    /// How the idmapped layers are built.
    #[arg(long, default_value = "auto", value_parser = strategy_names())]
    pub strategy: Strategy,
    /// Accept a map that shows an on-disk id other than 0 as host root (0):
    /// a setuid file owned by that id would then run as root.
    #[arg(long)]
    pub allow_host_root: bool,
    /// Idmap the upper layer too: what the container writes is stored with
    /// its own ids (a portable layer). The upperdir must be out of reach of
    /// users other than root (a 0700 root directory above it).
    #[arg(long)]
    pub idmapped_upper: bool,
    /// Record id (default: generated, unique).
    #[arg(long)]
    pub id: Option<String>,
    /// Print the record as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
    /// How long to retry unmounting a busy temporary mount, and to wait for the state lock.
    #[arg(long, default_value = "2.5s", value_parser = parse_duration, value_name = "DURATION")]
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
            userns_owner: None,
            options: None,
            strategy: Strategy::Auto,
            allow_host_root: false,
            idmapped_upper: false,
            id: None,
            json: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `--timeout`'s default: how long EBUSY is retried.
pub const DEFAULT_TIMEOUT: Duration = idmap_overlay::DEFAULT_TIMEOUT;

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// Mountpoints (anything containing '/') or record ids, each unmounted
    /// as if alone.
    #[arg(value_name = "TARGET|ID", conflicts_with = "all")]
    pub what: Vec<String>,
    /// Unmount every recorded overlay the filters keep (the rows `inspect`
    /// lists with the same filters; all of them without one), deepest
    /// targets first, printing each.
    #[arg(short = 'a', long)]
    pub all: bool,
    #[command(flatten)]
    pub filters: Filters,
    /// With --all: print what would be unmounted, unmount nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to retry while the overlay is busy (EBUSY, or alive in
    /// another mount namespace).
    #[arg(long, default_value = "2.5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Unmount it from this mount namespace only, while copies live on in
    /// others (containers): the record stays, in state `detached`, until gc
    /// finds no copy left anywhere.
    #[arg(long)]
    pub detach: bool,
}

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
    /// Age a foreign mount must reach before it is removed, counted from the
    /// first gc run (not --dry-run) that saw it: inspect and --dry-run never
    /// start the clock.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub min_age: Duration,
    /// How long to retry unmounting a busy mount.
    #[arg(long, default_value = "2.5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// After the run, write Prometheus metrics (what is left, what this run
    /// cleaned and failed) to PATH, atomically, for node_exporter's textfile
    /// collector. PATH is absolute and its directory exists.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

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
    #[arg(short = 'J', long)]
    pub json: bool,
    /// The columns to show, comma-separated (see --list-columns).
    #[arg(short = 'o', long = "output", value_name = "COLUMNS")]
    pub output: Option<String>,
    /// Print no header line.
    #[arg(short = 'n', long = "noheadings")]
    pub noheadings: bool,
    /// Raw output for scripts: cells separated by one space, spaces and
    /// other unsafe characters escaped (\x20), nothing cut or aligned.
    #[arg(short = 'r', long)]
    pub raw: bool,
    /// Sort the rows by this column.
    #[arg(long, value_name = "COLUMN")]
    pub sort: Option<String>,
    /// Fit the table and the detail view to COLS characters, also in a pipe
    /// (default: the terminal's width, or COLUMNS, on a terminal; nothing
    /// is cut in a pipe).
    #[arg(long, value_name = "COLS", value_parser = clap::value_parser!(u16).range(1..), conflicts_with_all = ["raw", "no_trunc"])]
    pub width: Option<u16>,
    /// Cut nothing, even on a terminal: whole ids, whole paths.
    #[arg(long)]
    pub no_trunc: bool,
    /// List the columns -o takes, and what they show.
    #[arg(long)]
    pub list_columns: bool,
    /// Output format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// List everything leaked on this host, ours and other programs'; exit 3
    /// if anything is.
    #[arg(long, conflicts_with_all = ["features", "what", "filters"])]
    pub leaks: bool,
    /// With --leaks or --format prometheus: count other programs' idmapped
    /// mounts below DIR as leaks, as `gc --foreign DIR` would. Repeatable.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["features", "what"])]
    pub foreign: Vec<PathBuf>,
    /// What the running kernel supports: this boot's cached probe, else a
    /// probe made now (in a temporary directory, cached nowhere).
    #[arg(long, conflicts_with_all = ["what", "filters", "target_of"])]
    pub features: bool,
    /// Only the overlay that holds FILE here (the mount FILE lies on), as
    /// findmnt -T; FILE may be relative.
    #[arg(short = 'T', long, value_name = "FILE", conflicts_with_all = ["what", "leaks"])]
    pub target_of: Option<PathBuf>,
    #[command(flatten)]
    pub filters: Filters,
    /// Print a line per change to our overlays as it happens (mounted,
    /// unmounted, detached, vanished, leaked, cleaned), as findmnt --poll
    /// does; JSON lines with -J. Sees this mount namespace's mount table,
    /// and the records for the rest. Ends on SIGINT or SIGTERM (exit 0).
    #[arg(long, conflicts_with_all = [
        "leaks", "features", "what", "list_columns", "output", "noheadings", "raw", "sort",
        "filters", "target_of",
    ])]
    pub poll: bool,
    /// With --poll: end after the first line.
    #[arg(long, requires = "poll")]
    pub first_only: bool,
    /// With --poll: end once DURATION passed without a line.
    #[arg(long, requires = "poll", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// One overlay, by mountpoint (contains '/') or record id.
    #[arg(value_name = "TARGET|ID", conflicts_with_all = ["leaks", "filters"])]
    pub what: Option<String>,
}

/// Which records `inspect` lists and `umount --all` unmounts: every
/// filter given must hold.
#[derive(Debug, Default, Args)]
#[group(id = "filters", multiple = true)]
pub struct Filters {
    /// Only records whose STATE is one of these (comma-separated).
    #[arg(long, value_name = "STATES", value_delimiter = ',', value_parser = STATE_WORDS)]
    pub state: Vec<String>,
    /// Only records whose HEALTH is one of these (comma-separated).
    #[arg(long, value_name = "HEALTHS", value_delimiter = ',', value_parser = HEALTH_WORDS)]
    pub health: Vec<String>,
    /// Only records whose target is DIR or lies below it (whole path
    /// components; DIR as written, made absolute: symlinks are not
    /// followed).
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,
    /// Only overlays mounted in this mount namespace: of the process PID,
    /// or a namespace file (/proc/PID/ns/mnt, or a bind mount of one).
    #[arg(long, value_name = "PID|PATH")]
    pub namespace: Option<String>,
}

/// The words of the STATE column.
pub const STATE_WORDS: [&str; 5] = [
    "mounted",
    "unmounted",
    "preparing",
    "unmounting",
    "detached",
];

/// The words of the HEALTH column.
pub const HEALTH_WORDS: [&str; 6] = ["ok", "elsewhere", "unknown", "running", "leaked", "gone"];

#[derive(Debug, Args)]
pub struct CompleteIdsArgs {}

/// The column names `inspect -o` and `--sort` take, for the shell
/// completions (`examples/gen-docs` reads this file alone): the table's,
/// then those only `--leaks` has. The columns themselves are defined in
/// `src/cmd/views.rs`, whose test keeps this list equal to their names.
/// The binary itself never reads it.
#[allow(dead_code)]
pub const COLUMN_NAMES: &[&str] = &[
    "ID",
    "TARGET",
    "STRATEGY",
    "LAYERS",
    "MAPS",
    "STATE",
    "AGE",
    "HEALTH",
    "UPPER",
    "WORK",
    "SOURCE",
    "MOUNTID",
    "DEV",
    "MOUNTNS",
    "ELSEWHERE",
    "PID",
    "CREATED",
    "KIND",
    "MOUNT",
    "PATH",
    "WHY",
    "ACTION",
];

/// `--strategy`: one of the library's names, listed in help and
/// completions.
fn strategy_names() -> impl clap::builder::TypedValueParser<Value = Strategy> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Strategy::ALL.map(Strategy::name))
        .map(|name| name.parse::<Strategy>().expect("a listed name"))
}

/// Parses `2.5s`, `300ms`, `1m`, `1m30s`, `2h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let not_a_duration = || format!("{text:?} is not a duration (e.g. 2.5s, 300ms, 1m)");
    let mut rest = text;
    let mut seconds = 0.0;
    if rest.is_empty() {
        return Err(not_a_duration());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(split);
        let value: f64 = number.parse().map_err(|_| not_a_duration())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        seconds += match unit {
            "" if after.is_empty() && rest.len() == text.len() => value,
            "s" => value,
            "ms" => value / 1000.0,
            "m" | "min" => value * 60.0,
            "h" => value * 3600.0,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
                ));
            }
        };
        rest = after;
    }
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("{text:?} is too long a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idmap_overlay::testing::human_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        for (d, text) in [
            (Duration::ZERO, "0ms"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_millis(2500), "2.5s"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m30s"),
        ] {
            assert_eq!(human_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
        for bad in ["", "s", "-1s", "1.2.3s", "5 parsecs", "1e999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
