//! The command line: one file per subcommand, each an `Args` struct and a
//! `run` that calls into the library.

// One file per subcommand:
pub mod complete;
pub mod gc;
pub mod inspect;
pub mod mount;
pub mod umount;

// What they share: the arguments, exit codes, escaping, signals, tables
// and views, metrics, and the mount(8) helper.
pub mod args;
pub mod escape;
pub mod exit;
pub mod metrics;
pub mod mount_helper;
pub mod signals;
pub mod table;
pub mod views;

use crate::cmd::args::{Cli, Command};
use crate::cmd::exit::{Code, fail};
use anyhow::Result;
use idmap_overlay::StateDir;
use std::path::PathBuf;

/// The environment variable that moves the state directory (as
/// `--state-dir` does).
pub const STATE_DIR_ENV: &str = "IDMAP_OVERLAY_STATE_DIR";

/// What every subcommand gets besides its own arguments.
pub struct Context {
    pub state_dir: PathBuf,
    /// Given by --state-dir or the environment, not the default.
    pub explicit: bool,
}

impl Context {
    /// `--state-dir`, else `IDMAP_OVERLAY_STATE_DIR` (an empty one counts
    /// as unset), else the default.
    pub fn new(flag: Option<PathBuf>) -> Context {
        let env = std::env::var_os(crate::cmd::STATE_DIR_ENV).filter(|v| !v.is_empty());
        match flag.or(env.map(PathBuf::from)) {
            Some(state_dir) => Context {
                state_dir,
                explicit: true,
            },
            None => Context {
                state_dir: PathBuf::from(idmap_overlay::DEFAULT_STATE_DIR),
                explicit: false,
            },
        }
    }

    /// The checked state directory (created if missing).
    pub fn state(&self) -> Result<StateDir> {
        let mut state = StateDir::open(&self.state_dir)?;
        state.cancel = crate::cmd::signals::flag();
        Ok(state)
    }

    /// The state directory for a command that only looks (inspect, gc
    /// --dry-run): checked, never created. Missing, it is "nothing
    /// recorded" at the default place, and a mistake (exit 16) where one
    /// was named.
    pub fn state_to_read(&self) -> Result<StateDir> {
        let mut state = StateDir::open_to_read(&self.state_dir, self.explicit)?;
        state.cancel = crate::cmd::signals::flag();
        Ok(state)
    }
}

/// Writes results to stdout. A closed stdout (`inspect | head`) is no
/// reason for a panic: the work is done and recorded either way.
pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(args);
}

/// Writes a diagnostic to stderr, ignoring a closed stderr likewise.
pub fn write_stderr(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_fmt(args);
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

/// A clap error as one line, like every other error the tool prints:
/// `invalid value 'x' for '--strategy <STRATEGY>' [possible values: ...]`.
/// Keeps clap's tips, drops its usage block and "For more information".
pub fn usage_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let mut line = String::new();
    for part in text.lines().map(str::trim) {
        if part.is_empty() || part.starts_with("Usage:") || part.starts_with("For more information")
        {
            continue;
        }
        let part = part.strip_prefix("error: ").unwrap_or(part);
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') || part.starts_with('[') {
                " "
            } else {
                "; "
            });
        }
        line.push_str(part);
    }
    line
}

pub fn run(cli: Cli) -> Result<Code> {
    let ctx = Context::new(cli.state_dir);
    match cli.command {
        Command::Mount(args) => mount::run(args, &ctx),
        Command::Umount(args) => umount::run(args, &ctx),
        Command::Gc(args) => gc::run(args, &ctx),
        Command::Inspect(args) => {
            let code = inspect::run(args, &ctx)?;
            match crate::cmd::signals::received() {
                Some(signal) => Err(fail(
                    Code::Interrupted,
                    format!("interrupted by signal {signal}"),
                )),
                None => Ok(code),
            }
        }
        Command::CompleteIds(args) => complete::run(args, &ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn usage_errors_are_one_line() {
        for (args, want) in [
            (
                &["idmap-overlay", "mount", "--strategy", "x", "/t"][..],
                "invalid value 'x' for '--strategy <STRATEGY>' [possible values: auto, detached, common-dir, per-layer]",
            ),
            (
                &["idmap-overlay", "mount"][..],
                "the following required arguments were not provided: <TARGET>",
            ),
            (
                &["idmap-overlay", "frobnicate"][..],
                "unrecognized subcommand 'frobnicate'",
            ),
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            let line = usage_line(&err);
            assert!(!line.contains('\n'), "{line:?}");
            assert!(line.starts_with(want), "{args:?}: {line:?}");
        }
    }
}
