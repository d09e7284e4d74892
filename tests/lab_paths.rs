//! The lab's paths one at a time, on the real lab (`nvlb lab`: namespaces, the real LB,
//! host simulators, kernel TCP in the VMs, curl):
//!
//! - path MTU: with the PA MTU lowered to 1400, 10 MiB uploads and downloads through
//!   every VIP complete, because the LB's frag-needed/packet-too-big reaches the client
//!   and the hosts' reaches the VMs (the kernels' route caches hold exactly the MTU
//!   the LB and the hosts computed), v4 and v6;
//! - a host injecting a DIP's reply for a flow whose DIP it does not hold is counted
//!   (`drop.spoofed_pa`) and dropped, and the real flow goes on;
//! - a capture of the PA network shows each path with its VSID, outer PAs and inner
//!   CAs (full NAT for CA VIPs), with IPv4 outer, and with IPv6 outer when the LB keeps
//!   only its IPv6 PA (then every VIP still answers).
//!
//! Each test uses its own namespace prefix and checks that nothing with it is left.
//! Skips (and passes) when not root or without `ip netns`. The tests run one at a time:
//! the machine has two cores and each lab is timing-sensitive.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nvlb::craft::{self, Outer, Transport};
use nvlb::dataplane::afpacket::Socket;
use nvlb::wire::{MacAddr, tcp};

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
/// The VIPs of lb-config/example.toml and how many DIPs each has.
const VIPS: [&str; 7] = [
    "blue-web",
    "blue-web6",
    "blue-vip1",
    "blue-vip1-v6",
    "red-web",
    "red-web6",
    "red-vip1",
];
const REQUESTS: usize = 40;
/// 1400 - outer IPv4 (20) - GRE with key (8) - inner Ethernet (14).
const INNER_MTU_AT_1400: u32 = 1358;
const CLIENT_V4: &str = "192.0.2.100";
const CLIENT_V6: &str = "2001:db8:c::100";
const PUBLIC_VIPS: [&str; 4] = [
    "203.0.113.10",
    "203.0.113.20",
    "2001:db8:203::10",
    "2001:db8:203::20",
];

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

/// One lab with a prefix of its own; removed when dropped (also after a failed
/// assertion) if the test has not taken it down itself.
struct Lab {
    prefix: String,
    gone: bool,
}

impl Lab {
    fn new(tag: char) -> Lab {
        let prefix = format!("nvt{}{tag}-", std::process::id());
        Lab {
            prefix,
            gone: false,
        }
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `nvlb lab --prefix P ARGS`; must succeed. Its stdout.
    fn run(&mut self, args: &[&str]) -> String {
        let mut all = vec!["lab", "--prefix", &self.prefix];
        all.extend_from_slice(args);
        let t = Instant::now();
        let out = nvlb(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "nvlb {} ({:.1} s):\n{stdout}",
            all.join(" "),
            t.elapsed().as_secs_f64()
        );
        assert!(
            out.status.success(),
            "nvlb lab exited {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        if !args.contains(&"--keep") {
            self.gone = true;
            let left = common::namespaces_with(&self.prefix);
            assert!(left.is_empty(), "namespaces left behind: {left:?}");
        }
        stdout
    }

    /// `nvlb lab --down`: its stdout (the LB's and hosts' counters); nothing may remain.
    fn down(&mut self) -> String {
        let out = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        self.gone = true;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("nvlb lab --down:\n{stdout}");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = common::namespaces_with(&self.prefix);
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        stdout
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.gone || !common::namespaces_with(&self.prefix).is_empty() {
            let _ = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        }
    }
}

/// Every VIP's table says all requests were answered, and the run says OK.
fn assert_every_vip_answered(stdout: &str) {
    for vip in VIPS {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("VIP {vip} (")))
            .unwrap_or_else(|| panic!("no table for {vip}"));
        assert!(
            line.ends_with(&format!(
                "{REQUESTS} requests, {REQUESTS} answered, 0 failed"
            )),
            "{line}"
        );
    }
    assert_eq!(
        stdout.matches("sha256 equal").count(),
        VIPS.len(),
        "one good bulk download per VIP"
    );
    assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
}

