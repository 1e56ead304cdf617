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

use crate::cmd::{self, Cli, Command, Context};
use crate::exit::{Code, Coded, fail};
use crate::idmap;
use anyhow::Result;
use clap::Parser;
use nix::mount::MsFlags;
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
    /// The source ("none" in fstab): ignored, the layers are in `-o`.
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
  mount -t idmap-overlay -o lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536 none DIR
SPEC is ignored (use \"none\"); OPTIONS are those of `idmap-overlay mount -o`
plus the filesystem-independent ones (ro, nosuid, nodev, noexec, noatime, ...).
  -s  sloppy: drop options that neither idmap-overlay nor overlayfs knows
  -f  fake: check the options, mount nothing
  -n  no mtab (nothing to do)
  -v  verbose
See idmap-overlay-mount(1) and idmap-overlay(1).
";

fn usage(message: impl Into<String>) -> anyhow::Error {
    fail(Code::Usage, format!("{}\n{USAGE}", message.into()))
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
                            .ok_or_else(|| usage(format!("-{flag} needs a value")))?;
                        next.to_str()
                            .ok_or_else(|| usage(format!("-{flag}: the value is not UTF-8")))?
                            .to_string()
                    };
                    match flag {
                        'o' => options.push(value),
                        'N' => parsed.namespace = Some(PathBuf::from(value)),
                        _ => parsed.fs_type = Some(value),
                    }
                    break;
                }
                other => return Err(usage(format!("unknown option -{other}"))),
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
            return Err(usage(format!(
                "unexpected argument {:?}",
                extra.to_string_lossy()
            )));
        }
        _ => return Err(usage("needs a SPEC (\"none\") and a mountpoint DIR")),
    }
    parsed.options = options.join(",");
    Ok(parsed)
}

/// What one `-o` token is to the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Goes to `idmap-overlay mount -o`.
    Ours,
    /// A per-mount attribute, applied to the overlay's mount afterwards.
    Attribute(MsFlags),
    /// mount(8)'s business (or the default for a new mount): dropped.
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

/// Filesystem-independent options that need nothing from us: defaults for a
/// new mount, or things mount(8) itself acts on (mount(8)
/// "FILESYSTEM-INDEPENDENT MOUNT OPTIONS"). `user` and friends arrive with
/// the `nosuid,nodev,noexec` they imply already spelled out.
const GENERIC_KEYS: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "async",
    "suid",
    "dev",
    "exec",
    "atime",
    "diratime",
    "symfollow",
    "loud",
    "silent",
    "comment",
    "uhelper",
    "helper",
];

fn classify(token: &str) -> Kind {
    let key = token.split_once('=').map_or(token, |(k, _)| k);
    let attribute = match key {
        "ro" => Some(MsFlags::MS_RDONLY),
        "nosuid" => Some(MsFlags::MS_NOSUID),
        "nodev" => Some(MsFlags::MS_NODEV),
        "noexec" => Some(MsFlags::MS_NOEXEC),
        "noatime" => Some(MsFlags::MS_NOATIME),
        "nodiratime" => Some(MsFlags::MS_NODIRATIME),
        "relatime" => Some(MsFlags::MS_RELATIME),
        "strictatime" => Some(MsFlags::MS_STRICTATIME),
        // nix has no name for it (Linux 5.10).
        "nosymfollow" => Some(MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        _ => None,
    };
    if let Some(flag) = attribute {
        Kind::Attribute(flag)
    } else if GENERIC_KEYS.contains(&key) || key.starts_with("x-") {
        Kind::Generic
    } else if OVERLAY_KEYS.contains(&key) || idmap::parse_range(token).is_ok() {
        // A bare C:H:S continues the uid or gid map before it (CLI.md).
        Kind::Ours
    } else {
        Kind::Unknown
    }
}

/// Splits an option string on commas outside double quotes, as
/// `overlay::parse_options` does.
fn split_options(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => tokens.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    tokens.push(current);
    tokens.retain(|t| !t.is_empty());
    tokens
}

/// The helper's `-o` sorted out.
#[derive(Debug, PartialEq, Eq)]
pub struct Translation {
    /// For `idmap-overlay mount -o`; empty when nothing is left.
    pub overlay_options: String,
    /// Applied with `mount(NULL, dir, NULL, MS_REMOUNT|MS_BIND|flags)`.
    pub attributes: MsFlags,
    /// Unknown options dropped because of `-s`.
    pub dropped: Vec<String>,
}

/// Pure: splits the helper's options into ours, the mount attributes and
/// what is dropped. Unknown options go to overlayfs (which may refuse them)
/// unless `sloppy`.
pub fn translate(options: &str, sloppy: bool) -> Translation {
    let mut ours = Vec::new();
    let mut attributes = MsFlags::empty();
    let mut dropped = Vec::new();
    for token in split_options(options) {
        match classify(&token) {
            Kind::Ours => ours.push(token),
            Kind::Attribute(flag) => attributes |= flag,
            Kind::Generic => {}
            Kind::Unknown if sloppy => dropped.push(token),
            Kind::Unknown => ours.push(token),
        }
    }
    Translation {
        overlay_options: ours.join(","),
        attributes,
        dropped,
    }
}

/// The `idmap-overlay` command line the helper stands for.
pub fn mount_command_line(target: &Path, translation: &Translation) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["idmap-overlay".into(), "mount".into()];
    if !translation.overlay_options.is_empty() {
        argv.push("-o".into());
        argv.push(translation.overlay_options.clone().into());
    }
    argv.push("--".into());
    argv.push(target.into());
    argv
}

