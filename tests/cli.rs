//! The `nvlb` binary as operators run it: real processes, real files, exit codes and the
//! exact text scripts and people read. `check` must name every mistake with its place
//! and print nothing on stdout unless the policy loads; `replay` must give one verdict
//! per frame, write only what the LB emits, and refuse bad captures by name and position
//! without panicking (exit 1, never 101) or leaving a half-written output behind.

use std::ffi::OsStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nvlb::craft::{self, Transport};
use nvlb::pcap;
use nvlb::wire::{MacAddr, arp, ethernet, gre, ip_proto, ipv4, tcp};
use serde_json::Value;

const EXAMPLE: &str = "lb-config/example.toml";
const VIPS: [&str; 7] = [
    "blue-web",
    "blue-web6",
    "blue-vip1",
    "blue-vip1-v6",
    "red-web",
    "red-web6",
    "red-vip1",
];
const VSIDS: [u64; 4] = [5001, 5002, 6001, 6002];

const EXTERNAL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x0a]);
const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x01]);
const BLUE_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const GARBAGE: &[u8] = b"\xde\xad\xbe\xef not a frame";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What one run of the binary did.
struct Run {
    /// None when killed by a signal.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    /// Refused: exit 1 (not a panic's 101), nothing on stdout, a reason on stderr.
    fn expect_refused(&self) -> &Run {
        self.expect_code(1);
        assert!(
            self.stdout.is_empty(),
            "stdout on failure: {}",
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "no reason: {}",
            self.describe()
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.describe());
        self
    }
}

/// Runs `nvlb ARGS` from the crate root, so relative paths appear as given.
fn nvlb<S: AsRef<OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("cannot start nvlb");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is not UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is not UTF-8"),
    }
}

/// A scratch directory removed when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nvlb-cli-{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(file);
        fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn example_text() -> String {
    fs::read_to_string(root().join(EXAMPLE)).unwrap()
}

/// 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// `text` with `from` (which must occur exactly once) replaced.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} is not unique");
    text.replacen(from, to, 1)
}

/// Splits a diagnostic line `FILE:LINE:COL: REST` whose file is `file`.
fn diagnostic<'a>(line: &'a str, file: &str) -> Option<(usize, usize, &'a str)> {
    let rest = line.strip_prefix(file)?.strip_prefix(':')?;
    let mut parts = rest.splitn(3, ':');
    let l = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    let rest = parts.next()?.strip_prefix(' ')?;
    Some((l, c, rest))
}

// ------------------------------------------------------------------------------ check

#[test]
fn check_example_summarises_every_tenant_vip_and_vsid() {
    let run = nvlb(&["check", EXAMPLE]);
    run.expect_code(0);
    assert!(
        run.stderr.is_empty(),
        "warnings for the example: {}",
        run.describe()
    );
    let words: Vec<&str> = run.stdout.split_whitespace().collect();
    for name in ["blue", "red"].iter().chain(&VIPS) {
        assert!(words.contains(name), "summary lacks {name}: {}", run.stdout);
    }
    for vsid in VSIDS {
        assert!(
            words.contains(&vsid.to_string().as_str()),
            "summary lacks VSID {vsid}: {}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("VIP pools (7)"), "{}", run.stdout);
    // Every VIP row starts with its name and names its tenant.
    for vip in VIPS {
        let row = run
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(vip))
            .unwrap_or_else(|| panic!("no row for {vip}: {}", run.stdout));
        let tenant = if vip.starts_with("blue") {
            "blue"
        } else {
            "red"
        };
        assert_eq!(row.split_whitespace().nth(1), Some(tenant), "{row}");
    }
}

#[test]
fn check_json_lists_the_seven_pools() {
    let run = nvlb(&["check", EXAMPLE, "--json"]);
    run.expect_code(0);
    let v: Value = serde_json::from_str(&run.stdout).expect("check --json is not JSON");
    let pools = v["pools"].as_array().expect("no pools array");
    assert_eq!(pools.len(), 7);
    let names: Vec<&str> = pools.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, VIPS);
    for p in pools {
        let name = p["name"].as_str().unwrap_or("");
        let tenant = if name.starts_with("blue") {
            "blue"
        } else {
            "red"
        };
        assert_eq!(p["tenant"], tenant, "{p}");
    }
    assert_eq!(v["tenants"], serde_json::json!(["blue", "red"]));
    let vsids: Vec<u64> = v["subnets"]
        .as_array()
        .expect("no subnets array")
        .iter()
        .filter_map(|s| s["vsid"].as_u64())
        .collect();
    assert_eq!(vsids, VSIDS);
    let web = &pools[0];
    assert_eq!(web["address"], "203.0.113.10");
    assert_eq!(web["port"], 80);
    // Public frontends are VSID 0 in JSON (scripts such as tests/golden rely on it).
    assert_eq!(web["frontend"], 0, "{web}");
    assert_eq!(pools[2]["frontend"], 5001, "{}", pools[2]);
    assert_eq!(web["dips"].as_array().map(Vec::len), Some(4));
}

