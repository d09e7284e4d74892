//! Golden packets, checked by tools nobody here wrote.
//!
//! scapy (tests/golden/craft.py) builds the frames a client, a Hyper-V host or an
//! attacker would send, each with the verdict the LB must reach; the real `nvlb replay`
//! process runs them through the engine; tshark reads what the LB emitted and must find
//! the GRE key (VSID), inner addresses and ports, and valid IP/TCP/ICMP checksums. The
//! DIPs' answers are crafted from the LB's own output, so both NAT directions are
//! checked on the wire format. Runs for IPv4 and IPv6 outer headers.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const TSHARK_FIELDS: &[&str] = &[
    "gre.key",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "icmp.type",
    "icmp.code",
    "icmp.mtu",
    "icmpv6.type",
    "icmpv6.mtu",
    "icmpv6.nd.na.target_address",
    "arp.opcode",
    "arp.src.hw_mac",
    "arp.src.proto_ipv4",
    "ip.len",
    "ip.hdr_len",
    "ipv6.plen",
    "udp.srcport",
    "ip.checksum.status",
    "tcp.checksum.status",
    "udp.checksum.status",
    "icmp.checksum.status",
    "icmpv6.checksum.status",
];
/// Each checksum tshark checks (with the preferences `tshark` sets), with a field
/// present once for every header that carries that checksum.
const CHECKSUMS: &[(&str, &str)] = &[
    ("ip.checksum.status", "ip.src"),
    ("tcp.checksum.status", "tcp.srcport"),
    ("udp.checksum.status", "udp.srcport"),
    ("icmp.checksum.status", "icmp.type"),
    ("icmpv6.checksum.status", "icmpv6.type"),
];

/// A scratch directory removed when the test ends, pass or fail.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nvlb-golden-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nvlb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nvlb"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn craft(args: &[&Path]) {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/craft.py"
    ))
    .args(args);
    run(&mut cmd);
}

fn mode(dir: &Scratch, name: &str) -> PathBuf {
    dir.path(name)
}

/// One row per frame of `pcap`: field name -> value as tshark prints it.
fn tshark(pcap: &Path) -> Vec<serde_json::Map<String, Value>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap);
    for pref in [
        "ip.check_checksum:TRUE",
        "tcp.check_checksum:TRUE",
        "udp.check_checksum:TRUE",
    ] {
        cmd.args(["-o", pref]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-E",
        "separator=/t",
    ]);
    for f in TSHARK_FIELDS {
        cmd.args(["-e", f]);
    }
    run(&mut cmd)
        .lines()
        .map(|line| {
            TSHARK_FIELDS
                .iter()
                .zip(line.split('\t').chain(std::iter::repeat("")))
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect()
        })
        .collect()
}

fn field<'a>(row: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    row.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Every occurrence of `k` in `row`, outermost header first.
fn values<'a>(row: &'a serde_json::Map<String, Value>, k: &str) -> Vec<&'a str> {
    field(row, k).split(',').filter(|v| !v.is_empty()).collect()
}

/// The last two occurrences of the numeric field `k`: the ICMP error's own IP header
/// and the one it quotes.
fn carrier_and_quoted(row: &serde_json::Map<String, Value>, k: &str) -> Option<(usize, usize)> {
    let v: Vec<usize> = values(row, k)
        .iter()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{k} {v:?} in {row:?}")))
        .collect();
    match v[..] {
        [.., carrier, quoted] => Some((carrier, quoted)),
        _ => None,
    }
}

/// Whether `row` is an ICMP error whose quote stops before the end of the packet it
/// quotes (the quoted IP header says longer than the bytes quoted). Only then may the
/// quoted TCP segment's checksum go unverified: tshark sums what is there.
fn quote_is_cut_off(row: &serde_json::Map<String, Value>) -> bool {
    let icmp = values(row, "icmp.type");
    let icmpv6 = values(row, "icmpv6.type");
    if matches!(icmp.first(), Some(&("3" | "11" | "12"))) {
        let (Some((carrier, quoted)), Some((carrier_hdr, _))) = (
            carrier_and_quoted(row, "ip.len"),
            carrier_and_quoted(row, "ip.hdr_len"),
        ) else {
            panic!("an ICMP error without the IPv4 header it quotes: {row:?}");
        };
        let room = carrier.checked_sub(carrier_hdr + 8);
        quoted > room.unwrap_or_else(|| panic!("an ICMP error too short to quote: {row:?}"))
    } else if matches!(icmpv6.first(), Some(&("1" | "2" | "3" | "4"))) {
        let Some((carrier, quoted)) = carrier_and_quoted(row, "ipv6.plen") else {
            panic!("an ICMPv6 error without the IPv6 header it quotes: {row:?}");
        };
        let room = carrier.checked_sub(8);
        40 + quoted > room.unwrap_or_else(|| panic!("an ICMPv6 error too short to quote: {row:?}"))
    } else {
        false
    }
}

/// Every checksum tshark can check in `row` is good (status 1): one status per header
/// that carries a checksum, and none bad (0) or unverified (2). The one exception is
/// the TCP checksum inside an ICMP error whose quote is cut off (the error carries no
/// TCP of its own, so every TCP header in it is the quoted one).
fn check_checksums(name: &str, row: &serde_json::Map<String, Value>) {
    let cut_off = quote_is_cut_off(row);
    for (status, header) in CHECKSUMS {
        if cut_off && *status == "tcp.checksum.status" {
            continue;
        }
        let got = values(row, status);
        let headers = values(row, header).len();
        assert_eq!(
            got.len(),
            headers,
            "{name}: {headers} headers with {header} but {status} {got:?} \
             (tshark did not check each one) in {row:?}"
        );
        assert!(
            got.iter().all(|s| *s == "1"),
            "{name}: {status} {got:?}, want every one good (1; 0 is bad, 2 unverified) \
             in {row:?}"
        );
    }
}

