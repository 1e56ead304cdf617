//! Overlay options and the plan: the containerd-style `-o` string, lowerdir
//! lists, the common directory of the layers and which trees to idmap.
//! Everything here is pure (the one lookup the plan needs is passed in).

use crate::base::idmap::{self, IdRange};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// overlayfs refuses more lower layers than this (OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;

/// What `-o` said. Every field is optional: flags may supply them instead.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub lowerdirs: Option<Vec<String>>,
    pub upperdir: Option<String>,
    pub workdir: Option<String>,
    pub uidmap: Option<Vec<IdRange>>,
    pub gidmap: Option<Vec<IdRange>>,
    /// Other overlay options, in order: `key=value` or a bare flag.
    pub passthrough: Vec<(String, Option<String>)>,
    /// mount(8)'s per-mount flags (`ro`, `nosuid`, `noatime`, ...).
    pub flags: VfsFlags,
    /// `idmapped_upper`: the upper layer idmapped too (`--idmapped-upper`).
    pub idmapped_upper: bool,
}

impl MountOptions {
    /// containerd's overlay options (`lowerdir=A:B,upperdir=U,workdir=W,
    /// uidmap=0:100000:65536,...`), with mount(8)'s per-mount flags.
    ///
    /// ```
    /// let o = idmap_overlay::MountOptions::parse(
    ///     "lowerdir=/l/2:/l/1,uidmap=0:100000:65536,nosuid,index=off",
    /// )?;
    /// assert_eq!(o.lowerdirs.unwrap(), ["/l/2", "/l/1"]);
    /// assert!(o.flags.nosuid);
    /// assert_eq!(o.passthrough, [("index".to_string(), Some("off".to_string()))]);
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse(text: &str) -> Result<MountOptions, String> {
        parse_options(text)
    }

    /// The words of an option string, split at commas outside quotes.
    pub fn split(text: &str) -> Result<Vec<String>, String> {
        split_options(text)
    }

    /// A `lowerdir` value, top layer first, split at `:`.
    ///
    /// ```
    /// let l = idmap_overlay::MountOptions::split_lowerdirs("/l/2:/l/1")?;
    /// assert_eq!(l, ["/l/2", "/l/1"]);
    /// # Ok::<(), String>(())
    /// ```
    pub fn split_lowerdirs(text: &str) -> Result<Vec<String>, String> {
        split_lowerdirs(text)
    }

    /// A word only fstab and mount(8) read (`defaults`, `nofail`, `x-*`...),
    /// which the overlay ignores.
    pub fn is_fstab_only(word: &str) -> bool {
        is_fstab_only(word)
    }
}

/// `MS_NOSYMFOLLOW` (linux/mount.h: 256, Linux 5.10) for mount(2): nix's
/// `MsFlags` has no name for it.
const MS_NOSYMFOLLOW: nix::mount::MsFlags = nix::mount::MsFlags::from_bits_retain(256);

/// The access-time mode of a mount (mount(8) "atime", "noatime", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atime {
    Relatime,
    Noatime,
    Strictatime,
}

/// The filesystem-independent per-mount flags of mount(8) that apply to the
/// overlay's mount. They are set when the mount is made (fsmount(2) or
/// mount(2) flags), never afterwards by path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VfsFlags {
    pub rdonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    pub nodiratime: bool,
    pub nosymfollow: bool,
    /// `None`: the kernel's default (relatime).
    pub atime: Option<Atime>,
}

impl VfsFlags {
    /// Applies one mount(8) word; false if it is not one of these flags.
    pub fn apply(&mut self, word: &str) -> bool {
        match word {
            "ro" => self.rdonly = true,
            "rw" => self.rdonly = false,
            "nosuid" => self.nosuid = true,
            "suid" => self.nosuid = false,
            "nodev" => self.nodev = true,
            "dev" => self.nodev = false,
            "noexec" => self.noexec = true,
            "exec" => self.noexec = false,
            "nodiratime" => self.nodiratime = true,
            "diratime" => self.nodiratime = false,
            "nosymfollow" => self.nosymfollow = true,
            "symfollow" => self.nosymfollow = false,
            "noatime" => self.atime = Some(Atime::Noatime),
            "relatime" => self.atime = Some(Atime::Relatime),
            "strictatime" => self.atime = Some(Atime::Strictatime),
            // mount(8): `atime` is "the default" access time mode.
            "atime" => self.atime = None,
            _ => return false,
        }
        true
    }

