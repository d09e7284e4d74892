//! The management API's every answer, pinned: the real `nvlb run` in a network
//! namespace this test creates (as tests/api.rs starts it: the example policy, a
//! tokens file with operator, blue and red tokens), asked every route with every
//! method (GET, POST, PATCH, PUT, DELETE), each with no token, blue's (a tenant) and
//! the operator's, plus the bodies the change calls need, valid and invalid.
//!
//! Each answer is recorded as `METHOD PATH [TOKEN] -> STATUS` and its body, byte for
//! byte as the server sent it, in tests/golden/api/*.txt (one file per group of
//! calls). `NVLB_BLESS=1` writes the files; without it the test compares and fails
//! naming the first request whose answer differs. It exists so that a change to the
//! API's code (its route table, its reply types) can be shown not to change what a
//! client sees, and any change it does make shows up as a diff of these files.
//!
//! One thing is normalized: the temp dir's path (it has the test's pid), which the
//! validator's findings name, is shown as `$DIR`. Nothing else varies: the policy has its health checks removed (no host answers
//! probes in the namespace, so DIPs would go down a few seconds in and race the
//! generation and every DIP's state), no traffic is sent (flow counts stay 0, and
//! the test waits until the workers have published them once, so `flows` is not
//! `null` for some answers and 0 for others), and the requests run one after another,
//! so every change's generation is the same on every run. The replies carry no
//! timestamps or durations that vary (the journal's times are not read).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::api_lb::ApiLb;
use common::{EXAMPLE, in_netns};

const API: &str = "127.0.0.1:9180";
const OPS: &str = "ops-secret-1";
const BLUE: &str = "blue-secret-2";
const RED: &str = "red-secret-3";
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/api");
const METHODS: [&str; 5] = ["GET", "POST", "PATCH", "PUT", "DELETE"];
/// Who asks: no token, a tenant's, the operator's.
const CALLERS: [(&str, Option<&str>); 3] =
    [("none", None), ("blue", Some(BLUE)), ("ops", Some(OPS))];

/// Blue's SSH to two VMs, `blue-ssh:2222` and `blue-ssh:2223`.
const NAT: &str = r#"
[[tenant.inbound_nat]]
name = "blue-ssh"
frontend = "public"
address = "203.0.113.10"
protocol = "tcp"
port = "2222-2223"
backend_vsid = 5001
targets = [{ ca = "10.0.0.5", port = 22 }, { ca = "10.0.0.6", port = 22 }]
"#;

/// The LB in its namespace with the example's pools and an inbound NAT rule, no
/// health checks, and the three tokens.
fn start() -> ApiLb {
    // Without health checks: see the module comment.
    let policy = common::without_health(Path::new(EXAMPLE));
    // And an inbound NAT rule of blue's, whose pools are shown but not changed.
    let red = "[[tenant]]\nname = \"red\"";
    let policy = policy.replacen(red, &format!("{NAT}\n{red}"), 1);
    let tokens = [
        ("ops", "operator", OPS),
        ("b", "blue", BLUE),
        ("r", "red", RED),
    ];
    let mut lb = ApiLb::build(
        "nvroutes",
        "all",
        "tests/api_routes.rs",
        &policy,
        &tokens,
        API,
    );
    lb.start();
    lb
}

/// One request of the table.
struct Call {
    /// The golden file it is recorded in.
    file: &'static str,
    method: String,
    path: String,
    body: String,
}

