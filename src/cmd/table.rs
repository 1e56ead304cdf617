//! Tables for people, the way findmnt prints them: chosen columns (`-o`,
//! `-o +COL` to add to the default ones), with or without headings (`-n`),
//! aligned or raw (`-r`), sorted (`--sort`), fitted to a width and never
//! cut in a pipe. Cells are escaped (`escape`).
//!
//! Fitting a width, in this order: columns of paths give up their start
//! (the end is what tells containers apart: `…/4f2a/rootfs`) and columns of
//! prose wrap onto more lines, each down to [`ROOM`] characters; then the
//! default columns marked spare are left out, one at a time; then the cut
//! columns go down to [`LEAST`]. Words and numbers are never cut. A table
//! of columns chosen with `-o` loses none of them: at a width too narrow
//! for them, its lines are wider.

use crate::cmd::escape::escape;

/// One column a table can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub help: &'static str,
    /// Sorted as a number rather than as text (and a number in `-J -o`).
    pub numeric: bool,
    /// Shown when no `-o` is given.
    pub default: bool,
    /// How it gives up width.
    pub fit: Fit,
}

/// How a column gives up width when the table is wider than the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Shown whole: words, numbers, ids.
    Whole,
    /// Shown whole, but left out of a default table that does not fit
    /// otherwise; the lowest number goes first.
    Spare(u8),
    /// A path: cut at its start, so that its end stays.
    KeepEnd,
    /// Prose: wrapped onto more lines, at spaces where it can.
    Wrap,
}

/// What a cut or wrapped column keeps before spare columns are left out.
pub const ROOM: usize = 20;
/// What a cut or wrapped column keeps at the least.
pub const LEAST: usize = 8;

/// How the table is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub headings: bool,
    /// One space between cells, spaces in cells escaped as `\x20`, nothing
    /// aligned or cut: for scripts.
    pub raw: bool,
    /// The width to fit (a terminal's, or `--width`), or `None` to never
    /// cut (a pipe, `--no-trunc`).
    pub width: Option<usize>,
    /// The columns are the default ones (no `-o`): spare ones may be left
    /// out.
    pub spare_defaults: bool,
}

/// Parses `-o ID,TARGET,...` (case-insensitive) against `columns`; `None`
/// gives the default ones, and a list starting with `+` adds to them.
pub fn choose(columns: &[Column], wanted: Option<&str>) -> Result<Vec<Column>, String> {
    let defaults = columns.iter().copied().filter(|c| c.default);
    let Some(wanted) = wanted else {
        return Ok(defaults.collect());
    };
    let (mut chosen, wanted): (Vec<Column>, &str) = match wanted.strip_prefix('+') {
        Some(more) => (defaults.collect(), more),
        None => (Vec::new(), wanted),
    };
    for name in wanted.split(',') {
        let column = columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name.trim()))
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown column {:?}; the columns are {} (--list-columns)",
                    name,
                    columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
                )
            })?;
        chosen.push(column);
    }
    Ok(chosen)
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

/// Cuts `text` to `width` characters by taking out its start: the end of
/// a path stays (`…ad41/rootfs`), where containers' paths differ.
pub fn keep_end(text: &str, width: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(&chars[chars.len() - (width - 1)..]);
    out
}

/// `text` in lines of at most `width` characters: broken at the last space
/// that fits (the space goes), unless that leaves the line less than half
/// full and a `/` or `,` (a path, a list) comes later, else anywhere.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    while rest.len() > width {
        // (where the line ends, where the next one starts)
        let at_space = rest[..=width]
            .iter()
            .rposition(|c| *c == ' ')
            .filter(|at| *at > 0)
            .map(|at| (at, at + 1));
        let after_mark = rest[..width]
            .iter()
            .rposition(|c| matches!(c, '/' | ','))
            .filter(|at| *at > 0)
            .map(|at| (at + 1, at + 1));
        let (end, next) = match (at_space, after_mark) {
            (Some(space), Some(mark)) if mark.0 > space.0 && space.0 * 2 < width => mark,
            (Some(space), _) => space,
            (None, Some(mark)) => mark,
            (None, None) => (width, width),
        };
        lines.push(
            rest[..end]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        rest.drain(..next);
    }
    lines.push(rest.into_iter().collect());
    lines
}

