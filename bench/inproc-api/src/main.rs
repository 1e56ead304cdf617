//! `inproc-api WARMUP N STRATEGY TARGET UPPER WORK UIDMAP LOWER...`
//!
//! Mounts a writable overlay of the LOWER layers (top first) at TARGET
//! through the library API and unmounts it by the record the mount
//! returned, WARMUP + N times in this one process, in the state directory
//! `IDMAP_OVERLAY_STATE_DIR`; prints the wall time of each of the N
//! measured cycles in nanoseconds, one per line, as bench/floor's `cycles`
//! does. UIDMAP is written as `--uidmap` takes it and serves for gids too.
//! Run it in a private mount namespace (bench/run.sh does).

use idmap_overlay::{Maps, MountRequest, StateDir, Strategy};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 8 {
        eprintln!("usage: inproc-api WARMUP N STRATEGY TARGET UPPER WORK UIDMAP LOWER...");
        return ExitCode::from(1);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inproc-api: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let count = |text: &str| {
        text.parse::<usize>()
            .map_err(|_| format!("{text:?}: not a count"))
    };
    let (warmup, n) = (count(&args[0])?, count(&args[1])?);
    let strategy: Strategy = args[2].parse()?;
    let map = idmap_overlay::IdRange::parse_list(&args[6])?;
    let state_root = std::env::var_os("IDMAP_OVERLAY_STATE_DIR")
        .map(PathBuf::from)
        .ok_or("IDMAP_OVERLAY_STATE_DIR is not set")?;
    let mut request = MountRequest::new(
        &args[3],
        &args[7..],
        Maps::Ranges {
            uid: map.clone(),
            gid: map,
        },
    );
    request.upperdir = Some(args[4].clone().into());
    request.workdir = Some(args[5].clone().into());
    request.strategy = strategy;
    let state = StateDir::open(&state_root).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(n);
    for cycle in 0..warmup + n {
        let started = Instant::now();
        let record = idmap_overlay::mount(&request, &state_root).map_err(|e| e.to_string())?;
        idmap_overlay::umount(&state, &record.id, Duration::from_secs(5), false)
            .map_err(|e| e.to_string())?;
        if cycle >= warmup {
            times.push(started.elapsed().as_nanos());
        }
    }
    let text: String = times.iter().map(|t| format!("{t}\n")).collect();
    print!("{text}");
    Ok(())
}
