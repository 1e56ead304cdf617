//! The kernel calls shared by the floor (`floor`) and the benchmark's
//! populate step (`benchkit populate`): the user namespace that carries the
//! map, and a detached idmapped tree.

use rustix::fs::{CWD, Mode, OFlags};
use rustix::mount::{OpenTreeFlags, open_tree};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::process::exit;
use std::time::Instant;

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MS_PRIVATE: u64 = 1 << 18;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub fn die(what: &str, err: impl std::fmt::Display) -> ! {
    eprintln!("floor: {what}: {err}");
    exit(32)
}

pub fn check<T>(what: &str, r: rustix::io::Result<T>) -> T {
    r.unwrap_or_else(|e| die(what, e))
}

/// A user namespace carrying `map` for uids and gids: a helper child born in
/// it with `clone(CLONE_NEWUSER | CLONE_FILES)` (it shares our fd table, so
/// it holds no copies of our fds), maps written from here, its namespace
/// opened, then the child killed and reaped. The fd keeps the namespace.
pub fn userns(map: &str) -> OwnedFd {
    let parent = unsafe { libc::getpid() };
    let child = Box::new(move || -> isize {
        // SAFETY: raw syscalls only; the child never returns into our code.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            loop {
                libc::pause();
            }
        }
    });
    let mut stack = vec![0u8; 16 * 1024];
    let flags = nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_FILES;
    // SAFETY: no CLONE_VM: the child runs on its own copy of the stack and
    // only makes async-signal-safe calls.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .unwrap_or_else(|e| die("clone(CLONE_NEWUSER|CLONE_FILES)", e));
    let pid = pid.as_raw();
    let write = |name: &str, text: &str| {
        let path = format!("/proc/{pid}/{name}");
        let fd = check(
            &path,
            rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()),
        );
        check(&path, rustix::io::write(&fd, text.as_bytes()));
    };
    write("uid_map", map);
    write("setgroups", "deny");
    write("gid_map", map);
    let ns_path = format!("/proc/{pid}/ns/user");
    let ns = check(
        &ns_path,
        rustix::fs::open(&ns_path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()),
    );
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    ns
}

/// `open_tree(OPEN_TREE_CLONE)` of `dir`, then
/// `mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY, MS_PRIVATE)`: a
/// detached idmapped tree (the same attributes the tool sets).
pub fn idmapped_tree(dir: &str, ns: BorrowedFd<'_>) -> OwnedFd {
    let tree = check(
        "open_tree",
        open_tree(
            CWD,
            dir,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        ),
    );
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: ns.as_raw_fd() as u64,
    };
    // SAFETY: valid empty C string, a live mount_attr and its size.
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
    if ret != 0 {
        die(
            "mount_setattr(MOUNT_ATTR_IDMAP)",
            std::io::Error::last_os_error(),
        );
    }
    tree
}

/// Per-phase wall times of one floor run, printed on stderr when the
/// environment has `FLOOR_TIMINGS` (never in timed runs): where the kernel
/// time of a strategy goes.
pub struct Phases {
    on: bool,
    last: Instant,
    marks: Vec<(&'static str, u128)>,
}

impl Phases {
    pub fn new() -> Phases {
        Phases {
            on: std::env::var_os("FLOOR_TIMINGS").is_some(),
            last: Instant::now(),
            marks: Vec::new(),
        }
    }

    pub fn mark(&mut self, name: &'static str) {
        if self.on {
            let now = Instant::now();
            self.marks.push((name, (now - self.last).as_nanos()));
            self.last = now;
        }
    }
}

impl Default for Phases {
    fn default() -> Phases {
        Phases::new()
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        if self.on {
            let text: Vec<String> = self
                .marks
                .iter()
                .map(|(n, ns)| format!("{n}={ns}"))
                .collect();
            eprintln!("phases {}", text.join(" "));
        }
    }
}
