//! `inspect --poll`: one line per change to our overlays, as it happens, as
//! `findmnt --poll` prints one per change to the mount table: `mounted`,
//! `unmounted`, `detached`, `vanished` (unmounted without the tool),
//! `leaked` and `cleaned`. JSON lines with `-J`.
//!
//! What it sees is this mount namespace's mount table, and the state
//! directory's records for everything else (an overlay mounted in another
//! namespace shows through its record). Each wake-up of the library's
//! [`Watch`] (fanotify's mount events or the mount table file, the records
//! directory, and the death of an overlay it saw mounted here) is followed
//! by one look: `gather` asking the kernel nothing, then
//! [`Snapshot::ask_about`] for the records whose facts here changed and
//! that are not mounted here (each question writes a line to the kernel
//! log: the unchanged are not asked again). Each record is judged into a
//! [`Phase`]; a line is printed when its phase changes, or when its record
//! goes.
//!
//! An operation killed midway changes no file and no mount (its lock is
//! released): while one runs, the poller looks again every
//! [`WHILE_RUNNING`].
//!
//! [`Snapshot::ask_about`]: idmap_overlay::Snapshot::ask_about

use crate::cmd::args::{Format, InspectArgs};
use crate::cmd::context::{Context, require_root};
use crate::cmd::escape;
use crate::cmd::exit::{Code, fail};
use anyhow::Result;
use idmap_overlay::{ErrorKind, Health, Record, RecordState, StateDir, Watch};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often the poller looks while an operation runs: a `kill -9` in
/// the middle of one is reported within this time.
const WHILE_RUNNING: Duration = Duration::from_millis(200);
/// How long a look that failed (a long gc holding the state lock) waits
/// before the next.
const AFTER_A_FAILED_LOOK: Duration = Duration::from_secs(1);

/// What a record's overlay is, as the lines tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// An operation on it is running (its lock is held): nothing is said
    /// until it is done (has let go of the lock), or dies.
    Running,
    /// Mounted: here, or in the mount namespace it was mounted in.
    Mounted,
    /// Unmounted by `umount` while it lives on in another namespace.
    Detached,
    /// Gone from here without the tool (umount(8)); its record still says
    /// `mounted`, and the kernel says it lives on elsewhere, or cannot say.
    Vanished,
    /// Gone from here without the tool, and gone everywhere: gc removes its
    /// record.
    Gone,
    /// An operation died midway, temporary mounts stayed, or the last copy
    /// of a detached overlay is gone.
    Leaked,
}

/// The facts about a record that need no question to the kernel: while
/// they stay the same, so does its phase, but for an overlay that dies in
/// another namespace, which the library's [`Watch`] tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    state: RecordState,
    mounted_here: bool,
    running: bool,
    temp_mounts: usize,
    dev: Option<String>,
}

impl Facts {
    fn of(record: &Record, health: &Health) -> Facts {
        Facts {
            state: record.state,
            mounted_here: health.mounted,
            running: health.owner_alive,
            temp_mounts: health.temp_mounts_present.len(),
            dev: record.dev.clone(),
        }
    }
}

/// What the poller remembers of a record between looks.
struct Seen {
    facts: Facts,
    /// The last phase other than `Running`, if it had one yet.
    settled: Option<Phase>,
    target: PathBuf,
    /// Its overlay is watched until it dies everywhere.
    watched: bool,
    /// Gone from here and, by the kernel, alive elsewhere: umount(8) has
    /// returned, but the kernel shuts the superblock down a moment later.
    /// Its line waits for the death or this instant, whichever is first.
    settling_until: Option<Instant>,
}

/// How long an overlay that umount(8) removed here may take to die
/// before the kernel's "alive elsewhere" is believed.
const SETTLING: Duration = Duration::from_secs(1);

