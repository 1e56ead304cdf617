//! User-given paths, resolved once into file descriptors.
//!
//! The tool runs as root on paths that ordinary users partly own (a home, a
//! container's upperdir owned by its mapped root, a target's parent). Such a
//! user may rename, swap and symlink what they own at any instant. So a path
//! is walked here one component at a time, each opened with
//! `openat(parent_fd, name, O_PATH|O_NOFOLLOW)` and checked, and from then on
//! only the resulting fd is used: nothing is looked up by the string again.
//!
//! The ownership rule is systemd's `CHASE_SAFE`: once the walk passes through
//! something owned by a user other than root (a directory or a symlink), the
//! next thing reached must belong to that same user. Such a user can only
//! ever lead us to their own files, never to root's or another user's: a
//! symlink planted in a user's directory and pointing at `/etc` is refused,
//! and so is a root-owned directory inside a user's directory (its owner can
//! swap it for another one of root's). Symlinks owned by root, such as
//! `/var/lib -> /data`, are followed as usual. A symlink owned by a user must
//! be relative: an absolute one would lead through `/`, which is root's.

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag};
use rustix::fs::{AtFlags, StatxFlags, statx};
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

/// Linux follows at most 40 symlinks in one lookup (path_resolution(7)).
const MAX_SYMLINKS: usize = 40;

/// What a walk knows about one object it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub dev: (u32, u32),
    pub ino: u64,
    /// The mount id (as mountinfo shows it) of the mount this lies on.
    pub mnt_id: u64,
}

impl Meta {
    pub fn is_dir(&self) -> bool {
        self.file_type() == SFlag::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == SFlag::S_IFLNK
    }

    /// The `S_IFMT` bits of the mode.
    fn file_type(&self) -> SFlag {
        SFlag::from_bits_truncate(self.mode) & SFlag::S_IFMT
    }

    /// Device and inode: the identity of a file, whatever its path.
    pub fn file_id(&self) -> (u32, u32, u64) {
        (self.dev.0, self.dev.1, self.ino)
    }
}

/// `statx(fd, "", AT_EMPTY_PATH, BASIC|MNT_ID)`: owner, type, device, inode
/// and mount id of what `fd` refers to, in one call.
pub fn meta_of(fd: BorrowedFd<'_>) -> std::io::Result<Meta> {
    let st = statx(
        fd,
        "",
        AtFlags::EMPTY_PATH,
        StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
    )?;
    Ok(Meta {
        uid: st.stx_uid,
        gid: st.stx_gid,
        mode: u32::from(st.stx_mode),
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mnt_id: st.stx_mnt_id,
    })
}

/// Why a path was not resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// A component does not exist (or vanished during the walk).
    NotFound(PathBuf),
    /// A component that must be a directory is not one.
    NotDirectory(PathBuf),
    /// The ownership rule refused a step.
    Unsafe {
        /// What was reached.
        reached: PathBuf,
        owner: u32,
        /// The directory or symlink owned by another user that led there.
        through: PathBuf,
        through_owner: u32,
        through_symlink: bool,
    },
    TooManySymlinks(PathBuf),
    /// The path is empty, relative, or ends where no name can be (`/`, `..`).
    Invalid(String),
    Io(PathBuf, std::io::Error),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound(p) => write!(f, "{}: no such file or directory", p.display()),
            ResolveError::NotDirectory(p) => write!(f, "{} is not a directory", p.display()),
            ResolveError::Unsafe {
                reached,
                owner,
                through,
                through_owner,
                through_symlink,
            } => write!(
                f,
                "{} (owned by uid {owner}) is reached through {} {} owned by uid {through_owner}, who could redirect it; refusing an unsafe path (use a path whose components stay with one owner)",
                reached.display(),
                if *through_symlink {
                    "symlink"
                } else {
                    "directory"
                },
                through.display()
            ),
            ResolveError::TooManySymlinks(p) => {
                write!(f, "{}: too many levels of symbolic links", p.display())
            }
            ResolveError::Invalid(why) => f.write_str(why),
            ResolveError::Io(p, e) => {
                write!(f, "{}: {}", p.display(), crate::base::error::describe_io(e))
            }
        }
    }
}