fn matches(
    row: &serde_json::Map<String, Value>,
    alt: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    for (k, want) in alt {
        let want = want.as_str().unwrap();
        let got = if k == "vsid" {
            let key = field(row, "gre.key");
            let key = u32::from_str_radix(key.trim_start_matches("0x"), 16)
                .map_err(|_| format!("gre.key {key:?}"))?;
            (key >> 8).to_string()
        } else {
            field(row, k).to_string()
        };
        if got != want {
            return Err(format!("{k}: got {got:?}, want {want:?}"));
        }
    }
    Ok(())
}

/// Replays `input` with `config`, checks every verdict against `cases`, then every
/// emitted frame against the expectations tshark must confirm.
fn replay_and_check(dir: &Scratch, config: &Path, input: &Path, cases: &Path, output: &Path) {
    let verdicts = run(nvlb()
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg(input)
        .arg(output)
        .arg("--json"));
    let verdicts: Vec<Value> = verdicts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(cases).unwrap()).unwrap();
    assert_eq!(verdicts.len(), cases.len(), "one verdict per input frame");
    let mut expected_out = Vec::new();
    for (v, c) in verdicts.iter().zip(&cases) {
        let name = c["name"].as_str().unwrap();
        assert_eq!(v["verdict"], c["verdict"], "{name}: {v}");
        if let Some(reason) = c["reason"].as_str() {
            assert_eq!(v["reason"].as_str(), Some(reason), "{name}: {v}");
        }
        if c["verdict"] == "forwarded" || c["verdict"] == "replied" {
            expected_out.push((name, c["expect"].as_array().unwrap().clone()));
        }
    }
    let rows = tshark(output);
    assert_eq!(
        rows.len(),
        expected_out.len(),
        "one output frame per forwarded/replied input"
    );
    for (row, (name, alts)) in rows.iter().zip(&expected_out) {
        check_checksums(name, row);
        if alts.is_empty() {
            continue;
        }
        let errors: Vec<String> = alts
            .iter()
            .filter_map(|a| matches(row, a.as_object().unwrap()).err())
            .collect();
        assert!(
            errors.len() < alts.len(),
            "{name}: no alternative matches {row:?}: {errors:?}"
        );
    }
    let _ = dir;
}

fn golden(name: &str, config_text: &str) {
    let dir = Scratch::new(name);
    let config = dir.path("policy.toml");
    std::fs::write(&config, config_text).unwrap();
    let facts = dir.path("facts.json");
    std::fs::write(&facts, run(nvlb().arg("check").arg("--json").arg(&config))).unwrap();

    // Clients, hosts and attackers send; the LB forwards, answers or drops.
    let (fwd, fwd_cases, fwd_out) = (
        mode(&dir, "fwd.pcap"),
        dir.path("fwd.json"),
        dir.path("fwd_out.pcap"),
    );
    craft(&[Path::new("forward"), &facts, &fwd, &fwd_cases]);
    replay_and_check(&dir, &config, &fwd, &fwd_cases, &fwd_out);

    // The DIPs answer what the LB sent them: both NAT directions, ICMP errors, spoofing.
    let (all, all_cases, all_out) = (
        dir.path("all.pcap"),
        dir.path("all.json"),
        dir.path("all_out.pcap"),
    );
    craft(&[
        Path::new("reflect"),
        &facts,
        &fwd,
        &fwd_out,
        &fwd_cases,
        &all,
        &all_cases,
    ]);
    replay_and_check(&dir, &config, &all, &all_cases, &all_out);
}

fn example() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/lb-config/example.toml"
    ))
    .unwrap()
}

#[test]
fn golden_ipv4_outer() {
    golden("v4", &example());
}

#[test]
fn golden_ipv6_outer() {
    // The LB keeps only its IPv6 PA: every tunnel runs over IPv6.
    let text = example().replace(
        r#"addresses = ["192.168.6.10", "fd00:6::10"]"#,
        r#"addresses = ["fd00:6::10"]"#,
    );
    assert_ne!(
        text,
        example(),
        "the example's provider addresses changed: update this test"
    );
    golden("v6", &text);
}

#[test]
fn golden_packet_too_big() {
    // A PA MTU of 1500 cannot carry a 1500-byte client packet: the LB must say so.
    let text = example().replace("mtu = 1600", "mtu = 1500");
    assert_ne!(
        text,
        example(),
        "the example's provider MTU changed: update this test"
    );
    let dir = Scratch::new("toobig");
    let config = dir.path("policy.toml");
    std::fs::write(&config, &text).unwrap();
    let facts = dir.path("facts.json");
    std::fs::write(&facts, run(nvlb().arg("check").arg("--json").arg(&config))).unwrap();
    let (input, cases, out) = (
        dir.path("in.pcap"),
        dir.path("in.json"),
        dir.path("out.pcap"),
    );
    craft(&[Path::new("toobig"), &facts, &input, &cases]);
    replay_and_check(&dir, &config, &input, &cases, &out);
}