/// One printed line (`-J`: one JSON object per line, these keys always,
/// in this order).
#[derive(Debug, Serialize)]
struct Line {
    version: u32,
    /// When the change was seen: RFC 3339, UTC, milliseconds.
    time: String,
    event: &'static str,
    id: String,
    target: PathBuf,
    /// The record's state; `null` once the record is gone.
    state: Option<&'static str>,
    /// `inspect`'s HEALTH word; `null` once the record is gone.
    health: Option<String>,
    /// Why it leaked or vanished, as `inspect --leaks` says; else `null`.
    why: Option<String>,
}

impl Line {
    fn text(&self) -> String {
        let mut out = format!(
            "{} {} {} (id {}",
            self.time,
            self.event,
            escape::path(&self.target),
            escape::escape(&self.id)
        );
        if let (Some(state), Some(health)) = (self.state, &self.health) {
            out.push_str(&format!(", state {state}, health {health}"));
        }
        out.push(')');
        if let Some(why) = &self.why {
            out.push_str(&format!(": {}", escape::escape(why)));
        }
        out
    }
}

/// The phase of a record, from its health as the snapshot sees it (asked
/// of the kernel where it is not mounted here). `own_ns` is this mount
/// namespace's nsfs inode.
fn phase_of(record: &Record, health: &Health, own_ns: Option<u64>) -> Phase {
    // Until the operation lets go of its lock, even after it wrote its
    // last state: what the line says is then what `inspect` says.
    if health.owner_alive {
        return Phase::Running;
    }
    let mounted_in_another_namespace = record.mount_ns.is_some_and(|ns| Some(ns) != own_ns);
    let left_here =
        record.state == RecordState::Mounted && !health.mounted && !mounted_in_another_namespace;
    match record.state {
        _ if left_here && health.alive_elsewhere == Some(false) => Phase::Gone,
        _ if health.leaked => Phase::Leaked,
        _ if left_here => Phase::Vanished,
        RecordState::Mounted => Phase::Mounted,
        RecordState::Detached => Phase::Detached,
        // A crashed operation is leaked (above); nothing else is left.
        RecordState::Preparing | RecordState::Unmounting => Phase::Leaked,
    }
}

/// The line's event for a record whose last settled phase was `before`
/// and is `now` (`None`: the record is gone), or none.
fn event(before: Option<Phase>, now: Option<Phase>) -> Option<&'static str> {
    use Phase::*;
    match (before, now) {
        (_, Some(Running)) => None,
        (before, Some(now)) if before == Some(now) => None,
        (Some(Leaked), Some(Mounted | Detached | Vanished)) => Some("cleaned"),
        (_, Some(Mounted)) => Some("mounted"),
        (_, Some(Detached)) => Some("detached"),
        // The last copy elsewhere went: a leak now, for gc.
        (Some(Vanished), Some(Gone)) => Some("leaked"),
        (_, Some(Vanished | Gone)) => Some("vanished"),
        (_, Some(Leaked)) => Some("leaked"),
        (Some(Mounted | Detached), None) => Some("unmounted"),
        (Some(Vanished | Gone | Leaked), None) => Some("cleaned"),
        // Never settled: a mount that failed and rolled back.
        (None | Some(Running), None) => None,
    }
}

/// The records as last seen.
#[derive(Default)]
struct Poller {
    seen: BTreeMap<String, Seen>,
    /// An operation was running at the last look.
    running: bool,
}

impl Poller {
    /// When the poller must look again though nothing woke it: an
    /// operation runs (a `kill -9` changes nothing it could see), or a
    /// record's line waits for its overlay to die.
    fn look_again_at(&self) -> Option<Instant> {
        let settling = self.seen.values().filter_map(|s| s.settling_until).min();
        let running = self.running.then(|| Instant::now() + WHILE_RUNNING);
        settling.into_iter().chain(running).min()
    }

