//! Writes the man pages (`man/`) and shell completions (`completions/`):
//! `cargo run --example gen-docs`. `tests/generated.rs` fails when the
//! checked-in files differ from what this writes.

// The binary's command line, as the binary reads it.
#[path = "../../src/cmd/args.rs"]
mod cli;
mod docs;

use std::fs;
use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = docs::generate();
    // Files of ours that are no longer generated (a removed subcommand).
    for dir in docs::OWNED_DIRS {
        let dir = root.join(dir);
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(root).expect("under the root");
            if !files.iter().any(|(p, _)| p == rel) {
                fs::remove_file(&path)?;
                println!("removed {}", rel.display());
            }
        }
    }
    for (rel, content) in &files {
        let path = root.join(rel);
        if fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            fs::write(&path, content)?;
            println!("wrote {}", rel.display());
        }
    }
    Ok(())
}
