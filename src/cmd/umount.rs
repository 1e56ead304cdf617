use super::{Context, require_root};
use crate::exit::Code;
use anyhow::Result;
use clap::Args;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// The mountpoint (anything containing '/') or the record id.
    #[arg(value_name = "TARGET|ID")]
    pub what: String,
    /// How long to retry while the overlay is busy (EBUSY, or alive in
    /// another mount namespace).
    #[arg(long, default_value = "2.5s", value_parser = crate::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Unmount it from this mount namespace only, while copies live on in
    /// others (containers): the record stays, in state `detached`, until gc
    /// finds no copy left anywhere.
    #[arg(long)]
    pub detach: bool,
}

pub fn run(args: UmountArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    crate::sys::catch_interrupts();
    let mut state = ctx.state()?;
    state.lock_wait = args.timeout;
    crate::umount::umount(&state, &args.what, args.timeout, args.detach)?;
    Ok(Code::Success)
}
