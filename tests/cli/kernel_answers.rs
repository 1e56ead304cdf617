//! Issue 19: whether an overlay lives on is a question for the kernel (its
//! superblock), never for strings a user writes. An ordinary user (uid
//! 65534, `unshare -Urm`) can copy the test's mount namespace, hide a copy
//! of root's overlay behind an overlay with an empty source, keep a copy
//! that no process uses, make a propagated copy private, write root's
//! upperdir path into their own overlay's options, forge a source tag,
//! mount on a non-UTF-8 name, or make 20,000 mount namespaces. None of that
//! may make the tool drop a record whose overlay lives, let a second
//! overlay onto a live upperdir or workdir, refuse what is fine, fail, or
//! run past its deadline.
//!
//! Every test says which guard it proves. The user's processes run inside
//! the test's namespace (nsenter, then setpriv to 65534), so every
//! namespace they make is a copy of the test's, never of the host's; each
//! is killed by pid when the test ends.

use crate::support::*;
use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NOBODY: u32 = 65534;

/// capability(7)'s number of CAP_SYS_RESOURCE (raising a hard limit).
const CAP_SYS_RESOURCE: u32 = 24;

/// The slack the contract allows past `--timeout`, and for a signal.
const SLACK: Duration = Duration::from_millis(500);

/// A directory owned by uid 65534, mode 0755.
fn nobody_dir(env: &Env, rel: &str) -> PathBuf {
    let dir = env.mkdir(rel);
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The nsfs inode of `pid`'s mount namespace.
fn mount_ns_of(pid: u32) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/mnt")).unwrap().ino()
}

/// (mount point, filesystem type, source) of every mount in `pid`'s mount
/// namespace, as bytes (mountinfo's escapes left as they are).
fn mounts_of(pid: u32) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let text = fs::read(format!("/proc/{pid}/mountinfo")).unwrap();
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
            let sep = f.iter().position(|x| *x == b"-").unwrap();
            (f[4].to_vec(), f[sep + 1].to_vec(), f[sep + 2].to_vec())
        })
        .collect()
}

/// Is an overlay attached at `path` in `pid`'s mount namespace?
fn overlay_at(pid: u32, path: &Path) -> bool {
    mounts_of(pid)
        .iter()
        .any(|(at, fs, _)| at == path.as_os_str().as_bytes() && fs == b"overlay")
}

/// Is an overlay attached at `target` in the test's namespace?
fn overlay_here(env: &Env, target: &Path) -> bool {
    overlay_at(env.ns.pid(), target)
}

/// A shell of uid 65534, started in the test's namespace, either as it is
/// (no privilege at all) or in a user and mount namespace of its own
/// (`unshare -Urm`, so a copy of the test's mount table and root in it).
/// Commands are written to its stdin; it is killed by pid when dropped.
struct UserShell {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl UserShell {
    /// In the test's mount namespace, as uid 65534 without privilege.
    fn here(env: &Env) -> UserShell {
        UserShell::start(env, None)
    }

    /// In a user and mount namespace of its own, made from the test's
    /// (`unshare -Urm` with `extra` options, e.g. `--propagation unchanged`).
    fn own_namespace(env: &Env, extra: &[&str]) -> UserShell {
        let shell = UserShell::start(env, Some(extra));
        assert_ne!(
            mount_ns_of(shell.pid()),
            mount_ns_of(env.ns.pid()),
            "the user's shell is in the test's namespace"
        );
        shell
    }

    fn start(env: &Env, unshare: Option<&[&str]>) -> UserShell {
        let mut cmd = env.ns.command("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        if let Some(extra) = unshare {
            cmd.args(["unshare", "-Urm"]).args(extra).arg("--");
        }
        // mount(8) in the user's namespace keeps no utab of the test's.
        cmd.args(["sh", "-s"]).env_remove("LIBMOUNT_UTAB");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        let mut shell = UserShell {
            child,
            stdin,
            lines,
        };
        // nsenter, setpriv and unshare exec each other: the child is the
        // shell, once it answers.
        shell.ok("true");
        let status = fs::read_to_string(format!("/proc/{}/status", shell.pid())).unwrap();
        assert!(
            status.contains("Name:\tsh\n") && status.contains("Uid:\t65534\t65534\t65534\t65534"),
            "{status}"
        );
        shell
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `script` in the shell itself (so `cd` and `exec 7<...` stay):
    /// its exit status and what it printed (stderr included).
    fn run(&mut self, script: &str) -> (i32, String) {
        writeln!(self.stdin, "{{\n{script}\n}} 2>&1; echo \"@@rc=$?\"").unwrap();
        self.stdin.flush().unwrap();
        let mut said = String::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("the user's shell stopped answering ({e}): {said}"));
            if let Some(rc) = line.strip_prefix("@@rc=") {
                return (rc.parse().unwrap(), said);
            }
            said.push_str(&line);
            said.push('\n');
        }
    }

    fn ok(&mut self, script: &str) -> String {
        let (rc, said) = self.run(script);
        assert_eq!(rc, 0, "as uid 65534: {script}: {said}");
        said
    }

