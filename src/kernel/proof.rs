//! Proving that the mount at a place is the one expected, and unmounting
//! exactly that one, with EBUSY retries.
//!
//! A mount is proven on a file descriptor: the entry is looked up in its
//! directory (held by fd since a safe walk, see `resolve`), without following
//! a symlink there, and statx(2) on the result says which mount it is. Then
//! umount2(2) is aimed at the same entry through `/proc/self/fd/<dir>/<name>`
//! with `UMOUNT_NOFOLLOW`. The proof's fd is closed first, since an open file
//! on a mount makes it busy; between the two, the entry cannot be renamed
//! away (a mountpoint cannot be renamed, vfs_rename gives EBUSY) and the
//! directory is the one held. Before every retry the proof is made again.
//!
//! We retry instead of detaching (MNT_DETACH): a detached mount lives on,
//! invisible to the admin (containerd#12139 chose retries for that reason).

use crate::kernel::mount_table::{self, MountEntry};
use crate::kernel::resolve::Entry;
use crate::kernel::sys::{self, MountIds};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use std::fmt;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// What a mount must be for the tool to unmount it. Every field that is set
/// must match.
#[derive(Debug, Clone, Default)]
pub struct Expected<'a> {
    /// The mount id, as mountinfo shows it.
    pub mount_id: Option<u64>,
    /// The unique mount id (Linux 6.8+): when the kernel reports one, it
    /// alone proves the mount, since it is never reused.
    pub unique: Option<u64>,
    /// The filesystem's device (an overlay's superblock has its own).
    pub dev: Option<(u32, u32)>,
    /// mountinfo's source column (`idmap-overlay:<id>` for our overlays).
    pub source: Option<&'a str>,
    /// mountinfo's super options, recorded where the kernel has no unique
    /// mount ids: a mount id and a device are both reused, the options of
    /// the superblock we created tell ours from a later one.
    pub super_options: Option<&'a str>,
}

/// What is at an entry, judged against an [`Expected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// The mount on top there is the expected one.
    Proven(MountIds),
    /// Nothing is mounted on the entry (or it does not exist).
    Nothing,
    /// Something else is there; why, for the message.
    NotOurs(String),
}

/// Does the mount on top at `entry` match `want`? `table` is a mount table
/// to check source and options in when the unique id cannot decide; without
/// one, the current table is read when needed.
pub fn prove(entry: &Entry, want: &Expected, table: Option<&[MountEntry]>) -> Proof {
    let fd = match entry.open() {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => {
            return Proof::Nothing;
        }
        Err(e) => return Proof::NotOurs(format!("cannot look at it: {e}")),
    };
    let ids = match sys::mount_ids(fd.as_fd()) {
        Ok(ids) => ids,
        Err(e) => return Proof::NotOurs(format!("cannot look at it: {e}")),
    };
    let is_dir = crate::kernel::resolve::meta_of(fd.as_fd()).is_ok_and(|m| m.is_dir());
    drop(fd);
    if !is_dir {
        return Proof::NotOurs("it is not a directory (a symlink?)".into());
    }
    if !ids.mount_root {
        return Proof::Nothing;
    }
    judge(ids, want, table)
}

fn judge(ids: MountIds, want: &Expected, table: Option<&[MountEntry]>) -> Proof {
    if let (Some(expected), Some(found)) = (want.unique, ids.unique) {
        return if expected == found {
            Proof::Proven(ids)
        } else {
            Proof::NotOurs(format!(
                "the mount there has unique id {found}, not {expected}"
            ))
        };
    }
    if let Some(expected) = want.mount_id
        && expected != ids.id
    {
        return Proof::NotOurs(format!("the mount there has id {}, not {expected}", ids.id));
    }
    if let Some(expected) = want.dev
        && expected != ids.dev
    {
        return Proof::NotOurs(format!(
            "the mount there is on device {}:{}, not {}:{}",
            ids.dev.0, ids.dev.1, expected.0, expected.1
        ));
    }
    if want.source.is_none() && want.super_options.is_none() {
        return Proof::Proven(ids);
    }
    let read;
    let table = match table {
        Some(table) => table,
        None => match mount_table::read() {
            Ok(t) => {
                read = t;
                &read
            }
            Err(e) => return Proof::NotOurs(format!("{e:#}")),
        },
    };
    let Some(line) = table.iter().find(|m| m.id == ids.id) else {
        return Proof::NotOurs(format!("mount {} is not in the mount table", ids.id));
    };
    if let Some(source) = want.source
        && line.source != source
    {
        return Proof::NotOurs(format!(
            "the mount there is {} {}, not {source}",
            line.fs_type, line.source
        ));
    }
    if let Some(options) = want.super_options
        && line.super_options != options
    {
        return Proof::NotOurs(
            "the overlay there has the tag and id of ours but other options: a later mount, not ours".into(),
        );
    }
    Proof::Proven(ids)
}

