//! What `inspect` prints: the record table, one overlay's detail, the leak
//! list and the feature list. Pure rendering of a snapshot (what the kernel
//! says is asked in `cmd::inspect`), golden-tested.

use crate::cmd::escape::escape;
use crate::cmd::table::{self, Column, Fit, Layout};
use idmap_overlay::RecordState;
use idmap_overlay::{Action, Finding, Health, Snapshot};
use idmap_overlay::{BadRecord, Record};
use idmap_overlay::{Features, IdRange};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;

fn created_secs(record: &Record) -> Option<u64> {
    humantime::parse_rfc3339(&record.created)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// `42s`, `5m`, `3h`, `2d`; `?` when the record's time is unreadable.
pub fn age(record: &Record, now: u64) -> String {
    let Some(created) = created_secs(record) else {
        return "?".into();
    };
    let secs = now.saturating_sub(created);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// A record as `inspect --json` shows it: its fields, but `state` is
/// STATE's word, the same in the table, the detail and here (`unmounted`
/// for a record saying `mounted` whose overlay is attached nowhere), and
/// `recorded_state` what the record file says; then its live `health`.
fn record_json(record: &Record, health: &Health) -> serde_json::Value {
    let mut value = serde_json::to_value(record).expect("a record is plain data");
    if let Some(fields) = value.as_object_mut() {
        fields.insert("state".into(), state_word(record, health).into());
        fields.insert("recorded_state".into(), record.state.name().into());
        fields.insert(
            "health".into(),
            serde_json::to_value(health).expect("health is plain data"),
        );
    }
    value
}

/// A record file that cannot be read, in `inspect --json`: what its name
/// says, where it is, and why (`corrupt`, a field no record has).
#[derive(Debug, Serialize)]
struct CorruptView<'a> {
    id: String,
    path: &'a PathBuf,
    corrupt: &'a str,
}

/// `inspect --json`: every record file that cannot be read (unless
/// filters were given: they select records), then the records (every one,
/// or those the filters keep) with their live health.
pub fn mounts_json(snap: &Snapshot, records: &[&Record], with_corrupt: bool) -> serde_json::Value {
    let corrupt = snap.bad_records.iter().filter(|_| with_corrupt).map(|bad| {
        serde_json::to_value(CorruptView {
            id: bad.id(),
            path: &bad.path,
            corrupt: &bad.problem,
        })
        .expect("a bad record is plain data")
    });
    let mounts: Vec<serde_json::Value> = corrupt
        .chain(
            records
                .iter()
                .map(|record| record_json(record, &snap.health(record))),
        )
        .collect();
    serde_json::json!({ "version": 1, "mounts": mounts })
}

/// `-J` with `-o`: each row an object of the chosen columns, keyed by
/// their names in lower case, under `list` (`mounts`, `leaks`). Cells are
/// whole (ids too) and exact; a numeric column's number is a number, and
/// `-` (none) is null.
pub fn rows_json(columns: &[Column], rows: Vec<Vec<String>>, list: &str) -> serde_json::Value {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .into_iter()
        .map(|row| {
            columns
                .iter()
                .zip(row)
                .map(|(column, cell)| {
                    let value = match (cell.as_str(), cell.parse::<u64>()) {
                        ("-", _) => serde_json::Value::Null,
                        (_, Ok(n)) if column.numeric => n.into(),
                        _ => cell.into(),
                    };
                    (column.name.to_ascii_lowercase(), value)
                })
                .collect()
        })
        .collect();
    serde_json::json!({ "version": 1, list: rows })
}

fn maps_cell(record: &Record) -> String {
    let uid = IdRange::list_to_string(&record.uidmap);
    if record.gidmap == record.uidmap {
        uid
    } else {
        format!("{uid} g:{}", IdRange::list_to_string(&record.gidmap))
    }
}

/// The columns of `inspect` (`-o`, `--list-columns`).
pub const RECORD_COLUMNS: &[Column] = &[
    column(
        "ID",
        "the record's id: on a terminal its shortest unique prefix of 8 or more (a unique prefix of 4 or more is accepted back), whole in a pipe, with -r or --no-trunc",
        false,
        true,
        Fit::Whole,
    ),
    column(
        "TARGET",
        "where the overlay is mounted",
        false,
        true,
        Fit::KeepEnd,
    ),
    column(
        "STRATEGY",
        "how its layers were idmapped",
        false,
        true,
        Fit::Spare(0),
    ),
    column("LAYERS", "how many lower layers", true, true, Fit::Spare(1)),
    column(
        "MAPS",
        "uid map C:H:S (and g: gid map when it differs)",
        false,
        false,
        Fit::Wrap,
    ),
    column(
        "STATE",
        "mounted, unmounted (behind our back), preparing, unmounting, detached, corrupt (the record file cannot be read)",
        false,
        true,
        Fit::Whole,
    ),
    column(
        "AGE",
        "time since it was mounted",
        false,
        true,
        Fit::Spare(2),
    ),
    column(
        "HEALTH",
        "ok (mounted here), elsewhere (only in other mount namespaces), unknown, running, leaked, gone",
        false,
        true,
        Fit::Whole,
    ),
    column("UPPER", "the upperdir", false, false, Fit::KeepEnd),
    column("WORK", "the workdir", false, false, Fit::KeepEnd),
    column(
        "SOURCE",
        "the source tag mountinfo shows",
        false,
        false,
        Fit::Whole,
    ),
    column("MOUNTID", "the overlay's mount id", true, false, Fit::Whole),
    column(
        "DEV",
        "the overlay's device, major:minor",
        false,
        false,
        Fit::Whole,
    ),
    column(
        "MOUNTNS",
        "the mount namespace it was mounted in",
        true,
        false,
        Fit::Whole,
    ),
    column(
        "ELSEWHERE",
        "whether it lives on in other mount namespaces: yes, no, ? (cannot tell), - (mounted here, not asked)",
        true,
        false,
        Fit::Whole,
    ),
    column(
        "PID",
        "the process that mounted it",
        true,
        false,
        Fit::Whole,
    ),
    column(
        "CREATED",
        "when it was mounted, RFC 3339",
        false,
        false,
        Fit::Whole,
    ),
];

/// The columns of `inspect --leaks`.
pub const LEAK_COLUMNS: &[Column] = &[
    column(
        "KIND",
        "what leaked (see gc's findings)",
        false,
        true,
        Fit::Whole,
    ),
    column(
        "MOUNT",
        "its mount id, if it is a mount",
        true,
        true,
        Fit::Spare(0),
    ),
    column("PATH", "where it is", false, true, Fit::KeepEnd),
    column(
        "WHY",
        "why it counts, and what gc does",
        false,
        true,
        Fit::Wrap,
    ),
    column(
        "ID",
        "the record or temporary id it belongs to",
        false,
        false,
        Fit::Whole,
    ),
    column(
        "ACTION",
        "what gc does: clean, or nothing (left alone)",
        false,
        false,
        Fit::Whole,
    ),
];

const fn column(
    name: &'static str,
    help: &'static str,
    numeric: bool,
    default: bool,
    fit: Fit,
) -> Column {
    Column {
        name,
        help,
        numeric,
        default,
        fit,
    }
}

/// What the STATE column says: the record's state, except that a record
/// saying `mounted` whose overlay is attached nowhere reads `unmounted`
/// (a plain umount(8) went behind our back), so STATE and HEALTH never
/// contradict each other.
pub fn state_word(record: &Record, health: &Health) -> &'static str {
    match record.state {
        RecordState::Mounted if !health.alive() => "unmounted",
        state => state.name(),
    }
}

