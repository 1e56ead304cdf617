/// `println!` that does not panic when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::context::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that does not panic when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::context::write_stdout(format_args!($($arg)*))
    };
}

/// `eprintln!` that does not panic when stderr is closed.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cmd::context::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

// The command line: everything only the binary needs (src/cmd/). The
// library (src/lib.rs) knows nothing of it.
mod cmd;

use clap::Parser;
use cmd::args::Cli;
use cmd::exit::{Code, code_of};
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // mount(8) runs /sbin/mount.idmap-overlay for `mount -t idmap-overlay`:
    // the same binary under that name speaks the helper's conventions.
    if argv
        .first()
        .is_some_and(|argv0| cmd::mount_helper::invoked_as_helper(argv0))
    {
        return helper_main(&argv[1..]);
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(err) => {
            // mount(8) exits 1 on incorrect invocation; clap would say 2.
            if !err.use_stderr() {
                let _ = err.print(); // --help, --version
                return ExitCode::SUCCESS;
            }
            // The bare command: its help, as a person typing it expects.
            if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = err.print();
                return ExitCode::from(Code::Usage.as_u8());
            }
            // Every error of ours is one line on stderr; clap spreads its
            // own over several (found by tests/cli/bad_input.rs).
            errln!("idmap-overlay: {}", cmd::dispatch::usage_line(&err));
            return ExitCode::from(Code::Usage.as_u8());
        }
    };
    init_logging("idmap-overlay", cli.quiet, cli.verbose);
    finish(
        "idmap-overlay",
        guard_panics("idmap-overlay", || cmd::dispatch::run(cli)),
    )
}

fn helper_main(args: &[std::ffi::OsString]) -> ExitCode {
    let helper = match cmd::mount_helper::parse_args(args) {
        Ok(helper) => helper,
        Err(err) => return finish(cmd::mount_helper::HELPER_NAME, Err(err)),
    };
    init_logging(
        cmd::mount_helper::HELPER_NAME,
        false,
        u8::from(helper.verbose),
    );
    finish(
        cmd::mount_helper::HELPER_NAME,
        guard_panics(cmd::mount_helper::HELPER_NAME, || {
            cmd::mount_helper::run(&helper)
        }),
    )
}

/// Runs `command`; a panic (a bug) unwinds through it, so every rollback
/// guard still runs, and then exits 4 after one line on stderr.
fn guard_panics(
    program: &'static str,
    command: impl FnOnce() -> anyhow::Result<Code>,
) -> anyhow::Result<Code> {
    std::panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        errln!(
            "{program}: internal error: {}{place} (please report)",
            cmd::escape::escape(&what)
        );
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(command)) {
        Ok(result) => result,
        Err(_) => Ok(Code::Bug),
    }
}

/// Diagnostics as `idmap-overlay: warning: ...`, like errors, with what
/// came from outside escaped.
fn init_logging(program: &'static str, quiet: bool, verbose: u8) {
    let default_level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format(move |out, record| {
            use std::io::Write;
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            let text = record.args().to_string();
            writeln!(out, "{program}: {level}: {}", cmd::escape::escape(&text))
        })
        .init();
}

fn finish(program: &str, result: anyhow::Result<Code>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code.as_u8()),
        Err(err) => {
            let text = format!("{err:#}");
            errln!("{program}: {}", cmd::escape::escape(&text));
            ExitCode::from(code_of(&err).as_u8())
        }
    }
}
