//! Property tests of everything that reads untrusted text: the id-map
//! parser, the `-o` option parser, the record loader, the mountinfo parser
//! (mount points are chosen by whoever mounts). The mount(8) helper's
//! argument parser, part of the binary, has its own in src/mount_helper.rs. None may panic on
//! any input, and what they accept must read back as what was written.
//! Pure: no root, no mounts.

use idmap_overlay::testing::RECORD_VERSION;
use idmap_overlay::testing::idmap::{self, MAX_RANGES};
use idmap_overlay::testing::mount_table as mountinfo;
use idmap_overlay::testing::overlay;
use idmap_overlay::{IdRange, MountOptions, Record, RecordState, StateDir, Strategy as Layout};
use proptest::prelude::*;
use std::path::PathBuf;

/// A valid map: non-overlapping on both sides, no range past u32::MAX - 1,
/// sizes above zero, in any order.
fn valid_map(max_ranges: usize) -> impl Strategy<Value = Vec<IdRange>> {
    (1..=max_ranges)
        .prop_flat_map(|n| {
            (
                prop::collection::vec((0u32..1 << 20, 1u32..1 << 20, 0u32..1 << 20), n),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                0u32..1 << 30,
                0u32..1 << 30,
            )
        })
        .prop_map(|(ranges, host_order, c0, h0)| {
            // Container ranges laid out left to right with gaps; host
            // ranges too, but in a shuffled order of the same ranges.
            let mut map: Vec<IdRange> = Vec::new();
            let mut at = c0;
            for (gap, size, _) in &ranges {
                at += gap;
                map.push(IdRange {
                    container: at,
                    host: 0,
                    size: *size,
                });
                at += size;
            }
            let mut at = h0;
            for i in host_order {
                at += ranges[i].2;
                map[i].host = at;
                at += ranges[i].1;
            }
            map
        })
}

/// One range anywhere in the 32-bit space, up to its very end.
fn edge_range() -> impl Strategy<Value = IdRange> {
    (0u32..u32::MAX, 0u32..u32::MAX).prop_flat_map(|(container, host)| {
        let room = u32::MAX - container.max(host);
        (1..=room.max(1)).prop_map(move |size| IdRange {
            container,
            host,
            size,
        })
    })
}

/// Text made mostly of the characters the parsers care about.
fn parser_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just(",".to_string()),
            Just(":".to_string()),
            Just("=".to_string()),
            Just("\"".to_string()),
            Just("uidmap=".to_string()),
            Just("gidmap=".to_string()),
            Just("lowerdir=".to_string()),
            Just("upperdir=".to_string()),
            Just("workdir=".to_string()),
            Just("lowerdir+=".to_string()),
            Just("/a".to_string()),
            Just("0:100000:65536".to_string()),
            Just("4294967295".to_string()),
            Just("99999999999999999999".to_string()),
            Just("-1".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            "[0-9]{1,10}",
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn key() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_+.-]{0,11}".prop_filter("not a key the parser treats itself", |k| {
        !overlay::VfsFlags::default().apply(k)
            && !overlay::is_fstab_only(k)
            && ![
                "lowerdir",
                "upperdir",
                "workdir",
                "uidmap",
                "gidmap",
                "lowerdir+",
                "datadir+",
                "source",
            ]
            .contains(&k.as_str())
    })
}

/// A path overlayfs options can carry: absolute, no `,` `:` `"` or newline.
fn option_path() -> impl Strategy<Value = String> {
    "(/[a-zA-Z0-9._ =+@-]{1,12}){1,4}"
}

fn valid_options() -> impl Strategy<Value = MountOptions> {
    (
        prop::option::of(prop::collection::vec(option_path(), 1..8)),
        prop::option::of(option_path()),
        prop::option::of(option_path()),
        prop::option::of(valid_map(6)),
        prop::option::of(valid_map(6)),
        prop::collection::vec(
            (
                key(),
                prop::option::of("[a-zA-Z0-9/:=._ -]{0,12}|\"[a-z,]{0,8}\""),
            ),
            0..6,
        ),
        prop::collection::vec(vfs_word(), 0..4),
    )
        .prop_filter("passthrough keys are unique", |(.., pass, _)| {
            let mut keys: Vec<&String> = pass.iter().map(|(k, _)| k).collect();
            keys.sort();
            keys.dedup();
            keys.len() == pass.len()
        })
        .prop_map(
            |(lowerdirs, upperdir, workdir, uidmap, gidmap, pass, words)| {
                let mut flags = overlay::VfsFlags::default();
                for word in words {
                    flags.apply(word);
                }
                MountOptions {
                    flags,
                    idmapped_upper: false,
                    lowerdirs,
                    upperdir,
                    workdir,
                    uidmap,
                    gidmap,
                    // A quoted value reads back without its quotes; only
                    // SELinux context options may keep commas in it.
                    passthrough: pass
                        .into_iter()
                        .map(|(k, v)| {
                            let v = v.map(|v| v.replace('"', ""));
                            let v = match idmap_overlay::testing::overlay::is_context_option(&k) {
                                true => v,
                                false => v.map(|v| v.replace(',', "")),
                            };
                            (k, v)
                        })
                        .collect(),
                }
            },
        )
        .prop_filter("something to say", |o| *o != MountOptions::default())
}

