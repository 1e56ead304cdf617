//! The cost of one mount-namespace scan (`idmap_overlay::namespaces`), as the
//! number of namespaces and the size of their mount tables grow.
//!
//! ```text
//! nsscan [--namespaces 50,100,200,400] [--mounts 30,300] [--runs 40]
//! ```
//!
//! As root. It enters a private mount namespace of its own, mounts a tmpfs
//! work area and one overlay there (the "container image"), then starts
//! holder processes (this binary, `--hold`), each in a new mount namespace
//! made from that one: each holds a copy of the overlay with its cwd in it,
//! and bind mounts until its table has MOUNTS entries. For every table size
//! and every namespace count it times, over RUNS rounds (after 3 warm-up
//! rounds, the measures interleaved within a round):
//!
//! - `scan (mountinfo)`: `Scan::read` with each namespace's table read from
//!   one member's `/proc/PID/mountinfo`;
//! - `scan (listmount)`: the same with listmount(2)/statmount(2) and the
//!   kernel's list of namespaces, as `Scan::live` does;
//! - `scan + copies`: the listmount scan then `Scan::copies` of the
//!   overlay (which looks at the root and cwd of each namespace's
//!   processes), what `umount` and `gc` need;
//! - `holders`: `Scan::holders` of the overlay, one pass over every
//!   process's root, cwd and fds (after a scan, not counted).
//!
//! Each round checks its answer (every holder namespace found, every copy
//! with its cwd flag), so a fast wrong scan cannot pass. The holders are
//! killed by pid when a table size is done; nothing mounted is ever visible
//! outside the private namespace. Prints a Markdown table: median and
//! 25th-75th percentiles in milliseconds.

use idmap_overlay::namespaces::{Device, Scan, TableSource, current_namespace};
use nix::mount::{MsFlags, mount, umount};
use nix::sched::{CloneFlags, unshare};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const SOURCE: &str = "idmap-overlay:nsscan-bench";
const WARMUP: usize = 3;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--hold") {
        hold(&args[1..]);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nsscan: {err}");
            ExitCode::FAILURE
        }
    }
}

fn list(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|n| n.parse().map_err(|_| format!("{n:?} is not a number")))
        .collect()
}

fn run(args: &[String]) -> Result<(), String> {
    let mut namespaces = vec![50, 100, 200, 400];
    let mut mounts = vec![30, 300];
    let mut runs = 40;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--namespaces" => namespaces = list(value()?)?,
            "--mounts" => mounts = list(value()?)?,
            "--runs" => runs = list(value()?)?[0],
            _ => return Err(format!("unknown argument {arg} (see the source's header)")),
        }
    }
    namespaces.sort_unstable();
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root: it mounts, in a namespace of its own".into());
    }
    // Our own namespace, private all the way down: nothing we mount (nor
    // any holder, whose namespaces are copies of this one) reaches the host.
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making / private: {e}"))?;
    let base = std::env::temp_dir().join(format!("nsscan.{}", std::process::id()));
    std::fs::create_dir(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    let load_before = load_average();
    let result = measure_all(&base, &namespaces, &mounts, runs);
    let _ = umount(&base.join("merged"));
    let _ = umount(&base);
    let _ = std::fs::remove_dir(&base);
    let rows = result?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Linux {}, {cpus} CPUs, {runs} runs per cell; load average {} before, {} after.\n",
        kernel.trim(),
        load_before,
        load_average()
    );
    println!(
        "| namespaces | mounts each | scan (mountinfo) | scan (listmount) | scan + copies | holders |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

fn measure_all(
    base: &Path,
    namespaces: &[usize],
    mounts: &[usize],
    runs: usize,
) -> Result<Vec<String>, String> {
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| format!("tmpfs: {e}"))?;
    let most = mounts.iter().copied().max().unwrap_or(0);
    for dir in ["lower", "upper", "work", "merged", "src"] {
        std::fs::create_dir(base.join(dir)).map_err(|e| e.to_string())?;
    }
    for i in 0..most {
        std::fs::create_dir_all(base.join("points").join(i.to_string()))
            .map_err(|e| e.to_string())?;
    }
    let options = format!(
        "lowerdir={0}/lower,upperdir={0}/upper,workdir={0}/work",
        base.display()
    );
    let merged = base.join("merged");
    mount(
        Some(SOURCE),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|e| format!("overlay: {e}"))?;
    let device = Device::from_dev_t(std::fs::metadata(&merged).map_err(|e| e.to_string())?.dev());
    let own_ns = current_namespace().map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for &size in mounts {
        let mut holders: Vec<Holder> = Vec::new();
        for &count in namespaces {
            holders.extend(start_holders(
                base,
                size,
                count.saturating_sub(holders.len()),
            )?);
            rows.push(measure(own_ns, device, &holders, size, runs)?);
            eprintln!("nsscan: {}", rows.last().unwrap());
        }
        for holder in &mut holders {
            holder.stop();
        }
    }
    Ok(rows)
}

