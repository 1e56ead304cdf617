//! The operations: the feature probe, the mount strategies, mount, umount,
//! the classification of leaks and gc, and the wait for a change that
//! `inspect --poll` does (`watch`). Imports `base`, `kernel` and
//! `state`.

pub mod cleanup;
pub mod elsewhere;
pub mod features;
pub mod leaks;
pub mod mounting;
pub mod strategy;
pub mod unmounting;
pub mod watch;
