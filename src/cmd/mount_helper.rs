//! `mount.idmap-overlay`: the mount(8) helper. mount(8) runs
//! `/sbin/mount.TYPE spec dir [-sfnv] [-N namespace] [-o options] [-t type.subtype]`
//! for `mount -t TYPE` (mount(8) "EXTERNAL HELPERS"), which makes an fstab
//! line or a systemd `.mount` unit of type `idmap-overlay` work. The same
//! binary answers to that name (see `src/main.rs`); this module turns the
//! helper's arguments into an `idmap-overlay mount` request.
//!
//! The `-o` string mount(8) hands over is ours (containerd's form) mixed with
//! the filesystem-independent options mount(8) adds or expands: `defaults`
//! arrives as `rw`, `user` as `noexec,nosuid,nodev,...,user`, and `_netdev`,
//! `nofail` come through (seen with util-linux 2.38). Those are sorted out
//! here: per-mount attributes (`ro`, `nosuid`, `noatime`, ...) are applied to
//! the overlay's mount once it exists, mount(8)'s own bookkeeping options are
//! dropped, and the rest goes to `idmap-overlay mount -o`.

use crate::cmd;
use crate::cmd::args::MountArgs;
use crate::cmd::exit::{Code, fail};
use anyhow::Result;
use idmap_overlay::{IdRange, MountOptions};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The name mount(8) looks for: `mount.` and the filesystem type.
pub const HELPER_NAME: &str = "mount.idmap-overlay";

/// Was the binary started as the mount helper (`argv[0]`'s basename)?
pub fn invoked_as_helper(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new(HELPER_NAME))
}

/// The helper's command line, as mount(8) passes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HelperArgs {
    /// The source (fstab's first field): `idmap-overlay:ID` names the
    /// record id (see [`id_of_spec`]); anything else ("none") is ignored,
    /// the layers are in `-o`.
    pub spec: String,
    pub target: PathBuf,
    /// Every `-o`, joined with commas.
    pub options: String,
    /// `-s`: drop options that neither we nor overlayfs know, instead of
    /// failing on them.
    pub sloppy: bool,
    /// `-f`: check everything, mount nothing.
    pub fake: bool,
    /// `-n`: do not write /etc/mtab. We never do; accepted.
    pub no_mtab: bool,
    /// `-v`.
    pub verbose: bool,
    /// `-N namespace`: mount in that mount namespace (a /proc/PID/ns/mnt path
    /// or mount(8)'s /proc/PID/fd/N).
    pub namespace: Option<PathBuf>,
    /// `-t type.subtype`: accepted and ignored (there are no subtypes).
    pub fs_type: Option<String>,
    /// `-h`/`--help`.
    pub help: bool,
}

pub const USAGE: &str = "\
usage: mount.idmap-overlay SPEC DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]

The mount(8) helper of idmap-overlay, run by `mount -t idmap-overlay`:
  mount -t idmap-overlay -o lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536 idmap-overlay:web DIR
SPEC idmap-overlay:ID gives the record id, which the mount table then shows as
the source, so that `mount -a` sees the overlay mounted; \"none\" lets one be
generated. OPTIONS are those of `idmap-overlay mount -o`
plus the filesystem-independent ones (ro, nosuid, nodev, noexec, noatime, ...).
  -s  sloppy: drop options that neither idmap-overlay nor overlayfs knows
  -f  fake: check the options, mount nothing
  -n  no mtab (nothing to do)
  -v  verbose
See mount.idmap-overlay(8) and idmap-overlay-mount(8).
";

/// Incorrect invocation, followed by the helper's synopsis as mount(8)
/// helpers print it.
fn usage_with_synopsis(message: impl Into<String>) -> anyhow::Error {
    crate::cmd::exit::usage(format!("{}\n{USAGE}", message.into()))
}

