use super::{Context, require_root};
use crate::cli::UmountArgs;
use crate::exit::Code;
use anyhow::Result;

pub fn run(args: UmountArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    crate::signals::cancel_on_interrupt();
    let mut state = ctx.state()?;
    state.lock_wait = args.timeout;
    crate::umount::umount(&state, &args.what, args.timeout, args.detach)?;
    Ok(Code::Success)
}
