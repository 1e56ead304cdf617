//! The command line: one file per subcommand, each a `run` that calls into
//! the library's API. Their clap `Args` live together in `args.rs`, which
//! the man page and completion generators read on its own.

// One file per subcommand (and `inspect --poll`'s own):
pub mod complete;
pub mod gc;
pub mod inspect;
pub mod mount;
pub mod poll;
pub mod umount;

// What they share: the arguments, what every subcommand gets (context),
// exit codes, escaping, signals, tables and views, which records the
// filters keep, metrics, the mount(8) helper, and the dispatch from
// arguments to a subcommand.
pub mod args;
pub mod context;
pub mod dispatch;
pub mod escape;
pub mod exit;
pub mod filters;
pub mod metrics;
pub mod mount_helper;
pub mod signals;
pub mod table;
pub mod views;
