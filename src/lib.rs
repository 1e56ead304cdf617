//! Overlayfs mounts whose lower layers are seen through an idmapped mount,
//! so a container in a user namespace sees its image layers owned by its
//! own ids, with crash-safe records under `/run` that find and clean up
//! anything a crash or a busy unmount left behind.
//!
//! This is the library the `idmap-overlay` command is built on; a container
//! runtime can call it directly. Every path it is given is resolved once,
//! safely, to a file descriptor, and only that descriptor is used after;
//! every mount it unmounts is first proven to be the one it made. It
//! installs no signal handler, changes no process-wide state (no chdir, no
//! umask) and may be called from several threads at once.
//!
//! The calls, each with an example where it is documented:
//!
//! | to | call |
//! |---|---|
//! | describe an overlay | [`MountRequest::new`], then set its fields |
//! | mount it | [`mount()`] → its [`Record`] |
//! | unmount it, by target or record id | [`umount()`] |
//! | read what is recorded | [`StateDir::open`], [`StateDir::records`] |
//! | find leaks | [`gc::gather`] then [`findings::classify`] |
//! | clean them up | [`gc::collect`] |
//! | know what this kernel can do | [`features::probe`] |
//! | stop a call in progress | [`Cancel`] |
//!
//! Errors are [`Error`]s: a [`ErrorKind`], the steps that led to it, and the
//! path and errno where known.
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
//! let state_root = Path::new(idmap_overlay::state::DEFAULT_DIR);
//! let record = idmap_overlay::mount(&request, state_root)?;
//! println!("mounted {} as {}", record.target.display(), record.id);
//!
//! let state = StateDir::open(state_root)?;
//! idmap_overlay::umount(&state, &record.id, Duration::from_secs(5), false)?;
//! # Ok(())
//! # }
//! ```

// The library's rooms, lowest first: a room imports only from those above
// it in this list (docs/ARCHITECTURE.md).
pub mod base;
pub mod kernel;
pub mod ops;
pub mod state;

pub use base::cancel::Cancel;
pub use base::error::{Error, ErrorKind, Result};
pub use base::idmap::IdRange;
pub use base::overlay::{Strategy, VfsFlags};
pub use ops::mounting::{Maps, MountRequest, mount};
pub use ops::unmounting::umount;
pub use state::{Record, RecordState, StateDir};
