//! Mount tables, read one way: `/proc/<pid>/mountinfo` (proc(5)) as bytes,
//! or one mount namespace's mounts through listmount(2) and statmount(2).
//!
//! Paths are bytes on Linux and need not be UTF-8: mount points and roots
//! are kept exact (a `PathBuf` made from the unescaped bytes); the source,
//! filesystem type and options are labels for people, kept as lossy text.
//! Nothing here decides anything about other namespaces from a label.

use crate::base::error::{Context, ErrorKind, Result, fail};
use crate::kernel::sys;
use nix::errno::Errno;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// A device number, as mountinfo's `major:minor` shows it. An overlay's is
/// an anonymous device of its own superblock, shared by all its copies in
/// every mount namespace, and free for reuse once the superblock is gone.
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
}

impl From<(u32, u32)> for Device {
    fn from((major, minor): (u32, u32)) -> Device {
        Device { major, minor }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One line of a mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub parent: u64,
    pub device: Device,
    /// The directory of the filesystem mounted there.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,relatime,idmapped`).
    pub options: String,
    /// Optional fields such as `shared:1` or `master:2`.
    pub tags: Vec<String>,
    pub fs_type: String,
    /// Whatever the mounter wrote: `idmap-overlay:<id>` for ours, but any
    /// user can mount anything under any name in a namespace of their own.
    pub source: String,
    pub super_options: String,
    /// The super options as the kernel wrote them (octal escapes left in,
    /// bytes exact), for [`MountEntry::overlay_dirs`].
    pub super_raw: Vec<u8>,
}

impl MountEntry {
    /// `upperdir=` and `workdir=` of an overlay's super options, as its
    /// mounter wrote them: text, a label to look at, never a proof. The
    /// kernel escapes `,`, space, tab, newline and backslash in each value
    /// (seq_show_option), so splitting at `,` and `=` is safe; overlayfs
    /// itself took a backslash to escape the next byte.
    pub fn overlay_dirs(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        let (mut upper, mut work) = (None, None);
        for option in self.super_raw.split(|b| *b == b',') {
            let Some(eq) = option.iter().position(|b| *b == b'=') else {
                continue;
            };
            let slot = match &option[..eq] {
                b"upperdir" => &mut upper,
                b"workdir" => &mut work,
                _ => continue,
            };
            let mut value = Vec::new();
            let mut bytes = unescape(&option[eq + 1..]).into_iter();
            while let Some(b) = bytes.next() {
                match b {
                    b'\\' => value.extend(bytes.next()),
                    b => value.push(b),
                }
            }
            *slot = Some(PathBuf::from(OsString::from_vec(value)));
        }
        (upper, work)
    }

