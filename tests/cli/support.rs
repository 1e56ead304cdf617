//! Test environment: a temp directory, a state directory inside it, and a
//! private mount namespace held open by a `sleep` process. Every command
//! runs in that namespace through nsenter; the test itself looks into it
//! through `/proc/<holder>/root` and `/proc/<holder>/mountinfo`. When the
//! environment drops, the holder is killed and the namespace, with every
//! mount made in it, disappears: nothing reaches the host's mount table.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_idmap-overlay");

/// Every strategy, and the steps of `mount` and `umount` where it can
/// crash, fail or pause the tool (the library's own lists, so a new step is
/// tested everywhere). Tests run through [`strategies`], the ones this
/// kernel has; a strategy it lacks is tested for its clear refusal.
pub const STRATEGIES: [&str; 3] = ["detached", "common-dir", "per-layer"];

/// What the running kernel can do, by the tool's own probe
/// (`inspect --features`), never by its version string.
#[derive(Debug)]
pub struct Kernel {
    pub release: String,
    pub idmapped_mounts: bool,
    pub detached: bool,
    pub idmapped_tmpfs: bool,
    pub statmount_idmaps: bool,
    pub unique_mount_ids: bool,
}

/// The kernel's features, probed once per run in an environment of its
/// own. The first call prints them on stderr past the test harness's
/// capture, so every run's output says which feature set it ran with.
pub fn kernel() -> &'static Kernel {
    static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    KERNEL.get_or_init(|| {
        let env = Env::new();
        env.ok(&["gc"]); // makes the state directory
        let f: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "--features", "--json"])).unwrap();
        let yes = |key: &str| {
            f[key]
                .as_bool()
                .unwrap_or_else(|| panic!("inspect --features has no {key}: {f}"))
        };
        let kernel = Kernel {
            release: f["kernel"].as_str().unwrap().to_string(),
            idmapped_mounts: yes("idmapped_mounts"),
            detached: yes("detached"),
            idmapped_tmpfs: yes("idmapped_tmpfs"),
            statmount_idmaps: yes("statmount_idmaps"),
            unique_mount_ids: yes("unique_mount_ids"),
        };
        let _ = writeln!(
            std::io::stderr(),
            "cli: kernel {}: idmapped mounts {}, detached {}, idmapped tmpfs {}, statmount id maps {}, unique mount ids {}",
            kernel.release,
            kernel.idmapped_mounts,
            kernel.detached,
            kernel.idmapped_tmpfs,
            kernel.statmount_idmaps,
            kernel.unique_mount_ids
        );
        kernel
    })
}

/// Does this kernel have what `strategy` needs?
pub fn supported(strategy: &str) -> bool {
    match strategy {
        "detached" => kernel().detached,
        _ => kernel().idmapped_mounts,
    }
}

/// The strategies this kernel has, in [`STRATEGIES`] order.
pub fn strategies() -> Vec<&'static str> {
    STRATEGIES.into_iter().filter(|s| supported(s)).collect()
}

/// Whether the suite runs in the kernel matrix's emulated machines (QEMU
/// without hardware help; ci/kernels/suite-init says so), where everything
/// runs some twenty times slower than here: tests that bound a wait give
/// it more time there.
pub fn emulated() -> bool {
    std::env::var_os("IDMAP_OVERLAY_TEST_EMULATED").is_some()
}

/// A `--timeout` for a command whose answer needs a walk over the mount
/// namespaces or processes to finish within it: `host_ms` here, ten times
/// that under emulation (on 6.1, with no list of namespaces, a walk under
/// load outlasted 300 ms there).
pub fn walk_timeout(host_ms: u64) -> String {
    format!("{}ms", if emulated() { host_ms * 10 } else { host_ms })
}

/// How long a test lets something take that the tool does promptly (end
/// on a signal, give up at a deadline): `host` here, four times that under
/// emulation, where a process's start and exit alone take a good part of
/// a second under load.
pub fn allowed(host: std::time::Duration) -> std::time::Duration {
    if emulated() { host * 4 } else { host }
}

/// How many rounds a test that repeats a race or a load makes: `host`
/// here, a quarter under emulation, where each round takes some twenty
/// times longer (the host, in `.ci/run`, makes them all).
pub fn rounds(host: usize) -> usize {
    if emulated() { (host / 4).max(1) } else { host }
}

