//! The benchmark's measuring instruments (not part of any strategy):
//!
//! ```text
//! benchkit run PLAN        run PLAN's commands one after another, timing each
//! benchkit parallel PLAN   start all of PLAN's commands at once, wait for all
//! benchkit watch [--read]  count mount-table change events (POLLPRI on
//!                          /proc/self/mountinfo) until stdin closes
//! benchkit fill DIR N      mount N small tmpfs at DIR/0..N-1 (unrelated mounts)
//! benchkit unfill DIR N    unmount them again
//! benchkit populate STATE COMMON REL1 REL2 TARGETS N LEAKED
//!                          N common-dir overlays made the way the tool makes
//!                          them (source idmap-overlay:bench-NNNNN, temporary
//!                          idmapped mount at STATE/tmp/<id>/0), in-process;
//!                          the first LEAKED keep their temporary mount (the
//!                          leak of containerd#12139). One line per overlay:
//!                          id, target, mount id, unique mount id.
//! ```
//! A PLAN file has one command per line: a label, then the argv, all
//! separated by tabs. Results go to stdout, one line per command:
//! `label<TAB>nanoseconds<TAB>exit status` (-signal when killed). The
//! children's stdout goes to /dev/null, their stderr is ours.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio, exit};
use std::time::Instant;

fn read_plan(path: &str) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("benchkit: {path}: {e}");
        exit(1)
    });
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut fields = l.split('\t').map(String::from);
            let label = fields.next().unwrap();
            (label, fields.collect())
        })
        .collect()
}

fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

fn status_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

fn run(plan: &str) {
    let out = std::io::stdout();
    let mut out = out.lock();
    for (label, argv) in read_plan(plan) {
        let start = Instant::now();
        let status = match command(&argv).status() {
            Ok(s) => status_code(s),
            Err(e) => {
                eprintln!("benchkit: {}: {e}", argv[0]);
                127
            }
        };
        let ns = start.elapsed().as_nanos();
        writeln!(out, "{label}\t{ns}\t{status}").unwrap();
    }
}

/// Starts every command, then reaps them in the order they exit. Each line
/// gets the time from the first start to that command's exit; a last line
/// `WALL` the time until the last exit.
fn parallel(plan: &str) {
    let plan = read_plan(plan);
    let start = Instant::now();
    let mut running: HashMap<i32, String> = HashMap::new();
    let mut results = Vec::new();
    for (label, argv) in plan {
        match command(&argv).spawn() {
            Ok(child) => {
                running.insert(child.id() as i32, label);
            }
            Err(e) => {
                eprintln!("benchkit: {}: {e}", argv[0]);
                results.push((label, 0u128, 127));
            }
        }
    }
    while !running.is_empty() {
        let mut status = 0;
        // SAFETY: plain waitpid on our own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            break;
        }
        let ns = start.elapsed().as_nanos();
        if let Some(label) = running.remove(&pid) {
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -libc::WTERMSIG(status)
            };
            results.push((label, ns, code));
        }
    }
    let wall = start.elapsed().as_nanos();
    let mut out = std::io::stdout().lock();
    for (label, ns, code) in results {
        writeln!(out, "{label}\t{ns}\t{code}").unwrap();
    }
    writeln!(out, "WALL\t{wall}\t0").unwrap();
}

#[derive(Default)]
struct Table {
    total: usize,
    idmapped: usize,
    overlay: usize,
}

fn read_table(file: &mut File, buf: &mut Vec<u8>) -> Table {
    buf.clear();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(buf).unwrap();
    let mut table = Table::default();
    for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        table.total += 1;
        let line = String::from_utf8_lossy(line);
        let fields: Vec<&str> = line.split(' ').collect();
        // Field 6 holds the per-mount options; after " - " come the
        // filesystem type, source and superblock options.
        if fields.len() > 5 && fields[5].split(',').any(|o| o == "idmapped") {
            table.idmapped += 1;
        }
        if let Some(sep) = fields.iter().position(|f| *f == "-")
            && fields.get(sep + 1) == Some(&"overlay")
        {
            table.overlay += 1;
        }
    }
    table
}

