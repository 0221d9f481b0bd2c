//! Masking of secret values in an action's output (DESIGN.md §5): every secret value of
//! four bytes or more, and its base64, URL-encoded and JSON-escaped forms, becomes `***`,
//! also when it straddles the boundary between two reads.

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
            let std_b64 = base64::engine::general_purpose::STANDARD.encode(s);
            let url_b64 = base64::engine::general_purpose::URL_SAFE.encode(s);
            let json = serde_json::to_string(s).unwrap_or_default();
            let json_inner = json[1..json.len().saturating_sub(1).max(1)].to_string();
            for form in [
                s.to_string(),
                std_b64.trim_end_matches('=').to_string(),
                std_b64,
                url_b64.trim_end_matches('=').to_string(),
                url_b64,
                percent_encode(s, false),
                percent_encode(s, true),
                json_inner,
            ] {
                if form.len() >= MIN_SECRET_LEN && !patterns.iter().any(|p| p == form.as_bytes()) {
                    patterns.push(form.into_bytes());
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

/// Percent-encodes everything but unreserved characters; `plus` also writes space as `+`.
fn percent_encode(s: &str, plus: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else if plus && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
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
