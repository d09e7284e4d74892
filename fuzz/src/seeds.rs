//! Seed inputs for each target: the golden packets (scapy's frames from
//! tests/golden/craft.py, read from their pcaps), a few frames built with nvlb's own
//! builders when no pcap is given, the example policy and the bad policies of
//! lb-config/bad/, and request bodies. Must never write outside the directory given.

use std::io::BufReader;
use std::net::IpAddr;
use std::path::Path;

use nvlb::craft::{self, Outer, Transport};
use nvlb::pcap;
use nvlb::wire::tcp;

use crate::engine::{self, join};

/// A seed: a file name and its bytes.
pub type Seed = (String, Vec<u8>);

/// Frames of a classic pcap file.
pub fn pcap_frames(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader =
        pcap::Reader::new(BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut frames = Vec::new();
    for rec in reader {
        frames.push(rec.map_err(|e| format!("{}: {e}", path.display()))?.data);
    }
    Ok(frames)
}

/// Frames built here when no golden pcap is at hand: a public-VIP SYN over IPv4 and
/// IPv6, and a CA-VIP SYN from a VM through its host.
pub fn built_frames() -> Vec<Vec<u8>> {
    let p = engine::policy();
    let b = p.balancer();
    let client_mac = nvlb::wire::MacAddr([2, 0, 0, 0, 1, 0x77]);
    let syn = |src: u16, dst: u16| Transport::Tcp {
        src_port: src,
        dst_port: dst,
        flags: tcp::flags::SYN,
        seq: 1,
        ack: 0,
    };
    let mut v = Vec::new();
    for pool in p.pools().iter().filter(|x| x.frontend.is_public()) {
        let client: IpAddr = if pool.address.is_ipv6() {
            "2001:db8:ff::77".parse().unwrap()
        } else {
            "198.51.100.77".parse().unwrap()
        };
        // An all-ports rule (port 0) takes any port.
        let port = if pool.port == 0 { 22 } else { pool.port };
        let ip = craft::ip_packet(client, pool.address, 64, syn(40000, port), b"hello");
        v.push(craft::ip_frame(client_mac, b.external.mac, &ip));
    }
    for pool in p.pools().iter().filter(|x| !x.frontend.is_public()) {
        let Some(rec) = p
            .lookups()
            .iter()
            .find(|r| r.vsid == pool.frontend && r.ca.is_ipv6() == pool.address.is_ipv6())
        else {
            continue;
        };
        let host = p.host(rec.host);
        let (Some(src), Some(dst)) = (host.pa(false), b.provider.address_v4()) else {
            continue;
        };
        let Some(subnet) = p.subnet(pool.frontend) else {
            continue;
        };
        let ip = craft::ip_packet(rec.ca, pool.address, 64, syn(40000, pool.port), b"x");
        let outer = Outer {
            src_mac: host.mac,
            dst_mac: b.provider.mac,
            src,
            dst: IpAddr::V4(dst),
            vsid: pool.frontend.get(),
            flow_id: 7,
        };
        v.push(craft::nvgre(
            &outer,
            &craft::ip_frame(rec.mac, subnet.lb_mac, &ip),
        ));
    }
    v
}

/// Frames for the rules of the engine target's policy (`policy.rs`) that a SYN to each
/// VIP does not reach: an echo to an address that forwards echoes and to one that
/// drops them, a Red VM's connection to the Internet through its host (outbound SNAT)
/// and the Internet's answer to an outbound port, and the client's ACK that opens a
/// floating-IP flow.
pub fn rule_frames() -> Vec<Vec<u8>> {
    let p = engine::policy();
    let b = p.balancer();
    let client_mac = nvlb::wire::MacAddr([2, 0, 0, 0, 1, 0x77]);
    let client: IpAddr = "198.51.100.77".parse().unwrap();
    let internet: IpAddr = "192.0.2.100".parse().unwrap();
    let tcp = |src_port, dst_port, flags| Transport::Tcp {
        src_port,
        dst_port,
        flags,
        seq: 1,
        ack: 1,
    };
    let plain = |ip: &[u8]| craft::ip_frame(client_mac, b.external.mac, ip);
    let mut v = Vec::new();
    for vip in ["203.0.113.30", "203.0.113.31"] {
        // ICMP echo request, id 7, seq 1, checksum over the message.
        let mut echo = vec![8u8, 0, 0, 0, 0, 7, 0, 1, b'p', b'i', b'n', b'g'];
        let ck = nvlb::wire::checksum::data(&echo);
        echo[2..4].copy_from_slice(&ck.to_be_bytes());
        let ip = craft::ip_with_payload(client, vip.parse().unwrap(), 64, 1, &mut echo);
        v.push(plain(&ip));
    }
    let dsr: IpAddr = "203.0.113.21".parse().unwrap();
    v.push(plain(&craft::ip_packet(
        client,
        dsr,
        64,
        tcp(40001, 80, tcp::flags::ACK),
        b"",
    )));
    if let Some(rule) = p.outbound_rules().first()
        && let Some(source) = rule.sources.first()
        && let Some(rec) = p
            .lookups()
            .iter()
            .find(|r| r.vsid == source.vsid && r.ca == source.ca)
        && let (Some(src), Some(dst), Some(subnet)) = (
            p.host(rec.host).pa(false),
            b.provider.address_v4(),
            p.subnet(source.vsid),
        )
    {
        let outer = Outer {
            src_mac: p.host(rec.host).mac,
            dst_mac: b.provider.mac,
            src,
            dst: IpAddr::V4(dst),
            vsid: source.vsid.get(),
            flow_id: 9,
        };
        let ip = craft::ip_packet(rec.ca, internet, 64, tcp(33000, 8000, tcp::flags::SYN), b"");
        v.push(craft::nvgre(
            &outer,
            &craft::ip_frame(rec.mac, subnet.lb_mac, &ip),
        ));
        let ip = craft::ip_packet(
            internet,
            rule.address,
            64,
            tcp(8000, source.first_port, tcp::flags::SYN | tcp::flags::ACK),
            b"",
        );
        v.push(plain(&ip));
    }
    v
}

/// Engine seeds: every frame alone (control 0), alone and answered (control 2), and
/// each set's frames as one sequence on two workers with answers (control 3). The
/// built frames (a SYN to every VIP of the policy, rules included) and the rule frames
/// are always in; the golden pcaps' frames are added when given. One more sequence has
/// the clock step 3 s after each answered frame, so that the 2 s idle rules expire
/// their flows and the idle resets are built and checked.
pub fn engine_seeds(pcaps: &[&Path]) -> Result<Vec<Seed>, String> {
    let mut sets = Vec::new();
    for path in pcaps {
        let stem = path
            .file_stem()
            .map_or("pcap".into(), |s| s.to_string_lossy().into_owned());
        sets.push((stem, pcap_frames(path)?));
    }
    let built = built_frames();
    let rules = rule_frames();
    let mut idle = built.clone();
    idle.extend(rules.iter().cloned());
    sets.push(("built".into(), built));
    sets.push(("rules".into(), rules));
    let mut seeds = Vec::new();
    for (stem, frames) in &sets {
        for (i, f) in frames.iter().enumerate() {
            seeds.push((format!("{stem}-{i:03}"), join(0, std::slice::from_ref(f))));
            seeds.push((
                format!("{stem}-{i:03}-answered"),
                join(2, std::slice::from_ref(f)),
            ));
        }
        seeds.push((format!("{stem}-all"), join(3, frames)));
    }
    // Control: two workers, answers, 6 half-seconds of clock after each frame.
    seeds.push(("idle-all".into(), join((6 << 2) | 3, &idle)));
    Ok(seeds)
}

/// Config seeds: the example whole (mode 0) and with a rule of every kind, each file of
/// `bad_dir` whole, and every line of the example replaced by itself (mode 1), for the
/// fuzzer to change.
pub fn config_seeds(bad_dir: Option<&Path>) -> Result<Vec<Seed>, String> {
    let mut seeds = vec![
        ("example".to_string(), whole(crate::EXAMPLE)),
        // The example with a rule of every kind (the engine target's policy).
        ("rules".to_string(), whole(&crate::policy::text())),
    ];
    if let Some(dir) = bad_dir {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        entries.sort();
        for p in entries {
            let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let stem = p.file_stem().unwrap_or_default().to_string_lossy();
            seeds.push((format!("bad-{stem}"), whole(&text)));
        }
    }
    for (i, line) in crate::EXAMPLE.lines().enumerate() {
        if !line.contains('=') || line.trim_start().starts_with('#') {
            continue;
        }
        let mut v = vec![1u8];
        v.extend_from_slice(&u16::try_from(i).unwrap_or(0).to_le_bytes());
        v.extend_from_slice(line.as_bytes());
        seeds.push((format!("line-{:03}", i + 1), v));
    }
    Ok(seeds)
}

fn whole(text: &str) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(text.as_bytes());
    v
}

