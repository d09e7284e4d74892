//! The management API as a user meets it: the real `nvlb run` in a network namespace
//! this test creates (its two interfaces are veths whose peers stay in the same
//! namespace, where the test sends and captures frames), with `--api` on the
//! namespace's loopback and a tokens file made with `nvlb ctl hash-token`, driven by the
//! real `nvlb ctl` and `nvlb reload` binaries.
//!
//! It checks the 401/403/200 matrix, that a DIP added, drained, reweighted or removed
//! through the API is in the policy file, the running policy and the journal and
//! survives a restart, that a bad change is refused naming file:line and field with
//! nothing changed, that `nvlb reload` of a broken file exits 1 with its errors while
//! the old policy keeps forwarding, that an established flow follows its DIP's VM
//! when the orchestrator moves the VM's lookup record to another host, and that a
//! rule changed by `pool set` changes what the running LB does on the wire (one
//! client's new flows all to one DIP under `source_ip`, pings to the VIP dropped, an
//! idle flow reset at both ends after the rule's idle timeout). Each test has
//! its own namespace and temp dir, removed even when an assertion fails; it skips (and
//! passes) when not root or without `ip netns`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::api_lb::ApiLb;
use common::{EXAMPLE, capture, in_netns, send_all};
use nvlb::craft::{self, Transport};
use nvlb::dataplane::afpacket::{Recv, Socket, wait_any};
use nvlb::wire::{MacAddr, ethernet, gre, icmpv4, ip_proto, ipv4, tcp};
use serde_json::Value;

const LB_EXTERNAL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x0a]);
const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x01]);
const LB_PROVIDER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x0a]);
/// The PA side's peer of the LB (`pap`), host1's MAC.
const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x11]);
const BLUE_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
const API: &str = "127.0.0.1:9180";
const OPS: &str = "ops-secret-1";
const BLUE: &str = "blue-secret-2";
const RED: &str = "red-secret-3";

fn nvlb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nvlb"))
}

/// The LB in its namespace, its policy file and tokens in a temp dir.
type Lb = ApiLb;

impl Lb {
    /// The example policy and the three tokens; `tag` names the namespace and folder.
    fn create(tag: &str) -> Lb {
        let example = std::fs::read_to_string(EXAMPLE).unwrap();
        let tokens = [
            ("ops", "operator", OPS),
            ("b", "blue", BLUE),
            ("r", "red", RED),
        ];
        ApiLb::build("nvapi", tag, "tests/api.rs", &example, &tokens, API)
    }

    /// `nvlb ARGS` inside the namespace (so that the API's loopback address is ours).
    fn nvlb(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_nvlb")])
            .args(args)
            .output()
            .expect("run nvlb")
    }

    /// `nvlb ctl --api API [--token TOKEN] ARGS`.
    fn ctl(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut all = vec!["ctl", "--api", API];
        if let Some(t) = token {
            all.extend(["--token", t]);
        }
        all.extend(args);
        self.nvlb(&all)
    }

    /// `ctl --json ARGS`, which must succeed; its JSON answer.
    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = self.ctl(Some(token), &all);
        assert!(out.status.success(), "ctl {args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("ctl --json prints JSON")
    }

    fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("policy.toml.journal"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("journal lines are JSON"))
            .collect()
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dip_of<'a>(pool: &'a Value, ca: &str, port: u64) -> Option<&'a Value> {
    pool["dips"]
        .as_array()?
        .iter()
        .find(|d| d["ca"] == ca && d["port"] == port)
}

fn skip() -> bool {
    if common::skip_without_netns() {
        return true;
    }
    false
}

