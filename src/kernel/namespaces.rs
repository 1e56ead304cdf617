//! Where an overlay is attached, in which mount namespaces, and who holds it.
//!
//! A container runtime makes a mount namespace of its own and pivots into
//! the overlay, so the overlay lives on there after our copy is unmounted
//! (issue 10). Every copy shares the overlay's superblock, so its device
//! number is the same in every namespace; the source tag
//! (`idmap-overlay:<id>`) tells it is ours.
//!
//! One [`Scan`] lists the distinct mount namespaces (`/proc/*/ns/mnt`, by
//! nsfs inode; where the kernel keeps a list of them, NS_MNT_GET_NEXT, also
//! those no process is in), reads each one's mount table once (listmount
//! and statmount, or one member's mountinfo) and keeps its overlays and
//! idmapped mounts. The queries answer from it:
//! - [`Scan::copies`]: the copies of one overlay in other namespaces, with a
//!   process of each and whether the overlay is its root or cwd;
//! - [`Scan::overlays_using`]: the live overlays whose upperdir or workdir is
//!   a given directory, in any namespace;
//! - [`Scan::holders`]: the processes whose root, cwd or open files are on
//!   any copy of given overlays, in one pass over `/proc`.
//!
//! Parsing and matching are pure functions; the `/proc` walking is a thin
//! layer that takes the `/proc` root as a parameter. Strings from outside
//! (commands, paths, sources) are kept raw, unescaped from the kernel's
//! encoding: whoever shows them escapes them.

use crate::kernel::sys;
use nix::errno::Errno;
use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A device number, as mountinfo's `major:minor` shows it. An overlay's
/// is an anonymous device of its own superblock, shared by all its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

impl Device {
    /// Parses `0:40`.
    pub fn parse(text: &str) -> Option<Device> {
        let (major, minor) = text.split_once(':')?;
        Some(Device {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// From a `dev_t` as stat(2) returns it (glibc's encoding, makedev(3)).
    pub fn from_dev_t(dev: u64) -> Device {
        Device {
            major: (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32,
            minor: ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One overlay in one namespace's mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// The mount id (mountinfo's first field; ids are global, so it also
    /// names this copy in statx's `stx_mnt_id`).
    pub mount_id: u64,
    pub parent_id: u64,
    pub device: Device,
    /// Through mountinfo, as the process whose table was read sees it
    /// (under its root); through listmount, from the namespace's root
    /// mount (the caller's root, in the caller's namespace).
    pub mount_point: PathBuf,
    /// `idmap-overlay:<id>` for ours; anything for others' (lossy UTF-8).
    pub source: String,
    /// The directory the kernel opened, decoded from the super options
    /// (mountinfo's octal escapes, then overlayfs's backslash escapes).
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
}

/// One idmapped mount in one namespace's mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmappedMount {
    pub mount_id: u64,
    pub parent_id: u64,
    pub device: Device,
    /// The directory of the filesystem mounted there.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// What a scan keeps of one mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub overlays: Vec<OverlayMount>,
    pub idmapped: Vec<IdmappedMount>,
}

/// The overlays and idmapped mounts of a `/proc/<pid>/mountinfo` text
/// (proc(5)). Bytes, not text: paths need not be UTF-8.
pub fn parse_table(text: &[u8]) -> Result<Table, String> {
    let mut table = Table::default();
    for line in text.split(|b| *b == b'\n') {
        if !line.is_empty() {
            parse_line_into(line, &mut table)?;
        }
    }
    Ok(table)
}

fn parse_line_into(line: &[u8], table: &mut Table) -> Result<(), String> {
    let bad = || {
        format!(
            "malformed mountinfo line: {:?}",
            String::from_utf8_lossy(line)
        )
    };
    let mut fields = line.split(|b| *b == b' ');
    let mut next = || fields.next().ok_or_else(bad);
    let (id, parent, device, root, mount_point, options) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    // Optional fields (`shared:1`, ...) until the `-` separator.
    while next()? != b"-" {}
    let (fs_type, source) = (next()?, next()?);
    let super_options = next()?;
    let is_overlay = fs_type == b"overlay";
    let is_idmapped = options.split(|b| *b == b',').any(|o| o == b"idmapped");
    if !is_overlay && !is_idmapped {
        return Ok(());
    }
    let number = |field: &[u8]| {
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad)
    };
    let mount_id = number(id)?;
    let parent_id = number(parent)?;
    let device = std::str::from_utf8(device)
        .ok()
        .and_then(Device::parse)
        .ok_or_else(bad)?;
    let source = String::from_utf8_lossy(&unescape_octal(source)).into_owned();
    let mount_point = bytes_to_path(unescape_octal(mount_point));
    if is_idmapped {
        table.idmapped.push(IdmappedMount {
            mount_id,
            parent_id,
            device,
            root: bytes_to_path(unescape_octal(root)),
            mount_point: mount_point.clone(),
            fs_type: String::from_utf8_lossy(&unescape_octal(fs_type)).into_owned(),
            source: source.clone(),
        });
    }
    if is_overlay {
        let (upperdir, workdir) = overlay_dirs(super_options);
        table.overlays.push(OverlayMount {
            mount_id,
            parent_id,
            device,
            mount_point,
            source,
            upperdir,
            workdir,
        });
    }
    Ok(())
}

/// `upperdir=` and `workdir=` of overlayfs's super options. The kernel
/// writes each value with `seq_show_option`, which octal-escapes `,`, `=`,
/// space, tab, newline and backslash, so splitting at `,` and `=` is safe;
/// the value is the string given at mount time, in which overlayfs took a
/// backslash to escape the next character (fs/overlayfs `ovl_unescape`).
pub fn overlay_dirs(super_options: &[u8]) -> (Option<PathBuf>, Option<PathBuf>) {
    let (mut upper, mut work) = (None, None);
    for option in super_options.split(|b| *b == b',') {
        let Some(eq) = option.iter().position(|b| *b == b'=') else {
            continue;
        };
        let slot = match &option[..eq] {
            b"upperdir" => &mut upper,
            b"workdir" => &mut work,
            _ => continue,
        };
        let value = unescape_overlay(&unescape_octal(&option[eq + 1..]));
        *slot = Some(bytes_to_path(value));
    }
    (upper, work)
}

/// Undoes the kernel's `\ooo` octal escapes (seq_escape, mangle).
pub fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (u32::from(field[i + 1] - b'0') << 6)
                | (u32::from(field[i + 2] - b'0') << 3)
                | u32::from(field[i + 3] - b'0');
            out.push(value as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// overlayfs's own unescaping of a layer path: a backslash takes the next
/// byte literally; a trailing backslash is dropped.
fn unescape_overlay(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            if let Some(&escaped) = bytes.next() {
                out.push(escaped);
            }
        } else {
            out.push(b);
        }
    }
    out
}

fn bytes_to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// The processes of each mount namespace, keyed by nsfs inode, each list
/// ascending.
pub fn group_by_namespace(members: &[(u32, u64)]) -> BTreeMap<u64, Vec<u32>> {
    let mut groups: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for &(pid, ns) in members {
        groups.entry(ns).or_default().push(pid);
    }
    for pids in groups.values_mut() {
        pids.sort_unstable();
    }
    groups
}

/// Adds to the namespaces found through `/proc` (nsfs inode, id if known,
/// members) those of the kernel's list (nsfs inode, id), with no members
/// when no process is in them; sorted by inode.
pub fn merge_namespace_lists(
    found: Vec<(u64, Option<u64>, Vec<u32>)>,
    listed: &[(u64, u64)],
) -> Vec<(u64, Option<u64>, Vec<u32>)> {
    let mut by_inode: BTreeMap<u64, (Option<u64>, Vec<u32>)> = found
        .into_iter()
        .map(|(ns, id, pids)| (ns, (id, pids)))
        .collect();
    for &(ns, id) in listed {
        by_inode.entry(ns).or_default().0 = Some(id);
    }
    by_inode
        .into_iter()
        .map(|(ns, (id, pids))| (ns, id, pids))
        .collect()
}

/// Every mount namespace the kernel lets us see, as (nsfs inode, 64-bit
/// id): from ours, backwards then forwards through the kernel's list.
fn kernel_namespace_list(proc_root: &Path) -> io::Result<Vec<(u64, u64)>> {
    let own = std::fs::File::open(proc_root.join("thread-self/ns/mnt"))?;
    let inode = |fd: std::os::fd::BorrowedFd<'_>| nix::sys::stat::fstat(fd).map(|st| st.st_ino);
    let mut listed = vec![(
        inode(own.as_fd())?,
        sys::mount_namespace_info_id(own.as_fd())?,
    )];
    for backwards in [true, false] {
        let mut here = None;
        loop {
            let from = here
                .as_ref()
                .map_or(own.as_fd(), |fd: &std::os::fd::OwnedFd| fd.as_fd());
            match sys::neighbour_mount_namespace(from, backwards) {
                Ok((next, id)) => {
                    listed.push((inode(next.as_fd())?, id));
                    here = Some(next);
                }
                Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(listed)
}

/// A process, and its command (`/proc/PID/comm`, raw, lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Process {
    pub pid: u32,
    pub command: String,
}

/// One mount namespace, as the scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its nsfs inode (`stat -L /proc/PID/ns/mnt`).
    pub ns: u64,
    /// Every process in it at scan time, ascending. None for a namespace
    /// kept alive by a bind-mounted namespace file or an open fd.
    pub pids: Vec<u32>,
    /// The process to name for it: the member whose table was read (through
    /// mountinfo), else the lowest pid. `None` when it has no process.
    pub process: Option<Process>,
    /// Its overlays and idmapped mounts, or why they could not be read: a
    /// caller deciding that an overlay is gone must treat such a namespace
    /// as unknown, not as empty.
    pub table: Result<Table, String>,
    /// How the table was read.
    pub source: TableSource,
}

/// How a scan reads each namespace's mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSource {
    /// `/proc/<pid>/mountinfo` of one member: every kernel since 5.19 (and
    /// before), and fixture trees. It lists only the mounts under that
    /// process's root: a namespace whose first member is chrooted shows
    /// less than it holds. Namespaces without a process are not found.
    Mountinfo,
    /// listmount(2) and statmount(2) with the namespace's id (on kernels
    /// that report the source string): the whole namespace. The kernel's
    /// own list of namespaces (NS_MNT_GET_NEXT) adds those without a
    /// process. A namespace where this fails is read through mountinfo
    /// instead, and after an error that says the kernel lacks the calls,
    /// every namespace after it.
    Listmount,
}

/// Every mount namespace and what its table holds, at one moment.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The caller's namespace (nsfs inode), if known.
    pub own_ns: Option<u64>,
    /// Sorted by `ns` (read them with [`Scan::namespaces`]).
    namespaces: Vec<Namespace>,
    /// Where each source tag is attached: (namespace, overlay) positions,
    /// in namespace order. Every question about an overlay names its tag,
    /// so gc's questions about 10,000 records need not walk 10,000
    /// overlays each.
    by_source: HashMap<String, Vec<(usize, usize)>>,
    /// Processes whose namespace could not be read (an LSM or ptrace rule
    /// refusing access to `/proc/PID/ns/mnt`), and why: a namespace only
    /// they are in is found only through the kernel's list (listmount).
    pub uninspected: Vec<(u32, String)>,
    proc_root: PathBuf,
    /// Our own process, left out of holder lists.
    own_pid: Option<u32>,
    /// Made by [`Scan::live_tables`]: every namespace's table, no process.
    tables_only: bool,
}

/// Moves the calling thread into the mount namespace at `path` (setns(2)
/// with CLONE_NEWNS): `/proc/PID/ns/mnt` or a bind mount of one, opened
/// safely. A process must still be single-threaded to do this.
pub fn enter_mount_namespace(path: &Path) -> crate::base::error::Result<()> {
    use crate::base::error::{Context, fail};
    let file = crate::kernel::resolve::open_namespace_file(path).map_err(|e| {
        fail(
            crate::base::error::ErrorKind::InvalidInput,
            format!("opening the namespace: {}", e.describe(path)),
        )
        .with_path(path)
    })?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNS)
        .fail_as(crate::base::error::ErrorKind::Mount, || {
            "entering the mount namespace".into()
        })
}

/// The nsfs inode of the calling thread's mount namespace
/// (`/proc/thread-self/ns/mnt`: with threads, `self` is the main thread's).
pub fn current_namespace() -> io::Result<u64> {
    namespace_id(Path::new("/proc/thread-self/ns/mnt"))
}

/// The nsfs inode of a namespace file such as `/proc/PID/ns/mnt` or a bind
/// mount of one (`stat`, following the link: the link text is not compared).
pub fn namespace_id(path: &Path) -> io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// The nsfs inode a `/proc/PID/ns/mnt` link names, read from the link's
/// text (`mnt:[4026531841]`): the kernel formats it without opening the
/// namespace, which costs a fraction of a stat(2) on every process.
fn namespace_link(path: &Path) -> io::Result<u64> {
    let text = std::fs::read_link(path)?;
    text.to_str()
        .and_then(|t| t.strip_prefix("mnt:["))
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected namespace link {text:?}")))
}

fn numeric_entries(dir: &Path) -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Whether an error means the process or namespace is gone (ENOENT on a
/// `/proc` path or a namespace id, ESRCH on a reaped process's files).
fn exited(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENOENT | Errno::ESRCH)
    )
}

