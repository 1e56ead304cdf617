//! Which records `inspect` lists and `umount --all` unmounts, findmnt's
//! way: by STATE, by HEALTH, by where the target is (`--under`), by which
//! mount namespace has the overlay (`--namespace`), by the file an overlay
//! holds (`inspect -T`). Every filter given must hold. The words are the
//! table's own, so what `inspect` shows with the same filters is what
//! `umount --all` takes.

use crate::cmd::args::Filters;
use crate::cmd::exit::usage;
use crate::cmd::views::state_word;
use anyhow::Result;
use idmap_overlay::{Record, Snapshot};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The filters, made ready to ask of each record.
#[derive(Debug, Default)]
pub struct Selection {
    states: Vec<String>,
    healths: Vec<String>,
    under: Option<PathBuf>,
    /// The records whose overlay the named namespace has.
    in_namespace: Option<BTreeSet<String>>,
    /// The record whose overlay holds `-T`'s file.
    holding: Option<String>,
}

impl Selection {
    /// Reads the filters against `snap`: the namespace's mount table is
    /// read once here, `-T`'s file asked about once. A file on no overlay
    /// of ours, or a namespace that cannot be read, is an error (exit 1).
    pub fn new(filters: &Filters, target_of: Option<&Path>, snap: &Snapshot) -> Result<Selection> {
        let under = filters.under.as_deref().map(absolute).transpose()?;
        let in_namespace = match &filters.namespace {
            Some(ns) => Some(snap.mounted_in_namespace(&namespace_file(ns)?)?),
            None => None,
        };
        let holding = match target_of {
            Some(file) => match snap.holding(file)? {
                Some(record) => Some(record.id.clone()),
                None => {
                    return Err(usage(format!(
                        "{}: on no overlay of ours in this mount namespace",
                        crate::cmd::escape::path(file)
                    )));
                }
            },
            None => None,
        };
        Ok(Selection {
            states: filters.state.clone(),
            healths: filters.health.clone(),
            under,
            in_namespace,
            holding,
        })
    }

    /// Does `record` pass every filter?
    pub fn keeps(&self, snap: &Snapshot, record: &Record) -> bool {
        let health = snap.health(record);
        let listed =
            |words: &[String], word: &str| words.is_empty() || words.iter().any(|w| w == word);
        listed(&self.states, state_word(record, &health))
            && listed(&self.healths, &health.word())
            && self
                .under
                .as_ref()
                .is_none_or(|dir| record.target.starts_with(dir))
            && self
                .in_namespace
                .as_ref()
                .is_none_or(|ids| ids.contains(&record.id))
            && self.holding.as_ref().is_none_or(|id| *id == record.id)
    }

    /// The records of `snap` that pass, in the snapshot's order.
    pub fn records<'a>(&self, snap: &'a Snapshot) -> Vec<&'a Record> {
        snap.records
            .iter()
            .filter(|r| self.keeps(snap, r))
            .collect()
    }
}

/// Was any filter given?
pub fn any_given(filters: &Filters) -> bool {
    !filters.state.is_empty()
        || !filters.health.is_empty()
        || filters.under.is_some()
        || filters.namespace.is_some()
}

/// `--under DIR` as records hold targets: absolute (from the current
/// directory), without `.` or a trailing `/`. Symlinks are not followed:
/// through one a user owns, `umount --all --under` would reach what the
/// user chose. `..` is refused, not guessed at.
fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.components().any(|c| c == Component::ParentDir) {
        return Err(usage(format!(
            "--under {}: give the directory without '..'",
            crate::cmd::escape::path(dir)
        )));
    }
    let dir = match dir.is_absolute() {
        true => dir.to_path_buf(),
        false => std::env::current_dir()
            .map_err(|e| usage(format!("--under: reading the current directory: {e}")))?
            .join(dir),
    };
    Ok(dir.components().collect())
}

/// `--namespace PID` is that process's mount namespace; anything else is a
/// namespace file.
fn namespace_file(ns: &str) -> Result<PathBuf> {
    let Ok(pid) = ns.parse::<u32>() else {
        return Ok(PathBuf::from(ns));
    };
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(usage(format!("--namespace {pid}: no process {pid}")));
    }
    Ok(PathBuf::from(format!("/proc/{pid}/ns/mnt")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_is_taken_as_written() {
        assert_eq!(
            absolute(Path::new("/run/c/./x/")).unwrap(),
            Path::new("/run/c/x")
        );
        assert!(absolute(Path::new("/run/../etc")).is_err());
        let here = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("a")).unwrap(), here.join("a"));
        // Whole components: /run/c does not hold /run/c1.
        assert!(!Path::new("/run/c1/rootfs").starts_with("/run/c"));
    }

    #[test]
    fn a_pid_names_its_namespace() {
        let me = std::process::id();
        assert_eq!(
            namespace_file(&me.to_string()).unwrap(),
            PathBuf::from(format!("/proc/{me}/ns/mnt"))
        );
        assert!(namespace_file("999999999").is_err());
        assert_eq!(namespace_file("/run/x").unwrap(), Path::new("/run/x"));
    }
}