    /// The flags as mount(8) words, for the record and for comparing specs.
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        for (set, word) in [
            (self.rdonly, "ro"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
            (self.nodiratime, "nodiratime"),
            (self.nosymfollow, "nosymfollow"),
        ] {
            if set {
                words.push(word.to_string());
            }
        }
        match self.atime {
            Some(Atime::Noatime) => words.push("noatime".into()),
            Some(Atime::Relatime) => words.push("relatime".into()),
            Some(Atime::Strictatime) => words.push("strictatime".into()),
            None => {}
        }
        words
    }

    /// For fsmount(2).
    pub fn mount_attr(&self) -> rustix::mount::MountAttrFlags {
        use rustix::mount::MountAttrFlags as A;
        let mut attr = A::empty();
        for (set, flag) in [
            (self.rdonly, A::MOUNT_ATTR_RDONLY),
            (self.nosuid, A::MOUNT_ATTR_NOSUID),
            (self.nodev, A::MOUNT_ATTR_NODEV),
            (self.noexec, A::MOUNT_ATTR_NOEXEC),
            (self.nodiratime, A::MOUNT_ATTR_NODIRATIME),
            (self.nosymfollow, A::MOUNT_ATTR_NOSYMFOLLOW),
        ] {
            if set {
                attr |= flag;
            }
        }
        attr | match self.atime {
            Some(Atime::Noatime) => A::MOUNT_ATTR_NOATIME,
            Some(Atime::Strictatime) => A::MOUNT_ATTR_STRICTATIME,
            Some(Atime::Relatime) | None => A::MOUNT_ATTR_RELATIME,
        }
    }

    /// For mount(2).
    pub fn ms_flags(&self) -> nix::mount::MsFlags {
        use nix::mount::MsFlags as M;
        let mut flags = M::empty();
        for (set, flag) in [
            (self.rdonly, M::MS_RDONLY),
            (self.nosuid, M::MS_NOSUID),
            (self.nodev, M::MS_NODEV),
            (self.noexec, M::MS_NOEXEC),
            (self.nodiratime, M::MS_NODIRATIME),
            (self.nosymfollow, MS_NOSYMFOLLOW),
        ] {
            if set {
                flags |= flag;
            }
        }
        flags
            | match self.atime {
                Some(Atime::Noatime) => M::MS_NOATIME,
                Some(Atime::Strictatime) => M::MS_STRICTATIME,
                Some(Atime::Relatime) => M::MS_RELATIME,
                None => M::empty(),
            }
    }
}

/// mount(8) words that belong in fstab but mean nothing to a mount that is
/// being made: accepted and ignored, as mount(8) does.
pub fn is_fstab_only(key: &str) -> bool {
    matches!(key, "defaults" | "auto" | "noauto" | "nofail" | "_netdev") || key.starts_with("x-")
}

/// Keys the tool sets itself; letting `-o` set them would break the record.
const RESERVED: &[&str] = &["lowerdir+", "datadir+", "source"];

/// Splits an option string on commas that are not inside double quotes,
/// keeping the quotes (the mount(8) helper passes tokens on as they are).
pub fn split_options(text: &str) -> Result<Vec<String>, String> {
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
    if quoted {
        return Err(format!("option string {text:?} has an unterminated quote"));
    }
    tokens.push(current);
    Ok(tokens)
}