fn read_command(proc_root: &Path, pid: u32) -> Option<String> {
    let mut raw = std::fs::read(proc_root.join(pid.to_string()).join("comm")).ok()?;
    if raw.last() == Some(&b'\n') {
        raw.pop();
    }
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// The index of [`Scan::by_source`].
fn index_sources(namespaces: &[Namespace]) -> HashMap<String, Vec<(usize, usize)>> {
    let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (n, ns) in namespaces.iter().enumerate() {
        if let Ok(table) = &ns.table {
            for (o, overlay) in table.overlays.iter().enumerate() {
                index
                    .entry(overlay.source.clone())
                    .or_default()
                    .push((n, o));
            }
        }
    }
    index
}

impl Scan {
    /// Scans the running system from the calling thread's namespace.
    /// Tables come from listmount/statmount where the kernel has them: they
    /// see a whole namespace whichever member is asked (mountinfo shows only
    /// what lies under that process's root), and cost less than mountinfo
    /// as tables grow (docs/BENCHMARKS.md). Elsewhere, mountinfo.
    pub fn live() -> io::Result<Scan> {
        Scan::read(
            Path::new("/proc"),
            Some(current_namespace()?),
            Some(std::process::id()),
            TableSource::Listmount,
        )
    }

    /// The tables of every mount namespace, without looking at a single
    /// process: the kernel lists the namespaces (Linux 6.12+) and
    /// listmount/statmount read them. What depends on tables alone (is an
    /// overlay attached, does it have copies elsewhere, which overlays use
    /// a directory) it answers like [`Scan::live`], at a cost that does not
    /// grow with the number of processes; who holds a copy it cannot say
    /// (see [`Scan::tables_only`]). Where the kernel cannot list the
    /// namespaces, or a table cannot be read this way, it is [`Scan::live`].
    pub fn live_tables() -> io::Result<Scan> {
        let proc_root = Path::new("/proc");
        let own_ns = current_namespace()?;
        let Ok(listed) = kernel_namespace_list(proc_root) else {
            return Scan::live();
        };
        let mut reader = TableReader::new(proc_root, TableSource::Listmount);
        let mut namespaces = Vec::with_capacity(listed.len());
        for (ns, id) in listed {
            match reader.namespace(ns, Some(id), Vec::new()) {
                Some(namespace) if namespace.table.is_ok() => namespaces.push(namespace),
                // Ended since it was listed.
                None => {}
                // Unreadable this way: let the processes' view decide.
                Some(_) => return Scan::live(),
            }
        }
        namespaces.sort_by_key(|n| n.ns);
        namespaces.dedup_by_key(|n| n.ns);
        Ok(Scan {
            own_ns: Some(own_ns),
            by_source: index_sources(&namespaces),
            namespaces,
            uninspected: Vec::new(),
            proc_root: proc_root.to_path_buf(),
            own_pid: Some(std::process::id()),
            tables_only: true,
        })
    }

    /// Whether this scan looked at tables only ([`Scan::live_tables`]):
    /// then no namespace names a process, and a copy found is worth a full
    /// [`Scan::live`] to say who holds it.
    pub fn tables_only(&self) -> bool {
        self.tables_only
    }

    /// Scans the processes under `proc_root`. `own_ns` is the caller's
    /// namespace (left out of [`Scan::copies`]); `own_pid` is left out of
    /// holder lists. Fails only when `proc_root` cannot be listed.
    pub fn read(
        proc_root: &Path,
        own_ns: Option<u64>,
        own_pid: Option<u32>,
        source: TableSource,
    ) -> io::Result<Scan> {
        let pids = numeric_entries(proc_root)?;
        let mut members = Vec::with_capacity(pids.len());
        let mut uninspected = Vec::new();
        let mut path = proc_root.to_path_buf();
        for pid in pids {
            path.push(pid.to_string());
            path.push("ns/mnt");
            match namespace_link(&path) {
                Ok(ns) => members.push((pid, ns)),
                // Exited since the listing: nothing to report.
                Err(e) if exited(&e) => {}
                Err(e) => uninspected.push((pid, crate::base::error::describe_io(&e))),
            }
            path.pop();
            path.pop();
            path.pop();
        }
        let mut groups: Vec<(u64, Option<u64>, Vec<u32>)> = group_by_namespace(&members)
            .into_iter()
            .map(|(ns, pids)| (ns, None, pids))
            .collect();
        if source == TableSource::Listmount {
            match kernel_namespace_list(proc_root) {
                Ok(listed) => groups = merge_namespace_lists(groups, &listed),
                Err(e) => log::debug!("the kernel's list of mount namespaces: {e}"),
            }
        }
        // One namespace after another: spreading the tables over threads
        // measured no faster on 2 busy cores (docs/BENCHMARKS.md).
        let mut reader = TableReader::new(proc_root, source);
        let namespaces: Vec<Namespace> = groups
            .into_iter()
            .filter_map(|(ns, id, pids)| reader.namespace(ns, id, pids))
            .collect();
        Ok(Scan {
            own_ns,
            by_source: index_sources(&namespaces),
            namespaces,
            uninspected,
            proc_root: proc_root.to_path_buf(),
            own_pid,
            tables_only: false,
        })
    }

    /// A scan made of given parts (tests, and callers that cached one).
    pub fn from_parts(
        proc_root: &Path,
        own_ns: Option<u64>,
        own_pid: Option<u32>,
        mut namespaces: Vec<Namespace>,
    ) -> Scan {
        namespaces.sort_by_key(|n| n.ns);
        Scan {
            own_ns,
            by_source: index_sources(&namespaces),
            namespaces,
            uninspected: Vec::new(),
            proc_root: proc_root.to_path_buf(),
            own_pid,
            tables_only: false,
        }
    }

    pub fn namespace(&self, ns: u64) -> Option<&Namespace> {
        self.namespaces
            .binary_search_by_key(&ns, |n| n.ns)
            .ok()
            .map(|i| &self.namespaces[i])
    }

    /// Namespaces whose table could not be read: an overlay may live there
    /// unseen.
    pub fn unreadable(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.iter().filter(|n| n.table.is_err())
    }

    /// Every attached copy of the overlay `device` with source `source`, in
    /// every namespace including the caller's. Both must match: a device
    /// number is reused once its superblock is gone, a source is free text.
    pub fn attached(&self, device: Device, source: &str) -> Vec<(&Namespace, &OverlayMount)> {
        self.tagged(source)
            .filter(|(_, overlay)| overlay.device == device)
            .collect()
    }

    /// Every attached overlay with the source tag `source`, in namespace
    /// order.
    fn tagged<'a>(
        &'a self,
        source: &str,
    ) -> impl Iterator<Item = (&'a Namespace, &'a OverlayMount)> + 'a {
        self.by_source
            .get(source)
            .into_iter()
            .flatten()
            .filter_map(|&(n, o)| {
                let ns = &self.namespaces[n];
                Some((ns, &ns.table.as_ref().ok()?.overlays[o]))
            })
    }

    /// The namespaces found, sorted by their nsfs inode.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// The copies of the overlay `device`/`source` in namespaces other
    /// than the caller's: one entry per namespace, naming a process there
    /// (one whose root, else cwd, is on the overlay, when there is one).
    pub fn copies(&self, device: Device, source: &str) -> Vec<OverlayCopy> {
        let mut by_ns: Vec<(&Namespace, Vec<Attachment>)> = Vec::new();
        for (ns, overlay) in self.attached(device, source) {
            if Some(ns.ns) == self.own_ns {
                continue;
            }
            let at = Attachment {
                mount_id: overlay.mount_id,
                mount_point: overlay.mount_point.clone(),
            };
            match by_ns.last_mut() {
                Some((last, list)) if last.ns == ns.ns => list.push(at),
                _ => by_ns.push((ns, vec![at])),
            }
        }
        by_ns
            .into_iter()
            .map(|(ns, mounts)| {
                let ids: Vec<u64> = mounts.iter().map(|m| m.mount_id).collect();
                let members = ns.pids.iter().map(|&pid| self.member_mounts(pid));
                let (process, is_root, is_cwd) = match choose_member(members, &ids) {
                    Some((pid, is_root, is_cwd)) => {
                        let process = match &ns.process {
                            Some(p) if p.pid == pid => p.clone(),
                            _ => Process {
                                pid,
                                command: read_command(&self.proc_root, pid).unwrap_or_default(),
                            },
                        };
                        (Some(process), is_root, is_cwd)
                    }
                    None => (ns.process.clone(), false, false),
                };
                OverlayCopy {
                    ns: ns.ns,
                    process,
                    mounts,
                    is_root,
                    is_cwd,
                }
            })
            .collect()
    }

    /// The copies of [`Scan::copies_of`] that a process holds: its root,
    /// cwd or an open file is on it. An idle copy is left out: our unmount
    /// takes it along where it is a peer or slave of ours (a systemd
    /// service's namespace, for one), and elsewhere it keeps the overlay
    /// alive without using it.
    pub fn held_copies_of(&self, device: Option<Device>, source: &str) -> Vec<OverlayCopy> {
        let copies = self.copies_of(device, source);
        if copies.is_empty() {
            return copies;
        }
        let devices: Vec<(Device, &str)> = {
            let mut seen: Vec<Device> = Vec::new();
            for (_, o) in self.tagged(source) {
                if device.is_none_or(|d| d == o.device) && !seen.contains(&o.device) {
                    seen.push(o.device);
                }
            }
            seen.into_iter().map(|d| (d, source)).collect()
        };
        let holding: std::collections::BTreeSet<u64> = self
            .holders(&devices)
            .into_iter()
            .filter_map(|h| h.ns)
            .collect();
        copies
            .into_iter()
            .filter(|c| c.is_root || c.is_cwd || holding.contains(&c.ns))
            .collect()
    }

    /// Is the overlay with source tag `source` (and device `device`, given
    /// as `major:minor`, when known) attached in any namespace, ours
    /// included?
    pub fn is_attached(&self, device: Option<&str>, source: &str) -> bool {
        let device = device.and_then(Device::parse);
        self.tagged(source)
            .any(|(_, o)| device.is_none_or(|d| d == o.device))
    }

    /// [`Scan::copies`] of an overlay whose device may be unknown (a mount
    /// that crashed before recording it): then of every overlay with that
    /// source tag.
    pub fn copies_of(&self, device: Option<Device>, source: &str) -> Vec<OverlayCopy> {
        let devices: std::collections::BTreeSet<Device> = match device {
            Some(device) => [device].into(),
            None => self.tagged(source).map(|(_, o)| o.device).collect(),
        };
        devices
            .into_iter()
            .flat_map(|device| self.copies(device, source))
            .collect()
    }

    fn member_mounts(&self, pid: u32) -> MemberMounts {
        let dir = self.proc_root.join(pid.to_string());
        let id = |link: &str| file_mount(&dir.join(link)).map(|(id, _)| id);
        MemberMounts {
            pid,
            root: id("root"),
            cwd: id("cwd"),
        }
    }

    /// The live overlays, in any namespace, whose upperdir or workdir is
    /// `dir` (an absolute, canonical path as the caller sees it, like the
    /// ones overlayfs is given): by path as the overlay's
    /// options name it, and by device and inode (the directory those
    /// options name, resolved from the root of a process in a namespace
    /// where the overlay is attached), since paths differ between
    /// namespaces. One entry per overlay and role.
    pub fn overlays_using(&self, dir: &Path) -> Vec<DirUse> {
        let wanted = std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()));
        self.overlays_using_with(dir, |ns, path| {
            let Some(wanted) = wanted else {
                return false;
            };
            // `/proc/self/fd/N` (how overlays mounted by fd on older kernels
            // name their directories) would resolve to our own fd N here:
            // meaningless after the mount, never compared.
            if path.starts_with("/proc") {
                return false;
            }
            let (Some(process), Ok(relative)) = (&ns.process, path.strip_prefix("/")) else {
                return false;
            };
            let seen = self
                .proc_root
                .join(process.pid.to_string())
                .join("root")
                .join(relative);
            std::fs::metadata(seen).is_ok_and(|m| (m.dev(), m.ino()) == wanted)
        })
    }

    /// [`Scan::overlays_using`] with the identity test given: `same_dir(ns,
    /// path)` says whether `path`, seen from `ns` (through its process),
    /// is the caller's directory. Asked only when the paths differ.
    pub fn overlays_using_with(
        &self,
        dir: &Path,
        mut same_dir: impl FnMut(&Namespace, &Path) -> bool,
    ) -> Vec<DirUse> {
        // Group the copies of each superblock: they share the options.
        let mut groups: BTreeMap<(Device, &str), Vec<(&Namespace, &OverlayMount)>> =
            BTreeMap::new();
        for ns in &self.namespaces {
            if let Ok(table) = &ns.table {
                for overlay in &table.overlays {
                    groups
                        .entry((overlay.device, overlay.source.as_str()))
                        .or_default()
                        .push((ns, overlay));
                }
            }
        }
        let mut found = Vec::new();
        for ((device, source), copies) in groups {
            let first = copies[0].1;
            for (role, used) in [
                (DirRole::Upper, &first.upperdir),
                (DirRole::Work, &first.workdir),
            ] {
                let Some(used) = used else { continue };
                let by_path = used == dir;
                if !by_path && !copies.iter().any(|(ns, _)| same_dir(ns, used)) {
                    continue;
                }
                found.push(DirUse {
                    device,
                    source: source.to_string(),
                    role,
                    dir: used.clone(),
                    by_path,
                    places: copies
                        .iter()
                        .map(|(ns, overlay)| Place {
                            ns: ns.ns,
                            process: ns.process.clone(),
                            mount_id: overlay.mount_id,
                            mount_point: overlay.mount_point.clone(),
                        })
                        .collect(),
                });
            }
        }
        found
    }

    /// What [`find_holders`] looks for to find who holds the overlays
    /// `overlays` (device, source): every copy's mount id, in any
    /// namespace, and the device of each overlay attached somewhere. Only
    /// then: a device number is handed out again once its superblock is
    /// gone, so the device alone could name someone else's overlay.
    pub fn holder_targets(&self, overlays: &[(Device, &str)]) -> HolderTargets {
        let mut targets = HolderTargets::default();
        for ns in &self.namespaces {
            if let Ok(table) = &ns.table {
                for overlay in &table.overlays {
                    let key = (overlay.device, overlay.source.as_str());
                    if overlays.contains(&key) {
                        targets.mount_ids.insert(overlay.mount_id, overlay.device);
                        targets.devices.insert(overlay.device);
                    }
                }
            }
        }
        targets
    }

    /// The processes, in any namespace, whose root, cwd or open files are
    /// on any copy of the overlays `overlays` (device, source): one pass
    /// over `/proc`, whatever the number of overlays and copies. A copy no
    /// table lists (unmounted lazily while a process sat in it) counts too,
    /// by device, while the overlay is attached somewhere.
    pub fn holders(&self, overlays: &[(Device, &str)]) -> Vec<Holder> {
        let ns_of: HashMap<u32, u64> = self
            .namespaces
            .iter()
            .flat_map(|n| n.pids.iter().map(move |&pid| (pid, n.ns)))
            .collect();
        find_holders(
            &self.proc_root,
            &self.holder_targets(overlays),
            &ns_of,
            self.own_pid,
        )
    }
}