impl std::error::Error for ResolveError {}

impl ResolveError {
    /// The message for the argument `given`, without repeating its path
    /// when the problem is the path itself.
    pub fn describe(&self, given: &Path) -> String {
        match self {
            ResolveError::NotFound(p) if p == given => "no such file or directory".into(),
            ResolveError::NotDirectory(p) if p == given => "is not a directory".into(),
            other => other.to_string(),
        }
    }
}

fn io_error(path: &Path, errno: Errno) -> ResolveError {
    match errno {
        Errno::ENOENT => ResolveError::NotFound(path.to_path_buf()),
        Errno::ENOTDIR => ResolveError::NotDirectory(path.to_path_buf()),
        e => ResolveError::Io(path.to_path_buf(), e.into()),
    }
}

impl From<ResolveError> for crate::base::error::Error {
    fn from(e: ResolveError) -> crate::base::error::Error {
        use ResolveError as R;
        let (path, errno) = match &e {
            R::NotFound(p) => (Some(p.clone()), Some(Errno::ENOENT as i32)),
            R::NotDirectory(p) => (Some(p.clone()), Some(Errno::ENOTDIR as i32)),
            R::Unsafe { reached, .. } => (Some(reached.clone()), None),
            R::TooManySymlinks(p) => (Some(p.clone()), Some(Errno::ELOOP as i32)),
            R::Invalid(_) => (None, None),
            R::Io(p, io) => (Some(p.clone()), io.raw_os_error()),
        };
        crate::base::error::Error::with_cause(e.to_string(), errno, path)
    }
}

/// One directory the walk stands in. The fd is shared (not duplicated)
/// between the walk and the directories the resolver remembers: a copy
/// costs no system call.
#[derive(Clone)]
struct Dir {
    fd: Rc<OwnedFd>,
    path: PathBuf,
    meta: Meta,
    /// No user but root can change what the path walked so far leads to
    /// (see [`Resolved::fixed`]).
    fixed: bool,
    /// A directory above this one on the walk is closed to other users
    /// (see [`Resolved::closed`]).
    closed: bool,
    /// The owner the next step is judged against: the directory's, or the
    /// owner of the symlink that brought the walk here.
    leader: (u32, PathBuf, bool),
}

/// A resolved path: the fd (`O_PATH`) of exactly the object that was
/// checked, the canonical path the walk took, and what it is.
#[derive(Debug)]
pub struct Resolved {
    pub fd: OwnedFd,
    pub path: PathBuf,
    pub meta: Meta,
    /// No user but root can make `path` lead anywhere else: every
    /// directory on the way is root's and writable by nobody else (or
    /// sticky, with the entry taken there root's), and every symlink
    /// followed sits in such a directory. Then the path may be handed to
    /// the kernel as text (the mount table shows real paths); otherwise only
    /// the fd may be.
    pub fixed: bool,
    /// No user but root can reach the object by this path: a directory
    /// above it on the walk is root's and closed to every other user (no
    /// search permission for others, nor for a group other than root's),
    /// as containerd's and podman's storage directories are. What an
    /// idmapped upper layer stores as host-root setuid files must be out
    /// of every user's reach.
    pub closed: bool,
}

/// A resolved place for a name: the directory (walked and checked) and the
/// last component, not yet looked up. What `umount2` is aimed at: the name
/// is looked up in that very directory, never by a path string again.
#[derive(Debug)]
pub struct Entry {
    pub parent: OwnedFd,
    pub name: OsString,
    /// The canonical path of the entry.
    pub path: PathBuf,
    /// Whom the ownership rule judges what the entry names against: the
    /// owner of its directory, or of the symlink that led there (0 for
    /// root's), and that directory or symlink. A user other than root can
    /// put anything of theirs under this name, and only that.
    pub leader: (u32, PathBuf),
}

