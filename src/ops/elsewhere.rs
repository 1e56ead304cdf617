//! Where an overlay of ours lives besides this mount namespace: in a
//! container that pivoted into it, in a namespace somebody copied while it
//! was mounted, in a detached mount an fd holds.
//!
//! Whether it lives on is the kernel's answer ([`ask_kernel`]): a watch on
//! the superblock across our unmount, or for an overlay that is not here
//! any more, whether its upperdir is still in use. Neither grows with the
//! host, and neither reads a string anyone else wrote.
//!
//! Where it lives, and who uses it, is [`find_copies`]: one walk over the
//! mount namespaces and one over the processes, matching the overlay's
//! superblock device (never a source tag or option text), bounded by a
//! deadline. It only names things for a person, with one exception: a
//! read-only overlay has no upperdir for the kernel to be asked about, so
//! for it the walk decides, and only a complete walk that found nothing
//! counts as "gone".

use crate::base::cancel::Deadline;
use crate::kernel::holders::{self, Holder, Targets, Via};
use crate::kernel::in_use::{DirUse, Prober};
use crate::kernel::mount_table::{self, Device};
use crate::kernel::namespaces;
use crate::state::Record;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Whether a recorded overlay that is not mounted here lives on elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beyond {
    /// Nothing of it is left anywhere.
    Gone,
    /// It lives on outside this mount namespace; how that is known.
    Alive(String),
    /// It cannot be told; why. Counted as alive: no record is ever dropped
    /// because something could not be asked or read.
    Unknown(String),
}

impl Beyond {
    /// Alive, or perhaps alive.
    pub fn may_live(&self) -> bool {
        !matches!(self, Beyond::Gone)
    }
}

/// The kernel's answer for the overlay of `record`, which is not mounted
/// in this namespace: is its upperdir still in use (overlayfs marks it
/// while the superblock lives, in every namespace)? The upperdir is
/// resolved safely and must be the very directory that was mounted. A
/// read-only overlay has no upperdir: `Unknown`, for [`find_copies`] to
/// settle.
pub fn ask_kernel(record: &Record, prober: &mut Prober) -> Beyond {
    let Some(upper) = &record.upperdir else {
        return Beyond::Unknown("a read-only overlay has no upperdir to ask about".into());
    };
    let dir = match crate::kernel::resolve::resolve_dir(upper) {
        Ok(dir) => dir,
        Err(e) => return Beyond::Unknown(format!("its upperdir cannot be asked about: {e}")),
    };
    if let Some(recorded) = &record.upperdir_file
        && *recorded != crate::state::format_file_id(dir.meta.file_id())
    {
        return Beyond::Unknown(format!(
            "{} is no longer the directory that was mounted (renamed or replaced)",
            upper.display()
        ));
    }
    match prober.dir_in_use(std::os::fd::AsFd::as_fd(&dir.fd)) {
        DirUse::InUse => Beyond::Alive(format!(
            "the kernel says its upperdir {} is still in use",
            upper.display()
        )),
        DirUse::Free => Beyond::Gone,
        DirUse::Unknown(why) => Beyond::Unknown(format!(
            "the kernel could not be asked about its upperdir {}: {why}",
            upper.display()
        )),
    }
}

/// A process in another namespace that uses a copy, or is in a namespace
/// that holds one: what a person is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Elsewhere {
    /// A process there: one whose root, cwd or an open file is on the
    /// overlay when there is one, else any member. None for a namespace
    /// kept alive by a namespace file or an fd only.
    pub pid: Option<u32>,
    pub command: Option<String>,
    /// The namespace's nsfs inode, when known (a process holding a
    /// detached copy through an fd is named with its own namespace).
    pub mount_ns: Option<u64>,
    /// The overlay is that process's root directory (a runtime pivoted into
    /// it), its working directory, or one of its open files.
    pub root: bool,
    pub cwd: bool,
    pub fd: bool,
    /// The numbers of those open files (its fds), lowest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fds: Vec<u32>,
}

impl Elsewhere {
    /// A process uses the copy (root, cwd, an open file), which keeps
    /// `umount` waiting; an idle copy does not.
    pub fn used(&self) -> bool {
        self.root || self.cwd || self.fd
    }
}