/// Reads namespace tables through the configured source, falling back to
/// mountinfo for good once listmount/statmount turn out not to work.
struct TableReader<'a> {
    proc_root: &'a Path,
    source: TableSource,
    text: Vec<u8>,
    ids: Vec<u64>,
    stat_buf: Vec<u8>,
}

impl<'a> TableReader<'a> {
    fn new(proc_root: &'a Path, source: TableSource) -> Self {
        TableReader {
            proc_root,
            source,
            text: Vec::with_capacity(64 * 1024),
            ids: Vec::new(),
            stat_buf: Vec::new(),
        }
    }

    /// Reads the table of namespace `ns` (64-bit id `id`, when the
    /// kernel's list gave it) with members `pids`: through listmount when
    /// asked and possible, else through the first member whose mountinfo
    /// can be read. `None` when the namespace ended since the listing (its
    /// members exited, the kernel no longer knows it): gone, not unknown.
    fn namespace(&mut self, ns: u64, id: Option<u64>, pids: Vec<u32>) -> Option<Namespace> {
        let first_process = |reader: &Self| {
            pids.iter().find_map(|&pid| {
                read_command(reader.proc_root, pid).map(|command| Process { pid, command })
            })
        };
        let mut first_error = None;
        if self.source == TableSource::Listmount {
            match self.listmount_table(id, &pids) {
                Ok(table) => {
                    return Some(Namespace {
                        ns,
                        process: first_process(self),
                        table: Ok(table),
                        source: TableSource::Listmount,
                        pids,
                    });
                }
                Err(err) => {
                    log::debug!("listmount/statmount of mount namespace {ns}: {err}");
                    if matches!(
                        err.raw_os_error().map(Errno::from_raw),
                        Some(
                            Errno::ENOSYS
                                | Errno::EINVAL
                                | Errno::E2BIG
                                | Errno::ENOTTY
                                | Errno::EOPNOTSUPP
                        )
                    ) {
                        self.source = TableSource::Mountinfo;
                    }
                    // ENOENT: ended, or ours to see no more; a member's
                    // mountinfo tells which.
                    if !exited(&err) {
                        first_error = Some(format!(
                            "listmount: {}",
                            crate::base::error::describe_io(&err)
                        ));
                    }
                }
            }
        }
        for &pid in &pids {
            let Some(command) = read_command(self.proc_root, pid) else {
                continue;
            };
            match self.mountinfo_table(pid) {
                Ok(Ok(table)) => {
                    return Some(Namespace {
                        ns,
                        process: Some(Process { pid, command }),
                        table: Ok(table),
                        source: TableSource::Mountinfo,
                        pids,
                    });
                }
                Ok(Err(bad)) => {
                    first_error.get_or_insert(format!("pid {pid}: {bad}"));
                }
                Err(err) if exited(&err) => {}
                Err(err) => {
                    first_error.get_or_insert(format!(
                        "pid {pid}: reading mountinfo: {}",
                        crate::base::error::describe_io(&err)
                    ));
                }
            }
        }
        let error = first_error?;
        Some(Namespace {
            ns,
            process: first_process(self),
            table: Err(error),
            source: self.source,
            pids,
        })
    }