/// What `auto` picks here: `detached` where the kernel has it.
pub fn best() -> &'static str {
    if kernel().detached {
        "detached"
    } else {
        "common-dir"
    }
}

/// `strategy` (one this kernel lacks) is refused: exit 32, one message
/// that names what it needs and what to use, nothing left behind.
pub fn assert_refused(env: &Env, strategy: &str, layers: &[PathBuf], target: &Path) {
    assert!(!supported(strategy), "{strategy} works on this kernel");
    let (upper, work) = (env.mkdir("refused/upper"), env.mkdir("refused/work"));
    let out = env.run(&mount_args_with(
        strategy,
        layers,
        target,
        &["--upperdir", s(&upper), "--workdir", s(&work)],
    ));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(32), "{strategy}: {err}");
    assert!(
        err.contains("a kernel after 6.12") && err.contains("--strategy common-dir"),
        "{strategy}: {err}"
    );
    env.assert_clean();
}
pub use idmap_overlay::testing::{MOUNT_POINTS, UMOUNT_POINTS};

/// The mount steps this kernel's strategies reach: `tree-open` is the
/// detached strategy's alone.
pub fn reachable_mount_points() -> Vec<&'static str> {
    MOUNT_POINTS
        .iter()
        .copied()
        .filter(|p| *p != "tree-open" || kernel().detached)
        .collect()
}

/// Mounting tests need root; they fail (never skip) without it.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests mount filesystems and must run as root (in CI they do)"
    );
}

pub struct Namespace {
    holder: Child,
    /// libmount's utab for mount(8)/umount(8) run in the namespace: the
    /// default, /run/mount/utab, is the host's.
    utab: tempfile::TempDir,
}

impl Namespace {
    pub fn new() -> Namespace {
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "--", "sleep", "infinity"]);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one prctl call; the holder then dies with the test thread.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let holder = cmd.stdin(Stdio::null()).spawn().expect("starting unshare");
        let ns = Namespace {
            holder,
            utab: tempfile::tempdir().unwrap(),
        };
        // Wait until the holder runs in its new namespace (up to 10s: under
        // emulation, as in ci/kernels.sh, starting it took more than 1s).
        let mine = fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..5000 {
            if let Ok(theirs) = fs::read_link(format!("/proc/{}/ns/mnt", ns.pid()))
                && theirs != mine
            {
                return ns;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        panic!("the namespace holder never entered a new mount namespace");
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `path` as seen inside the namespace.
    pub fn path(&self, path: &Path) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid())).join(path.strip_prefix("/").unwrap())
    }

    /// Everything the namespace has mounted, as the kernel prints it.
    pub fn mountinfo_text(&self) -> String {
        fs::read_to_string(format!("/proc/{}/mountinfo", self.pid())).unwrap()
    }

    pub fn mountinfo(&self) -> Vec<MountLine> {
        self.mountinfo_text()
            .lines()
            .map(MountLine::parse)
            .collect()
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid().to_string(), "-m", "--", program])
            .env("LIBMOUNT_UTAB", self.utab.path().join("utab"));
        cmd
    }
}

/// A process a test started, killed by its pid (and reaped) when dropped,
/// also when the test fails first: its stdout may be the harness's pipe.
pub struct Started(pub Child);

impl Started {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[derive(Debug, Clone)]
pub struct MountLine {
    pub id: u64,
    pub mount_point: PathBuf,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

impl MountLine {
    fn parse(line: &str) -> MountLine {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-").unwrap();
        MountLine {
            id: f[0].parse().unwrap(),
            mount_point: PathBuf::from(f[4].replace("\\040", " ")),
            options: f[5].to_string(),
            fs_type: f[sep + 1].to_string(),
            source: f[sep + 2].to_string(),
            super_options: f[sep + 3..].join(" "),
        }
    }

