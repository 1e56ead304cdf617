//! What every subcommand gets besides its own arguments: the state
//! directory to use, root checked, and the way results are written.

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
        let env = std::env::var_os(crate::cmd::context::STATE_DIR_ENV).filter(|v| !v.is_empty());
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