    /// `/proc/<pid>/mountinfo` read (the outer error) and parsed (the inner).
    fn mountinfo_table(&mut self, pid: u32) -> io::Result<Result<Table, String>> {
        use std::io::Read;
        let path = self.proc_root.join(pid.to_string()).join("mountinfo");
        self.text.clear();
        std::fs::File::open(path)?.read_to_end(&mut self.text)?;
        Ok(parse_table(&self.text))
    }

    /// The 64-bit id of a namespace the kernel's list did not give: asked
    /// through a member's namespace file.
    fn namespace_id_of(&self, pids: &[u32]) -> io::Result<u64> {
        let mut last = io::Error::from(Errno::ESRCH);
        for pid in pids {
            let path = self.proc_root.join(pid.to_string()).join("ns/mnt");
            match std::fs::File::open(path) {
                Ok(file) => return sys::mount_namespace_id(file.as_fd()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The namespace's table from listmount(2) and statmount(2): a small
    /// statmount of every mount, then the strings of the overlays and
    /// idmapped mounts only.
    fn listmount_table(&mut self, id: Option<u64>, pids: &[u32]) -> io::Result<Table> {
        let ns_id = match id {
            Some(id) => id,
            None => self.namespace_id_of(pids)?,
        };
        sys::list_mounts_in(ns_id, &mut self.ids)?;
        let mut table = Table::default();
        const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
        let basic = sys::STATMOUNT_SB_BASIC | sys::STATMOUNT_MNT_BASIC;
        let strings = sys::STATMOUNT_MNT_POINT | sys::STATMOUNT_SB_SOURCE;
        for &id in &self.ids {
            let st = match sys::statmount_in(ns_id, id, basic, &mut self.stat_buf) {
                Ok(st) => st,
                // Unmounted since the listing.
                Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => continue,
                Err(e) => return Err(e),
            };
            let is_overlay = st.sb_magic == OVERLAYFS_SUPER_MAGIC;
            let is_idmapped = st.mnt_attr & sys::MOUNT_ATTR_IDMAP != 0;
            if !is_overlay && !is_idmapped {
                continue;
            }
            let mut mask = basic | strings;
            if is_overlay {
                mask |= sys::STATMOUNT_MNT_OPTS;
            }
            if is_idmapped {
                mask |= sys::STATMOUNT_MNT_ROOT | sys::STATMOUNT_FS_TYPE;
            }
            let st = match sys::statmount_in(ns_id, id, mask, &mut self.stat_buf) {
                Ok(st) => st,
                Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => continue,
                Err(e) => return Err(e),
            };
            if st.mask & mask != mask {
                // A kernel without the source string (before 6.13) or the
                // options (before 6.10): mountinfo has them. An overlay
                // always has options (at least its lower layers).
                return Err(io::Error::from(Errno::EOPNOTSUPP));
            }
            let device = Device {
                major: st.dev_major,
                minor: st.dev_minor,
            };
            let source = String::from_utf8_lossy(&st.sb_source.unwrap_or_default()).into_owned();
            let mount_point = bytes_to_path(st.mnt_point.unwrap_or_default());
            if is_idmapped {
                table.idmapped.push(IdmappedMount {
                    mount_id: st.mount_id.into(),
                    parent_id: st.parent_id.into(),
                    device,
                    root: bytes_to_path(st.mnt_root.unwrap_or_default()),
                    mount_point: mount_point.clone(),
                    fs_type: String::from_utf8_lossy(&st.fs_type.unwrap_or_default()).into_owned(),
                    source: source.clone(),
                });
            }
            if is_overlay {
                let (upperdir, workdir) = overlay_dirs(&st.mnt_opts.unwrap_or_default());
                table.overlays.push(OverlayMount {
                    mount_id: st.mount_id.into(),
                    parent_id: st.parent_id.into(),
                    device,
                    mount_point,
                    source,
                    upperdir,
                    workdir,
                });
            }
        }
        Ok(table)
    }
}

/// Where one copy is attached in its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub mount_id: u64,
    pub mount_point: PathBuf,
}

/// The overlay attached in another mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayCopy {
    /// The namespace's nsfs inode.
    pub ns: u64,
    /// A process there: one whose root, else cwd, is on the overlay when
    /// there is one. `None` for a namespace without processes.
    pub process: Option<Process>,
    /// Usually one; more when it was bind-mounted there too.
    pub mounts: Vec<Attachment>,
    /// Whether the overlay is that process's root directory or its cwd.
    pub is_root: bool,
    pub is_cwd: bool,
}

/// The mounts a process's root and cwd lie on (statx mount ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberMounts {
    pub pid: u32,
    pub root: Option<u64>,
    pub cwd: Option<u64>,
}

/// The member to name for a copy: the first whose root is on one of
/// `mount_ids`, else the first whose cwd is; with its (root, cwd) flags.
/// Stops at the first root: runtimes pivot the container's first process
/// into the overlay.
pub fn choose_member(
    members: impl IntoIterator<Item = MemberMounts>,
    mount_ids: &[u64],
) -> Option<(u32, bool, bool)> {
    let on = |id: Option<u64>| id.is_some_and(|id| mount_ids.contains(&id));
    let mut by_cwd = None;
    for m in members {
        let (root, cwd) = (on(m.root), on(m.cwd));
        if root {
            return Some((m.pid, true, cwd));
        }
        if cwd && by_cwd.is_none() {
            by_cwd = Some((m.pid, false, true));
        }
    }
    by_cwd
}

/// Whether an overlay's directory is its upperdir or its workdir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirRole {
    Upper,
    Work,
}