/// Parses `spec dir [-sfnv] [-N ns] [-o opts] [-t type]`, options anywhere,
/// short flags bundled (`-sv`), values attached or separate (`-oX`, `-o X`).
pub fn parse_args(args: &[OsString]) -> Result<HelperArgs> {
    let mut parsed = HelperArgs::default();
    let mut positionals: Vec<OsString> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut iter = args.iter();
    let mut only_positionals = false;
    while let Some(arg) = iter.next() {
        let text = arg.to_str();
        if only_positionals || !text.is_some_and(|t| t.starts_with('-') && t.len() > 1) {
            positionals.push(arg.clone());
            continue;
        }
        let text = text.unwrap_or_default();
        if text == "--" {
            only_positionals = true;
            continue;
        }
        if text == "--help" {
            parsed.help = true;
            continue;
        }
        for (at, flag) in text[1..].char_indices() {
            match flag {
                's' => parsed.sloppy = true,
                'f' => parsed.fake = true,
                'n' => parsed.no_mtab = true,
                'v' => parsed.verbose = true,
                'h' => parsed.help = true,
                'o' | 'N' | 't' => {
                    let attached = &text[1 + at + 1..];
                    let value = if !attached.is_empty() {
                        attached.to_string()
                    } else {
                        let next = iter
                            .next()
                            .ok_or_else(|| usage_with_synopsis(format!("-{flag} needs a value")))?;
                        next.to_str()
                            .ok_or_else(|| {
                                usage_with_synopsis(format!("-{flag}: the value is not UTF-8"))
                            })?
                            .to_string()
                    };
                    match flag {
                        'o' => options.push(value),
                        'N' => parsed.namespace = Some(PathBuf::from(value)),
                        _ => parsed.fs_type = Some(value),
                    }
                    break;
                }
                other => return Err(usage_with_synopsis(format!("unknown option -{other}"))),
            }
        }
    }
    if parsed.help {
        return Ok(parsed);
    }
    let mut positionals = positionals.into_iter();
    match (positionals.next(), positionals.next(), positionals.next()) {
        (Some(spec), Some(target), None) => {
            parsed.spec = spec.to_string_lossy().into_owned();
            parsed.target = PathBuf::from(target);
        }
        (_, _, Some(extra)) => {
            return Err(usage_with_synopsis(format!(
                "unexpected argument {:?}",
                extra.to_string_lossy()
            )));
        }
        _ => {
            return Err(usage_with_synopsis(
                "needs a SPEC (\"none\") and a mountpoint DIR",
            ));
        }
    }
    parsed.options = options.join(",");
    Ok(parsed)
}

/// What one `-o` token is to the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Goes to `idmap-overlay mount -o`: ours, overlayfs's, and mount(8)'s
    /// per-mount flags (`ro`, `nosuid`, `noatime`, ...) and fstab words,
    /// which `-o` takes too.
    Ours,
    /// mount(8)'s own bookkeeping: dropped.
    Generic,
    /// Neither ours, nor overlayfs's as far as we know, nor generic.
    Unknown,
}

/// Options of ours and of overlayfs (fs/overlayfs/params.c, Linux 6.x).
const OVERLAY_KEYS: &[&str] = &[
    "lowerdir",
    "upperdir",
    "workdir",
    "uidmap",
    "gidmap",
    "idmapped_upper",
    "default_permissions",
    "redirect_dir",
    "index",
    "uuid",
    "nfs_export",
    "userxattr",
    "xino",
    "metacopy",
    "verity",
    "volatile",
];

/// Filesystem-independent options mount(8) itself acts on (mount(8)
/// "FILESYSTEM-INDEPENDENT MOUNT OPTIONS"). `user` and friends arrive with
/// the `nosuid,nodev,noexec` they imply already spelled out.
const GENERIC_KEYS: &[&str] = &[
    "user", "nouser", "users", "owner", "group", "async", "loud", "silent", "comment", "uhelper",
    "helper",
];

