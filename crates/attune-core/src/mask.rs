//! Masking of secret values in an action's output (DESIGN.md §5): every secret value of
//! four bytes or more, and its encoded forms, becomes `***`, also when it straddles the
//! boundary between two reads. The forms:
//! - base64 and base64url at any offset inside a longer encoded text: for each of the three
//!   alignments, the characters that depend on the secret's bits alone (so
//!   `base64("user:" + secret)`, HTTP Basic, is caught);
//! - percent-encoding as Python's `quote` (keeps `/`) and `quote_plus` (space as `+`),
//!   JavaScript's `encodeURIComponent` (keeps `!*'()`) and jq's `@uri` write it;
//! - JSON string escaping as serde and JavaScript (non-ASCII as is), Python's `json.dumps`
//!   (`\uXXXX` for non-ASCII, surrogate pairs beyond U+FFFF) and jq (also `\u007f`) write
//!   it.
//!
//! Values shorter than four bytes are not masked: masking `a` would destroy all output.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

/// What a masked value is replaced with.
pub const MASK: &[u8] = b"***";
/// Values shorter than this are not masked: masking `a` would destroy all output.
pub const MIN_SECRET_LEN: usize = 4;

/// A compiled set of byte patterns to mask; cheap to share between streams.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
    patterns: Vec<Vec<u8>>,
}

impl Masker {
    /// A masker that masks nothing.
    pub fn none() -> Masker {
        Masker::default()
    }

    /// Builds a masker for the given secret values and their encoded forms.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for s in secrets {
            if s.len() < MIN_SECRET_LEN {
                continue;
            }
            for form in encoded_forms(s) {
                if form.len() >= MIN_SECRET_LEN && !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        if patterns.is_empty() {
            return Masker::none();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Masker { matcher, patterns }
    }

    /// Masks every string (and object key) in `v`.
    pub fn mask_json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if !self.is_active() {
            return v;
        }
        let text = |s: String| {
            let masked = self.mask_all(s.as_bytes());
            String::from_utf8(masked)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        match v {
            Value::String(s) => Value::String(text(s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| self.mask_json(i)).collect())
            }
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (text(k), self.mask_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Whether this masker masks anything.
    pub fn is_active(&self) -> bool {
        self.matcher.is_some()
    }

    /// Masks a complete buffer.
    pub fn mask_all(&self, data: &[u8]) -> Vec<u8> {
        let mut s = self.stream();
        let mut out = s.push(data);
        out.extend(s.finish());
        out
    }

    /// Where the undecided tail of `buf` starts: the first position whose remainder is a
    /// proper prefix of some pattern, so a match could still complete there. Everything
    /// before it can be emitted now.
    fn hold_point(&self, buf: &[u8]) -> usize {
        let longest = self.patterns.iter().map(Vec::len).max().unwrap_or(0);
        let start = buf.len().saturating_sub(longest.saturating_sub(1));
        (start..buf.len())
            .find(|&p| {
                let tail = &buf[p..];
                self.patterns
                    .iter()
                    .any(|pat| pat.len() > tail.len() && pat.starts_with(tail))
            })
            .unwrap_or(buf.len())
    }

    /// A streaming masker for one output stream.
    pub fn stream(&self) -> MaskStream<'_> {
        MaskStream {
            masker: self,
            carry: Vec::new(),
        }
    }
}

/// `s` and every encoded form of it that is masked (see the module's documentation).
fn encoded_forms(s: &str) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let mut forms = vec![s.as_bytes().to_vec()];
    for engine in [&STANDARD, &URL_SAFE] {
        // The secret encoded alone, padding included, is masked whole.
        let alone = engine.encode(s);
        forms.push(alone.trim_end_matches('=').as_bytes().to_vec());
        forms.push(alone.into_bytes());
        for offset in 0..3 {
            forms.push(base64_core(engine, s.as_bytes(), offset));
        }
    }
    // The characters each encoder leaves as they are, beside letters and digits.
    const RFC3986: &str = "-_.~";
    for (keep, plus) in [
        (RFC3986, false),     // jq 1.7 @uri, quote(safe='')
        ("-_.~/", false),     // Python quote()
        (RFC3986, true),      // Python quote_plus()
        ("-_.~!*'()", false), // JavaScript encodeURIComponent(), jq 1.6 @uri
    ] {
        forms.push(crate::percent_encode(s, keep, plus).into_bytes());
    }
    for (ascii_only, escape_del) in [(false, false), (true, false), (false, true)] {
        forms.push(json_escape(s, ascii_only, escape_del).into_bytes());
    }
    forms
}

/// The base64 characters that depend only on `secret`'s bits when it is encoded `offset`
/// bytes (mod 3) into a longer text: neither the characters that mix in bits of what comes
/// before nor those that mix in what comes after.
fn base64_core(engine: &base64::engine::GeneralPurpose, secret: &[u8], offset: usize) -> Vec<u8> {
    let mut text = vec![0u8; offset];
    text.extend_from_slice(secret);
    let encoded = engine.encode(&text);
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + secret.len())) / 6;
    encoded.as_bytes()[first.min(end)..end].to_vec()
}

