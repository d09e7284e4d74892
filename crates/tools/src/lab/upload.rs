//! Uploads through a VIP (`nvlb lab --upload`): the client (or a tier-1 VM) PUTs the
//! bulk file to `/upload`, the DIP's server hashes what it received and answers with
//! its name, the byte count and the digest, and the lab compares them with the file.
//!
//! This is the direction in which the client's own large segments cross the LB and the
//! hosts toward a DIP, so a lowered PA MTU is only survived if packet-too-big reaches
//! the client. The outcome comes from curl and the server's answer, never from
//! counters. The server side must never read more than the announced body (and never
//! more than [`MAX_UPLOAD`]); the client side never waits without a `--max-time`.

use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::Path;

use xxhash_rust::xxh3::Xxh3;

use super::Error;
use super::cmd::output_until_stopped;
use super::topology::{PoolPlan, Topology};

/// The request target the servers accept uploads on.
pub const PATH: &str = "/upload";
/// Largest body a server accepts.
pub const MAX_UPLOAD: u64 = 1 << 30;
/// Seed of the upload digest (xxh3-64: a check against corruption, not an attack).
const SEED: u64 = 0x6e76_6c62_7570_6c64; // "nvlbupld"

/// What a file or a received body amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    pub bytes: u64,
    pub xxh3: u64,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:016x}", self.bytes, self.xxh3)
    }
}

/// The digest of a file, read in full.
pub fn digest_file(path: &Path) -> Result<Digest, Error> {
    let io_err = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    digest_stream(&mut f, u64::MAX).map_err(io_err)
}

fn digest_stream(r: &mut impl Read, limit: u64) -> io::Result<Digest> {
    let mut h = Xxh3::with_seed(SEED);
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes: u64 = 0;
    let mut r = r.take(limit);
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or(&[]));
        bytes = bytes.saturating_add(n as u64);
    }
    Ok(Digest {
        bytes,
        xxh3: h.digest(),
    })
}

/// The `Content-Length` of a request head.
pub fn content_length(head: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// Server side: `read` holds what was read so far (the head and possibly the start of
/// the body); the rest of the body comes from `conn`. The digest of the body.
pub fn receive(conn: &mut impl Read, read: &[u8]) -> io::Result<Digest> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let split = read
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of request head"))?;
    let head = read.get(..split).unwrap_or(&[]);
    let len = content_length(head).ok_or_else(|| bad("no Content-Length"))?;
    if len > MAX_UPLOAD {
        return Err(bad("body too large"));
    }
    let first = read.get(split + 4..).unwrap_or(&[]);
    let first = first
        .get(..usize::try_from(len).unwrap_or(usize::MAX).min(first.len()))
        .unwrap_or(&[]);
    let mut chained = first.chain(conn);
    let d = digest_stream(&mut chained, len)?;
    if d.bytes != len {
        return Err(bad("body ended early"));
    }
    Ok(d)
}

/// The body a server answers an upload with: `NAME BYTES XXH3`.
pub fn reply(name: &str, d: &Digest) -> String {
    format!("{name} {d}\n")
}

/// One upload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upload {
    pub bytes: u64,
    pub secs: f64,
    pub served_by: String,
    /// Why it failed (curl's error, an HTTP status, a digest the server disagrees on).
    pub error: Option<String>,
}