/// The detail view's state: STATE's word, and what the record says when
/// that differs (umount(8) went behind our back; `umount` or `gc` removes
/// the record).
fn state_line(record: &Record, health: &Health) -> String {
    match state_word(record, health) {
        word if word == record.state.name() => word.to_string(),
        word => format!("{word} (the record says {})", record.state.name()),
    }
}

fn record_cell(column: &str, r: &Record, health: &Health, now: u64) -> String {
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    };
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    match column {
        "ID" => r.id.clone(),
        "TARGET" => r.target.display().to_string(),
        "STRATEGY" => r.strategy.name().to_string(),
        "LAYERS" => r.lowerdirs.len().to_string(),
        "MAPS" => maps_cell(r),
        "STATE" => state_word(r, health).to_string(),
        "AGE" => age(r, now),
        "HEALTH" => health.word(),
        "UPPER" => path(&r.upperdir),
        "WORK" => path(&r.workdir),
        "SOURCE" => r.source.clone(),
        "MOUNTID" => number(r.mount_id),
        "DEV" => r.dev.clone().unwrap_or_else(|| "-".into()),
        "MOUNTNS" => number(r.mount_ns),
        "ELSEWHERE" => match (health.elsewhere.len(), health.alive_elsewhere) {
            (0, Some(true)) => "yes".into(),
            (0, Some(false)) => "no".into(),
            (0, None) if health.mounted => "-".into(),
            (0, None) => "?".into(),
            (n, _) => n.to_string(),
        },
        "PID" => r.pid.to_string(),
        "CREATED" => r.created.clone(),
        _ => String::new(),
    }
}