/// One HTTP/1.1 request on its own connection (`Connection: close`): the status and
/// the body exactly as sent. A plain socket, not `nvlb ctl` or the API's client, so
/// that the bytes are the server's and not re-formatted by a JSON parser.
fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(API).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let raw = String::from_utf8(raw).expect("the answer is UTF-8");
    let (head, rest) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no answer head in {raw:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line in {head:?}"));
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The bodies a path's change calls get, by method.
type Bodies<'a> = &'a [(&'a str, &'a str)];

/// Every call of the table, in the order they are made (changes happen in this
/// order, so later answers see earlier changes).
fn table(records: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut add = |file: &'static str, method: &str, path: &str, body: &str| {
        calls.push(Call {
            file,
            method: method.to_string(),
            path: path.to_string(),
            body: body.to_string(),
        })
    };
    // Every path with every method; a change call gets a valid body with the method
    // it takes, every other method none.
    let paths: &[(&str, &str, Bodies)] = &[
        ("health", "/healthz", &[]),
        ("paths", "/", &[]),
        ("paths", "/nope", &[]),
        ("paths", "/v1", &[]),
        ("paths", "/v1/nope", &[]),
        ("reads", "/v1/whoami", &[]),
        ("reads", "/v1/tenants", &[]),
        ("reads", "/v1/vips", &[]),
        ("reads", "/v1/pools", &[]),
        ("reads", "/v1/outbound", &[]),
        ("reads", "/v1/health", &[]),
        ("reads", "/v1/flows", &[]),
        ("reads", "/v1/whoami/x", &[]),
        (
            "pool",
            "/v1/pools/blue-web",
            &[("PATCH", r#"{"idle_timeout": "5m"}"#)],
        ),
        (
            "pool",
            "/v1/pools/red-web",
            &[("PATCH", r#"{"tcp_reset": true}"#)],
        ),
        (
            "pool",
            "/v1/pools/nope",
            &[("PATCH", r#"{"tcp_reset": true}"#)],
        ),
        ("pool", "/v1/pools/blue-web/nope", &[]),
        (
            "pool",
            "/v1/pools/blue-ssh:2223",
            &[("PATCH", r#"{"tcp_reset": true}"#)],
        ),
        ("pool", "/v1/pools/blue-ssh%3A2222", &[]),
        (
            "pick",
            "/v1/pools/blue-web/pick",
            &[(
                "POST",
                r#"{"clients": ["198.51.100.77:40000", "198.51.100.78:40001"]}"#,
            )],
        ),
        (
            "pick",
            "/v1/pools/red-web/pick",
            &[("POST", r#"{"clients": ["198.51.100.77:40000"]}"#)],
        ),
        (
            "pick",
            "/v1/pools/nope/pick",
            &[("POST", r#"{"clients": []}"#)],
        ),
        ("pick", "/v1/pools/blue-web/pick/x", &[]),
        (
            "dips",
            "/v1/pools/blue-web/dips",
            &[("POST", r#"{"ca": "10.0.0.5", "port": 81, "weight": 2}"#)],
        ),
        (
            "dips",
            "/v1/pools/red-web/dips",
            &[("POST", r#"{"ca": "10.0.0.5", "port": 81}"#)],
        ),
        (
            "dips",
            "/v1/pools/nope/dips",
            &[("POST", r#"{"ca": "10.0.0.5"}"#)],
        ),
        (
            "dips",
            "/v1/pools/blue-web/dips/10.0.0.7",
            &[("PATCH", r#"{"weight": 3}"#)],
        ),
        (
            "dips",
            "/v1/pools/blue-web/dips/10.0.0.8/80",
            &[("PATCH", r#"{"drain": true}"#), ("DELETE", "")],
        ),
        (
            "dips",
            "/v1/pools/red-web/dips/10.0.0.6/80",
            &[("PATCH", r#"{"drain": true}"#), ("DELETE", "")],
        ),
        (
            "dips",
            "/v1/pools/blue-web/dips/10.0.0.7/80/x",
            &[("PATCH", r#"{"weight": 1}"#), ("DELETE", "")],
        ),
        (
            "lookups",
            "/v1/lookups",
            &[
                (
                    "PATCH",
                    r#"{"set": [{"vsid": 5001, "ca": "10.0.0.9", "host": "host1", "mac": "00:1d:d8:b7:1c:09"}]}"#,
                ),
                ("PUT", records),
            ],
        ),
        ("subnets", "/v1/subnets", &[]),
        (
            "subnets",
            "/v1/subnets/5003",
            &[
                (
                    "PUT",
                    r#"{"tenant": "blue", "routing_domain": "blue-rd1", "prefixes": ["10.0.3.0/24"], "lb_mac": "02:00:00:b1:00:fd"}"#,
                ),
                ("DELETE", ""),
            ],
        ),
        ("subnets", "/v1/subnets/5003/x", &[]),
        ("reload", "/v1/reload", &[("POST", "")]),
    ];
    for (file, path, bodies) in paths {
        for m in METHODS {
            let body = bodies
                .iter()
                .find(|(bm, _)| *bm == m)
                .map(|(_, b)| *b)
                .unwrap_or("");
            add(file, m, path, body);
        }
    }
    // Bodies and paths the calls refuse (and a few more they take).
    let bad: &[(&str, &str, &str, &str)] = &[
        ("bad-pool", "PATCH", "/v1/pools/blue-web", "{"),
        ("bad-pool", "PATCH", "/v1/pools/blue-web", "[]"),
        ("bad-pool", "PATCH", "/v1/pools/blue-web", "{}"),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"wieght": 1}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"distribution": null}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"idle_timeout": 5}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"tcp_reset": "yes"}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"distribution": "bogus"}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"idle_timeout": null}"#,
        ),
        (
            "bad-pool",
            "PATCH",
            "/v1/pools/blue-web",
            r#"{"distribution": "source_ip", "icmp_echo": "drop"}"#,
        ),
        ("bad-pick", "POST", "/v1/pools/blue-web/pick", "{}"),
        (
            "bad-pick",
            "POST",
            "/v1/pools/blue-web/pick",
            r#"{"clients": ["x"]}"#,
        ),
        (
            "bad-pick",
            "POST",
            "/v1/pools/blue-web/pick",
            r#"{"clients": ["[fd00::1]:1"]}"#,
        ),
        (
            "bad-pick",
            "POST",
            "/v1/pools/blue-web/pick",
            r#"{"clients": ["198.51.100.1:1"], "port": 81}"#,
        ),
        (
            "bad-pick",
            "POST",
            "/v1/pools/blue-web/pick",
            r#"{"clients": ["198.51.100.1:1"], "protocol": "udp"}"#,
        ),
        (
            "bad-pick",
            "POST",
            "/v1/pools/blue-web6/pick",
            r#"{"clients": ["[2001:db8::1]:1000"]}"#,
        ),
        ("bad-pick", "POST", "/v1/pools/blue-web/pick", "{"),
        ("bad-dips", "POST", "/v1/pools/blue-web/dips", "{}"),
        (
            "bad-dips",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": 1}"#,
        ),
        (
            "bad-dips",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.5", "port": "x"}"#,
        ),
        (
            "bad-dips",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.5", "drain": 1}"#,
        ),
        (
            "bad-dips",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.99"}"#,
        ),
        (
            "bad-dips",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.6", "weight": -2}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7",
            "{}",
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7",
            r#"{"weight": "x"}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7",
            r#"{"vsid": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7?vsid=abc",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7?vsid=5001",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7?vsid=5002",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/not-an-ip",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.7/port",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.99",
            r#"{"weight": 1}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web6/dips/fd00%3A0%3A0%3A1%3A%3A5/80",
            r#"{"weight": 2}"#,
        ),
        (
            "bad-dips",
            "PATCH",
            "/v1/pools/blue-web6/dips/fd00:0:0:1::6/80",
            r#"{"drain": true}"#,
        ),
        (
            "bad-dips",
            "DELETE",
            "/v1/pools/blue-web/dips/10.0.0.7%zz",
            "",
        ),
        (
            "bad-dips",
            "DELETE",
            "/v1/pools/blue-web/dips/10.0.0.99/80",
            "",
        ),
        (
            "bad-dips",
            "DELETE",
            "/v1/pools/blue-web/dips/10.0.0.5/81",
            "",
        ),
        ("bad-lookups", "PATCH", "/v1/lookups", "{}"),
        (
            "bad-lookups",
            "PATCH",
            "/v1/lookups",
            r#"{"set": [{"vsid": 5001}]}"#,
        ),
        (
            "bad-lookups",
            "PATCH",
            "/v1/lookups",
            r#"{"set": [{"vsid": 5001, "ca": "10.0.0.9", "host": "nohost", "mac": "00:1d:d8:b7:1c:09"}]}"#,
        ),
        (
            "bad-lookups",
            "PATCH",
            "/v1/lookups",
            r#"{"delete": [{"vsid": 5001, "ca": "10.0.0.5"}]}"#,
        ),
        (
            "bad-lookups",
            "PATCH",
            "/v1/lookups",
            r#"{"delete": [{"vsid": 5001, "ca": "10.0.0.9"}]}"#,
        ),
        (
            "bad-lookups",
            "PATCH",
            "/v1/lookups",
            r#"{"delete": [{"ca": "10.0.0.9"}]}"#,
        ),
        ("bad-lookups", "PUT", "/v1/lookups", "{}"),
        ("bad-lookups", "PUT", "/v1/lookups", r#"{"records": []}"#),
        (
            "bad-lookups",
            "PUT",
            "/v1/lookups",
            r#"{"records": [{"vsid": "x"}]}"#,
        ),
        ("bad-subnets", "PUT", "/v1/subnets/abc", "{}"),
        (
            "bad-subnets",
            "PUT",
            "/v1/subnets/5003",
            r#"{"tenant": "blue"}"#,
        ),
        (
            "bad-subnets",
            "PUT",
            "/v1/subnets/5001",
            r#"{"snat": [{"ca": 1}]}"#,
        ),
        (
            "bad-subnets",
            "PUT",
            "/v1/subnets/5001",
            r#"{"prefixes": "10.0.0.0/24"}"#,
        ),
        (
            "bad-subnets",
            "PUT",
            "/v1/subnets/5001",
            r#"{"lb_mac": "02:00:00:b1:00:fe"}"#,
        ),
        (
            "bad-subnets",
            "PUT",
            "/v1/subnets/5001",
            r#"{"tenant": "red"}"#,
        ),
        ("bad-subnets", "DELETE", "/v1/subnets/abc", ""),
        ("bad-subnets", "DELETE", "/v1/subnets/5001", ""),
        ("bad-subnets", "DELETE", "/v1/subnets/7777", ""),
        ("bad-reload", "POST", "/v1/reload", r#"{"anything": 1}"#),
        ("bad-reload", "GET", "/v1/whoami?x=1", ""),
        ("bad-reload", "GET", "/v1//whoami/", ""),
    ];
    for (file, m, path, body) in bad {
        add(file, m, path, body);
    }
    calls
}

/// The golden text of one answer: the request, the status, the body as sent. (The
/// connection-level answers, 413 and 503, are tests/api_abuse.rs's: they come from
/// the server, before any route.)
fn entry(call: &Call, caller: &str, status: u16, body: &str) -> String {
    format!(
        "### {} {} [{caller}] {}\n-> {status}\n{body}",
        call.method, call.path, call.body
    )
}

/// The entries of a golden file, each with its first line (the request).
fn entries(text: &str) -> Vec<(String, String)> {
    text.split("\n### ")
        .map(|e| e.strip_prefix("### ").unwrap_or(e))
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let head = e.lines().next().unwrap_or("").to_string();
            (head, format!("### {}", e.trim_end()))
        })
        .collect()
}

fn golden_file(name: &str) -> PathBuf {
    Path::new(GOLDEN).join(format!("{name}.txt"))
}

#[test]
fn every_route_answers_as_recorded() {
    if common::skip_without_netns() {
        return;
    }
    let mut lb = start();
    let bless = std::env::var_os("NVLB_BLESS").is_some();
    let dir = lb.dir.display().to_string();
    let recorded = in_netns(&lb.ns, move || {
        // Flow counts are `null` until the workers first publish (100 ms after start):
        // wait for them so that every answer has numbers.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, b) = request("GET", "/v1/flows", Some(OPS), "");
            if b.contains("\"available\": true") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "flow counts never available: {b}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // A valid `PUT /v1/lookups` body: every record as declared.
        let (status, lookups) = request("GET", "/v1/lookups", Some(OPS), "");
        assert_eq!(status, 200, "{lookups}");
        let list: Vec<serde_json::Value> = serde_json::from_str(&lookups).unwrap();
        let records: Vec<serde_json::Value> = list
            .iter()
            .map(|r| {
                serde_json::json!({
                    "vsid": r["vsid"], "ca": r["ca"], "host": r["host"], "mac": r["mac"],
                })
            })
            .collect();
        let records = serde_json::json!({ "records": records }).to_string();
        let mut files: Vec<(&'static str, String)> = Vec::new();
        for call in table(&records) {
            for (caller, token) in CALLERS {
                let (status, body) = request(&call.method, &call.path, token, &call.body);
                let body = body.replace(&dir, "$DIR");
                let text = entry(&call, caller, status, &body);
                match files.last_mut() {
                    Some((f, t)) if *f == call.file => {
                        t.push('\n');
                        t.push_str(&text);
                    }
                    _ => files.push((call.file, text)),
                }
            }
        }
        files
    })
    .join()
    .expect("the requests ran");
    lb.stop();
    let mut count = 0;
    for (name, text) in &recorded {
        let path = golden_file(name);
        let got = entries(text);
        count += got.len();
        if bless {
            std::fs::create_dir_all(GOLDEN).unwrap();
            std::fs::write(&path, format!("{}\n", text.trim_end())).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (record it with NVLB_BLESS=1 cargo test --test api_routes)",
                path.display()
            )
        });
        let want = entries(&want);
        for (i, (head, g)) in got.iter().enumerate() {
            match want.get(i) {
                Some((_, w)) if w == g => {}
                Some((_, w)) => panic!(
                    "{}: request {} answers differently\n--- recorded:\n{w}\n--- now:\n{g}",
                    path.display(),
                    head
                ),
                None => panic!(
                    "{}: request {head} is not recorded (NVLB_BLESS=1 records it)",
                    path.display()
                ),
            }
        }
        assert_eq!(
            want.len(),
            got.len(),
            "{}: recorded requests that were not made: {:?}",
            path.display(),
            want.iter()
                .skip(got.len())
                .map(|(h, _)| h)
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{count} answers {}",
        if bless { "recorded" } else { "as recorded" }
    );
}