/// `# expect: LINE FIELD: MESSAGE-PART` lines of a fixture, as the policy tests read them.
fn expectations(text: &str) -> Vec<(usize, &str, &str)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (line, rest) = e.split_once(' ').expect("expect: LINE FIELD: MESSAGE");
            let (field, says) = rest.split_once(": ").expect("expect: LINE FIELD: MESSAGE");
            (line.parse().expect("expect: line number"), field, says)
        })
        .collect()
}

#[test]
fn check_bad_fixtures_name_file_line_column_and_field() {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("lb-config/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "fixtures missing");
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let rel = format!("lb-config/bad/{name}");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{rel} has no # expect: lines");
        for args in [vec!["check", &rel], vec!["check", &rel, "--json"]] {
            let run = nvlb(&args);
            run.expect_refused();
            let got: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(got.len(), expected.len(), "{rel}: {}", run.describe());
            for (err, (line, field, says)) in got.iter().zip(&expected) {
                let (l, col, rest) = diagnostic(err, &rel)
                    .unwrap_or_else(|| panic!("{rel}: not FILE:LINE:COL: {err:?}"));
                assert_eq!(l, *line, "{err}");
                assert!(
                    rest.starts_with(&format!("{field}: ")),
                    "{err} does not name {field}"
                );
                assert!(rest.contains(says), "{err} does not say {says:?}");
                // The column points at something written on that line, not past it.
                let source = lines[l - 1];
                let at = source.chars().nth(col.wrapping_sub(1));
                assert!(
                    at.is_some_and(|c| !c.is_whitespace()),
                    "{err}: column {col} is not on text in {source:?}"
                );
            }
        }
    }
}

#[test]
fn check_missing_file_names_the_path() {
    let dir = Scratch::new("missing");
    let path = dir.path("no-such-policy.toml");
    let run = nvlb(&[OsStr::new("check"), path.as_os_str()]);
    run.expect_refused();
    let shown = path.display().to_string();
    assert!(run.stderr.starts_with(&shown), "{}", run.describe());
    assert!(run.stderr.contains("cannot read"), "{}", run.describe());
    // No made-up position for a file that has none.
    assert!(!run.stderr.contains(":0:0"), "{}", run.describe());
}

#[test]
fn check_non_toml_reports_line_and_column() {
    let dir = Scratch::new("nontoml");
    let cases = [
        ("words.toml", "this is not toml\n", 1),
        (
            "header.toml",
            "[balancer]\nname = \"lb1\"\n[balancer.external\n",
            3,
        ),
        ("string.toml", "[balancer]\nname = \"lb1\n", 2),
    ];
    for (file, text, line) in cases {
        let path = dir.write(file, text);
        let run = nvlb(&[OsStr::new("check"), path.as_os_str()]);
        run.expect_refused();
        let shown = path.display().to_string();
        let first = run.stderr.lines().next().unwrap_or("");
        let (l, col, _) = diagnostic(first, &shown)
            .unwrap_or_else(|| panic!("not FILE:LINE:COL: {}", run.describe()));
        assert_eq!(l, line, "{}", run.describe());
        assert!(col >= 1, "{}", run.describe());
    }
}