/// The widths that fit `width` (see the module's comment): for each column
/// its width, or `None` when it is left out.
fn fit(
    columns: &[Column],
    natural: &[usize],
    width: usize,
    spare_defaults: bool,
) -> Vec<Option<usize>> {
    let mut spares: Vec<(u8, usize)> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.fit {
            Fit::Spare(order) if spare_defaults => Some((order, i)),
            _ => None,
        })
        .collect();
    spares.sort();
    let mut shown: Vec<Option<usize>> = natural.iter().copied().map(Some).collect();
    for left_out in 0..=spares.len() {
        for &(_, i) in &spares[..left_out] {
            shown[i] = None;
        }
        let fitted = shrink(columns, &shown, width, ROOM);
        if total(&fitted) <= width {
            return fitted;
        }
    }
    shrink(columns, &shown, width, LEAST)
}

/// The width of a line with these columns, two spaces between them.
fn total(widths: &[Option<usize>]) -> usize {
    let shown: Vec<usize> = widths.iter().flatten().copied().collect();
    shown.iter().sum::<usize>() + 2 * shown.len().saturating_sub(1)
}

/// Takes one character at a time from the widest column that can be cut
/// or wrapped, down to `floor` each, until the line fits `width`.
fn shrink(
    columns: &[Column],
    widths: &[Option<usize>],
    width: usize,
    floor: usize,
) -> Vec<Option<usize>> {
    let mut widths = widths.to_vec();
    while total(&widths) > width {
        let widest = (0..columns.len())
            .filter(|i| matches!(columns[*i].fit, Fit::KeepEnd | Fit::Wrap))
            .filter_map(|i| widths[i].map(|w| (w, i)))
            .filter(|(w, _)| *w > floor)
            .max();
        match widest {
            Some((w, i)) => widths[i] = Some(w - 1),
            None => break,
        }
    }
    widths
}

