//! `nvlb host` on real interfaces: a fake LB namespace on the PA link, host1 running
//! the simulator, and Blue's VM 10.0.0.5 / fd00:0:0:1::5 as a namespace with a real
//! kernel TCP listener on port 80 (LAB.md's names, under a per-process prefix).
//!
//! From the fake LB it sends NVGRE (VSID 5001) carrying a client's SYN to the VM, over
//! IPv4 and IPv6 inner, and expects the VM kernel's SYN-ACK back as NVGRE from host1's
//! PA with a valid TCP checksum. That proves decapsulation, the proxy's ARP/ND answer
//! for the VM's gateway (the VM cannot send the SYN-ACK without it) and encapsulation,
//! and — once tx offload is back on (the veth default; or throughout when ethtool is
//! missing) — the completion of partial checksums. An NVGRE frame with Red's VSID for Blue's MAC and one from an
//! undeclared PA must be dropped under their names (the test waits for both on the
//! simulator's `/metrics`); SIGTERM then exits 0 with counters.
//! Namespaces are deleted by a guard even when an assertion fails. Skips (and passes)
//! when not root or without `ip netns`. The exit-1 checks need no privileges.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    EXAMPLE, Namespaces, capture, counter, in_netns, lines_of, must, send_all, sigterm,
    wait_for_line,
};
use nvlb::craft::{self, Outer, Transport};
use nvlb::dataplane::afpacket::Socket;
use nvlb::engine::packet::IpPacket;
use nvlb::wire::{MacAddr, ethernet, gre, ip_proto, ipv4, tcp};

const LB_PROVIDER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x0a]);
const HOST1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x11]);
const VM_MAC: MacAddr = MacAddr([0x00, 0x1d, 0xd8, 0xb7, 0x1c, 0x01]);
/// Blue VSID 5001's lb_mac: the inner source of what the LB sends into the VSID.
const BLUE_LB_MAC: MacAddr = MacAddr([0x02, 0, 0, 0xb1, 0, 0xfe]);
const LB_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 6, 10);
const HOST1_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 6, 11);
const BLUE: u32 = 5001;
const RED: u32 = 6001;
const VM_ARG: &str = "5001,00:1d:d8:b7:1c:01,vm-b5";

/// The namespaces and the simulator; dropping it kills the simulator, then the
/// namespaces go.
struct Lab {
    lb: String,
    host: String,
    vm: String,
    sim: Option<Child>,
    /// Whether ethtool turned tx offload off on the VM's eth0.
    offload_off: bool,
    _namespaces: Namespaces,
}

impl Lab {
    fn create() -> Lab {
        let p = format!("nvt{}-", std::process::id());
        let (lb, host, vm) = (format!("{p}lb"), format!("{p}host1"), format!("{p}blue-5"));
        // The VM keeps IPv6 (its CA is dual-stack); the LB and host stay silent.
        let namespaces = Namespaces::create(&[(&lb, true), (&host, true), (&vm, false)]);
        let mut lab = Lab {
            lb,
            host,
            vm,
            sim: None,
            offload_off: false,
            _namespaces: namespaces,
        };
        let (lb_mac, host_mac, vm_mac) = (
            LB_PROVIDER_MAC.to_string(),
            HOST1_MAC.to_string(),
            VM_MAC.to_string(),
        );
        must(
            "ip",
            &[
                "link", "add", "pa-lb", "address", &lb_mac, "netns", &lab.lb, "type", "veth",
                "peer", "name", "pa0", "address", &host_mac, "netns", &lab.host,
            ],
        );
        must(
            "ip",
            &[
                "link", "add", "vm-b5", "netns", &lab.host, "type", "veth", "peer", "name", "eth0",
                "address", &vm_mac, "netns", &lab.vm,
            ],
        );
        for (ns, ifname) in [
            (&lab.lb, "pa-lb"),
            (&lab.host, "lo"),
            (&lab.host, "pa0"),
            (&lab.host, "vm-b5"),
            (&lab.vm, "lo"),
            (&lab.vm, "eth0"),
        ] {
            must("ip", &["-n", ns, "link", "set", ifname, "up"]);
        }
        let vm = lab.vm.as_str();
        must(
            "ip",
            &["-n", vm, "addr", "add", "10.0.0.5/24", "dev", "eth0"],
        );
        must(
            "ip",
            &[
                "-n",
                vm,
                "-6",
                "addr",
                "add",
                "fd00:0:0:1::5/64",
                "dev",
                "eth0",
                "nodad",
            ],
        );
        must(
            "ip",
            &["-n", vm, "route", "add", "default", "via", "10.0.0.1"],
        );
        must(
            "ip",
            &[
                "-n",
                vm,
                "-6",
                "route",
                "add",
                "default",
                "via",
                "fd00:0:0:1::1",
            ],
        );
        if Command::new("ethtool").arg("--version").output().is_ok() {
            must(
                "ip",
                &["netns", "exec", vm, "ethtool", "-K", "eth0", "tx", "off"],
            );
            lab.offload_off = true;
        }
        lab
    }