#[test]
fn check_reports_three_independent_mistakes_in_file_order() {
    let dir = Scratch::new("three");
    let text = example_text();
    let text = edit(&text, "udp_timeout = \"30s\"", "udp_timeout = \"30\"");
    let text = edit(
        &text,
        "mac = \"02:00:00:00:06:11\"",
        "mac = \"02:00:00:00:06\"",
    );
    let text = edit(
        &text,
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.9\", port = 80, weight = 2 }",
    );
    let expected = [
        (
            line_of(&text, "udp_timeout = \"30\""),
            "balancer.flows.udp_timeout",
        ),
        (line_of(&text, "\"02:00:00:00:06\""), "host[0].mac"),
        (line_of(&text, "10.0.0.9"), "tenant[0].vip[0].dips[3].ca"),
    ];
    let path = dir.write("three.toml", &text);
    let shown = path.display().to_string();
    for args in [vec!["check"], vec!["check", "--json"]] {
        let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        args.push(path.as_os_str());
        let run = nvlb(&args);
        run.expect_refused();
        let got: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(got.len(), 3, "{}", run.describe());
        for (err, (line, field)) in got.iter().zip(expected) {
            let (l, _, rest) = diagnostic(err, &shown).unwrap_or_else(|| panic!("{err:?}"));
            assert_eq!(l, line, "{err}");
            assert!(rest.starts_with(&format!("{field}: ")), "{err}");
        }
        assert!(got[0].contains("not a duration"), "{}", got[0]);
        assert!(got[1].contains("not a MAC address"), "{}", got[1]);
        assert!(got[2].contains("10.0.0.9"), "{}", got[2]);
    }
}

// ----------------------------------------------------------------------------- replay

fn syn_to_blue_web() -> Vec<u8> {
    let ip = craft::ip_packet(
        IpAddr::V4(CLIENT),
        IpAddr::V4(BLUE_VIP),
        64,
        Transport::Tcp {
            src_port: 40_000,
            dst_port: 80,
            flags: tcp::flags::SYN,
            seq: 1,
            ack: 0,
        },
        &[],
    );
    craft::ip_frame(GATEWAY_MAC, EXTERNAL_MAC, &ip)
}

fn arp_who_has_blue_web() -> Vec<u8> {
    let mut body = vec![0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: arp::op::REQUEST,
        sender_hw: GATEWAY_MAC,
        sender_ip: GATEWAY_IP,
        target_hw: MacAddr::ZERO,
        target_ip: BLUE_VIP,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut body[..]));
    craft::ethernet(
        GATEWAY_MAC,
        MacAddr::BROADCAST,
        ethernet::ethertype::ARP,
        &body,
    )
}

const T0: u64 = 1_700_000_000_000_000_000;

fn capture(frames: &[&[u8]]) -> Vec<u8> {
    let mut w = pcap::Writer::new(Vec::new(), 65535).unwrap();
    for (i, f) in (0u64..).zip(frames) {
        w.write(T0 + i * 1_000_000, f).unwrap();
    }
    w.finish().unwrap()
}

fn three_frames() -> Vec<u8> {
    capture(&[&syn_to_blue_web(), &arp_who_has_blue_web(), GARBAGE])
}

fn replay(config: &Path, input: &Path, output: &Path, json: bool) -> Run {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("replay"),
        OsStr::new("--config"),
        config.as_os_str(),
        input.as_os_str(),
        output.as_os_str(),
    ];
    if json {
        args.push(OsStr::new("--json"));
    }
    nvlb(&args)
}

fn example_path() -> PathBuf {
    root().join(EXAMPLE)
}

