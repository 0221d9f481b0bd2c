//! The little of `multipart/form-data` the pack upload needs: named parts and their bytes.

/// One part of a multipart body.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The form field's name.
    pub name: String,
    /// Its bytes.
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The parts of `body`, or `None` if it is not well formed.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let start = find(body, delim.as_bytes())?;
    let mut rest = &body[start + delim.len()..];
    let mut out = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Some(out);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..head_end]).ok()?;
        let data_and_more = &rest[head_end + 4..];
        let end = find(data_and_more, next_delim.as_bytes())?;
        let name = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            v.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == "name").then(|| v.trim_matches('"').to_string())
            })
        })?;
        out.push(Part {
            name,
            data: &data_and_more[..end],
        });
        rest = &data_and_more[end + next_delim.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parts_of_a_form() {
        let ct = "multipart/form-data; boundary=----X1";
        let b = boundary(ct).unwrap();
        let body = b"------X1\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n------X1\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"p.bundle\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n------X1--\r\n";
        let p = parts(body, &b).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "csrf");
        assert_eq!(p[0].data, b"abc");
        assert_eq!(p[1].name, "bundle");
        assert_eq!(p[1].data, b"\x00\x01\r\n\x02");
    }

    #[test]
    fn malformed_bodies_are_none() {
        assert_eq!(boundary("text/plain"), None);
        assert!(parts(b"garbage", "X").is_none());
        assert!(parts(b"--X\r\nno end", "X").is_none());
    }
}