/// Request bodies of the kinds the management API takes (DIP, lookup record, subnet
/// changes) and a policy carried as a string.
pub fn api_seeds() -> Vec<Seed> {
    let bodies = [
        r#"{"ca": "10.0.0.9", "port": 80, "weight": 1, "host": "host1", "mac": "02:00:00:00:05:09", "vsid": 5001}"#.to_string(),
        r#"{"weight": 0, "state": "draining"}"#.to_string(),
        r#"{"upsert": [{"vsid": 5001, "ca": "10.0.0.9", "host": "host2", "mac": "02:00:00:00:05:09"}], "delete": [{"vsid": 5001, "ca": "10.0.0.6"}]}"#.to_string(),
        r#"{"prefixes": ["10.0.0.0/24", "fd00:b1::/64"], "lb_mac": "02:00:00:00:b1:0a", "snat": [{"ca": "10.0.0.250", "ports": "1024-65535"}]}"#.to_string(),
        r#"[1, -2, 3.5e10, true, null, "\u00e9"]"#.to_string(),
        serde_json::to_string(&serde_json::Value::String(crate::EXAMPLE.to_string()))
            .unwrap_or_default(),
    ];
    let mut seeds: Vec<Seed> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| (format!("body-{i}"), b.into_bytes()))
        .collect();
    seeds.extend(api_requests());
    seeds
}