#[test]
fn replay_prints_one_verdict_per_frame() {
    let dir = Scratch::new("replay-text");
    let input = dir.write("in.pcap", three_frames());
    let output = dir.path("out.pcap");
    let run = replay(&example_path(), &input, &output, false);
    run.expect_code(0);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.describe());
    let fwd = &lines[0];
    assert_eq!(&fwd[..3], ["0", "forwarded", "egress=provider"], "{fwd:?}");
    assert!(fwd.contains(&"tenant=blue"), "{fwd:?}");
    assert!(fwd.contains(&"vip=blue-web(203.0.113.10:80)"), "{fwd:?}");
    let dip = fwd
        .iter()
        .find_map(|w| w.strip_prefix("dip="))
        .unwrap_or_else(|| panic!("no dip in {fwd:?}"));
    let (addr, vsid) = dip.split_once(":80@vsid").expect("dip=CA:PORT@vsidN");
    assert!(
        ["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"].contains(&addr),
        "{dip}"
    );
    assert_eq!(vsid, "5001");
    assert_eq!(lines[1], ["1", "replied", "egress=external"]);
    assert_eq!(&lines[2][..2], ["2", "dropped"]);
    assert_eq!(lines[2].len(), 3, "{:?}", lines[2]);
    let reason = lines[2][2].strip_prefix("reason=").expect("reason=");
    assert!(!reason.is_empty());
}

#[test]
fn replay_json_gives_one_object_per_frame() {
    let dir = Scratch::new("replay-json");
    let input = dir.write("in.pcap", three_frames());
    let output = dir.path("out.pcap");
    let run = replay(&example_path(), &input, &output, true);
    run.expect_code(0);
    let objs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(objs.len(), 3, "{}", run.describe());
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(o["index"], i, "{o}");
    }
    let f = &objs[0];
    assert_eq!(f["verdict"], "forwarded");
    assert_eq!(f["egress"], "provider");
    assert_eq!(f["tenant"], "blue");
    assert!(
        f["vip"]
            .as_str()
            .is_some_and(|v| v.starts_with("blue-web(")),
        "{f}"
    );
    assert!(f["len"].as_u64().is_some_and(|n| n > 60), "{f}");
    assert!(
        f["dip"].as_str().is_some_and(|d| d.ends_with("@vsid5001")),
        "{f}"
    );
    let r = &objs[1];
    assert_eq!(r["verdict"], "replied");
    assert_eq!(r["egress"], "external");
    assert_eq!(r["len"], 42, "an ARP reply is 14 + 28 bytes: {r}");
    let d = &objs[2];
    assert_eq!(d["verdict"], "dropped");
    assert!(d["reason"].as_str().is_some_and(|s| !s.is_empty()), "{d}");
    assert!(d.get("egress").is_none(), "{d}");
    // The text and JSON forms agree on the drop reason.
    let text = replay(&example_path(), &input, &dir.path("o2.pcap"), false);
    let reason = d["reason"].as_str().unwrap_or("");
    assert!(
        text.stdout.contains(&format!("reason={reason}")),
        "{}",
        text.describe()
    );
}

