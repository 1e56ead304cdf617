//! Prints what one namespace scan sees, as JSON, for debugging:
//!
//! ```sh
//! cargo run --example ns-scan                          # every namespace's overlays and idmapped mounts
//! cargo run --example ns-scan -- --copies 0:61 idmap-overlay:ID   # copies in other namespaces
//! cargo run --example ns-scan -- --using /var/lib/upper           # overlays on that upperdir/workdir
//! cargo run --example ns-scan -- --holders 0:61 idmap-overlay:ID  # who holds that overlay, anywhere
//! cargo run --example ns-scan -- --listmount ...                  # read tables with listmount/statmount
//! ```
//!
//! Paths and commands are printed lossily as UTF-8: this is a debugging
//! aid, not an interface.

use idmap_overlay::kernel::namespaces::{Device, Scan, TableSource, current_namespace};
use serde_json::{Value, json};
use std::path::Path;

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn device(text: &str) -> Device {
    Device::parse(text).unwrap_or_else(|| panic!("{text:?} is not MAJOR:MINOR"))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let source = match args.iter().position(|a| a == "--listmount") {
        Some(i) => {
            args.remove(i);
            TableSource::Listmount
        }
        None => TableSource::Mountinfo,
    };
    let own_ns = current_namespace().expect("reading /proc/thread-self/ns/mnt");
    let scan = Scan::read(
        Path::new("/proc"),
        Some(own_ns),
        Some(std::process::id()),
        source,
    )
    .expect("listing /proc");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out: Value = match args.as_slice() {
        [] => json!({
            "own_ns": own_ns,
            "uninspected": scan.uninspected.iter().map(|(pid, why)| json!({
                "pid": pid,
                "error": why,
            })).collect::<Vec<_>>(),
            "namespaces": scan.namespaces().iter().map(|n| {
                let table = match &n.table {
                    Ok(t) => json!({
                        "overlays": t.overlays.iter().map(|o| json!({
                            "mount_id": o.mount_id,
                            "device": o.device.to_string(),
                            "mount_point": lossy(&o.mount_point),
                            "source": o.source,
                            "upperdir": o.upperdir.as_deref().map(lossy),
                            "workdir": o.workdir.as_deref().map(lossy),
                        })).collect::<Vec<_>>(),
                        "idmapped": t.idmapped.iter().map(|i| json!({
                            "mount_id": i.mount_id,
                            "device": i.device.to_string(),
                            "root": lossy(&i.root),
                            "mount_point": lossy(&i.mount_point),
                            "fs_type": i.fs_type,
                            "source": i.source,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(e) => json!({ "error": e }),
                };
                json!({
                    "ns": n.ns,
                    "pid": n.process.as_ref().map(|p| p.pid),
                    "command": n.process.as_ref().map(|p| &p.command),
                    "members": n.pids.len(),
                    "read_by": format!("{:?}", n.source).to_lowercase(),
                    "table": table,
                })
            }).collect::<Vec<_>>(),
        }),
        ["--copies", dev, source] => json!(
            scan.copies(device(dev), source)
                .iter()
                .map(|c| json!({
                    "ns": c.ns,
                    "pid": c.process.as_ref().map(|p| p.pid),
                    "command": c.process.as_ref().map(|p| &p.command),
                    "mounts": c.mounts.iter().map(|m| json!({
                        "mount_id": m.mount_id,
                        "mount_point": lossy(&m.mount_point),
                    })).collect::<Vec<_>>(),
                    "is_root": c.is_root,
                    "is_cwd": c.is_cwd,
                }))
                .collect::<Vec<_>>()
        ),
        ["--using", dir] => json!(
            scan.overlays_using(Path::new(dir))
                .iter()
                .map(|u| json!({
                    "device": u.device.to_string(),
                    "source": u.source,
                    "role": u.role.to_string(),
                    "dir": lossy(&u.dir),
                    "by_path": u.by_path,
                    "places": u.places.iter().map(|p| json!({
                        "ns": p.ns,
                        "pid": p.process.as_ref().map(|p| p.pid),
                        "command": p.process.as_ref().map(|p| &p.command),
                        "mount_id": p.mount_id,
                        "mount_point": lossy(&p.mount_point),
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ),
        ["--holders", pairs @ ..] if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            let overlays: Vec<(Device, &str)> =
                pairs.chunks(2).map(|p| (device(p[0]), p[1])).collect();
            json!(
                scan.holders(&overlays)
                    .iter()
                    .map(|h| json!({
                        "pid": h.pid,
                        "command": h.command,
                        "ns": h.ns,
                        "via": h.via.to_string(),
                        "device": h.device.to_string(),
                        "mount_id": h.mount_id,
                    }))
                    .collect::<Vec<_>>()
            )
        }
        _ => {
            eprintln!(
                "usage: ns-scan [--listmount] [--copies DEV SOURCE | --using DIR | --holders DEV SOURCE...]"
            );
            std::process::exit(1);
        }
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