impl Upload {
    /// Megabytes (10^6) per second.
    pub fn rate_mb_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

/// PUTs `file` to `<base_url>/upload` from namespace `ns` and checks the server's
/// account of it against `expected`.
pub fn put(
    ns: &str,
    base_url: &str,
    file: &Path,
    timeout_s: u32,
    dir: &Path,
    tag: &str,
    expected: &Digest,
) -> Result<Upload, Error> {
    let answer = dir.join(format!("{tag}-upload"));
    let (answer_s, file_s) = (answer.display().to_string(), file.display().to_string());
    let max_time = timeout_s.to_string();
    let url = format!("{base_url}{PATH}");
    let out = output_until_stopped(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "curl",
            "--silent",
            "--connect-timeout",
            "5",
            "--max-time",
            &max_time,
            // No `Expect: 100-continue` pause: the server reads the body at once.
            "--header",
            "Expect:",
            "--upload-file",
            &file_s,
            "--output",
            &answer_s,
            "--write-out",
            "%{http_code}\t%{exitcode}\t%{size_upload}\t%{time_total}\t%header{x-served-by}\t%{errormsg}\n",
            &url,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = stdout.lines().next().unwrap_or("").split('\t').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let mut u = Upload {
        bytes: get(2).parse().unwrap_or(0),
        secs: get(3).parse().unwrap_or(0.0),
        served_by: get(4).trim().to_string(),
        error: None,
    };
    let body = std::fs::read_to_string(&answer).unwrap_or_default();
    let _ = std::fs::remove_file(&answer);
    if get(1) != "0" || get(0) != "200" {
        u.error = Some(format!("HTTP {}, curl exit {}: {}", get(0), get(1), get(5)));
        return Ok(u);
    }
    let want = reply(&u.served_by, expected);
    if body != want {
        u.error = Some(format!(
            "the server got {:?}, expected {:?}",
            body.trim(),
            want.trim()
        ));
    }
    Ok(u)
}

/// The uploads section of the report.
pub fn render(results: &[(PoolPlan, Upload)]) -> String {
    let mut s = String::new();
    if results.is_empty() {
        return s;
    }
    s.push_str("Uploads (PUT /upload of the bulk file, checked by the DIP):\n");
    for (p, u) in results {
        let _ = match &u.error {
            None => writeln!(
                s,
                "  {:<14} {} bytes to {} in {:.3} s ({:.1} MB/s), digest equal",
                p.name,
                u.bytes,
                u.served_by,
                u.secs,
                u.rate_mb_s()
            ),
            Some(e) => writeln!(s, "  {:<14} FAILED: {e}", p.name),
        };
    }
    s.push('\n');
    s
}

/// Why the uploads are not good; empty when they are.
pub fn problems(t: &Topology, results: &[(PoolPlan, Upload)]) -> Vec<String> {
    let mut v = Vec::new();
    for (p, u) in results {
        if let Some(e) = &u.error {
            v.push(format!("{}: upload: {e}", p.name));
        } else if !p
            .dips
            .iter()
            .any(|d| t.vms.get(d.vm).is_some_and(|vm| vm.name == u.served_by))
        {
            v.push(format!(
                "{}: upload received by {:?}, not a DIP",
                p.name, u.served_by
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_read_case_insensitively() {
        let h = b"PUT /upload HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 12\r\n";
        assert_eq!(content_length(h), Some(12));
        assert_eq!(content_length(b"PUT / HTTP/1.1\r\n"), None);
        assert_eq!(content_length(b"X\r\nContent-Length: -1\r\n"), None);
    }

    #[test]
    fn receive_counts_the_body_read_with_the_head_and_the_rest() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let whole = digest_stream(&mut &body[..], u64::MAX).unwrap();
        assert_eq!(whole.bytes, 100_000);
        let mut read = format!(
            "PUT /upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        read.extend_from_slice(&body[..1000]);
        let mut rest = &body[1000..];
        assert_eq!(receive(&mut rest, &read).unwrap(), whole);
        // A body that ends early or an oversized announcement is an error.
        let mut short = &body[1000..5000];
        assert!(receive(&mut short, &read).is_err());
        let huge = format!(
            "PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_UPLOAD + 1
        );
        assert!(receive(&mut &b""[..], huge.as_bytes()).is_err());
        // A different body gives a different digest.
        let mut other = body.clone();
        other[5] ^= 1;
        assert_ne!(digest_stream(&mut &other[..], u64::MAX).unwrap(), whole);
    }
}