impl Entry {
    /// `/proc/self/fd/<parent>/<name>`: a path that reaches the entry through
    /// the held directory (the magic link is followed to exactly that
    /// directory), for the calls that take only a path, such as umount2(2).
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(self.parent.as_fd()).join(&self.name)
    }

    /// Opens the entry itself (`O_PATH|O_NOFOLLOW`): the top mount there, if
    /// something is mounted on it.
    pub fn open(&self) -> std::io::Result<OwnedFd> {
        Ok(openat(
            &self.parent,
            self.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?)
    }
}

/// `/proc/self/fd/N`: overlayfs, mount(2) and umount2(2) resolve this magic
/// link to exactly the file `fd` refers to, not to a path string.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
}

/// Walks paths safely. It remembers the directories of the last path it
/// walked, so a list of layers sharing a long prefix (containerd's
/// `/var/lib/.../snapshots/N/fs`) costs one walk of the prefix.
#[derive(Default)]
pub struct Resolver {
    /// `stack[k]`: the directory reached after the first `k + 1` components
    /// of the last path, as the user wrote them.
    stack: Vec<(OsString, Dir)>,
}

fn open_root() -> Result<Dir, ResolveError> {
    let root = Path::new("/");
    let fd = openat(
        AT_FDCWD,
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(root, e))?;
    let meta = meta_of(fd.as_fd()).map_err(|e| ResolveError::Io(root.into(), e))?;
    Ok(Dir {
        fd: Rc::new(fd),
        path: root.into(),
        leader: (meta.uid, root.into(), false),
        fixed: meta.uid == 0,
        closed: false,
        meta,
    })
}

