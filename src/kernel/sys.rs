//! Thin wrappers for the kernel calls that neither nix nor rustix wrap, or
//! wrap with raw structs or raw fds, and the mount-id and namespace helpers
//! built on them. This is the only module of the library with `unsafe` code.
//!
//! Where a system call goes, one crate per call: nix, the design's crate,
//! wherever it has the call (mount, umount2, openat, openat2, mkdirat,
//! unlinkat, readlinkat, fstat, fstatfs, fcntl, setns, clone, ...); rustix
//! only for what nix lacks: the new mount API (open_tree, move_mount, fsopen,
//! fsconfig, fsmount), statx, extended attributes and the terminal's window
//! size; libc only in
//! this module, for what neither wraps (mount_setattr, statmount,
//! listmount, the nsfs ioctls, capget/capset, `struct flock`, `_exit`, and
//! fanotify's mount events, whose flags and info records nix's fanotify
//! does not know). Errno values are compared as nix's `Errno`, open flags
//! and file types are nix's `OFlag` and `SFlag`; an errno shown to a
//! person goes through `std::io::Error` first, whose text every message
//! uses (nix's prints `ENOENT: ...`).

use nix::errno::Errno;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `MOUNT_ATTR_RDONLY` (linux/mount.h).
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_IDMAP` (linux/mount.h, Linux 5.12).
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `MS_PRIVATE`, as a propagation value for `mount_setattr`.
pub const MS_PRIVATE: u64 = 1 << 18;

/// `struct mount_attr` (linux/mount.h), version 0.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes the detached tree `tree` idmapped through the user namespace
/// `userns`, read-only and private:
/// `mount_setattr(tree, "", AT_EMPTY_PATH, &{attr_set: IDMAP|RDONLY,
/// propagation: MS_PRIVATE, userns_fd}, sizeof)` (mount_setattr(2)).
/// Not recursive: a submount that cannot be idmapped would make the whole
/// call fail (containers/storage#1308), and layers on submounts get trees of
/// their own.
pub fn idmap_tree(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    set_mount_attr(tree, MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, userns)
}

/// The same, writable: the tree an idmapped upper layer and its work
/// directory are reached through (`--idmapped-upper`).
pub fn idmap_tree_writable(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> io::Result<()> {
    set_mount_attr(tree, MOUNT_ATTR_IDMAP, userns)
}

fn set_mount_attr(tree: BorrowedFd<'_>, attr_set: u64, userns: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: the path is a valid NUL-terminated empty string, `attr` is a
    // live, properly laid out `struct mount_attr` whose size we pass, and
    // both fds are borrowed for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `ioctl(fd, NS_GET_NSTYPE)` (ioctl_nsfs(2)): the `CLONE_NEW*` type of a
/// namespace file.
pub fn namespace_type(ns: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_NSTYPE) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `ioctl(userns, NS_GET_OWNER_UID, &uid)` (ioctl_nsfs(2)): the uid that
/// created the user namespace `userns`, as our user namespace sees it.
pub fn user_namespace_owner(userns: BorrowedFd<'_>) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which
    // points at the live `uid`; the fd is borrowed for the call.
    let ret = unsafe {
        libc::ioctl(
            userns.as_raw_fd(),
            libc::NS_GET_OWNER_UID,
            &mut uid as *mut libc::uid_t,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(uid)
    }
}

/// `statmount(2)` syscall number (the same on every architecture that uses
/// the generic table, since Linux 6.8).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
const SYS_STATMOUNT: libc::c_long = 457;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const SYS_STATMOUNT: libc::c_long = -1;

const STATMOUNT_MNT_UIDMAP: u64 = 0x2000;
const STATMOUNT_MNT_GIDMAP: u64 = 0x4000;

/// `struct mnt_id_req` (linux/mount.h), version 0.
#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
}

/// The maps of an idmapped mount as the kernel reports them, each a list of
/// `uid_map`-style lines `INSIDE OUTSIDE COUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountIdmaps {
    pub uid_lines: Vec<String>,
    pub gid_lines: Vec<String>,
}

/// `statmount(&{size, mnt_id, param: mask}, buf, len, 0)` (statmount(2),
/// Linux 6.8+): the raw `struct statmount` of the mount with the unique
/// (64-bit) id `mnt_id`, or `Ok(None)` on a kernel without the call.
fn statmount(mnt_id: u64, mask: u64, buf_len: usize) -> io::Result<Option<Vec<u8>>> {
    if SYS_STATMOUNT < 0 {
        return Ok(None);
    }
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id,
        // What to report goes in `param`; the flags argument must be 0.
        param: mask,
    };
    let mut buf = vec![0u8; buf_len.max(512)];
    // SAFETY: `req` is a live `struct mnt_id_req` (version 0, its size in
    // `size`); `buf` is writable for its whole length, which we pass.
    let ret = unsafe {
        libc::syscall(
            SYS_STATMOUNT,
            &req as *const MntIdReq,
            buf.as_mut_ptr(),
            buf.len(),
            0,
        )
    };
    if ret != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOSYS | Errno::EOPNOTSUPP) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(buf))
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap())
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap())
}