/// A holder process, killed by pid when dropped.
struct Holder(Child);

impl Holder {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_holders(base: &Path, size: usize, count: usize) -> Result<Vec<Holder>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut started = Vec::with_capacity(count);
    for _ in 0..count {
        let child = Command::new(&exe)
            .arg("--hold")
            .arg(base)
            .arg(size.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting a holder: {e}"))?;
        started.push(Holder(child));
    }
    // Started all at once, then waited for: they set up in parallel.
    for holder in &mut started {
        let mut line = String::new();
        let stdout = holder.0.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("a holder failed to set up: {line:?}"));
        }
    }
    Ok(started)
}

/// A holder: a new mount namespace (a copy of the benchmark's, with the
/// overlay), bind mounts until its table has `size` entries, cwd in the
/// overlay; then it sleeps until killed.
fn hold(args: &[String]) -> ! {
    let fail = |what: &str, err: &dyn std::fmt::Display| -> ! {
        println!("{what}: {err}");
        std::process::exit(1)
    };
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let base = PathBuf::from(&args[0]);
    let size: usize = args[1].parse().unwrap_or_else(|e| fail("size", &e));
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        fail("unshare", &e);
    }
    let inherited = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_else(|e| fail("mountinfo", &e))
        .lines()
        .count();
    let src = base.join("src");
    for i in 0..size.saturating_sub(inherited) {
        let point = base.join("points").join(i.to_string());
        if let Err(e) = mount(
            Some(&src),
            &point,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            fail("bind mount", &e);
        }
    }
    if let Err(e) = std::env::set_current_dir(base.join("merged")) {
        fail("cd", &e);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The 1-minute load average: how busy the machine was besides us.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// "4.21 (3.98–4.50)": median and quartiles, nearest rank.
fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!("{:.2} ({:.2}–{:.2})", at(0.5), at(0.25), at(0.75))
}

fn scan(own_ns: u64, source: TableSource) -> Result<Scan, String> {
    Scan::read(
        Path::new("/proc"),
        Some(own_ns),
        Some(std::process::id()),
        source,
    )
    .map_err(|e| format!("scan: {e}"))
}

/// Every holder's namespace is in the scan, read the way asked, with our
/// overlay's copy.
fn check(
    scan: &Scan,
    device: Device,
    holders: &[Holder],
    source: TableSource,
) -> Result<(), String> {
    let copies = scan.copies(device, SOURCE);
    if copies.len() != holders.len() || !copies.iter().all(|c| c.is_cwd) {
        return Err(format!(
            "expected {} copies, each a process's cwd; found {}",
            holders.len(),
            copies.len()
        ));
    }
    for holder in holders {
        let pid = holder.0.id();
        let found = scan.namespaces().iter().find(|n| n.pids.contains(&pid));
        if !found.is_some_and(|n| n.table.is_ok() && n.source == source) {
            return Err(format!("holder {pid}'s namespace not read by {source:?}"));
        }
    }
    Ok(())
}

fn measure(
    own_ns: u64,
    device: Device,
    holders: &[Holder],
    size: usize,
    runs: usize,
) -> Result<String, String> {
    let mut by_mountinfo = Vec::new();
    let mut by_listmount = Vec::new();
    let mut with_copies = Vec::new();
    let mut holder_pass = Vec::new();
    for round in 0..WARMUP + runs {
        let keep = round >= WARMUP;
        let t = Instant::now();
        let a = scan(own_ns, TableSource::Mountinfo)?;
        let mountinfo_time = t.elapsed();
        check(&a, device, holders, TableSource::Mountinfo)?;

        let t = Instant::now();
        let b = scan(own_ns, TableSource::Listmount)?;
        let listmount_time = t.elapsed();
        check(&b, device, holders, TableSource::Listmount)?;

        let t = Instant::now();
        let c = scan(own_ns, TableSource::Listmount)?;
        let copies = c.copies(device, SOURCE);
        let copies_time = t.elapsed();
        if copies.len() != holders.len() {
            return Err(format!(
                "{} copies for {} holders",
                copies.len(),
                holders.len()
            ));
        }

        let t = Instant::now();
        let held = c.holders(&[(device, SOURCE)]);
        let holders_time = t.elapsed();
        if held.len() != holders.len() {
            return Err(format!(
                "{} holds for {} holders",
                held.len(),
                holders.len()
            ));
        }
        if keep {
            by_mountinfo.push(millis(mountinfo_time));
            by_listmount.push(millis(listmount_time));
            with_copies.push(millis(copies_time));
            holder_pass.push(millis(holders_time));
        }
    }
    Ok(format!(
        "| {} | {} | {} | {} | {} | {} |",
        holders.len(),
        size,
        summary(by_mountinfo),
        summary(by_listmount),
        summary(with_copies),
        summary(holder_pass)
    ))
}