/// The components of a path as written: `.` and empty ones dropped, `..`
/// kept (it is resolved against what was walked).
fn parts(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Can only root change which object the entry `reached` (owned by
/// `reached_uid`) of the directory `dir` is? The directory is root's and
/// nobody else may write it, or it is sticky (/tmp) and the entry is
/// root's, which no one else may then rename or remove.
fn entry_is_fixed(dir: &Meta, reached_uid: u32) -> bool {
    let others_write = dir.mode & 0o022 != 0;
    let sticky = dir.mode & 0o1000 != 0;
    dir.uid == 0 && (!others_write || (sticky && reached_uid == 0))
}

/// Is the directory `dir` root's and closed to every other user: no
/// search permission for others, nor for its group unless that is root's?
fn closes_to_users(dir: &Meta) -> bool {
    dir.uid == 0 && dir.mode & 0o001 == 0 && (dir.mode & 0o010 == 0 || dir.gid == 0)
}

fn check_step(dir: &Dir, reached: &Path, meta: &Meta) -> Result<(), ResolveError> {
    let (owner, through, symlink) = &dir.leader;
    if *owner != 0 && meta.uid != *owner {
        return Err(ResolveError::Unsafe {
            reached: reached.to_path_buf(),
            owner: meta.uid,
            through: through.clone(),
            through_owner: *owner,
            through_symlink: *symlink,
        });
    }
    Ok(())
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver::default()
    }

    /// The directory to continue from: the deepest one remembered whose
    /// written components are a prefix of `parts`, or `/`.
    fn start(&mut self, parts: &[OsString]) -> Result<(Dir, usize), ResolveError> {
        let shared = self
            .stack
            .iter()
            .zip(parts)
            .take_while(|((name, _), part)| name == *part)
            .count();
        self.stack.truncate(shared);
        match self.stack.last() {
            Some((_, dir)) => Ok((dir.clone(), shared)),
            None => Ok((open_root()?, 0)),
        }
    }

    /// Resolves `path` to the object it names, following symlinks (the
    /// last one too, unless `follow_last` is false) under the ownership rule.
    pub fn resolve(&mut self, path: &Path, follow_last: bool) -> Result<Resolved, ResolveError> {
        if path.is_absolute() && parts(path).is_empty() {
            let root = open_root()?;
            return Ok(Resolved {
                fd: owned(root.fd, &root.path)?,
                path: root.path,
                meta: root.meta,
                fixed: root.fixed,
                closed: root.closed,
            });
        }
        let (parent, name) = self.walk_to_last(path)?;
        // The last component is walked like any other, but nothing of it is
        // remembered: layers differ there.
        let last = walk(parent, name, follow_last, path)?;
        Ok(Resolved {
            fd: owned(last.fd, &last.path)?,
            path: last.path,
            meta: last.meta,
            fixed: last.fixed,
            closed: last.closed,
        })
    }

    /// Resolves `path` to a directory.
    pub fn resolve_dir(&mut self, path: &Path) -> Result<Resolved, ResolveError> {
        let resolved = self.resolve(path, true)?;
        if !resolved.meta.is_dir() {
            return Err(ResolveError::NotDirectory(resolved.path));
        }
        Ok(resolved)
    }

    /// Resolves everything but the last component of `path` (which must be
    /// a plain name): the place where an entry is, for acting on that entry
    /// without following it (unmounting what is mounted there).
    pub fn resolve_entry(&mut self, path: &Path) -> Result<Entry, ResolveError> {
        let (parent, name) = self.walk_to_last(path)?;
        if name == ".." {
            return Err(ResolveError::Invalid(format!(
                "{} does not end in a name",
                path.display()
            )));
        }
        Ok(Entry {
            path: parent.path.join(&name),
            leader: (parent.leader.0, parent.leader.1.clone()),
            parent: owned(parent.fd, &parent.path)?,
            name,
        })
    }

    /// Walks all components but the last, remembering the directories, and
    /// returns the directory reached and the last component.
    fn walk_to_last(&mut self, path: &Path) -> Result<(Dir, OsString), ResolveError> {
        if !path.is_absolute() {
            return Err(ResolveError::Invalid(format!(
                "{} is not an absolute path",
                path.display()
            )));
        }
        let parts = parts(path);
        let Some((last, leading)) = parts.split_last() else {
            return Err(ResolveError::Invalid(format!(
                "{} names no entry (it is /)",
                path.display()
            )));
        };
        let (mut dir, done) = self.start(leading)?;
        for part in &leading[done..] {
            dir = walk(dir, part.clone(), true, path)?;
            if !dir.meta.is_dir() {
                return Err(ResolveError::NotDirectory(dir.path));
            }
            self.stack.push((part.clone(), dir.clone()));
        }
        Ok((dir, last.clone()))
    }
}

/// Steps from `dir` into `name`, following symlinks (the one `name` itself
/// may be only with `follow_last`). Every step is judged by the ownership
/// rule; everything passed through on the way must be a directory.
fn walk(dir: Dir, name: OsString, follow_last: bool, whole: &Path) -> Result<Dir, ResolveError> {
    let mut steps = vec![name];
    let mut dir = dir;
    let mut links = 0;
    while let Some(name) = steps.pop() {
        if name == ".." {
            dir = parent_of(&dir)?;
            continue;
        }
        let reached = dir.path.join(&name);
        let fd = openat(
            &dir.fd,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(&reached, e))?;
        let meta = meta_of(fd.as_fd()).map_err(|e| ResolveError::Io(reached.clone(), e))?;
        check_step(&dir, &reached, &meta)?;
        let fixed = dir.fixed && entry_is_fixed(&dir.meta, meta.uid);
        if meta.is_symlink() && (follow_last || !steps.is_empty()) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ResolveError::TooManySymlinks(whole.to_path_buf()));
            }
            let (mut next, more) = follow_symlink(&dir, &fd, &reached, &meta)?;
            // A symlink's text cannot change; which one sits there can.
            next.fixed &= fixed;
            dir = next;
            steps.extend(more.into_iter().rev());
            continue;
        }
        if !steps.is_empty() && !meta.is_dir() {
            return Err(ResolveError::NotDirectory(reached));
        }
        // What follows a directory is judged against its owner: anything
        // may follow root's, only their own files may follow a user's.
        dir = Dir {
            leader: (meta.uid, reached.clone(), false),
            closed: dir.closed || closes_to_users(&dir.meta),
            fd: Rc::new(fd),
            path: reached,
            meta,
            fixed,
        };
    }
    Ok(dir)
}