#[test]
fn replay_writes_the_forwarded_nvgre_frame_and_the_arp_reply() {
    let dir = Scratch::new("replay-out");
    let input = dir.write("in.pcap", three_frames());
    let output = dir.path("out.pcap");
    replay(&example_path(), &input, &output, false).expect_code(0);
    let bytes = fs::read(&output).expect("no output pcap");
    let records: Vec<pcap::Record> = pcap::Reader::new(&bytes[..])
        .expect("output is not pcap")
        .collect::<Result<_, _>>()
        .expect("bad record in output");
    assert_eq!(records.len(), 2);
    // Timestamps are the input frames' own.
    assert_eq!(records[0].ts_nanos, T0);
    assert_eq!(records[1].ts_nanos, T0 + 1_000_000);

    // Forwarded: Ethernet / IPv4 (LB PA -> host PA) / GRE key VSID 5001 / the SYN.
    let eth = ethernet::Frame::new_checked(&records[0].data[..]).expect("ethernet");
    assert_eq!(eth.src_addr(), MacAddr([0x02, 0, 0, 0, 0x06, 0x0a]));
    assert_eq!(eth.ethertype(), ethernet::ethertype::IPV4);
    let outer = ipv4::Packet::new_checked(eth.payload()).expect("outer IPv4");
    assert_eq!(outer.protocol(), ip_proto::GRE);
    assert_eq!(outer.src_addr(), Ipv4Addr::new(192, 168, 6, 10));
    let hosts = [11, 12, 13].map(|h| Ipv4Addr::new(192, 168, 6, h));
    assert!(hosts.contains(&outer.dst_addr()), "{}", outer.dst_addr());
    let g = gre::Packet::new_checked(outer.payload()).expect("GRE");
    assert_eq!(g.protocol_type(), ethernet::ethertype::TEB);
    assert_eq!(g.vsid(), Some(5001));
    let inner_eth = ethernet::Frame::new_checked(g.payload()).expect("inner ethernet");
    assert_eq!(inner_eth.src_addr(), MacAddr([0x02, 0, 0, 0xb1, 0, 0xfe]));
    let inner = ipv4::Packet::new_checked(inner_eth.payload()).expect("inner IPv4");
    assert_eq!(
        inner.src_addr(),
        CLIENT,
        "public VIPs keep the client address"
    );
    let dips = [5, 6, 7, 8].map(|d| Ipv4Addr::new(10, 0, 0, d));
    assert!(dips.contains(&inner.dst_addr()), "{}", inner.dst_addr());
    let seg = tcp::Packet::new_checked(inner.payload()).expect("TCP");
    assert_eq!((seg.src_port(), seg.dst_port()), (40_000, 80));
    assert!(seg.syn() && !seg.ack());

    // Replied: the LB answers ARP for the VIP with its external MAC.
    let eth = ethernet::Frame::new_checked(&records[1].data[..]).expect("ethernet");
    assert_eq!(eth.ethertype(), ethernet::ethertype::ARP);
    assert_eq!(eth.dst_addr(), GATEWAY_MAC);
    let reply = arp::Packet::new_checked(eth.payload()).expect("ARP");
    assert_eq!(reply.operation(), arp::op::REPLY);
    assert_eq!(reply.sender_ip(), BLUE_VIP);
    assert_eq!(reply.sender_hw(), EXTERNAL_MAC);
    assert_eq!(reply.target_ip(), GATEWAY_IP);
}

/// A classic pcap file header (little-endian, microseconds, Ethernet).
fn file_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&pcap::MAGIC_MICROS.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

fn record_header(incl_len: u32, orig_len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&incl_len.to_le_bytes());
    h.extend_from_slice(&orig_len.to_le_bytes());
    h
}

