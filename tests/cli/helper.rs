//! `mount -t idmap-overlay` through the real mount(8), which runs
//! `/sbin/mount.idmap-overlay` (util-linux looks for helpers in /sbin,
//! /sbin/fs.d and /sbin/fs). The host's /sbin is never touched: inside the
//! test's private namespace, /sbin (usually a symlink to /usr/sbin) gets an
//! overlay whose upper layer, in the test's temp dir, holds the helper
//! symlink. libmount's utab goes to the temp dir too (LIBMOUNT_UTAB), so
//! nothing reaches the host's /run/mount either.

use crate::support::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An [`Env`] whose namespace has `mount.idmap-overlay` in /sbin.
struct HelperEnv {
    env: Env,
}

impl HelperEnv {
    fn new() -> HelperEnv {
        let env = Env::new();
        let sbin = fs::canonicalize("/sbin").unwrap();
        let upper = env.mkdir("sbin-upper");
        let work = env.mkdir("sbin-work");
        std::os::unix::fs::symlink(BIN, upper.join("mount.idmap-overlay")).unwrap();
        let out = env
            .ns
            .command("mount")
            .env("LIBMOUNT_UTAB", env.path("utab"))
            .args(["-t", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                sbin.display(),
                upper.display(),
                work.display()
            ))
            .arg("sbin-with-helper")
            .arg(&sbin)
            .output()
            .unwrap();
        assert!(out.status.success(), "overlay on /sbin: {}", stderr(&out));
        HelperEnv { env }
    }

    /// mount(8) in the namespace, with a clean environment.
    fn mount(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.ns.command("mount");
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("IDMAP_OVERLAY_STATE_DIR", &self.env.state)
            .env("LIBMOUNT_UTAB", self.env.path("utab"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.mount(args).output().unwrap()
    }

    /// Two layers, an upper and a work dir, a target: the containerd
    /// option string for them, and the target.
    fn overlay(&self) -> (String, PathBuf) {
        let layers = self.env.layers(2);
        let upper = self.env.mkdir("upper");
        let work = self.env.mkdir("work");
        let options = format!(
            "lowerdir={},upperdir={},workdir={},uidmap=0:100000:65536",
            join(&layers),
            upper.display(),
            work.display()
        );
        (options, self.env.mkdir("mnt"))
    }

    /// The one overlay in our temp dir, as mount(8) made it.
    fn assert_mounted(&self, target: &Path) -> MountLine {
        let mounts = self.env.our_mounts();
        assert_eq!(mounts.len(), 1, "{mounts:#?}");
        let overlay = mounts[0].clone();
        assert_eq!(overlay.mount_point, target);
        assert_eq!(overlay.fs_type, "overlay");
        assert!(overlay.source.starts_with("idmap-overlay:"), "{overlay:?}");
        let id = overlay.source.trim_start_matches("idmap-overlay:");
        assert_eq!(self.env.state_files("mounts"), [format!("{id}.json")]);
        // Mapped for real: uid 1000 on disk shows as 101000.
        let user = self.env.stat(&target.join("user-file"));
        assert_eq!((user.uid(), user.gid()), (101000, 101000));
        overlay
    }

    fn umount_and_check_clean(&self, target: &Path) {
        self.env.ok(&["umount", s(target)]);
        self.env.assert_clean();
    }
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

#[test]
fn mount_t_idmap_overlay_goes_through_the_helper() {
    let h = HelperEnv::new();
    let (options, target) = h.overlay();

    // Without helpers (-i) mount(8) asks the kernel for a filesystem type
    // "idmap-overlay", which does not exist: what works below is the helper.
    let out = h.run(&[
        "-i",
        "-t",
        "idmap-overlay",
        "-o",
        &options,
        "none",
        s(&target),
    ]);
    assert!(!out.status.success());
    assert_eq!(h.env.state_files("mounts"), Vec::<String>::new());

    let out = h.run(&["-t", "idmap-overlay", "-o", &options, "none", s(&target)]);
    ok(&out, "mount -t idmap-overlay");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "quiet unless -v");
    let overlay = h.assert_mounted(&target);
    // A plain mount: no attribute we did not ask for.
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            !overlay.options.split(',').any(|o| o == flag),
            "{overlay:?}"
        );
    }
    // Writes land in the upper layer.
    fs::write(h.env.ns.path(&target.join("new")), "x").unwrap();
    assert!(h.env.path("upper/new").exists());
    h.umount_and_check_clean(&target);
}