impl fmt::Display for Elsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(command)) => write!(f, "pid {pid} ({command})")?,
            (Some(pid), None) => write!(f, "pid {pid}")?,
            _ => write!(
                f,
                "mount namespace {} (no process; kept by a namespace file or fd)",
                self.mount_ns.map_or("?".into(), |n| n.to_string())
            )?,
        }
        if let (Some(ns), Some(_)) = (self.mount_ns, self.pid) {
            write!(f, " in mount namespace {ns}")?;
        }
        match (self.root, self.cwd, self.fd) {
            (true, ..) => f.write_str(", the overlay is its root"),
            (false, true, _) => f.write_str(", the overlay is its cwd"),
            (false, false, true) => {
                f.write_str(", it has a file open on the overlay")?;
                match self.fds.as_slice() {
                    [] => Ok(()),
                    [one] => write!(f, " (fd {one})"),
                    [first, second] => write!(f, " (fds {first}, {second})"),
                    [first, second, rest @ ..] => {
                        write!(f, " (fds {first}, {second} and {} more)", rest.len())
                    }
                }
            }
            _ => f.write_str(", not using it"),
        }
    }
}

/// What [`find_copies`] found.
#[derive(Debug, Clone, Default)]
pub struct Copies {
    /// Per device asked about: where it is attached outside our namespace
    /// (namespace, mount id, mount point).
    pub places: BTreeMap<Device, Vec<(u64, u64, PathBuf)>>,
    /// The source of each place's mount, by mount id, where the kernel
    /// reported one.
    pub sources: BTreeMap<u64, String>,
    /// Processes anywhere whose root, cwd or files are on those mounts.
    pub holders: Vec<Holder>,
    /// The namespaces whose mounts could not be read, and why.
    pub unread: Vec<String>,
    /// How many namespaces were read.
    pub read: usize,
    /// False when the deadline or a cancel cut the walks short.
    pub complete: bool,
    /// A process of each namespace that holds a copy.
    members: BTreeMap<u64, (u32, String)>,
}

impl Copies {
    fn holders_of(&self, device: Device) -> impl Iterator<Item = &Holder> {
        let ids: HashSet<u64> = self
            .places
            .get(&device)
            .into_iter()
            .flatten()
            .map(|(_, id, _)| *id)
            .collect();
        self.holders
            .iter()
            .filter(move |h| ids.contains(&h.mount_id) || h.device == device)
    }

    /// For a read-only overlay, where the walk decides: found, or a
    /// complete walk that read every namespace and found nothing. Its
    /// superblock is gone from here, so its device may have been handed to
    /// another one: a place counts only where its source is `tag`, or is
    /// not reported (an empty source, an older kernel), and a process only
    /// when it holds such a place. No user can choose a device number, so
    /// a forged tag cannot make a copy of somebody else's count.
    pub fn beyond(&self, device: Device, tag: &str) -> Beyond {
        let ours: HashSet<u64> = self
            .places
            .get(&device)
            .into_iter()
            .flatten()
            .filter(|(_, id, _)| self.sources.get(id).is_none_or(|s| s == tag))
            .map(|(_, id, _)| *id)
            .collect();
        let used = self.holders.iter().any(|h| ours.contains(&h.mount_id));
        if !ours.is_empty() || used {
            Beyond::Alive("a copy was found in another mount namespace".into())
        } else if !self.unread.is_empty() {
            Beyond::Unknown(format!(
                "mount namespaces not read: {}",
                summarize(&self.unread)
            ))
        } else if !self.complete {
            Beyond::Unknown(
                "the mount namespaces could not all be read before the time was up".into(),
            )
        } else {
            Beyond::Gone
        }
    }

    /// One entry per namespace holding a copy of `device`, and per
    /// process using one from elsewhere; users of the overlay first.
    pub fn elsewhere(&self, device: Device) -> Vec<Elsewhere> {
        let mut by_ns: BTreeMap<Option<u64>, Elsewhere> = BTreeMap::new();
        for (ns, _, _) in self.places.get(&device).into_iter().flatten() {
            let member = self.members.get(ns);
            by_ns.entry(Some(*ns)).or_insert_with(|| Elsewhere {
                pid: member.map(|m| m.0),
                command: member.map(|m| m.1.clone()),
                mount_ns: Some(*ns),
                root: false,
                cwd: false,
                fd: false,
                fds: Vec::new(),
            });
        }
        for holder in self.holders_of(device) {
            let entry = by_ns.entry(holder.ns).or_insert_with(|| Elsewhere {
                pid: Some(holder.pid),
                command: Some(holder.command.clone()),
                mount_ns: holder.ns,
                root: false,
                cwd: false,
                fd: false,
                fds: Vec::new(),
            });
            // Name the process that uses it, the one that pivoted into it
            // before one that only has a file open.
            let rank = |e: &Elsewhere| (e.root, e.cwd, e.fd);
            let mine = Elsewhere {
                pid: Some(holder.pid),
                command: Some(holder.command.clone()),
                mount_ns: holder.ns,
                root: holder.via == Via::Root,
                cwd: holder.via == Via::Cwd,
                fd: matches!(holder.via, Via::Fd(_)),
                fds: match holder.via {
                    Via::Fd(n) => vec![n],
                    _ => Vec::new(),
                },
            };
            if entry.pid == mine.pid {
                entry.root |= mine.root;
                entry.cwd |= mine.cwd;
                entry.fd |= mine.fd;
                entry.fds.extend(mine.fds);
            } else if rank(&mine) > rank(entry) {
                *entry = mine;
            }
        }
        let mut list: Vec<Elsewhere> = by_ns.into_values().collect();
        for entry in &mut list {
            entry.fds.sort_unstable();
            entry.fds.dedup();
        }
        list.sort_by_key(|e| (!e.used(), e.mount_ns, e.pid));
        list
    }
}