#[test]
fn replay_refuses_bad_captures_by_name_and_position() {
    let dir = Scratch::new("replay-bad");
    let good = capture(&[&syn_to_blue_web()]);
    let syn_len = syn_to_blue_web().len();
    // A pcapng Section Header Block: type, length, byte-order magic, version 1.0.
    let mut pcapng = Vec::new();
    pcapng.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    pcapng.extend_from_slice(&28u32.to_le_bytes());
    pcapng.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    pcapng.extend_from_slice(&[1, 0, 0, 0]);
    pcapng.extend_from_slice(&[0xff; 8]);
    pcapng.extend_from_slice(&28u32.to_le_bytes());
    // Record 1 (at byte 24 + 16 + syn_len) promises 60 bytes and holds 10.
    let mut truncated = good.clone();
    truncated.extend_from_slice(&record_header(60, 60));
    truncated.extend_from_slice(&[0; 10]);
    let second_at = 24 + 16 + syn_len;
    // Record 0's header is cut after 12 bytes.
    let mut cut_header = file_header();
    cut_header.extend_from_slice(&record_header(60, 60)[..12]);
    // Record 1 claims nearly 4 GiB.
    let mut lying = good.clone();
    lying.extend_from_slice(&record_header(0xffff_fff0, 60));
    lying.extend_from_slice(&[0; 60]);

    let cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![
        ("empty.pcap", Vec::new(), vec!["empty".into()]),
        (
            "next.pcapng",
            pcapng,
            vec!["0x0a0d0d0a".into(), "pcapng".into()],
        ),
        (
            "truncated.pcap",
            truncated,
            vec!["record 1".into(), format!("byte {second_at}")],
        ),
        (
            "cut-header.pcap",
            cut_header,
            vec!["record 0".into(), "byte 24".into()],
        ),
        (
            "lying.pcap",
            lying,
            vec![
                "record 1".into(),
                format!("byte {second_at}"),
                "4294967280".into(),
            ],
        ),
    ];
    for (name, bytes, says) in cases {
        let input = dir.write(name, &bytes);
        let output = dir.path(&format!("{name}.out.pcap"));
        let run = replay(&example_path(), &input, &output, false);
        run.expect_code(1);
        assert!(!run.stderr.contains("panicked"), "{}", run.describe());
        assert!(
            run.stderr.contains(&input.display().to_string()),
            "{name}: message lacks the input path: {}",
            run.describe()
        );
        for s in &says {
            assert!(
                run.stderr.contains(s.as_str()),
                "{name}: lacks {s:?}: {}",
                run.describe()
            );
        }
        // Frames before the bad record still get their verdicts; no more.
        let good_records = if name.starts_with("truncated") || name.starts_with("lying") {
            1
        } else {
            0
        };
        assert_eq!(
            run.stdout.lines().count(),
            good_records,
            "{}",
            run.describe()
        );
        // A failed replay leaves no output that could pass for a complete one.
        assert!(!output.exists(), "{name}: output written on failure");
        let leftovers: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn replay_failure_keeps_an_existing_output() {
    let dir = Scratch::new("replay-keep");
    let output = dir.write("out.pcap", b"previous capture");
    let input = dir.write("in.pcap", &three_frames()[..50]);
    let run = replay(&example_path(), &input, &output, false);
    run.expect_code(1);
    assert_eq!(fs::read(&output).unwrap(), b"previous capture");
}

#[test]
fn replay_refuses_missing_input_and_unwritable_output() {
    let dir = Scratch::new("replay-paths");
    let good = dir.write("in.pcap", three_frames());

    let missing = dir.path("absent.pcap");
    let run = replay(&example_path(), &missing, &dir.path("o.pcap"), false);
    run.expect_refused();
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{}",
        run.describe()
    );
    assert!(!dir.path("o.pcap").exists());

    let nowhere = dir.path("no-such-dir").join("out.pcap");
    let run = replay(&example_path(), &good, &nowhere, false);
    run.expect_refused();
    assert!(
        run.stderr.contains(&nowhere.display().to_string()),
        "{}",
        run.describe()
    );

    // A directory as output.
    let run = replay(&example_path(), &good, &dir.0, false);
    run.expect_refused();
    assert!(
        run.stderr.contains(&dir.0.display().to_string()),
        "{}",
        run.describe()
    );

    // The input as output would destroy the capture being replayed.
    let before = fs::read(&good).unwrap();
    let run = replay(&example_path(), &good, &good, false);
    run.expect_refused();
    assert!(
        run.stderr.contains("is the input file"),
        "{}",
        run.describe()
    );
    assert_eq!(fs::read(&good).unwrap(), before, "the input was modified");
}

#[test]
fn replay_with_a_bad_config_prints_the_config_errors() {
    let dir = Scratch::new("replay-config");
    let input = dir.write("in.pcap", three_frames());
    let output = dir.path("out.pcap");
    let rel = "lb-config/bad/three-problems.toml";
    let run = replay(Path::new(rel), &input, &output, false);
    run.expect_refused();
    let lines: Vec<&str> = run.stderr.lines().collect();
    let expected = expectations(include_str!("../lb-config/bad/three-problems.toml"));
    assert_eq!(lines.len(), expected.len(), "{}", run.describe());
    for (err, (line, field, _)) in lines.iter().zip(&expected) {
        let (l, _, rest) = diagnostic(err, rel).unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(l, *line);
        assert!(rest.starts_with(field), "{err}");
    }
    assert!(!output.exists());

    let missing = dir.path("absent.toml");
    let run = replay(&missing, &input, &output, false);
    run.expect_refused();
    assert!(
        run.stderr.starts_with(&missing.display().to_string()),
        "{}",
        run.describe()
    );
    assert!(!output.exists());
}

// ------------------------------------------------------------------------------ usage

#[test]
fn help_names_subcommands_and_flags() {
    let run = nvlb(&["--help"]);
    run.expect_code(0);
    for word in ["check", "replay", "Usage"] {
        assert!(run.stdout.contains(word), "{}", run.describe());
    }
    let run = nvlb(&["replay", "--help"]);
    run.expect_code(0);
    for word in ["--config", "--json", "<INPUT>", "<OUTPUT>"] {
        assert!(run.stdout.contains(word), "{}", run.describe());
    }
    let run = nvlb(&["check", "--help"]);
    run.expect_code(0);
    for word in ["--json", "<FILE>"] {
        assert!(run.stdout.contains(word), "{}", run.describe());
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["frobnicate"],
        vec![],
        vec!["check"],
        vec!["replay", "in.pcap", "out.pcap"],
        vec!["check", EXAMPLE, "--colour"],
    ] {
        let run = nvlb(&args);
        run.expect_code(2);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.describe());
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
}

/// An API stand-in on loopback that answers one request with `body` (200), whatever
/// was asked; its address.
fn answer_once(body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(body.as_bytes());
    });
    addr
}

