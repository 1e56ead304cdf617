//! The kernel's facts: every system call with its unsafe code (`sys`),
//! paths resolved once to file descriptors (`resolve`), mount tables and
//! the news of their changes (`mount_events`), mount namespaces, the
//! processes that hold a mount, proving a mount is the one expected and
//! unmounting exactly it, the user namespace helper. Imports only `base`.

pub mod holders;
pub mod in_use;
pub mod mount_events;
pub mod mount_table;
pub mod namespaces;
pub mod proof;
pub mod resolve;
pub mod sys;
pub mod userns;