impl fmt::Display for DirRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DirRole::Upper => "upperdir",
            DirRole::Work => "workdir",
        })
    }
}

/// A live overlay that uses a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirUse {
    pub device: Device,
    pub source: String,
    pub role: DirRole,
    /// The directory as the overlay's options name it.
    pub dir: PathBuf,
    /// Whether the path matched; false when only device and inode did.
    pub by_path: bool,
    /// Every namespace where it is attached.
    pub places: Vec<Place>,
}

/// One namespace where an overlay is attached, and a process there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub ns: u64,
    /// The namespace's process, if it has any.
    pub process: Option<Process>,
    pub mount_id: u64,
    pub mount_point: PathBuf,
}

/// How a process holds a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    Root,
    Cwd,
    Fd(u32),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Root => f.write_str("root"),
            Via::Cwd => f.write_str("cwd"),
            Via::Fd(n) => write!(f, "fd {n}"),
        }
    }
}

/// A process that holds a copy of an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// Its mount namespace, when the scan saw the process.
    pub ns: Option<u64>,
    pub via: Via,
    /// The overlay held.
    pub device: Device,
    /// The mount the file lies on (a copy's id; 0 if known only by device).
    pub mount_id: u64,
}

impl Holder {
    /// The same, in the form `holders::describe_holders` shows.
    pub fn to_unmount_holder(&self) -> crate::kernel::holders::Holder {
        crate::kernel::holders::Holder {
            pid: self.pid,
            command: self.command.clone(),
            via: self.via.to_string(),
        }
    }
}