#[test]
fn tokens_decide_who_sees_and_changes_what() {
    if skip() {
        return;
    }
    let mut lb = Lb::create("auth");
    lb.start();
    let no = lb.ctl(None, &["pools", "blue-web"]);
    assert_eq!(no.status.code(), Some(1), "{}", text(&no));
    assert!(stderr(&no).contains("401"), "{}", text(&no));
    assert!(stderr(&no).contains("NVLB_TOKEN"), "{}", text(&no));
    let wrong = lb.ctl(Some("guess"), &["pools", "blue-web"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("401: unknown bearer token"),
        "{}",
        text(&wrong)
    );
    let other = lb.ctl(Some(RED), &["pools", "blue-web"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(stderr(&other).contains("403"), "{}", text(&other));
    let own = lb.ctl(Some(BLUE), &["pools", "blue-web"]);
    assert!(own.status.success(), "{}", text(&own));
    let table = String::from_utf8_lossy(&own.stdout);
    assert!(table.contains("pool blue-web (tenant blue)"), "{table}");
    assert!(
        table.contains("10.0.0.8") && table.contains("host3"),
        "{table}"
    );
    // Red changing Blue's pool: refused, nothing written.
    let add = lb.ctl(
        Some(RED),
        &["dip", "add", "blue-web", "10.0.0.5", "--port", "81"],
    );
    assert!(stderr(&add).contains("403"), "{}", text(&add));
    assert_eq!(
        std::fs::read_to_string(lb.policy()).unwrap(),
        std::fs::read_to_string(EXAMPLE).unwrap()
    );
    // A tenant sees only its own; operator calls need the operator.
    let pools = lb.json(RED, &["pools"]);
    let names: Vec<&str> = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["red-web", "red-web6", "red-vip1"]);
    let lookups = lb.ctl(Some(BLUE), &["lookup", "list"]);
    assert!(stderr(&lookups).contains("403"), "{}", text(&lookups));
    let reload = lb.nvlb(&["reload", "--api", API, "--token", BLUE]);
    assert_eq!(reload.status.code(), Some(1), "{}", text(&reload));
    assert_eq!(lb.json(OPS, &["whoami"])["scope"], "operator");
    assert_eq!(lb.json(OPS, &["vips"]).as_array().unwrap().len(), 7);
    lb.stop();
}

#[test]
fn changes_are_written_journaled_and_survive_a_restart() {
    if skip() {
        return;
    }
    let mut lb = Lb::create("persist");
    // Without health checks: the DIPs here answer nothing, so checks would turn them
    // down part-way through and the "nothing changed" comparison below would see the
    // health state move (it did, on a loaded machine), not the policy.
    std::fs::write(lb.policy(), common::without_health(&lb.policy())).unwrap();
    lb.start();
    let add = lb.ctl(
        Some(BLUE),
        &[
            "dip", "add", "blue-web", "10.0.0.5", "--port", "8081", "--weight", "3",
        ],
    );
    assert!(add.status.success(), "{}", text(&add));
    assert!(
        String::from_utf8_lossy(&add.stdout).contains("1 DIP(s) added"),
        "{}",
        text(&add)
    );
    let drain = lb.ctl(Some(BLUE), &["dip", "drain", "blue-web", "10.0.0.6"]);
    assert!(drain.status.success(), "{}", text(&drain));
    let weight = lb.ctl(Some(OPS), &["dip", "weight", "blue-web", "10.0.0.7", "4"]);
    assert!(weight.status.success(), "{}", text(&weight));
    let remove = lb.ctl(
        Some(BLUE),
        &["dip", "remove", "blue-web", "10.0.0.8", "--port", "80"],
    );
    assert!(remove.status.success(), "{}", text(&remove));
    let pool = lb.json(BLUE, &["pools", "blue-web"]);
    assert_eq!(dip_of(&pool, "10.0.0.5", 8081).unwrap()["weight"], 3);
    assert_eq!(dip_of(&pool, "10.0.0.6", 80).unwrap()["state"], "draining");
    assert_eq!(dip_of(&pool, "10.0.0.7", 80).unwrap()["weight"], 4);
    // Removed, but still draining its flows until the drain timeout.
    assert_eq!(dip_of(&pool, "10.0.0.8", 80).unwrap()["state"], "draining");

    // A bad change: refused with file:line and field, nothing changed.
    let file_before = std::fs::read_to_string(lb.policy()).unwrap();
    let bad = lb.ctl(Some(BLUE), &["dip", "weight", "blue-web", "10.0.0.7", "-5"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = stderr(&bad);
    assert!(err.contains("422"), "{err}");
    assert!(
        err.contains("policy.toml:") && err.contains("tenant[0].vip[0].dips[2].weight"),
        "{err}"
    );
    let unknown = lb.ctl(Some(BLUE), &["dip", "add", "blue-web", "10.0.0.99"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(stderr(&unknown).contains("10.0.0.99"), "{}", text(&unknown));
    let malformed = lb.ctl(
        Some(BLUE),
        &[
            "call",
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.5", "port": "x"}"#,
        ],
    );
    assert!(
        stderr(&malformed).contains("400: port: expected an integer"),
        "{}",
        text(&malformed)
    );
    assert_eq!(std::fs::read_to_string(lb.policy()).unwrap(), file_before);
    assert_eq!(lb.json(BLUE, &["pools", "blue-web"])["dips"], pool["dips"]);

    // The file keeps the operator's comments, and the journal has every attempt.
    assert!(file_before.contains("# Figure 6: Blue VIP1"));
    let journal = lb.journal();
    let results: Vec<&str> = journal
        .iter()
        .map(|j| j["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "applied", "applied", "applied", "applied", "refused", "refused"
        ]
    );
    assert_eq!(journal[0]["token"], "b");
    assert_eq!(journal[2]["token"], "ops");
    assert_eq!(journal[0]["call"], "POST /v1/pools/blue-web/dips");

    // A restart loads what the API wrote.
    lb.stop();
    lb.start();
    let pool = lb.json(OPS, &["pools", "blue-web"]);
    assert_eq!(dip_of(&pool, "10.0.0.5", 8081).unwrap()["weight"], 3);
    assert_eq!(dip_of(&pool, "10.0.0.6", 80).unwrap()["state"], "draining");
    assert_eq!(dip_of(&pool, "10.0.0.7", 80).unwrap()["weight"], 4);
    assert!(dip_of(&pool, "10.0.0.8", 80).is_none());
    let check = nvlb().arg("check").arg(lb.policy()).output().unwrap();
    assert!(check.status.success(), "{}", text(&check));
    lb.stop();
}

/// What the LB sent to the PA network for the client's flow from `port`: (outer
/// destination, inner destination).
fn nvgre_of(frame: &[u8], port: u16) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let t = tunnelled(frame)?;
    (t.client_port == port).then_some((t.host_pa, t.dip))
}

/// Sends one TCP segment of the client's flow from `port` to Blue's VIP and returns
/// where the LB tunnelled it, if it did within 3 s.
fn send_segment(ns: &str, port: u16, flags: u8) -> Option<(Ipv4Addr, Ipv4Addr)> {
    in_netns(ns, move || {
        let pa = Socket::open("pap", None).expect("capture socket");
        let ext = Socket::open("extp", None).expect("send socket");
        let ack = if flags & tcp::flags::ACK != 0 { 1 } else { 0 };
        ext.send(&client_segment(port, flags, 1000, ack))
            .expect("send");
        let mut buf = vec![0u8; 65536];
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            match pa.recv(&mut buf).expect("recv") {
                Recv::Frame(n, _) => {
                    if let Some(hit) = buf.get(..n).and_then(|f| nvgre_of(f, port)) {
                        return Some(hit);
                    }
                }
                Recv::Truncated(_) => {}
                Recv::Empty => {
                    pa.wait(Duration::from_millis(100)).expect("poll");
                }
            }
        }
        None
    })
    .join()
    .expect("traffic thread")
}

#[test]
fn reload_of_a_broken_file_is_refused_and_the_old_policy_serves() {
    if skip() {
        return;
    }
    let mut lb = Lb::create("reload");
    // The SYNs and the generation this test counts would race the health checks.
    std::fs::write(lb.policy(), common::without_health(&lb.policy())).unwrap();
    lb.start();
    assert!(
        send_segment(&lb.ns, 41000, tcp::flags::SYN).is_some(),
        "the LB forwards before the reload"
    );
    // The API's flow counts come from the workers' published counters (every 100 ms,
    // per-pool counts from a scan at most once a second): that SYN's binding shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let flows = loop {
        let f = lb.json(OPS, &["flows"]);
        if f["pools"]["blue-web"].as_u64().unwrap_or(0) >= 1 || std::time::Instant::now() > deadline
        {
            break f;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(flows["available"], true, "{flows}");
    assert_eq!(flows["total"], 1, "{flows}");
    assert_eq!(flows["tenants"]["blue"], 1, "{flows}");
    assert_eq!(flows["pools"]["blue-web"], 1, "{flows}");
    let good = std::fs::read_to_string(lb.policy()).unwrap();
    std::fs::write(lb.policy(), good.replace("weight = 2", "weight = -2")).unwrap();
    let out = lb.nvlb(&["reload", "--api", API, "--token", OPS]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("reload refused, the running policy stays"),
        "{err}"
    );
    let line = good
        .lines()
        .position(|l| l.contains("weight = 2"))
        .map(|i| i + 1)
        .unwrap();
    assert!(
        err.contains(&format!("policy.toml:{line}:")) && err.contains("weight"),
        "{err}"
    );
    // Still the old policy: the same DIPs, and new flows are still balanced.
    let pool = lb.json(OPS, &["pools", "blue-web"]);
    assert_eq!(dip_of(&pool, "10.0.0.8", 80).unwrap()["weight"], 2);
    assert!(
        send_segment(&lb.ns, 41001, tcp::flags::SYN).is_some(),
        "the old policy keeps serving"
    );
    // Fixed and reloaded: applied, exit 0.
    std::fs::write(
        lb.policy(),
        good.replace(
            "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
            "{ ca = \"10.0.0.8\", port = 80, weight = 5 }",
        ),
    )
    .unwrap();
    let out = lb.nvlb(&["reload", "--api", API, "--token", OPS]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied: generation 2"));
    let pool = lb.json(OPS, &["pools", "blue-web"]);
    assert_eq!(dip_of(&pool, "10.0.0.8", 80).unwrap()["weight"], 5);
    let j = lb.journal();
    assert_eq!(j.len(), 2);
    assert_eq!(
        (j[0]["result"].as_str(), j[1]["result"].as_str()),
        (Some("refused"), Some("applied"))
    );
    lb.stop();
}

/// The PA and name of the host a Blue DIP CA lives on, and its VM's MAC, by the API.
fn placement(lb: &Lb, ca: &str) -> (String, String, String) {
    let l = lb.json(OPS, &["lookup", "list"]);
    let r = l
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vsid"] == 5001 && r["ca"] == ca)
        .unwrap_or_else(|| panic!("no record for {ca}: {l}"));
    (
        r["pa"][0].as_str().unwrap().to_string(),
        r["host"].as_str().unwrap().to_string(),
        r["mac"].as_str().unwrap().to_string(),
    )
}

#[test]
fn an_established_flow_follows_its_vm_to_the_new_host() {
    if skip() {
        return;
    }
    let mut lb = Lb::create("move");
    lb.start();
    let port = 42000;
    let (pa, dip) = send_segment(&lb.ns, port, tcp::flags::SYN).expect("the SYN is tunnelled");
    let ca = dip.to_string();
    let (pa_by_api, host, mac) = placement(&lb, &ca);
    assert_eq!(
        pa.to_string(),
        pa_by_api,
        "the SYN went to {ca}'s host {host}"
    );
    // The orchestrator live-migrates the VM to host5 (192.168.6.15), no Blue DIP's host.
    let out = lb.ctl(Some(OPS), &["lookup", "set", "5001", &ca, "host5", &mac]);
    assert!(out.status.success(), "{}", text(&out));
    let (new_pa, new_host, _) = placement(&lb, &ca);
    assert_eq!(
        (new_pa.as_str(), new_host.as_str()),
        ("192.168.6.15", "host5")
    );
    let pool = lb.json(OPS, &["pools", "blue-web"]);
    assert_eq!(dip_of(&pool, &ca, 80).unwrap()["host"], "host5");
    // The next segment of the same connection goes to the VM at its new host at once.
    let (pa2, dip2) =
        send_segment(&lb.ns, port, tcp::flags::ACK).expect("the established flow is tunnelled");
    assert_eq!(dip2, dip, "the flow keeps its DIP");
    assert_eq!(
        pa2,
        Ipv4Addr::new(192, 168, 6, 15),
        "and reaches its new host"
    );
    // The move is in the file (a restart keeps it) and in the journal.
    let text = std::fs::read_to_string(lb.policy()).unwrap();
    assert!(
        text.contains(&format!("ca = \"{ca}\"\nhost = \"host5\"")),
        "{text}"
    );
    let j = lb.journal();
    assert_eq!(j.last().unwrap()["call"], "PATCH /v1/lookups");
    assert_eq!(j.last().unwrap()["before"][0]["host"], host.as_str());
    lb.stop();
}

/// A TCP segment of the client's that the LB tunnelled to the PA network, as captured
/// there: where it went and what it carried.
#[derive(Clone, Copy, Debug)]
struct Tunnelled {
    lb_pa: Ipv4Addr,
    host_pa: Ipv4Addr,
    key: u32,
    /// Inner MACs: the LB's in the DIP's subnet, and the DIP VM's.
    lb_mac: MacAddr,
    vm_mac: MacAddr,
    dip: Ipv4Addr,
    client_port: u16,
    flags: u8,
    seq: u32,
}

/// The client's TCP segment in an NVGRE frame the LB sent, if `frame` is one.
fn tunnelled(frame: &[u8]) -> Option<Tunnelled> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != ip_proto::GRE {
        return None;
    }
    let g = gre::Packet::new_checked(ip.payload()).ok()?;
    let inner = ethernet::Frame::new_checked(g.payload()).ok()?;
    let iip = ipv4::Packet::new_checked(inner.payload()).ok()?;
    if iip.protocol() != ip_proto::TCP || iip.src_addr() != CLIENT {
        return None;
    }
    let t = tcp::Packet::new_checked(iip.payload()).ok()?;
    Some(Tunnelled {
        lb_pa: ip.src_addr(),
        host_pa: ip.dst_addr(),
        key: g.key()?,
        lb_mac: inner.src_addr(),
        vm_mac: inner.dst_addr(),
        dip: iip.dst_addr(),
        client_port: t.src_port(),
        flags: t.flags(),
        seq: t.seq_number(),
    })
}

/// A plain TCP segment from Blue's VIP to the client (what the LB sends the Internet):
/// (client port, flags, sequence number).
fn to_client(frame: &[u8]) -> Option<(u16, u8, u32)> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != ip_proto::TCP || ip.src_addr() != BLUE_VIP || ip.dst_addr() != CLIENT {
        return None;
    }
    let t = tcp::Packet::new_checked(ip.payload()).ok()?;
    (t.src_port() == 80).then(|| (t.dst_port(), t.flags(), t.seq_number()))
}

/// A TCP segment of the client's flow from `port` to Blue's VIP, framed as the
/// Internet gateway sends it to the LB.
fn client_segment(port: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let ip = craft::ip_packet(
        IpAddr::V4(CLIENT),
        IpAddr::V4(BLUE_VIP),
        64,
        Transport::Tcp {
            src_port: port,
            dst_port: 80,
            flags,
            seq,
            ack,
        },
        &[],
    );
    craft::ip_frame(GATEWAY_MAC, LB_EXTERNAL_MAC, &ip)
}

/// Sends a SYN of the client's flow from each of `ports` to Blue's VIP (all at once)
/// and returns the DIP the LB tunnelled each to, by port; a port is missing when its
/// SYN was not tunnelled (captured until 2 s pass without a frame).
fn syn_dips(ns: &str, ports: &[u16]) -> BTreeMap<u16, Ipv4Addr> {
    let ports = ports.to_vec();
    in_netns(ns, move || {
        let pa = Socket::open("pap", None).expect("capture socket");
        let ext = Socket::open("extp", None).expect("send socket");
        let frames = ports
            .iter()
            .map(|&p| client_segment(p, tcp::flags::SYN, 1000, 0));
        assert_eq!(send_all(&ext, frames) as usize, ports.len(), "SYNs sent");
        let mut dips = BTreeMap::new();
        capture(&pa, Duration::from_secs(2), |f| {
            if let Some(t) = tunnelled(f).filter(|t| ports.contains(&t.client_port)) {
                dips.insert(t.client_port, t.dip);
            }
            dips.len() == ports.len()
        });
        dips
    })
    .join()
    .expect("traffic thread")
}

/// Whether the LB answers a ping (echo identifier `ident`) from the client to Blue's
/// VIP within `wait`.
fn echo_answered(ns: &str, ident: u16, wait: Duration) -> bool {
    in_netns(ns, move || {
        let ext = Socket::open("extp", None).expect("socket");
        let mut icmp = vec![0u8; icmpv4::HEADER_LEN + 8];
        let mut p = icmpv4::Packet::new_unchecked(&mut icmp[..]);
        p.set_msg_type(icmpv4::msg_type::ECHO_REQUEST);
        p.set_echo_ident(ident);
        p.set_echo_seq_no(1);
        p.data_mut().copy_from_slice(b"nvlb-api");
        p.fill_checksum();
        let ip = craft::ip_with_payload(
            IpAddr::V4(CLIENT),
            IpAddr::V4(BLUE_VIP),
            64,
            ip_proto::ICMP,
            &mut icmp,
        );
        ext.send(&craft::ip_frame(GATEWAY_MAC, LB_EXTERNAL_MAC, &ip))
            .expect("send");
        let is_reply = |f: &[u8]| {
            let Ok(eth) = ethernet::Frame::new_checked(f) else {
                return false;
            };
            let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
                return false;
            };
            ip.protocol() == ip_proto::ICMP
                && ip.src_addr() == BLUE_VIP
                && ip.dst_addr() == CLIENT
                && icmpv4::Packet::new_checked(ip.payload()).is_ok_and(|e| {
                    e.msg_type() == icmpv4::msg_type::ECHO_REPLY && e.echo_ident() == ident
                })
        };
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match ext.recv(&mut buf).expect("recv") {
                Recv::Frame(n, _) if is_reply(&buf[..n]) => return true,
                Recv::Frame(..) | Recv::Truncated(_) => {}
                Recv::Empty => {
                    ext.wait(left.min(Duration::from_millis(100)))
                        .expect("poll");
                }
            }
        }
        false
    })
    .join()
    .expect("traffic thread")
}

/// What [`idle_resets`] saw.
#[derive(Debug, Default)]
struct Resets {
    /// The DIP's ACK reached the client (the LB took it as the flow's reply).
    reply_forwarded: bool,
    /// Sequence numbers of the LB's RST to the client and to the DIP, and when each
    /// came (after the DIP's ACK).
    to_client: Option<(u32, Duration)>,
    to_dip: Option<(u32, Duration)>,
}

/// The client's acknowledgment and sequence numbers in [`idle_resets`]' flow (the
/// DIP's are the other way round).
const CLIENT_ACK: u32 = 5000;
const CLIENT_SEQ: u32 = 1000;

/// Makes an established flow from the client's `port` to Blue's VIP with both ends'
/// acknowledgment numbers seen (the client's ACK, then the DIP's ACK back through its
/// host, as the host would tunnel it) and lets it idle: the RSTs the LB sends within
/// `wait`.
fn idle_resets(ns: &str, port: u16, wait: Duration) -> Resets {
    in_netns(ns, move || {
        let pa = Socket::open("pap", None).expect("PA socket");
        let ext = Socket::open("extp", None).expect("external socket");
        let mut buf = vec![0u8; 65536];
        let mut seen = Resets::default();
        ext.send(&client_segment(
            port,
            tcp::flags::ACK,
            CLIENT_SEQ,
            CLIENT_ACK,
        ))
        .expect("send");
        let mut forward = None;
        capture(&pa, Duration::from_secs(3), |f| {
            forward = tunnelled(f).filter(|t| t.client_port == port);
            forward.is_some()
        });
        let Some(fwd) = forward else {
            return seen;
        };
        let ip = craft::ip_packet(
            IpAddr::V4(fwd.dip),
            IpAddr::V4(CLIENT),
            64,
            Transport::Tcp {
                src_port: 80,
                dst_port: port,
                flags: tcp::flags::ACK,
                seq: CLIENT_ACK,
                ack: CLIENT_SEQ,
            },
            &[],
        );
        let outer = craft::Outer {
            src_mac: HOST_MAC,
            dst_mac: LB_PROVIDER_MAC,
            src: IpAddr::V4(fwd.host_pa),
            dst: IpAddr::V4(fwd.lb_pa),
            vsid: fwd.key >> 8,
            flow_id: (fwd.key & 0xff) as u8,
        };
        pa.send(&craft::nvgre(
            &outer,
            &craft::ip_frame(fwd.vm_mac, fwd.lb_mac, &ip),
        ))
        .expect("send");
        let t = Instant::now();
        while t.elapsed() < wait && (seen.to_client.is_none() || seen.to_dip.is_none()) {
            for sock in [&ext, &pa] {
                loop {
                    match sock.recv(&mut buf).expect("recv") {
                        Recv::Frame(n, _) => {
                            let f = &buf[..n];
                            match to_client(f) {
                                Some((p, fl, seq)) if p == port && fl & tcp::flags::RST != 0 => {
                                    seen.to_client = Some((seq, t.elapsed()));
                                }
                                Some((p, _, _)) if p == port => seen.reply_forwarded = true,
                                _ => {}
                            }
                            if let Some(r) = tunnelled(f).filter(|r| {
                                r.client_port == port
                                    && r.dip == fwd.dip
                                    && r.flags & tcp::flags::RST != 0
                            }) {
                                seen.to_dip = Some((r.seq, t.elapsed()));
                            }
                        }
                        Recv::Truncated(_) => {}
                        Recv::Empty => break,
                    }
                }
            }
            wait_any(&[&ext, &pa], Duration::from_millis(100)).expect("poll");
        }
        seen
    })
    .join()
    .expect("traffic thread")
}

#[test]
fn pool_set_changes_a_rule_in_the_file_and_the_running_pool() {
    if skip() {
        return;
    }
    let mut lb = Lb::create("rule");
    // This test sends traffic through the pool: no health checks to race.
    let example = common::without_health(&lb.policy());
    let red = "[[tenant]]\nname = \"red\"";
    let outbound = "[[tenant.outbound]]\nname = \"blue-out\"\naddress = \"203.0.113.11\"\n\
                    pools = [\"blue-web\"]\nports = \"40000-49999\"\nports_per_dip = 2000\n\n";
    std::fs::write(
        lb.policy(),
        example.replacen(red, &format!("{outbound}{red}"), 1),
    )
    .unwrap();
    lb.start();
    // On the wire before the change (five_tuple, pings answered): new flows of one
    // client spread over the DIPs by their ports.
    let before_ports: Vec<u16> = (50_000..50_032).collect();
    let spread = syn_dips(&lb.ns, &before_ports);
    assert_eq!(
        spread.len(),
        before_ports.len(),
        "every SYN is tunnelled before the change: {spread:?}"
    );
    let spread_dips: BTreeSet<Ipv4Addr> = spread.values().copied().collect();
    println!(
        "five_tuple: {} flows of {CLIENT} went to {spread_dips:?}",
        spread.len()
    );
    assert!(
        spread_dips.len() >= 2,
        "five_tuple: {} flows of one client all went to {spread_dips:?}",
        spread.len()
    );
    assert!(
        echo_answered(&lb.ns, 7, Duration::from_secs(3)),
        "the LB answers a ping to the VIP before the change"
    );
    let before = std::fs::read_to_string(lb.policy()).unwrap();
    let set = lb.ctl(
        Some(BLUE),
        &[
            "pool",
            "set",
            "blue-web",
            "--distribution",
            "source_ip",
            "--idle-timeout",
            "4m",
            "--tcp-reset",
            "true",
            "--icmp-echo",
            "drop",
        ],
    );
    assert!(set.status.success(), "{}", text(&set));
    let out = String::from_utf8_lossy(&set.stdout);
    assert!(out.contains("applied: generation 2"), "{out}");
    assert!(
        out.contains("pool blue-web (tenant blue)")
            && out.contains(
                "rule lb: distribution source_ip, idle_timeout 240s, tcp_reset true, icmp_echo drop"
            ),
        "{out}"
    );
    let pool = lb.json(BLUE, &["pools", "blue-web"]);
    assert_eq!(pool["rule"]["distribution"], "source_ip");
    assert_eq!(pool["rule"]["idle_timeout_s"], 240);
    assert_eq!(pool["rule"]["tcp_reset"], true);
    let file = std::fs::read_to_string(lb.policy()).unwrap();
    assert!(
        file.contains("distribution = \"source_ip\"\nidle_timeout = \"4m\"\ntcp_reset = true"),
        "{file}"
    );
    assert!(file.contains("# Figure 6: Blue VIP1"));
    // And on the wire: the running engine has the new rule. The client's new flows (new
    // ports) all go to one DIP now, and a ping to the VIP is dropped.
    let after_ports: Vec<u16> = (50_100..50_132).collect();
    let affine = syn_dips(&lb.ns, &after_ports);
    assert_eq!(
        affine.len(),
        after_ports.len(),
        "every SYN is tunnelled after the change: {affine:?}"
    );
    let affine_dips: BTreeSet<Ipv4Addr> = affine.values().copied().collect();
    println!(
        "source_ip: {} flows of {CLIENT} went to {affine_dips:?}",
        affine.len()
    );
    assert_eq!(
        affine_dips.len(),
        1,
        "after `pool set --distribution source_ip` the client's {} new flows went to \
         {affine_dips:?}: the running pool still spreads them (before: {spread_dips:?})",
        affine.len()
    );
    assert!(
        !echo_answered(&lb.ns, 8, Duration::from_secs(1)),
        "after `pool set --icmp-echo drop` the LB still answers a ping to the VIP"
    );
    // `none` removes the idle timeout again; --json gives the change and the pool.
    let v = lb.json(BLUE, &["pool", "set", "blue-web", "--idle-timeout", "none"]);
    assert!(v["pool"]["rule"]["idle_timeout_s"].is_null(), "{v}");
    assert_eq!(v["applied"]["before"]["idle_timeout"], "\"4m\"");
    // Another tenant's pool and a bad value: refused, the file unchanged.
    let file = std::fs::read_to_string(lb.policy()).unwrap();
    let other = lb.ctl(
        Some(RED),
        &["pool", "set", "blue-web", "--tcp-reset", "false"],
    );
    assert_eq!(other.status.code(), Some(1), "{}", text(&other));
    assert!(stderr(&other).contains("403"), "{}", text(&other));
    let bad = lb.ctl(
        Some(BLUE),
        &["pool", "set", "blue-web", "--distribution", "round_robin"],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let err = stderr(&bad);
    assert!(
        err.contains("422") && err.contains("policy.toml:") && err.contains("distribution"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(lb.policy()).unwrap(), file);
    assert_ne!(file, before);
    // The outbound rule: Blue sees it with each DIP's block, Red sees none.
    let out = lb.ctl(Some(BLUE), &["outbound"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    assert!(
        table.contains("blue-out")
            && table.contains("203.0.113.11")
            && table.contains("40000-41999")
            && table.contains("46000-47999"),
        "{table}"
    );
    assert_eq!(lb.json(RED, &["outbound"]), serde_json::json!([]));
    let j = lb.journal();
    assert_eq!(j.len(), 3, "{j:?}");
    assert_eq!(j[0]["call"], "PATCH /v1/pools/blue-web");
    // The idle timeout and tcp_reset on the wire: with a 2 s idle timeout (tcp_reset is
    // still true), an established flow that idles is reset at both ends, each RST with
    // the sequence number its receiver acknowledged last.
    let v = lb.json(BLUE, &["pool", "set", "blue-web", "--idle-timeout", "2s"]);
    assert_eq!(v["pool"]["rule"]["idle_timeout_s"], 2, "{v}");
    let resets = idle_resets(&lb.ns, 50_200, Duration::from_secs(10));
    println!("idle 2 s, tcp_reset: {resets:?}");
    assert!(
        resets.reply_forwarded,
        "the DIP's ACK did not reach the client: {resets:?}"
    );
    let (client_seq, client_after) = resets.to_client.unwrap_or_else(|| {
        panic!("no RST to the client within 10 s of idling (idle_timeout 2s, tcp_reset true)")
    });
    let (dip_seq, dip_after) = resets.to_dip.unwrap_or_else(|| {
        panic!("no RST to the DIP within 10 s of idling (idle_timeout 2s, tcp_reset true)")
    });
    assert_eq!(
        (client_seq, dip_seq),
        (CLIENT_ACK, CLIENT_SEQ),
        "{resets:?}"
    );
    assert!(
        client_after >= Duration::from_secs(1) && dip_after >= Duration::from_secs(1),
        "reset before the flow idled 2 s: {resets:?}"
    );
    lb.stop();
    // A restart runs what was written.
    lb.start();
    let pool = lb.json(OPS, &["pools", "blue-web"]);
    assert_eq!(pool["rule"]["distribution"], "source_ip");
    assert_eq!(pool["rule"]["icmp_echo"], "drop");
    lb.stop();
}