fn classify(token: &str) -> Kind {
    let key = token.split_once('=').map_or(token, |(k, _)| k);
    if GENERIC_KEYS.contains(&key) {
        Kind::Generic
    } else if OVERLAY_KEYS.contains(&key)
        || idmap_overlay::VfsFlags::default().apply(key)
        || MountOptions::is_fstab_only(key)
        || IdRange::parse(token).is_ok()
    {
        // A bare C:H:S continues the uid or gid map before it.
        Kind::Ours
    } else {
        Kind::Unknown
    }
}

/// The helper's `-o` sorted out.
#[derive(Debug, PartialEq, Eq)]
pub struct Translation {
    /// For `idmap-overlay mount -o`; empty when nothing is left.
    pub overlay_options: String,
    /// Unknown options dropped because of `-s`.
    pub dropped: Vec<String>,
}

/// Pure: keeps what `idmap-overlay mount -o` takes, drops mount(8)'s
/// bookkeeping. Unknown options go to overlayfs (which may refuse them)
/// unless `sloppy`.
pub fn translate(options: &str, sloppy: bool) -> Translation {
    let mut ours = Vec::new();
    let mut dropped = Vec::new();
    for token in MountOptions::split(options).unwrap_or_else(|_| vec![options.to_string()]) {
        if token.is_empty() {
            continue;
        }
        match classify(&token) {
            Kind::Ours => ours.push(token),
            Kind::Generic => {}
            Kind::Unknown if sloppy => dropped.push(token),
            Kind::Unknown => ours.push(token),
        }
    }
    Translation {
        overlay_options: ours.join(","),
        dropped,
    }
}

/// The record id a SPEC names: `idmap-overlay:ID` is the source tag the
/// overlay of record ID shows in the mount table. mount(8) compares an
/// fstab line's source and target (not its type) with the mount table's
/// (libmount's `mnt_table_is_fs_mounted`), so with this source `mount -a`
/// sees the overlay mounted and skips it, as for any filesystem. Any other
/// SPEC ("none") names nothing: an id is generated, and mount(8) cannot
/// tell the line is mounted.
pub fn id_of_spec(spec: &str) -> Option<&str> {
    spec.strip_prefix("idmap-overlay:")
}

/// The `idmap-overlay mount` arguments the helper stands for.
pub fn mount_args(spec: &str, target: &Path, translation: &Translation) -> MountArgs {
    MountArgs {
        target: target.to_path_buf(),
        options: (!translation.overlay_options.is_empty())
            .then(|| translation.overlay_options.clone()),
        id: id_of_spec(spec).map(str::to_string),
        ..MountArgs::default()
    }
}

/// Enters the mount namespace of `-N` (setns(2) with CLONE_NEWNS; the
/// process is still single-threaded here, as setns requires).
fn enter_namespace(path: &Path) -> Result<()> {
    idmap_overlay::enter_mount_namespace(path).map_err(|e| {
        fail(
            crate::cmd::exit::code_of_kind(e.kind()),
            format!("-N {}: {e}", path.display()),
        )
    })
}