/// One of mount(8)'s per-mount flag words.
fn vfs_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "noatime",
        "relatime",
        "strictatime",
        "atime",
        "nodiratime",
        "diratime",
        "nosymfollow",
        "symfollow",
    ])
}

/// The `-o` text for `opts`, its options in the order given by `order`.
fn render_options(opts: &MountOptions, order: &[usize]) -> String {
    let mut tokens: Vec<String> = Vec::new();
    if let Some(l) = &opts.lowerdirs {
        tokens.push(format!("lowerdir={}", l.join(":")));
    }
    if let Some(u) = &opts.upperdir {
        tokens.push(format!("upperdir={u}"));
    }
    if let Some(w) = &opts.workdir {
        tokens.push(format!("workdir={w}"));
    }
    if let Some(m) = &opts.uidmap {
        tokens.push(format!("uidmap={}", idmap::render(m)));
    }
    if let Some(m) = &opts.gidmap {
        tokens.push(format!("gidmap={}", idmap::render(m)));
    }
    tokens.extend(opts.flags.words());
    for (k, v) in &opts.passthrough {
        tokens.push(match v {
            Some(v) if v.contains(',') => format!("{k}=\"{v}\""),
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
    }
    // Passthrough options keep their relative order; the others may go
    // anywhere among them.
    let fixed = tokens.len() - opts.passthrough.len();
    let mut named: Vec<String> = tokens.drain(..fixed).collect();
    let mut out = tokens;
    for (i, token) in named.drain(..).enumerate() {
        let at = order.get(i).copied().unwrap_or(0) % (out.len() + 1);
        out.insert(at, token);
    }
    out.join(",")
}

fn path_text() -> impl Strategy<Value = PathBuf> {
    "(/[^/\u{0}]{1,10}){1,4}".prop_map(PathBuf::from)
}

fn record() -> impl Strategy<Value = Record> {
    let strategy = prop_oneof![
        Just(Layout::Auto),
        Just(Layout::Detached),
        Just(Layout::CommonDir),
        Just(Layout::PerLayer),
    ];
    let state = prop_oneof![
        Just(RecordState::Preparing),
        Just(RecordState::Mounted),
        Just(RecordState::Unmounting),
    ];
    (
        (
            "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,40}",
            path_text(),
            state,
            strategy,
        ),
        (
            prop::collection::vec(path_text(), 0..5),
            prop::option::of(path_text()),
            prop::option::of(path_text()),
            prop::collection::vec("[^\u{0}]{0,12}", 0..4),
        ),
        (valid_map(4), valid_map(4), prop::option::of(path_text())),
        (
            prop::option::of(path_text()),
            prop::collection::vec(path_text(), 0..3),
            prop::collection::vec(path_text(), 0..3),
        ),
        (
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<u32>(),
            "[0-9T:Z-]{0,25}",
        ),
    )
        .prop_map(
            |(
                (id, target, state, strategy),
                (lowerdirs, upperdir, workdir, options),
                (uidmap, gidmap, userns),
                (common_dir, idmapped_dirs, temp_mounts),
                (mount_id, mount_id_unique, pid, created),
            )| Record {
                version: RECORD_VERSION,
                source: format!("idmap-overlay:{id}"),
                id,
                target,
                state,
                strategy,
                lowerdirs,
                upperdir,
                workdir,
                upperdir_file: None,
                options,
                uidmap,
                gidmap,
                userns,
                common_dir,
                idmapped_dirs,
                temp_mounts,
                // Both values, without another generator in the tuple.
                idmapped_upper: pid % 2 == 0,
                mount_id,
                mount_id_unique,
                dev: None,
                super_options: None,
                vfs_flags: Vec::new(),
                mount_ns: None,
                pid,
                created,
            },
        )
}

/// Loads `bytes` as the record file `<name>.json` in a fresh directory.
fn load(name: &str, bytes: &[u8]) -> Result<Record, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.json"));
    std::fs::write(&path, bytes).unwrap();
    StateDir::read_record_file(&path)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn map_parser_never_panics(text in parser_soup()) {
        let _ = idmap::parse_map(&text);
        let _ = idmap::parse_range(&text);
        let _ = idmap::from_proc_lines(&text);
    }

    #[test]
    fn map_parser_never_panics_on_any_string(text in any::<String>()) {
        let _ = idmap::parse_map(&text);
        let _ = idmap::from_proc_lines(&text);
    }

    #[test]
    fn validate_never_panics(ranges in prop::collection::vec(
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(container, host, size)| IdRange { container, host, size }),
        0..400,
    )) {
        let _ = idmap::validate(&ranges);
    }

    #[test]
    fn maps_read_back_as_rendered(map in valid_map(40)) {
        prop_assert_eq!(idmap::parse_map(&idmap::render(&map)), Ok(map.clone()));
        prop_assert_eq!(idmap::from_proc_lines(&idmap::to_proc_lines(&map)), Ok(map));
    }

    #[test]
    fn edge_ranges_read_back(range in edge_range()) {
        prop_assert_eq!(idmap::parse_map(&idmap::render(&[range])), Ok(vec![range]));
    }

    #[test]
    fn accepted_maps_are_valid_and_read_back(text in parser_soup()) {
        if let Ok(map) = idmap::parse_map(&text) {
            prop_assert!(!map.is_empty() && map.len() <= MAX_RANGES);
            prop_assert_eq!(idmap::validate(&map), Ok(()));
            prop_assert_eq!(idmap::parse_map(&idmap::render(&map)), Ok(map));
        }
    }

    #[test]
    fn option_parser_never_panics(text in parser_soup()) {
        let _ = overlay::parse_options(&text);
        let _ = overlay::split_lowerdirs(&text);
    }

    #[test]
    fn option_parser_never_panics_on_any_string(text in any::<String>()) {
        let _ = overlay::parse_options(&text);
    }

    #[test]
    fn options_read_back_as_rendered(
        opts in valid_options(),
        order in prop::collection::vec(any::<usize>(), 5),
    ) {
        let text = render_options(&opts, &order);
        prop_assert_eq!(overlay::parse_options(&text), Ok(opts), "{}", text);
    }

    #[test]
    fn record_loader_never_panics(name in "[a-z0-9.-]{1,12}", bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = load(&name, &bytes);
    }

    #[test]
    fn record_loader_never_panics_on_damaged_records(
        record in record(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = serde_json::to_vec_pretty(&record).unwrap();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        if let Ok(loaded) = load(&record.id, &bytes[..cut]) {
            // Whatever it accepts is a whole record of the current version
            // under its own name.
            prop_assert_eq!(loaded.version, RECORD_VERSION);
            prop_assert_eq!(&loaded.id, &record.id);
        }
    }

    #[test]
    fn records_read_back_as_written(record in record()) {
        let text = serde_json::to_string_pretty(&record).unwrap() + "\n";
        prop_assert_eq!(load(&record.id, text.as_bytes()), Ok(record));
    }

    #[test]
    fn records_of_other_versions_are_refused(record in record(), version in any::<u32>()) {
        prop_assume!(version != RECORD_VERSION);
        let mut value = serde_json::to_value(&record).unwrap();
        value["version"] = version.into();
        let err = load(&record.id, value.to_string().as_bytes()).unwrap_err();
        prop_assert!(err.contains(&format!("has version {version}")), "{}", err);
    }
}

/// A path as the kernel writes it in mountinfo: space, tab, newline and
/// backslash as three-digit octal escapes.
fn mountinfo_escape(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mountinfo_parser_never_panics(text in any::<Vec<u8>>()) {
        let _ = mountinfo::parse(&text);
    }

    #[test]
    fn mountinfo_parser_never_panics_on_escapes(text in "([0-9 -]|\\\\[0-9]{0,3}|[a-z/:]){0,60}") {
        let _ = mountinfo::parse(text.as_bytes());
        let _ = mountinfo::parse_line(format!("1 2 0:1 {text} {text} rw - overlay {text} rw").as_bytes());
    }

    #[test]
    fn mountinfo_lines_read_back(
        id in any::<u64>(),
        parent in any::<u64>(),
        point in "(/[a-z \t\n\\\\]{1,6}){1,3}",
        source in "[a-z:\\\\ ]{1,12}",
    ) {
        let line = format!(
            "{id} {parent} 0:50 / {} rw,relatime shared:1 - overlay {} rw,lowerdir=/a",
            mountinfo_escape(&point),
            mountinfo_escape(&source)
        );
        let entry = mountinfo::parse_line(line.as_bytes()).unwrap();
        prop_assert_eq!(entry.id, id);
        prop_assert_eq!(entry.parent, parent);
        prop_assert_eq!(entry.mount_point, PathBuf::from(&point));
        prop_assert_eq!(entry.source, source);
        prop_assert_eq!(entry.tags, vec!["shared:1".to_string()]);
    }

}

proptest! {
    // Maps of up to 341 ranges: fewer cases, each costs more.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn long_maps_read_back_and_longer_ones_are_refused(map in valid_map(MAX_RANGES + 1)) {
        let text = idmap::render(&map);
        let kernel_text = idmap::to_proc_lines(&map).len();
        if map.len() <= MAX_RANGES && kernel_text <= idmap::MAX_MAP_TEXT {
            prop_assert_eq!(idmap::parse_map(&text), Ok(map));
        } else {
            let err = idmap::parse_map(&text).unwrap_err();
            prop_assert!(err.contains("at most 340") || err.contains("at most 4095"), "{}", err);
        }
    }
}