/// Why [`unmount_proven`] did not unmount.
#[derive(Debug)]
pub enum UnmountError {
    /// What is there is not what was expected: left alone.
    NotOurs(String),
    /// Still busy when the time was up; the mount's id, to find holders.
    Busy {
        mount_id: u64,
        waited: Duration,
    },
    /// The operation was cancelled while retrying; why.
    Cancelled(String),
    Failed(std::io::Error),
}

impl fmt::Display for UnmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmountError::NotOurs(why) => write!(f, "not ours, left alone: {why}"),
            UnmountError::Busy { waited, .. } => {
                write!(f, "busy after {}", crate::base::duration::human(*waited))
            }
            UnmountError::Cancelled(reason) => write!(f, "{reason} while waiting"),
            UnmountError::Failed(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UnmountError {}

/// What [`unmount_proven`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmounted {
    /// The proven mount is gone.
    Done(MountIds),
    /// Nothing was mounted there (already unmounted).
    NothingThere,
}

/// Proves the mount at `entry` and unmounts it (not recursively, not
/// detached), retrying while it is EBUSY until `timeout`, proving again
/// before each try.
pub fn unmount_proven(
    entry: &Entry,
    want: &Expected,
    table: Option<&[MountEntry]>,
    timeout: Duration,
    cancel: &crate::base::cancel::Cancel,
) -> Result<Unmounted, UnmountError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = Duration::from_millis(2);
    let mut table = table;
    loop {
        let ids = match prove(entry, want, table) {
            Proof::Proven(ids) => ids,
            Proof::Nothing => return Ok(Unmounted::NothingThere),
            Proof::NotOurs(why) => return Err(UnmountError::NotOurs(why)),
        };
        // The magic link reaches the held directory; NOFOLLOW keeps the
        // last component from being followed should it become a symlink.
        match umount2(&entry.proc_path(), MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => return Ok(Unmounted::Done(ids)),
            // Unmounted by someone else between the proof and the call.
            Err(Errno::EINVAL) => return Ok(Unmounted::NothingThere),
            Err(Errno::EBUSY) => {
                if let Some(reason) = cancel.reason() {
                    return Err(UnmountError::Cancelled(reason));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(UnmountError::Busy {
                        mount_id: ids.id,
                        waited: now - started,
                    });
                }
                log::debug!("{} is busy, retrying in {pause:?}", entry.path.display());
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(50));
                // A snapshot is only good for the first look.
                table = None;
            }
            Err(e) => return Err(UnmountError::Failed(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(id: u64, unique: Option<u64>) -> MountIds {
        MountIds {
            id,
            unique,
            mount_root: true,
            dev: (0, 50),
        }
    }

    fn table() -> Vec<MountEntry> {
        mount_table::parse(
            b"70 1 0:50 / /mnt/t rw - overlay idmap-overlay:a ro,lowerdir=12:13\n\
             71 1 0:51 / /mnt/u rw - tmpfs theirs rw\n",
        )
        .unwrap()
    }

    #[test]
    fn a_unique_id_decides_alone() {
        let want = Expected {
            mount_id: Some(99),
            unique: Some(7),
            ..Default::default()
        };
        assert_eq!(
            judge(ids(70, Some(7)), &want, None),
            Proof::Proven(ids(70, Some(7)))
        );
        assert!(matches!(
            judge(ids(70, Some(8)), &want, None),
            Proof::NotOurs(_)
        ));
    }

    #[test]
    fn without_unique_ids_id_device_tag_and_options_must_all_match() {
        let t = table();
        let want = Expected {
            mount_id: Some(70),
            unique: Some(7),
            dev: Some((0, 50)),
            source: Some("idmap-overlay:a"),
            super_options: Some("ro,lowerdir=12:13"),
        };
        assert!(matches!(
            judge(ids(70, None), &want, Some(&t)),
            Proof::Proven(_)
        ));
        for (found, want) in [
            (
                ids(71, None),
                Expected {
                    mount_id: Some(71),
                    ..want.clone()
                },
            ),
            (
                ids(70, None),
                Expected {
                    super_options: Some("ro,lowerdir=1:2"),
                    ..want.clone()
                },
            ),
            (
                ids(70, None),
                Expected {
                    dev: Some((0, 49)),
                    ..want.clone()
                },
            ),
            (ids(69, None), want.clone()),
        ] {
            assert!(
                matches!(judge(found, &want, Some(&t)), Proof::NotOurs(_)),
                "{want:?}"
            );
        }
    }
}