/// `ctl` reads answers into the API's reply types (nvlb::control::api::replies): a key
/// the API renamed is an error naming the key, not a table with an empty cell.
#[test]
fn ctl_refuses_an_answer_with_a_renamed_key_and_names_it() {
    use nvlb::control::api::replies::{Dip, Frontend, Pool, Rule, to_body};
    let pool = Pool {
        name: "blue-web".into(),
        tenant: "blue".into(),
        frontend: Frontend::Named("public".into()),
        address: "203.0.113.10".into(),
        protocol: "tcp".into(),
        port: 80,
        dips: vec![Dip {
            vsid: 5001,
            ca: "10.0.0.5".into(),
            port: 8080,
            weight: 1,
            state: "active".into(),
            health: "up".into(),
            host: Some("host1".into()),
            pa: vec!["192.0.2.1".into()],
            mac: "02:00:00:00:00:05".into(),
        }],
        active: 1,
        flows: None,
        rule: Rule {
            kind: "lb".into(),
            all_ports: false,
            distribution: "five_tuple".into(),
            idle_timeout_s: None,
            tcp_reset: false,
            icmp_echo: "answer".into(),
            floating_ip: false,
            inbound_nat: None,
        },
    };
    let ctl = |body: String| {
        let api = answer_once(body);
        nvlb(&["ctl", "--api", &api, "--token", "t", "pools", "blue-web"])
    };
    let good = ctl(to_body(&pool).to_string());
    assert_eq!(good.code, Some(0), "{}", good.describe());
    assert!(good.stdout.contains("10.0.0.5"), "{}", good.describe());

    let mut renamed = to_body(&pool);
    let dip = renamed["dips"][0].as_object_mut().unwrap();
    let ca = dip.remove("ca").unwrap();
    dip.insert("dip_ca".into(), ca);
    let bad = ctl(renamed.to_string());
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(
        bad.stderr.contains("missing field `ca`"),
        "{}",
        bad.describe()
    );
    assert!(!bad.stdout.contains("10.0.0.5"), "{}", bad.describe());

    let mut renamed = to_body(&pool);
    let flows = renamed["flows"].take();
    renamed.as_object_mut().unwrap().remove("flows");
    renamed["flow_count"] = flows;
    let bad = ctl(renamed.to_string());
    assert_eq!(bad.code, Some(1), "{}", bad.describe());
    assert!(
        bad.stderr.contains("missing field `flows`"),
        "{}",
        bad.describe()
    );
}
