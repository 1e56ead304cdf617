//! `scripts/install.sh` into a temp DESTDIR: every file where a distribution
//! puts it, the mount helper a working link to the binary, the units
//! pointing at the installed binary (and accepted by `systemd-analyze
//! verify` where it exists), every default path under DESTDIR+PREFIX, and an
//! uninstall that leaves no file behind. Nothing outside the temp
//! directories is written: every PREFIX is installed into a DESTDIR, or is
//! itself a temp directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_idmap-overlay");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn install(action: &str, vars: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(ROOT).join("scripts/install.sh"))
        .arg(action)
        .env("BINARY", BIN)
        .env_remove("DESTDIR")
        .env_remove("PREFIX");
    for (key, value) in vars {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "install.sh {action} {vars:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and symlink under `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

fn expected(prefix: &str, helper: &str) -> Vec<String> {
    let mut paths = vec![
        format!("{prefix}/sbin/idmap-overlay"),
        format!("{helper}/mount.idmap-overlay"),
        format!("{prefix}/share/bash-completion/completions/idmap-overlay"),
        format!("{prefix}/share/zsh/site-functions/_idmap-overlay"),
        format!("{prefix}/share/fish/vendor_completions.d/idmap-overlay.fish"),
        format!("{prefix}/lib/systemd/system/idmap-overlay-gc.service"),
        format!("{prefix}/lib/systemd/system/idmap-overlay-gc.timer"),
    ];
    for page in fs::read_dir(Path::new(ROOT).join("man")).unwrap() {
        let name = page.unwrap().file_name();
        paths.push(format!(
            "{prefix}/share/man/man8/{}",
            name.to_string_lossy()
        ));
    }
    let mut paths: Vec<String> = paths
        .into_iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    paths.sort();
    paths
}

fn run_version(program: &Path) -> String {
    let out = Command::new(program).arg("--version").output().unwrap();
    assert!(out.status.success(), "{program:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn distribution_layout_into_destdir_and_back() {
    let dest = tempfile::tempdir().unwrap();
    let destdir = dest.path();
    install(
        "install",
        &[("DESTDIR", destdir), ("PREFIX", Path::new("/usr"))],
    );
    assert_eq!(files(destdir), expected("/usr", "/usr/sbin"));

    let sbin = destdir.join("usr/sbin");
    let binary = sbin.join("idmap-overlay");
    assert_eq!(
        fs::metadata(&binary).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(run_version(&binary).starts_with("idmap-overlay "));
    // The helper: a relative link, so it works inside DESTDIR and after.
    let helper = sbin.join("mount.idmap-overlay");
    assert_eq!(
        fs::read_link(&helper).unwrap(),
        PathBuf::from("idmap-overlay")
    );
    let usage = Command::new(&helper).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&usage.stdout).starts_with("usage: mount.idmap-overlay"));

    let units = destdir.join("usr/lib/systemd/system");
    let service = fs::read_to_string(units.join("idmap-overlay-gc.service")).unwrap();
    assert!(service.contains("\nType=oneshot\n"), "{service}");
    assert!(
        service.contains("\nExecStart=/usr/sbin/idmap-overlay gc\n"),
        "{service}"
    );
    let timer = fs::read_to_string(units.join("idmap-overlay-gc.timer")).unwrap();
    assert!(timer.contains("\nOnBootSec=") && timer.contains("\nOnUnitActiveSec="));
    for page in fs::read_dir(destdir.join("usr/share/man/man8")).unwrap() {
        let page = page.unwrap().path();
        let name = page.file_name().unwrap().to_owned();
        assert_eq!(
            fs::read(&page).unwrap(),
            fs::read(Path::new(ROOT).join("man").join(name)).unwrap()
        );
    }

    install(
        "uninstall",
        &[("DESTDIR", destdir), ("PREFIX", Path::new("/usr"))],
    );
    assert_eq!(files(destdir), Vec::<String>::new());
}

#[test]
fn local_prefix_points_units_and_helper_at_it() {
    let dest = tempfile::tempdir().unwrap();
    let destdir = dest.path();
    let prefix = Path::new("/usr/local");
    install("install", &[("DESTDIR", destdir), ("PREFIX", prefix)]);
    assert_eq!(files(destdir), expected("/usr/local", "/usr/local/sbin"));
    assert_eq!(
        fs::read_link(destdir.join("usr/local/sbin/mount.idmap-overlay")).unwrap(),
        PathBuf::from("idmap-overlay")
    );
    let service =
        fs::read_to_string(destdir.join("usr/local/lib/systemd/system/idmap-overlay-gc.service"))
            .unwrap();
    assert!(service.contains("\nExecStart=/usr/local/sbin/idmap-overlay gc\n"));
    install("uninstall", &[("DESTDIR", destdir), ("PREFIX", prefix)]);
    assert_eq!(files(destdir), Vec::<String>::new());

    // Where mount(8) looks (/sbin) only when asked: an absolute link to
    // PREFIX/sbin; uninstall with the same HELPERDIR removes it.
    let vars = [
        ("DESTDIR", destdir),
        ("PREFIX", prefix),
        ("HELPERDIR", Path::new("/sbin")),
    ];
    install("install", &vars);
    assert_eq!(files(destdir), expected("/usr/local", "/sbin"));
    assert_eq!(
        fs::read_link(destdir.join("sbin/mount.idmap-overlay")).unwrap(),
        PathBuf::from("/usr/local/sbin/idmap-overlay")
    );
    install("uninstall", &vars);
    assert_eq!(files(destdir), Vec::<String>::new());
}

/// `PREFIX=/opt/x` with a DESTDIR: every file, the mount helper included,
/// lands under DESTDIR/opt/x, and uninstall takes every one away.
#[test]
fn any_prefix_installs_nothing_outside_it() {
    let dest = tempfile::tempdir().unwrap();
    let destdir = dest.path();
    let vars = [("DESTDIR", destdir), ("PREFIX", Path::new("/opt/x"))];
    install("install", &vars);
    let installed = files(destdir);
    let outside: Vec<&String> = installed
        .iter()
        .filter(|f| !f.starts_with("opt/x/"))
        .collect();
    assert!(outside.is_empty(), "outside opt/x: {outside:?}");
    assert_eq!(installed, expected("/opt/x", "/opt/x/sbin"));
    // Nothing else was made outside it, not even an empty directory.
    let top: Vec<String> = fs::read_dir(destdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, ["opt"]);
    let helper = destdir.join("opt/x/sbin/mount.idmap-overlay");
    let usage = Command::new(&helper).arg("-h").output().unwrap();
    assert!(String::from_utf8_lossy(&usage.stdout).starts_with("usage: mount.idmap-overlay"));
    install("uninstall", &vars);
    assert_eq!(files(destdir), Vec::<String>::new());
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // Fails rather than skips when missing; .ci/run installs it.
    assert!(
        available,
        "systemd-analyze is not installed (Debian: systemd)"
    );
    // A real prefix (no DESTDIR), so that verify finds the binary the
    // service's ExecStart names, and the man page its Documentation= names.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    install("install", &[("PREFIX", &prefix)]);
    let units = prefix.join("lib/systemd/system");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("idmap-overlay-gc.service"))
        .arg(units.join("idmap-overlay-gc.timer"))
        .env("MANPATH", prefix.join("share/man"))
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
