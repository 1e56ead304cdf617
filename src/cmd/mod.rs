//! The command line: one file per subcommand, each an `Args` struct and a
//! `run` that calls into the library.

pub mod complete;
pub mod gc;
pub mod inspect;
pub mod mount;
pub mod umount;

use crate::exit::{Code, fail};
use crate::state::StateDir;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "idmap-overlay",
    version,
    about = "Mount overlayfs with idmapped lower layers, and clean up what leaks",
    propagate_version = true
)]
pub struct Cli {
    /// Where records, locks and temporary mountpoints live.
    #[arg(long, global = true, env = "IDMAP_OVERLAY_STATE_DIR", default_value = crate::state::DEFAULT_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr: no warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount an overlay whose lower layers appear owned by shifted ids.
    Mount(mount::MountArgs),
    /// Unmount an overlay and remove its record.
    Umount(umount::UmountArgs),
    /// Remove leaked temporary mounts, stale records and leftover directories.
    Gc(gc::GcArgs),
    /// Show what is mounted, by us and by others, and whether anything leaked.
    Inspect(inspect::InspectArgs),
    /// Recorded ids and targets, one per line, for shell completion.
    #[command(name = "complete-ids", hide = true)]
    CompleteIds(complete::CompleteIdsArgs),
}

/// What every subcommand gets besides its own arguments.
pub struct Context {
    pub state_dir: PathBuf,
}

impl Context {
    /// The checked state directory (created if missing).
    pub fn state(&self) -> Result<StateDir> {
        StateDir::open(&self.state_dir)
    }
}

pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(fail(
            Code::Usage,
            "must be run as root (mounting needs CAP_SYS_ADMIN)",
        ))
    }
}

pub fn run(cli: Cli) -> Result<Code> {
    let ctx = Context {
        state_dir: cli.state_dir,
    };
    match cli.command {
        Command::Mount(args) => mount::run(args, &ctx),
        Command::Umount(args) => umount::run(args, &ctx),
        Command::Gc(args) => gc::run(args, &ctx),
        Command::Inspect(args) => inspect::run(args, &ctx),
        Command::CompleteIds(args) => complete::run(args, &ctx),
    }
}
