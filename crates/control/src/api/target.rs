//! The request line's target: its path split into percent-decoded segments, and its
//! query. A segment that does not decode is the caller's error (400), answered before
//! any route is looked up.

use super::fields::Bad;

/// `target` (the path with its query) taken apart.
pub(super) struct Target<'t> {
    pub(super) path: &'t str,
    pub(super) query: &'t str,
    pub(super) segments: Vec<String>,
}

impl<'t> Target<'t> {
    pub(super) fn parse(target: &'t str) -> Result<Target<'t>, Bad> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect::<Result<_, _>>()?;
        Ok(Target {
            path,
            query,
            segments,
        })
    }
}

/// Percent-decoding of one path segment (IPv6 CAs may come with `:` encoded).
fn decode(seg: &str) -> Result<String, Bad> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Bad(format!("bad percent-encoding in {seg:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Bad(format!("{seg:?} is not UTF-8")))
}

pub(super) fn query_param(query: &str, name: &str) -> Result<Option<String>, Bad> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return decode(v).map(Some);
        }
    }
    Ok(None)
}
