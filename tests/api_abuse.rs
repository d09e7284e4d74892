//! Bad input at the management API's edge, against the real `nvlb run --api` in a
//! network namespace of its own (as in tests/api.rs), with raw TCP clients so that the
//! test controls every byte:
//!
//! - a body over the limit (1 MiB) is refused 413 before it is read;
//! - malformed JSON is refused 400 naming the line and column;
//! - a slowloris client trickling header bytes is cut off after the header read
//!   timeout (10 s), while another client is served at once all along;
//! - connections beyond the cap (64) are answered 503 at once and closed; once the
//!   held ones go, requests are served again.
//!
//! After each, the policy file and the running policy are unchanged. Skips (and passes)
//! when not root or without `ip netns`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{EXAMPLE, Namespaces, in_netns, lines_of, must, wait_for_line};
use nvlb::control::api::MAX_BODY;
use nvlb::control::api::server::{HEADER_TIMEOUT, MAX_CONNECTIONS};

const API: &str = "127.0.0.1:9181";
const OPS: &str = "ops-abuse-1";

/// `nvlb run --api` in a namespace of its own, with its policy and tokens in a temp dir.
struct Lb {
    ns: String,
    dir: PathBuf,
    child: Child,
    _namespaces: Namespaces,
}

impl Lb {
    fn start(tag: &str) -> Lb {
        let pid = std::process::id();
        let ns = format!("nvf{pid}-{tag}");
        let namespaces = Namespaces::create(&[(&ns, true)]);
        let dir = std::env::temp_dir().join(format!("nvf{pid}-abuse-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(EXAMPLE, dir.join("policy.toml")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
            .args(["ctl", "hash-token", OPS])
            .output()
            .unwrap();
        assert!(out.status.success());
        let hash = String::from_utf8(out.stdout).unwrap();
        std::fs::write(
            dir.join("tokens.toml"),
            format!(
                "[[token]]\nname = \"ops\"\nscope = \"operator\"\nsha256 = \"{}\"\n",
                hash.trim()
            ),
        )
        .unwrap();
        for (lb_if, mac, peer) in [
            ("ext0", "02:00:00:00:01:0a", "extp"),
            ("pa0", "02:00:00:00:06:0a", "pap"),
        ] {
            must(
                "ip",
                &[
                    "-n", &ns, "link", "add", lb_if, "address", mac, "type", "veth", "peer",
                    "name", peer,
                ],
            );
        }
        for ifname in ["lo", "ext0", "pa0", "extp", "pap"] {
            must("ip", &["-n", &ns, "link", "set", ifname, "up"]);
        }
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_nvlb"), "run"])
            .args(["--external", "ext0", "--provider", "pa0", "--api", API])
            .arg("--config")
            .arg(dir.join("policy.toml"))
            .arg("--api-tokens")
            .arg(dir.join("tokens.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nvlb run");
        let stderr = lines_of(child.stderr.take().unwrap());
        wait_for_line(&stderr, "ready", Duration::from_secs(10));
        Lb {
            ns,
            dir,
            child,
            _namespaces: namespaces,
        }
    }

    fn policy_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("policy.toml")).unwrap()
    }

    /// Runs `f` on a thread inside the LB's namespace (its loopback is the API's).
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.ns, f).join().expect("client thread")
    }

    /// The running policy as the API shows it (the operator's view of every pool),
    /// without what changes by itself: health results and flow counts.
    fn pools(&self) -> String {
        let (status, body) = self.inside(|| request("GET", "/v1/pools", b""));
        assert_eq!(status, 200, "{body}");
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for pool in v.as_array_mut().unwrap() {
            let pool = pool.as_object_mut().unwrap();
            pool.remove("active");
            pool.remove("flows");
            for dip in pool["dips"].as_array_mut().unwrap() {
                let dip = dip.as_object_mut().unwrap();
                dip.remove("health");
                dip.remove("state");
            }
        }
        v.to_string()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect() -> TcpStream {
    let s = TcpStream::connect(API).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Status code and body of an answer read to its end (the request asks for close).
fn read_answer(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One request with the operator's token on a fresh connection.
fn request(method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = connect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {API}\r\nAuthorization: Bearer {OPS}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    read_answer(&mut s)
}

/// The API server's TCP sockets, from the kernel's table of the calling thread's
/// network namespace (`/proc/thread-self/net/tcp`).
#[derive(Debug)]
struct ApiSockets {
    /// Connections waiting in the listener's accept queue (`None`: no listener).
    listen_queue: Option<u32>,
    /// The server's ends of connections it has not closed: established, or closed by
    /// the client only (CLOSE_WAIT).
    open: usize,
}

fn api_sockets() -> ApiSockets {
    let port = API.rsplit_once(':').unwrap().1.parse::<u16>().unwrap();
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/thread-self/net/tcp").expect("/proc/net/tcp");
    let mut s = ApiSockets {
        listen_queue: None,
        open: 0,
    };
    // sl local_address rem_address st tx_queue:rx_queue ...
    for f in table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
    {
        if f.get(1) != Some(&local.as_str()) {
            continue;
        }
        match f.get(3).copied() {
            // LISTEN: rx_queue is the accept queue's length.
            Some("0A") => {
                s.listen_queue = f
                    .get(4)
                    .and_then(|q| q.split_once(':'))
                    .and_then(|(_, rx)| u32::from_str_radix(rx, 16).ok());
            }
            // ESTABLISHED, CLOSE_WAIT.
            Some("01") | Some("08") => s.open += 1,
            _ => {}
        }
    }
    s
}

/// Polls the API's sockets (every 10 ms, inside the LB's namespace) until `done` holds;
/// fails naming `what` after 5 s. What they were then, and how long it took.
fn wait_for_api_sockets(done: impl Fn(&ApiSockets) -> bool, what: &str) -> (ApiSockets, Duration) {
    let t = Instant::now();
    loop {
        let s = api_sockets();
        if done(&s) {
            return (s, t.elapsed());
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "waited 5 s for {what}; the API's sockets: {s:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn skip() -> bool {
    if common::skip_without_netns() {
        return true;
    }
    false
}

#[test]
fn an_oversized_body_is_refused_413_and_nothing_changes() {
    if skip() {
        return;
    }
    let lb = Lb::start("big");
    let (file, pools) = (lb.policy_text(), lb.pools());
    let (status, body) = lb.inside(|| {
        let mut s = connect();
        let len = MAX_BODY * 2;
        let head = format!(
            "POST /v1/pools/blue-web/dips HTTP/1.1\r\nHost: {API}\r\nAuthorization: Bearer \
             {OPS}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        // The server may answer and close before all of it is written.
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..(len / chunk.len()) {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        read_answer(&mut s)
    });
    println!("2 MiB body: {status} {body}");
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 1048576 bytes"), "{body}");
    // A chunked body with no length announced is cut at the limit too.
    let (status, body) = lb.inside(|| {
        let mut s = connect();
        let head = format!(
            "POST /v1/pools/blue-web/dips HTTP/1.1\r\nHost: {API}\r\nAuthorization: Bearer \
             {OPS}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        for _ in 0..(2 * MAX_BODY / 0x10000) {
            if s.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        read_answer(&mut s)
    });
    println!("2 MiB chunked body: {status} {body}");
    assert_eq!(status, 413, "{body}");
    assert_eq!(lb.policy_text(), file, "the policy file changed");
    assert_eq!(lb.pools(), pools, "the running policy changed");
}

#[test]
fn malformed_json_is_refused_400_with_its_position_and_nothing_changes() {
    if skip() {
        return;
    }
    let lb = Lb::start("json");
    let (file, pools) = (lb.policy_text(), lb.pools());
    for (input, position) in [
        (
            &b"{\"ca\": \"10.0.0.9\",\n \"port\": }"[..],
            "line 2 column 10",
        ),
        (&b"{\"ca\": \"10.0.0.9\""[..], "line 1 column 17"),
        (&b"\xff\xfe not json"[..], "line 1 column 1"),
    ] {
        let (status, body) = lb.inside(move || request("POST", "/v1/pools/blue-web/dips", input));
        println!("{:?}: {status} {body}", String::from_utf8_lossy(input));
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("malformed JSON"), "{body}");
        assert!(body.contains(position), "{position}: {body}");
    }
    assert_eq!(lb.policy_text(), file, "the policy file changed");
    assert_eq!(lb.pools(), pools, "the running policy changed");
}

#[test]
fn a_slowloris_client_is_cut_off_and_others_are_served_meanwhile() {
    if skip() {
        return;
    }
    let lb = Lb::start("slow");
    let pools = lb.pools();
    let slow = in_netns(&lb.ns, || {
        let mut s = connect();
        let t = Instant::now();
        s.write_all(b"GET /v1/pools HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // One header byte a second, never the end of the head.
        let mut sent = 0;
        loop {
            if s.write_all(b"X").is_err() {
                break;
            }
            sent += 1;
            let mut b = [0u8; 256];
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            match s.read(&mut b) {
                Ok(0) => break,
                Ok(n) => return (t.elapsed(), sent, String::from_utf8_lossy(&b[..n]).into()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            if t.elapsed() > Duration::from_secs(40) {
                break;
            }
        }
        (t.elapsed(), sent, String::new())
    });
    // Meanwhile others are served at once.
    let mut worst = Duration::ZERO;
    while !slow.is_finished() {
        let t = Instant::now();
        let (status, body) = lb.inside(|| request("GET", "/v1/whoami", b""));
        assert_eq!(status, 200, "{body}");
        worst = worst.max(t.elapsed());
        thread::sleep(Duration::from_millis(500));
    }
    let (cut_after, bytes, answer) = slow.join().unwrap();
    println!(
        "slowloris cut off after {cut_after:?} ({bytes} header bytes trickled; answer {answer:?}); \
         other clients' slowest answer meanwhile {worst:?}"
    );
    assert!(
        cut_after >= HEADER_TIMEOUT - Duration::from_secs(1)
            && cut_after <= HEADER_TIMEOUT + Duration::from_secs(3),
        "cut after {cut_after:?}, timeout {HEADER_TIMEOUT:?}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(worst < Duration::from_secs(1), "others waited {worst:?}");
    assert_eq!(lb.pools(), pools);
}

#[test]
fn connections_beyond_the_cap_get_503_and_service_resumes() {
    if skip() {
        return;
    }
    let lb = Lb::start("conns");
    let (file, pools) = (lb.policy_text(), lb.pools());
    let (held, refused, later) = lb.inside(|| {
        // Hold every slot with idle connections (each would be cut by the header
        // timeout; they are closed before that).
        let held: Vec<TcpStream> = (0..MAX_CONNECTIONS).map(|_| connect()).collect();
        // The server has taken them all: every one established, none left in the
        // listener's accept queue (it takes a slot as it accepts, one at a time).
        let taken = wait_for_api_sockets(
            |s| s.listen_queue == Some(0) && s.open >= MAX_CONNECTIONS,
            "the server to hold every one of the connections (accepted, none refused)",
        );
        println!("held connections accepted: {taken:?}");
        let mut refused = Vec::new();
        for _ in 0..3 {
            let mut s = connect();
            let _ = s.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n");
            refused.push(read_answer(&mut s));
        }
        let n = held.len();
        drop(held);
        // The server has closed every held connection (and given back its slot): none
        // of its ends is left established or half-closed.
        let freed =
            wait_for_api_sockets(|s| s.open == 0, "the server to close the held connections");
        println!("held connections closed by the server: {freed:?}");
        (n, refused, request("GET", "/v1/whoami", b""))
    });
    println!("{held} connections held; the next ones: {refused:?}; after: {later:?}");
    for (status, body) in &refused {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("too many connections"), "{body}");
    }
    assert_eq!(later.0, 200, "{}", later.1);
    assert_eq!(lb.policy_text(), file);
    assert_eq!(lb.pools(), pools);
}
