//! Human-readable output: tables sized to the terminal (comfy-table), and `key: value` lists.

use std::io::Write;

/// Width used when neither the terminal nor $COLUMNS tells one.
const DEFAULT_WIDTH: usize = 100;

/// A table: a header row and rows of cells, laid out by `comfy-table` without borders,
/// one line per row (a cell too long for the width is cut with "…").
#[derive(Debug)]
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_truncation_indicator("…")
            .set_header(headers.iter().map(|h| clean(h.as_ref())));
        Table { inner }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let n = self.inner.header().map_or(0, |h| h.cell_count());
        let mut row: Vec<String> = cells.iter().map(|c| clean(c.as_ref())).collect();
        row.resize(n, String::new());
        let mut row = comfy_table::Row::from(row);
        row.max_height(1);
        self.inner.add_row(row);
    }

    /// The table as text at most `width` characters wide (as far as each column's header
    /// allows); lines carry no trailing spaces.
    pub fn render(&self, width: usize) -> String {
        let mut t = self.inner.clone();
        t.set_width(u16::try_from(width).unwrap_or(u16::MAX));
        // A column is never narrower than its header, and the first (the id or name a user
        // types next) keeps up to 24 characters.
        let headers: Vec<usize> = t
            .header()
            .map(|h| h.cell_iter().map(|c| len(&c.content())).collect())
            .unwrap_or_default();
        let first = t
            .column_max_content_widths()
            .first()
            .map_or(0, |w| usize::from(*w).min(24));
        for (i, h) in headers.iter().enumerate() {
            // The constraint counts the cell's padding, one space each side.
            let floor = if i == 0 { (*h).max(first) } else { *h } + 2;
            if let Some(c) = t.column_mut(i) {
                c.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
                    comfy_table::Width::Fixed(u16::try_from(floor).unwrap_or(u16::MAX)),
                ));
            }
        }
        let mut out = String::new();
        for line in t.lines() {
            // No border: each line starts with the left padding, which we drop.
            let line = line
                .strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string();
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout, sized to the terminal.
    pub fn print(&self) {
        print_text(&self.render(terminal_width()));
    }
}

/// Prints `key: value` lines with the values aligned; long values are not truncated.
pub fn print_fields(fields: &[(&str, String)]) {
    print_text(&render_fields(fields));
}

/// `key: value` lines with the values aligned. Multi-line values are indented.
pub fn render_fields(fields: &[(&str, String)]) -> String {
    let key_width = fields.iter().map(|(k, _)| len(k) + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields {
        let label = format!("{key}:");
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        out.push_str(format!("{label:<key_width$} {first}").trim_end());
        out.push('\n');
        for more in lines {
            out.push_str(format!("{:key_width$} {more}", "").trim_end());
            out.push('\n');
        }
    }
    out
}

/// Writes text to stdout, ignoring a closed pipe.
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes one line to stdout, ignoring a closed pipe.
pub fn print_line(text: &str) {
    print_text(&format!("{text}\n"));
}

/// A JSON value for a table cell or a field: strings as they are, null or missing as "-",
/// anything else as compact JSON.
pub fn show(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The width of the terminal on stdout, else $COLUMNS, else 100.
pub fn terminal_width() -> usize {
    tty_width()
        .or_else(|| {
            std::env::var("COLUMNS")
                .ok()
                .and_then(|c| c.trim().parse::<usize>().ok())
                .filter(|c| *c > 0)
        })
        .unwrap_or(DEFAULT_WIDTH)
}

fn tty_width() -> Option<usize> {
    // SAFETY: an all-zero winsize is a valid value of this plain C struct.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which is valid and
    // exclusively borrowed for the call; on a non-terminal it fails and writes nothing.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// Characters, as the terminal shows them (one column each, as far as we know).
fn len(s: &str) -> usize {
    s.chars().count()
}

/// One line: control characters (newlines, tabs, escapes) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(&["ID", "ACTION", "DESCRIPTION"]);
        t.row(&["1", "core.echo", "Prints a message on stdout"]);
        t.row(&["12", "core.sleep", "Sleeps"]);
        t
    }

    #[test]
    fn aligns_columns_when_wide_enough() {
        let text = sample().render(100);
        assert_eq!(
            text,
            "ID  ACTION      DESCRIPTION\n\
             1   core.echo   Prints a message on stdout\n\
             12  core.sleep  Sleeps\n"
        );
    }

    #[test]
    fn truncates_the_widest_column_to_fit() {
        let text = sample().render(30);
        for line in text.lines() {
            assert!(len(line) <= 30, "{line:?} is wider than 30");
        }
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(row.starts_with("1   core.echo   Prints a"), "{row:?}");
        assert!(row.ends_with('…'), "{row:?}");
        // The narrow columns are untouched.
        assert!(text
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("12  core.sleep  ")));
    }

    #[test]
    fn shrinks_several_wide_columns_evenly_and_keeps_a_minimum() {
        let mut t = Table::new(&["A", "B"]);
        t.row(&["x".repeat(40), "y".repeat(40)]);
        let text = t.render(42);
        let row = text.lines().nth(1).unwrap_or_default();
        assert!((38..=42).contains(&len(row)), "{row:?}");
        // Both columns give way, about evenly.
        let (a, b) = row.split_once("…").unwrap();
        assert!(a.len() >= 15 && b.trim().len() >= 15, "{row:?}");
        assert!(row.ends_with('…'), "{row:?}");
        // Too narrow to fit: columns stop at the minimum rather than vanish.
        let tiny = t.render(3);
        assert!(tiny.lines().nth(1).is_some_and(|l| l.contains('…')));
    }

    #[test]
    fn control_characters_do_not_break_rows() {
        let mut t = Table::new(&["K", "V"]);
        t.row(&["a", "line one\nline\ttwo\u{1b}[31m"]);
        t.row(&["b"]);
        let text = t.render(80);
        assert_eq!(text.lines().count(), 3);
        assert_eq!(text.lines().nth(2), Some("b"));
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn fields_align_values() {
        let text = render_fields(&[
            ("id", "7".into()),
            ("status", "running".into()),
            ("stdout", "a\nb".into()),
        ]);
        assert_eq!(text, "id:     7\nstatus: running\nstdout: a\n        b\n");
    }
}