/// The maps of an idmapped mount, read back with statmount(2)
/// `STATMOUNT_MNT_UIDMAP | STATMOUNT_MNT_GIDMAP` (Linux 6.15+). Returns
/// `Ok(None)` when the kernel does not report maps (old kernel, or the mount
/// is not idmapped).
pub fn statmount_idmaps(mnt_id: u64) -> io::Result<Option<MountIdmaps>> {
    let mask = STATMOUNT_MNT_UIDMAP | STATMOUNT_MNT_GIDMAP;
    let Some(buf) = statmount(mnt_id, mask, 64 * 1024)? else {
        return Ok(None);
    };
    // Offsets in struct statmount (linux/mount.h).
    if u64_at(&buf, 8) & mask == 0 {
        return Ok(None);
    }
    const STRINGS: usize = 512;
    let lines = |count: u32, offset: u32| -> Vec<String> {
        let start = STRINGS + offset as usize;
        buf[start..]
            .split(|b| *b == 0)
            .take(count as usize)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    Ok(Some(MountIdmaps {
        uid_lines: lines(u32_at(&buf, 152), u32_at(&buf, 156)),
        gid_lines: lines(u32_at(&buf, 160), u32_at(&buf, 164)),
    }))
}

/// Is the mount (unique id) shared? statmount(2) `STATMOUNT_MNT_BASIC`'s
/// `mnt_propagation` has `MS_SHARED`. `Ok(None)` without statmount.
pub fn mount_is_shared(mnt_id: u64) -> io::Result<Option<bool>> {
    const STATMOUNT_MNT_BASIC: u64 = 0x2;
    let Some(buf) = statmount(mnt_id, STATMOUNT_MNT_BASIC, 512)? else {
        return Ok(None);
    };
    if u64_at(&buf, 8) & STATMOUNT_MNT_BASIC == 0 {
        return Ok(None);
    }
    Ok(Some(
        u64_at(&buf, 72) & nix::mount::MsFlags::MS_SHARED.bits() != 0,
    ))
}

/// Starts the namespace helper: a child that shares our file descriptor
/// table (`CLONE_FILES`), so it never holds a copy of any fd of ours, the
/// cause of the EBUSY leaks of containerd#12139. With `new_userns` it is born
/// in a fresh user namespace (`CLONE_NEWUSER`) whose maps the caller writes;
/// with `join` it enters that user namespace (setns(2)). It then waits to be
/// killed, and dies with us (`PR_SET_PDEATHSIG`).
pub fn spawn_namespace_helper(
    new_userns: bool,
    join: Option<BorrowedFd<'_>>,
) -> io::Result<nix::unistd::Pid> {
    use nix::sched::{CloneFlags, setns};
    use nix::sys::prctl::set_pdeathsig;
    use nix::sys::signal::Signal;
    use nix::unistd::{getpid, getppid, pause};
    let parent = getpid();
    let mut flags = CloneFlags::CLONE_FILES;
    if new_userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    /// `_exit(2)`, which nix does not wrap: ends the child at once, running
    /// none of the parent's exit handlers on its copy of our memory.
    fn exit_now(code: i32) -> ! {
        // SAFETY: _exit takes a plain value and does not return.
        unsafe { libc::_exit(code) }
    }
    // The child runs on a copy of our address space (no CLONE_VM): it makes
    // only thin system call wrappers, allocates nothing, and never returns
    // into our code. `join` stays open in the fd table it shares with us
    // until the caller has seen it join.
    let child = Box::new(move || -> isize {
        let _ = set_pdeathsig(Signal::SIGKILL);
        if getppid() != parent {
            exit_now(1);
        }
        if let Some(fd) = join
            && setns(fd, CloneFlags::CLONE_NEWUSER).is_err()
        {
            exit_now(2);
        }
        loop {
            pause();
        }
    });
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the stack is owned for the call and the child gets its own copy
    // of it (no CLONE_VM); the callback only makes async-signal-safe calls.
    unsafe { nix::sched::clone(child, &mut stack, flags, Some(Signal::SIGCHLD as i32)) }
        .map_err(io::Error::from)
}

/// The identity of a mount as statx(2) reports it for a file on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountIds {
    /// The mount id as mountinfo shows it (reused by the kernel).
    pub id: u64,
    /// The unique 64-bit mount id (`STATX_MNT_ID_UNIQUE`, Linux 6.8+),
    /// never reused while the system runs.
    pub unique: Option<u64>,
    /// The file is the root of its mount (`STATX_ATTR_MOUNT_ROOT`): a mount
    /// sits exactly here, not just somewhere above.
    pub mount_root: bool,
    /// The device (major, minor) of the filesystem: an overlay's superblock
    /// has its own, shared by every copy of the mount in every namespace.
    pub dev: (u32, u32),
}

