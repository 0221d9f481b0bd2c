//! Human-readable output: aligned tables sized to the terminal, and `key: value` lists.

use std::io::Write;

/// Width used when neither the terminal nor $COLUMNS tells one.
const DEFAULT_WIDTH: usize = 100;
/// Spaces between columns.
const GAP: usize = 2;
/// A column is never squeezed below this many characters (or its header, if shorter).
const MIN_COLUMN: usize = 6;

/// A table: a header row and rows of cells, rendered with aligned columns.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| clean(h.as_ref())).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let mut row: Vec<String> = cells.iter().map(|c| clean(c.as_ref())).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// The table as text at most `width` characters wide (as far as the minimum column
    /// widths allow): the widest column is truncated with "…" until the table fits.
    pub fn render(&self, width: usize) -> String {
        let n = self.headers.len();
        if n == 0 {
            return String::new();
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| len(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(len(cell));
            }
        }
        let floor: Vec<usize> = self
            .headers
            .iter()
            .map(|h| len(h).clamp(1, MIN_COLUMN))
            .collect();
        let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * (n - 1);
        while total(&widths) > width {
            // The widest column that can still shrink; ties go to the rightmost.
            let Some((i, _)) = widths
                .iter()
                .enumerate()
                .filter(|(i, w)| **w > floor[*i])
                .max_by_key(|(i, w)| (**w, *i))
            else {
                break;
            };
            widths[i] -= 1;
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                let cell = truncate(cell, *w);
                line.push_str(&cell);
                if i + 1 < n {
                    let pad = w - len(&cell) + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
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

/// `s` cut to `width` characters, the last one "…" when anything was cut.
fn truncate(s: &str, width: usize) -> String {
    if len(s) <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
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
        assert_eq!(text.lines().nth(1), Some("1   core.echo   Prints a mess…"));
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
        assert_eq!(len(row), 42);
        assert!(row.starts_with(&format!("{}…  ", "x".repeat(19))));
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