fn is_range_token(token: &str) -> bool {
    let parts: Vec<&str> = token.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses containerd's overlay form,
/// `lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536,gidmap=...`.
/// A bare `C:H:S` token after `uidmap=`/`gidmap=` continues that map.
pub fn parse_options(text: &str) -> Result<MountOptions, String> {
    if text.trim().is_empty() {
        return Err("option string is empty".into());
    }
    let mut opts = MountOptions::default();
    let mut seen: Vec<String> = Vec::new();
    // The map a bare C:H:S token would extend, and its text so far.
    let mut open_map: Option<(&'static str, String)> = None;
    let mut maps: HashMap<&'static str, String> = HashMap::new();

    for token in split_options(text)? {
        let token = token.replace('"', "");
        if let Some((_, ranges)) = open_map.as_mut()
            && is_range_token(&token)
        {
            ranges.push(',');
            ranges.push_str(&token);
            continue;
        }
        if let Some((key, ranges)) = open_map.take() {
            maps.insert(key, ranges);
        }
        if token.is_empty() {
            return Err(format!("option string {text:?} has an empty option"));
        }
        if opts.flags.apply(&token) || is_fstab_only(token.split('=').next().unwrap_or("")) {
            continue;
        }
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (token.clone(), None),
        };
        if key.is_empty() {
            return Err(format!("option {token:?} has no name"));
        }
        if seen.contains(&key) {
            return Err(format!("option {key:?} is given twice"));
        }
        seen.push(key.clone());
        if RESERVED.contains(&key.as_str()) {
            return Err(format!("option {key:?} is set by idmap-overlay itself"));
        }
        let needs_value = |value: Option<String>| -> Result<String, String> {
            match value {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("option {key:?} needs a value")),
            }
        };
        match key.as_str() {
            "lowerdir" => {
                opts.lowerdirs = Some(split_lowerdirs(&needs_value(value)?)?);
            }
            "upperdir" => opts.upperdir = Some(needs_value(value)?),
            "workdir" => opts.workdir = Some(needs_value(value)?),
            "uidmap" => open_map = Some(("uidmap", needs_value(value)?)),
            "gidmap" => open_map = Some(("gidmap", needs_value(value)?)),
            "idmapped_upper" => {
                if value.is_some() {
                    return Err("option \"idmapped_upper\" takes no value".into());
                }
                opts.idmapped_upper = true;
            }
            _ => {
                // mount(2) data is split on every comma: a quoted value with
                // one would smuggle in another option. Only the LSM context
                // options take commas (MCS categories), and their parser
                // honours quotes, which the attached strategies keep.
                if value.as_ref().is_some_and(|v| v.contains(',')) && !is_context_option(&key) {
                    return Err(format!("option {key:?} has a ',' in its value"));
                }
                opts.passthrough.push((key, value))
            }
        }
    }
    if let Some((key, ranges)) = open_map.take() {
        maps.insert(key, ranges);
    }
    for (key, ranges) in maps {
        let parsed = idmap::parse_map(&ranges).map_err(|e| format!("{key}: {e}"))?;
        match key {
            "uidmap" => opts.uidmap = Some(parsed),
            _ => opts.gidmap = Some(parsed),
        }
    }
    Ok(opts)
}

/// SELinux mount options, whose values may hold commas inside quotes.
pub fn is_context_option(key: &str) -> bool {
    matches!(key, "context" | "fscontext" | "defcontext" | "rootcontext")
}

/// Splits a colon-separated lowerdir list, top layer first.
pub fn split_lowerdirs(text: &str) -> Result<Vec<String>, String> {
    let dirs: Vec<String> = text.split(':').map(str::to_string).collect();
    if dirs.iter().any(String::is_empty) {
        return Err(format!("lowerdir list {text:?} has an empty entry"));
    }
    if dirs.len() > MAX_LAYERS {
        return Err(format!(
            "{} lower layers given; overlayfs allows at most {MAX_LAYERS}",
            dirs.len()
        ));
    }
    Ok(dirs)
}

/// Characters refused in every path argument: `:` and `,` separate entries
/// in overlayfs's option strings (and in containerd's), `\` is overlayfs's
/// escape character (layers `a\`, `b` would reach it as the one layer
/// `a:b`), and a newline would corrupt mountinfo lines. The tool hands
/// overlayfs file descriptors, but paths are shown and recorded, and `-o`
/// parses them: refusing is simpler than escaping and says the same
/// everywhere.
pub fn check_path_chars(what: &str, path: &str) -> Result<(), String> {
    if let Some(c) = path.chars().find(|c| matches!(c, ':' | ',' | '\n' | '\\')) {
        return Err(format!(
            "{what} {path:?} contains {c:?}, which overlayfs options cannot carry"
        ));
    }
    Ok(())
}