    pub fn idmapped(&self) -> bool {
        self.options.split(',').any(|o| o == "idmapped")
    }
}

pub struct Env {
    // Field order is drop order: the namespace (and its mounts) goes first,
    // then the directory, so nothing is ever deleted through a mount.
    pub ns: Namespace,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub extra_env: Vec<(String, String)>,
    /// Held while the test runs: see [`alone`].
    _sharing: Option<Sharing>,
}

/// Tests share the machine; one that floods it (20,000 mount namespaces)
/// would make every other test's bounded walks give up and their records
/// stay "may live elsewhere", as the tool is meant to do under a flood.
/// Such a test runs alone: it holds this lock for writing, every other
/// test's [`Env`] for reading.
static SHARING: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// This thread holds the write lock (it runs alone) or a read lock
    /// already: a second Env of the same test must not wait for a writer
    /// that waits for the first (std's lock may let writers go first).
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static SHARING_HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A read hold on [`SHARING`] for one Env; the first of a thread's takes
/// the lock, the others only count.
struct Sharing(#[allow(dead_code)] Option<std::sync::RwLockReadGuard<'static, ()>>);

impl Sharing {
    fn take() -> Option<Sharing> {
        if ALONE.with(|a| a.get()) {
            return None;
        }
        let first = SHARING_HELD.with(|n| {
            n.set(n.get() + 1);
            n.get() == 1
        });
        Some(Sharing(
            first.then(|| SHARING.read().unwrap_or_else(|e| e.into_inner())),
        ))
    }
}

impl Drop for Sharing {
    fn drop(&mut self) {
        SHARING_HELD.with(|n| n.set(n.get() - 1));
    }
}

/// Waits until no other test runs and keeps them waiting until the guard
/// drops. Call it before [`Env::new`].
pub fn alone() -> Alone {
    let guard = SHARING.write().unwrap_or_else(|e| e.into_inner());
    ALONE.with(|a| a.set(true));
    Alone(guard)
}

pub struct Alone(#[allow(dead_code)] std::sync::RwLockWriteGuard<'static, ()>);

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.with(|a| a.set(false));
    }
}

impl Env {
    pub fn new() -> Env {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("idmap-overlay-test.")
            .tempdir()
            .unwrap();
        // tempdir is 0700 already; the state dir is made by the tool.
        let state = dir.path().join("state");
        Env {
            _sharing: Sharing::take(),
            ns: Namespace::new(),
            dir,
            state,
            extra_env: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// The tool, run inside the namespace with a clean environment.
    pub fn tool<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = self.ns.command(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("IDMAP_OVERLAY_STATE_DIR", &self.state)
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.tool(args).output().unwrap()
    }

    /// Runs the tool and asserts success; returns stdout.
    pub fn ok<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "idmap-overlay {args:?} failed ({:?}):\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the tool with a test point set; returns the output.
    pub fn run_at<S: AsRef<OsStr>>(&self, testpoint: &str, args: &[S]) -> Output {
        self.tool(args)
            .env("IDMAP_OVERLAY_TESTPOINT", testpoint)
            .output()
            .unwrap()
    }

    /// Layers `l0` (top) .. `l{n-1}` under `layers/N/fs`, containerd-style:
    /// each has `only-<i>` owned by root, `shared` (top wins) with the
    /// layer's index as content, and `user-file` owned by 1000:1000.
    pub fn layers(&self, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let dir = self.mkdir(&format!("layers/{}/fs", n - i));
                fs::write(dir.join(format!("only-{i}")), format!("{i}\n")).unwrap();
                fs::write(dir.join("shared"), format!("{i}\n")).unwrap();
                let user_file = dir.join("user-file");
                fs::write(&user_file, "u\n").unwrap();
                std::os::unix::fs::chown(&user_file, Some(1000), Some(1000)).unwrap();
                dir
            })
            .collect()
    }

    /// Two layers mounted at `mnt` with the default strategy: (target, id).
    pub fn mounted(&self) -> (PathBuf, String) {
        let layers = self.layers(2);
        let target = self.mkdir("mnt");
        let id = self
            .ok(&mount_args("auto", &layers, &target))
            .trim()
            .to_string();
        (target, id)
    }

    /// Unmounts `path` with plain umount(8), behind the tool's back.
    pub fn plain_umount(&self, path: &Path) {
        let status = self.ns.command("umount").arg(path).status().unwrap();
        assert!(status.success(), "umount {}", path.display());
    }

    /// Mounts in the namespace whose mountpoint lies in our temp dir.
    pub fn our_mounts(&self) -> Vec<MountLine> {
        self.ns
            .mountinfo()
            .into_iter()
            .filter(|m| m.mount_point.starts_with(self.dir.path()))
            .collect()
    }

    /// File names in a state subdirectory (`mounts`, `tmp`, `locks`).
    pub fn state_files(&self, sub: &str) -> Vec<String> {
        match fs::read_dir(self.state.join(sub)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            }
            Err(_) => Vec::new(),
        }
    }