    /// `nvlb host` inside host1's namespace, stdout and stderr piped, its counters on
    /// `/metrics` at a port of host1's loopback it names on stderr.
    fn spawn_sim(&self) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.host,
                env!("CARGO_BIN_EXE_nvlb"),
                "host",
            ])
            .args(["--config", EXAMPLE, "--name", "host1", "--pa", "pa0"])
            .args(["--vm", VM_ARG, "--metrics", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nvlb host")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.sim.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One TCP exchange: the client endpoint and the VM's CA.
#[derive(Clone, Copy, Debug)]
struct Leg {
    client: IpAddr,
    ca: IpAddr,
    port: u16,
    seq: u32,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// What the LB would send: NVGRE from its PA to host1's, the client's SYN inside.
fn nvgre_syn(leg: Leg, vsid: u32, outer_src: Ipv4Addr) -> Vec<u8> {
    let syn = craft::ip_packet(
        leg.client,
        leg.ca,
        63,
        Transport::Tcp {
            src_port: leg.port,
            dst_port: 80,
            flags: tcp::flags::SYN,
            seq: leg.seq,
            ack: 0,
        },
        &[],
    );
    let outer = Outer {
        src_mac: LB_PROVIDER_MAC,
        dst_mac: HOST1_MAC,
        src: IpAddr::V4(outer_src),
        dst: IpAddr::V4(HOST1_PA),
        vsid,
        flow_id: 0x5a,
    };
    craft::nvgre(&outer, &craft::ip_frame(BLUE_LB_MAC, VM_MAC, &syn))
}

/// Ok when `frame` is the VM's SYN-ACK for `leg`, as host1 must encapsulate it.
fn nvgre_syn_ack(frame: &[u8], leg: Leg) -> Result<(), String> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|e| format!("ethernet: {e}"))?;
    if (eth.src_addr(), eth.dst_addr()) != (HOST1_MAC, LB_PROVIDER_MAC) {
        return Err(format!(
            "outer MACs {} -> {}",
            eth.src_addr(),
            eth.dst_addr()
        ));
    }
    let outer = ipv4::Packet::new_checked(eth.payload()).map_err(|e| format!("outer: {e}"))?;
    if (outer.src_addr(), outer.dst_addr(), outer.protocol()) != (HOST1_PA, LB_PA, ip_proto::GRE)
        || !outer.dont_frag()
        || outer.ttl() != 64
        || !outer.verify_checksum()
    {
        return Err(format!(
            "outer {} -> {} proto {} df {} ttl {}",
            outer.src_addr(),
            outer.dst_addr(),
            outer.protocol(),
            outer.dont_frag(),
            outer.ttl()
        ));
    }
    let g = gre::Packet::new_checked(outer.payload()).map_err(|e| format!("gre: {e}"))?;
    if g.flags_word() != gre::NVGRE_FLAGS
        || g.protocol_type() != ethernet::ethertype::TEB
        || g.vsid() != Some(BLUE)
    {
        return Err(format!(
            "GRE flags {:#x} proto {:#x} key {:?}",
            g.flags_word(),
            g.protocol_type(),
            g.key()
        ));
    }
    let inner = ethernet::Frame::new_checked(g.payload()).map_err(|e| format!("inner: {e}"))?;
    if (inner.src_addr(), inner.dst_addr()) != (VM_MAC, BLUE_LB_MAC) {
        return Err(format!(
            "inner MACs {} -> {}",
            inner.src_addr(),
            inner.dst_addr()
        ));
    }
    let v6 = inner.ethertype() == ethernet::ethertype::IPV6;
    let ip = IpPacket::parse(inner.payload(), v6).map_err(|e| format!("inner ip: {e:?}"))?;
    if (ip.src, ip.dst, ip.proto) != (leg.ca, leg.client, ip_proto::TCP) {
        return Err(format!("inner {} -> {} proto {}", ip.src, ip.dst, ip.proto));
    }
    let t = tcp::Packet::new_checked(ip.l4_bytes()).map_err(|e| format!("tcp: {e}"))?;
    if (t.src_port(), t.dst_port()) != (80, leg.port)
        || !(t.syn() && t.ack())
        || t.ack_number() != leg.seq.wrapping_add(1)
    {
        return Err(format!(
            "tcp {} -> {} flags {:#x} ack {}",
            t.src_port(),
            t.dst_port(),
            t.flags(),
            t.ack_number()
        ));
    }
    if !t.verify_checksum(ip.src, ip.dst) {
        return Err("SYN-ACK with a bad TCP checksum".into());
    }
    Ok(())
}

/// Sends `frames` from the fake LB and returns whether a SYN-ACK for `leg` came back,
/// with a description of every other frame seen.
fn exchange(lb: &str, frames: Vec<Vec<u8>>, leg: Leg) -> (bool, Vec<String>) {
    in_netns(lb, move || {
        let sock = Socket::open("pa-lb", None).expect("fake LB socket");
        assert_eq!(send_all(&sock, frames.into_iter()), 1, "sent");
        let mut others = Vec::new();
        let mut found = false;
        capture(&sock, Duration::from_secs(3), |f| {
            match nvgre_syn_ack(f, leg) {
                Ok(()) => found = true,
                Err(e) => others.push(e),
            }
            found
        });
        (found, others)
    })
    .join()
    .expect("fake LB thread")
}

#[test]
fn nvgre_reaches_the_vm_and_its_kernel_answers_through_the_simulator() {
    if common::skip_without_netns() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::create();
    // A real listener in the VM's kernel: dual-stack, answers SYNs without accept().
    let _listener: TcpListener = in_netns(&lab.vm, || {
        TcpListener::bind("[::]:80").expect("listen on [::]:80 in the VM")
    })
    .join()
    .expect("VM thread");
    let mut child = lab.spawn_sim();
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let mut stdout = child.stdout.take().expect("stdout");
    lab.sim = Some(child);
    let metrics = line_with(&stderr, "nvlb: metrics on http://", Duration::from_secs(10));
    let metrics: SocketAddr = metrics
        .split("http://")
        .nth(1)
        .and_then(|a| a.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {metrics:?}"));
    wait_for_line(&stderr, "nvlb: host host1 ready", Duration::from_secs(10));

    let legs = [
        Leg {
            client: ip("198.51.100.77"),
            ca: ip("10.0.0.5"),
            port: 40000,
            seq: 1_000,
        },
        Leg {
            client: ip("2001:db8:ff::77"),
            ca: ip("fd00:0:0:1::5"),
            port: 40000,
            seq: 2_000,
        },
    ];
    for leg in legs {
        let (found, others) = exchange(&lab.lb, vec![nvgre_syn(leg, BLUE, LB_PA)], leg);
        assert!(
            found,
            "no NVGRE SYN-ACK from {} came back; other frames: {others:?}",
            leg.ca
        );
        println!("{} -> {}: SYN-ACK came back as NVGRE", leg.client, leg.ca);
    }

    // With tx offload on (the veth default) the VM's kernel leaves TCP checksums
    // partial: the simulator must complete them, or the SYN-ACK arrives broken.
    if lab.offload_off {
        must(
            "ip",
            &[
                "netns", "exec", &lab.vm, "ethtool", "-K", "eth0", "tx", "on",
            ],
        );
    }
    for leg in legs {
        let leg = Leg {
            port: 40002,
            seq: leg.seq + 500,
            ..leg
        };
        let (found, others) = exchange(&lab.lb, vec![nvgre_syn(leg, BLUE, LB_PA)], leg);
        assert!(
            found,
            "with tx offload on, no valid SYN-ACK from {}: {others:?}",
            leg.ca
        );
    }

    // Red's VSID for Blue's VM, and a PA no host has: both dropped, by name.
    let probe = Leg {
        port: 40001,
        seq: 3_000,
        ..legs[0]
    };
    let bad = vec![
        nvgre_syn(probe, RED, LB_PA),
        nvgre_syn(probe, BLUE, Ipv4Addr::new(192, 168, 6, 99)),
    ];
    let sent = in_netns(&lab.lb, move || {
        let sock = Socket::open("pa-lb", None).expect("fake LB socket");
        send_all(&sock, bad.into_iter())
    })
    .join()
    .expect("fake LB thread");
    assert_eq!(sent, 2);
    // Stop only once the simulator has counted both (a frame still in its socket at
    // SIGTERM would never be): its published counters, polled.
    wait_for_drops(
        &lab.host,
        metrics,
        &["unknown_vm", "unknown_pa"],
        Duration::from_secs(5),
    );

    let child = lab.sim.as_mut().expect("simulator");
    let (status, took) = sigterm(child, Duration::from_secs(2));
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    println!("nvlb host stopped in {took:?} with {status}:\n{out}");
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
    let c = |name: &str| counter(&out, name).unwrap_or(0);
    assert!(c("arp_answered") >= 1, "the VM's ARP for 10.0.0.1: {out}");
    assert!(
        c("nd_answered") >= 1,
        "the VM's NS for fd00:0:0:1::1: {out}"
    );
    assert_eq!(c("drop.unknown_vm"), 1, "Red's VSID for Blue's MAC: {out}");
    assert_eq!(c("drop.unknown_pa"), 1, "the undeclared PA: {out}");
    assert_eq!(c("drop.spoofed_source") + c("drop.spoofed_ca"), 0, "{out}");
    assert!(c("decapsulated") >= 4 && c("encapsulated") >= 4, "{out}");
    let partial_legs = if lab.offload_off { 2 } else { 4 };
    assert!(
        c("checksums_completed") >= partial_legs,
        "SYN-ACKs sent with tx offload on had partial checksums: {out}"
    );
    println!("hostsim lab test took {:?}", started.elapsed());
}

/// The first line containing `needle`; panics with what came instead after `limit`.
fn line_with(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let mut log = Vec::new();
    let t = Instant::now();
    while let Some(left) = limit.checked_sub(t.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {limit:?}; got: {log:?}");
}

/// `GET /metrics` from inside `ns`; the page, or why not.
fn scrape(ns: &str, addr: SocketAddr) -> Result<String, String> {
    in_netns(ns, move || -> Result<String, String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut page = String::new();
        s.read_to_string(&mut page)
            .map_err(|e| format!("read: {e}"))?;
        Ok(page)
    })
    .join()
    .expect("scrape thread")
}

/// Polls the simulator's `/metrics` until each of `reasons` has dropped at least one
/// frame; panics with the last page's drop lines after `limit`.
fn wait_for_drops(ns: &str, addr: SocketAddr, reasons: &[&str], limit: Duration) {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        match scrape(ns, addr) {
            Ok(page) => {
                let counted = |reason: &str| {
                    let prefix =
                        format!("nvlb_host_drops_total{{host=\"host1\",reason=\"{reason}\"}} ");
                    page.lines()
                        .find_map(|l| l.strip_prefix(prefix.as_str()))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                if reasons.iter().all(|r| counted(r) >= 1) {
                    return;
                }
                last = page
                    .lines()
                    .filter(|l| l.starts_with("nvlb_host_drops_total{") && !l.ends_with(" 0"))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the simulator did not count a drop for each of {reasons:?} within {limit:?}; \
         its last non-zero drop counters:\n{last}"
    );
}

/// Runs `nvlb host` with `args` (no namespaces, no privileges needed).
fn host_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
        .arg("host")
        .args(args)
        .output()
        .expect("run nvlb host");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_host_name_exits_1_listing_the_declared_ones() {
    let (code, stdout, stderr) = host_cli(&[
        "--config",
        EXAMPLE,
        "--name",
        "host9",
        "--pa",
        "nvt-nosuch0",
        "--vm",
        VM_ARG,
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("unknown host \"host9\""), "{stderr}");
    assert!(
        stderr.contains("host1, host2, host3, host4, host5"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("nvt-nosuch0"),
        "policy is checked first: {stderr}"
    );
    assert!(stdout.is_empty());
}

#[test]
fn a_vm_without_a_lookup_record_on_this_host_exits_1() {
    // Blue's MAC in Red's VSID: no record at all.
    let (code, _, stderr) = host_cli(&[
        "--config",
        EXAMPLE,
        "--name",
        "host1",
        "--pa",
        "pa0",
        "--vm",
        "6001,00:1d:d8:b7:1c:01,vm-b5",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no lookup record in VSID 6001 has MAC 00:1d:d8:b7:1c:01"),
        "{stderr}"
    );
    // Blue 10.0.0.6 exists, but on host2.
    let (code, _, stderr) = host_cli(&[
        "--config",
        EXAMPLE,
        "--name",
        "host1",
        "--pa",
        "pa0",
        "--vm",
        "5001,00:1d:d8:b7:1c:02,vm-b6",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("on host \"host2\""), "{stderr}");
}

#[test]
fn a_missing_interface_exits_1_naming_it() {
    let mut cases = vec![("nvt-nosuch0", VM_ARG, "nvt-nosuch0")];
    // A missing VM interface behind a present PA one: opening `lo` needs CAP_NET_RAW.
    if !common::skip_without_netns() {
        cases.push(("lo", "5001,00:1d:d8:b7:1c:01,nvt-nosuch1", "nvt-nosuch1"));
    }
    for (pa, vm, missing) in cases {
        let (code, _, stderr) = host_cli(&[
            "--config", EXAMPLE, "--name", "host1", "--pa", pa, "--vm", vm,
        ]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("interface \"{missing}\": no such interface")),
            "{stderr}"
        );
    }
}

#[test]
fn a_bad_config_exits_1() {
    let (code, _, stderr) = host_cli(&[
        "--config",
        "/nonexistent/nvlb.toml",
        "--name",
        "host1",
        "--pa",
        "pa0",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/nvlb.toml"), "{stderr}");
}