#[test]
fn generic_options_become_mount_attributes() {
    let h = HelperEnv::new();
    let (options, target) = h.overlay();
    let out = h.run(&[
        "-v",
        "-n",
        "-t",
        "idmap-overlay",
        "-o",
        &format!("ro,nosuid,nodev,noexec,noatime,_netdev,nofail,x-test.flag,{options}"),
        "none",
        s(&target),
    ]);
    ok(&out, "mount -v -n -o ro,nosuid,...");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("mounted"),
        "-v says what it did: {out:?}"
    );
    let overlay = h.assert_mounted(&target);
    let flags: Vec<&str> = overlay.options.split(',').collect();
    for flag in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(flags.contains(&flag), "{flag} missing: {overlay:?}");
    }
    assert!(fs::write(h.env.ns.path(&target.join("new")), "x").is_err());
    h.umount_and_check_clean(&target);
}

#[test]
fn an_fstab_line_works() {
    let h = HelperEnv::new();
    let (options, target) = h.overlay();
    let fstab = h.env.path("fstab");
    fs::write(
        &fstab,
        format!(
            "# test fstab\nnone {} idmap-overlay defaults,noauto,x-systemd.requires=x.service,{options} 0 0\n",
            target.display()
        ),
    )
    .unwrap();
    let out = h.run(&["--fstab", s(&fstab), s(&target)]);
    ok(&out, "mount --fstab FILE TARGET");
    h.assert_mounted(&target);
    h.umount_and_check_clean(&target);
}

/// `mount -a -v` again never says "successfully mounted" for a mount that
/// did not happen. With `idmap-overlay:ID` as its source, a line is seen
/// mounted by mount(8) itself ("already mounted"), as any filesystem's:
/// the mount table shows that source. With "none", mount(8) cannot tell
/// and runs the helper, which says "already mounted" and exits 32, as
/// mount(8) does, naming the source that would make mount -a skip it.
/// (It exited 0, and mount(8) said "successfully mounted".) After a plain
/// umount(8), the tagged line mounts again under its id.
#[test]
fn a_second_mount_a_never_claims_a_mount_that_did_not_happen() {
    let h = HelperEnv::new();
    let layers = h.env.layers(2);
    let mut lines = Vec::new();
    let mut targets = Vec::new();
    for (source, name) in [("idmap-overlay:web-1", "tagged"), ("none", "untagged")] {
        let (upper, work) = (
            h.env.mkdir(&format!("{name}/upper")),
            h.env.mkdir(&format!("{name}/work")),
        );
        let target = h.env.mkdir(&format!("{name}/mnt"));
        lines.push(format!(
            "{source} {} idmap-overlay lowerdir={},upperdir={},workdir={},uidmap=0:100000:65536,nosuid 0 0",
            s(&target),
            join(&layers),
            s(&upper),
            s(&work)
        ));
        targets.push(target);
    }
    let fstab = h.env.path("fstab");
    fs::write(&fstab, lines.join("\n") + "\n").unwrap();
    // What mount(8) -v says about each target, and its exit status.
    let mount_a = || {
        let out = h.run(&["-a", "-v", "--fstab", s(&fstab)]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let about = |target: &PathBuf| {
            said.lines()
                .find(|l| l.starts_with(s(target)) && l.contains(": "))
                .map(|l| l.rsplit(": ").next().unwrap().to_string())
        };
        let words: Vec<Option<String>> = targets.iter().map(about).collect();
        (out.status.code(), words, stderr(&out))
    };
    let mounted = || {
        let mut sources: Vec<(PathBuf, String)> = h
            .env
            .our_mounts()
            .into_iter()
            .map(|m| (m.mount_point, m.source))
            .collect();
        sources.sort();
        sources
    };
    let success = Some("successfully mounted".to_string());
    let already = Some("already mounted".to_string());

    let (code, words, err) = mount_a();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(words, [success.clone(), success.clone()], "{err}");
    let first = mounted();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0], (targets[0].clone(), "idmap-overlay:web-1".into()));
    let generated = first[1].1.trim_start_matches("idmap-overlay:").to_string();

    let (code, words, err) = mount_a();
    assert_eq!(words, [already.clone(), None], "{err}");
    assert_eq!(code, Some(32), "the untagged line's helper failed: {err}");
    // The library's warning names the record, the helper's error what
    // makes mount -a skip the line.
    assert!(
        err.contains(&format!("(record {generated}); nothing done")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "mount.idmap-overlay: {}: already mounted; mount -a skips it when its source (fstab's first field) is idmap-overlay:{generated}, not \"none\"",
            s(&targets[1])
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    assert_eq!(mounted(), first, "nothing mounted twice");

    // The source it names makes mount(8) see that line mounted too.
    fs::write(
        &fstab,
        lines
            .join("\n")
            .replace("none ", &format!("idmap-overlay:{generated} "))
            + "\n",
    )
    .unwrap();
    let (code, words, err) = mount_a();
    assert_eq!(
        (code, words),
        (Some(0), vec![already.clone(), already.clone()]),
        "{err}"
    );

    // Unmounted behind the tool's back, the tagged line mounts again
    // under its id (its stale record is replaced).
    h.env.plain_umount(&targets[0]);
    let (code, words, err) = mount_a();
    assert_eq!((code, words), (Some(0), vec![success, already]), "{err}");
    assert_eq!(mounted()[0].1, "idmap-overlay:web-1");
    for target in &targets {
        h.env.ok(&["umount", s(target)]);
    }
    h.env.assert_clean();
}

#[test]
fn exit_codes_are_mount_8s() {
    let h = HelperEnv::new();
    let (options, target) = h.overlay();

    // Usage: no id map at all.
    let lower_only = options.split(",uidmap=").next().unwrap().to_string();
    let out = h.run(&["-t", "idmap-overlay", "-o", &lower_only, "none", s(&target)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mount.idmap-overlay: "),
        "{}",
        stderr(&out)
    );

    // Mount failure: overlayfs refuses an option.
    let bad = format!("{options},no-such-overlay-option");
    let out = h.run(&["-t", "idmap-overlay", "-o", &bad, "none", s(&target)]);
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    h.env.assert_clean();

    // Sloppy (-s): the unknown option is dropped with a warning.
    let out = h.run(&["-s", "-t", "idmap-overlay", "-o", &bad, "none", s(&target)]);
    ok(&out, "mount -s");
    assert!(stderr(&out).contains("no-such-overlay-option"));
    h.assert_mounted(&target);
    h.umount_and_check_clean(&target);

    // Fake (-f): checked, nothing mounted.
    let out = h.run(&[
        "-f",
        "-t",
        "idmap-overlay",
        "-o",
        &options,
        "none",
        s(&target),
    ]);
    ok(&out, "mount -f");
    h.env.assert_clean();
}

#[test]
fn the_helper_alone_speaks_mount_8s_conventions() {
    let env = Env::new();
    let dir = env.mkdir("bin");
    let helper = dir.join("mount.idmap-overlay");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let run = |args: &[&str]| {
        env.ns
            .command(s(&helper))
            .args(args)
            .env_clear()
            .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
            .output()
            .unwrap()
    };
    let out = run(&["-h"]);
    ok(&out, "mount.idmap-overlay -h");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: mount.idmap-overlay"));
    for bad in [&["none"][..], &["none", "/x", "-q"], &["none", "/x", "-o"]] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("usage: mount.idmap-overlay"));
    }
    // The binary under its own name is unaffected.
    let out = env.run(&["--version"]);
    ok(&out, "idmap-overlay --version");
}