    /// Asserts that nothing of an operation is left: no mount in our temp
    /// dir, no record, no temp directory, no lock file.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.our_mounts()
                .iter()
                .map(|m| m.mount_point.clone())
                .collect::<Vec<_>>(),
            Vec::<PathBuf>::new(),
            "mounts left"
        );
        for sub in ["mounts", "tmp", "locks", "targets"] {
            assert_eq!(
                self.state_files(sub),
                Vec::<String>::new(),
                "state/{sub} not empty"
            );
        }
    }

    /// Stat a path as seen in the namespace (through any overlay).
    pub fn stat(&self, path: &Path) -> fs::Metadata {
        fs::metadata(self.ns.path(path)).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
    }

    pub fn read(&self, path: &Path) -> String {
        fs::read_to_string(self.ns.path(path)).unwrap()
    }
}

/// Everything about a directory tree that a mount must never change:
/// relative path -> (mode, uid, gid, content or link target).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let content = if meta.is_file() {
                fs::read(&path).unwrap()
            } else if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                stack.push(path.clone());
                Vec::new()
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.mode(), meta.uid(), meta.gid(), content),
            );
        }
    }
    out
}

/// `mount --strategy S --lowerdir L --uidmap 0:100000:65536 TARGET`, the
/// common case; callers may insert more flags before the target.
pub fn mount_args(strategy: &str, layers: &[PathBuf], target: &Path) -> Vec<String> {
    [
        "mount",
        "--strategy",
        strategy,
        "--lowerdir",
        &join(layers),
        "--uidmap",
        "0:100000:65536",
        s(target),
    ]
    .map(String::from)
    .to_vec()
}

/// `mount_args` with `extra` flags before the target.
pub fn mount_args_with(
    strategy: &str,
    layers: &[PathBuf],
    target: &Path,
    extra: &[&str],
) -> Vec<String> {
    let mut args = mount_args(strategy, layers, target);
    let target = args.pop().unwrap();
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(target);
    args
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `script` run by sh inside the namespace; it must succeed.
pub fn sh(env: &Env, script: &str) {
    let out = env.ns.command("sh").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {}", stderr(&out));
}

/// A command's stdout as JSON, or a failure that shows what it printed.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

pub fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A running tool paused at a test point (`NAME:pause`): the line it printed
/// and its stdin, to let it go on.
pub struct Paused {
    pub child: Child,
    pub line: String,
    stdin: Option<ChildStdin>,
    /// Kept open: the tool's later diagnostics must not hit a closed pipe.
    stderr: BufReader<std::process::ChildStderr>,
}

impl Paused {
    pub fn start<S: AsRef<OsStr>>(env: &Env, testpoint: &str, args: &[S]) -> Paused {
        let mut cmd = env.tool(args);
        cmd.env("IDMAP_OVERLAY_TESTPOINT", testpoint);
        Paused::spawn(cmd, testpoint)
    }

    /// Starts `cmd` (which has `IDMAP_OVERLAY_TESTPOINT` set to pause at
    /// `testpoint`) and waits until it pauses.
    pub fn spawn(mut cmd: Command, testpoint: &str) -> Paused {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("the tool exited before reaching {testpoint}");
            }
            if line.starts_with("testpoint ") {
                break;
            }
        }
        Paused {
            child,
            line,
            stdin,
            stderr: reader,
        }
    }

    /// `key=value` from the pause line.
    pub fn value(&self, key: &str) -> u32 {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {:?}", self.line))
            .parse()
            .unwrap()
    }

    pub fn resume(mut self) -> std::process::ExitStatus {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stderr, &mut rest);
        self.child.wait().unwrap()
    }
}

/// A process in `env`'s namespace whose working directory is `dir` for
/// `seconds`, returned once it really is there (so the mount is busy).
pub fn hold_busy(env: &Env, dir: &Path, seconds: &str) -> Child {
    let mut holder = env
        .ns
        .command("sh")
        .args([
            "-c",
            "cd \"$1\" && exec sleep \"$2\"",
            "sh",
            s(dir),
            seconds,
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let cwd = format!("/proc/{}/cwd", holder.id());
    for _ in 0..2000 {
        if fs::read_link(&cwd).is_ok_and(|p| p == dir) {
            return holder;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = holder.kill();
    let _ = holder.wait();
    panic!("the holder never entered {}", dir.display());
}

pub fn make_private_dir(path: &Path) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
}