/// Reads the symlink `link` (in `dir`) and returns where its target's walk
/// starts and the target's components. A user's symlink binds what follows
/// to its owner; an absolute one starts at `/`, root's, which only a
/// root-owned symlink may lead to.
fn follow_symlink(
    dir: &Dir,
    link: &OwnedFd,
    link_path: &Path,
    link_meta: &Meta,
) -> Result<(Dir, Vec<OsString>), ResolveError> {
    // readlinkat(link, ""): the symlink `link` holds (O_PATH|O_NOFOLLOW), not
    // a name looked up again.
    let target = PathBuf::from(readlinkat(link, "").map_err(|e| io_error(link_path, e))?);
    let leader = (link_meta.uid, link_path.to_path_buf(), true);
    let start = if target.is_absolute() {
        let root = open_root()?;
        let dir = Dir { leader, ..root };
        check_step(&dir, Path::new("/"), &dir.meta)?;
        dir
    } else {
        Dir {
            leader,
            ..dir.clone()
        }
    };
    Ok((start, parts(&target)))
}

/// `..` of a walked directory: its parent, judged like any step (a user's
/// directory may not lead up into root's). At `/` it stays at `/`.
fn parent_of(dir: &Dir) -> Result<Dir, ResolveError> {
    let Some(parent_path) = dir.path.parent().map(Path::to_path_buf) else {
        return Ok(dir.clone());
    };
    let fd = openat(
        &dir.fd,
        "..",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(&parent_path, e))?;
    let meta = meta_of(fd.as_fd()).map_err(|e| ResolveError::Io(parent_path.clone(), e))?;
    check_step(dir, &parent_path, &meta)?;
    Ok(Dir {
        leader: (meta.uid, parent_path.clone(), false),
        fd: Rc::new(fd),
        path: parent_path,
        meta,
        // Not worked out for `..`: the text is not used.
        fixed: false,
        // Nor this: counted as reachable.
        closed: false,
    })
}

/// The fd itself when nothing else holds it (the usual case: the last
/// component was just opened), else a duplicate.
fn owned(fd: Rc<OwnedFd>, path: &Path) -> Result<OwnedFd, ResolveError> {
    Rc::try_unwrap(fd).or_else(|shared| {
        shared
            .try_clone()
            .map_err(|e| ResolveError::Io(path.to_path_buf(), e))
    })
}

/// Opens a namespace file (`/proc/PID/ns/user`, or a bind mount of one)
/// for reading: its directories walked safely, the last component followed
/// only where it is procfs's own magic link, and never blocking (a FIFO
/// planted there opens at once and is then refused by its type).
pub fn open_namespace_file(path: &Path) -> Result<OwnedFd, ResolveError> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ResolveError::Io(path.to_path_buf(), e))?
            .join(path)
    };
    let entry = resolve_entry(&absolute)?;
    let on_proc = crate::kernel::sys::fs_magic(entry.parent.as_fd()).ok()
        == Some(crate::kernel::sys::PROC_SUPER_MAGIC);
    let mut flags = OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if !on_proc {
        flags |= OFlag::O_NOFOLLOW;
    }
    openat(&entry.parent, entry.name.as_os_str(), flags, Mode::empty())
        .map_err(|e| io_error(&entry.path, e))
}

/// The mount id (as mountinfo shows it) of the mount `path` lies on, as
/// findmnt -T finds it: opened with `O_PATH` (nothing is read, no device
/// is opened), symlinks followed, a relative path taken from the current
/// directory.
pub fn mount_id_of(path: &Path) -> Result<u64, ResolveError> {
    let fd = openat(
        AT_FDCWD,
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(path, e))?;
    meta_of(fd.as_fd())
        .map(|meta| meta.mnt_id)
        .map_err(|e| ResolveError::Io(path.to_path_buf(), e))
}

/// Resolves one directory argument.
pub fn resolve_dir(path: &Path) -> Result<Resolved, ResolveError> {
    Resolver::new().resolve_dir(path)
}

/// Resolves the place of one entry (see [`Resolver::resolve_entry`]).
pub fn resolve_entry(path: &Path) -> Result<Entry, ResolveError> {
    Resolver::new().resolve_entry(path)
}

