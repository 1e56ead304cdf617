//! Asking a running operation to stop.
//!
//! Mounting, unmounting and gc check a [`Cancel`] at every step where
//! stopping is clean (between the steps of a mount, in lock waits and EBUSY
//! retries, between gc items) and then roll back and return
//! [`ErrorKind::Cancelled`](crate::base::error::ErrorKind::Cancelled). The library
//! installs no signal handler: a program that wants Ctrl-C to cancel raises
//! the flag from its own handler ([`Cancel::raise`] is async-signal-safe).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// A flag shared by whoever may cancel and the operations that watch it.
/// Cloning shares the flag. The default is a flag nobody raises.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    flag: Arc<AtomicI32>,
}

/// The reason stored when a caller cancels without a signal.
const NO_SIGNAL: i32 = -1;

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels every operation watching this flag.
    pub fn cancel(&self) {
        self.flag.store(NO_SIGNAL, Ordering::SeqCst);
    }

    /// Cancels because `signal` arrived (the messages name it). Only an
    /// atomic store: safe in a signal handler.
    pub fn raise(&self, signal: i32) {
        self.flag.store(signal, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) != 0
    }

    /// Why the operation was cancelled, for a message, if it was:
    /// `"interrupted by signal 15"` or `"cancelled"`.
    pub fn reason(&self) -> Option<String> {
        match self.flag.load(Ordering::SeqCst) {
            0 => None,
            NO_SIGNAL => Some("cancelled".into()),
            signal => Some(format!("interrupted by signal {signal}")),
        }
    }

    /// The signal that cancelled, if a signal did.
    pub fn signal(&self) -> Option<i32> {
        match self.flag.load(Ordering::SeqCst) {
            signal if signal > 0 => Some(signal),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let cancel = Cancel::new();
        let watcher = cancel.clone();
        assert_eq!(watcher.reason(), None);
        cancel.raise(15);
        assert_eq!(
            watcher.reason().as_deref(),
            Some("interrupted by signal 15")
        );
        assert_eq!(watcher.signal(), Some(15));
        let other = Cancel::new();
        other.cancel();
        assert_eq!(other.reason().as_deref(), Some("cancelled"));
        assert_eq!(other.signal(), None);
        assert!(!Cancel::default().is_cancelled());
    }
}