/// A row for a record file that cannot be read: the id its name gives,
/// `corrupt` for STATE and HEALTH, nothing else known (`inspect ID` and
/// `inspect --leaks` say why).
fn corrupt_cell(column: &str, bad: &BadRecord) -> String {
    match column {
        "ID" => bad.id(),
        "STATE" | "HEALTH" => "corrupt".into(),
        _ => "-".into(),
    }
}

/// How bad a row looks: leaked first, then running, then the rest.
fn rank(health: &Health) -> u8 {
    match (health.leaked, health.owner_alive) {
        (true, _) => 0,
        (false, true) => 1,
        _ => 2,
    }
}

/// The shortest prefix of each id, of `least` characters or more, that no
/// other id starts with (the whole id where none is shorter): what a
/// terminal shows, as docker and podman show short ids. Sorted, each id
/// needs one character more than it shares with either neighbour.
pub fn short_ids<'a>(ids: &[&'a str], least: usize) -> HashMap<&'a str, &'a str> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let shared = |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    (0..sorted.len())
        .map(|i| {
            let id = sorted[i];
            let before = i.checked_sub(1).map_or(0, |j| shared(sorted[j], id));
            let after = sorted.get(i + 1).map_or(0, |next| shared(id, next));
            let keep = (before.max(after) + 1).max(least);
            let end = id.char_indices().nth(keep).map_or(id.len(), |(at, _)| at);
            (id, &id[..end])
        })
        .collect()
}

/// How many characters of an id a terminal shows at the least.
pub const SHORT_ID: usize = 8;

/// The rows of `inspect`'s table for `records`: leaked and unhealthy
/// first, or by the column `sort_by`. With `short_ids`, each id is its
/// shortest unique prefix among every record of the snapshot (so it is
/// accepted back whatever the filters left out).
pub fn record_rows(
    snap: &Snapshot,
    records: &[&Record],
    with_corrupt: bool,
    columns: &[Column],
    short_ids: bool,
    sort_by: Option<&str>,
) -> Result<Vec<Vec<String>>, String> {
    let all_ids: Vec<&str> = snap.records.iter().map(|r| r.id.as_str()).collect();
    let short = short_ids.then(|| self::short_ids(&all_ids, SHORT_ID));
    let mut ranked: Vec<(u8, Vec<String>)> = records
        .iter()
        .map(|r| {
            let health = snap.health(r);
            let cells = columns
                .iter()
                .map(|c| match (c.name, &short) {
                    ("ID", Some(short)) => short[r.id.as_str()].to_string(),
                    (name, _) => record_cell(name, r, &health, snap.now),
                })
                .collect();
            (rank(&health), cells)
        })
        .collect();
    ranked.sort_by_key(|(rank, _)| *rank);
    // Record files that cannot be read come first: a person must look
    // (unless filters were given: they select records).
    let mut rows: Vec<Vec<String>> = snap
        .bad_records
        .iter()
        .filter(|_| with_corrupt)
        .map(|bad| columns.iter().map(|c| corrupt_cell(c.name, bad)).collect())
        .chain(ranked.into_iter().map(|(_, cells)| cells))
        .collect();
    if let Some(by) = sort_by {
        table::sort(columns, &mut rows, by)?;
    }
    Ok(rows)
}

/// `inspect`: one row per record (of `records`), leaked and unhealthy
/// first, after one per record file that cannot be read (`with_corrupt`:
/// no filter given). With a width (a terminal, `--width`), ids are short
/// and the table fits the width; without one, nothing is cut. Records the
/// filters all left out print nothing.
pub fn render_table(
    snap: &Snapshot,
    records: &[&Record],
    with_corrupt: bool,
    columns: &[Column],
    layout: Layout,
    sort_by: Option<&str>,
) -> Result<String, String> {
    if snap.records.is_empty() && snap.bad_records.is_empty() {
        return Ok("no idmap-overlay mounts recorded\n".into());
    }
    let rows = record_rows(
        snap,
        records,
        with_corrupt,
        columns,
        layout.width.is_some(),
        sort_by,
    )?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    Ok(table::render(columns, &rows, layout))
}

/// The maps as the kernel reports them (statmount), where it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelMaps {
    /// The idmapped mount the maps were read from, if any.
    pub from: Option<PathBuf>,
    pub uid_lines: Vec<String>,
    pub gid_lines: Vec<String>,
    pub note: String,
}

/// One overlay, for `inspect TARGET|ID`.
#[derive(Debug)]
pub struct Detail<'a> {
    pub record: &'a Record,
    pub health: Health,
    pub kernel_maps: KernelMaps,
}

