//! The user's side: curl run inside a namespace against a VIP, many new connections
//! at once, and one bulk download whose sha256 is compared with the file served.
//!
//! Every request's outcome comes from curl's own per-transfer report (`--write-out`)
//! and the body it saved, never from the LB's counters, so a broken LB cannot make
//! traffic look fine. It must never send to an address outside the lab (the URLs come
//! from the topology) and never wait without a `--max-time`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::Error;
use super::cmd::{output_until_stopped, run};

/// Transfers curl runs at once.
const PARALLEL: usize = 8;

/// What N requests to one VIP got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    pub sent: usize,
    /// Answers per VM name (the body the server sent).
    pub answers: BTreeMap<String, usize>,
    /// Every answered request: the client's address and port (as curl bound them) and
    /// the VM that answered, so that the report can check each against the Maglev pick.
    pub served: Vec<Served>,
    /// One line per failed request: `#i: why`.
    pub failures: Vec<String>,
}

/// One answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// `#i` of the request, for messages.
    pub request: usize,
    pub client: SocketAddr,
    pub vm: String,
}

impl Requests {
    pub fn answered(&self) -> usize {
        self.answers.values().sum()
    }
}

/// One bulk download.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bulk {
    pub bytes: u64,
    pub secs: f64,
    pub served_by: String,
    pub sha256_ok: bool,
    /// Why it failed (curl's error, an HTTP status, a checksum mismatch).
    pub error: Option<String>,
}

impl Bulk {
    /// Megabytes (10^6) per second.
    pub fn rate_mb_s(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

/// One line of curl's `--write-out`: fields separated by tabs.
fn fields(line: &str) -> Vec<&str> {
    line.split('\t').collect()
}

/// `n` requests to `base_url` from namespace `ns`, each on a new connection, up to
/// [`PARALLEL`] at a time; bodies saved as `<dir>/<tag>-<i>`.
pub fn requests(
    ns: &str,
    base_url: &str,
    n: usize,
    timeout_s: u32,
    dir: &Path,
    tag: &str,
) -> Result<Requests, Error> {
    let max_time = timeout_s.to_string();
    let parallel = PARALLEL.to_string();
    let mut args: Vec<String> = [
        "netns",
        "exec",
        ns,
        "curl",
        "--silent",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        &parallel,
        "--connect-timeout",
        &max_time,
        "--max-time",
        &max_time,
        "--header",
        "Connection: close",
        "--write-out",
        "%{urlnum}\t%{http_code}\t%{exitcode}\t%{errormsg}\t%{local_ip}\t%{local_port}\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..n {
        args.push("--output".into());
        args.push(dir.join(format!("{tag}-{i}")).display().to_string());
        args.push(format!("{base_url}/?n={i}"));
    }
    let out = output_until_stopped("ip", &args)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut result = Requests {
        sent: n,
        ..Requests::default()
    };
    let mut seen = vec![false; n];
    for line in stdout.lines() {
        let f = fields(line);
        let Some(i) = f.first().and_then(|s| s.parse::<usize>().ok()) else {
            continue;
        };
        let Some(slot) = seen.get_mut(i) else {
            continue;
        };
        *slot = true;
        let code = f.get(1).copied().unwrap_or("");
        let exit = f.get(2).copied().unwrap_or("");
        let msg = f.get(3).copied().unwrap_or("");
        let client = f
            .get(4)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .zip(f.get(5).and_then(|p| p.parse::<u16>().ok()))
            .map(SocketAddr::from);
        if exit != "0" || code != "200" {
            result
                .failures
                .push(format!("#{i}: HTTP {code}, curl exit {exit}: {msg}"));
            continue;
        }
        let body = std::fs::read_to_string(dir.join(format!("{tag}-{i}"))).unwrap_or_default();
        let name = body.trim();
        if name.is_empty() {
            result.failures.push(format!("#{i}: empty answer"));
            continue;
        }
        // An answer whose client port is unknown cannot be judged, so it is a failure,
        // not an answer: answered and failed add up to the requests sent.
        match client {
            Some(client) => {
                *result.answers.entry(name.to_string()).or_default() += 1;
                result.served.push(Served {
                    request: i,
                    client,
                    vm: name.to_string(),
                });
            }
            None => result.failures.push(format!(
                "#{i}: answered by {name}, but curl did not say from which address and port"
            )),
        }
    }
    // curl reports transfers as they finish; the report lists them by request.
    result.served.sort_by_key(|s| s.request);
    for (i, s) in seen.iter().enumerate() {
        if !s {
            result.failures.push(format!(
                "#{i}: curl reported nothing (exit {}: {})",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(result)
}

/// `sha256sum FILE`'s hex digest.
pub fn sha256(path: &Path) -> Result<String, Error> {
    let p = path.display().to_string();
    let out = run("sha256sum", &[p.as_str()])?;
    Ok(out.split_whitespace().next().unwrap_or("").to_string())
}

/// Downloads `<base_url>/bulk` from `ns` into `<dir>/<tag>-bulk` and compares its
/// sha256 with `expected`.
pub fn bulk(
    ns: &str,
    base_url: &str,
    timeout_s: u32,
    dir: &Path,
    tag: &str,
    expected: &str,
) -> Result<Bulk, Error> {
    let file = dir.join(format!("{tag}-bulk"));
    let max_time = timeout_s.to_string();
    let file_s = file.display().to_string();
    let url = format!("{base_url}/bulk");
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
            "--output",
            &file_s,
            "--write-out",
            "%{http_code}\t%{exitcode}\t%{size_download}\t%{time_total}\t%header{x-served-by}\t%{errormsg}\n",
            &url,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or("");
    let f = fields(line);
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let mut b = Bulk {
        bytes: get(2).parse().unwrap_or(0),
        secs: get(3).parse().unwrap_or(0.0),
        served_by: get(4).trim().to_string(),
        ..Bulk::default()
    };
    if get(1) != "0" || get(0) != "200" {
        b.error = Some(format!("HTTP {}, curl exit {}: {}", get(0), get(1), get(5)));
        return Ok(b);
    }
    let got = sha256(&file)?;
    b.sha256_ok = got == expected;
    if !b.sha256_ok {
        b.error = Some(format!("sha256 {got}, expected {expected}"));
    }
    // The copy is no longer needed; the run directory keeps only small files.
    let _ = std::fs::remove_file(&file);
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate() {
        let b = Bulk {
            bytes: 10_000_000,
            secs: 0.5,
            ..Bulk::default()
        };
        assert!((b.rate_mb_s() - 20.0).abs() < 1e-9);
        assert_eq!(Bulk::default().rate_mb_s(), 0.0);
    }

    #[test]
    fn sha256_of_a_known_file() {
        let p = std::env::temp_dir().join(format!("nvlb-sha-test-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_file(&p).unwrap();
    }
}