/// Enters the mount namespace of `-N` (setns(2) with CLONE_NEWNS; the
/// process is still single-threaded here, as setns requires).
fn enter_namespace(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path).code(Code::Usage, || {
        format!("-N {}: opening the namespace", path.display())
    })?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNS).code(Code::Mount, || {
        format!("-N {}: entering the mount namespace", path.display())
    })
}

/// Sets the per-mount attributes of the overlay at `target`:
/// `mount(NULL, target, NULL, MS_REMOUNT|MS_BIND|attributes, NULL)`
/// (mount(2), "Changing the mount flags of an existing mount"). The atime
/// mode is kept unless one is given.
fn set_attributes(target: &Path, attributes: MsFlags) -> nix::Result<()> {
    nix::mount::mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | attributes,
        None::<&str>,
    )
}

/// Runs the helper: parses nothing more (see [`parse_args`]), mounts, and
/// applies the attributes; an overlay whose attributes cannot be set is
/// unmounted again, so the mount either happens whole or not at all.
pub fn run(helper: &HelperArgs) -> Result<Code> {
    if helper.help {
        crate::out!("{USAGE}");
        return Ok(Code::Success);
    }
    let translation = translate(&helper.options, helper.sloppy);
    for option in &translation.dropped {
        log::warn!("ignoring unknown option {option:?} (-s)");
    }
    let argv = mount_command_line(&helper.target, &translation);
    let cli = Cli::try_parse_from(&argv).map_err(|e| usage(cmd::usage_line(&e)))?;
    let Command::Mount(args) = cli.command else {
        return Err(fail(
            Code::Bug,
            "the helper built a command that is not mount",
        ));
    };
    let req = cmd::mount::request(&args)?;
    if helper.fake {
        if helper.verbose {
            crate::outln!(
                "{HELPER_NAME}: would mount {} (-f)",
                helper.target.display()
            );
        }
        return Ok(Code::Success);
    }
    if let Some(namespace) = &helper.namespace {
        enter_namespace(namespace)?;
    }
    cmd::require_root()?;
    crate::sys::catch_interrupts();
    let ctx = Context {
        state_dir: cli.state_dir,
    };
    let record = crate::mount::mount(&req, &ctx.state_dir)?;
    if !translation.attributes.is_empty()
        && let Err(errno) = set_attributes(&record.target, translation.attributes)
    {
        let undone = ctx
            .state()
            .and_then(|state| crate::umount::umount(&state, &record.id, req.timeout));
        let message = format!(
            "setting the mount options on {}: {}",
            record.target.display(),
            errno.desc()
        );
        return Err(match undone {
            Ok(()) => fail(Code::Mount, format!("{message}; the overlay was unmounted")),
            Err(e) => fail(
                Code::Mount,
                format!("{message}; unmounting it again failed too: {e:#}"),
            ),
        });
    }
    if helper.verbose {
        crate::outln!(
            "{HELPER_NAME}: mounted {} (record {})",
            record.target.display(),
            record.id
        );
    }
    Ok(Code::Success)
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
            assert_eq!(crate::exit::code_of(&err), Code::Usage, "{input:?}");
        }
        assert!(parse_args(&args(&["-h"])).unwrap().help);
    }

    #[test]
    fn options_sorted_out() {
        let t = translate(
            "rw,noexec,nosuid,nodev,lowerdir=/a:/b,uidmap=0:1:1,1:100000:65535,_netdev,nofail,user,index=off",
            false,
        );
        assert_eq!(
            t.overlay_options,
            "lowerdir=/a:/b,uidmap=0:1:1,1:100000:65535,index=off"
        );
        assert_eq!(
            t.attributes,
            MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert!(t.dropped.is_empty());

        let t = translate("ro,noatime,x-systemd.automount,comment=hi,defaults", false);
        assert_eq!(t.overlay_options, "");
        assert_eq!(t.attributes, MsFlags::MS_RDONLY | MsFlags::MS_NOATIME);

        // Unknown: to overlayfs, or dropped when sloppy.
        let t = translate("lowerdir=/a,frobnicate,uidmap=0:1:1", false);
        assert_eq!(t.overlay_options, "lowerdir=/a,frobnicate,uidmap=0:1:1");
        let t = translate("lowerdir=/a,frobnicate,uidmap=0:1:1", true);
        assert_eq!(t.overlay_options, "lowerdir=/a,uidmap=0:1:1");
        assert_eq!(t.dropped, ["frobnicate"]);

        // Quoted commas stay inside their option.
        let t = translate(r#"lowerdir="/a,b":/c,rw"#, false);
        assert_eq!(t.overlay_options, r#"lowerdir="/a,b":/c"#);
    }

    #[test]
    fn command_line() {
        let t = translate("rw,lowerdir=/a:/b,uidmap=0:100000:65536", false);
        let argv = mount_command_line(Path::new("/mnt/c"), &t);
        assert_eq!(
            argv,
            args(&[
                "idmap-overlay",
                "mount",
                "-o",
                "lowerdir=/a:/b,uidmap=0:100000:65536",
                "--",
                "/mnt/c"
            ])
        );
        let Command::Mount(mount) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("not a mount");
        };
        let req = cmd::mount::request(&mount).unwrap();
        assert_eq!(req.lowerdirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
    }
}