    /// Looks once and returns the lines for what changed since the last
    /// look (`report` false: the first look, which only remembers).
    fn look(
        &mut self,
        state: &StateDir,
        watch: &mut Watch,
        own_ns: Option<u64>,
        report: bool,
    ) -> idmap_overlay::Result<Vec<Line>> {
        let mut snap =
            idmap_overlay::gather(state, &[], Duration::from_secs(60), false, Duration::ZERO)?;
        let now = Instant::now();
        let died = watch.died();
        let facts: BTreeMap<String, Facts> = snap
            .records
            .iter()
            .map(|r| (r.id.clone(), Facts::of(r, &snap.health(r))))
            .collect();
        let changed: Vec<String> = facts
            .iter()
            .filter(|(id, facts)| {
                self.seen.get(*id).is_none_or(|s| {
                    s.facts != **facts
                        || died.contains(id)
                        || s.settling_until.is_some_and(|at| at <= now)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.running = facts.values().any(|f| f.running);
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut lines = Vec::new();
        if !changed.is_empty() {
            snap.ask_about(state, &changed, idmap_overlay::DEFAULT_TIMEOUT);
            // A death the watch heard of is one: the upper directory may
            // still probe in use for a moment after it.
            snap.died(&died);
            let findings = idmap_overlay::classify(&snap);
            for record in snap.records.iter().filter(|r| changed.contains(&r.id)) {
                let health = snap.health(record);
                let mut phase = phase_of(record, &health, own_ns);
                let seen = self.seen.get(&record.id);
                let before = seen.and_then(|s| s.settled);
                let mut watched = seen.is_some_and(|s| s.watched);
                let mut settling_until = None;
                if phase == Phase::Vanished
                    && before == Some(Phase::Mounted)
                    && watched
                    && !died.contains(&record.id)
                {
                    let until = seen
                        .and_then(|s| s.settling_until)
                        .unwrap_or(now + SETTLING);
                    if until > now {
                        phase = Phase::Running;
                        settling_until = Some(until);
                    }
                }
                if health.mounted && !watched {
                    watched = watch.watch_overlay(record);
                }
                if let (true, Some(event)) = (report, event(before, Some(phase))) {
                    let why = matches!(phase, Phase::Leaked | Phase::Vanished | Phase::Gone)
                        .then(|| findings.iter().find(|f| f.id.as_ref() == Some(&record.id)))
                        .flatten()
                        .map(|f| f.why.clone());
                    lines.push(Line {
                        version: 1,
                        time: time.clone(),
                        event,
                        id: record.id.clone(),
                        target: record.target.clone(),
                        state: Some(record.state.name()),
                        health: Some(health.word()),
                        why,
                    });
                }
                let settled = match phase {
                    Phase::Running => before,
                    phase => Some(phase),
                };
                self.seen.insert(
                    record.id.clone(),
                    Seen {
                        facts: facts[&record.id].clone(),
                        settled,
                        target: record.target.clone(),
                        watched,
                        settling_until,
                    },
                );
            }
        }
        let gone: Vec<String> = self
            .seen
            .keys()
            .filter(|id| !facts.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            let seen = self.seen.remove(&id).expect("listed above");
            // Removed while its line waited: it had vanished, and what
            // removed the record cleaned it.
            let before = match seen.settling_until {
                Some(_) => Some(Phase::Vanished),
                None => seen.settled,
            };
            if let (true, Some(event)) = (report, event(before, None)) {
                lines.push(Line {
                    version: 1,
                    time: time.clone(),
                    event,
                    id,
                    target: seen.target,
                    state: None,
                    health: None,
                    why: None,
                });
            }
        }
        Ok(lines)
    }
}

/// This mount namespace's nsfs inode, as records keep `mount_ns`.
fn own_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/mnt")
        .ok()
        .map(|m| m.ino())
}

/// Writes one line; false when stdout is closed (the reader is gone).
fn print(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

pub fn run(args: &InspectArgs, format: Format, ctx: &Context) -> Result<Code> {
    if format == Format::Prometheus {
        return Err(fail(
            Code::Usage,
            "--poll prints a line per change: text or JSON, not --format prometheus",
        ));
    }
    require_root()?;
    crate::cmd::signals::cancel_on_interrupt();
    let state = ctx.state_to_read()?;
    // Watching first: no change after the first look is missed.
    let mut watch = Watch::new(&state)?;
    log::info!(
        "watching this mount namespace's mount table ({}) and the records in {}",
        watch.mount_events(),
        state.root.display()
    );
    let own_ns = own_namespace();
    let mut poller = Poller::default();
    let ended = |e: &idmap_overlay::Error| e.kind() == ErrorKind::Cancelled;
    match poller.look(&state, &mut watch, own_ns, false) {
        Err(e) if ended(&e) => return Ok(Code::Success),
        result => result?,
    };
    let mut last_line = Instant::now();
    let mut retry_at: Option<Instant> = None;
    loop {
        let idle_left = args
            .timeout
            .map(|timeout| timeout.saturating_sub(last_line.elapsed()));
        if idle_left == Some(Duration::ZERO) {
            return Ok(Code::Success);
        }
        let look_at = poller.look_again_at().into_iter().chain(retry_at).min();
        let mut wait = idle_left.unwrap_or(Duration::from_secs(3600));
        if let Some(at) = look_at {
            wait = wait.min(at.saturating_duration_since(Instant::now()));
        }
        let changed = match watch.wait(wait) {
            Ok(changed) => changed,
            Err(e) if ended(&e) => return Ok(Code::Success),
            Err(e) => return Err(e.into()),
        };
        let due = look_at.is_some_and(|at| Instant::now() >= at);
        if !(changed || due) {
            continue;
        }
        let lines = match poller.look(&state, &mut watch, own_ns, true) {
            Ok(lines) => lines,
            Err(e) if ended(&e) => return Ok(Code::Success),
            Err(e) => {
                log::warn!("{e:#}; looking again in {}s", AFTER_A_FAILED_LOOK.as_secs());
                retry_at = Some(Instant::now() + AFTER_A_FAILED_LOOK);
                continue;
            }
        };
        retry_at = None;
        for line in lines {
            let text = match format {
                Format::Json => serde_json::to_string(&line)?,
                _ => line.text(),
            };
            if !print(&text) || args.first_only {
                return Ok(Code::Success);
            }
            last_line = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_follow_the_settled_phase() {
        use Phase::*;
        for (before, now, want) in [
            (None, Some(Running), None),
            (None, Some(Mounted), Some("mounted")),
            (Some(Mounted), Some(Running), None),
            (Some(Mounted), Some(Mounted), None),
            (Some(Mounted), None, Some("unmounted")),
            (Some(Mounted), Some(Detached), Some("detached")),
            (Some(Detached), None, Some("unmounted")),
            (Some(Mounted), Some(Vanished), Some("vanished")),
            (Some(Mounted), Some(Gone), Some("vanished")),
            (Some(Vanished), Some(Gone), Some("leaked")),
            (Some(Vanished), None, Some("cleaned")),
            (Some(Gone), None, Some("cleaned")),
            (Some(Detached), Some(Leaked), Some("leaked")),
            (None, Some(Leaked), Some("leaked")),
            (Some(Leaked), None, Some("cleaned")),
            (Some(Leaked), Some(Mounted), Some("cleaned")),
            (Some(Leaked), Some(Detached), Some("cleaned")),
            (None, None, None),
        ] {
            assert_eq!(event(before, now), want, "{before:?} -> {now:?}");
        }
    }

    #[test]
    fn a_line_for_people_escapes_what_came_from_outside() {
        let line = Line {
            version: 1,
            time: "2026-01-02T03:04:05.678Z".into(),
            event: "leaked",
            id: "a1b2c3d4".into(),
            target: PathBuf::from("/mnt/\x1b[2Jx"),
            state: Some("preparing"),
            health: Some("leaked".into()),
            why: Some("mount by pid 42 died before it finished".into()),
        };
        assert_eq!(
            line.text(),
            "2026-01-02T03:04:05.678Z leaked /mnt/\\x1b[2Jx (id a1b2c3d4, state preparing, health leaked): mount by pid 42 died before it finished"
        );
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
        assert_eq!(json["target"], "/mnt/\x1b[2Jx");
    }
}