    /// Kills the shell (by pid) and reaps it.
    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for UserShell {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Root's overlay, mounted by the tool; `case` names the variant a test
/// runs in failure messages.
struct Ours {
    case: String,
    id: String,
    target: PathBuf,
    layers: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
}

/// Mounts `layers` at `<name>` with `<name>-upper` and `<name>-work`.
fn mount_rw(env: &Env, layers: &[PathBuf], strategy: &str, name: &str) -> Ours {
    let target = env.mkdir(name);
    let upper = env.mkdir(&format!("{name}-upper"));
    let work = env.mkdir(&format!("{name}-work"));
    let id = env
        .ok(&mount_args_with(
            strategy,
            layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ))
        .trim()
        .to_string();
    assert!(overlay_here(env, &target));
    Ours {
        case: name.to_string(),
        id,
        target,
        layers: layers.to_vec(),
        upper: Some(upper),
        work: Some(work),
    }
}

/// A read-only overlay of two layers at `<name>`: no upper, no work.
fn mount_ro(env: &Env, layers: &[PathBuf], name: &str) -> Ours {
    let target = env.mkdir(name);
    let id = env
        .ok(&mount_args("auto", layers, &target))
        .trim()
        .to_string();
    assert!(overlay_here(env, &target));
    Ours {
        case: name.to_string(),
        id,
        target,
        layers: layers.to_vec(),
        upper: None,
        work: None,
    }
}

/// The record's state as `inspect --json` shows it; `None` without one.
fn record_state(env: &Env, id: &str) -> Option<String> {
    let out = env.run(&["inspect", "--json"]);
    assert_eq!(out.status.code(), Some(0), "inspect: {}", stderr(&out));
    json(&out)["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["state"].as_str().unwrap().to_string())
}

fn record_exists(env: &Env, id: &str) -> bool {
    env.state.join(format!("mounts/{id}.json")).exists()
}

/// Is an overlay attached at `target` in the mount namespace of the
/// namespace file `ns` (`/proc/PID/ns/mnt`, `/proc/PID/fd/N`)?
fn copy_lives(ns: &str, target: &Path) -> bool {
    let out = Command::new("nsenter")
        .arg(format!("--mount={ns}"))
        .args(["--", "cat", "/proc/self/mountinfo"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter --mount={ns}: {}",
        stderr(&out)
    );
    out.stdout.split(|b| *b == b'\n').any(|line| {
        let f: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
        f.len() > 4
            && f[4] == target.as_os_str().as_bytes()
            && f.iter().skip_while(|x| **x != b"-").nth(1) == Some(&&b"overlay"[..])
    })
}

/// `umount ARGS` of root's overlay while a copy lives on in the namespace
/// of `copy_ns`: exits `code`, our overlay is gone from here, and the
/// record is kept as `detached`. Returns the output.
fn umount_keeps_it_detached(
    env: &Env,
    ours: &Ours,
    args: &[&str],
    code: i32,
    copy_ns: &str,
) -> Output {
    let case = &ours.case;
    let out = env.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case}: {args:?}: {}",
        stderr(&out)
    );
    assert!(
        !overlay_here(env, &ours.target),
        "{case}: {args:?}: still mounted here: {}",
        stderr(&out)
    );
    assert!(
        copy_lives(copy_ns, &ours.target),
        "{case}: the copy in {copy_ns} is gone: the test proves nothing"
    );
    assert_eq!(
        record_state(env, &ours.id).as_deref(),
        Some("detached"),
        "{case}: {args:?} dropped (or did not detach) the record of an overlay that lives on in \
         another namespace: {}",
        stderr(&out)
    );
    out
}

/// `gc` keeps the `detached` record while the copy lives.
fn gc_keeps_it(env: &Env, ours: &Ours) {
    let case = &ours.case;
    let out = env.run(&["gc"]);
    assert_eq!(out.status.code(), Some(0), "{case}: gc: {}", stderr(&out));
    assert_eq!(
        record_state(env, &ours.id).as_deref(),
        Some("detached"),
        "{case}: gc dropped the record of an overlay that lives on in another namespace: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A second overlay on root's upperdir (same state dir, another workdir)
/// and on root's workdir (another state dir, another upperdir) is refused
/// with exit 32, naming the directory, while the copy in `copy_ns` (a
/// mount namespace file) lives. If one is mounted, the failure says
/// whether a file written through the copy shows up in the new overlay.
fn second_mounts_refused(env: &Env, ours: &Ours, copy_ns: &str) {
    let case = &ours.case;
    let (upper, work) = (ours.upper.as_ref().unwrap(), ours.work.as_ref().unwrap());
    let second = env.mkdir("second");
    let (other_upper, other_work) = (env.mkdir("second-upper"), env.mkdir("second-work"));
    let state_b = env.path("state-b");
    for (what, dir, u, w, state) in [
        ("upperdir", upper, upper, &other_work, None),
        ("workdir", work, &other_upper, work, Some(&state_b)),
    ] {
        let mut args: Vec<String> = Vec::new();
        if let Some(state) = state {
            args.extend(["--state-dir".to_string(), s(state).to_string()]);
        }
        args.extend(mount_args_with(
            "auto",
            &ours.layers,
            &second,
            &["--upperdir", s(u), "--workdir", s(w)],
        ));
        let out = env.run(&args);
        if out.status.success() {
            let mut seen = String::new();
            if what == "upperdir" {
                let marker = "written-through-the-copy";
                let _ = Command::new("nsenter")
                    .arg(format!("--mount={copy_ns}"))
                    .args(["--", "sh", "-c"])
                    .arg(format!("echo x > {}/{marker}", s(&ours.target)))
                    .status();
                if env.ns.path(&second.join(marker)).exists() {
                    seen = format!(
                        "; a file written through the live copy appears in the new overlay at {}",
                        second.display()
                    );
                }
            }
            panic!(
                "{case}: a second overlay was mounted on the {what} {} of an overlay that lives \
                 on in another namespace{seen}",
                dir.display()
            );
        }
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(32),
            "{case}: second mount on the {what}: {err}"
        );
        assert!(
            err.contains(s(dir)),
            "{case}: the refusal does not name the {what} {}: {err}",
            dir.display()
        );
        assert!(
            !overlay_here(env, &second),
            "{case}: second mount on the {what}"
        );
    }
    assert_eq!(env.state_files("mounts"), [format!("{}.json", ours.id)]);
    assert!(
        fs::read_dir(state_b.join("mounts")).map_or(true, |mut d| d.next().is_none()),
        "{case}: a record was left in the second state directory"
    );
}

/// Once every copy is gone (the kernel frees a namespace a moment after
/// its last reference), `gc` removes the record.
fn gc_removes_it_once_gone(env: &Env, ours: &Ours) {
    for _ in 0..500 {
        let out = env.run(&["gc"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: gc: {}",
            ours.case,
            stderr(&out)
        );
        if !record_exists(env, &ours.id) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{}: gc kept the record {} after every copy of its overlay was gone",
        ours.case, ours.id
    );
}

/// Everything a test made is gone: our overlays here, the records, and the
/// second state directory's records.
fn assert_all_clean(env: &Env) {
    env.assert_clean();
    assert!(
        fs::read_dir(env.path("state-b/mounts")).map_or(true, |mut d| d.next().is_none()),
        "state-b not empty"
    );
}

/// Two lower layers owned by the user, and a mountpoint, for the user's
/// own overlays: `home/a`, `home/b`, `home/t`.
fn user_home(env: &Env) -> PathBuf {
    let home = nobody_dir(env, "home");
    for d in ["a", "b", "t", "u", "w"] {
        nobody_dir(env, &format!("home/{d}"));
    }
    home
}

/// The user's overlay with an empty source (`mount -t overlay "" ...`) at
/// `home/t`, in the user's namespace.
fn empty_source_overlay(user: &mut UserShell, home: &Path) {
    let h = s(home);
    user.ok(&format!(
        "mount -t overlay '' -o lowerdir={h}/a:{h}/b {h}/t"
    ));
    assert!(
        mounts_of(user.pid())
            .iter()
            .any(|(at, fs, src)| at == home.join("t").as_os_str().as_bytes()
                && fs == b"overlay"
                && src.is_empty()),
        "no empty-source overlay in the user's namespace"
    );
}

/// A user process in the test's namespace (root and cwd elsewhere) that
/// holds `user`'s mount namespace open on fd 7; `user` is then killed, so
/// no process is left in that namespace. Returns the keeper.
fn keep_namespace_by_fd(env: &Env, user: UserShell) -> UserShell {
    let ns = mount_ns_of(user.pid());
    let mut keeper = UserShell::here(env);
    keeper.ok(&format!("exec 7</proc/{}/ns/mnt", user.pid()));
    assert_eq!(
        fs::read_link(format!("/proc/{}/fd/7", keeper.pid())).unwrap(),
        PathBuf::from(format!("mnt:[{ns}]"))
    );
    user.stop();
    keeper
}

// ---------------------------------------------------------------------
// Hidden copies
// ---------------------------------------------------------------------

/// Guard: a copy is found by its superblock, not by reading the user's
/// mount table. The user copies the test's namespace after root mounts,
/// mounts an overlay with an empty source in the copy (statmount has no
/// source string for it), and keeps that namespace by an open namespace
/// file only. umount must keep the record `detached`, gc must keep it, a
/// second overlay on the upperdir or workdir must be refused; once the
/// namespace ends, gc removes the record.
#[test]
fn an_empty_source_overlay_in_a_copied_namespace_hides_nothing() {
    let env = Env::new();
    let home = user_home(&env);
    let layers = env.layers(2);
    let ours = mount_rw(&env, &layers, "auto", "mnt");
    let mut copy = UserShell::own_namespace(&env, &[]);
    assert!(
        overlay_at(copy.pid(), &ours.target),
        "no copy in the user's namespace"
    );
    empty_source_overlay(&mut copy, &home);
    let keeper = keep_namespace_by_fd(&env, copy);
    let copy_ns = format!("/proc/{}/fd/7", keeper.pid());

    let out = umount_keeps_it_detached(
        &env,
        &ours,
        &["umount", "--timeout", &walk_timeout(1000), s(&ours.target)],
        0,
        &copy_ns,
    );
    assert!(!stderr(&out).trim().is_empty(), "no warning on stderr");
    gc_keeps_it(&env, &ours);
    second_mounts_refused(&env, &ours, &copy_ns);

    keeper.stop();
    gc_removes_it_once_gone(&env, &ours);
    assert_all_clean(&env);
}

/// Guard: our unmount reaching every copy is not assumed. The test's
/// directory `shared` is a shared mount; the user's namespace, made before
/// root mounts, receives root's overlay by propagation (as a slave), then
/// the user makes everything private, so our unmount no longer reaches the
/// copy. Twice: with the user's namespace kept by its shell (root and cwd
/// elsewhere), and hidden as above (an empty-source overlay, the namespace
/// kept by an open namespace file only). The same expectations: record
/// `detached`, kept by gc, second mounts refused, removed once gone.
#[test]
fn a_copy_made_private_after_propagation_keeps_the_record() {
    for hidden in [false, true] {
        let env = Env::new();
        let home = user_home(&env);
        let layers = env.layers(2);
        let shared = env.mkdir("shared");
        sh(
            &env,
            &format!(
                "mount --bind {0} {0} && mount --make-shared {0}",
                s(&shared)
            ),
        );
        let mut copy = UserShell::own_namespace(&env, &["--propagation", "unchanged"]);
        let mut ours = mount_rw(&env, &layers, "auto", "shared/mnt");
        ours.case = if hidden {
            "made private, hidden by an empty source".to_string()
        } else {
            "made private".to_string()
        };
        assert!(
            overlay_at(copy.pid(), &ours.target),
            "hidden={hidden}: root's overlay did not propagate into the user's namespace"
        );
        copy.ok("mount --make-rprivate /");
        let (keeper, copy_ns) = if hidden {
            empty_source_overlay(&mut copy, &home);
            let keeper = keep_namespace_by_fd(&env, copy);
            let ns = format!("/proc/{}/fd/7", keeper.pid());
            (keeper, ns)
        } else {
            let ns = format!("/proc/{}/ns/mnt", copy.pid());
            (copy, ns)
        };

        let out = umount_keeps_it_detached(
            &env,
            &ours,
            &["umount", "--timeout", &walk_timeout(1000), s(&ours.target)],
            0,
            &copy_ns,
        );
        assert!(
            !stderr(&out).trim().is_empty(),
            "hidden={hidden}: no warning"
        );
        gc_keeps_it(&env, &ours);
        second_mounts_refused(&env, &ours, &copy_ns);

        keeper.stop();
        gc_removes_it_once_gone(&env, &ours);
        sh(&env, &format!("umount {}", s(&shared)));
        assert_all_clean(&env);
    }
}

/// Guard: a copy that no process uses still counts as alive. Whatever
/// keeps it (a process of the user in the copy whose root and cwd are
/// elsewhere; an open namespace file of a process elsewhere; a bind mount
/// of the namespace file inside the user's own namespace, which holds no
/// copy itself), umount exits 0 with a warning but keeps the record
/// `detached`; gc keeps it; the upperdir and workdir stay refused; once the
/// copy is gone gc removes the record. A tool that drops the record
/// because nobody uses the copy turns this red.
#[test]
fn an_idle_copy_that_no_process_uses_keeps_the_record() {
    for how in [
        "process elsewhere",
        "open namespace file",
        "bind-mounted namespace file",
    ] {
        let env = Env::new();
        let home = user_home(&env);
        let layers = env.layers(2);
        // For the bind mount, the user's namespace is made first and gets
        // root's overlay by propagation: a propagated mount the user may
        // unmount there, so that only the bound namespace keeps a copy.
        let bind = how == "bind-mounted namespace file";
        let shared = env.mkdir("shared");
        let mut early = None;
        if bind {
            sh(
                &env,
                &format!(
                    "mount --bind {0} {0} && mount --make-shared {0}",
                    s(&shared)
                ),
            );
            early = Some(UserShell::own_namespace(
                &env,
                &["--propagation", "unchanged"],
            ));
        }
        let mut ours = mount_rw(&env, &layers, "auto", "shared/mnt");
        ours.case = how.to_string();
        let (keeper, copy_ns) = match how {
            "process elsewhere" => {
                let copy = UserShell::own_namespace(&env, &[]);
                assert!(overlay_at(copy.pid(), &ours.target), "{how}: no copy");
                let ns = format!("/proc/{}/ns/mnt", copy.pid());
                (copy, ns)
            }
            "open namespace file" => {
                let copy = UserShell::own_namespace(&env, &[]);
                assert!(overlay_at(copy.pid(), &ours.target), "{how}: no copy");
                let keeper = keep_namespace_by_fd(&env, copy);
                let ns = format!("/proc/{}/fd/7", keeper.pid());
                (keeper, ns)
            }
            _ => {
                let mut user = early.take().unwrap();
                assert!(
                    overlay_at(user.pid(), &ours.target),
                    "{how}: root's overlay did not propagate into the user's namespace"
                );
                // A namespace made inside the user's (a copy of it, with
                // the overlay), its file bind-mounted in the user's
                // namespace, its process gone. The kernel refuses the bind
                // now and then (its loop check compares namespace ids,
                // handed out in per-CPU batches): a new one is tried.
                let file = home.join("nsfile");
                let mut bound = false;
                for _ in 0..20 {
                    let pid = user.ok(&format!(
                        "unshare -m sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; touch {}",
                        s(&file)
                    ));
                    let pid: u32 = pid.trim().parse().unwrap();
                    for _ in 0..500 {
                        if mount_ns_of(pid) != mount_ns_of(user.pid()) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    let (rc, _) =
                        user.run(&format!("mount --bind /proc/{pid}/ns/mnt {}", s(&file)));
                    user.ok(&format!("kill -9 {pid}; wait {pid} 2>/dev/null; true"));
                    if rc == 0 {
                        bound = true;
                        break;
                    }
                }
                assert!(bound, "the kernel never let the user bind a namespace file");
                // The user's own namespace lets its copy go.
                user.ok(&format!("umount {}", s(&ours.target)));
                assert!(!overlay_at(user.pid(), &ours.target));
                let ns = format!("/proc/{}/root{}", user.pid(), s(&file));
                (user, ns)
            }
        };

        let out = umount_keeps_it_detached(
            &env,
            &ours,
            &["umount", "--timeout", &walk_timeout(1000), s(&ours.target)],
            0,
            &copy_ns,
        );
        assert!(
            !stderr(&out).trim().is_empty(),
            "{how}: no warning on stderr"
        );
        gc_keeps_it(&env, &ours);
        second_mounts_refused(&env, &ours, &copy_ns);

        keeper.stop();
        gc_removes_it_once_gone(&env, &ours);
        if bind {
            sh(&env, &format!("umount {}", s(&shared)));
        }
        assert_all_clean(&env);
    }
}

// ---------------------------------------------------------------------
// What users write: option text, source tags
// ---------------------------------------------------------------------

/// Guard: "in use" is asked of the directory, not of option text. In their
/// own namespace the user mounts a tmpfs over the parent of root's upper
/// and work directories, makes directories of the same names there and an
/// overlay on them: its options read `upperdir=<root's upperdir>,
/// workdir=<root's workdir>`, but they are other directories. Root's mount
/// on the real ones succeeds, with every strategy, and writes land in
/// root's upperdir, not the user's.
#[test]
fn equal_path_text_does_not_block_roots_mount() {
    let env = Env::new();
    let home = user_home(&env);
    let layers = env.layers(2);
    let c = env.mkdir("c");
    let (upper, work) = (env.mkdir("c/upper"), env.mkdir("c/work"));
    let mut user = UserShell::own_namespace(&env, &[]);
    let cs = s(&c);
    user.ok(&format!(
        "mount -t tmpfs tmpfs {cs} && mkdir {cs}/upper {cs}/work {cs}/l1 {cs}/l2 && \
         mount -t overlay theirs -o lowerdir={cs}/l1:{cs}/l2,upperdir={cs}/upper,workdir={cs}/work {}/t",
        s(&home)
    ));
    let theirs = fs::read_to_string(format!("/proc/{}/mountinfo", user.pid())).unwrap();
    assert!(
        theirs.contains(&format!("upperdir={cs}/upper,workdir={cs}/work")),
        "the user's overlay does not show root's paths: {theirs}"
    );
    for strategy in strategies() {
        let target = env.mkdir("mnt");
        let out = env.run(&mount_args_with(
            strategy,
            &layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{strategy}: the user's option text blocked root's mount: {}",
            stderr(&out)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Written through root's overlay: in root's upperdir, not the user's.
        let name = format!("from-root-{strategy}");
        fs::write(env.ns.path(&target.join(&name)), "root\n").unwrap();
        assert!(
            upper.join(&name).exists(),
            "{strategy}: not in root's upperdir"
        );
        assert!(
            !PathBuf::from(format!("/proc/{}/root{}/upper/{name}", user.pid(), cs)).exists(),
            "{strategy}: the write went to the user's upperdir"
        );
        env.ok(&["umount", &id]);
    }
    user.stop();
    assert_all_clean(&env);
}

/// A common-dir mount killed after its overlay is mounted (before its
/// temporary idmapped mount under `<state>/tmp/<id>/` is unmounted), and
/// the user's own namespace, made before it (so it holds no copy of
/// root's mounts), where the user mounts an overlay tagged
/// `idmap-overlay:<id>` at the same path. Returns (user, id, target).
fn crashed_mount_and_a_forged_tag(env: &Env) -> (UserShell, String, PathBuf) {
    let home = user_home(env);
    let layers = env.layers(2);
    let (upper, work, target) = (env.mkdir("upper"), env.mkdir("work"), env.mkdir("mnt"));
    let mut user = UserShell::own_namespace(env, &[]);
    let out = env.run_at(
        "overlay-mounted:kill",
        &mount_args_with(
            "common-dir",
            &layers,
            &target,
            &["--upperdir", s(&upper), "--workdir", s(&work)],
        ),
    );
    assert_eq!(out.status.signal(), Some(9), "not killed: {}", stderr(&out));
    let records = env.state_files("mounts");
    assert_eq!(records.len(), 1, "{records:?}");
    let id = records[0].trim_end_matches(".json").to_string();
    let temp_root = env.state.join("tmp").join(&id);
    assert!(
        env.ns
            .mountinfo()
            .iter()
            .any(|m| m.idmapped() && m.mount_point.starts_with(&temp_root)),
        "no temporary idmapped mount leaked"
    );
    assert!(
        overlay_here(env, &target),
        "the crashed mount's overlay is not here"
    );
    // The id is readable by anyone in mountinfo; the user tags their own
    // overlay with it, at the same path, in their own namespace.
    let h = s(&home);
    user.ok(&format!(
        "mount -t overlay idmap-overlay:{id} -o lowerdir={h}/a:{h}/b {}",
        s(&target)
    ));
    let tag = format!("idmap-overlay:{id}");
    assert!(
        mounts_of(user.pid())
            .iter()
            .any(|(at, fs, src)| at == target.as_os_str().as_bytes()
                && fs == b"overlay"
                && src == tag.as_bytes()),
        "the forged overlay is not in the user's namespace"
    );
    (user, id, target)
}

/// Nothing of the crashed mount is left here: no overlay at the target, no
/// idmapped mount, no record, no temp directory.
fn assert_crash_rolled_back(env: &Env, target: &Path, what: &str) {
    assert!(!overlay_here(env, target), "{what}: the overlay stayed");
    let idmapped: Vec<_> = env
        .ns
        .mountinfo()
        .into_iter()
        .filter(|m| m.idmapped())
        .map(|m| m.mount_point)
        .collect();
    assert!(
        idmapped.is_empty(),
        "{what}: the temporary idmapped mount stayed attached: {idmapped:?}"
    );
    assert_eq!(
        env.state_files("mounts"),
        Vec::<String>::new(),
        "{what}: the record stayed ({:?})",
        record_state(env, env.state_files("mounts")[0].trim_end_matches(".json"))
    );
    env.assert_clean();
}

/// Guard: a source tag proves nothing. The user's forged
/// `idmap-overlay:<id>` overlay in their own namespace does not stop gc
/// from rolling back the crashed mount: the overlay and the leaked
/// temporary idmapped mount are unmounted, the record removed (exit 0);
/// the user's overlay is left alone.
#[test]
fn a_forged_tag_does_not_stop_gc_rolling_back_a_crash() {
    let env = Env::new();
    let (user, _id, target) = crashed_mount_and_a_forged_tag(&env);
    let out = env.run(&["gc", "--json"]);
    assert_eq!(out.status.code(), Some(0), "gc: {}", stderr(&out));
    assert_crash_rolled_back(
        &env,
        &target,
        &format!("gc: {}", String::from_utf8_lossy(&out.stdout)),
    );
    assert!(
        overlay_at(user.pid(), &target),
        "the user's overlay was touched"
    );
    user.stop();
    assert_all_clean(&env);
}

/// Guard: the same forged tag does not fool `umount <id>`: it neither
/// refuses nor keeps the record as if the overlay lived on elsewhere; it
/// unmounts the crashed mount's overlay and temporary mount and removes
/// the record (exit 0).
#[test]
fn a_forged_tag_does_not_fool_umount() {
    let env = Env::new();
    let (user, id, target) = crashed_mount_and_a_forged_tag(&env);
    let out = env.run(&["umount", "--timeout", "1s", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "umount refused because of the user's forged tag: {}",
        stderr(&out)
    );
    assert_crash_rolled_back(&env, &target, &format!("umount: {}", stderr(&out)));
    assert!(
        overlay_at(user.pid(), &target),
        "the user's overlay was touched"
    );
    user.stop();
    assert_all_clean(&env);
}

// ---------------------------------------------------------------------
// Strategies and state directories
// ---------------------------------------------------------------------

/// Guard: in use is asked of the kernel, whatever strategy made the first
/// overlay (common-dir and per-layer show fd numbers as its options) and
/// whatever state directory recorded it. For every pair of strategies: an
/// overlay recorded in one state directory, then a mount in another state
/// directory on its upperdir (another workdir), then on its workdir
/// (another upperdir): both refused with exit 32, naming the directory;
/// nothing mounted, nothing recorded.
#[test]
fn two_state_dirs_on_one_upperdir_are_refused_with_every_strategy() {
    for first in strategies() {
        let env = Env::new();
        let layers = env.layers(2);
        let ours = mount_rw(&env, &layers, first, "mnt");
        let (upper, work) = (ours.upper.clone().unwrap(), ours.work.clone().unwrap());
        let state_b = env.path("state-b");
        let second = env.mkdir("second");
        let (other_upper, other_work) = (env.mkdir("other-upper"), env.mkdir("other-work"));
        for then in strategies() {
            for (what, dir, u, w) in [
                ("upperdir", &upper, &upper, &other_work),
                ("workdir", &work, &other_upper, &work),
            ] {
                let case = format!("{first} then {then}, same {what}");
                let mut args = vec!["--state-dir".to_string(), s(&state_b).to_string()];
                args.extend(mount_args_with(
                    then,
                    &layers,
                    &second,
                    &["--upperdir", s(u), "--workdir", s(w)],
                ));
                let out = env.run(&args);
                let err = stderr(&out);
                assert_eq!(
                    out.status.code(),
                    Some(32),
                    "{case}: a second overlay on one {what} ({}): {err}",
                    dir.display()
                );
                assert!(
                    err.contains(s(dir)),
                    "{case}: the refusal does not name it: {err}"
                );
                assert!(!overlay_here(&env, &second), "{case}: mounted");
                assert!(
                    fs::read_dir(state_b.join("mounts")).map_or(true, |mut d| d.next().is_none()),
                    "{case}: recorded"
                );
            }
        }
        assert!(overlay_here(&env, &ours.target));
        env.ok(&["umount", &ours.id]);
        assert_all_clean(&env);
    }
}

// ---------------------------------------------------------------------
// Mount tables as bytes
// ---------------------------------------------------------------------

/// Guard: mount tables are read as bytes. A tmpfs on `bad\xff` (and with a
/// non-UTF-8 source) here, and in the user's namespace a tmpfs on
/// `bad\xfe` and an overlay whose layers, upper and work directories have
/// non-UTF-8 names: inspect (table, JSON, leaks, leaks as JSON), gc and
/// gc --json all exit 0, their JSON parses, and root's overlay still
/// unmounts.
#[test]
fn non_utf8_mounts_here_and_elsewhere_break_nothing() {
    let env = Env::new();
    let home = user_home(&env);
    let layers = env.layers(2);
    // Made first: the user's namespace holds no copy of root's overlay.
    let mut user = UserShell::own_namespace(&env, &[]);
    let ours = mount_rw(&env, &layers, "auto", "mnt");
    let d = s(env.dir.path()).to_string();
    sh(
        &env,
        &format!(
            "b=$(printf 'bad\\377'); mkdir \"{d}/$b\" && mount -t tmpfs \"$(printf 'src\\377')\" \"{d}/$b\""
        ),
    );
    let h = s(&home);
    user.ok(&format!(
        "b=$(printf 'bad\\376'); mkdir \"{h}/$b\" && mount -t tmpfs \"$(printf 'src\\376')\" \"{h}/$b\" && \
         cd \"{h}/$b\" && mkdir \"l1$b\" \"l2$b\" \"u$b\" \"w$b\" \"t$b\" && \
         mount -t overlay \"$(printf 'ovl\\375')\" -o \"lowerdir={h}/$b/l1$b:{h}/$b/l2$b,upperdir={h}/$b/u$b,workdir={h}/$b/w$b\" \"{h}/$b/t$b\" && \
         cd /"
    ));
    for args in [
        &["inspect"][..],
        &["inspect", "--json"],
        &["inspect", "--leaks"],
        &["inspect", "--leaks", "--json"],
        &["inspect", &ours.id],
        &["gc"],
        &["gc", "--json"],
    ] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        if args.contains(&"--json") {
            json(&out);
        }
    }
    assert_eq!(record_state(&env, &ours.id).as_deref(), Some("mounted"));
    env.ok(&["umount", s(&ours.target)]);
    user.stop();
    sh(&env, &format!("umount \"{d}/$(printf 'bad\\377')\""));
    assert_all_clean(&env);
}

// ---------------------------------------------------------------------
// Bounded under a namespace flood
// ---------------------------------------------------------------------

/// `count` mount namespaces made by uid 65534, each kept alive by an open
/// file of `/proc/thread-self/ns/mnt` (the last by being the process's
/// own). Made by forked children of the test: each enters the test's
/// namespace (so every namespace is a copy of it, with root's overlays),
/// raises its file limit as far as it may, becomes 65534, makes a user
/// namespace with a map and then unshares a mount namespace over and over.
/// One child when the file limit can be raised to `count`; else as many as
/// the limit needs (without CAP_SYS_RESOURCE the hard limit stays). Their
/// root and cwd stay on the test's `/`. Killed by pid when dropped, which
/// releases every namespace.
struct Flood {
    pids: Vec<libc::pid_t>,
}

impl Flood {
    fn start(env: &Env, count: usize) -> Flood {
        // What a child may open: the hard limit, unless root may raise it.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reading our own limit into a local struct.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        assert_eq!(got, 0, "getrlimit: {}", std::io::Error::last_os_error());
        let wanted = (count + 64) as libc::rlim_t;
        let can_raise = nix::unistd::geteuid().is_root()
            && fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
        let limit = if can_raise && limit.rlim_max < wanted {
            libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            }
        } else {
            libc::rlimit {
                rlim_cur: limit.rlim_max.min(wanted),
                rlim_max: limit.rlim_max,
            }
        };
        // Each child keeps fds 0 (its pipe) and 1.. (namespaces), and one
        // namespace as its own.
        let per_child = (limit.rlim_cur as usize).saturating_sub(8).max(1);
        let children = count.div_ceil(per_child);
        if children > 1 {
            let _ = writeln!(
                std::io::stderr(),
                "kernel_answers: the file limit is {}, not raisable: {children} processes make the \
                 {count} namespaces",
                limit.rlim_cur
            );
        }
        let mut flood = Flood { pids: Vec::new() };
        let mut left = count;
        for n in 0..children {
            let share = left / (children - n);
            left -= share;
            flood.spawn(env, share, &limit);
        }
        flood
    }

    fn spawn(&mut self, env: &Env, count: usize, limit: &libc::rlimit) {
        let test_ns = fs::File::open(format!("/proc/{}/ns/mnt", env.ns.pid())).unwrap();
        let ns_fd = test_ns.as_raw_fd();
        let own_ns = CString::new("/proc/thread-self/ns/mnt").unwrap();
        let setgroups = CString::new("/proc/self/setgroups").unwrap();
        let uid_map = CString::new("/proc/self/uid_map").unwrap();
        let gid_map = CString::new("/proc/self/gid_map").unwrap();
        let map = b"0 65534 1\n";
        let deny = b"deny";
        let parent = std::process::id() as libc::pid_t;
        let mut ends = [0 as libc::c_int; 2];
        // SAFETY: a pipe into a local array.
        let piped = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(piped, 0, "pipe2: {}", std::io::Error::last_os_error());
        let (read_end, write_end) = (ends[0], ends[1]);
        // SAFETY: the child makes only system calls on memory prepared
        // before the fork, never allocates, and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above; every path ends in _exit or pause.
            unsafe {
                // Nothing of the test's open files: fd 0 is the pipe, fd 1
                // the test's namespace, the rest closed.
                if libc::dup2(write_end, 0) != 0 || libc::dup2(ns_fd, 1) != 1 {
                    libc::_exit(1);
                }
                libc::syscall(libc::SYS_close_range, 2u32, u32::MAX, 0u32);
                let fail = |step: u8| -> ! {
                    let errno = *libc::__errno_location();
                    let report = [b'e', step, (errno & 0xff) as u8];
                    libc::write(0, report.as_ptr().cast(), report.len());
                    libc::_exit(1)
                };
                let write_file = |path: &CString, data: &[u8], step: u8| {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0
                        || libc::write(fd, data.as_ptr().cast(), data.len()) != data.len() as isize
                    {
                        fail(step);
                    }
                    libc::close(fd);
                };
                if libc::setns(1, libc::CLONE_NEWNS) != 0 {
                    fail(1);
                }
                libc::close(1);
                if libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0 {
                    fail(2);
                }
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(NOBODY, NOBODY, NOBODY) != 0
                    || libc::setresuid(NOBODY, NOBODY, NOBODY) != 0
                {
                    fail(3);
                }
                // Changing credentials made us undumpable: /proc/self
                // would be root's, its maps unwritable.
                libc::prctl(libc::PR_SET_DUMPABLE, 1);
                if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                    fail(4);
                }
                write_file(&setgroups, deny, 5);
                write_file(&uid_map, map, 6);
                write_file(&gid_map, map, 7);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                for n in 0..count {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        fail(8);
                    }
                    // The last one is kept by being ours.
                    if n + 1 < count
                        && libc::open(own_ns.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) < 0
                    {
                        fail(9);
                    }
                }
                let ready = [b'k'];
                libc::write(0, ready.as_ptr().cast(), 1);
                libc::close(0);
                loop {
                    libc::pause();
                }
            }
        }
        self.pids.push(pid);
        // SAFETY: closing our copy of the write end; reading into a local
        // buffer.
        let (n, answer) = unsafe {
            libc::close(write_end);
            let mut answer = [0u8; 3];
            let n = libc::read(read_end, answer.as_mut_ptr().cast(), answer.len());
            libc::close(read_end);
            (n, answer)
        };
        drop(test_ns);
        assert!(
            n >= 1 && answer[0] == b'k',
            "the flood failed at step {} with errno {} (read {n})",
            answer[1],
            answer[2]
        );
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: our own child, killed and reaped once.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Does process `pid` catch `signal` (its `SigCgt` mask in /proc)?
fn catches(pid: u32, signal: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Starts the tool with `args`, sends SIGTERM once it has run for `after`
/// (counted from when it catches SIGTERM), and returns its output and how
/// long it took to end after the signal.
fn terminate_after(env: &Env, args: &[&str], after: Duration) -> (Output, Duration) {
    let mut child = env
        .tool(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    while !catches(pid, libc::SIGTERM) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{args:?} never installed a handler for SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(after);
    if child.try_wait().unwrap().is_some() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "{args:?} ended before the signal ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    let sent = Instant::now();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (out, sent.elapsed())
}

/// Guard: nothing scales with what users make. With 20,000 mount
/// namespaces of uid 65534, each holding copies of root's overlays:
/// `umount --timeout 1s` (the copies are idle: exit 0, record `detached`)
/// and `gc --timeout 1s` end within the timeout + 0.5 s; a SIGTERM to a
/// running `umount` (a user's process has its cwd on a copy, so it waits)
/// and to a running `gc` (a crashed mount whose overlay is busy, so it
/// retries) is obeyed within 0.5 s with exit 8.
#[test]
fn twenty_thousand_namespaces_keep_umount_and_gc_bounded() {
    // Under emulation (the kernel matrix boots kernels in QEMU without
    // hardware help: ci/kernels/suite-init says so) everything runs some
    // twenty times slower in a 2 GiB machine: a tenth of the flood, and
    // four times the slack.
    let (namespaces, slack) = match emulated() {
        false => (20_000, SLACK),
        true => (2_000, SLACK * 4),
    };
    let _alone = alone();
    let env = Env::new();
    let layers = env.layers(2);
    let first = mount_rw(&env, &layers, "auto", "mnt1");
    let held = mount_rw(&env, &layers, "auto", "mnt2");
    // A user's process in a copy of the namespace with its cwd on `held`.
    let mut user = UserShell::own_namespace(&env, &[]);
    user.ok(&format!("cd {}", s(&held.target)));
    let flood_started = Instant::now();
    let flood = Flood::start(&env, namespaces);
    let _ = writeln!(
        std::io::stderr(),
        "kernel_answers: {namespaces} namespaces made in {:?}",
        flood_started.elapsed()
    );

    // Every namespace or process a walk looks at takes a millisecond more
    // (the `walk-step` fault point), as on a host far bigger than this
    // one: a walk that ignored its deadline would run for half a minute.
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let out = env.run_at(
        "walk-step:slow",
        &["umount", "--timeout", "200ms", s(&first.target)],
    );
    let took = started.elapsed();
    assert!(
        took <= timeout + slack,
        "umount --timeout 200ms took {took:?} beside {namespaces} namespaces (exit {:?}): {:.300}",
        out.status.code(),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "umount: {:.300}", stderr(&out));
    assert!(!overlay_here(&env, &first.target));
    assert_eq!(
        record_state(&env, &first.id).as_deref(),
        Some("detached"),
        "umount dropped the record of an overlay with {namespaces} copies"
    );

    let started = Instant::now();
    let out = env.run_at("walk-step:slow", &["gc", "--timeout", "200ms"]);
    let took = started.elapsed();
    assert!(
        took <= timeout + slack,
        "gc --timeout 200ms took {took:?} beside {namespaces} namespaces (exit {:?}): {:.300}",
        out.status.code(),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "gc: {:.300}", stderr(&out));
    assert_eq!(record_state(&env, &first.id).as_deref(), Some("detached"));

    // A running umount: the user's process uses a copy, so it waits.
    let (out, took) = terminate_after(
        &env,
        &["umount", "--timeout", "60s", s(&held.target)],
        Duration::from_millis(300),
    );
    assert_eq!(out.status.code(), Some(8), "umount: {:.300}", stderr(&out));
    assert!(
        took <= slack,
        "umount obeyed SIGTERM {took:?} after it beside {namespaces} namespaces"
    );
    assert!(
        record_exists(&env, &held.id),
        "the record of a used overlay was dropped"
    );

    // A running gc: a crashed mount (after the flood, so no copies) whose
    // overlay a process here keeps busy.
    let crashed = env.mkdir("mnt3");
    let out = env.run_at(
        "overlay-mounted:kill",
        &mount_args(best(), &layers, &crashed),
    );
    assert_eq!(out.status.signal(), Some(9), "not killed: {}", stderr(&out));
    let mut busy = hold_busy(&env, &crashed, "600");
    let (out, took) = terminate_after(
        &env,
        &["gc", "--timeout", "60s"],
        Duration::from_millis(300),
    );
    assert_eq!(out.status.code(), Some(8), "gc: {:.300}", stderr(&out));
    assert!(
        took <= slack,
        "gc obeyed SIGTERM {took:?} after it beside {namespaces} namespaces"
    );

    // Release everything: the namespaces, the user, the busy process; then
    // nothing of ours is left once gc has run (the kernel frees 20,000
    // namespaces in its own time).
    drop(flood);
    user.stop();
    let _ = busy.kill();
    let _ = busy.wait();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if overlay_here(&env, &held.target) {
            let _ = env.run(&["umount", "--timeout", "1s", s(&held.target)]);
        }
        let out = env.run(&["gc", "--timeout", "1s"]);
        if out.status.success() && env.state_files("mounts").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "records left after the flood ended: {:?} {:.300}",
            env.state_files("mounts"),
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_all_clean(&env);
}

// ---------------------------------------------------------------------
// Read-only overlays
// ---------------------------------------------------------------------

/// Guard: a read-only overlay (two layers, no upperdir: nothing for
/// overlayfs to mark in use) that lives on in a copy no process uses:
/// umount exits 0 and keeps the record `detached`; gc keeps it while the
/// copy lives and drops it once the copy is gone.
#[test]
fn a_read_only_overlay_with_an_idle_copy_elsewhere() {
    let env = Env::new();
    let layers = env.layers(2);
    let ours = mount_ro(&env, &layers, "mnt");
    let copy = UserShell::own_namespace(&env, &[]);
    assert!(overlay_at(copy.pid(), &ours.target));
    let keeper = keep_namespace_by_fd(&env, copy);
    let copy_ns = format!("/proc/{}/fd/7", keeper.pid());
    let out = umount_keeps_it_detached(
        &env,
        &ours,
        &["umount", "--timeout", &walk_timeout(1000), s(&ours.target)],
        0,
        &copy_ns,
    );
    assert!(!stderr(&out).trim().is_empty(), "no warning on stderr");
    gc_keeps_it(&env, &ours);
    // The metrics count it: found by the walk (no upperdir to ask about).
    assert_eq!(overlays_elsewhere(&env), "1");
    keeper.stop();
    gc_removes_it_once_gone(&env, &ours);
    assert_eq!(overlays_elsewhere(&env), "0");
    assert_all_clean(&env);
}

/// `idmap_overlay_overlays_elsewhere` as `inspect --format prometheus` says.
fn overlays_elsewhere(env: &Env) -> String {
    let text = env.ok(&["inspect", "--format", "prometheus"]);
    text.lines()
        .find_map(|l| l.strip_prefix("idmap_overlay_overlays_elsewhere "))
        .unwrap_or_else(|| panic!("no idmap_overlay_overlays_elsewhere: {text}"))
        .to_string()
}

/// The same with a user's process whose cwd is on the copy: umount waits
/// out its timeout and exits 32 naming the process, with the overlay
/// already unmounted here and the record `detached`; gc keeps it while the
/// process lives and drops it after.
#[test]
fn a_read_only_overlay_with_a_used_copy_elsewhere() {
    let env = Env::new();
    let layers = env.layers(2);
    let ours = mount_ro(&env, &layers, "mnt");
    let mut copy = UserShell::own_namespace(&env, &[]);
    copy.ok(&format!("cd {}", s(&ours.target)));
    let started = Instant::now();
    let out = umount_keeps_it_detached(
        &env,
        &ours,
        &["umount", "--timeout", &walk_timeout(300), s(&ours.target)],
        32,
        &format!("/proc/{}/ns/mnt", copy.pid()),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "did not wait"
    );
    assert!(
        stderr(&out).contains(&copy.pid().to_string()),
        "the message does not name pid {}: {}",
        copy.pid(),
        stderr(&out)
    );
    gc_keeps_it(&env, &ours);
    copy.stop();
    gc_removes_it_once_gone(&env, &ours);
    assert_all_clean(&env);
}

/// Guard: where this boot's feature probe finds the kernel's answers wrong
/// (forced with the `in-use-proof` fault point), nothing relies on them:
/// `mount` decides whether an upperdir is in use by walking the mount
/// namespaces and says so on stderr, `inspect --features` shows it, and
/// `umount` decides by the walk whether the overlay lives on.
#[test]
fn without_the_kernels_answers_the_walk_decides_and_says_so() {
    let mut env = Env::new();
    env.extra_env
        .push(("IDMAP_OVERLAY_TESTPOINT".into(), "in-use-proof:fail".into()));
    let layers = env.layers(2);
    let (upper, work) = (env.mkdir("theirs/upper"), env.mkdir("theirs/work"));
    let theirs = env.mkdir("theirs/mnt");
    sh(
        &env,
        &format!(
            "mount -t overlay plain -o lowerdir={},upperdir={},workdir={} {}",
            join(&layers),
            s(&upper),
            s(&work),
            s(&theirs)
        ),
    );
    let target = env.mkdir("mnt");
    let other_work = env.mkdir("other-work");
    let out = env.run(&mount_args_with(
        best(),
        &layers,
        &target,
        &["--upperdir", s(&upper), "--workdir", s(&other_work)],
    ));
    assert_eq!(out.status.code(), Some(32), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("failed its proof"), "{err}");
    assert!(err.contains("overlay plain at"), "{err}");
    let features: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--features", "--json"])).unwrap();
    assert_eq!(features["in_use_probe"], false, "{features}");
    assert_eq!(features["superblock_watch"], false, "{features}");

    // Free directories: mounted, with the warning; umount decides by the
    // walk that nothing is left.
    let (free_upper, free_work) = (env.mkdir("upper"), env.mkdir("work"));
    let out = env.run(&mount_args_with(
        best(),
        &layers,
        &target,
        &["--upperdir", s(&free_upper), "--workdir", s(&free_work)],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed its proof"),
        "{}",
        stderr(&out)
    );
    let umount = env.run(&["umount", s(&target)]);
    assert!(umount.status.success(), "{}", stderr(&umount));
    assert!(env.state_files("mounts").is_empty(), "the record stayed");
    env.plain_umount(&theirs);
    env.assert_clean();
}

/// Guard: where the kernel keeps no list of mount namespaces (before
/// 6.12; taken away here with the `namespace-list` fault point), the walk
/// still finds a namespace no process is in, through the open file that
/// keeps it: a read-only overlay's copy there keeps its record (gc), and
/// once the file is closed gc drops the record.
#[test]
fn without_the_kernels_namespace_list_a_namespace_kept_by_a_file_is_still_read() {
    let mut env = Env::new();
    env.extra_env.push((
        "IDMAP_OVERLAY_TESTPOINT".into(),
        "namespace-list:fail".into(),
    ));
    let layers = env.layers(2);
    let ours = mount_ro(&env, &layers, "mnt");
    let copy = UserShell::own_namespace(&env, &[]);
    assert!(overlay_at(copy.pid(), &ours.target));
    let keeper = keep_namespace_by_fd(&env, copy);
    let copy_ns = format!("/proc/{}/fd/7", keeper.pid());
    umount_keeps_it_detached(
        &env,
        &ours,
        &["umount", "--timeout", &walk_timeout(1000), s(&ours.target)],
        0,
        &copy_ns,
    );
    gc_keeps_it(&env, &ours);
    keeper.stop();
    gc_removes_it_once_gone(&env, &ours);
    assert_all_clean(&env);
}