/// What to look for in a holder scan: the mount ids of every copy (mount
/// ids are global: the same number in statx and in any namespace's
/// mountinfo) and the overlays' devices (for a copy no table lists, such as
/// one lazily unmounted while a process still sits in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderTargets {
    pub mount_ids: HashMap<u64, Device>,
    pub devices: HashSet<Device>,
}

impl HolderTargets {
    /// The overlay a file on mount `mount_id`, device `device`, lies on.
    /// By mount id first: a non-directory on an overlay may report its
    /// layer's device. A device alone is enough for directories, whose
    /// device is always the overlay's.
    pub fn matches(&self, mount_id: u64, device: Device) -> Option<Device> {
        if let Some(&d) = self.mount_ids.get(&mount_id) {
            return Some(d);
        }
        self.devices.contains(&device).then_some(device)
    }

    pub fn is_empty(&self) -> bool {
        self.mount_ids.is_empty() && self.devices.is_empty()
    }
}

/// The mount id and device of what `path` leads to (following the
/// `/proc` magic links).
fn file_mount(path: &Path) -> Option<(u64, Device)> {
    let st = statx(CWD, path, AtFlags::empty(), StatxFlags::MNT_ID).ok()?;
    Some((
        st.stx_mnt_id,
        Device {
            major: st.stx_dev_major,
            minor: st.stx_dev_minor,
        },
    ))
}