/// The deepest directory that contains every path, compared by whole path
/// components (so `/s/73/fs` and `/s/79/fs` share `/s`, not `/s/7`).
/// The paths must be absolute and canonical.
pub fn common_dir(paths: &[PathBuf]) -> PathBuf {
    let mut common: Vec<Component> = match paths.first() {
        Some(p) => p.components().collect(),
        None => return PathBuf::from("/"),
    };
    for path in &paths[1..] {
        let shared = common
            .iter()
            .zip(path.components())
            .take_while(|(a, b)| *a == b)
            .count();
        common.truncate(shared);
    }
    let dir: PathBuf = common.iter().collect();
    if dir.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        dir
    }
}

/// How the idmapped layers are built. `Auto` is resolved before execution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    #[default]
    Auto,
    Detached,
    CommonDir,
    PerLayer,
}

impl Strategy {
    /// Every strategy, `auto` first.
    pub const ALL: [Strategy; 4] = [
        Strategy::Auto,
        Strategy::Detached,
        Strategy::CommonDir,
        Strategy::PerLayer,
    ];

    /// The name the command line, the records and the docs use.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Auto => "auto",
            Strategy::Detached => "detached",
            Strategy::CommonDir => "common-dir",
            Strategy::PerLayer => "per-layer",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(name: &str) -> Result<Strategy, String> {
        Strategy::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown strategy {name:?}"))
    }
}

/// One idmapped tree: a clone of `dir`, and the layers read through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub dir: PathBuf,
    /// (index in the lowerdir list, path relative to `dir`; "." for `dir`).
    pub layers: Vec<(usize, PathBuf)>,
}

fn relative(dir: &Path, layer: &Path) -> PathBuf {
    let rel = layer.strip_prefix(dir).expect("layer lies below its tree");
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel.to_path_buf()
    }
}

fn tree_per_layer(layers: &[(usize, &PathBuf)]) -> Vec<Tree> {
    layers
        .iter()
        .map(|(i, l)| Tree {
            dir: (*l).clone(),
            layers: vec![(*i, PathBuf::from("."))],
        })
        .collect()
}

