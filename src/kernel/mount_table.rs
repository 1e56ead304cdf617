//! The mount table as `/proc/<pid>/mountinfo` shows it (proc(5)).

use crate::base::error::{Context, ErrorKind, Result, fail};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u64,
    pub parent: u64,
    pub root: String,
    pub mount_point: PathBuf,
    pub options: String,
    /// Optional fields such as `shared:1` or `master:2`.
    pub tags: Vec<String>,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// mountinfo says `idmapped` among the per-mount options of an idmapped mount.
    pub fn is_idmapped(&self) -> bool {
        self.options.split(',').any(|o| o == "idmapped")
    }
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Three octal digits of one byte: `\\4xx` and above are not escapes
        // the kernel makes (and would overflow a byte).
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && (b'0'..=b'3').contains(&bytes[i + 1])
            && bytes[i + 2..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_line(line: &str) -> Result<MountEntry, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(|| format!("mountinfo line without separator: {line:?}"))?;
    if sep < 6 || fields.len() < sep + 4 {
        return Err(format!("short mountinfo line: {line:?}"));
    }
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("bad mount id in {line:?}"))
    };
    Ok(MountEntry {
        id: number(fields[0])?,
        parent: number(fields[1])?,
        root: unescape(fields[3]),
        mount_point: PathBuf::from(unescape(fields[4])),
        options: fields[5].to_string(),
        tags: fields[6..sep].iter().map(|s| s.to_string()).collect(),
        fs_type: fields[sep + 1].to_string(),
        source: unescape(fields[sep + 2]),
        super_options: fields[sep + 3..].join(" "),
    })
}

pub fn parse(text: &str) -> Result<Vec<MountEntry>, String> {
    text.lines()
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
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
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

/// The id maps the kernel reports for an idmapped mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelIdmaps {
    /// `uid_map`-style lines `INSIDE OUTSIDE COUNT`, read with statmount(2).
    Read {
        uid_lines: Vec<String>,
        gid_lines: Vec<String>,
    },
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
        .and_then(|fd| crate::kernel::sys::mount_ids(std::os::fd::AsFd::as_fd(&fd)).ok())
        .and_then(|ids| ids.unique);
    let Some(unique) = unique else {
        return KernelIdmaps::NoUniqueId;
    };
    match crate::kernel::sys::statmount_idmaps(unique) {
        Ok(Some(maps)) => KernelIdmaps::Read {
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

    const SAMPLE: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 27 0:50 / /mnt/with\\040space rw,relatime - overlay idmap-overlay:abc ro,lowerdir+=/l2,lowerdir+=/l1
81 80 0:51 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
90 27 254:0 /var/lib/layers /run/idmap-overlay/tmp/x/0 ro,relatime,idmapped master:3 - ext4 /dev/vda rw
";

    #[test]
    fn parses_fields() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].tags, vec!["shared:1"]);
        assert_eq!(t[1].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(t[1].source, "idmap-overlay:abc");
        assert_eq!(t[1].fs_type, "overlay");
        assert_eq!(t[3].root, "/var/lib/layers");
        assert!(t[3].is_idmapped());
        assert!(!t[1].is_idmapped());
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
        assert_eq!(unescape("a\\040b"), "a b");
        assert_eq!(unescape("a\\134"), "a\\");
        assert_eq!(unescape("\\777x"), "\\777x");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse("1 2 3").is_err());
        assert!(parse("x 1 0:1 / / rw - ext4 a b").is_err());
    }
}
