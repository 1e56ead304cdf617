//! The CLI, tested for real: every test runs the binary inside a private
//! mount namespace of its own (see `support`), as root.

mod support;

// The binary's command line, to check shipped command lines parse.
#[path = "../../src/cmd/args.rs"]
#[allow(dead_code)]
mod cli;

mod admin;
mod attacks;
mod bad_input;
mod bulk;
mod containers;
mod escaping;
mod faults;
mod filesystems;
mod filters;
mod gc;
mod helper;
mod hostile;
mod idmapped_upper;
mod inspect;
mod kernel_answers;
mod load;
mod metrics;
mod mount;
mod namespaces;
mod poll;
mod privacy;
mod scale;
mod signals;
mod table;
mod umount;
mod verbose;
mod waits;