/// Renders `rows` under `columns`, fitted to the layout's width if it has
/// one.
pub fn render(columns: &[Column], rows: &[Vec<String>], layout: Layout) -> String {
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
    let mut natural: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in natural.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let widths = match layout.width {
        Some(width) => fit(columns, &natural, width, layout.spare_defaults),
        None => natural.into_iter().map(Some).collect(),
    };
    let last = widths.iter().rposition(Option::is_some);
    // One row: each cell as its lines (a wrapped one has several), then
    // line by line, padded to the column's width.
    let mut put = |cells: &[String]| {
        let lines: Vec<Vec<String>> = cells
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((cell, column), width)| match (width, column.fit) {
                (None, _) => Vec::new(),
                (Some(w), Fit::KeepEnd) => vec![keep_end(cell, *w)],
                (Some(w), Fit::Wrap) => wrap(cell, *w),
                _ => vec![cell.clone()],
            })
            .collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for n in 0..height {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let Some(width) = width else { continue };
                let cell = lines[i].get(n).map(String::as_str).unwrap_or("");
                if Some(i) == last {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
    };
    if layout.headings {
        put(&headers);
    }
    for row in &rows {
        put(row);
    }
    out
}

/// The width of the terminal on stdout (`COLUMNS` overrides it, as for
/// findmnt), or `None` when stdout is not a terminal: then nothing is cut
/// (`COLUMNS` is not looked at: a shell that exports it would otherwise
/// cut what a script reads).
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

    const fn column(name: &'static str, numeric: bool, default: bool, fit: Fit) -> Column {
        Column {
            name,
            help: "",
            numeric,
            default,
            fit,
        }
    }

    const COLUMNS: &[Column] = &[
        column("ID", false, true, Fit::Whole),
        column("TARGET", false, true, Fit::KeepEnd),
        column("LAYERS", true, false, Fit::Spare(0)),
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

    fn piped() -> Layout {
        Layout {
            headings: true,
            raw: false,
            width: None,
            spare_defaults: false,
        }
    }

    #[test]
    fn the_start_goes_first() {
        assert_eq!(keep_end("/run/containers/web-1/rootfs", 12), "…eb-1/rootfs");
        assert_eq!(keep_end("short", 12), "short");
    }

    #[test]
    fn prose_wraps_at_spaces_paths_at_slashes() {
        assert_eq!(
            wrap("not mounted here; alive elsewhere", 12),
            ["not mounted", "here; alive", "elsewhere"]
        );
        assert_eq!(
            wrap("/var/lib/containerd/x", 10),
            ["/var/lib/", "containerd", "/x"]
        );
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("  1  /var/lib/c/x", 12), ["  1  /var/", "lib/c/x"]);
        assert_eq!(
            wrap("mounted at /mnt/gone", 14),
            ["mounted at", "/mnt/gone"]
        );
        assert_eq!(wrap("fits", 4), ["fits"]);
    }

    #[test]
    fn columns_are_chosen_by_name_or_added() {
        assert_eq!(choose(COLUMNS, None).unwrap().len(), 2);
        let chosen = choose(COLUMNS, Some("layers,id")).unwrap();
        assert_eq!(chosen[0].name, "LAYERS");
        let added: Vec<&str> = choose(COLUMNS, Some("+Layers"))
            .unwrap()
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(added, ["ID", "TARGET", "LAYERS"]);
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
        assert_eq!(
            render(COLUMNS, &rows, piped()),
            "ID  TARGET                        LAYERS\n\
             a   /mnt/x y                      9\n\
             b   /run/containers/web-1/rootfs  10\n"
        );
        let narrow = Layout {
            width: Some(32),
            ..piped()
        };
        assert_eq!(
            render(COLUMNS, &rows, narrow),
            "ID  TARGET                LAYERS\n\
             a   /mnt/x y              9\n\
             b   …ainers/web-1/rootfs  10\n"
        );
        let raw = Layout {
            headings: false,
            raw: true,
            width: Some(10),
            spare_defaults: false,
        };
        assert_eq!(
            render(COLUMNS, &rows, raw),
            "a /mnt/x\\x20y 9\nb /run/containers/web-1/rootfs 10\n"
        );
    }

    #[test]
    fn a_spare_column_goes_before_a_path_is_cut_below_room() {
        let rows = rows();
        let fitted = |width, spare_defaults| {
            render(
                COLUMNS,
                &rows,
                Layout {
                    width: Some(width),
                    spare_defaults,
                    ..piped()
                },
            )
        };
        // With -o (no spares): LAYERS stays, TARGET goes below ROOM.
        let chosen = fitted(24, false);
        assert!(chosen.starts_with("ID  TARGET        LAYERS\n"), "{chosen}");
        // Defaults: LAYERS is left out, TARGET keeps its room.
        let defaults = fitted(24, true);
        assert_eq!(
            defaults,
            "ID  TARGET\nb   …ainers/web-1/rootfs\na   /mnt/x y\n"
        );
        for text in [chosen, defaults] {
            assert!(text.lines().all(|l| l.chars().count() <= 24), "{text}");
        }
    }

    #[test]
    fn wrapped_rows_take_more_lines() {
        const LEAKS: &[Column] = &[
            column("KIND", false, true, Fit::Whole),
            column("WHY", false, true, Fit::Wrap),
        ];
        let rows = vec![vec![
            "temp-mount".to_string(),
            "a temporary mount of a mounted overlay was never unmounted".to_string(),
        ]];
        let text = render(
            LEAKS,
            &rows,
            Layout {
                width: Some(40),
                ..piped()
            },
        );
        assert_eq!(
            text,
            "KIND        WHY\n\
             temp-mount  a temporary mount of a\n\
             \x20           mounted overlay was never\n\
             \x20           unmounted\n"
        );
    }
}