    /// mountinfo says `idmapped` among the per-mount options of an idmapped mount.
    pub fn is_idmapped(&self) -> bool {
        self.options.split(',').any(|o| o == "idmapped")
    }
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`,
/// `\134`), giving back the bytes the kernel escaped.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        // Three octal digits of one byte: `\4xx` and above are not escapes
        // the kernel makes (and would overflow a byte).
        if field[i] == b'\\'
            && i + 3 < field.len()
            && (b'0'..=b'3').contains(&field[i + 1])
            && field[i + 2..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

fn path_of(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn text_of(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// One mountinfo line.
pub fn parse_line(line: &[u8]) -> Result<MountEntry, String> {
    let shown = || String::from_utf8_lossy(line).into_owned();
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == b"-")
        .ok_or_else(|| format!("mountinfo line without separator: {:?}", shown()))?;
    if sep < 6 || fields.len() < sep + 4 {
        return Err(format!("short mountinfo line: {:?}", shown()));
    }
    let number = |field: &[u8]| {
        std::str::from_utf8(field)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| format!("bad mount id in {:?}", shown()))
    };
    let device = std::str::from_utf8(fields[2])
        .ok()
        .and_then(Device::parse)
        .ok_or_else(|| format!("bad device in {:?}", shown()))?;
    Ok(MountEntry {
        id: number(fields[0])?,
        parent: number(fields[1])?,
        device,
        root: path_of(fields[3]),
        mount_point: path_of(fields[4]),
        options: text_of(fields[5]),
        tags: fields[6..sep].iter().map(|f| text_of(f)).collect(),
        fs_type: text_of(fields[sep + 1]),
        source: text_of(fields[sep + 2]),
        super_options: text_of(&fields[sep + 3..].join(&b' ')),
        super_raw: fields[sep + 3..].join(&b' '),
    })
}

/// A whole mountinfo text.
pub fn parse(text: &[u8]) -> Result<Vec<MountEntry>, String> {
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

/// Reads the calling thread's mount namespace's table (a thread may have
/// a namespace of its own; /proc/self shows the main thread's).
pub fn read() -> Result<Vec<MountEntry>> {
    read_from(Path::new("/proc/thread-self/mountinfo"))
}

pub fn read_from(path: &Path) -> Result<Vec<MountEntry>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).map_err(|e| fail(ErrorKind::System, e))
}

/// The mount that a path lookup of `mount_point` reaches: of the mounts at
/// that path, the one no other mount there is stacked on.
pub fn top_at<'a>(table: &'a [MountEntry], mount_point: &Path) -> Option<&'a MountEntry> {
    let here: Vec<&MountEntry> = table
        .iter()
        .filter(|m| m.mount_point == mount_point)
        .collect();
    here.iter()
        .find(|m| !here.iter().any(|other| other.parent == m.id))
        .copied()
}

/// A mount found on a given device in another namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOnDevice {
    /// Its mount id as mountinfo shows it (what statx reports for files on it).
    pub id: u64,
    pub mount_point: PathBuf,
    /// Its source, when the kernel reports one (statmount gives none for
    /// an empty source, nor before Linux 6.13): a label, which only helps
    /// tell two superblocks apart that got the same device one after the
    /// other.
    pub source: Option<String>,
}

/// The mounts of the mount namespace `ns_id` (its 64-bit id) whose
/// superblock is on `device`: listmount(2), a small statmount(2)
/// (`STATMOUNT_SB_BASIC|STATMOUNT_MNT_BASIC`) of each mount, and the mount
/// point of those that match. No string anyone could write is asked for:
/// a mount whose source or options a user made odd reads like any other.
/// `ids` and `buf` are reused from call to call.
pub fn mounts_on_device_in(
    ns_id: u64,
    device: Device,
    ids: &mut Vec<u64>,
    buf: &mut Vec<u8>,
) -> io::Result<Vec<MountOnDevice>> {
    sys::list_mounts_in(ns_id, ids)?;
    let mut found = Vec::new();
    let basic = sys::STATMOUNT_SB_BASIC | sys::STATMOUNT_MNT_BASIC;
    for &id in ids.iter() {
        let st = match sys::statmount_in(ns_id, id, basic, buf) {
            Ok(st) => st,
            // Unmounted since the listing.
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => continue,
            Err(e) => return Err(e),
        };
        if Device::from((st.dev_major, st.dev_minor)) != device {
            continue;
        }
        let strings = sys::STATMOUNT_MNT_POINT | sys::STATMOUNT_SB_SOURCE;
        let st = match sys::statmount_in(ns_id, id, basic | strings, buf) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => continue,
            Err(e) => return Err(e),
        };
        found.push(MountOnDevice {
            id: st.mount_id.into(),
            mount_point: PathBuf::from(OsString::from_vec(st.mnt_point.unwrap_or_default())),
            source: st
                .sb_source
                .map(|s| String::from_utf8_lossy(&s).into_owned()),
        });
    }
    Ok(found)
}

/// The id maps the kernel reports for an idmapped mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelIdmaps {
    /// `uid_map`-style lines `INSIDE OUTSIDE COUNT`, read with statmount(2)
    /// from the mount at `from`.
    Read {
        from: PathBuf,
        uid_lines: Vec<String>,
        gid_lines: Vec<String>,
    },
    /// No idmapped mount of the overlay is attached to ask about (the
    /// detached strategy never attaches one; overlayfs keeps private
    /// clones of its layers).
    NothingAttached,
    /// The mount could not be opened or has no unique id (Linux 6.8+).
    NoUniqueId,
    /// statmount(2) does not report id maps here (Linux 6.15+), or the
    /// mount is not idmapped.
    NotReported,
    /// statmount(2) failed: why.
    Failed(String),
}

/// Asks the kernel for the id maps of the mount at `mount_point` (reached
/// by a safe walk, then by its unique id: never a later mount at the path).
pub fn kernel_idmaps(mount_point: &Path) -> KernelIdmaps {
    let unique = crate::kernel::resolve::resolve_entry(mount_point)
        .ok()
        .and_then(|place| place.open().ok())
        .and_then(|fd| sys::mount_ids(std::os::fd::AsFd::as_fd(&fd)).ok())
        .and_then(|ids| ids.unique);
    let Some(unique) = unique else {
        return KernelIdmaps::NoUniqueId;
    };
    match sys::statmount_idmaps(unique) {
        Ok(Some(maps)) => KernelIdmaps::Read {
            from: mount_point.to_path_buf(),
            uid_lines: maps.uid_lines,
            gid_lines: maps.gid_lines,
        },
        Ok(None) => KernelIdmaps::NotReported,
        Err(e) => KernelIdmaps::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    const SAMPLE: &[u8] = b"\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 27 0:50 / /mnt/with\\040space rw,relatime - overlay idmap-overlay:abc ro,lowerdir+=/l2,lowerdir+=/l1
81 80 0:51 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
90 27 254:0 /var/lib/layers /run/idmap-overlay/tmp/x/0 ro,relatime,idmapped master:3 - ext4 /dev/vda rw
91 27 0:52 / /mnt/bad\\377name rw - tmpfs \\377 rw
";

    #[test]
    fn parses_fields() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t[0].tags, vec!["shared:1"]);
        assert_eq!(t[1].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(t[1].source, "idmap-overlay:abc");
        assert_eq!(t[1].fs_type, "overlay");
        assert_eq!(
            t[1].device,
            Device {
                major: 0,
                minor: 50
            }
        );
        assert_eq!(t[3].root, Path::new("/var/lib/layers"));
        assert!(t[3].is_idmapped());
        assert!(!t[1].is_idmapped());
    }

    /// A mount point that is not UTF-8 is kept byte for byte (found by a
    /// tmpfs on a directory named `bad\xff`, which made inspect and gc fail).
    #[test]
    fn paths_are_bytes() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t[4].mount_point.as_os_str().as_bytes(), b"/mnt/bad\xffname");
        assert_eq!(t[4].source, "\u{fffd}");
    }

    #[test]
    fn overlay_dirs_are_read_back() {
        let t = parse(
            b"80 27 0:50 / /m rw - overlay x rw,lowerdir=/l,upperdir=/u\\054p\\134\\134q\\040r,workdir=/w\n",
        )
        .unwrap();
        assert_eq!(
            t[0].overlay_dirs(),
            (Some(PathBuf::from("/u,p\\q r")), Some(PathBuf::from("/w")))
        );
    }

    #[test]
    fn finds_the_top_mount() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(top_at(&t, Path::new("/mnt/with space")).unwrap().id, 81);
        assert_eq!(top_at(&t, Path::new("/")).unwrap().id, 27);
        assert!(top_at(&t, Path::new("/nowhere")).is_none());
    }

    #[test]
    fn only_byte_escapes_are_undone() {
        assert_eq!(unescape(b"a\\040b"), b"a b");
        assert_eq!(unescape(b"a\\134"), b"a\\");
        assert_eq!(unescape(b"\\777x"), b"\\777x");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"1 2 3").is_err());
        assert!(parse(b"x 1 0:1 / / rw - ext4 a b").is_err());
        assert!(parse(b"1 1 zz / / rw - ext4 a b").is_err());
    }
}
