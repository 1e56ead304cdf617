//! The one way the tool writes a file that others read: a new temporary
//! file beside it, then rename(2) over it, so no reader ever sees half of
//! it. The temporary file is created with `O_CREAT|O_EXCL|O_NOFOLLOW` under
//! a name of this writer's own, so a file or symlink planted under any name
//! is never written through, and two writers never share one; it is
//! removed on any failure.

use nix::fcntl::{AT_FDCWD, OFlag, openat, renameat};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` atomically with permissions `mode` (whatever
/// the umask). `durable` flushes the data, and then the directory's entry,
/// to disk, for files that outlive a reboot; the state under /run shares
/// the mounts' fate and needs no flush. The directory is opened by path:
/// for directories only root can change (the state directory, checked).
pub fn write(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    let dir = open_dir(AT_FDCWD, dir)?;
    write_at(dir.as_fd(), name, bytes, mode, durable)
}

/// Replaces the file `path` with `bytes`, mode `mode`, so that no reader
/// ever sees half of it, and flushed to disk with its directory entry: for
/// files outside the state directory that other programs read (metrics
/// for node_exporter). The directory is walked safely (a user's directory
/// leads only to that user's things, see docs/SECURITY.md) and written
/// into through its fd, so a user who owns a directory above it cannot
/// make root write elsewhere by swapping one for a symlink.
///
/// ```no_run
/// idmap_overlay::write_file(
///     "/var/lib/prometheus/node-exporter/idmap_overlay.prom".as_ref(),
///     b"idmap_overlay_records{state=\"mounted\"} 3\n",
///     0o644,
/// )?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    let resolved = crate::kernel::resolve::resolve_dir(dir)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = open_dir(&resolved.fd, Path::new("."))?;
    write_at(dir.as_fd(), name, bytes, mode, true)
}

/// Checks, before anything is done, that [`write_file`] could write at
/// `path`: an absolute path naming a file (not a directory) whose directory
/// exists and is reached safely (no user's directory or symlink leading to
/// somebody else's). The error (kind `InvalidInput`) says what is wrong,
/// on one line.
///
/// ```no_run
/// idmap_overlay::check_file_path("/var/lib/prometheus/node-exporter/idmap.prom".as_ref())?;
/// # Ok::<(), idmap_overlay::Error>(())
/// ```
pub fn check_file_path(path: &Path) -> crate::base::error::Result<()> {
    use crate::base::error::{ErrorKind, fail};
    let shown = format!("{path:?}");
    let invalid = |why: String| fail(ErrorKind::InvalidInput, format!("{shown}: {why}"));
    if !path.is_absolute() {
        return Err(invalid("not an absolute path".into()));
    }
    let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
        return Err(invalid("names no file".into()));
    };
    crate::kernel::resolve::resolve_dir(dir).map_err(|e| invalid(e.to_string()))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(invalid("is a directory".into()));
    }
    Ok(())
}

/// Opens a directory for writing into and flushing (`O_RDONLY`: an
/// `O_PATH` fd cannot be fsync'ed), relative to `base`.
pub fn open_dir<Fd: AsFd>(base: Fd, path: &Path) -> std::io::Result<OwnedFd> {
    Ok(openat(
        base,
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// [`write()`] of the file `name` in the directory `dir` (held by fd:
/// nothing is looked up by path, so a directory swapped meanwhile changes
/// nothing).
pub fn write_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> std::io::Result<()> {
    let (temp, file) = create_temp(dir, name, mode)?;
    let mut file = std::fs::File::from(file);
    let written = (|| {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        renameat(dir, temp.as_os_str(), dir, name)?;
        if durable {
            // The rename itself, on disk.
            nix::unistd::fsync(dir)?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = unlinkat(dir, temp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    written
}

/// `.<name>.<pid>.<n>.tmp` in `dir`, created new. The name never ends
/// like the final one (`*.json`, `*.prom`), so readers that list a
/// directory skip it; `gc` recognises it by [`temp_target`].
fn create_temp(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
) -> std::io::Result<(OsString, OwnedFd)> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ));
        match openat(
            dir,
            temp.as_os_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(file) => return Ok((temp, file)),
            // Someone's file by that name (a crash of a process with our
            // pid, or a plant): never ours to reuse.
            Err(nix::errno::Errno::EEXIST) if attempts < 100 => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// The final name a temporary file of [`write()`] was for: `x.json` for
/// `.x.json.123.4.tmp`; `None` for any other name.
pub fn temp_target(temp_name: &str) -> Option<&str> {
    let inner = temp_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (rest, seq) = inner.rsplit_once('.')?;
    let (target, pid) = rest.rsplit_once('.')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(seq) && numeric(pid) && !target.is_empty()).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn writes_whole_files_with_the_mode_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write(&path, b"one", 0o600, false).unwrap();
        write(&path, b"two", 0o600, true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temp file left"
        );
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        let path = dir.path().join("x.json");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        write(&path, b"new", 0o600, false).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn temp_names_are_recognised() {
        assert_eq!(temp_target(".x.json.123.4.tmp"), Some("x.json"));
        assert_eq!(temp_target(".a.b.json.1.22.tmp"), Some("a.b.json"));
        for other in [
            "x.json",
            ".x.json.tmp",
            ".x.json.a.4.tmp",
            "..1.2.tmp",
            ".x.json.1..tmp",
        ] {
            assert_eq!(temp_target(other), None, "{other}");
        }
    }
}