/// One pass over `proc_root`: the processes whose root, cwd or open fds are
/// on `targets`. `ns_of` gives each process's namespace (from a scan);
/// `skip_pid` is the caller itself.
pub fn find_holders(
    proc_root: &Path,
    targets: &HolderTargets,
    ns_of: &HashMap<u32, u64>,
    skip_pid: Option<u32>,
) -> Vec<Holder> {
    let mut found = Vec::new();
    if targets.is_empty() {
        return found;
    }
    let Ok(pids) = numeric_entries(proc_root) else {
        return found;
    };
    for pid in pids {
        if Some(pid) == skip_pid {
            continue;
        }
        let dir = proc_root.join(pid.to_string());
        let mut held = Vec::new();
        for (link, via) in [("root", Via::Root), ("cwd", Via::Cwd)] {
            if let Some((id, dev)) = file_mount(&dir.join(link))
                && let Some(device) = targets.matches(id, dev)
            {
                held.push((via, device, id));
            }
        }
        if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                let Some(n) = fd.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some((id, dev)) = file_mount(&fd.path())
                    && let Some(device) = targets.matches(id, dev)
                {
                    held.push((Via::Fd(n), device, id));
                }
            }
        }
        if held.is_empty() {
            continue;
        }
        held.sort_by_key(|(via, _, _)| *via);
        let command = read_command(proc_root, pid).unwrap_or_default();
        for (via, device, id) in held {
            found.push(Holder {
                pid,
                command: command.clone(),
                ns: ns_of.get(&pid).copied(),
                via,
                device,
                mount_id: if targets.mount_ids.contains_key(&id) {
                    id
                } else {
                    0
                },
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// A container's table as a chrooted process sees it, with the fields
    /// the kernel escapes, two optional fields, and an idmapped layer.
    const TABLE: &[u8] = b"\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 27 0:50 / /mnt/with\\040space rw,relatime shared:7 master:3 - overlay idmap-overlay:abc rw,lowerdir=/l2:/l1,upperdir=/var/u\\040p\\134\\054x\\075y,workdir=/var/w,uuid=on
81 80 0:51 / /mnt/with\\040space/tmp rw,relatime - tmpfs tmpfs rw
90 27 254:0 /var/lib/layers /run/idmap-overlay/tmp/x/0 ro,relatime,idmapped master:3 - ext4 /dev/vda rw
91 27 0:52 / /ro rw,relatime - overlay other\\040tool ro,lowerdir=/a:/b
";

    #[test]
    fn parses_overlays_and_idmapped_mounts() {
        let t = parse_table(TABLE).unwrap();
        assert_eq!(t.overlays.len(), 2);
        let o = &t.overlays[0];
        assert_eq!((o.mount_id, o.parent_id), (80, 27));
        assert_eq!(
            o.device,
            Device {
                major: 0,
                minor: 50
            }
        );
        assert_eq!(o.mount_point, Path::new("/mnt/with space"));
        assert_eq!(o.source, "idmap-overlay:abc");
        // Octal escapes first, then overlayfs's backslash: `\,` is a comma.
        assert_eq!(o.upperdir.as_deref(), Some(Path::new("/var/u p,x=y")));
        assert_eq!(o.workdir.as_deref(), Some(Path::new("/var/w")));
        let ro = &t.overlays[1];
        assert_eq!(ro.source, "other tool");
        assert_eq!((ro.upperdir.as_ref(), ro.workdir.as_ref()), (None, None));
        assert_eq!(t.idmapped.len(), 1);
        let i = &t.idmapped[0];
        assert_eq!(i.mount_id, 90);
        assert_eq!(i.root, Path::new("/var/lib/layers"));
        assert_eq!(i.mount_point, Path::new("/run/idmap-overlay/tmp/x/0"));
        assert_eq!(
            (i.fs_type.as_str(), i.source.as_str()),
            ("ext4", "/dev/vda")
        );
        assert_eq!(
            i.device,
            Device {
                major: 254,
                minor: 0
            }
        );
    }

    #[test]
    fn keeps_paths_raw() {
        // Bytes that are not UTF-8 and a newline survive as they are.
        let line = b"5 1 0:9 / /m\xff\\012n rw - overlay s\\011t rw,upperdir=/u\xfe,workdir=/w\n";
        let t = parse_table(line).unwrap();
        let o = &t.overlays[0];
        assert_eq!(o.mount_point.as_os_str().as_bytes(), b"/m\xff\nn");
        assert_eq!(
            o.upperdir.as_ref().unwrap().as_os_str().as_bytes(),
            b"/u\xfe"
        );
        assert_eq!(o.source, "s\tt");
    }

    #[test]
    fn unescapes_like_the_kernel() {
        assert_eq!(unescape_octal(b"a\\040b\\134c\\011"), b"a b\\c\t");
        // Not an escape: too short, or not octal.
        assert_eq!(unescape_octal(b"a\\04"), b"a\\04");
        assert_eq!(unescape_octal(b"a\\089"), b"a\\089");
        assert_eq!(unescape_overlay(b"a\\,b\\\\c\\"), b"a,b\\c");
        let (upper, work) = overlay_dirs(b"rw,upperdir=/a\\134\\134b,workdir=/w\\054");
        assert_eq!(upper.unwrap(), Path::new("/a\\b"));
        assert_eq!(work.unwrap(), Path::new("/w,"));
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            &b"1 2 3"[..],
            b"27 1 254:0 / / rw shared:1 ext4 /dev/vda rw",
            b"x 1 0:5 / / rw - overlay s rw",
            b"5 1 0x5 / / rw - overlay s rw",
            b"5 1 0:5 / / rw - overlay",
        ] {
            assert!(
                parse_table(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A malformed line of a kind we skip is still an error only if its
        // shape is broken; well-formed others are skipped.
        assert_eq!(
            parse_table(b"5 1 0:5 / / rw - ext4 s rw\n").unwrap(),
            Table::default()
        );
    }

    #[test]
    fn devices() {
        let d = Device::parse("259:70000").unwrap();
        assert_eq!(d.to_string(), "259:70000");
        assert_eq!(Device::from_dev_t(nix::sys::stat::makedev(259, 70000)), d);
        assert_eq!(
            Device::from_dev_t(nix::sys::stat::makedev(4100, 3)),
            Device {
                major: 4100,
                minor: 3
            }
        );
        for bad in ["", "1", "1:", ":2", "a:b", "1:2:3"] {
            assert_eq!(Device::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn groups_processes_by_namespace() {
        let groups = group_by_namespace(&[(30, 7), (1, 5), (12, 7), (2, 5)]);
        assert_eq!(
            groups.into_iter().collect::<Vec<_>>(),
            vec![(5, vec![1, 2]), (7, vec![12, 30])]
        );
    }

    #[test]
    fn chooses_the_process_whose_root_is_the_overlay() {
        let m = |pid, root, cwd| MemberMounts { pid, root, cwd };
        let members = [
            m(1, Some(9), Some(80)),
            m(2, Some(80), Some(9)),
            m(3, Some(80), Some(80)),
        ];
        assert_eq!(choose_member(members, &[80]), Some((2, true, false)));
        assert_eq!(choose_member(members, &[9]), Some((1, true, false)));
        assert_eq!(
            choose_member([m(1, None, Some(80))], &[80]),
            Some((1, false, true))
        );
        assert_eq!(choose_member(members, &[81]), None);
        assert_eq!(choose_member([m(1, None, None)], &[80]), None);
    }

    fn overlay(id: u64, device: Device, source: &str, mp: &str, upper: &str) -> OverlayMount {
        OverlayMount {
            mount_id: id,
            parent_id: 1,
            device,
            mount_point: mp.into(),
            source: source.into(),
            upperdir: Some(upper.into()),
            workdir: Some(format!("{upper}.work").into()),
        }
    }

    fn ns(ns: u64, pids: &[u32], overlays: Vec<OverlayMount>) -> Namespace {
        Namespace {
            ns,
            pids: pids.to_vec(),
            process: pids.first().map(|&pid| Process {
                pid,
                command: format!("cmd{ns}"),
            }),
            table: Ok(Table {
                overlays,
                idmapped: Vec::new(),
            }),
            source: TableSource::Mountinfo,
        }
    }

    const OURS: Device = Device {
        major: 0,
        minor: 60,
    };
    const OTHER: Device = Device {
        major: 0,
        minor: 61,
    };

    /// Our overlay attached here (ns 1) and in two containers (ns 2 with two
    /// attachments, ns 3), a foreign overlay reusing our source text on
    /// another device (ns 4), a namespace that could not be read (5), and
    /// one with no process that holds our overlay too (6).
    fn fixture_scan(proc_root: &Path) -> Scan {
        let tag = "idmap-overlay:abc";
        let mut broken = ns(5, &[50], Vec::new());
        broken.table = Err("pid 50: reading mountinfo: permission denied".into());
        Scan::from_parts(
            proc_root,
            Some(1),
            None,
            vec![
                ns(3, &[30], vec![overlay(300, OURS, tag, "/", "/var/u")]),
                ns(
                    1,
                    &[1, 2],
                    vec![overlay(100, OURS, tag, "/mnt/c", "/var/u")],
                ),
                ns(
                    2,
                    &[20, 21],
                    vec![
                        overlay(200, OURS, tag, "/a", "/var/u"),
                        overlay(201, OURS, tag, "/b", "/var/u"),
                    ],
                ),
                ns(4, &[40], vec![overlay(400, OTHER, tag, "/x", "/srv/u")]),
                broken,
                ns(6, &[], vec![overlay(600, OURS, tag, "/held", "/var/u")]),
            ],
        )
    }

    #[test]
    fn finds_copies_by_device_and_source_in_other_namespaces() {
        // No /proc there: no process is found on the overlay, so each copy
        // names the namespace's representative, flags false.
        let nowhere = tempfile::tempdir().unwrap();
        let scan = fixture_scan(nowhere.path());
        let copies = scan.copies(OURS, "idmap-overlay:abc");
        assert_eq!(copies.len(), 3);
        let cmd2 = Process {
            pid: 20,
            command: "cmd2".into(),
        };
        assert_eq!((copies[0].ns, copies[0].process.as_ref()), (2, Some(&cmd2)));
        assert_eq!(
            copies[0].mounts,
            vec![
                Attachment {
                    mount_id: 200,
                    mount_point: "/a".into()
                },
                Attachment {
                    mount_id: 201,
                    mount_point: "/b".into()
                },
            ]
        );
        assert!(!copies[0].is_root && !copies[0].is_cwd);
        assert_eq!((copies[1].ns, copies[1].mounts[0].mount_id), (3, 300));
        assert_eq!((copies[2].ns, copies[2].process.as_ref()), (6, None));
        assert!(scan.copies(OURS, "idmap-overlay:abd").is_empty());
        assert!(
            scan.copies(
                Device {
                    major: 0,
                    minor: 62
                },
                "idmap-overlay:abc"
            )
            .is_empty()
        );
        assert_eq!(scan.attached(OURS, "idmap-overlay:abc").len(), 5);
        assert_eq!(scan.attached(OTHER, "idmap-overlay:abc").len(), 1);
        assert_eq!(scan.unreadable().map(|n| n.ns).collect::<Vec<_>>(), vec![5]);
        assert_eq!(scan.namespace(4).unwrap().process.as_ref().unwrap().pid, 40);
        assert!(scan.namespace(7).is_none());
    }

    #[test]
    fn finds_overlays_using_a_directory() {
        let nowhere = tempfile::tempdir().unwrap();
        let scan = fixture_scan(nowhere.path());
        // By path: our overlay, once, with its five attachments.
        let uses = scan.overlays_using_with(Path::new("/var/u"), |_, _| false);
        assert_eq!(uses.len(), 1);
        assert_eq!(
            (uses[0].device, uses[0].role, uses[0].by_path),
            (OURS, DirRole::Upper, true)
        );
        let places: Vec<(u64, u64)> = uses[0].places.iter().map(|p| (p.ns, p.mount_id)).collect();
        assert_eq!(
            places,
            vec![(1, 100), (2, 200), (2, 201), (3, 300), (6, 600)]
        );
        assert_eq!(uses[0].places[4].process, None);
        let work = scan.overlays_using_with(Path::new("/var/u.work/"), |_, _| false);
        assert_eq!((work.len(), work[0].role), (1, DirRole::Work));
        // By identity: the caller names /srv/u differently; only the
        // overlay whose directory resolves to it matches.
        let mut asked = Vec::new();
        let uses = scan.overlays_using_with(Path::new("/host/srv/u"), |ns, path| {
            asked.push((ns.ns, path.to_path_buf()));
            path == Path::new("/srv/u")
        });
        assert_eq!(uses.len(), 1);
        assert_eq!((uses[0].device, uses[0].by_path), (OTHER, false));
        assert_eq!(uses[0].dir, Path::new("/srv/u"));
        assert!(asked.contains(&(4, PathBuf::from("/srv/u"))));
        assert!(
            scan.overlays_using_with(Path::new("/elsewhere"), |_, _| false)
                .is_empty()
        );
    }

    #[test]
    fn holder_targets_cover_every_copy() {
        let nowhere = tempfile::tempdir().unwrap();
        let scan = fixture_scan(nowhere.path());
        let t = scan.holder_targets(&[(OURS, "idmap-overlay:abc")]);
        let mut ids: Vec<u64> = t.mount_ids.keys().copied().collect();
        ids.sort();
        assert_eq!(ids, vec![100, 200, 201, 300, 600]);
        assert_eq!(t.matches(201, Device { major: 8, minor: 1 }), Some(OURS));
        assert_eq!(t.matches(999, OURS), Some(OURS));
        assert_eq!(t.matches(400, OTHER), None);
        assert!(scan.holder_targets(&[]).is_empty());
        // A device whose overlay (by source) is attached nowhere names no
        // one: the number may belong to another overlay by now.
        assert!(
            scan.holder_targets(&[(OURS, "idmap-overlay:gone")])
                .is_empty()
        );
        assert!(scan.holder_targets(&[(OTHER, "other")]).is_empty());
    }

    /// A fixture /proc: pids 1 and 2 share a namespace, 3 has its own, 4 exited (no ns file), 5 shares 3's, 6 alone
    /// has a table that cannot be read, 7's namespace cannot be read, 8
    /// alone exited after its namespace was seen.
    fn fixture_proc() -> (tempfile::TempDir, [u64; 3]) {
        let root = tempfile::tempdir().unwrap();
        let p = |pid: u32| root.path().join(pid.to_string());
        for pid in 1..=6 {
            std::fs::create_dir_all(p(pid).join("ns")).unwrap();
            std::fs::write(p(pid).join("comm"), format!("proc{pid}\n")).unwrap();
        }
        std::fs::create_dir(root.path().join("self")).unwrap();
        std::fs::create_dir(p(7)).unwrap();
        std::fs::write(p(7).join("ns"), "not a directory").unwrap();
        // As the kernel shows them: links whose text names the namespace.
        let link = |pid: u32, ns: u64| {
            std::os::unix::fs::symlink(format!("mnt:[{ns}]"), p(pid).join("ns/mnt")).unwrap()
        };
        for (pid, ns) in [(1, 4001), (2, 4001), (3, 4003), (5, 4003), (6, 4006)] {
            link(pid, ns);
        }
        std::fs::create_dir(p(6).join("mountinfo")).unwrap();
        std::fs::create_dir_all(p(8).join("ns")).unwrap();
        link(8, 4008);
        std::fs::write(p(1).join("mountinfo"), TABLE).unwrap();
        std::fs::write(p(2).join("mountinfo"), TABLE).unwrap();
        std::fs::write(
            p(3).join("mountinfo"),
            "7 1 0:70 / / rw - overlay idmap-overlay:abc rw,upperdir=/u,workdir=/w\n",
        )
        .unwrap();
        (root, [4001, 4003, 4006])
    }

    #[test]
    fn scans_a_proc_tree() {
        let (root, [a, b, c]) = fixture_proc();
        // Make pid 3's table unreadable: pid 5 of the same namespace serves.
        std::fs::rename(
            root.path().join("3/mountinfo"),
            root.path().join("5/mountinfo"),
        )
        .unwrap();
        let scan = Scan::read(root.path(), Some(a), None, TableSource::Mountinfo).unwrap();
        let summary: Vec<(u64, Vec<u32>, u32, &str, usize)> = scan
            .namespaces
            .iter()
            .map(|n| {
                let overlays = n.table.as_ref().map(|t| t.overlays.len()).unwrap_or(99);
                let p = n.process.as_ref().unwrap();
                (n.ns, n.pids.clone(), p.pid, p.command.as_str(), overlays)
            })
            .collect();
        let mut expected = vec![
            (a, vec![1, 2], 1, "proc1", 2),
            (b, vec![3, 5], 5, "proc5", 1),
            (c, vec![6], 6, "proc6", 99),
        ];
        expected.sort();
        assert_eq!(summary, expected);
        let broken = scan.namespace(c).unwrap().table.as_ref().unwrap_err();
        assert!(broken.contains("pid 6"), "{broken}");
        assert_eq!(scan.uninspected.len(), 1);
        assert_eq!(scan.uninspected[0].0, 7);
        // Seen from a, the container b holds a copy; from b, a holds none
        // (device 0:50 is not 0:70).
        let copies = scan.copies(
            Device {
                major: 0,
                minor: 70,
            },
            "idmap-overlay:abc",
        );
        assert_eq!(
            copies
                .iter()
                .map(|c| (c.ns, c.process.as_ref().map(|p| p.pid)))
                .collect::<Vec<_>>(),
            vec![(b, Some(5))]
        );
    }

    #[test]
    fn finds_holders_by_mount_id_or_device() {
        let (root, _) = fixture_proc();
        let held = tempfile::tempdir().unwrap();
        let (mount_id, device) = file_mount(held.path()).unwrap();
        let p = |pid: u32| root.path().join(pid.to_string());
        std::os::unix::fs::symlink(held.path(), p(1).join("cwd")).unwrap();
        std::os::unix::fs::symlink("/proc", p(1).join("root")).unwrap();
        std::fs::create_dir(p(2).join("fd")).unwrap();
        std::fs::write(held.path().join("f"), "").unwrap();
        std::os::unix::fs::symlink(held.path().join("f"), p(2).join("fd/7")).unwrap();
        std::os::unix::fs::symlink("/proc", p(2).join("fd/8")).unwrap();
        std::os::unix::fs::symlink(held.path(), p(3).join("root")).unwrap();
        let ns_of = HashMap::from([(1, 11), (2, 11)]);

        let by_id = HolderTargets {
            mount_ids: HashMap::from([(mount_id, OURS)]),
            devices: HashSet::new(),
        };
        let found = find_holders(root.path(), &by_id, &ns_of, Some(3));
        let summary: Vec<_> = found
            .iter()
            .map(|h| (h.pid, h.command.as_str(), h.ns, h.via, h.device, h.mount_id))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "proc1", Some(11), Via::Cwd, OURS, mount_id),
                (2, "proc2", Some(11), Via::Fd(7), OURS, mount_id),
            ]
        );
        assert_eq!(
            found[1].to_unmount_holder().to_string(),
            "pid 2 (proc2) through its fd 7"
        );

        // By device alone (a copy no table lists): the same, mount id 0;
        // pid 3 now counts, and is in no namespace the scan saw.
        let by_device = HolderTargets {
            mount_ids: HashMap::new(),
            devices: HashSet::from([device]),
        };
        let found = find_holders(root.path(), &by_device, &ns_of, None);
        let summary: Vec<_> = found
            .iter()
            .map(|h| (h.pid, h.ns, h.via, h.mount_id))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, Some(11), Via::Cwd, 0),
                (2, Some(11), Via::Fd(7), 0),
                (3, None, Via::Root, 0),
            ]
        );
        assert!(find_holders(root.path(), &HolderTargets::default(), &ns_of, None).is_empty());
    }

    #[test]
    fn merges_the_kernels_namespace_list() {
        let found = vec![(5, None, vec![1, 2]), (9, None, vec![30])];
        let merged = merge_namespace_lists(found, &[(9, 900), (7, 700), (5, 500)]);
        assert_eq!(
            merged,
            vec![
                (5, Some(500), vec![1, 2]),
                (7, Some(700), vec![]),
                (9, Some(900), vec![30]),
            ]
        );
        // A namespace the kernel did not list keeps no id.
        let merged = merge_namespace_lists(vec![(5, None, vec![1])], &[]);
        assert_eq!(merged, vec![(5, None, vec![1])]);
    }

    #[test]
    fn current_namespace_is_ours() {
        let ours = current_namespace().unwrap();
        assert_eq!(
            ours,
            namespace_id(Path::new("/proc/thread-self/ns/mnt")).unwrap()
        );
        assert_ne!(ours, 0);
    }
}