const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

/// `statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID)` and, where the kernel has
/// it, `STATX_MNT_ID_UNIQUE`: which mount `fd` lies on.
pub fn mount_ids(fd: BorrowedFd<'_>) -> io::Result<MountIds> {
    use rustix::fs::{AtFlags, StatxFlags, statx};
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)?;
    let unique = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE),
    )
    .ok()
    .filter(|u| u.stx_mask & STATX_MNT_ID_UNIQUE != 0)
    .map(|u| u.stx_mnt_id);
    Ok(MountIds {
        id: st.stx_mnt_id,
        unique,
        mount_root: st.stx_attributes_mask.bits() & STATX_ATTR_MOUNT_ROOT != 0
            && st.stx_attributes.bits() & STATX_ATTR_MOUNT_ROOT != 0,
        dev: (st.stx_dev_major, st.stx_dev_minor),
    })
}

/// `struct flock` for a write lock over the whole file: `{F_WRLCK,
/// SEEK_SET, start 0, len 0}`. nix wraps the fcntl(2) lock commands but
/// takes libc's struct as it is.
fn whole_file_write_lock() -> libc::flock {
    // SAFETY: an all-zero `struct flock` is valid (pid 0, offsets 0), and
    // zeroing also clears any padding or field a platform adds.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// `fcntl(fd, F_OFD_SETLK, &{F_WRLCK, whole file})` (fcntl(2), open file
/// description locks): takes the lock, or `Ok(false)` when another open
/// file description holds a conflicting one.
pub fn try_lock_whole_file(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::fcntl::{FcntlArg, fcntl};
    match fcntl(fd, FcntlArg::F_OFD_SETLK(&whole_file_write_lock())) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `fcntl(fd, F_OFD_GETLK, &{F_WRLCK, whole file})`: would a write lock
/// conflict with one another open file description holds? Takes nothing.
pub fn whole_file_is_locked(fd: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::fcntl::{FcntlArg, fcntl};
    let mut probe = whole_file_write_lock();
    fcntl(fd, FcntlArg::F_OFD_GETLK(&mut probe))?;
    Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
}

/// `PROC_SUPER_MAGIC` (linux/magic.h).
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// `TMPFS_MAGIC` (linux/magic.h).
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The filesystem type (`f_type` of fstatfs(2)) of what `fd` refers to.
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    Ok(nix::sys::statfs::fstatfs(fd)?.filesystem_type().0 as i64)
}

/// `listmount(2)` syscall number (generic table, Linux 6.8+).
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
))]
const SYS_LISTMOUNT: libc::c_long = 458;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const SYS_LISTMOUNT: libc::c_long = -1;

/// `struct mnt_id_req` (linux/mount.h), version 1 (`MNT_ID_REQ_SIZE_VER1`,
/// Linux 6.11+): version 0 plus the mount namespace to look in.
#[repr(C)]
struct MntIdReqV1 {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
    mnt_ns_id: u64,
}