impl<'a> Detail<'a> {
    /// `kernel_maps` is what the kernel was asked (see `cmd::inspect`).
    pub fn of(snap: &Snapshot, record: &'a Record, kernel_maps: KernelMaps) -> Detail<'a> {
        Detail {
            record,
            health: snap.health(record),
            kernel_maps,
        }
    }

    /// `inspect --json TARGET|ID`: the record as in the list (see
    /// [`record_json`]), with the maps the kernel reports.
    pub fn json(&self) -> serde_json::Value {
        let mut value = record_json(self.record, &self.health);
        if let Some(fields) = value.as_object_mut() {
            fields.insert("version".into(), 1.into());
            fields.insert(
                "kernel_maps".into(),
                serde_json::to_value(&self.kernel_maps).expect("plain data"),
            );
        }
        value
    }
}

/// Where the values of the detail view start.
const KEY_WIDTH: usize = 13;

/// `inspect TARGET|ID`: `key: value` lines; with a width (a terminal,
/// `--width`), a long value wraps onto lines of its own, indented, and
/// nothing is cut.
pub fn render_detail(d: &Detail, now: u64, width: Option<usize>) -> String {
    let r = d.record;
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let value = escape(&value);
        let lines = match width {
            Some(width) => table::wrap(&value, width.saturating_sub(KEY_WIDTH).max(table::ROOM)),
            None => vec![value.into_owned()],
        };
        for (i, line) in lines.iter().enumerate() {
            let key = if i == 0 { name } else { "" };
            out.push_str(&format!("{key:<KEY_WIDTH$}{line}\n"));
        }
    };
    field("id:", r.id.clone());
    field("target:", r.target.display().to_string());
    field("state:", state_line(r, &d.health));
    field("health:", d.health.word());
    field("mounted:", yes_no(d.health.mounted).into());
    field("strategy:", r.strategy.name().into());
    field("source:", r.source.clone());
    field(
        "mount id:",
        r.mount_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    for (i, layer) in r.lowerdirs.iter().enumerate() {
        field(
            if i == 0 { "lowerdirs:" } else { "" },
            format!("{:>3}  {}", i + 1, layer.display()),
        );
    }
    let opt = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "- (read-only)".into())
    };
    field("upperdir:", opt(&r.upperdir));
    field("workdir:", opt(&r.workdir));
    if !r.options.is_empty() {
        field("options:", r.options.join(","));
    }
    field("uidmap:", IdRange::list_to_string(&r.uidmap));
    field("gidmap:", IdRange::list_to_string(&r.gidmap));
    if r.idmapped_upper {
        field(
            "upper ids:",
            "idmapped (the container's own ids on disk; --idmapped-upper)".into(),
        );
    }
    if let Some(ns) = &r.userns {
        field("userns:", ns.display().to_string());
    }
    let km = &d.kernel_maps;
    if km.from.is_some() {
        field("kernel uid:", km.uid_lines.join(", "));
        field("kernel gid:", km.gid_lines.join(", "));
    }
    field("kernel maps:", km.note.clone());
    field(
        "common dir:",
        r.common_dir
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into()),
    );
    for (i, dir) in r.idmapped_dirs.iter().enumerate() {
        field(
            if i == 0 { "idmapped:" } else { "" },
            dir.display().to_string(),
        );
    }
    let temps = if d.health.temp_mounts_present.is_empty() {
        "none attached".to_string()
    } else {
        d.health
            .temp_mounts_present
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    field("temp mounts:", temps);
    if d.health.elsewhere.is_empty() {
        let said = match (d.health.alive_elsewhere, &d.health.elsewhere_because) {
            (Some(true), Some(how)) => format!("alive, but not found ({how})"),
            (None, Some(why)) if !d.health.mounted => format!("cannot tell ({why})"),
            _ => "in no other mount namespace".into(),
        };
        field("elsewhere:", said);
    }
    for (i, copy) in d.health.elsewhere.iter().enumerate() {
        field(if i == 0 { "elsewhere:" } else { "" }, copy.to_string());
    }
    if let Some(total) = d.health.elsewhere_total {
        field("", format!("and {} more", total - d.health.elsewhere.len()));
    }
    if let Some(ns) = r.mount_ns {
        field("mounted in:", format!("mount namespace {ns}"));
    }
    field(
        "owner:",
        format!(
            "pid {} ({})",
            r.pid,
            if d.health.owner_alive {
                "running"
            } else {
                "exited"
            }
        ),
    );
    field("created:", format!("{} ({} ago)", r.created, age(r, now)));
    field("leaked:", yes_no(d.health.leaked).into());
    out
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The rows of `inspect --leaks`, in the findings' order or by the column
/// `sort_by`.
pub fn leak_rows(
    findings: &[Finding],
    columns: &[Column],
    sort_by: Option<&str>,
) -> Result<Vec<Vec<String>>, String> {
    let mut rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            columns
                .iter()
                .map(|c| match c.name {
                    "KIND" => crate::cmd::metrics::kind_name(f.kind),
                    "MOUNT" => f
                        .mount_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "-".into()),
                    "PATH" => f.path.display().to_string(),
                    "WHY" => match f.action {
                        Action::None => format!("{} (left alone)", f.why),
                        _ => f.why.clone(),
                    },
                    "ID" => f.id.clone().unwrap_or_else(|| "-".into()),
                    "ACTION" => match f.action {
                        Action::None => "none".into(),
                        _ => "clean".into(),
                    },
                    _ => String::new(),
                })
                .collect()
        })
        .collect();
    if let Some(by) = sort_by {
        table::sort(columns, &mut rows, by)?;
    }
    Ok(rows)
}

