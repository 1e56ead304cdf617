use crate::cmd::args::UmountArgs;
use crate::cmd::context::{Context, require_root};
use crate::cmd::exit::Code;
use anyhow::Result;

pub fn run(args: UmountArgs, ctx: &Context) -> Result<Code> {
    require_root()?;
    crate::cmd::signals::cancel_on_interrupt();
    let mut state = ctx.state()?;
    state.lock_wait = args.timeout;
    idmap_overlay::umount(&state, &args.what, args.timeout, args.detach)?;
    Ok(Code::Success)
}