/// `s` as it appears inside a JSON string: `"` and `\` escaped, control characters as
/// `\n`-style or `\u00XX` escapes; with `ascii_only`, every non-ASCII character as
/// `\uXXXX` (lower-case hex, UTF-16 surrogate pairs beyond U+FFFF), as Python writes by
/// default; with `escape_del`, DEL as `\u007f`, as jq writes it.
fn json_escape(s: &str, ascii_only: bool, escape_del: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (escape_del && c == '\u{7f}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if ascii_only && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Masks one stream chunk by chunk, holding back just enough bytes to catch a secret
/// that continues in the next chunk.
#[derive(Debug)]
pub struct MaskStream<'a> {
    masker: &'a Masker,
    carry: Vec<u8>,
}

impl MaskStream<'_> {
    /// Feeds a chunk; returns the bytes that are now safe to emit.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        let Some(matcher) = &self.masker.matcher else {
            return data.to_vec();
        };
        self.carry.extend_from_slice(data);
        // A match starting before `safe` is complete within the buffer: a match that ran
        // past the end would make its start a hold point, and `safe` is the first of those.
        // Holding back only a possible secret prefix keeps line-oriented output live.
        let safe = self.masker.hold_point(&self.carry);
        let mut out = Vec::with_capacity(self.carry.len());
        let mut emitted = 0;
        for m in matcher.find_iter(&self.carry) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&self.carry[emitted..m.start()]);
            out.extend_from_slice(MASK);
            emitted = m.end();
        }
        let cut = emitted.max(safe);
        out.extend_from_slice(&self.carry[emitted..cut]);
        self.carry.drain(..cut);
        out
    }

    /// Ends the stream; returns whatever was held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let Some(matcher) = &self.masker.matcher else {
            return std::mem::take(&mut self.carry);
        };
        let carry = std::mem::take(&mut self.carry);
        let mut out = Vec::with_capacity(carry.len());
        matcher.replace_all_with_bytes(&carry, &mut out, |_, _, dst| {
            dst.extend_from_slice(MASK);
            true
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_value_and_encodings() {
        let m = Masker::new(["s3cr3t value/+"]);
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t value/+");
        let text =
            format!("a s3cr3t value/+ b {b64} c s3cr3t%20value%2F%2B d s3cr3t+value%2F%2B e");
        assert_eq!(m.mask_all(text.as_bytes()), b"a *** b *** c *** d *** e");
        let json = Masker::new(["quote\"back\\slash"]);
        assert_eq!(
            json.mask_all(br#"{"v":"quote\"back\\slash"}"#),
            br#"{"v":"***"}"#
        );
    }

    /// What real encoders write, checked against each encoder where it runs.
    #[test]
    fn every_encoding_the_design_lists_is_masked() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = "p@ss/wörd!*'() ~+=?&ünï😀";
        let m = Masker::new([secret]);
        let masked = |text: &str| String::from_utf8(m.mask_all(text.as_bytes())).unwrap();
        // base64 at each alignment inside a longer text, both alphabets (HTTP Basic).
        for prefix in ["user:", "user1:", "u:", ""] {
            for suffix in ["", ":tail", "x"] {
                for engine in [&STANDARD, &URL_SAFE] {
                    let text = engine.encode(format!("{prefix}{secret}{suffix}"));
                    let out = masked(&format!("Authorization: Basic {text}"));
                    assert!(out.contains("***"), "{prefix:?}/{suffix:?}: {out}");
                    let core = base64_core(engine, secret.as_bytes(), prefix.len() % 3);
                    assert!(!out.contains(std::str::from_utf8(&core).unwrap()), "{out}");
                }
            }
        }
        // Percent-encodings (as Python quote/quote_plus, encodeURIComponent, jq @uri write them).
        for text in [
            "p%40ss/w%C3%B6rd%21%2A%27%28%29%20~%2B%3D%3F%26%C3%BCn%C3%AF%F0%9F%98%80",
            "p%40ss%2Fw%C3%B6rd%21%2A%27%28%29+~%2B%3D%3F%26%C3%BCn%C3%AF%F0%9F%98%80",
            "p%40ss%2Fw%C3%B6rd!*'()%20~%2B%3D%3F%26%C3%BCn%C3%AF%F0%9F%98%80",
            "p%40ss%2Fw%C3%B6rd%21%2A%27%28%29%20~%2B%3D%3F%26%C3%BCn%C3%AF%F0%9F%98%80",
        ] {
            assert_eq!(masked(&format!("?q={text}&x=1")), "?q=***&x=1", "{text}");
        }
        // JSON escapes: serde/JS (as is), Python (\\uXXXX, surrogates).
        let python = r#"{"token": "p@ss/w\u00f6rd!*'() ~+=?&\u00fcn\u00ef\ud83d\ude00"}"#;
        assert_eq!(masked(python), r#"{"token": "***"}"#);
        let serde = serde_json::to_string(&serde_json::json!({ "token": secret })).unwrap();
        assert_eq!(masked(&serde), r#"{"token":"***"}"#);
        let jq = Masker::new(["del\u{7f}and\"quote"]);
        assert_eq!(jq.mask_all(br#""del\u007fand\"quote""#), br#""***""#);
    }

    #[test]
    fn a_parsed_result_is_masked_leaf_by_leaf() {
        let m = Masker::new(["hunter2-secret"]);
        let v = serde_json::json!({"a": ["x hunter2-secret y", 1], "hunter2-secret": {"b": "hunter2-secret"}});
        assert_eq!(
            m.mask_json(v),
            serde_json::json!({"a": ["x *** y", 1], "***": {"b": "***"}})
        );
    }

    #[test]
    fn only_a_possible_secret_prefix_is_held_back() {
        let m = Masker::new(["hunter2-secret"]);
        let mut s = m.stream();
        assert_eq!(s.push(b"line one\n"), b"line one\n");
        assert_eq!(s.push(b"x hunter2"), b"x ");
        assert_eq!(s.push(b"-secret y\n"), b"*** y\n");
        assert_eq!(s.push(b"hunt"), b"");
        assert_eq!(s.push(b"ing\n"), b"hunting\n");
    }

    #[test]
    fn short_values_are_not_masked() {
        let m = Masker::new(["abc"]);
        assert!(!m.is_active());
        assert_eq!(m.mask_all(b"abc"), b"abc");
    }

    #[test]
    fn overlapping_and_regex_metacharacters() {
        let m = Masker::new(["pass.*word", "pass.*wordlonger", "(a|b)+$"]);
        assert_eq!(
            m.mask_all(b"x pass.*wordlonger y pass.*word z (a|b)+$ passXword"),
            b"x *** y *** z *** passXword"
        );
    }

    proptest! {
        #[test]
        fn streaming_equals_whole(secret in "[a-z]{4,12}", noise in proptest::collection::vec(any::<u8>(), 0..300),
                                  at in 0usize..300, cuts in proptest::collection::vec(1usize..40, 1..20)) {
            let m = Masker::new([secret.as_str()]);
            let mut data = noise.clone();
            let at = at.min(data.len());
            data.splice(at..at, secret.bytes());
            let whole = m.mask_all(&data);
            let mut s = m.stream();
            let mut out = Vec::new();
            let mut rest = &data[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let n = (*c).min(rest.len());
                out.extend(s.push(&rest[..n]));
                rest = &rest[n..];
            }
            out.extend(s.finish());
            prop_assert_eq!(&out, &whole);
            prop_assert!(!out.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
}
