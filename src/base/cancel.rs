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
use std::time::{Duration, Instant};

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

/// Marks a step of an operation where stopping is clean: if the operation
/// was cancelled (SIGINT, SIGTERM), an error of kind `Cancelled` that says
/// before which step, so the caller rolls back. In test builds, also the
/// test point of that name (`base::testpoint`: tests crash, fail or pause
/// the tool here), after which the flag is looked at again.
pub fn checkpoint(cancel: &Cancel, name: &str) -> crate::base::error::Result<()> {
    checkpoint_with(cancel, name, "")
}

/// [`checkpoint`], with `detail` for a test point's `pause` line.
pub fn checkpoint_with(
    cancel: &Cancel,
    name: &str,
    detail: &str,
) -> crate::base::error::Result<()> {
    let stop = |cancel: &Cancel| match cancel.reason() {
        Some(reason) => Err(crate::base::error::fail(
            crate::base::error::ErrorKind::Cancelled,
            format!("{reason} before {name}; rolled back"),
        )),
        None => Ok(()),
    };
    stop(cancel)?;
    crate::base::testpoint::act(name, detail)?;
    stop(cancel)
}

/// How long a step may go on: a deadline, and the [`Cancel`] flag of the
/// operation it belongs to. Every loop that waits or scans (lock waits,
/// EBUSY retries, a walk over mount namespaces or processes) checks one,
/// so `--timeout` and a signal end it whatever the size of the host.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub at: Instant,
    pub cancel: Cancel,
}

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration, cancel: &Cancel) -> Deadline {
        Deadline {
            at: Instant::now() + timeout,
            cancel: cancel.clone(),
        }
    }

    /// Past the deadline, or cancelled.
    pub fn is_over(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.at
    }

    /// What is left of the time (zero once past).
    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Sleeps `pause`, or less when the deadline comes first; wakes every
    /// 50 ms to look at the cancel flag. False when the deadline has passed
    /// or the operation was cancelled (then it does not sleep at all).
    pub fn sleep(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause.min(self.left());
        loop {
            if self.cancel.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return !self.is_over();
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
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

    #[test]
    fn a_deadline_ends_sleeps_and_is_over() {
        let cancel = Cancel::new();
        let deadline = Deadline::after(Duration::from_millis(30), &cancel);
        assert!(!deadline.is_over());
        let started = Instant::now();
        assert!(!deadline.sleep(Duration::from_secs(5)), "slept past it");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(deadline.is_over());
        let long = Deadline::after(Duration::from_secs(60), &cancel);
        cancel.cancel();
        assert!(long.is_over());
        assert!(!long.sleep(Duration::from_secs(5)));
    }
}
