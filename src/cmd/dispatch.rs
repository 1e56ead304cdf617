//! From parsed arguments to the subcommand that runs them, and clap's
//! errors as one line.

use crate::cmd::args::{Cli, Command};
use crate::cmd::context::Context;
use crate::cmd::exit::{Code, fail};
use crate::cmd::{complete, gc, inspect, mount, poll, umount};
use anyhow::Result;

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
        // Watching ends with a signal, and that is success.
        Command::Inspect(args) if args.poll => poll::run(&args, args.format()?, &ctx),
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