/// `inspect --leaks`: on a terminal PATH keeps its end and WHY wraps.
pub fn render_leaks(
    findings: &[Finding],
    columns: &[Column],
    layout: Layout,
    sort_by: Option<&str>,
) -> Result<String, String> {
    if findings.is_empty() {
        return Ok("no leaks found\n".into());
    }
    let rows = leak_rows(findings, columns, sort_by)?;
    Ok(table::render(columns, &rows, layout))
}

/// `inspect --features`.
pub fn render_features(f: &Features) -> String {
    let mut out = format!("kernel:              {}\n", escape(&f.kernel));
    out.push_str(&format!("probed on:           {}\n", escape(&f.probed_on)));
    out.push_str(&format!(
        "idmapped mounts:     {}\n",
        yes_no(f.idmapped_mounts)
    ));
    out.push_str(&format!("detached strategy:   {}\n", yes_no(f.detached)));
    out.push_str(&format!(
        "statmount id maps:   {}\n",
        yes_no(f.statmount_idmaps)
    ));
    out.push_str(&format!(
        "idmapped tmpfs:      {}\n",
        yes_no(f.idmapped_tmpfs)
    ));
    out.push_str(&format!(
        "unique mount ids:    {}\n",
        yes_no(f.unique_mount_ids)
    ));
    out.push_str(&format!(
        "in-use probe:        {}\n",
        yes_no(f.in_use_probe)
    ));
    out.push_str(&format!(
        "superblock watch:    {}\n",
        yes_no(f.superblock_watch)
    ));
    out.push_str(&format!(
        "auto strategy:       {}\n",
        if f.detached { "detached" } else { "common-dir" }
    ));
    for note in &f.notes {
        out.push_str(&format!("note: {}\n", escape(note)));
    }
    out
}

#[cfg(test)]
pub(crate) mod golden {
    //! The shapes scripts and eyes rely on. `UPDATE_GOLDEN=1 cargo test`
    //! rewrites the files under tests/golden/ after a deliberate change.
    use super::*;
    use idmap_overlay::Elsewhere;
    use idmap_overlay::IdRange;
    use idmap_overlay::RecordState;
    use idmap_overlay::Strategy;
    use idmap_overlay::classify;
    use idmap_overlay::testing::Beyond;
    use idmap_overlay::testing::mount_table::parse_line;
    use idmap_overlay::testing::source_tag;
    use std::path::Path;

    pub(crate) fn check(name: &str, actual: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(
            actual, expected,
            "{name} changed; UPDATE_GOLDEN=1 if deliberate"
        );
    }

    fn record(
        id: &str,
        target: &str,
        state: RecordState,
        strategy: Strategy,
        mount_id: Option<u64>,
    ) -> Record {
        let map = vec![IdRange {
            container: 0,
            host: 100000,
            size: 65536,
        }];
        Record {
            version: 1,
            id: id.into(),
            target: target.into(),
            state,
            strategy,
            lowerdirs: vec![
                "/var/lib/layers/3/fs".into(),
                "/var/lib/layers/2/fs".into(),
                "/var/lib/layers/1/fs".into(),
            ],
            upperdir: Some("/var/lib/c/upper".into()),
            workdir: Some("/var/lib/c/work".into()),
            upperdir_file: None,
            options: vec!["index=off".into()],
            uidmap: map.clone(),
            gidmap: if id == "web-2" {
                vec![IdRange {
                    container: 0,
                    host: 200000,
                    size: 65536,
                }]
            } else {
                map
            },
            userns: None,
            common_dir: Some("/var/lib/layers".into()),
            idmapped_dirs: vec!["/var/lib/layers".into()],
            temp_mounts: if strategy == Strategy::Detached {
                vec![]
            } else {
                vec![format!("/run/idmap-overlay/tmp/{id}/0").into()]
            },
            idmapped_upper: false,
            source: source_tag(id),
            mount_id,
            mount_id_unique: None,
            dev: None,
            super_options: None,
            vfs_flags: Vec::new(),
            mount_ns: None,
            pid: 4242,
            created: "2026-11-26T10:00:00Z".into(),
        }
    }