/// Decides which trees to clone. Layers are grouped by the mount they live on
/// (a non-recursive clone of a parent would hide a layer that is itself a
/// mountpoint), and each group is cloned once at its common directory,
/// unless `per_layer` is asked for.
///
/// A group whose common directory is `/`, or whose common directory lies on
/// another mount than its layers (`mount_id_of` tells), is never cloned whole:
/// with `allow_split` its layers get a tree each, else it is an error.
pub fn plan_trees(
    layers: &[PathBuf],
    layer_mount_ids: &[u64],
    per_layer: bool,
    allow_split: bool,
    mount_id_of: &dyn Fn(&Path) -> Result<u64, String>,
) -> Result<Vec<Tree>, String> {
    let mut groups: Vec<(u64, Vec<(usize, &PathBuf)>)> = Vec::new();
    for (i, (layer, id)) in layers.iter().zip(layer_mount_ids).enumerate() {
        match groups.iter_mut().find(|(gid, _)| gid == id) {
            Some((_, members)) => members.push((i, layer)),
            None => groups.push((*id, vec![(i, layer)])),
        }
    }
    let mut trees = Vec::new();
    for (group_mount, members) in groups {
        if per_layer {
            trees.extend(tree_per_layer(&members));
            continue;
        }
        let paths: Vec<PathBuf> = members.iter().map(|(_, l)| (*l).clone()).collect();
        let dir = common_dir(&paths);
        let problem = if dir == Path::new("/") && paths.len() > 1 {
            Some(format!(
                "layers {} and {} have no common directory but /, which is never idmapped whole",
                paths[0].display(),
                paths[1].display()
            ))
        } else if mount_id_of(&dir)? != group_mount {
            Some(format!(
                "the common directory {} of the layers is on another mount than the layers",
                dir.display()
            ))
        } else {
            None
        };
        match problem {
            None => trees.push(Tree {
                layers: members
                    .iter()
                    .map(|(i, l)| (*i, relative(&dir, l)))
                    .collect(),
                dir,
            }),
            Some(_) if allow_split => trees.extend(tree_per_layer(&members)),
            Some(problem) => return Err(problem),
        }
    }
    Ok(trees)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn idmapped_upper_is_ours_not_overlayfs() {
        let o = parse_options("lowerdir=/a:/b,idmapped_upper,index=off").unwrap();
        assert!(o.idmapped_upper);
        assert_eq!(
            o.passthrough,
            [("index".to_string(), Some("off".to_string()))]
        );
        assert!(!parse_options("lowerdir=/a:/b").unwrap().idmapped_upper);
        assert!(parse_options("lowerdir=/a:/b,idmapped_upper=1").is_err());
    }

    #[test]
    fn common_dir_cases() {
        // containerd's cases (core/mount/mount_idmapped_utils_linux_test.go).
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "/var/lib/snapshots/1/fs",
                    "/var/lib/snapshots/2/fs",
                    "/var/lib/snapshots/3/fs",
                ],
                "/var/lib/snapshots",
            ),
            (&["/s/73/fs", "/s/79/fs"], "/s"),
            (&["/s/7/fs", "/s/73/fs"], "/s"),
            (&["/a/b/c"], "/a/b/c"),
            (&["/a/b/c", "/a/b/c/d"], "/a/b/c"),
            (&["/a/b/", "/a/b/c"], "/a/b"),
            (&["/a/x", "/b/y"], "/"),
            (&["/", "/a"], "/"),
        ];
        for (input, want) in cases {
            assert_eq!(common_dir(&paths(input)), PathBuf::from(want), "{input:?}");
        }
    }

    #[test]
    fn parses_containerd_options() {
        let o = parse_options(
            "index=off,lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w,uidmap=0:100000:65536,gidmap=0:200000:65536,volatile",
        )
        .unwrap();
        assert_eq!(
            o.lowerdirs,
            Some(vec!["/l/2".to_string(), "/l/1".to_string()])
        );
        assert_eq!(o.upperdir.as_deref(), Some("/u"));
        assert_eq!(o.workdir.as_deref(), Some("/w"));
        assert_eq!(idmap::render(o.uidmap.as_ref().unwrap()), "0:100000:65536");
        assert_eq!(idmap::render(o.gidmap.as_ref().unwrap()), "0:200000:65536");
        assert_eq!(
            o.passthrough,
            vec![
                ("index".to_string(), Some("off".to_string())),
                ("volatile".to_string(), None)
            ]
        );
    }

    #[test]
    fn bare_ranges_continue_a_map() {
        let o =
            parse_options("uidmap=0:1:1,1:100000:65535,gidmap=0:5:1,1:6:1,metacopy=on").unwrap();
        assert_eq!(idmap::render(&o.uidmap.unwrap()), "0:1:1,1:100000:65535");
        assert_eq!(idmap::render(&o.gidmap.unwrap()), "0:5:1,1:6:1");
        assert_eq!(o.passthrough, vec![("metacopy".into(), Some("on".into()))]);
    }

    #[test]
    fn quoted_values_keep_commas() {
        let o = parse_options("lowerdir=/a,context=\"system_u:object_r:x,y\"").unwrap();
        assert_eq!(
            o.passthrough,
            vec![("context".into(), Some("system_u:object_r:x,y".into()))]
        );
    }

    #[test]
    fn rejects_bad_option_strings() {
        let cases = [
            ("", "empty"),
            ("  ", "empty"),
            ("lowerdir=/a,", "empty option"),
            (",lowerdir=/a", "empty option"),
            ("lowerdir=/a,,index=off", "empty option"),
            ("lowerdir=\"/a", "unterminated quote"),
            ("lowerdir=/a,lowerdir=/b", "given twice"),
            ("index=off,index=on", "given twice"),
            ("lowerdir=", "needs a value"),
            ("lowerdir=/a::/b", "empty entry"),
            ("uidmap", "needs a value"),
            ("uidmap=0:1", "not CONTAINER:HOST:SIZE"),
            ("uidmap=0:1:0", "size is zero"),
            ("uidmap=0:1:1,0:2:1", "overlap"),
            ("=x", "no name"),
            ("lowerdir+=/a", "set by idmap-overlay"),
            ("source=x", "set by idmap-overlay"),
            ("index=\"off,lowerdir=/x\"", "has a ',' in its value"),
        ];
        for (input, want) in cases {
            let err = parse_options(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn lowerdir_limits() {
        let many: Vec<String> = (0..501).map(|i| format!("/l/{i}")).collect();
        assert!(
            split_lowerdirs(&many.join(":"))
                .unwrap_err()
                .contains("at most 500")
        );
        assert_eq!(split_lowerdirs(&many[..500].join(":")).unwrap().len(), 500);
    }

    #[test]
    fn path_chars() {
        assert!(check_path_chars("layer", "/a/b").is_ok());
        for bad in ["/a:b", "/a,b", "/a\nb", "/a\\", "/a\\b"] {
            assert!(check_path_chars("layer", bad).is_err(), "{bad:?}");
        }
    }

    fn same_mount(_: &Path) -> Result<u64, String> {
        Ok(1)
    }

    #[test]
    fn one_tree_for_layers_on_one_mount() {
        let layers = paths(&["/s/3/fs", "/s/2/fs", "/s/1/fs"]);
        let trees = plan_trees(&layers, &[1, 1, 1], false, false, &same_mount).unwrap();
        assert_eq!(
            trees,
            vec![Tree {
                dir: "/s".into(),
                layers: vec![(0, "3/fs".into()), (1, "2/fs".into()), (2, "1/fs".into())]
            }]
        );
    }

    #[test]
    fn groups_layers_by_mount() {
        // /s/2/fs is a mountpoint of its own (mount 7).
        let layers = paths(&["/s/3/fs", "/s/2/fs", "/s/1/fs"]);
        let mount_of = |p: &Path| Ok(if p == Path::new("/s/2/fs") { 7 } else { 1 });
        let trees = plan_trees(&layers, &[1, 7, 1], false, false, &mount_of).unwrap();
        assert_eq!(trees.len(), 2);
        assert_eq!(trees[0].dir, PathBuf::from("/s"));
        assert_eq!(
            trees[0].layers,
            vec![(0, "3/fs".into()), (2, "1/fs".into())]
        );
        assert_eq!(trees[1].dir, PathBuf::from("/s/2/fs"));
        assert_eq!(trees[1].layers, vec![(1, ".".into())]);
    }

    #[test]
    fn root_is_never_a_common_dir() {
        let layers = paths(&["/a/l", "/b/l"]);
        let err = plan_trees(&layers, &[1, 1], false, false, &same_mount).unwrap_err();
        assert!(err.contains("no common directory but /"), "{err}");
        let split = plan_trees(&layers, &[1, 1], false, true, &same_mount).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].dir, PathBuf::from("/b/l"));
    }

    #[test]
    fn common_dir_on_another_mount_is_split() {
        // Both layers on mount 5, but their parent /m is on mount 1 (two
        // separate mounts of one filesystem's subdirectories, say).
        let layers = paths(&["/m/a", "/m/b"]);
        let mount_of = |p: &Path| Ok(if p == Path::new("/m") { 1 } else { 5 });
        assert!(plan_trees(&layers, &[5, 5], false, false, &mount_of).is_err());
        let split = plan_trees(&layers, &[5, 5], false, true, &mount_of).unwrap();
        assert_eq!(split.len(), 2);
    }

    #[test]
    fn per_layer_plan() {
        let layers = paths(&["/s/2", "/s/1"]);
        let trees = plan_trees(&layers, &[1, 1], true, false, &same_mount).unwrap();
        assert_eq!(trees.len(), 2);
        assert_eq!(trees[0].layers, vec![(0, ".".into())]);
    }
}