/// "3 other mount namespaces: pid 11184 (sleep) in mount namespace
/// 4026532321, the overlay is its root; ...", at most five named.
pub fn describe(copies: &[Elsewhere]) -> String {
    let named: Vec<String> = copies
        .iter()
        .take(holders::NAMED)
        .map(|c| c.to_string())
        .collect();
    let more = copies.len().saturating_sub(holders::NAMED);
    format!(
        "{} other mount namespace{}: {}{}",
        copies.len(),
        if copies.len() == 1 { "" } else { "s" },
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

/// The first few of a long list, then how many more.
pub fn summarize(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(holders::NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > holders::NAMED {
        text.push_str(&format!("; and {} more", items.len() - holders::NAMED));
    }
    text
}

/// Finds, in every mount namespace but `own_ns`, the mounts whose
/// superblock is one of `devices`, and every process whose root, cwd or
/// open files are on them (but on our own mounts `here`), until
/// `deadline`. The namespaces come from the
/// kernel's list where it has one (it also has those no process is in),
/// else from `/proc`; each namespace's mounts from listmount(2) and
/// statmount(2) where the kernel has them, else from one member's
/// mountinfo.
pub fn find_copies(
    devices: &HashSet<Device>,
    own_ns: Option<u64>,
    here: &HashSet<u64>,
    deadline: &Deadline,
) -> Copies {
    let proc_root = Path::new("/proc");
    let mut copies = Copies::default();
    if devices.is_empty() {
        copies.complete = true;
        return copies;
    }
    let mut complete = true;
    // Who uses it first: a process whose root, cwd or an open file is on
    // the overlay shows its device (a file, where the layers share a
    // filesystem or xino maps them), whichever namespace it is in, also
    // when no mount of the overlay is attached anywhere any more. A
    // container is found this way even when the walk over the namespaces
    // below does not finish in time.
    let by_device = Targets {
        mount_ids: HashSet::new(),
        devices: devices.clone(),
    };
    let users = holders::find(proc_root, &by_device, Some(std::process::id()), deadline);
    complete &= users.complete;
    copies.holders = users.holders;
    let mut ids = Vec::new();
    let mut buf = Vec::new();
    let found = |ns: u64,
                 device: Device,
                 id: u64,
                 at: PathBuf,
                 source: Option<String>,
                 copies: &mut Copies| {
        copies.places.entry(device).or_default().push((ns, id, at));
        if let Some(source) = source {
            copies.sources.insert(id, source);
        }
    };
    match namespaces::kernel_list(deadline) {
        Ok(listed) => {
            complete &= listed.complete;
            for (ns, id) in listed.items {
                if Some(ns) == own_ns {
                    continue;
                }
                let _ = crate::base::testpoint::act("walk-step", "");
                if deadline.is_over() {
                    complete = false;
                    break;
                }
                for &device in devices {
                    match mount_table::mounts_on_device_in(id, device, &mut ids, &mut buf) {
                        Ok(mounts) => {
                            for m in mounts {
                                found(ns, device, m.id, m.mount_point, m.source, &mut copies);
                            }
                        }
                        // Ended since it was listed.
                        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) => {}
                        Err(e) => copies.unread.push(format!("{ns}: {e}")),
                    }
                }
                copies.read += 1;
            }
        }
        Err(e) => {
            log::debug!("the kernel lists no mount namespaces ({e}); looking through /proc");
            complete &= walk_through_proc(proc_root, devices, own_ns, deadline, &mut copies);
        }
    }
    // A file (not a directory) on an overlay may show a device of its
    // layer's instead: such holders are found by the mount ids of the
    // copies just found.
    let place_ids: HashSet<u64> = copies
        .places
        .values()
        .flatten()
        .map(|(_, id, _)| *id)
        .collect();
    if !place_ids.is_empty() && !deadline.is_over() {
        let by_mount = Targets {
            mount_ids: place_ids,
            devices: HashSet::new(),
        };
        let more = holders::find(proc_root, &by_mount, Some(std::process::id()), deadline);
        complete &= more.complete;
        for holder in more.holders {
            if !copies
                .holders
                .iter()
                .any(|h| h.pid == holder.pid && h.via == holder.via)
            {
                copies.holders.push(holder);
            }
        }
    }
    // A process holding our own mount here is not using a copy elsewhere.
    copies.holders.retain(|h| !here.contains(&h.mount_id));
    let wanted: HashSet<u64> = copies
        .places
        .values()
        .flatten()
        .map(|(ns, _, _)| *ns)
        .collect();
    if !wanted.is_empty() {
        let groups = namespaces::members(proc_root, Some(&wanted), deadline);
        complete &= groups.complete;
        for (ns, pids) in groups.items {
            if let Some(&pid) = pids.first() {
                let command = holders::read_command(&proc_root.join(pid.to_string()))
                    .unwrap_or_else(|| "?".into());
                copies.members.insert(ns, (pid, command));
            }
        }
    }
    copies.complete = complete && !deadline.is_over();
    copies
}

/// The walk where the kernel keeps no list of mount namespaces (before
/// Linux 6.12): the namespaces of the processes, each read through a
/// member's mountinfo; then those no process is in, which an open
/// namespace file or a bind mount of one keeps alive, each read from a
/// thread that enters it. True when it read them all in time.
fn walk_through_proc(
    proc_root: &Path,
    devices: &HashSet<Device>,
    own_ns: Option<u64>,
    deadline: &Deadline,
    copies: &mut Copies,
) -> bool {
    let groups = namespaces::members(proc_root, None, deadline);
    let mut complete = groups.complete;
    let mut seen: HashSet<u64> = HashSet::new();
    // Namespaces kept by something other than a member: (inode, a path
    // that reaches the namespace file).
    let mut kept: Vec<(u64, PathBuf)> = Vec::new();
    let take = |ns: u64, table: &[mount_table::MountEntry], copies: &mut Copies| {
        for m in table {
            if devices.contains(&m.device) && Some(ns) != own_ns {
                copies
                    .places
                    .entry(m.device)
                    .or_default()
                    .push((ns, m.id, m.mount_point.clone()));
                copies.sources.insert(m.id, m.source.clone());
            }
        }
        copies.read += 1;
    };
    for (ns, pids) in &groups.items {
        let _ = crate::base::testpoint::act("walk-step", "");
        if deadline.is_over() {
            return false;
        }
        seen.insert(*ns);
        let read = pids.iter().find_map(|pid| {
            let member = proc_root.join(pid.to_string());
            mount_table::read_from(&member.join("mountinfo"))
                .ok()
                .map(|table| (member, table))
        });
        let Some((member, table)) = read else {
            copies.unread.push(format!(
                "{ns}: its processes' mount tables could not be read"
            ));
            continue;
        };
        for m in table.iter().filter(|m| m.fs_type == "nsfs") {
            let root = m.root.to_string_lossy();
            if let (Some(inner), Ok(rel)) = (
                namespaces::parse_link(&root),
                m.mount_point.strip_prefix("/"),
            ) {
                kept.push((inner, member.join("root").join(rel)));
            }
        }
        take(*ns, &table, copies);
    }
    let held = namespaces::held_by_fds(proc_root, deadline);
    complete &= held.complete;
    kept.extend(held.items);
    for (ns, path) in kept {
        if !seen.insert(ns) {
            continue;
        }
        let _ = crate::base::testpoint::act("walk-step", "");
        if deadline.is_over() {
            return false;
        }
        match namespaces::table_entering(&path) {
            Ok(table) => take(ns, &table, copies),
            // Gone since it was seen, or not to be entered.
            Err(e) => copies.unread.push(format!("{ns}: {e:#}")),
        }
    }
    complete
}

/// The live overlays whose upperdir or workdir is the directory `dir`
/// (its identity as a walk saw it), each as "overlay SOURCE at MOUNTPOINT
/// in mount namespace N, pid P (COMMAND)": for the message of a refused
/// mount, once the kernel has said the directory is in use. The option
/// text of each overlay only says where to look; a match is the same
/// device and inode reached from a process of that namespace
/// (`/proc/PID/root/...`). Namespaces without a process cannot be looked
/// into this way and are not named. Bounded by `deadline`.
pub fn overlays_using(
    dir: &crate::kernel::resolve::Meta,
    deadline: &Deadline,
) -> namespaces::Listed<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let proc_root = Path::new("/proc");
    let groups = namespaces::members(proc_root, None, deadline);
    let mut found = Vec::new();
    let wanted = (u64::from(dir.dev.0), u64::from(dir.dev.1), dir.ino);
    for (ns, pids) in groups.items {
        if deadline.is_over() {
            return namespaces::Listed {
                items: found,
                complete: false,
            };
        }
        let Some(&pid) = pids.first() else { continue };
        let member = proc_root.join(pid.to_string());
        let Ok(table) = mount_table::read_from(&member.join("mountinfo")) else {
            continue;
        };
        for mount in table.iter().filter(|m| m.fs_type == "overlay") {
            let (upper, work) = mount.overlay_dirs();
            let same = |path: &Option<PathBuf>| {
                path.as_ref()
                    .and_then(|p| p.strip_prefix("/").ok())
                    .and_then(|rel| std::fs::metadata(member.join("root").join(rel)).ok())
                    .is_some_and(|m| {
                        (
                            u64::from(nix::sys::stat::major(m.dev()) as u32),
                            u64::from(nix::sys::stat::minor(m.dev()) as u32),
                            m.ino(),
                        ) == wanted
                    })
            };
            if same(&upper) || same(&work) {
                let command = holders::read_command(&member).unwrap_or_else(|| "?".into());
                found.push(format!(
                    "overlay {} at {} in mount namespace {ns}, pid {pid} ({command})",
                    mount.source,
                    mount.mount_point.display()
                ));
            }
        }
    }
    namespaces::Listed {
        items: found,
        complete: groups.complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copies(places: &[(u64, &str)]) -> Copies {
        let device = Device {
            major: 0,
            minor: 77,
        };
        let mut copies = Copies {
            complete: true,
            ..Default::default()
        };
        for (id, source) in places {
            copies
                .places
                .entry(device)
                .or_default()
                .push((4026532000, *id, PathBuf::from("/mnt")));
            if !source.is_empty() {
                copies.sources.insert(*id, source.to_string());
            }
        }
        copies
    }

    /// A read-only overlay gone from here is judged by the walk: a copy
    /// counts only with its own tag or none reported (the device may have
    /// gone to another superblock since), and only a complete walk that
    /// read everything says "gone".
    #[test]
    fn a_walk_decides_for_a_read_only_overlay_by_device_and_tag() {
        let device = Device {
            major: 0,
            minor: 77,
        };
        let tag = "idmap-overlay:a";
        assert_eq!(copies(&[]).beyond(device, tag), Beyond::Gone);
        assert!(matches!(
            copies(&[(90, tag)]).beyond(device, tag),
            Beyond::Alive(_)
        ));
        // An empty source, or a kernel that reports none: may be ours.
        assert!(matches!(
            copies(&[(90, "")]).beyond(device, tag),
            Beyond::Alive(_)
        ));
        // Another superblock that got the device since: not ours.
        assert_eq!(
            copies(&[(90, "idmap-overlay:b")]).beyond(device, tag),
            Beyond::Gone
        );
        let mut cut = copies(&[]);
        cut.complete = false;
        assert!(matches!(cut.beyond(device, tag), Beyond::Unknown(_)));
        let mut unread = copies(&[]);
        unread.unread.push("4026532999: permission denied".into());
        assert!(matches!(unread.beyond(device, tag), Beyond::Unknown(_)));
    }

    #[test]
    fn long_lists_are_summarized() {
        let many: Vec<String> = (0..20_000).map(|n| format!("namespace {n}")).collect();
        let text = summarize(&many);
        assert!(text.len() < 200, "{text}");
        assert!(text.ends_with("and 19995 more"), "{text}");
        let copies: Vec<Elsewhere> = (0..20_000)
            .map(|n| Elsewhere {
                pid: None,
                command: None,
                mount_ns: Some(n),
                root: false,
                cwd: false,
                fd: false,
                fds: Vec::new(),
            })
            .collect();
        let text = describe(&copies);
        assert!(text.len() < 600, "{text}");
        assert!(text.starts_with("20000 other mount namespaces"), "{text}");
    }
}
