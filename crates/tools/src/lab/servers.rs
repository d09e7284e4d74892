//! The VMs' web servers: a tiny HTTP/1.1 responder that `nvlb lab` runs inside each VM
//! namespace (by re-executing the nvlb binary with the hidden `lab-serve` subcommand),
//! and the bulk file it serves.
//!
//! `GET /bulk` streams the bulk file; `PUT /upload` hashes the body and answers with
//! the VM's name, its length and digest (`upload`); any other request is answered with
//! the VM's name (`blue-5\n`). The name is also in an `X-Served-By` header, so that a
//! client sees which DIP the LB chose. One connection per request (`Connection:
//! close`): every request is a new flow for the LB. It listens on `[::]` (IPv4 too, as
//! mapped addresses). It must never panic on a request and never read more than a
//! bounded request head (or an upload body beyond its announced length).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Error;

/// Longest request head read before answering anyway.
const MAX_HEAD: usize = 8192;
/// What a client waits for before its request is considered lost.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Printed on stderr once every port listens: what the lab waits for.
pub const READY: &str = "nvlb: lab-serve ready";

/// Listens on every port and answers until killed.
pub fn serve(name: &str, ports: &[u16], bulk: &Path) -> Result<(), Error> {
    let mut listeners = Vec::new();
    for &port in ports {
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let l = TcpListener::bind(addr).map_err(|cause| Error::Io {
            path: PathBuf::from(format!("[::]:{port}")),
            cause,
        })?;
        listeners.push(l);
    }
    eprintln!("{READY}: {name} on port(s) {ports:?}");
    let ctx = Arc::new((name.to_string(), bulk.to_path_buf()));
    let mut threads = Vec::new();
    for l in listeners {
        let ctx = ctx.clone();
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    let _ = answer(conn, &ctx.0, &ctx.1);
                });
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// The request target of a request head (`GET /bulk HTTP/1.1` -> `/bulk`).
pub fn request_target(head: &[u8]) -> Option<&str> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    parts.next()
}

fn read_head(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while head.len() < MAX_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    Ok(head)
}

fn answer(mut conn: TcpStream, name: &str, bulk: &Path) -> io::Result<()> {
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    let head = read_head(&mut conn)?;
    let target = request_target(&head).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    if path == super::upload::PATH {
        let d = super::upload::receive(&mut conn, &head)?;
        let body = super::upload::reply(name, &d);
        let len = u64::try_from(body.len()).unwrap_or(0);
        conn.write_all(format!("{}{body}", header(name, len)).as_bytes())?;
    } else if path == "/bulk" {
        let mut file = File::open(bulk)?;
        let len = file.metadata()?.len();
        conn.write_all(header(name, len).as_bytes())?;
        io::copy(&mut file, &mut conn)?;
    } else {
        let body = format!("{name}\n");
        let len = u64::try_from(body.len()).unwrap_or(0);
        conn.write_all(format!("{}{body}", header(name, len)).as_bytes())?;
    }
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Write)
}

fn header(name: &str, len: u64) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\
         X-Served-By: {name}\r\nConnection: close\r\n\r\n"
    )
}

/// Writes `len` pseudo-random bytes (xorshift64, fixed seed: incompressible, and the
/// same every run) to `path`.
pub fn write_bulk_file(path: &Path, len: usize) -> Result<(), Error> {
    let io_err = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut f = io::BufWriter::new(File::create(path).map_err(io_err)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let n = left.min(bytes.len());
        f.write_all(bytes.get(..n).unwrap_or(&[])).map_err(io_err)?;
        left -= n;
    }
    f.flush().map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            request_target(b"GET /bulk HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some("/bulk")
        );
        assert_eq!(request_target(b"GET /?n=3 HTTP/1.1\r\n\r\n"), Some("/?n=3"));
        assert_eq!(request_target(b"GET"), None);
        assert_eq!(request_target(b""), None);
        assert_eq!(request_target(&[0xff, b' ', b'/']), None);
    }

    #[test]
    fn answers_name_and_bulk_over_loopback() {
        let dir = std::env::temp_dir().join(format!("nvlb-serve-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bulk = dir.join("bulk.bin");
        write_bulk_file(&bulk, 100_003).unwrap();
        let data = std::fs::read(&bulk).unwrap();
        assert_eq!(data.len(), 100_003);
        assert!(
            data.iter().filter(|&&b| b == 0).count() < 2000,
            "not random-looking"
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let b2 = bulk.clone();
        std::thread::spawn(move || {
            for c in l.incoming().take(2).flatten() {
                answer(c, "blue-5", &b2).unwrap();
            }
        });
        let get = |target: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let mut r = Vec::new();
            c.read_to_end(&mut r).unwrap();
            r
        };
        let small = String::from_utf8(get("/?n=1")).unwrap();
        assert!(small.starts_with("HTTP/1.1 200 OK\r\n"), "{small}");
        assert!(small.contains("X-Served-By: blue-5\r\n"), "{small}");
        assert!(small.ends_with("\r\n\r\nblue-5\n"), "{small}");
        let big = get("/bulk");
        let split = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&big[split..], &data[..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
