//! Tables for people, the way findmnt prints them: chosen columns
//! (`-o`), with or without headings (`-n`), aligned or raw (`-r`), sorted
//! (`--sort`), fitted to a terminal's width by cutting one column in the
//! middle, and never cut in a pipe. Cells are escaped (`escape`).

use crate::cmd::escape::escape;

/// One column a table can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub help: &'static str,
    /// Sorted as a number rather than as text.
    pub numeric: bool,
    /// Shown when no `-o` is given.
    pub default: bool,
}

/// How the table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub headings: bool,
    /// One space between cells, spaces in cells escaped as `\x20`, nothing
    /// aligned or cut: for scripts.
    pub raw: bool,
    /// The width to fit (a terminal's), or `None` to never cut (a pipe).
    pub width: Option<usize>,
}

/// Parses `-o ID,TARGET,...` (case-insensitive) against `columns`; `None`
/// gives the default ones.
pub fn choose(columns: &[Column], wanted: Option<&str>) -> Result<Vec<Column>, String> {
    let Some(wanted) = wanted else {
        return Ok(columns.iter().copied().filter(|c| c.default).collect());
    };
    wanted
        .split(',')
        .map(|name| {
            columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name.trim()))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "unknown column {:?}; the columns are {} (--list-columns)",
                        name,
                        columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
                    )
                })
        })
        .collect()
}

/// `--list-columns`: one column per line with what it shows.
pub fn list(columns: &[Column]) -> String {
    let width = columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    columns
        .iter()
        .map(|c| {
            format!(
                "{:<width$}  {}{}\n",
                c.name,
                c.help,
                if c.default {
                    ""
                } else {
                    " (not shown by default)"
                }
            )
        })
        .collect()
}

/// Sorts `rows` (cells in `columns` order) by the column named `by`.
pub fn sort(columns: &[Column], rows: &mut [Vec<String>], by: &str) -> Result<(), String> {
    let Some(at) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(by)) else {
        return Err(format!(
            "--sort {by:?}: not one of the columns shown ({})",
            columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
        ));
    };
    if columns[at].numeric {
        rows.sort_by_key(|row| row[at].parse::<u64>().unwrap_or(u64::MAX));
    } else {
        rows.sort_by(|a, b| a[at].cmp(&b[at]));
    }
    Ok(())
}

/// Cuts `text` to `width` characters by taking out its middle: both ends of
/// a path stay readable (`/run/cont…/c1/rootfs`).
pub fn cut_middle(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let keep = width - 1;
    let head = keep / 2;
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Renders `rows` under `columns`. With a width, the column named `flexible`
/// gives up what the others need, down to `min_flexible` characters.
pub fn render(columns: &[Column], rows: &[Vec<String>], layout: Layout, flexible: &str) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| {
                    let cell = escape(cell);
                    if layout.raw {
                        cell.replace(' ', "\\x20")
                    } else {
                        cell.into_owned()
                    }
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| c.name.to_string()).collect();
    let mut out = String::new();
    if layout.raw {
        if layout.headings {
            out.push_str(&headers.join(" "));
            out.push('\n');
        }
        for row in &rows {
            out.push_str(&row.join(" "));
            out.push('\n');
        }
        return out;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let flexible_at = columns.iter().position(|c| c.name == flexible);
    if let (Some(width), Some(at)) = (layout.width, flexible_at) {
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        if total > width {
            let min = headers[at].chars().count().max(10).min(widths[at]);
            widths[at] = widths[at].saturating_sub(total - width).max(min);
        }
    }
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = if Some(i) == flexible_at {
                cut_middle(cell, widths[i])
            } else {
                cell.clone()
            };
            if i + 1 == cells.len() {
                text.push_str(&cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    if layout.headings {
        line(&headers);
    }
    for row in &rows {
        line(row);
    }
    out
}

/// The width of the terminal on stdout (`COLUMNS` overrides it, as for
/// findmnt), or `None` when stdout is not a terminal: then nothing is cut.
pub fn terminal_width() -> Option<usize> {
    let stdout = std::io::stdout();
    if !nix::unistd::isatty(&stdout).unwrap_or(false) {
        return None;
    }
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col))
        .filter(|c| *c > 0)
        .or(Some(80))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[
        Column {
            name: "ID",
            help: "the id",
            numeric: false,
            default: true,
        },
        Column {
            name: "TARGET",
            help: "where",
            numeric: false,
            default: true,
        },
        Column {
            name: "LAYERS",
            help: "how many",
            numeric: true,
            default: false,
        },
    ];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "b".into(),
                "/run/containers/web-1/rootfs".into(),
                "10".into(),
            ],
            vec!["a".into(), "/mnt/x y".into(), "9".into()],
        ]
    }

    #[test]
    fn the_middle_goes_first() {
        assert_eq!(
            cut_middle("/run/containers/web-1/rootfs", 12),
            "/run/…rootfs"
        );
        assert_eq!(cut_middle("short", 12), "short");
    }

    #[test]
    fn columns_are_chosen_by_name() {
        assert_eq!(choose(COLUMNS, None).unwrap().len(), 2);
        let chosen = choose(COLUMNS, Some("layers,id")).unwrap();
        assert_eq!(chosen[0].name, "LAYERS");
        assert!(
            choose(COLUMNS, Some("id,nope"))
                .unwrap_err()
                .contains("\"nope\"")
        );
    }

    #[test]
    fn layouts() {
        let mut rows = rows();
        sort(COLUMNS, &mut rows, "layers").unwrap();
        assert_eq!(rows[0][0], "a", "numeric sort: 9 before 10");
        let piped = Layout {
            headings: true,
            raw: false,
            width: None,
        };
        assert_eq!(
            render(COLUMNS, &rows, piped, "TARGET"),
            "ID  TARGET                        LAYERS\n\
             a   /mnt/x y                      9\n\
             b   /run/containers/web-1/rootfs  10\n"
        );
        let narrow = Layout {
            width: Some(24),
            ..piped
        };
        assert_eq!(
            render(COLUMNS, &rows, narrow, "TARGET"),
            "ID  TARGET        LAYERS\n\
             a   /mnt/x y      9\n\
             b   /run/…rootfs  10\n"
        );
        let raw = Layout {
            headings: false,
            raw: true,
            width: Some(10),
        };
        assert_eq!(
            render(COLUMNS, &rows, raw, "TARGET"),
            "a /mnt/x\\x20y 9\nb /run/containers/web-1/rootfs 10\n"
        );
    }
}