    /// A container's process in a mount namespace of its own.
    fn container(pid: u32, command: &str, root: bool) -> Elsewhere {
        Elsewhere {
            pid: Some(pid),
            command: Some(command.into()),
            mount_ns: Some(4026532000 + u64::from(pid)),
            root,
            cwd: !root,
            fd: false,
            fds: Vec::new(),
        }
    }

    pub(crate) fn fixture() -> Snapshot {
        let now = humantime::parse_rfc3339("2026-11-26T12:30:00Z")
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let table = [
            "60 1 0:50 / /run/containers/web-1/rootfs rw - overlay idmap-overlay:web-1 rw",
            "61 1 0:51 / /run/containers/web-2/rootfs rw - overlay idmap-overlay:web-2 rw",
            "70 1 254:0 /var/lib/layers /run/idmap-overlay/tmp/6b0860aa-3327-178bc4d2/0 ro,idmapped - ext4 /dev/vda rw",
            "80 1 254:0 /var/lib/containerd/snapshots /var/lib/containerd/tmpmounts/ovl-idmapped42 ro,idmapped - ext4 /dev/vda rw",
        ];
        let mut snap = Snapshot::default();
        snap.state_root = "/run/idmap-overlay".into();
        snap.records = vec![
            record(
                "web-1",
                "/run/containers/web-1/rootfs",
                RecordState::Mounted,
                Strategy::Detached,
                Some(60),
            ),
            record(
                "web-2",
                "/run/containers/web-2/rootfs",
                RecordState::Mounted,
                Strategy::CommonDir,
                Some(61),
            ),
            record(
                "6b0860aa-3327-178bc4d2",
                "/run/containers/job-7/rootfs",
                RecordState::Preparing,
                Strategy::CommonDir,
                None,
            ),
            record(
                "gone",
                "/mnt/gone",
                RecordState::Mounted,
                Strategy::PerLayer,
                Some(99),
            ),
            record(
                "web-3",
                "/run/containers/web-3/rootfs",
                RecordState::Detached,
                Strategy::Detached,
                Some(62),
            ),
        ];
        snap.named = [
            (
                "web-1".to_string(),
                (vec![container(11184, "sh", false)], 1),
            ),
            (
                "web-3".to_string(),
                (vec![container(12001, "nginx", true)], 1),
            ),
        ]
        .into();
        snap.beyond = [
            (
                "web-3".to_string(),
                Beyond::Alive(
                    "the kernel says its upperdir /var/lib/c/upper is still in use".into(),
                ),
            ),
            ("gone".to_string(), Beyond::Gone),
        ]
        .into();
        snap.table = table
            .iter()
            .map(|l| parse_line(l.as_bytes()).unwrap())
            .collect();
        snap.temp_dirs = vec!["6b0860aa-3327-178bc4d2".into()];
        snap.lock_files = vec![
            "web-1".into(),
            "web-2".into(),
            "6b0860aa-3327-178bc4d2".into(),
            "gone".into(),
        ];
        snap.now = now;
        snap.min_age = 60;
        snap
    }

    fn layout(width: Option<usize>) -> Layout {
        Layout {
            headings: true,
            raw: false,
            width,
            spare_defaults: true,
        }
    }

    /// Every record of `snap`: no filter.
    fn all(snap: &Snapshot) -> Vec<&Record> {
        snap.records.iter().collect()
    }

    fn default_columns() -> Vec<Column> {
        table::choose(RECORD_COLUMNS, None).unwrap()
    }

    /// The shell completions offer `args::COLUMN_NAMES` for `-o` and
    /// `--sort`: every column of the table and of `--leaks`, in order, once.
    #[test]
    fn completions_offer_every_column() {
        let mut names: Vec<&str> = Vec::new();
        for column in RECORD_COLUMNS.iter().chain(LEAK_COLUMNS) {
            if !names.contains(&column.name) {
                names.push(column.name);
            }
        }
        assert_eq!(names, crate::cmd::args::COLUMN_NAMES);
    }

    #[test]
    fn table() {
        let snap = fixture();
        let text = render_table(
            &snap,
            &all(&snap),
            true,
            &default_columns(),
            layout(None),
            None,
        )
        .unwrap();
        check("inspect-table.txt", &text);
    }