/// Runs the helper: parses nothing more (see [`parse_args`]) and mounts,
/// with the per-mount flags set as the mount is made.
pub fn run(helper: &HelperArgs) -> Result<Code> {
    if helper.help {
        out!("{USAGE}");
        return Ok(Code::Success);
    }
    // Before anything acts (entering -N's namespace, or -f's checks, which
    // resolve paths): only root may.
    crate::cmd::context::require_root()?;
    let translation = translate(&helper.options, helper.sloppy);
    for option in &translation.dropped {
        log::warn!("ignoring unknown option {option:?} (-s)");
    }
    let req = cmd::mount::request(&mount_args(&helper.spec, &helper.target, &translation))?;
    if let Some(namespace) = &helper.namespace {
        enter_namespace(namespace)?;
    }
    if helper.fake {
        if helper.verbose {
            outln!(
                "{HELPER_NAME}: would mount {} (-f)",
                helper.target.display()
            );
        }
        return Ok(Code::Success);
    }
    crate::cmd::signals::cancel_on_interrupt();
    let state_dir = match std::env::var_os(crate::cmd::context::STATE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(idmap_overlay::DEFAULT_STATE_DIR),
    };
    // The very same overlay there already is a no-op for the library (and
    // exit 0 for `idmap-overlay mount`), but mount(8) would then say
    // "successfully mounted" for a mount that did not happen. The record
    // handed back is then the one read before, unchanged (a record
    // replaced under the same id has a new mount).
    let recorded_before: Vec<idmap_overlay::Record> =
        idmap_overlay::StateDir::open_to_read(&state_dir, false)
            .and_then(|state| state.records())
            .map(|(records, _)| records)
            .unwrap_or_default();
    // The per-mount flags (ro, nosuid, ...) are part of the request: the
    // overlay's mount is made with them, never changed afterwards by path.
    let record = idmap_overlay::mount(&req, &state_dir)?;
    if recorded_before.contains(&record) {
        return Err(already_mounted(helper, &record));
    }
    if helper.verbose {
        outln!(
            "{HELPER_NAME}: mounted {} (record {})",
            record.target.display(),
            record.id
        );
    }
    Ok(Code::Success)
}

