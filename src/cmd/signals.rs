//! SIGINT, SIGTERM and SIGHUP cancel the running operation instead of
//! killing the process halfway: the library rolls back and the command
//! exits 8. The library itself installs no handler (an embedding program
//! keeps its own); this is the command line's.

use idmap_overlay::Cancel;
use std::sync::OnceLock;

/// The flag the handler raises; set before the handler is installed.
static CANCEL: OnceLock<Cancel> = OnceLock::new();

extern "C" fn raise(signal: std::ffi::c_int) {
    // Only an atomic load and store: async-signal-safe.
    if let Some(cancel) = CANCEL.get() {
        cancel.raise(signal);
    }
}

/// The process's flag: give it to every operation (a [`StateDir`]'s
/// `cancel`, a mount request's).
///
/// [`StateDir`]: idmap_overlay::StateDir
pub fn flag() -> Cancel {
    CANCEL.get_or_init(Cancel::new).clone()
}

/// From now on the three signals only raise [`flag`], which every step and
/// every wait of the operation checks. No `SA_RESTART`: a system call
/// blocked when the signal comes returns EINTR instead of waiting on.
pub fn cancel_on_interrupt() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    CANCEL.get_or_init(Cancel::new);
    let action = SigAction::new(
        SigHandler::Handler(raise),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only reads a OnceLock that is already set and
        // stores to an atomic.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

/// The signal that cancelled the command, if one did.
pub fn received() -> Option<i32> {
    CANCEL.get().and_then(Cancel::signal)
}