    /// 120 overlays whose ids and targets differ only deep inside, as a
    /// busy host's do.
    fn crowd() -> Snapshot {
        let mut snap = fixture();
        let template = snap.records[0].clone();
        snap.records = (0..120)
            .map(|n| {
                let mut r = template.clone();
                r.id = format!("6b0e3a26-5{:03x}-1c2d{:02}", n * 7, n % 3);
                r.source = source_tag(&r.id);
                r.target =
                    format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{n:03}/rootfs")
                        .into();
                r.mount_id = Some(1000 + n);
                r
            })
            .collect();
        // Every tenth unmounted behind our back: those rows come first.
        snap.table = snap
            .records
            .iter()
            .filter(|r| r.mount_id.unwrap() % 10 != 3)
            .map(|r| {
                parse_line(
                    format!(
                        "{} 1 0:90 / {} rw - overlay {} rw",
                        r.mount_id.unwrap(),
                        r.target.display(),
                        r.source
                    )
                    .as_bytes(),
                )
                .unwrap()
            })
            .collect();
        snap.named.clear();
        snap.beyond = snap
            .records
            .iter()
            .map(|r| (r.id.clone(), Beyond::Gone))
            .collect();
        snap
    }

    #[test]
    fn a_crowd_fits_a_terminal_and_every_id_is_accepted_back() {
        let snap = crowd();
        let ids: Vec<&str> = snap.records.iter().map(|r| r.id.as_str()).collect();
        for (name, width) in [
            ("60", Some(60)),
            ("80", Some(80)),
            ("200", Some(200)),
            ("piped", None),
        ] {
            let text = render_table(
                &snap,
                &all(&snap),
                true,
                &default_columns(),
                layout(width),
                None,
            )
            .unwrap();
            check(&format!("inspect-table-{name}.txt"), &text);
            let mut seen = std::collections::BTreeSet::new();
            let mut targets = std::collections::BTreeSet::new();
            for line in text.lines().skip(1) {
                if let Some(w) = width {
                    assert!(line.chars().count() <= w, "{name}: {line}");
                }
                let cell = line.split_whitespace().next().unwrap();
                let matched = idmap_overlay::testing::match_id(cell, &ids).unwrap();
                let whole = matched.unwrap_or_else(|| panic!("{name}: {cell} not accepted back"));
                match width {
                    None => assert_eq!(whole, cell, "{name}: a pipe shows whole ids"),
                    Some(_) => assert!(
                        cell.len() >= SHORT_ID && cell.len() < whole.len(),
                        "{name}: {cell}"
                    ),
                }
                assert!(seen.insert(whole), "{name}: {cell} twice");
                let target = line.split_whitespace().nth(1).unwrap();
                assert!(target.ends_with("/rootfs"), "{name}: {line}");
                assert!(targets.insert(target.to_string()), "{name}: {target} twice");
                if width.is_none() {
                    assert!(!target.contains('…'), "{line}");
                }
            }
            assert_eq!(seen.len(), 120, "{name}");
        }
        let raw = Layout {
            headings: false,
            raw: true,
            width: None,
            spare_defaults: false,
        };
        let columns = table::choose(RECORD_COLUMNS, Some("ID,HEALTH,TARGET")).unwrap();
        let mut sorted =
            render_table(&snap, &all(&snap), true, &columns, raw, Some("TARGET")).unwrap();
        sorted.truncate(sorted.find('\n').unwrap());
        assert_eq!(
            sorted,
            "6b0e3a26-5000-1c2d00 ok /run/containerd/io.containerd.runtime.v2.task/k8s.io/000/rootfs"
        );
    }

    #[test]
    fn json() {
        let snap = fixture();
        let json = mounts_json(&snap, &all(&snap), true);
        check(
            "inspect.json",
            &(serde_json::to_string_pretty(&json).unwrap() + "\n"),
        );
        // -J -o: the chosen columns, lower case, whole and exact.
        let columns = table::choose(RECORD_COLUMNS, Some("ID,MOUNTID,UPPER,HEALTH")).unwrap();
        let rows = record_rows(&snap, &all(&snap), true, &columns, false, Some("ID")).unwrap();
        let chosen = rows_json(&columns, rows, "mounts");
        assert_eq!(
            chosen["mounts"][0],
            serde_json::json!({
                "id": "6b0860aa-3327-178bc4d2",
                "mountid": null,
                "upper": "/var/lib/c/upper",
                "health": "leaked",
            })
        );
        assert_eq!(chosen["mounts"][1]["mountid"], 99);
        assert_eq!(
            chosen["mounts"].as_array().unwrap().len(),
            snap.records.len()
        );
    }

