//! A pack directory uploaded as a tar archive (`tar -cf pack.tar mypack/`), turned into a
//! pack bundle. Only regular files are carried, as in a bundle; the bundle's own checks
//! (paths inside the pack, sizes) run when it is registered.

use attune_core::bundle::{Bundle, BundleFile};

const BLOCK: usize = 512;

/// An octal field of a tar header.
fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// A NUL-terminated text field.
fn cstr(field: &[u8]) -> Option<&str> {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).ok()
}

/// Whether `bytes` look like a (ustar or GNU) tar archive.
pub fn is_tar(bytes: &[u8]) -> bool {
    bytes.len() >= BLOCK && bytes.get(257..262) == Some(b"ustar")
}

/// The bundle bytes of a tar archive of a pack directory, or `None` if `bytes` is not a
/// tar archive or is malformed. A single top directory holding `pack.yaml` is taken as
/// the pack.
pub fn to_bundle(bytes: &[u8]) -> Option<Vec<u8>> {
    if !is_tar(bytes) {
        return None;
    }
    let mut files: Vec<BundleFile> = Vec::new();
    let mut at = 0usize;
    while at + BLOCK <= bytes.len() {
        let h = &bytes[at..at + BLOCK];
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let size = usize::try_from(octal(&h[124..136])?).ok()?;
        let kind = h[156];
        let mut path = cstr(&h[0..100])?.to_string();
        let prefix = cstr(&h[345..500])?;
        if !prefix.is_empty() {
            path = format!("{prefix}/{path}");
        }
        let data_at = at + BLOCK;
        let data = bytes.get(data_at..data_at.checked_add(size)?)?;
        if kind == b'0' || kind == 0 {
            let mode = u32::try_from(octal(&h[100..108])?).ok()? & 0o777;
            let path = path.trim_start_matches("./").to_string();
            files.push(BundleFile {
                path,
                mode,
                data: data.to_vec(),
            });
        }
        at = data_at + size.div_ceil(BLOCK) * BLOCK;
    }
    // `mypack/pack.yaml`, `mypack/actions/…`: the pack is `mypack/`.
    let top = files
        .first()
        .and_then(|f| f.path.split_once('/').map(|(t, _)| format!("{t}/")));
    if let Some(top) = top {
        if files.iter().all(|f| f.path.starts_with(&top))
            && files.iter().any(|f| f.path == format!("{top}pack.yaml"))
        {
            for f in &mut files {
                f.path = f.path[top.len()..].to_string();
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Some(Bundle { files }.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &str, size: usize, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000755");
        let s = format!("{size:011o}");
        h[124..135].copy_from_slice(s.as_bytes());
        h[156] = kind;
        h[257..262].copy_from_slice(b"ustar");
        h
    }

    #[test]
    fn a_tar_of_a_pack_directory_becomes_its_bundle() {
        let mut t = Vec::new();
        t.extend(header("mypack/", 0, b'5'));
        for (p, d) in [
            ("mypack/pack.yaml", "ref: mypack\n"),
            ("mypack/actions/a.sh", "echo\n"),
        ] {
            t.extend(header(p, d.len(), b'0'));
            let mut block = d.as_bytes().to_vec();
            block.resize(BLOCK, 0);
            t.extend(block);
        }
        t.extend(vec![0u8; 2 * BLOCK]);
        let b = Bundle::from_bytes(&to_bundle(&t).unwrap()).unwrap();
        let paths: Vec<_> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["actions/a.sh", "pack.yaml"]);
        assert_eq!(b.files[1].data, b"ref: mypack\n");
    }

    #[test]
    fn other_bytes_are_not_a_tar() {
        assert!(to_bundle(b"not a tar").is_none());
        let mut t = header("x", 5000, b'0');
        t.extend([0u8; 10]);
        assert!(to_bundle(&t).is_none(), "truncated");
    }
}