/// `key value` in the LB's counters (indented lines).
fn lb_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key)).then(|| w.next()?.parse().ok())?
    })
}

/// The sum of `key` over the hosts' one-line counters (`  host1: k v, k v`).
fn host_sum(text: &str, key: &str) -> u64 {
    text.lines()
        .filter(|l| l.trim_start().starts_with("host"))
        .flat_map(|l| l.split_once(": ").map(|(_, r)| r).unwrap_or("").split(", "))
        .filter_map(|kv| {
            let (k, v) = kv.split_once(' ')?;
            (k == key).then(|| v.parse::<u64>().ok())?
        })
        .sum()
}

/// The path MTU the kernel of `ns` has learned toward `dst`, if any.
fn learned_mtu(ns: &str, dst: &str) -> Option<u32> {
    let out = common::run("ip", &["-n", ns, "route", "get", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[test]
fn lowered_pa_mtu_large_transfers_complete_by_packet_too_big() {
    let _one = serial();
    if common::skip_without_netns() {
        return;
    }
    let mut lab = Lab::new('m');
    let req = REQUESTS.to_string();
    let stdout = lab.run(&["--keep", "--pa-mtu", "1400", "--upload", "--requests", &req]);
    assert_every_vip_answered(&stdout);
    // Uploads first: the client's full-size segments meet the PA MTU.
    let uploads: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("10485760 bytes to ") && l.ends_with("digest equal"))
        .collect();
    assert_eq!(uploads.len(), VIPS.len(), "{stdout}");
    let client = lab.ns("client");
    for vip in PUBLIC_VIPS {
        // Only an ICMP error can teach the client this MTU, and only the LB could
        // send it: client, router and VMs all have 1500.
        assert_eq!(
            learned_mtu(&client, vip),
            Some(INNER_MTU_AT_1400),
            "the client learned no path MTU toward {vip}: no packet-too-big reached it"
        );
    }
    // A tier-1 VM's uploads to the CA VIPs: its host answered it.
    for vm in ["blue-5", "red-5"] {
        for vip in ["10.0.0.100", "fd00:0:0:1::100"] {
            if vm == "red-5" && vip.contains(':') {
                continue; // Red has no IPv6 CA VIP.
            }
            assert_eq!(
                learned_mtu(&lab.ns(vm), vip),
                Some(INNER_MTU_AT_1400),
                "{vm} learned no path MTU toward {vip}"
            );
        }
    }

    // Downloads with nothing learned yet on either side: the client forgets what the
    // uploads taught it (so it offers a full MSS again); no DIP has been taught by its
    // host yet (the lab's downloads ran after the uploads, at the smaller MSS). Each
    // DIP's 1448-byte segments must now meet its host's packet-too-big.
    common::must("ip", &["-n", &client, "route", "flush", "cache"]);
    common::must("ip", &["-n", &client, "-6", "route", "flush", "cache"]);
    assert_eq!(learned_mtu(&client, "203.0.113.10"), None, "flushed");
    let bulk = std::env::temp_dir()
        .join(format!("{}lab", lab.prefix))
        .join("bulk.bin");
    let want = std::fs::read(&bulk).expect("the kept lab's bulk file");
    let mut servers = Vec::new();
    for vip in PUBLIC_VIPS {
        let url = if vip.contains(':') {
            format!("http://[{vip}]/bulk")
        } else {
            format!("http://{vip}/bulk")
        };
        let file = std::env::temp_dir().join(format!("{}dl", lab.prefix));
        let file_s = file.display().to_string();
        let out = common::run(
            "ip",
            &[
                "netns",
                "exec",
                &client,
                "curl",
                "--silent",
                "--max-time",
                "30",
                "--output",
                &file_s,
                "--write-out",
                "%{http_code} %{time_total} %header{x-served-by}",
                &url,
            ],
        );
        let info = String::from_utf8_lossy(&out.stdout).into_owned();
        let got = std::fs::read(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        println!("download {url}: {info}");
        assert!(out.status.success(), "curl {url}: {info}");
        assert!(got == want, "{url}: {} bytes, not the bulk file", got.len());
        let served_by = info.split_whitespace().nth(2).unwrap_or("").to_string();
        let client_addr = if vip.contains(':') {
            CLIENT_V6
        } else {
            CLIENT_V4
        };
        assert_eq!(
            learned_mtu(&lab.ns(&served_by), client_addr),
            Some(INNER_MTU_AT_1400),
            "{served_by} (serving {vip}) learned no path MTU toward the client"
        );
        servers.push(served_by);
    }

    let counters = lab.down();
    let replied = lb_counter(&counters, "replied").expect("LB counters");
    let host_ptb = host_sum(&counters, "too_big_answered");
    println!(
        "packet-too-big: LB replied {replied} (ARP/ND included), hosts answered {host_ptb}; \
         downloads served by {servers:?}"
    );
    // One per public VIP at least (the client's cache is per destination).
    assert!(replied >= 4, "{counters}");
    // Both tier-1 VMs (3 CA VIP paths) and the 4 download DIPs at least once each.
    assert!(host_ptb >= 7, "{counters}");
    for absent in [
        "drop.too_big_no_df",
        "drop.too_big",
        "io.tx_errors",
        "tx_errors",
    ] {
        assert!(
            !counters.contains(absent),
            "{absent} in the counters:\n{counters}"
        );
    }
}

#[test]
fn a_hosts_spoofed_return_is_counted_and_dropped() {
    let _one = serial();
    if common::skip_without_netns() {
        return;
    }
    let mut lab = Lab::new('s');
    let req = REQUESTS.to_string();
    let stdout = lab.run(&["--keep", "--requests", &req, "--bulk-bytes", "100000"]);
    assert_every_vip_answered(&stdout);

    // A real flow: the client holds a connection to Red's public VIP open (the server
    // waits for the request), so the LB has a binding to one of Red's DIPs.
    let vip: SocketAddr = "203.0.113.20:80".parse().unwrap();
    let mut conn = common::in_netns(&lab.ns("client"), move || {
        TcpStream::connect_timeout(&vip, Duration::from_secs(5)).expect("connect to red-web")
    })
    .join()
    .expect("client thread");
    let port = conn.local_addr().unwrap().port();

    // host1 runs only Blue VMs. It claims to be each of Red's DIPs (10.0.0.5 on host2,
    // 10.0.0.6 on host3) answering that flow: one of the two is the flow's DIP, whose
    // reply must come from its own host's PA.
    const COPIES: u32 = 3;
    let mut frames = Vec::new();
    for (dip, vm_mac) in [
        ("10.0.0.5", [0, 0x1d, 0xd8, 0xe0, 0x1c, 1]),
        ("10.0.0.6", [0, 0x1d, 0xd8, 0xe0, 0x1c, 2]),
    ] {
        let ip = craft::ip_packet(
            dip.parse().unwrap(),
            CLIENT_V4.parse().unwrap(),
            64,
            Transport::Tcp {
                src_port: 80,
                dst_port: port,
                flags: tcp::flags::ACK | tcp::flags::PSH,
                seq: 1,
                ack: 1,
            },
            b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nspoofed\n",
        );
        let inner = craft::ip_frame(MacAddr(vm_mac), MacAddr([2, 0, 0, 0xe1, 0, 0xfe]), &ip);
        let frame = craft::nvgre(
            &Outer {
                src_mac: MacAddr([2, 0, 0, 0, 6, 0x11]), // host1
                dst_mac: MacAddr([2, 0, 0, 0, 6, 0x0a]), // the LB's provider port
                src: IpAddr::V4(Ipv4Addr::new(192, 168, 6, 11)),
                dst: IpAddr::V4(Ipv4Addr::new(192, 168, 6, 10)),
                vsid: 6001,
                flow_id: 0,
            },
            &inner,
        );
        frames.extend(std::iter::repeat_n(frame, COPIES as usize));
    }
    let sent = common::in_netns(&lab.ns("host1"), move || {
        let sock = Socket::open("pa0", None).expect("AF_PACKET on host1's pa0");
        common::send_all(&sock, frames.into_iter())
    })
    .join()
    .expect("host1 thread");
    assert_eq!(sent, 2 * COPIES);
    std::thread::sleep(Duration::from_millis(200));

    // The real DIP still answers on the same connection, and the forged bytes never
    // reached the client.
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(b"GET /?after-spoof HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.ends_with("red-5\n") || answer.ends_with("red-6\n"),
        "{answer}"
    );
    assert!(!answer.contains("spoofed"), "{answer}");
    drop(conn);

    let counters = lab.down();
    // The copies naming the flow's DIP fail the binding's host check; those naming the
    // other Red DIP have no binding and fail the same check when translated from
    // policy (that DIP lives on host2 or host3, never on host1).
    assert_eq!(
        lb_counter(&counters, "drop.spoofed_pa"),
        Some(u64::from(2 * COPIES)),
        "every copy is spoofed_pa:\n{counters}"
    );
}

/// One TCP SYN inside NVGRE, as tshark read it.
#[derive(Debug, PartialEq, Eq)]
struct Syn {
    vsid: u32,
    outer_v6: bool,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    inner_src: IpAddr,
    inner_dst: IpAddr,
    dport: u16,
}

/// Source ports of the LB's health probes (`[balancer.health] probe_ports`, default).
const PROBE_PORTS: &str = "tcp.srcport >= 61000 && tcp.srcport <= 61999";

/// How many health-probe SYNs inside NVGRE `pcap` holds, and how many of them leave
/// from an address other than one of the LB's SNAT CAs (must be none).
fn probe_syns(pcap: &str) -> (usize, usize) {
    let filter = format!("gre && tcp.flags.syn == 1 && tcp.flags.ack == 0 && {PROBE_PORTS}");
    let out = common::run(
        "tshark",
        &[
            "-r",
            pcap,
            "-Y",
            &filter,
            "-T",
            "fields",
            "-E",
            "occurrence=l",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
        ],
    );
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snat = [
        "10.0.0.250",
        "10.0.1.250",
        "fd00:0:0:1::fa",
        "fd00:0:0:2::fa",
    ];
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    let mut foreign = 0;
    for line in text.lines() {
        total += 1;
        // The inner source is one of the two fields (the other may be the outer PA).
        if !line.split('\t').map(str::trim).any(|a| snat.contains(&a)) {
            foreign += 1;
        }
    }
    (total, foreign)
}

/// Every TCP SYN (without ACK) inside NVGRE in `pcap`, but the health probes'.
fn syns(pcap: &str) -> Vec<Syn> {
    let fields = [
        "frame.protocols",
        "gre.key",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.dstport",
    ];
    let filter = format!("gre && tcp.flags.syn == 1 && tcp.flags.ack == 0 && !({PROBE_PORTS})");
    let mut args = vec!["-r", pcap, "-Y", &filter, "-T", "fields"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let out = common::run("tshark", &args);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let list = |i: usize| -> Vec<IpAddr> {
                f.get(i)
                    .unwrap_or(&"")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap_or_else(|_| panic!("{s:?} in {line}")))
                    .collect()
            };
            let (v4_src, v4_dst, v6_src, v6_dst) = (list(2), list(3), list(4), list(5));
            // The first IP layer is the outer one: eth:ethertype:ip:gre:eth:...
            let layers: Vec<&str> = f[0]
                .split(':')
                .filter(|p| *p == "ip" || *p == "ipv6")
                .collect();
            assert_eq!(layers.len(), 2, "outer and inner IP: {line}");
            let outer_v6 = layers[0] == "ipv6";
            let inner_v6 = layers[1] == "ipv6";
            let pick = |v6: bool, nth: usize, src: bool| -> IpAddr {
                let l = match (v6, src) {
                    (false, true) => &v4_src,
                    (false, false) => &v4_dst,
                    (true, true) => &v6_src,
                    (true, false) => &v6_dst,
                };
                *l.get(nth)
                    .unwrap_or_else(|| panic!("address {nth} in {line}"))
            };
            let inner_nth = usize::from(inner_v6 == outer_v6);
            let key = u32::from_str_radix(f[1].trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("gre.key in {line}"));
            Syn {
                vsid: key >> 8,
                outer_v6,
                outer_src: pick(outer_v6, 0, true),
                outer_dst: pick(outer_v6, 0, false),
                inner_src: pick(inner_v6, inner_nth, true),
                inner_dst: pick(inner_v6, inner_nth, false),
                dport: f[6].parse().unwrap_or_else(|_| panic!("port in {line}")),
            }
        })
        .collect()
}

/// Every path a request of the example policy may take across the PA network, by
/// name: (name, SYN). `v6_outer` picks the PAs.
fn expected_paths(v6_outer: bool) -> Vec<(&'static str, Syn)> {
    let pa = |n: u8| -> IpAddr {
        if v6_outer {
            format!("fd00:6::{n}").parse().unwrap()
        } else {
            format!("192.168.6.{n}").parse().unwrap()
        }
    };
    let lb = pa(10);
    let host = |h: u8| pa(10 + h);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let syn = |vsid, from, to, src: &str, dst: &str, dport| Syn {
        vsid,
        outer_v6: v6_outer,
        outer_src: from,
        outer_dst: to,
        inner_src: ip(src),
        inner_dst: ip(dst),
        dport,
    };
    let mut v = Vec::new();
    // Public VIPs: LB -> the DIP's host, client address kept, inner dst the DIP's CA.
    // The same CAs are Blue's and Red's: only the VSID says which host holds them.
    for (name, vsid, client, dips) in [
        (
            "blue-web",
            5001,
            CLIENT_V4,
            &[
                ("10.0.0.5", 1),
                ("10.0.0.6", 2),
                ("10.0.0.7", 3),
                ("10.0.0.8", 3),
            ][..],
        ),
        (
            "blue-web6",
            5001,
            CLIENT_V6,
            &[
                ("fd00:0:0:1::5", 1),
                ("fd00:0:0:1::6", 2),
                ("fd00:0:0:1::7", 3),
                ("fd00:0:0:1::8", 3),
            ][..],
        ),
        (
            "red-web",
            6001,
            CLIENT_V4,
            &[("10.0.0.5", 2), ("10.0.0.6", 3)][..],
        ),
        (
            "red-web6",
            6001,
            CLIENT_V6,
            &[("fd00:0:0:1::5", 2), ("fd00:0:0:1::6", 3)][..],
        ),
    ] {
        for (dip, h) in dips {
            v.push((name, syn(vsid, lb, host(*h), client, dip, 80)));
        }
    }
    // CA VIPs: the tier-1 VM's host -> LB in the frontend VSID, to the VIP; then
    // LB -> the tier-2 DIP's host in the DIP's VSID, from the LB's CA there (full NAT).
    for (name, vsid, h, src, vip) in [
        ("blue-vip1 host1->LB", 5001, 1, "10.0.0.5", "10.0.0.100"),
        (
            "blue-vip1-v6 host1->LB",
            5001,
            1,
            "fd00:0:0:1::5",
            "fd00:0:0:1::100",
        ),
        ("red-vip1 host2->LB", 6001, 2, "10.0.0.5", "10.0.0.100"),
    ] {
        v.push((name, syn(vsid, host(h), lb, src, vip, 8080)));
    }
    for (name, vsid, snat, dips) in [
        (
            "blue-vip1 LB->tier2",
            5002,
            "10.0.1.250",
            &[("10.0.1.21", 4), ("10.0.1.22", 5)][..],
        ),
        (
            "blue-vip1-v6 LB->tier2",
            5002,
            "fd00:0:0:2::fa",
            &[("fd00:0:0:2::21", 4), ("fd00:0:0:2::22", 5)][..],
        ),
        (
            "red-vip1 LB->tier2",
            6002,
            "10.0.1.250",
            &[("10.0.1.21", 5)][..],
        ),
    ] {
        for (dip, h) in dips {
            v.push((name, syn(vsid, lb, host(*h), snat, dip, 8080)));
        }
    }
    v
}

/// Runs the lab with a capture and checks that every request SYN on the PA network is
/// one of the policy's paths, and that each path carried every request.
fn capture_and_check_paths(lab: &mut Lab, extra: &[&str], v6_outer: bool) {
    let pcap = std::env::temp_dir().join(format!("{}pa.pcap", lab.prefix));
    let pcap_s = pcap.display().to_string();
    let req = REQUESTS.to_string();
    let mut args = vec!["--capture", &pcap_s, "--requests", &req];
    args.extend_from_slice(extra);
    let stdout = lab.run(&args);
    assert_every_vip_answered(&stdout);
    assert!(stdout.contains("Capture: "), "{stdout}");
    let found = syns(&pcap_s);
    let (probes, foreign) = probe_syns(&pcap_s);
    let _ = std::fs::remove_file(&pcap);
    println!("health-probe SYNs on the PA network: {probes}");
    assert!(probes > 0, "the example's health checks sent no probe");
    assert_eq!(
        foreign, 0,
        "probe SYNs from an address that is no SNAT CA of the LB"
    );
    let expected = expected_paths(v6_outer);
    let mut counts: BTreeMap<&str, usize> = expected.iter().map(|(n, _)| (*n, 0)).collect();
    for s in &found {
        let Some((name, _)) = expected.iter().find(|(_, e)| e == s) else {
            panic!("a SYN on no path of the policy: {s:?}");
        };
        *counts.entry(name).or_default() += 1;
    }
    println!("request SYNs per path on the PA network: {counts:?}");
    for (name, n) in &counts {
        // Every request and the bulk download (SYN retransmissions may add more).
        assert!(
            *n > REQUESTS,
            "{name}: {n} SYNs captured, want {REQUESTS}+1"
        );
    }
}

#[test]
fn capture_shows_each_path_with_its_vsid_pas_and_cas() {
    let _one = serial();
    if common::skip_without_netns() {
        return;
    }
    let mut lab = Lab::new('c');
    capture_and_check_paths(&mut lab, &["--bulk-bytes", "100000"], false);
}

#[test]
fn ipv6_outer_only_every_vip_answers() {
    let _one = serial();
    if common::skip_without_netns() {
        return;
    }
    // The LB keeps only its IPv6 PA, so every host must tunnel to it over IPv6 too.
    let example = std::fs::read_to_string(common::EXAMPLE).unwrap();
    let text = example.replace(
        r#"addresses = ["192.168.6.10", "fd00:6::10"]"#,
        r#"addresses = ["fd00:6::10"]"#,
    );
    assert_ne!(text, example, "the example's provider addresses changed");
    let mut lab = Lab::new('6');
    let config = std::env::temp_dir().join(format!("{}v6.toml", lab.prefix));
    std::fs::write(&config, text).unwrap();
    let config_s = config.display().to_string();
    capture_and_check_paths(&mut lab, &["--config", &config_s], true);
    let _ = std::fs::remove_file(&config);
}
