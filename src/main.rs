use clap::Parser;
use idmap_overlay::cmd::{self, Cli};
use idmap_overlay::exit::{Code, code_of};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // mount(8) exits 1 on incorrect invocation; clap would say 2.
            return ExitCode::from(if err.use_stderr() {
                Code::Usage.as_u8()
            } else {
                0
            });
        }
    };
    let default_level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format_timestamp(None)
        .format_target(false)
        .init();
    match cmd::run(cli) {
        Ok(code) => ExitCode::from(code.as_u8()),
        Err(err) => {
            eprintln!("idmap-overlay: {err:#}");
            ExitCode::from(code_of(&err).as_u8())
        }
    }
}
