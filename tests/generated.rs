//! The generated man pages and completions: checked in, current (the test
//! fails when `cargo run --example gen-docs` would change them), rendering
//! cleanly, and completing recorded ids and targets for real in each shell
//! that is installed (bash always is).

#[path = "../src/cmd/args.rs"]
mod cli;
#[path = "../examples/gen-docs/docs.rs"]
#[allow(dead_code)]
mod docs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_idmap-overlay");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REGENERATE: &str = "run `cargo run --example gen-docs` and commit the result";

#[test]
fn checked_in_files_are_current() {
    let root = Path::new(ROOT);
    let generated = docs::generate();
    let mut problems = Vec::new();
    for (rel, content) in &generated {
        match fs::read(root.join(rel)) {
            Ok(on_disk) if on_disk == *content => {}
            Ok(_) => problems.push(format!("{} is stale", rel.display())),
            Err(e) => problems.push(format!("{} is missing ({e})", rel.display())),
        }
    }
    for dir in docs::OWNED_DIRS {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap();
            if !generated.iter().any(|(p, _)| p == rel) {
                problems.push(format!("{} is no longer generated", rel.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}: {REGENERATE}", problems.join("; "));
}

#[test]
fn every_subcommand_has_a_page_and_the_hidden_one_none() {
    let names: Vec<String> = docs::generate()
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    for page in ["", "-mount", "-umount", "-gc", "-inspect"] {
        assert!(
            names.contains(&format!("man/idmap-overlay{page}.8")),
            "{names:?}"
        );
    }
    assert!(
        names.contains(&"man/mount.idmap-overlay.8".to_string()),
        "{names:?}"
    );
    for (path, content) in docs::generate() {
        let text = String::from_utf8(content).unwrap();
        if path.starts_with("man") {
            assert!(!text.contains("complete"), "{} shows it", path.display());
        } else {
            // Called by the scripts, never offered as a subcommand: not in
            // bash's opts, zsh's commands, fish's arguments.
            let offered = text.lines().any(|l| {
                (l.trim_start().starts_with("opts=") && l.contains("complete-ids"))
                    || l.contains("'complete-ids:")
                    || l.contains("-a \"complete-ids\"")
            });
            assert!(!offered, "{} offers complete-ids", path.display());
        }
    }
}

fn man_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(Path::new(ROOT).join("man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    pages
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn man_pages_render_without_warnings() {
    let page = Path::new(ROOT).join("man/idmap-overlay.8");
    let text = fs::read_to_string(&page).unwrap();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "SUBCOMMANDS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
        "JSON",
        "EXAMPLES",
        "\"SEE ALSO\"",
    ] {
        assert!(text.contains(&format!("\n.SH {section}\n")), "{section}");
    }
    // A missing tool fails the test (a skip would pass unchecked); .ci/run
    // installs it.
    assert!(have("groff"), "groff is not installed (Debian: groff-base)");
    for page in man_pages() {
        // -ww: every warning; -z: no output, only the diagnostics.
        let out = Command::new("groff")
            .args(["-t", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(have("man"), "man is not installed (Debian: man-db)");
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("EXIT STATUS") && shown.contains("mount_setattr(2)"));
}

/// The text of a man page or a Markdown file as a reader sees its words:
/// font changes, `\-` and backquotes gone, every run of blanks one space.
fn words(text: &str) -> String {
    let text = text
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
        .replace("\\-", "-")
        .replace('`', "");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every page is in section 8 (admin commands and mount helpers, with
/// mount(8) and findmnt(8)): its file name and its title say so, and every
/// page of ours it names is named in section 8 and exists.
#[test]
fn every_page_is_in_section_8_and_names_ours_there() {
    let pages = man_pages();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for page in &pages {
        let name = page.file_stem().unwrap().to_string_lossy();
        assert_eq!(page.extension().unwrap(), "8", "{}", page.display());
        let text = fs::read_to_string(page).unwrap();
        let title = format!("\n.TH {name} 8  \"idmap-overlay ");
        assert!(text.contains(&title), "{}: no {title:?}", page.display());
        assert!(text.contains("\"System Administration\"\n"));
        // \fBidmap\-overlay\-gc\fR(8): every page of ours named there.
        for (at, _) in text.match_indices("\\fR(") {
            let Some(start) = text[..at].rfind("\\fB") else {
                continue;
            };
            let named = text[start + 3..at].replace("\\-", "-");
            if !named.contains("idmap-overlay") {
                continue;
            }
            let section = &text[at + 4..at + 6];
            assert_eq!(section, "8)", "{}: {named}({section}", page.display());
            assert!(
                names.contains(&named),
                "{}: {named}(8) is no page",
                page.display()
            );
        }
    }
    // Each page but the main one points back at it and the helper's page
    // is named by the main one and mount's.
    for (page, name) in pages.iter().zip(&names) {
        let text = fs::read_to_string(page).unwrap();
        if name != "idmap-overlay" {
            assert!(text.contains("\\fBidmap\\-overlay\\fR(8)"), "{name}");
        }
        if name == "idmap-overlay" || name == "idmap-overlay-mount" {
            assert!(text.contains("\\fBmount.idmap\\-overlay\\fR(8)"), "{name}");
        }
    }
}

/// The helper's page describes every option its usage lists, and its
/// usage points at the page.
#[test]
fn the_helper_page_has_every_option_of_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.idmap-overlay");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let usage = stdout_ok(Command::new(&helper).arg("-h").output().unwrap());
    assert!(usage.contains("mount.idmap-overlay(8)"), "{usage}");
    let page = fs::read_to_string(Path::new(ROOT).join("man/mount.idmap-overlay.8")).unwrap();
    let synopsis = usage.lines().next().unwrap();
    let mut flags: Vec<char> = synopsis
        .split(['[', ']', ' '])
        .filter_map(|w| w.strip_prefix('-'))
        .flat_map(|letters| letters.chars())
        .collect();
    flags.extend(
        usage
            .lines()
            .filter_map(|l| l.strip_prefix("  -"))
            .filter_map(|l| l.chars().next()),
    );
    flags.sort();
    flags.dedup();
    assert!(flags.len() >= 7, "{flags:?} from {usage}");
    for flag in flags {
        let described = [".B \\-", ".BI \\-", ".BR \\-"]
            .iter()
            .any(|macro_| page.contains(&format!("\n{macro_}{flag}")));
        assert!(
            described,
            "-{flag} is not described in mount.idmap-overlay(8)"
        );
    }
}

/// `rw` is said the same way wherever it is described: `mount --help`, the
/// two pages that list mount(8)'s flags, docs/CLI.md and the README.
#[test]
fn rw_is_described_the_same_everywhere() {
    const RW: &str = "rw (the default) undoes an earlier ro; an overlay without an upper layer is read-only all the same";
    let help = stdout_ok(
        Command::new(BIN)
            .args(["mount", "--help"])
            .output()
            .unwrap(),
    );
    let mut places = vec![("mount --help".to_string(), help)];
    for file in [
        "man/idmap-overlay-mount.8",
        "man/mount.idmap-overlay.8",
        "docs/CLI.md",
        "README.md",
    ] {
        places.push((
            file.into(),
            fs::read_to_string(Path::new(ROOT).join(file)).unwrap(),
        ));
    }
    for (place, text) in places {
        assert!(words(&text).contains(RW), "{place} does not say: {RW}");
    }
}

/// The README's set-up names the minimum Rust version Cargo.toml states.
#[test]
fn readme_names_the_rust_version() {
    let version = env!("CARGO_PKG_RUST_VERSION");
    assert!(!version.is_empty(), "Cargo.toml has no rust-version");
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let setup = readme
        .split("\n## ")
        .find(|s| s.starts_with("Set up\n"))
        .expect("README has a Set up section");
    assert!(
        words(setup).contains(&format!("Rust {version} or later")),
        "README's Set up does not say: Rust {version} or later"
    );
}

/// A state directory with two records, one target holding a space.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mounts = dir.path().join("state/mounts");
    fs::create_dir_all(&mounts).unwrap();
    for (id, target) in [("web-1", "/mnt/web"), ("db", "/srv/db data")] {
        let record = serde_json::json!({
            "version": 1, "id": id, "target": target, "state": "mounted",
            "strategy": "detached", "lowerdirs": ["/l/1"], "upperdir": null,
            "workdir": null, "options": [], "uidmap": [], "gidmap": [],
            "userns": null, "common_dir": null, "idmapped_dirs": [],
            "temp_mounts": [], "source": format!("idmap-overlay:{id}"),
            "mount_id": null, "mount_id_unique": null, "pid": 1,
            "created": "2026-01-01T00:00:00Z"
        });
        fs::write(mounts.join(format!("{id}.json")), record.to_string()).unwrap();
    }
    dir
}

fn shell(program: &str, args: &[&str], state: &Path) -> Output {
    let bin_dir = Path::new(BIN).parent().unwrap();
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
        .env("HOME", state.parent().unwrap())
        .env("IDMAP_OVERLAY_STATE_DIR", state)
        .output()
        .unwrap()
}

fn stdout_ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn complete_ids_prints_records_and_never_fails() {
    let dir = fixture();
    let state = dir.path().join("state");
    let out = shell(BIN, &["complete-ids"], &state);
    assert_eq!(stdout_ok(out), "db\nweb-1\n/mnt/web\n/srv/db data\n");
    // A missing state directory: nothing, exit 0, and nothing created.
    let missing = dir.path().join("missing");
    let out = shell(BIN, &["complete-ids"], &missing);
    assert_eq!(stdout_ok(out), "");
    assert!(!missing.exists());
    // Hidden from help.
    let help = stdout_ok(shell(BIN, &["--help"], &state));
    assert!(!help.contains("complete-ids"), "{help}");
}

/// `line` completed by bash, the way readline would call the function.
const BASH_DRIVER: &str = r#"
source "$1"
shift
read -r -a COMP_WORDS <<<"$1"
[[ $1 == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
_idmap__overlay_records idmap-overlay "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;

#[test]
fn bash_completes_records_and_options() {
    let dir = fixture();
    let state = dir.path().join("state");
    let script = Path::new(ROOT).join("completions/idmap-overlay.bash");
    let complete = |line: &str| -> Vec<String> {
        let out = shell(
            "bash",
            &["-c", BASH_DRIVER, "bash", script.to_str().unwrap(), line],
            &state,
        );
        stdout_ok(out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let all = ["db", "web-1", "/mnt/web", "/srv/db\\ data"];
    assert_eq!(complete("idmap-overlay umount "), all);
    assert_eq!(complete("idmap-overlay inspect "), all);
    assert_eq!(complete("idmap-overlay umount w"), ["web-1"]);
    assert_eq!(
        complete("idmap-overlay -v umount --timeout 3s /s"),
        ["/srv/db\\ data"]
    );
    assert_eq!(
        complete(&format!(
            "idmap-overlay --state-dir {} inspect d",
            state.display()
        )),
        ["db"]
    );
    // Not where a record goes: an option's value, a second positional,
    // another subcommand's options, a state directory that is not there.
    assert!(!complete("idmap-overlay umount --timeout ").contains(&"db".to_string()));
    assert!(!complete("idmap-overlay umount db ").contains(&"db".to_string()));
    assert_eq!(complete("idmap-overlay gc --dr"), ["--dry-run"]);
    assert_eq!(complete("idmap-overlay umount --ti"), ["--timeout"]);
    assert_eq!(
        complete("idmap-overlay --state-dir /nonexistent umount "),
        Vec::<String>::new()
    );
    let subcommands = complete("idmap-overlay ");
    assert!(
        subcommands.contains(&"inspect".to_string()),
        "{subcommands:?}"
    );
    assert!(
        !subcommands.contains(&"complete-ids".to_string()),
        "{subcommands:?}"
    );
}

#[test]
fn zsh_completion_function_offers_records() {
    assert!(have("zsh"), "zsh is not installed (Debian: zsh)");
    let dir = fixture();
    let state = dir.path().join("state");
    let script = Path::new(ROOT).join("completions/_idmap-overlay");
    let text = fs::read_to_string(&script).unwrap();
    assert_eq!(text.matches(":_idmap-overlay_records' \\").count(), 2);
    // Source it with compsys stubbed: compdef does nothing, compadd prints.
    let driver = r#"
        compdef() { :; }
        _wanted() { shift 3; "$@"; }
        compadd() { local w; for w in "${(@P)2}"; do print -r -- "$w"; done; }
        _call_program() { shift; eval "$*"; }
        source "$1"
        LBUFFER=$2
        _idmap-overlay_records
    "#;
    for (line, expected) in [
        (
            "idmap-overlay umount ",
            "db\nweb-1\n/mnt/web\n/srv/db data\n",
        ),
        ("idmap-overlay --state-dir /nonexistent umount ", ""),
    ] {
        let out = shell(
            "zsh",
            &["-f", "-c", driver, "zsh", script.to_str().unwrap(), line],
            &state,
        );
        assert_eq!(stdout_ok(out), expected, "{line}");
    }
}

#[test]
fn fish_completes_records_and_options() {
    assert!(have("fish"), "fish is not installed (Debian: fish)");
    let dir = fixture();
    let state = dir.path().join("state");
    let script = Path::new(ROOT).join("completions/idmap-overlay.fish");
    let complete = |line: &str| -> Vec<String> {
        let out = shell(
            "fish",
            &[
                "--no-config",
                "-c",
                "source $argv[1]; complete -C $argv[2]",
                script.to_str().unwrap(),
                line,
            ],
            &state,
        );
        let mut words: Vec<String> = stdout_ok(out)
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        words.sort();
        words
    };
    let all = ["/mnt/web", "/srv/db data", "db", "web-1"];
    assert_eq!(complete("idmap-overlay umount "), all);
    assert_eq!(complete("idmap-overlay -v inspect --json "), all);
    assert_eq!(complete("idmap-overlay umount w"), ["web-1"]);
    assert!(!complete("idmap-overlay umount --timeout ").contains(&"db".to_string()));
    assert!(!complete("idmap-overlay umount db ").contains(&"db".to_string()));
    assert_eq!(complete("idmap-overlay gc --dr"), ["--dry-run"]);
}

/// The column names, as the completions offer them.
fn columns(prefix: &str) -> Vec<String> {
    cli::COLUMN_NAMES
        .iter()
        .map(|c| format!("{prefix}{c}"))
        .collect()
}

/// `inspect -o` (a comma list, a leading +) and `--sort` complete column
/// names in bash, run for real as readline would call it; `mount -o`
/// does not.
#[test]
fn bash_completes_column_names() {
    let dir = fixture();
    let state = dir.path().join("state");
    let script = Path::new(ROOT).join("completions/idmap-overlay.bash");
    let text = fs::read_to_string(&script).unwrap();
    assert!(text.contains(&cli::COLUMN_NAMES.join(" ")));
    let complete = |line: &str| -> Vec<String> {
        let out = shell(
            "bash",
            &["-c", BASH_DRIVER, "bash", script.to_str().unwrap(), line],
            &state,
        );
        stdout_ok(out)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(complete("idmap-overlay inspect -o "), columns(""));
    assert_eq!(complete("idmap-overlay inspect --sort "), columns(""));
    assert_eq!(complete("idmap-overlay inspect -o TA"), ["TARGET"]);
    assert_eq!(complete("idmap-overlay inspect -o ID,TA"), ["ID,TARGET"]);
    assert_eq!(complete("idmap-overlay inspect -o +MA"), ["+MAPS"]);
    assert_eq!(
        complete("idmap-overlay -v inspect --leaks --output KIND,P"),
        ["KIND,PID", "KIND,PATH"]
    );
    // --output=X: readline splits the word at '='.
    assert_eq!(
        complete("idmap-overlay inspect --output = ID,HE"),
        ["ID,HEALTH"]
    );
    assert_eq!(complete("idmap-overlay inspect --sort HE"), ["HEALTH"]);
    // --sort takes one column; mount's -o is not inspect's.
    assert_eq!(
        complete("idmap-overlay inspect --sort ID,T"),
        Vec::<String>::new()
    );
    let mount_o = complete("idmap-overlay mount -o ");
    assert!(!mount_o.contains(&"TARGET".to_string()), "{mount_o:?}");
    // The record after them is still completed.
    assert_eq!(complete("idmap-overlay inspect -o ID w"), ["web-1"]);
}

#[test]
fn fish_completes_column_names() {
    assert!(have("fish"), "fish is not installed (Debian: fish)");
    let dir = fixture();
    let state = dir.path().join("state");
    let script = Path::new(ROOT).join("completions/idmap-overlay.fish");
    let complete = |line: &str| -> Vec<String> {
        let out = shell(
            "fish",
            &[
                "--no-config",
                "-c",
                "source $argv[1]; complete -C $argv[2]",
                script.to_str().unwrap(),
                line,
            ],
            &state,
        );
        let mut words: Vec<String> = stdout_ok(out)
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect();
        words.sort();
        words
    };
    let mut all = columns("");
    all.sort();
    assert_eq!(complete("idmap-overlay inspect -o "), all);
    assert_eq!(complete("idmap-overlay inspect --sort "), all);
    assert_eq!(complete("idmap-overlay inspect -o ID,TA"), ["ID,TARGET"]);
    assert_eq!(complete("idmap-overlay inspect -o +MA"), ["+MAPS"]);
    assert_eq!(
        complete("idmap-overlay inspect --output=ID,HE"),
        ["--output=ID,HEALTH"]
    );
    assert_eq!(complete("idmap-overlay inspect --sort HE"), ["HEALTH"]);
    let mount_o = complete("idmap-overlay mount -o ");
    assert!(!mount_o.contains(&"TARGET".to_string()), "{mount_o:?}");
}

/// zsh completes only inside a completion widget (compset needs one), so
/// its file is checked as written: inspect's -o and --sort call
/// `_idmap-overlay_columns` (a list for -o), which offers every column
/// and is defined once the file is sourced.
#[test]
fn zsh_completion_offers_column_names() {
    assert!(have("zsh"), "zsh is not installed (Debian: zsh)");
    let script = Path::new(ROOT).join("completions/_idmap-overlay");
    let text = fs::read_to_string(&script).unwrap();
    let arm = text
        .split("\n(inspect)\n")
        .nth(1)
        .and_then(|rest| rest.split("\n;;\n").next())
        .expect("an inspect arm");
    for spec in ["'-o+[", "'--output=["] {
        let line = arm.lines().find(|l| l.starts_with(spec)).unwrap();
        assert!(line.ends_with(":_idmap-overlay_columns list' \\"), "{line}");
    }
    let line = arm.lines().find(|l| l.starts_with("'--sort=[")).unwrap();
    assert!(line.ends_with(":_idmap-overlay_columns' \\"), "{line}");
    assert!(text.contains(&format!(
        "local -a columns=({})",
        cli::COLUMN_NAMES.join(" ")
    )));
    let out = shell(
        "zsh",
        &[
            "-f",
            "-c",
            "compdef() { :; }; source $1; whence -w _idmap-overlay_columns",
            "zsh",
            script.to_str().unwrap(),
        ],
        Path::new(ROOT).join("state").as_path(),
    );
    assert_eq!(stdout_ok(out), "_idmap-overlay_columns: function\n");
}

/// The lines of each `Heading:` block of a --help text, by heading.
fn help_blocks(help: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            blocks.push((line.trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    blocks
}

/// The text of a man page's section, `.SH NAME` up to the next `.SH`.
fn man_section<'a>(page: &'a str, name: &str) -> Option<&'a str> {
    let start = page.find(&format!("\n.SH {name}\n"))? + 1;
    let rest = &page[start..];
    let end = rest[1..].find("\n.SH ").map_or(rest.len(), |at| at + 1);
    Some(&rest[..end])
}

/// The options every subcommand takes (--state-dir, -v, -q) are listed
/// under a heading of their own, apart from the subcommand's own options,
/// in the --help of the command and of every subcommand, and in every page
/// made from them.
#[test]
fn global_options_are_listed_apart() {
    let globals = ["--state-dir", "--verbose", "--quiet"];
    let mut commands = vec![vec![]];
    for sub in ["mount", "umount", "gc", "inspect"] {
        commands.push(vec![sub]);
    }
    for command in commands {
        let mut args = command.clone();
        args.push("--help");
        let help = stdout_ok(Command::new(BIN).args(&args).output().unwrap());
        let blocks = help_blocks(&help);
        let block = |name: &str| {
            blocks
                .iter()
                .find(|(heading, _)| heading == name)
                .map(|(_, text)| text.as_str())
                .unwrap_or_else(|| panic!("{args:?}: no {name}: block in {help}"))
        };
        for global in globals {
            assert!(block("Global options").contains(global), "{args:?}: {help}");
            assert!(!block("Options").contains(global), "{args:?}: {help}");
        }
        assert!(block("Options").contains("--help"), "{args:?}: {help}");

        let name = ["idmap-overlay"]
            .into_iter()
            .chain(command.iter().copied())
            .collect::<Vec<_>>()
            .join("-");
        let page = fs::read_to_string(Path::new(ROOT).join(format!("man/{name}.8"))).unwrap();
        let own = man_section(&page, "OPTIONS").unwrap_or_else(|| panic!("{name}: no OPTIONS"));
        let global_section = man_section(&page, "\"GLOBAL OPTIONS\"")
            .unwrap_or_else(|| panic!("{name}: no GLOBAL OPTIONS"));
        for global in globals {
            let roff = global.replace('-', "\\-");
            assert!(global_section.contains(&roff), "{name}: {global}");
            assert!(!own.contains(&roff), "{name}: {global} among its own");
        }
    }
}
