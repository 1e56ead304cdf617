//! Bounded resources: `gc`, `gc --dry-run` and `inspect` over 10,000
//! records with only 256 file descriptors allowed (systemd's usual soft
//! limit is 1024; gc used to hold one lock per record and fail past
//! about 1,000).

use crate::support::*;
use std::fs;
use std::process::{Command, Output, Stdio};

/// A record of an overlay that is gone (its target does not exist): what a
/// plain umount(8) or a reboot without /run leaves, in bulk.
fn vanished_record(id: &str, target: &str) -> String {
    format!(
        r#"{{"version":1,"id":"{id}","target":"{target}","state":"mounted","strategy":"detached",
"lowerdirs":["/l/2","/l/1"],"upperdir":null,"workdir":null,"options":[],
"uidmap":[{{"container":0,"host":100000,"size":65536}}],
"gidmap":[{{"container":0,"host":100000,"size":65536}}],"userns":null,"common_dir":"/l",
"idmapped_dirs":["/l"],"temp_mounts":[],"source":"idmap-overlay:{id}","mount_id":4000000,
"mount_id_unique":null,"pid":1,"created":"2026-11-26T10:00:00Z"}}"#
    )
}

/// The tool with its open-file limit at `limit`.
fn limited(env: &Env, limit: u32, args: &[&str]) -> Output {
    let mut cmd: Command = env.ns.command("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
        BIN,
    ])
    .args(args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("IDMAP_OVERLAY_STATE_DIR", &env.state)
    .stdin(Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn ten_thousand_records_under_256_file_descriptors() {
    let env = Env::new();
    env.ok(&["gc"]); // makes the state directory
    let gone = env.path("gone");
    for n in 0..10_000 {
        let id = format!("r{n:05}");
        let target = format!("{}/{n}", gone.display());
        fs::write(
            env.state.join(format!("mounts/{id}.json")),
            vanished_record(&id, &target),
        )
        .unwrap();
    }
    let out = limited(&env, 256, &["inspect", "--json"]);
    assert!(out.status.success(), "inspect: {}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["mounts"].as_array().unwrap().len(), 10_000);

    let out = limited(&env, 256, &["gc", "--dry-run", "--json"]);
    assert!(out.status.success(), "gc --dry-run: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cleaned"].as_array().unwrap().len(), 10_000);
    assert_eq!(env.state_files("mounts").len(), 10_000, "a dry run removed");
    assert!(env.state_files("locks").is_empty(), "a dry run made locks");

    let out = limited(&env, 256, &["gc", "--json"]);
    assert!(out.status.success(), "gc: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cleaned"].as_array().unwrap().len(), 10_000);
    assert!(report["failed"].as_array().unwrap().is_empty());
    env.assert_clean();
}