/// As mount(8) says for any filesystem mounted already (exit 32), with
/// what makes `mount -a` skip the line when its source does not. (The
/// library's warning before it names the record.)
fn already_mounted(helper: &HelperArgs, record: &idmap_overlay::Record) -> anyhow::Error {
    let hint = match id_of_spec(&helper.spec) {
        Some(_) => String::new(),
        None => format!(
            "; mount -a skips it when its source (fstab's first field) is {}, not {:?}",
            record.source, helper.spec
        ),
    };
    fail(
        Code::Mount,
        format!("{}: already mounted{hint}", record.target.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn helper_name() {
        assert!(invoked_as_helper(OsStr::new("/sbin/mount.idmap-overlay")));
        assert!(invoked_as_helper(OsStr::new("mount.idmap-overlay")));
        assert!(!invoked_as_helper(OsStr::new("/usr/sbin/idmap-overlay")));
        assert!(!invoked_as_helper(OsStr::new("mount.idmap-overlay2")));
    }

    #[test]
    fn argument_forms() {
        // What util-linux 2.38's mount(8) passes, and variations.
        let table: &[(&[&str], HelperArgs)] = &[
            (
                &["none", "/mnt", "-o", "rw,lowerdir=/a:/b"],
                HelperArgs {
                    spec: "none".into(),
                    target: "/mnt".into(),
                    options: "rw,lowerdir=/a:/b".into(),
                    ..Default::default()
                },
            ),
            (
                &[
                    "none",
                    "/mnt",
                    "-s",
                    "-n",
                    "-v",
                    "-o",
                    "ro",
                    "-t",
                    "idmap-overlay.x",
                ],
                HelperArgs {
                    spec: "none".into(),
                    target: "/mnt".into(),
                    options: "ro".into(),
                    sloppy: true,
                    no_mtab: true,
                    verbose: true,
                    fs_type: Some("idmap-overlay.x".into()),
                    ..Default::default()
                },
            ),
            (
                &[
                    "-sfv",
                    "-oro",
                    "-o",
                    "lowerdir=/a",
                    "-N",
                    "/proc/1/fd/4",
                    "x",
                    "/mnt",
                ],
                HelperArgs {
                    spec: "x".into(),
                    target: "/mnt".into(),
                    options: "ro,lowerdir=/a".into(),
                    sloppy: true,
                    fake: true,
                    verbose: true,
                    namespace: Some("/proc/1/fd/4".into()),
                    ..Default::default()
                },
            ),
            (
                &["none", "--", "-odd-dir"],
                HelperArgs {
                    spec: "none".into(),
                    target: "-odd-dir".into(),
                    ..Default::default()
                },
            ),
        ];
        for (input, expected) in table {
            assert_eq!(&parse_args(&args(input)).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for input in [
            &["none"][..],
            &["none", "/mnt", "extra"],
            &["none", "/mnt", "-o"],
            &["none", "/mnt", "-x"],
        ] {
            let err = parse_args(&args(input)).unwrap_err();
            assert_eq!(crate::cmd::exit::code_of(&err), Code::Usage, "{input:?}");
        }
        assert!(parse_args(&args(&["-h"])).unwrap().help);
    }

    #[test]
    fn options_sorted_out() {
        // Per-mount flags and fstab words stay: `mount -o` takes them.
        let t = translate(
            "rw,noexec,nosuid,nodev,lowerdir=/a:/b,uidmap=0:1:1,1:100000:65535,_netdev,nofail,user,index=off",
            false,
        );
        assert_eq!(
            t.overlay_options,
            "rw,noexec,nosuid,nodev,lowerdir=/a:/b,uidmap=0:1:1,1:100000:65535,_netdev,nofail,index=off"
        );
        assert!(t.dropped.is_empty());

        let t = translate("ro,noatime,x-systemd.automount,comment=hi,defaults", false);
        assert_eq!(t.overlay_options, "ro,noatime,x-systemd.automount,defaults");

        // Unknown: to overlayfs, or dropped when sloppy.
        let t = translate("lowerdir=/a,frobnicate,uidmap=0:1:1", false);
        assert_eq!(t.overlay_options, "lowerdir=/a,frobnicate,uidmap=0:1:1");
        // Our own word stays, sloppy or not.
        let t = translate("lowerdir=/a,idmapped_upper,frobnicate", true);
        assert_eq!(t.overlay_options, "lowerdir=/a,idmapped_upper");
        let t = translate("lowerdir=/a,frobnicate,uidmap=0:1:1", true);
        assert_eq!(t.overlay_options, "lowerdir=/a,uidmap=0:1:1");
        assert_eq!(t.dropped, ["frobnicate"]);

        // Quoted commas stay inside their option.
        let t = translate(r#"lowerdir="/a,b":/c,rw"#, false);
        assert_eq!(t.overlay_options, r#"lowerdir="/a,b":/c,rw"#);
    }

    #[test]
    fn the_request_it_stands_for() {
        let t = translate(
            "rw,nosuid,noatime,lowerdir=/a:/b,uidmap=0:100000:65536,nofail",
            false,
        );
        let req = cmd::mount::request(&mount_args("none", Path::new("/mnt/c"), &t)).unwrap();
        assert_eq!(req.target, PathBuf::from("/mnt/c"));
        assert_eq!(req.id, None);
        let tagged = mount_args("idmap-overlay:web-1", Path::new("/mnt/c"), &t);
        assert_eq!(tagged.id.as_deref(), Some("web-1"));
        assert_eq!(req.lowerdirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(req.flags.words(), ["nosuid", "noatime"]);
        assert_eq!(req.strategy, idmap_overlay::Strategy::Auto);
        assert_eq!(req.timeout, crate::cmd::args::DEFAULT_TIMEOUT);
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn helper_arguments_never_panic(
        args in prop::collection::vec(prop_oneof![
            Just("-o".to_string()), Just("-N".to_string()), Just("-t".to_string()),
            Just("-sfnv".to_string()), Just("--".to_string()), Just("--help".to_string()),
            "-[a-zA-Z]{1,4}", "[a-z/=,:\"]{0,12}", any::<String>(),
        ], 0..8),
        sloppy in any::<bool>(),
    ) {
        let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        if let Ok(parsed) = parse_args(&os) {
            let translation = translate(&parsed.options, sloppy);
            // Everything kept is a token of the input, in order.
            let kept = translation.overlay_options;
            prop_assert!(kept.is_empty() || parsed.options.contains(kept.split(',').next().unwrap()));
        }
    }
    }
}