/// `LSMT_ROOT` (linux/mount.h): list from the namespace's root mount.
const LSMT_ROOT: u64 = u64::MAX;

/// Every mount of the mount namespace `ns_id` (from [`mount_namespace_id`]),
/// by unique 64-bit id, into `ids` (cleared first):
/// `listmount(&{size: VER1, mnt_id: LSMT_ROOT, param: last, mnt_ns_id},
/// buf, len, 0)` (listmount(2)), repeated while the buffer fills up.
/// Another namespace than ours needs CAP_SYS_ADMIN over its owner.
pub fn list_mounts_in(ns_id: u64, ids: &mut Vec<u64>) -> io::Result<()> {
    ids.clear();
    if SYS_LISTMOUNT < 0 {
        return Err(Errno::ENOSYS.into());
    }
    let mut chunk = vec![0u64; 1024];
    let mut last = 0;
    loop {
        let req = MntIdReqV1 {
            size: std::mem::size_of::<MntIdReqV1>() as u32,
            spare: 0,
            mnt_id: LSMT_ROOT,
            param: last,
            mnt_ns_id: ns_id,
        };
        // SAFETY: `req` is a live version-1 `struct mnt_id_req` whose size
        // is in `size`; `chunk` is writable for the count of u64 we pass.
        let ret = unsafe {
            libc::syscall(
                SYS_LISTMOUNT,
                &req as *const MntIdReqV1,
                chunk.as_mut_ptr(),
                chunk.len(),
                0,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = ret as usize;
        ids.extend_from_slice(&chunk[..got]);
        if got < chunk.len() {
            return Ok(());
        }
        last = chunk[got - 1];
    }
}

/// `STATMOUNT_*` request bits (linux/mount.h).
pub const STATMOUNT_SB_BASIC: u64 = 0x1;
pub const STATMOUNT_MNT_BASIC: u64 = 0x2;
pub const STATMOUNT_MNT_ROOT: u64 = 0x8;
pub const STATMOUNT_MNT_POINT: u64 = 0x10;
pub const STATMOUNT_FS_TYPE: u64 = 0x20;
/// Linux 6.10+.
pub const STATMOUNT_MNT_OPTS: u64 = 0x80;
/// Linux 6.13+.
pub const STATMOUNT_SB_SOURCE: u64 = 0x200;

/// What statmount(2) said about one mount: the fixed fields of `struct
/// statmount` this crate reads, and the requested strings (raw bytes, as
/// the kernel wrote them; `None` when not reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountStat {
    /// The `STATMOUNT_*` bits the kernel filled in.
    pub mask: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub sb_magic: u64,
    /// The ids mountinfo shows (`mnt_id_old`, `mnt_parent_id_old`).
    pub mount_id: u32,
    pub parent_id: u32,
    /// `MOUNT_ATTR_*` bits.
    pub mnt_attr: u64,
    pub fs_type: Option<Vec<u8>>,
    pub mnt_root: Option<Vec<u8>>,
    pub mnt_point: Option<Vec<u8>>,
    pub sb_source: Option<Vec<u8>>,
    /// The filesystem's options, escaped as mountinfo shows them.
    pub mnt_opts: Option<Vec<u8>>,
}

/// `statmount(&{size: VER1, mnt_id, param: mask, mnt_ns_id}, buf, len, 0)`
/// (statmount(2)): the mount with the unique id `mnt_id` in the mount
/// namespace `ns_id`. `buf` is reused between calls and grown when the
/// strings do not fit (EOVERFLOW).
pub fn statmount_in(
    ns_id: u64,
    mnt_id: u64,
    mask: u64,
    buf: &mut Vec<u8>,
) -> io::Result<MountStat> {
    if SYS_STATMOUNT < 0 {
        return Err(Errno::ENOSYS.into());
    }
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let req = MntIdReqV1 {
        size: std::mem::size_of::<MntIdReqV1>() as u32,
        spare: 0,
        mnt_id,
        param: mask,
        mnt_ns_id: ns_id,
    };
    loop {
        // SAFETY: `req` is a live version-1 `struct mnt_id_req` whose size
        // is in `size`; `buf` is writable for its whole length, which we pass.
        let ret = unsafe {
            libc::syscall(
                SYS_STATMOUNT,
                &req as *const MntIdReqV1,
                buf.as_mut_ptr(),
                buf.len(),
                0,
            )
        };
        if ret == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(Errno::EOVERFLOW as i32) && buf.len() < 16 << 20 {
            let bigger = buf.len() * 4;
            buf.resize(bigger, 0);
            continue;
        }
        return Err(err);
    }
    // Offsets in struct statmount (linux/mount.h); strings follow the
    // 512-byte fixed part, each at an offset from there, NUL-terminated.
    const STRINGS: usize = 512;
    let got = u64_at(buf, 8);
    let string = |bit: u64, field: usize| -> Option<Vec<u8>> {
        if got & bit == 0 {
            return None;
        }
        let start = STRINGS + u32_at(buf, field) as usize;
        let rest = buf.get(start..)?;
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        Some(rest[..end].to_vec())
    };
    Ok(MountStat {
        mask: got,
        dev_major: u32_at(buf, 16),
        dev_minor: u32_at(buf, 20),
        sb_magic: u64_at(buf, 24),
        mount_id: u32_at(buf, 56),
        parent_id: u32_at(buf, 60),
        mnt_attr: u64_at(buf, 64),
        fs_type: string(STATMOUNT_FS_TYPE, 36),
        mnt_root: string(STATMOUNT_MNT_ROOT, 104),
        mnt_point: string(STATMOUNT_MNT_POINT, 108),
        sb_source: string(STATMOUNT_SB_SOURCE, 124),
        mnt_opts: string(STATMOUNT_MNT_OPTS, 4),
    })
}

/// `struct mnt_ns_info` (linux/nsfs.h), version 0.
#[repr(C)]
#[derive(Default)]
struct MntNsInfo {
    size: u32,
    nr_mounts: u32,
    mnt_ns_id: u64,
}

/// `_IOR(NSIO, 10/11/12, struct mnt_ns_info)` (linux/nsfs.h).
const NS_MNT_GET_INFO: libc::c_ulong = 0x8010_b70a;
const NS_MNT_GET_NEXT: libc::c_ulong = 0x8010_b70b;
const NS_MNT_GET_PREV: libc::c_ulong = 0x8010_b70c;

fn mnt_ns_ioctl(ns: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<(i32, u64)> {
    let mut info = MntNsInfo {
        size: std::mem::size_of::<MntNsInfo>() as u32,
        ..MntNsInfo::default()
    };
    // SAFETY: the ioctl reads `size` and writes at most that many bytes of
    // the live `info`; the fd is borrowed for the call.
    let ret = unsafe { libc::ioctl(ns.as_raw_fd(), request, &mut info as *mut MntNsInfo) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((ret, info.mnt_ns_id))
    }
}

/// The 64-bit id of the mount namespace `ns`: `ioctl(ns, NS_MNT_GET_INFO,
/// &info)` (ioctl_nsfs(2)).
pub fn mount_namespace_info_id(ns: BorrowedFd<'_>) -> io::Result<u64> {
    mnt_ns_ioctl(ns, NS_MNT_GET_INFO).map(|(_, id)| id)
}

/// The mount namespace after (or before, `backwards`) `ns` in the kernel's
/// list of them, ordered by id, with its id: `ioctl(ns, NS_MNT_GET_NEXT,
/// &info)` returns a new fd for it (ioctl_nsfs(2)). ENOENT past the end.
/// Lists namespaces with no process in them too (held by a bind-mounted
/// namespace file or an open fd), which no walk of /proc can find.
pub fn neighbour_mount_namespace(
    ns: BorrowedFd<'_>,
    backwards: bool,
) -> io::Result<(std::os::fd::OwnedFd, u64)> {
    use std::os::fd::FromRawFd;
    let request = if backwards {
        NS_MNT_GET_PREV
    } else {
        NS_MNT_GET_NEXT
    };
    let (fd, id) = mnt_ns_ioctl(ns, request)?;
    // SAFETY: on success the ioctl returns a new file descriptor that
    // nothing else owns.
    Ok((unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, id))
}

/// `FAN_REPORT_MNT` (linux/fanotify.h, Linux 6.15): a group that reports
/// mount events; libc does not have it yet, nor the four below.
const FAN_REPORT_MNT: libc::c_uint = 0x0000_4000;
/// `FAN_MARK_MNTNS`: the mark is on a mount namespace (an nsfs fd).
const FAN_MARK_MNTNS: libc::c_uint = 0x0000_0110;
/// `FAN_MNT_ATTACH`: a mount was attached to the marked namespace.
pub const FAN_MNT_ATTACH: u64 = 0x0100_0000;
/// `FAN_MNT_DETACH`: a mount was detached from it (both bits: moved).
pub const FAN_MNT_DETACH: u64 = 0x0200_0000;
/// `FAN_EVENT_INFO_TYPE_MNT`: the info record `{hdr, __u64 mnt_id}`.
const FAN_EVENT_INFO_TYPE_MNT: u8 = 7;

/// A descriptor that reads one event for each mount attached to or
/// detached from the mount namespace `ns`:
/// `fanotify_init(FAN_REPORT_MNT | FAN_CLOEXEC | FAN_NONBLOCK, 0)`, then
/// `fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MNTNS, FAN_MNT_ATTACH |
/// FAN_MNT_DETACH, ns, NULL)` (fanotify_init(2), Linux 6.15+; EINVAL on
/// older kernels, which do not know the flag). Readable (`POLLIN`) while
/// events are queued.
pub fn mount_events(ns: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain integer arguments; a non-negative result is a new fd.
    let fd =
        unsafe { libc::fanotify_init(FAN_REPORT_MNT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us and nothing else owns it.
    let group = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: both fds are live for the call; a NULL path with a dirfd
    // marks the object the dirfd refers to (here: the namespace).
    let ret = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            libc::FAN_MARK_ADD | FAN_MARK_MNTNS,
            FAN_MNT_ATTACH | FAN_MNT_DETACH,
            ns.as_raw_fd(),
            std::ptr::null(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(group)
}

/// One event read from a [`mount_events`] descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountEvent {
    /// [`FAN_MNT_ATTACH`], [`FAN_MNT_DETACH`], both (a move), or
    /// `FAN_Q_OVERFLOW` (events were lost).
    pub mask: u64,
    /// The mount's unique (64-bit) id, as statx's `STATX_MNT_ID_UNIQUE`;
    /// none for an overflow.
    pub mount_id: Option<u64>,
}

/// Every event queued on a [`mount_events`] descriptor, without waiting
/// (none queued: an empty list). Each is `struct fanotify_event_metadata`
/// (`event_len` at 0, `vers` at 4, `metadata_len` at 6, `mask` at 8) and
/// info records after it, each `{info_type, pad, len}` then, for a mount,
/// its id at offset 8.
pub fn read_mount_events(fd: BorrowedFd<'_>) -> io::Result<Vec<MountEvent>> {
    let mut events = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let len = match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => return Ok(events),
            Ok(len) => len,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut at = 0;
        while at + 24 <= len {
            let event_len = u32_at(&buf, at) as usize;
            let version = buf[at + 4];
            let metadata_len = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]) as usize;
            if version != libc::FANOTIFY_METADATA_VERSION
                || event_len < metadata_len
                || metadata_len < 24
                || at + event_len > len
            {
                return Err(io::Error::other(format!(
                    "fanotify event of version {version}, length {event_len}: not understood"
                )));
            }
            let mut event = MountEvent {
                mask: u64_at(&buf, at + 8),
                mount_id: None,
            };
            let mut info = at + metadata_len;
            while info + 4 <= at + event_len {
                let info_len = u16::from_ne_bytes([buf[info + 2], buf[info + 3]]) as usize;
                if info_len < 4 || info + info_len > at + event_len {
                    break;
                }
                if buf[info] == FAN_EVENT_INFO_TYPE_MNT && info_len >= 16 {
                    event.mount_id = Some(u64_at(&buf, info + 8));
                }
                info += info_len;
            }
            events.push(event);
            at += event_len;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every `.rs` file under `src/` (library and binary), with its text;
    /// this file without these tests, which name what they look for.
    fn sources() -> Vec<(PathBuf, String)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let mut text = std::fs::read_to_string(&path).unwrap();
                    if path.file_name() == Path::new(file!()).file_name() {
                        text.truncate(text.rfind("#[cfg(test)]").unwrap());
                    }
                    out.push((path, text));
                }
            }
        }
        let mut out = Vec::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
        assert!(out.len() > 20, "src/ not found: {out:?}");
        out
    }

    /// The names that follow each `prefix` in `text`: `a` in `prefix a`,
    /// `a` and `b` in `prefix {a, b}`.
    fn names_after(text: &str, prefix: &str) -> Vec<String> {
        let mut names = Vec::new();
        for (at, _) in text.match_indices(prefix) {
            let rest = &text[at + prefix.len()..];
            let group = match rest.strip_prefix('{') {
                Some(inner) => &inner[..inner.find('}').unwrap()],
                None => {
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    &rest[..end]
                }
            };
            names.extend(
                group
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty()),
            );
        }
        names
    }

    #[test]
    fn libc_is_used_only_here() {
        let here = Path::new(file!()).file_name().unwrap();
        for (path, text) in sources() {
            if path.file_name() != Some(here) {
                assert!(
                    !text.contains("libc::"),
                    "{}: libc outside src/sys.rs",
                    path.display()
                );
            }
        }
    }

    /// rustix only for what nix lacks: the new mount API (all of
    /// `rustix::mount`), statx, extended attributes, the terminal's window
    /// size, and getrandom(2) (record ids).
    #[test]
    fn rustix_only_for_what_nix_lacks() {
        let allowed: &[(&str, &[&str])] = &[
            (
                "rustix::fs::",
                &[
                    "statx",
                    "StatxFlags",
                    "AtFlags",
                    "CWD",
                    "getxattr",
                    "setxattr",
                    "removexattr",
                    "XattrFlags",
                ],
            ),
            ("rustix::io::", &["Errno", "Result"]),
            ("rustix::termios::", &["tcgetwinsize"]),
            ("rustix::rand::", &["getrandom", "GetRandomFlags"]),
        ];
        for (path, text) in sources() {
            for (prefix, names) in allowed {
                for name in names_after(&text, prefix) {
                    assert!(
                        names.contains(&name.as_str()),
                        "{}: {prefix}{name}, which nix has (or which belongs in sys)",
                        path.display()
                    );
                }
            }
            for module in names_after(&text, "rustix::") {
                assert!(
                    ["fs", "io", "mount", "rand", "termios"].contains(&module.as_str()),
                    "{}: rustix::{module}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn names_after_reads_single_names_and_groups() {
        let text = "use rustix::fs::{AtFlags, statx};\nrustix::fs::openat(x)";
        assert_eq!(
            names_after(text, "rustix::fs::"),
            ["AtFlags", "statx", "openat"]
        );
    }
}

/// `_LINUX_CAPABILITY_VERSION_3` (linux/capability.h): two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Makes the calling thread act on files as `uid`:`gid` (its filesystem
/// ids), keeping its capabilities: `setfsgid`, `setfsuid`, then `capset`
/// with the effective set raised to the permitted one again (a change of
/// fsuid away from 0 drops the filesystem capabilities, CAP_CHOWN,
/// CAP_DAC_OVERRIDE, CAP_FOWNER... from the effective set). Only this
/// thread changes: both calls act on the calling thread alone (glibc does
/// not broadcast setfsuid, unlike setuid), and its credentials die with it.
/// Run it on a thread of its own that ends after the work.
pub fn act_on_files_as(uid: u32, gid: u32) -> io::Result<()> {
    // Each returns the previous id, never an error: asking again returns
    // the id now in force, which is checked.
    use nix::unistd::{Gid, Uid, setfsgid, setfsuid};
    setfsgid(Gid::from_raw(gid));
    setfsuid(Uid::from_raw(uid));
    let now_gid = setfsgid(Gid::from_raw(gid)).as_raw();
    let now_uid = setfsuid(Uid::from_raw(uid)).as_raw();
    if (now_uid, now_gid) != (uid, gid) {
        return Err(io::Error::other(format!(
            "setfsuid({uid})/setfsgid({gid}) did not take (fsuid {now_uid}, fsgid {now_gid})"
        )));
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are live, properly laid out structs of the
    // sizes version 3 expects (one header, two data words); pid 0 is the
    // calling thread.
    let got = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    for word in &mut data {
        word.effective = word.permitted;
    }
    // SAFETY: as above; capset reads the two data words.
    let set = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
