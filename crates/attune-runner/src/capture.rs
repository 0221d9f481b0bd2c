//! Bounded capture of one output stream, and the last non-empty line of stdout for the
//! execution's `result` (DESIGN.md §3 Output).

/// Keeps the first `limit` bytes of a stream and tracks its last non-empty line.
#[derive(Debug)]
pub struct Capture {
    limit: usize,
    kept: Vec<u8>,
    total: u64,
    current: Vec<u8>,
    current_overflow: bool,
    last_line: Option<Vec<u8>>,
}

/// A finished capture.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    /// The kept bytes as text (invalid UTF-8 replaced), plus a truncation marker if cut.
    pub text: String,
    /// Whether output was cut at the limit.
    pub truncated: bool,
    /// How many bytes the stream had in all.
    pub total_bytes: u64,
    /// The last non-empty line, if it fit within the limit.
    pub last_line: Option<Vec<u8>>,
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

impl Capture {
    /// A capture that keeps up to `limit` bytes.
    pub fn new(limit: usize) -> Capture {
        Capture {
            limit,
            kept: Vec::new(),
            total: 0,
            current: Vec::new(),
            current_overflow: false,
            last_line: None,
        }
    }

    /// Adds a chunk of (already masked) output.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..room.min(data.len())]);
        match data.iter().rposition(|&b| b == b'\n') {
            None => self.extend_current(data),
            Some(last_nl) => {
                let complete = &data[..last_nl];
                let mut end = complete.len();
                loop {
                    let start = complete[..end]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    if start == 0 {
                        // This segment continues the line in progress.
                        self.extend_current(&complete[..end]);
                        if !self.current_overflow && !is_blank(&self.current) {
                            self.last_line = Some(std::mem::take(&mut self.current));
                        } else if self.current_overflow {
                            self.last_line = None;
                        }
                        break;
                    }
                    let seg = &complete[start..end];
                    if !is_blank(seg) {
                        self.last_line = (seg.len() <= self.limit).then(|| seg.to_vec());
                        break;
                    }
                    end = start - 1;
                }
                self.current.clear();
                self.current_overflow = false;
                self.extend_current(&data[last_nl + 1..]);
            }
        }
    }

    fn extend_current(&mut self, data: &[u8]) {
        if self.current_overflow {
            return;
        }
        if self.current.len() + data.len() > self.limit {
            self.current_overflow = true;
            self.current = Vec::new();
        } else {
            self.current.extend_from_slice(data);
        }
    }

    /// Finishes the capture.
    pub fn finish(mut self) -> Captured {
        let truncated = self.total > self.kept.len() as u64;
        let last_line = if self.current_overflow {
            None
        } else if !is_blank(&self.current) {
            Some(std::mem::take(&mut self.current))
        } else {
            self.last_line.take()
        };
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if truncated {
            text.push_str(&format!(
                "\n[attune: output truncated at {} bytes; {} bytes in all]\n",
                self.kept.len(),
                self.total
            ));
        }
        Captured {
            text,
            truncated,
            total_bytes: self.total,
            last_line,
        }
    }
}

/// The execution's result: stdout's last non-empty line, if it is a JSON object.
pub fn parse_result(last_line: Option<&[u8]>) -> Option<serde_json::Value> {
    let line = last_line?;
    match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(chunks: &[&[u8]]) -> Option<Vec<u8>> {
        let mut c = Capture::new(64);
        for ch in chunks {
            c.push(ch);
        }
        c.finish().last_line
    }

    #[test]
    fn finds_last_non_empty_line_across_chunks() {
        assert_eq!(
            last(&[b"a\n{\"x\"", b":1}\n\n  \n"]),
            Some(b"{\"x\":1}".to_vec())
        );
        assert_eq!(last(&[b"a\nb"]), Some(b"b".to_vec()));
        assert_eq!(last(&[b"a\n", b"\n", b"b\n", b"  "]), Some(b"b".to_vec()));
        assert_eq!(last(&[b""]), None);
        assert_eq!(last(&[&[b'x'; 100], b"\n"]), None);
    }

    #[test]
    fn truncates_with_marker() {
        let mut c = Capture::new(4);
        c.push(b"abcdefgh");
        let f = c.finish();
        assert!(f.truncated);
        assert_eq!(f.total_bytes, 8);
        assert!(f
            .text
            .starts_with("abcd\n[attune: output truncated at 4 bytes; 8 bytes in all]"));
    }

    #[test]
    fn result_must_be_an_object() {
        assert!(parse_result(Some(b"{\"a\":1}")).is_some());
        assert!(parse_result(Some(b"[1]")).is_none());
        assert!(parse_result(Some(b"nope")).is_none());
    }
}
