//! Strings from outside (paths, process names, record fields) made safe to
//! show a person on a terminal. Anyone can name a directory or a process
//! (`prctl(PR_SET_NAME)`), and a raw ESC, CR or a bidi override in it would
//! rewrite what the admin sees. JSON output needs none of this: serde
//! escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write;

/// Does `c` need escaping? Control characters (C0, DEL, C1) and the Unicode
/// format characters that reorder or hide text (bidi embeddings, overrides
/// and isolates, marks, zero-width characters), line and paragraph
/// separators. A backslash is left as it is: messages quote some values
/// Rust-style (`"a\nb"`), and a literal `\x1b` in a name is only text.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `s` with every character that could mislead a terminal written as an
/// escape, like `ls -b`: `\x1b` for control bytes, `\u{202e}` for format
/// characters. Unchanged (and not copied) when there
/// is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if (c as u32) < 0x100 && needs_escape(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for a path (not valid UTF-8 bytes are shown as U+FFFD).
pub fn path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_left_alone() {
        assert!(matches!(escape("/var/lib/c 1/rootfs"), Cow::Borrowed(_)));
        assert_eq!(escape("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn what_could_fool_a_terminal_is_escaped() {
        assert_eq!(escape("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(escape("a\r\x1b[2Kb\tc\n"), "a\\x0d\\x1b[2Kb\\x09c\\x0a");
        assert_eq!(escape("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(escape("\u{7f}\u{9b}"), "\\x7f\\x9b");
        assert_eq!(escape("a\u{200b}b\u{2066}"), "a\\u{200b}b\\u{2066}");
        assert_eq!(escape("C:\\dir"), "C:\\dir");
    }
}