    #[test]
    fn leaks() {
        let snap = fixture();
        let found = classify(&snap);
        let columns = table::choose(LEAK_COLUMNS, None).unwrap();
        check(
            "inspect-leaks.txt",
            &render_leaks(&found, &columns, layout(None), None).unwrap(),
        );
        // On a terminal of 60 or 80: PATH keeps its end, WHY wraps.
        for width in [60, 80] {
            let text = render_leaks(&found, &columns, layout(Some(width)), None).unwrap();
            check(&format!("inspect-leaks-{width}.txt"), &text);
            assert!(text.lines().all(|l| l.chars().count() <= width), "{text}");
        }
        let json = serde_json::json!({"version": 1, "leaks": found});
        check(
            "inspect-leaks.json",
            &(serde_json::to_string_pretty(&json).unwrap() + "\n"),
        );
    }

    #[test]
    fn detail() {
        let snap = fixture();
        let detail = Detail {
            record: &snap.records[1],
            health: snap.health(&snap.records[1]),
            kernel_maps: KernelMaps {
                from: None,
                uid_lines: vec![],
                gid_lines: vec![],
                note: "as recorded".into(),
            },
        };
        check(
            "inspect-detail.txt",
            &render_detail(&detail, snap.now, None),
        );
        // A long value wraps within the width, under its key; nothing is cut.
        let long = Detail {
            kernel_maps: KernelMaps {
                note: "no idmapped mount of this overlay is attached (overlayfs keeps private clones of its layers), so the kernel cannot be asked".into(),
                ..detail.kernel_maps.clone()
            },
            ..detail
        };
        let text = render_detail(&long, snap.now, Some(60));
        check("inspect-detail-60.txt", &text);
        assert!(text.lines().all(|l| l.chars().count() <= 60), "{text}");
        let letters = |t: &str| t.split_whitespace().collect::<String>();
        assert_eq!(
            letters(&text),
            letters(&render_detail(&long, snap.now, None))
        );
    }

    /// STATE and HEALTH are one answer, whichever view asks.
    #[test]
    fn every_view_says_the_same_state_and_health() {
        let snap = fixture();
        let columns = table::choose(RECORD_COLUMNS, Some("ID,STATE,HEALTH")).unwrap();
        let raw = Layout {
            headings: false,
            raw: true,
            width: None,
            spare_defaults: false,
        };
        let table = render_table(&snap, &all(&snap), true, &columns, raw, None).unwrap();
        let listed = mounts_json(&snap, &all(&snap), true);
        let mut unmounted = 0;
        for record in &snap.records {
            let row = table
                .lines()
                .find(|l| l.split(' ').next() == Some(record.id.as_str()))
                .unwrap();
            let cells: Vec<&str> = row.split(' ').collect();
            let (state, health) = (cells[1], cells[2]);
            let detail = Detail::of(&snap, record, detail_maps());
            let text = render_detail(&detail, snap.now, None);
            let value = |key: &str| {
                let line = text.lines().find(|l| l.starts_with(key)).unwrap();
                line[KEY_WIDTH..].split(' ').next().unwrap().to_string()
            };
            assert_eq!(
                (value("state:"), value("health:")),
                (state.into(), health.into())
            );
            let json = detail.json();
            let entry = listed["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == record.id.as_str())
                .unwrap();
            for json in [&json, entry] {
                assert_eq!(json["state"], state, "{}", record.id);
                assert_eq!(json["health"]["word"], health, "{}", record.id);
                assert_eq!(json["recorded_state"], record.state.name());
            }
            unmounted += usize::from(state == "unmounted");
        }
        assert_eq!(unmounted, 1, "the fixture's umount(8) behind our back");
    }

    fn detail_maps() -> KernelMaps {
        KernelMaps {
            from: None,
            uid_lines: vec![],
            gid_lines: vec![],
            note: "as recorded".into(),
        }
    }

    #[test]
    fn short_ids_are_unique_prefixes() {
        let ids = [
            "6b0e3a26-5000-1c2d00",
            "6b0e3a26-5007-1c2d01",
            "f00dfeed1",
            "abcdefgh",
            "abcdefghij",
            "web-1",
        ];
        let short = short_ids(&ids, 8);
        assert_eq!(short["6b0e3a26-5000-1c2d00"], "6b0e3a26-5000");
        assert_eq!(short["6b0e3a26-5007-1c2d01"], "6b0e3a26-5007");
        assert_eq!(short["f00dfeed1"], "f00dfeed");
        assert_eq!(short["abcdefgh"], "abcdefgh");
        assert_eq!(short["abcdefghij"], "abcdefghi");
        assert_eq!(short["web-1"], "web-1");
        for (id, prefix) in &short {
            let matched = idmap_overlay::testing::match_id(prefix, &ids).unwrap();
            assert_eq!(matched, Some(*id), "{prefix}");
        }
    }
}