/// Polls /proc/self/mountinfo for POLLPRI, as systemd does, until stdin is
/// closed. Each wake-up is one (possibly coalesced) mount-table change
/// event. With `--read` it also re-reads the whole table on each wake-up, as
/// systemd does, and tracks the peak counts (and the time that took).
fn watch(read: bool) {
    let mut file = File::open("/proc/self/mountinfo").unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    let baseline = read_table(&mut file, &mut buf);
    let (mut peak_total, mut peak_idmapped, mut peak_overlay) =
        (baseline.total, baseline.idmapped, baseline.overlay);
    let mut wakeups = 0u64;
    let mut reads = 0u64;
    let mut read_ns = 0u128;
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut fds = [
        libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLPRI,
            revents: 0,
        },
        libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut done = false;
    while !done {
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 {
            // Stop: pick up an event still pending, then report.
            done = true;
            fds[1].events = 0;
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        }
        if fds[0].revents & (libc::POLLPRI | libc::POLLERR) != 0 {
            wakeups += 1;
            if read {
                let t = Instant::now();
                let table = read_table(&mut file, &mut buf);
                read_ns += t.elapsed().as_nanos();
                reads += 1;
                peak_total = peak_total.max(table.total);
                peak_idmapped = peak_idmapped.max(table.idmapped);
                peak_overlay = peak_overlay.max(table.overlay);
            }
        }
    }
    println!("wakeups {wakeups}");
    println!("reads {reads}");
    println!("read_ns {read_ns}");
    println!("baseline_total {}", baseline.total);
    println!("baseline_idmapped {}", baseline.idmapped);
    println!("baseline_overlay {}", baseline.overlay);
    println!("peak_total {peak_total}");
    println!("peak_idmapped {peak_idmapped}");
    println!("peak_overlay {peak_overlay}");
}

fn fill(dir: &str, n: usize, mount: bool) {
    use rustix::mount::{MountFlags, UnmountFlags};
    for i in 0..n {
        let path = format!("{dir}/{i}");
        let result = if mount {
            let _ = rustix::fs::mkdir(path.as_str(), rustix::fs::Mode::from_raw_mode(0o755));
            rustix::mount::mount(
                "bench-unrelated",
                path.as_str(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                c"size=16k,nr_inodes=16",
            )
        } else {
            rustix::mount::unmount(path.as_str(), UnmountFlags::empty())
                .and_then(|()| rustix::fs::rmdir(path.as_str()))
        };
        if let Err(e) = result {
            eprintln!("benchkit: {path}: {e}");
            exit(2);
        }
    }
}

fn populate(
    state: &str,
    common: &str,
    rel1: &str,
    rel2: &str,
    targets: &str,
    n: usize,
    leaked: usize,
) {
    use rustix::fs::{AtFlags, CWD, Mode, StatxFlags, mkdir, rmdir, statx};
    use rustix::mount::{MountFlags, MoveMountFlags, UnmountFlags, mount, move_mount, unmount};
    use std::os::fd::AsFd;
    let ns = idmap_overlay_bench_floor::userns("0 100000 65536");
    let mode = Mode::from_raw_mode(0o700);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..n {
        let id = format!("bench-{i:05}");
        let target = format!("{targets}/{i}");
        let tmp = format!("{state}/tmp/{id}");
        let mountpoint = format!("{tmp}/0");
        let step = |what: &str, r: rustix::io::Result<()>| {
            if let Err(e) = r {
                eprintln!("benchkit populate: {what} ({id}): {e}");
                exit(2);
            }
        };
        step(
            "mkdir target",
            mkdir(target.as_str(), Mode::from_raw_mode(0o755)),
        );
        step("mkdir tmp", mkdir(tmp.as_str(), mode));
        step("mkdir tmp/0", mkdir(mountpoint.as_str(), mode));
        let tree = idmap_overlay_bench_floor::idmapped_tree(common, ns.as_fd());
        step(
            "move_mount",
            move_mount(
                &tree,
                "",
                CWD,
                mountpoint.as_str(),
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            ),
        );
        drop(tree);
        let data =
            std::ffi::CString::new(format!("lowerdir={mountpoint}/{rel1}:{mountpoint}/{rel2}"))
                .unwrap();
        step(
            "mount overlay",
            mount(
                format!("idmap-overlay:{id}").as_str(),
                target.as_str(),
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            ),
        );
        if i >= leaked {
            step(
                "umount tmp",
                unmount(mountpoint.as_str(), UnmountFlags::empty()),
            );
            step("rmdir tmp/0", rmdir(mountpoint.as_str()));
            step("rmdir tmp", rmdir(tmp.as_str()));
        }
        let old = statx(CWD, target.as_str(), AtFlags::empty(), StatxFlags::MNT_ID);
        let unique = statx(
            CWD,
            target.as_str(),
            AtFlags::empty(),
            StatxFlags::from_bits_retain(0x4000),
        );
        let (Ok(old), Ok(unique)) = (old, unique) else {
            eprintln!("benchkit populate: statx {target} failed");
            exit(2);
        };
        writeln!(
            out,
            "{id}\t{target}\t{}\t{}",
            old.stx_mnt_id, unique.stx_mnt_id
        )
        .unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["run", plan] => run(plan),
        ["parallel", plan] => parallel(plan),
        ["watch"] => watch(false),
        ["watch", "--read"] => watch(true),
        ["fill", dir, n] => fill(dir, n.parse().unwrap(), true),
        ["unfill", dir, n] => fill(dir, n.parse().unwrap(), false),
        ["populate", state, common, rel1, rel2, targets, n, leaked] => populate(
            state,
            common,
            rel1,
            rel2,
            targets,
            n.parse().unwrap(),
            leaked.parse().unwrap(),
        ),
        _ => {
            eprintln!("usage: see the comment at the top of bench/floor/src/bin/benchkit.rs");
            exit(1)
        }
    }
}
