//! `complete-ids`: the recorded ids and targets, one per line, for the shell
//! completions of a TARGET|ID argument (see `completions/`). Hidden from
//! help; never fails, never creates anything: a completion must not print
//! errors into the user's prompt, nor make /run/idmap-overlay by pressing Tab.

use crate::cmd::args::CompleteIdsArgs;
use crate::cmd::context::Context;
use crate::cmd::exit::Code;
use anyhow::Result;
use idmap_overlay::StateDir;
use std::path::Path;

/// The words to offer: every record's id, then every target, sorted and
/// without duplicates. A word with a newline in it cannot be offered one
/// per line and is left out. Missing or unreadable state: nothing.
pub fn words(state_dir: &Path) -> Vec<String> {
    // Not StateDir::open: that creates and checks the directory.
    let state = StateDir::unchecked(state_dir);
    let Ok((records, _bad)) = state.records() else {
        return Vec::new();
    };
    let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let mut targets: Vec<String> = records
        .iter()
        .filter_map(|r| r.target.to_str().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    targets.sort();
    targets.dedup();
    ids.into_iter()
        .chain(targets)
        .filter(|w| !w.is_empty() && !w.contains('\n'))
        .collect()
}

pub fn run(_args: CompleteIdsArgs, ctx: &Context) -> Result<Code> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for word in words(&ctx.state_dir) {
        // A closed pipe (the shell gave up) is not worth an error.
        if writeln!(out, "{word}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(Code::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_state_dir_gives_nothing_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(words(&state), Vec::<String>::new());
        assert!(!state.exists());
    }

    #[test]
    fn ids_then_targets_skipping_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = dir.path().join("mounts");
        std::fs::create_dir(&mounts).unwrap();
        for (id, target) in [("web-1", "/mnt/b"), ("db", "/mnt/a")] {
            let text = format!(
                r#"{{"version":1,"id":"{id}","target":"{target}","state":"mounted",
                "strategy":"detached","lowerdirs":["/l"],"upperdir":null,"workdir":null,
                "options":[],"uidmap":[],"gidmap":[],"userns":null,"common_dir":null,
                "idmapped_dirs":[],"temp_mounts":[],"source":"idmap-overlay:{id}",
                "mount_id":null,"mount_id_unique":null,"pid":1,
                "created":"2026-01-01T00:00:00Z"}}"#
            );
            std::fs::write(mounts.join(format!("{id}.json")), text).unwrap();
        }
        std::fs::write(mounts.join("broken.json"), "{").unwrap();
        std::fs::write(mounts.join(".db.json.7.0.tmp"), "{").unwrap();
        assert_eq!(words(dir.path()), ["db", "web-1", "/mnt/a", "/mnt/b"]);
    }
}
