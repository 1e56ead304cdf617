//! Overlayfs mounts whose lower layers are seen through an idmapped mount,
//! so a container in a user namespace sees its image layers owned by its
//! own ids, with crash-safe records under `/run` that find and clean up
//! anything a crash or a busy unmount left behind.
//!
//! This is the library the `idmap-overlay` command is built on; a container
//! runtime can call it directly. Every path it is given is resolved once,
//! safely, to a file descriptor, and only that descriptor is used after;
//! every mount it unmounts is first proven to be the one it made. Whether an
//! overlay lives on in another mount namespace is the kernel's answer. It
//! installs no signal handler, changes no process-wide state (no chdir, no
//! umask) and may be called from several threads at once.
//!
//! The whole API is the items below (docs/API.md lists them with the
//! promise that goes with them):
//!
//! | to | call |
//! |---|---|
//! | describe an overlay | [`MountRequest::new`] ([`Maps`], [`IdRange`], [`Strategy`], [`VfsFlags`], [`Atime`]), or from a `-o` string: [`MountOptions`] |
//! | mount it | [`mount()`] → its [`Record`] ([`RecordState`]) |
//! | unmount it, by target or record id | [`umount()`] |
//! | read what is recorded | [`StateDir`], [`BadRecord`], [`DEFAULT_STATE_DIR`] |
//! | find leaks | [`gather`] → [`Snapshot`] → [`classify`] → [`Finding`]s ([`FindingKind`], [`Action`], [`Health`], [`Elsewhere`]) |
//! | clean them up | [`collect`] → [`Report`] ([`ReportItem`]) |
//! | be told of a change to the mount table or the records | [`Watch`] |
//! | know what this kernel can do | [`probe_features`] → [`Features`]; [`KernelIdmaps`] |
//! | mount in another mount namespace | [`enter_mount_namespace`] |
//! | write a file others read | [`check_file_path`], then [`write_file`] |
//! | stop a call in progress | [`Cancel`]; how long waits last: [`DEFAULT_TIMEOUT`] |
//!
//! Errors are [`Error`]s ([`Result`]): a [`ErrorKind`], the steps that led
//! to it, and the path and errno where known.
//!
//! ```no_run
//! use idmap_overlay::{IdRange, Maps, MountRequest, StateDir};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! # fn main() -> idmap_overlay::Result<()> {
//! let shift = vec![IdRange { container: 0, host: 100_000, size: 65_536 }];
//! let mut request = MountRequest::new(
//!     "/run/c1/rootfs",
//!     ["/var/lib/layers/2", "/var/lib/layers/1"],
//!     Maps::Ranges { uid: shift.clone(), gid: shift },
//! );
//! request.upperdir = Some("/var/lib/c1/upper".into());
//! request.workdir = Some("/var/lib/c1/work".into());
//! let state_root = Path::new(idmap_overlay::DEFAULT_STATE_DIR);
//! let record = idmap_overlay::mount(&request, state_root)?;
//! println!("mounted {} as {}", record.target.display(), record.id);
//!
//! let state = StateDir::open(state_root)?;
//! idmap_overlay::umount(&state, &record.id, Duration::from_secs(5), false)?;
//! # Ok(())
//! # }
//! ```

// The library's rooms, lowest first: a room imports only from those above
// it in this list (docs/ARCHITECTURE.md). None is public: the API is what
// is re-exported here.
mod base;
mod kernel;
mod ops;
mod state;

pub use base::cancel::Cancel;
pub use base::error::{Error, ErrorKind, Result};
pub use base::idmap::IdRange;
pub use base::overlay::{Atime, MountOptions, Strategy, VfsFlags};
pub use kernel::mount_table::KernelIdmaps;
pub use kernel::namespaces::enter_mount_namespace;
pub use ops::cleanup::{Item as ReportItem, Report, collect, gather};
pub use ops::elsewhere::Elsewhere;
pub use ops::features::{Features, probe as probe_features};
pub use ops::leaks::{Action, Finding, Health, Kind as FindingKind, Snapshot, classify};
pub use ops::mounting::{DEFAULT_TIMEOUT, Maps, MountRequest, mount};
pub use ops::unmounting::umount;
pub use ops::watch::Watch;
pub use state::atomic_write::{check_file_path, write_file};
pub use state::{BadRecord, DEFAULT_DIR as DEFAULT_STATE_DIR, Record, RecordState, StateDir};

/// What the tests reach into, beyond the API: the crash and fault points
/// they iterate over, and the kernel's answers and walks they check
/// directly. Compiled only with the `testpoints` feature the tests turn
/// on; no API, no promise.
#[cfg(feature = "testpoints")]
#[doc(hidden)]
pub mod testing {
    pub use crate::base::cancel::Deadline;
    pub use crate::base::duration::human as human_duration;
    pub use crate::base::testpoint::{FAULT_POINTS, MOUNT_POINTS, UMOUNT_POINTS};
    pub use crate::base::{idmap, overlay};
    pub use crate::kernel::holders::Via;
    pub use crate::kernel::in_use::{DirUse, Prober, SuperblockWatch};
    pub use crate::kernel::mount_table::{self, Device, MountEntry};
    pub use crate::kernel::namespaces::{current_namespace, namespace_id};
    pub use crate::ops::elsewhere::{Beyond, Copies, find_copies};
    pub use crate::state::{RECORD_VERSION, match_id, source_tag};
}