#[test]
fn dash_n_mounts_in_the_named_namespace() {
    let h = HelperEnv::new();
    let (options, target) = h.overlay();
    let other = Namespace::new();
    let ns = format!("/proc/{}/ns/mnt", other.pid());
    let out = h.run(&[
        "-N",
        &ns,
        "-t",
        "idmap-overlay",
        "-o",
        &options,
        "none",
        s(&target),
    ]);
    ok(&out, "mount -N");
    // In the other namespace, not in the one mount(8) ran in.
    assert_eq!(h.env.our_mounts().len(), 0);
    let there: Vec<MountLine> = other
        .mountinfo()
        .into_iter()
        .filter(|m| m.mount_point == target)
        .collect();
    assert_eq!(there.len(), 1, "{there:?}");
    assert!(there[0].source.starts_with("idmap-overlay:"));
    let out = other
        .command(BIN)
        .args(["umount", s(&target)])
        .env("IDMAP_OVERLAY_STATE_DIR", &h.env.state)
        .output()
        .unwrap();
    ok(&out, "umount in the other namespace");
    assert!(other.mountinfo().iter().all(|m| m.mount_point != target));
    assert_eq!(h.env.state_files("mounts"), Vec::<String>::new());
}

/// The helper refuses a non-root caller before it acts on anything: not
/// even `-f` (which resolves the paths) or `-N` (which enters a namespace)
/// get to run.
#[test]
fn the_helper_checks_root_before_f_and_n() {
    let env = Env::new();
    let layers = env.layers(2);
    let target = env.mkdir("mnt");
    let helper = env.mkdir("bin").join("mount.idmap-overlay");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let options = format!("lowerdir={},uidmap=0:100000:65536", join(&layers));
    let ns = format!("/proc/{}/ns/mnt", env.ns.pid());
    for extra in [&["-f"][..], &["-N", &ns], &["-f", "-N", &ns]] {
        let out = env
            .ns
            .command("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&helper)
            .args(extra)
            .args(["-o", &options, "none", s(&target)])
            .env_clear()
            .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("must be run as root"),
            "{extra:?}: {}",
            stderr(&out)
        );
    }
    assert!(!env.state.exists());
}