/// One whole request for every call the API routes, with a body it accepts, so that
/// the fuzzer starts from each route (the harness's fixed route list predates some).
/// Not DELETE of a subnet: every subnet of the example has records, so the API refuses
/// it (the fixed route list asks it).
fn api_requests() -> Vec<Seed> {
    const OPS: Option<&str> = Some("OPS");
    const BLUE: Option<&str> = Some("BLUE");
    let calls: &[(&str, &str, Option<&str>, &str)] = &[
        ("GET", "/v1/tenants", OPS, ""),
        ("GET", "/v1/vips", BLUE, ""),
        ("GET", "/v1/pools", BLUE, ""),
        ("GET", "/v1/pools/blue-web6", BLUE, ""),
        ("GET", "/v1/outbound", OPS, ""),
        ("GET", "/v1/health", OPS, ""),
        ("GET", "/v1/flows", OPS, ""),
        ("GET", "/v1/lookups", OPS, ""),
        ("GET", "/v1/subnets", OPS, ""),
        (
            "PATCH",
            "/v1/pools/blue-web",
            OPS,
            r#"{"distribution": "source_ip", "idle_timeout": "4m", "tcp_reset": true, "icmp_echo": "forward"}"#,
        ),
        (
            "PATCH",
            "/v1/pools/blue-web",
            BLUE,
            r#"{"idle_timeout": null, "distribution": "five_tuple", "icmp_echo": "drop", "floating_ip": false}"#,
        ),
        (
            "POST",
            "/v1/pools/blue-web/pick",
            BLUE,
            r#"{"clients": ["198.51.100.7:40000", "192.0.2.1:1"], "port": 80, "protocol": "tcp"}"#,
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            OPS,
            r#"{"ca": "10.0.0.5", "port": 8080, "vsid": 5001, "weight": 2, "drain": false}"#,
        ),
        (
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.6/80?vsid=5001",
            OPS,
            r#"{"weight": 0, "drain": true}"#,
        ),
        (
            "DELETE",
            "/v1/pools/blue-web/dips/10.0.0.6?vsid=5001",
            BLUE,
            "",
        ),
        (
            "PATCH",
            "/v1/lookups",
            OPS,
            r#"{"set": [{"vsid": 5001, "ca": "10.0.0.9", "host": "host1", "mac": "02:00:00:00:05:09"}], "delete": []}"#,
        ),
        (
            "PUT",
            "/v1/subnets/5003",
            OPS,
            r#"{"tenant": "blue", "routing_domain": "blue-rd1", "prefixes": ["10.0.3.0/24"], "lb_mac": "02:00:00:00:b1:0c"}"#,
        ),
        ("POST", "/v1/reload", OPS, ""),
    ];
    let mut seeds: Vec<Seed> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, (m, path, token, body))| {
            let input = crate::api::request(m, path, *token, body)?;
            Some((format!("call-{i:02}-{}", m.to_lowercase()), input))
        })
        .collect();
    // PUT replaces every record, so its body is the example's records and one more.
    if let Some(input) = crate::api::request("PUT", "/v1/lookups", OPS, &all_records()) {
        seeds.push(("call-put-lookups".to_string(), input));
    }
    seeds
}

/// The example's lookup records as the API takes them, plus one for a new VM.
fn all_records() -> String {
    let Ok(p) = nvlb::policy::Snapshot::from_toml(crate::EXAMPLE, "example.toml") else {
        return String::new();
    };
    let mut records: Vec<serde_json::Value> = p
        .lookups()
        .iter()
        .map(|r| {
            serde_json::json!({
                "vsid": r.vsid.get(),
                "ca": r.ca.to_string(),
                "host": p.host(r.host).name,
                "mac": r.mac.to_string(),
            })
        })
        .collect();
    records.push(serde_json::json!({
        "vsid": 5001, "ca": "10.0.0.9", "host": "host2", "mac": "02:00:00:00:05:09"
    }));
    serde_json::json!({ "records": records }).to_string()
}

/// Writes seeds into `dir` (created), one file each; returns how many.
pub fn write(dir: &Path, seeds: &[Seed]) -> Result<usize, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, bytes) in seeds {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(seeds.len())
}