#[cfg(test)]
mod tests {
    //! Run as root (as CI does): they chown files to uid 65534.
    use super::*;
    use std::os::unix::fs::{chown, lchown, symlink};

    const NOBODY: u32 = 65534;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the resolver's tests chown files and must run as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    fn mkdir_owned(path: &Path, uid: u32) {
        std::fs::create_dir_all(path).unwrap();
        chown(path, Some(uid), Some(uid)).unwrap();
    }

    fn link_owned(target: &str, link: &Path, uid: u32) {
        symlink(target, link).unwrap();
        lchown(link, Some(uid), Some(uid)).unwrap();
    }

    fn unsafe_step(result: Result<Resolved, ResolveError>) -> (PathBuf, u32, PathBuf) {
        match result {
            Err(ResolveError::Unsafe {
                reached,
                owner,
                through,
                ..
            }) => (reached, owner, through),
            other => panic!("expected an unsafe step, got {other:?}"),
        }
    }

    #[test]
    fn plain_directories_and_root_symlinks_resolve() {
        let (_keep, root) = tree();
        mkdir_owned(&root.join("data/layers/1"), 0);
        link_owned("data", &root.join("rel"), 0);
        link_owned(root.join("data").to_str().unwrap(), &root.join("abs"), 0);
        for given in [
            "data/layers/1",
            "rel/layers/1",
            "abs/layers/./1",
            "data/x/../layers/1",
        ] {
            if given.contains("x/..") {
                std::fs::create_dir_all(root.join("data/x")).unwrap();
            }
            let got = resolve_dir(&root.join(given)).unwrap();
            assert_eq!(got.path, root.join("data/layers/1"), "{given}");
            let real = std::fs::metadata(root.join("data/layers/1")).unwrap();
            assert_eq!(got.meta.ino, std::os::unix::fs::MetadataExt::ino(&real));
        }
    }

    #[test]
    fn a_users_own_files_are_fine_under_their_directory() {
        let (_keep, root) = tree();
        mkdir_owned(&root.join("home"), NOBODY);
        mkdir_owned(&root.join("home/img/l1"), NOBODY);
        chown(root.join("home/img"), Some(NOBODY), None).unwrap();
        link_owned("img", &root.join("home/link"), NOBODY);
        let got = resolve_dir(&root.join("home/link/l1")).unwrap();
        assert_eq!(got.path, root.join("home/img/l1"));
        assert_eq!(got.meta.uid, NOBODY);
    }

    #[test]
    fn a_users_directory_cannot_lead_to_somebody_elses() {
        let (_keep, root) = tree();
        mkdir_owned(&root.join("home"), NOBODY);
        mkdir_owned(&root.join("home/rootowned"), 0);
        let (reached, owner, through) = unsafe_step(resolve_dir(&root.join("home/rootowned")));
        assert_eq!(reached, root.join("home/rootowned"));
        assert_eq!((owner, through), (0, root.join("home")));
    }

    #[test]
    fn a_users_symlink_cannot_point_at_root_files() {
        let (_keep, root) = tree();
        mkdir_owned(&root.join("home"), NOBODY);
        mkdir_owned(&root.join("etc"), 0);
        // Absolute: it would lead through /, root's.
        link_owned(
            root.join("etc").to_str().unwrap(),
            &root.join("home/abs"),
            NOBODY,
        );
        let (reached, _, through) = unsafe_step(resolve_dir(&root.join("home/abs")));
        assert_eq!(
            (reached, through),
            (PathBuf::from("/"), root.join("home/abs"))
        );
        // Relative, climbing out of the user's directory.
        link_owned("../etc", &root.join("home/rel"), NOBODY);
        let (reached, owner, _) = unsafe_step(resolve_dir(&root.join("home/rel")));
        assert_eq!((reached, owner), (root.clone(), 0));
        // A user's symlink in root's directory (as in /tmp) likewise.
        link_owned("etc", &root.join("planted"), NOBODY);
        let (reached, _, through) = unsafe_step(resolve_dir(&root.join("planted")));
        assert_eq!((reached, through), (root.join("etc"), root.join("planted")));
    }

    #[test]
    fn entries_are_not_followed() {
        let (_keep, root) = tree();
        mkdir_owned(&root.join("p"), 0);
        link_owned("/proc", &root.join("p/mnt"), 0);
        let entry = resolve_entry(&root.join("p/mnt")).unwrap();
        assert_eq!(entry.name, OsString::from("mnt"));
        assert_eq!(entry.path, root.join("p/mnt"));
        let fd = entry.open().unwrap();
        assert!(!meta_of(fd.as_fd()).unwrap().is_dir(), "the symlink itself");
        assert!(matches!(
            resolve_entry(Path::new("/")),
            Err(ResolveError::Invalid(_))
        ));
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        let (_keep, root) = tree();
        std::fs::write(root.join("file"), "").unwrap();
        link_owned("loop", &root.join("loop"), 0);
        assert!(matches!(
            resolve_dir(&root.join("missing/x")),
            Err(ResolveError::NotFound(p)) if p == root.join("missing")
        ));
        assert!(matches!(
            resolve_dir(&root.join("file")),
            Err(ResolveError::NotDirectory(_))
        ));
        assert!(matches!(
            resolve_dir(&root.join("file/x")),
            Err(ResolveError::NotDirectory(_))
        ));
        assert!(matches!(
            resolve_dir(&root.join("loop")),
            Err(ResolveError::TooManySymlinks(_))
        ));
        assert!(matches!(
            resolve_dir(Path::new("relative")),
            Err(ResolveError::Invalid(_))
        ));
    }

    #[test]
    fn a_shared_prefix_is_walked_once_and_stays_consistent() {
        let (_keep, root) = tree();
        for n in 1..=3 {
            mkdir_owned(&root.join(format!("s/{n}/fs")), 0);
        }
        let mut resolver = Resolver::new();
        let one = resolver.resolve_dir(&root.join("s/1/fs")).unwrap();
        // The prefix directory is remembered by fd: renaming it now changes
        // nothing for the next layer of the same list.
        std::fs::rename(root.join("s"), root.join("s.old")).unwrap();
        let two = resolver.resolve_dir(&root.join("s/2/fs")).unwrap();
        assert_eq!(one.meta.dev, two.meta.dev);
        assert_eq!(two.path, root.join("s/2/fs"), "the path as it was walked");
        // A fresh resolver sees the rename.
        assert!(resolve_dir(&root.join("s/3/fs")).is_err());
    }

    /// Which paths only root can redirect: the mount table may show those
    /// as text. The temp dir lies under /tmp (sticky, root's): its entries
    /// of root's are fixed, a user's are not.
    #[test]
    fn only_paths_no_user_can_change_are_fixed() {
        use std::os::unix::fs::PermissionsExt;
        let (_keep, root) = tree();
        mkdir_owned(&root.join("var/lib/c1/upper"), 100000);
        mkdir_owned(&root.join("home/user"), NOBODY);
        mkdir_owned(&root.join("home/user/upper"), NOBODY);
        mkdir_owned(&root.join("open/upper"), 0);
        std::fs::set_permissions(root.join("open"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        mkdir_owned(&root.join("sticky/roots"), 0);
        mkdir_owned(&root.join("sticky/users"), NOBODY);
        std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        link_owned("var/lib/c1", &root.join("link"), 0);
        mkdir_owned(&root.join("home/user/mine"), NOBODY);
        link_owned("mine", &root.join("home/user/via"), NOBODY);
        // The temp dir itself: root's, under /tmp (sticky) as a rule.
        let on_tmp = resolve_dir(&root).unwrap().fixed;
        for (given, fixed) in [
            // The owner of the last directory does not matter: its name
            // sits in a directory only root may change.
            ("var/lib/c1/upper", on_tmp),
            ("link/upper", on_tmp),
            ("home/user/upper", false),
            ("home/user/via", false),
            ("open/upper", false),
            ("sticky/roots", on_tmp),
            ("sticky/users", false),
        ] {
            let got = resolve_dir(&root.join(given)).unwrap();
            assert_eq!(got.fixed, fixed, "{given}");
        }
    }
}
