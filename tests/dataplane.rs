//! `nvlb run` on real interfaces: three network namespaces this test creates (client,
//! LB, host) joined by veth pairs with the example policy's MACs, the LB as a real
//! process inside its namespace with no IP addresses on its interfaces, frames sent and
//! captured with AF_PACKET sockets opened inside the client and host namespaces.
//!
//! It checks that every SYN for Blue's public VIP leaves as NVGRE (VSID 5001) toward the
//! host of a Blue DIP, that the LB answers ARP for the VIP with its external MAC, that
//! a VLAN-tagged frame (whose tag the kernel strips before AF_PACKET) is dropped, that
//! SIGTERM stops it cleanly within 2 s with its counters printed, and it prints (never
//! asserts) what a short unthrottled burst achieved; all of it for every receive
//! backend (`--backend socket`, `ring` and `xdp`), one after the other. The veths have
//! two queues each, so that the xdp backend's two workers each own one. The xdp backend
//! also: the host's own TCP on the data port works meanwhile, no program is left after
//! kill -9, a VIP a reload adds is caught at once, a port without native XDP falls back
//! to generic mode with a warning, and more workers than queues is refused. Only addresses inside these
//! namespaces are ever sent to; a guard deletes them and kills the LB even when an
//! assertion fails. It skips (and passes) when not root or without `ip netns`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    EXAMPLE, Namespaces, capture, counter, in_netns, lines_of, must, send_all, sigterm,
    wait_for_line,
};
use nvlb::craft::{self, Transport};
use nvlb::dataplane::afpacket::Socket;
use nvlb::wire::{MacAddr, arp, ethernet, gre, ip_proto, ipv4, tcp};
const LB_EXTERNAL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x0a]);
const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x01]);
const LB_PROVIDER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x0a]);
const HOST1_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x06, 0x11]);
const LB_PA: Ipv4Addr = Ipv4Addr::new(192, 168, 6, 10);
const BLUE_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const BLUE_VSID: u32 = 5001;
const SYNS: u16 = 200;
const BURST: u32 = 20_000;

/// Blue's DIPs in VSID 5001 and the PA and MAC of the host each one lives on.
fn blue_dips() -> BTreeMap<Ipv4Addr, (Ipv4Addr, MacAddr)> {
    let host = |n: u8| {
        (
            Ipv4Addr::new(192, 168, 6, 10 + n),
            MacAddr([2, 0, 0, 0, 6, 0x10 + n]),
        )
    };
    BTreeMap::from([
        (Ipv4Addr::new(10, 0, 0, 5), host(1)),
        (Ipv4Addr::new(10, 0, 0, 6), host(2)),
        (Ipv4Addr::new(10, 0, 0, 7), host(3)),
        (Ipv4Addr::new(10, 0, 0, 8), host(3)),
    ])
}

/// The three namespaces and the LB process; dropping it removes them all.
struct Lab {
    client: String,
    lb: String,
    host: String,
    nvlb: Option<Child>,
    /// Dropped after `Drop for Lab` has killed the LB.
    _namespaces: Namespaces,
}

impl Lab {
    fn create(tag: &str) -> Lab {
        let pid = std::process::id();
        let (client, lb, host) = (
            format!("nvt-client-{pid}-{tag}"),
            format!("nvt-lb-{pid}-{tag}"),
            format!("nvt-host-{pid}-{tag}"),
        );
        let namespaces = Namespaces::create(&[(&client, true), (&lb, true), (&host, true)]);
        let lab = Lab {
            client,
            lb,
            host,
            nvlb: None,
            _namespaces: namespaces,
        };
        let veth = |lb_if: &str, lb_mac: MacAddr, peer_ns: &str, peer_mac: MacAddr| {
            let (lb_mac, peer_mac) = (lb_mac.to_string(), peer_mac.to_string());
            must(
                "ip",
                &[
                    "link",
                    "add",
                    lb_if,
                    "address",
                    &lb_mac,
                    "netns",
                    &lab.lb,
                    "numtxqueues",
                    "2",
                    "numrxqueues",
                    "2",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "address",
                    &peer_mac,
                    "netns",
                    peer_ns,
                    "numtxqueues",
                    "2",
                    "numrxqueues",
                    "2",
                ],
            );
        };
        veth("ext0", LB_EXTERNAL_MAC, &lab.client, GATEWAY_MAC);
        veth("pa0", LB_PROVIDER_MAC, &lab.host, HOST1_MAC);
        for (ns, ifname) in [
            (&lab.lb, "ext0"),
            (&lab.lb, "pa0"),
            (&lab.client, "eth0"),
            (&lab.host, "eth0"),
        ] {
            must("ip", &["-n", ns, "link", "set", ifname, "up"]);
        }
        lab
    }

    /// `nvlb run` inside the LB namespace with `args`, stdout and stderr piped.
    fn spawn_nvlb(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.lb, env!("CARGO_BIN_EXE_nvlb"), "run"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nvlb")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.nvlb.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn syn(src: Ipv4Addr, src_port: u16) -> Vec<u8> {
    let ip = craft::ip_packet(
        IpAddr::V4(src),
        IpAddr::V4(BLUE_VIP),
        64,
        Transport::Tcp {
            src_port,
            dst_port: 80,
            flags: tcp::flags::SYN,
            seq: 1000 + u32::from(src_port),
            ack: 0,
        },
        &[],
    );
    craft::ip_frame(GATEWAY_MAC, LB_EXTERNAL_MAC, &ip)
}

/// A SYN in an 802.1Q tag (VLAN 10): the kernel strips the tag before AF_PACKET sees the
/// frame, so only the socket's metadata tells the LB to drop it.
fn tagged_syn(src_port: u16) -> Vec<u8> {
    let plain = syn(CLIENT, src_port);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
    tagged.extend_from_slice(&plain[12..]);
    tagged
}

fn arp_who_has_blue_vip() -> Vec<u8> {
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

/// What a frame captured at the host is, if it is the NVGRE the LB should emit for a
/// SYN to Blue's VIP: (outer dst MAC, outer dst, inner dst, inner src port).
fn nvgre_syn(frame: &[u8]) -> Result<(MacAddr, Ipv4Addr, Ipv4Addr, u16), String> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|e| format!("ethernet: {e:?}"))?;
    if eth.src_addr() != LB_PROVIDER_MAC || eth.ethertype() != ethernet::ethertype::IPV4 {
        return Err(format!("outer ethernet {:?}", eth.src_addr()));
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).map_err(|e| format!("ipv4: {e:?}"))?;
    if ip.src_addr() != LB_PA || ip.protocol() != ip_proto::GRE {
        return Err(format!(
            "outer ip {} proto {}",
            ip.src_addr(),
            ip.protocol()
        ));
    }
    let g = gre::Packet::new_checked(ip.payload()).map_err(|e| format!("gre: {e:?}"))?;
    let key = g.key().ok_or("no GRE key")?;
    if key >> 8 != BLUE_VSID || g.protocol_type() != ethernet::ethertype::TEB {
        return Err(format!("GRE key {key:#x} proto {:#x}", g.protocol_type()));
    }
    let inner = ethernet::Frame::new_checked(g.payload()).map_err(|e| format!("inner: {e:?}"))?;
    let iip = ipv4::Packet::new_checked(inner.payload()).map_err(|e| format!("inner ip: {e:?}"))?;
    let t = tcp::Packet::new_checked(iip.payload()).map_err(|e| format!("tcp: {e:?}"))?;
    if iip.src_addr() != CLIENT || t.dst_port() != 80 || !t.syn() {
        return Err(format!(
            "inner {} -> {}:{}",
            iip.src_addr(),
            iip.dst_addr(),
            t.dst_port()
        ));
    }
    Ok((eth.dst_addr(), ip.dst_addr(), iip.dst_addr(), t.src_port()))
}

/// The ARP reply the client should get: (sender MAC, sender IP), if `frame` is one.
fn arp_reply(frame: &[u8]) -> Option<(MacAddr, Ipv4Addr, MacAddr)> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ethertype::ARP {
        return None;
    }
    let a = arp::Packet::new_checked(eth.payload()).ok()?;
    (a.operation() == arp::op::REPLY && a.target_ip() == GATEWAY_IP)
        .then(|| (a.sender_hw(), a.sender_ip(), eth.dst_addr()))
}

#[test]
fn balances_syns_into_nvgre_answers_arp_and_stops_on_sigterm() {
    if common::skip_without_netns() {
        return;
    }
    // One backend after the other: the burst figures would mean nothing if both labs
    // shared the two cores at once.
    for backend in ["socket", "ring", "xdp"] {
        lab_run(backend);
    }
}

fn lab_run(backend: &str) {
    println!("--- backend {backend}");
    let started = Instant::now();
    let mut lab = Lab::create(backend);
    let mut child = lab.spawn_nvlb(&[
        "--backend",
        backend,
        "--config",
        EXAMPLE,
        "--external",
        "ext0",
        "--provider",
        "pa0",
        "--workers",
        "2",
    ]);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let mut stdout = child.stdout.take().expect("stdout");
    lab.nvlb = Some(child);
    if backend == "xdp" {
        // veth has native XDP and no zero-copy AF_XDP: both ports say so.
        wait_for_line(
            &stderr,
            "ext0 native XDP, copy mode",
            Duration::from_secs(10),
        );
    }
    wait_for_line(&stderr, "ready", Duration::from_secs(10));

    // The host side listens before anything is sent.
    let (host_ready, host_is_ready) = mpsc::channel();
    let host = in_netns(&lab.host, move || {
        let sock = Socket::open("eth0", None).expect("host socket");
        host_ready.send(()).unwrap();
        let mut got = Vec::new();
        let mut others = Vec::new();
        capture(&sock, Duration::from_secs(3), |f| {
            match nvgre_syn(f) {
                Ok(s) => got.push(s),
                Err(e) => others.push(e),
            }
            got.len() >= usize::from(SYNS)
        });
        (got, others)
    });
    host_is_ready
        .recv_timeout(Duration::from_secs(5))
        .expect("host capture ready");

    let client = in_netns(&lab.client, || {
        let sock = Socket::open("eth0", None).expect("client socket");
        let sent_arp = send_all(&sock, std::iter::once(arp_who_has_blue_vip()));
        let sent_tagged = send_all(&sock, std::iter::once(tagged_syn(39999)));
        let sent = send_all(&sock, (0..SYNS).map(|i| syn(CLIENT, 40000 + i)));
        let mut reply = None;
        capture(&sock, Duration::from_secs(3), |f| {
            reply = arp_reply(f);
            reply.is_some()
        });
        (sent_arp + sent_tagged, sent, reply)
    });
    let (sent_other, sent, reply) = client.join().expect("client thread");
    let (got, others) = host.join().expect("host thread");
    assert_eq!(
        (sent_other, sent),
        (2, u32::from(SYNS)),
        "the client sent everything"
    );

    let (sha, spa, dst) = reply.expect("an ARP reply for the VIP reached the client");
    assert_eq!(
        sha, LB_EXTERNAL_MAC,
        "ARP reply carries the LB's external MAC"
    );
    assert_eq!(spa, BLUE_VIP);
    assert_eq!(dst, GATEWAY_MAC);

    assert!(
        others.is_empty(),
        "unexpected frames at the host: {others:?}"
    );
    assert_eq!(got.len(), usize::from(SYNS), "every SYN arrived as NVGRE");
    let dips = blue_dips();
    let mut per_dip: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (mac, pa, dip, _) in &got {
        let &(host_pa, host_mac) = dips
            .get(dip)
            .unwrap_or_else(|| panic!("inner destination {dip} is not a Blue DIP"));
        assert_eq!(
            (*pa, *mac),
            (host_pa, host_mac),
            "outer headers name {dip}'s host"
        );
        *per_dip.entry(*dip).or_default() += 1;
    }
    let ports: BTreeSet<u16> = got.iter().map(|g| g.3).collect();
    let expected: BTreeSet<u16> = (0..SYNS).map(|i| 40000 + i).collect();
    assert_eq!(
        ports, expected,
        "each untagged SYN exactly once, the tagged one never"
    );
    assert!(per_dip.len() > 1, "200 flows spread over DIPs: {per_dip:?}");
    println!("SYNs per DIP: {per_dip:?}");

    // A short unthrottled burst: a measurement for the report, never a pass/fail.
    let (host_ready, host_is_ready) = mpsc::channel();
    let burst_host = in_netns(&lab.host, move || {
        let sock = Socket::open("eth0", None).expect("host socket");
        host_ready.send(()).unwrap();
        let t = Instant::now();
        let n = capture(&sock, Duration::from_millis(500), |_| false);
        (n, t.elapsed().saturating_sub(Duration::from_millis(500)))
    });
    host_is_ready.recv().expect("burst capture ready");
    let burst_client = in_netns(&lab.client, || {
        let sock = Socket::open("eth0", None).expect("client socket");
        let frames: Vec<Vec<u8>> = (0..BURST)
            .map(|i| syn(Ipv4Addr::new(198, 51, 101, 7), 10_000 + i as u16))
            .collect();
        let t = Instant::now();
        let sent = send_all(&sock, frames.into_iter());
        (sent, t.elapsed())
    });
    let (burst_sent, send_time) = burst_client.join().expect("burst client");
    let (burst_got, recv_time) = burst_host.join().expect("burst host");
    println!(
        "burst (2 workers, sender and LB sharing this machine's cores): sent {burst_sent} SYNs in \
         {send_time:?} ({:.0} frames/s offered), {burst_got} NVGRE frames at the host in {recv_time:?}",
        f64::from(burst_sent) / send_time.as_secs_f64().max(1e-9)
    );

    // SIGTERM: exit 0 within 2 s, counters on stdout.
    let child = lab.nvlb.as_mut().expect("nvlb child");
    let (status, took) = sigterm(child, Duration::from_secs(2));
    let mut out = String::new();
    stdout.read_to_string(&mut out).expect("stdout");
    println!("nvlb stopped in {took:?} with {status}:\n{out}");
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0");
    let forwarded = counter(&out, "forwarded").expect("forwarded counter printed");
    assert!(
        forwarded >= u64::from(SYNS),
        "counters include the {SYNS} SYNs: {out}"
    );
    assert_eq!(counter(&out, "replied"), Some(1), "one ARP reply: {out}");
    assert_eq!(
        counter(&out, "io.rx_vlan_tagged"),
        Some(1),
        "tagged SYN dropped: {out}"
    );
    assert!(counter(&out, "io.kernel_drops").is_some(), "{out}");
    // The example has no tcp_reset rule: no idle resets, and none lost.
    assert_eq!(counter(&out, "idle_resets_sent"), Some(0), "{out}");
    assert_eq!(counter(&out, "idle_resets_unsent"), Some(0), "{out}");
    println!("lab test took {:?}", started.elapsed());
}

#[test]
fn a_missing_interface_exits_1_naming_it() {
    // Resolving the interface comes before opening any socket: no privileges needed.
    let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
        .args([
            "run",
            "--config",
            EXAMPLE,
            "--external",
            "nvt-nosuch0",
            "--provider",
            "nvt-nosuch1",
        ])
        .output()
        .expect("run nvlb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nvt-nosuch0"), "{stderr}");
    assert!(stderr.contains("no such interface"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_config_exits_1_before_touching_interfaces() {
    let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
        .args([
            "run",
            "--config",
            "/nonexistent/nvlb.toml",
            "--external",
            "nvt-nosuch0",
            "--provider",
            "nvt-nosuch0",
        ])
        .output()
        .expect("run nvlb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/nvlb.toml"), "{stderr}");
    assert!(!stderr.contains("nvt-nosuch0"), "{stderr}");
}

#[test]
fn without_cap_net_raw_exits_1_saying_so() {
    // Needs a way to drop privileges: root and util-linux's setpriv.
    if common::skip_without_netns()
        || common::skip_without_program("setpriv", "apt package util-linux")
    {
        return;
    }
    // The unprivileged user may not reach the clone (a mode-700 folder): it runs a
    // copy of the binary and the policy from a folder of its own that anyone can read.
    let dir = std::env::temp_dir().join(format!("nvlb-noprivs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("make the copy's folder");
    let cleanup = Cleanup(dir.clone());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (bin, config) = (dir.join("nvlb"), dir.join("example.toml"));
    std::fs::copy(env!("CARGO_BIN_EXE_nvlb"), &bin).expect("copy nvlb");
    std::fs::copy(EXAMPLE, &config).expect("copy the example");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let unprivileged = |backend: &str| {
        Command::new(nvlb::lab::cmd::locate("setpriv"))
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["run", "--backend", backend, "--config"])
            .arg(&config)
            .args(["--external", "lo", "--provider", "lo"])
            .output()
            .expect("run setpriv")
    };
    let out = unprivileged("socket");
    let xdp = unprivileged("xdp");
    drop(cleanup);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"lo\""), "{stderr}");
    assert!(stderr.contains("needs CAP_NET_RAW"), "{stderr}");
    // The xdp backend's first privileged step is a BPF map.
    let stderr = String::from_utf8_lossy(&xdp.stderr);
    assert_eq!(xdp.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs CAP_BPF and CAP_NET_ADMIN"),
        "{stderr}"
    );
}

/// Removes a scratch folder when dropped, also after a failed assertion.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The dut's own kernel address on the external port, and the client's on its side:
/// not an address of the LB's policy, so the XDP filter leaves it to the kernel.
const DUT_HOST_IP: &str = "198.51.100.2";
const CLIENT_HOST_IP: &str = "198.51.100.1";

/// Sends `n` SYNs for Blue's VIP from the client and counts the NVGRE frames for them
/// that reach the host within 3 s.
fn syns_through(lab: &Lab, n: u16, first_port: u16) -> usize {
    let (host_ready, host_is_ready) = mpsc::channel();
    let host = in_netns(&lab.host, move || {
        let sock = Socket::open("eth0", None).expect("host socket");
        host_ready.send(()).unwrap();
        let mut got = BTreeSet::new();
        capture(&sock, Duration::from_secs(3), |f| {
            if let Ok((_, _, _, port)) = nvgre_syn(f) {
                got.insert(port);
            }
            got.len() >= usize::from(n)
        });
        got.len()
    });
    host_is_ready
        .recv_timeout(Duration::from_secs(5))
        .expect("host capture ready");
    let client = in_netns(&lab.client, move || {
        let sock = Socket::open("eth0", None).expect("client socket");
        send_all(&sock, (0..n).map(|i| syn(CLIENT, first_port + i)))
    });
    assert_eq!(client.join().expect("client"), u32::from(n));
    host.join().expect("host")
}

#[test]
fn with_the_xdp_backend_the_hosts_own_tcp_on_the_data_port_keeps_working() {
    if common::skip_without_netns() {
        return;
    }
    let mut lab = Lab::create("xdphost");
    // With an address on ext0 the kernel no longer lets nvlb's API bind 127.0.0.1
    // while lo is down.
    must("ip", &["-n", &lab.lb, "link", "set", "lo", "up"]);
    must(
        "ip",
        &[
            "-n",
            &lab.lb,
            "addr",
            "add",
            &format!("{DUT_HOST_IP}/24"),
            "dev",
            "ext0",
        ],
    );
    must(
        "ip",
        &[
            "-n",
            &lab.client,
            "addr",
            "add",
            &format!("{CLIENT_HOST_IP}/24"),
            "dev",
            "eth0",
        ],
    );
    let mut child = lab.spawn_nvlb(&[
        "--backend",
        "xdp",
        "--config",
        EXAMPLE,
        "--external",
        "ext0",
        "--provider",
        "pa0",
        "--workers",
        "2",
    ]);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    lab.nvlb = Some(child);
    wait_for_line(&stderr, "ready", Duration::from_secs(10));

    // An echo server on the dut's kernel address, a client that pushes 4 MiB through
    // it in both directions while SYNs for the VIP go through nvlb.
    let (listening, is_listening) = mpsc::channel();
    let server = in_netns(&lab.lb, move || {
        let l = std::net::TcpListener::bind((DUT_HOST_IP, 7777)).expect("listen on the dut");
        listening.send(()).unwrap();
        let (mut s, _) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut echoed = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    std::io::Write::write_all(&mut s, &buf[..n]).expect("echo");
                    echoed += n;
                }
                Err(e) => panic!("server read: {e}"),
            }
        }
        echoed
    });
    is_listening
        .recv_timeout(Duration::from_secs(5))
        .expect("server up");
    const BYTES: usize = 4 << 20;
    let tcp_client = in_netns(&lab.client, move || {
        let mut s = std::net::TcpStream::connect_timeout(
            &format!("{DUT_HOST_IP}:7777").parse().unwrap(),
            Duration::from_secs(5),
        )
        .expect("connect to the dut's own address");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data: Vec<u8> = (0..BYTES).map(|i| (i % 251) as u8).collect();
        let mut reader = s.try_clone().unwrap();
        let check = std::thread::spawn(move || {
            let mut got = vec![0u8; BYTES];
            reader.read_exact(&mut got).map(|_| got)
        });
        std::io::Write::write_all(&mut s, &data).expect("send");
        let got = check.join().unwrap().expect("read the echo back");
        s.shutdown(std::net::Shutdown::Both).ok();
        got == data
    });
    let through = syns_through(&lab, SYNS, 30000);
    assert!(tcp_client.join().expect("tcp client"), "the echo matches");
    assert_eq!(server.join().expect("server"), BYTES);
    assert_eq!(
        through,
        usize::from(SYNS),
        "every SYN through nvlb meanwhile"
    );

    let child = lab.nvlb.as_mut().expect("nvlb child");
    let (status, _) = sigterm(child, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
}

/// Whether `ip link` shows an XDP program on `ifname` in `ns`.
fn xdp_attached(ns: &str, ifname: &str) -> bool {
    let out = common::run("ip", &["-n", ns, "link", "show", "dev", ifname]);
    assert!(out.status.success(), "ip link show {ifname}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("prog/xdp") || text.contains(" xdp")
}

#[test]
fn after_kill_9_no_xdp_program_is_left_on_the_ports() {
    if common::skip_without_netns() {
        return;
    }
    let mut lab = Lab::create("xdpkill");
    let mut child = lab.spawn_nvlb(&[
        "--backend",
        "xdp",
        "--config",
        EXAMPLE,
        "--external",
        "ext0",
        "--provider",
        "pa0",
        "--workers",
        "2",
    ]);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    lab.nvlb = Some(child);
    wait_for_line(&stderr, "ready", Duration::from_secs(10));
    for port in ["ext0", "pa0"] {
        assert!(xdp_attached(&lab.lb, port), "{port} runs nvlb's program");
    }
    // `ip netns exec` runs nvlb in its own process: SIGKILL nvlb itself, not ip.
    let pid = lab.nvlb.as_ref().unwrap().id();
    must("kill", &["-KILL", &pid.to_string()]);
    let _ = lab.nvlb.as_mut().unwrap().wait();
    lab.nvlb = None;
    let t = Instant::now();
    while ["ext0", "pa0"].iter().any(|p| xdp_attached(&lab.lb, p)) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "an XDP program is still attached 5 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_the_xdp_backend_a_vip_added_by_a_reload_is_caught_at_once() {
    if common::skip_without_netns() {
        return;
    }
    // A copy of the example where Blue's web VIP has another address (and no pool
    // probes its DIPs: nothing answers them here); the reload brings 203.0.113.10 back.
    let dir = std::env::temp_dir().join(format!("nvlb-xdpreload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("scratch folder");
    let _cleanup = Cleanup(dir.clone());
    let example: String = std::fs::read_to_string(EXAMPLE)
        .expect("read the example")
        .lines()
        .filter(|l| !l.starts_with("health = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let moved = example.replace("address = \"203.0.113.10\"", "address = \"203.0.113.77\"");
    assert_ne!(
        moved, example,
        "the example declares blue-web at 203.0.113.10"
    );
    let config = dir.join("policy.toml");
    std::fs::write(&config, &moved).unwrap();

    let mut lab = Lab::create("xdpreload");
    let config_arg = config.display().to_string();
    let mut child = lab.spawn_nvlb(&[
        "--backend",
        "xdp",
        "--config",
        &config_arg,
        "--external",
        "ext0",
        "--provider",
        "pa0",
        "--workers",
        "2",
        "--api",
        "off",
    ]);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    lab.nvlb = Some(child);
    wait_for_line(&stderr, "ready", Duration::from_secs(10));
    assert_eq!(
        syns_through(&lab, 20, 20000),
        0,
        "203.0.113.10 is no VIP yet: nothing for it leaves as NVGRE"
    );

    std::fs::write(&config, &example).unwrap();
    let pid = lab.nvlb.as_ref().unwrap().id();
    must("kill", &["-HUP", &pid.to_string()]);
    wait_for_line(&stderr, "reloaded", Duration::from_secs(5));
    assert_eq!(
        syns_through(&lab, SYNS, 21000),
        usize::from(SYNS),
        "every SYN to the VIP the reload added reaches nvlb"
    );
    let child = lab.nvlb.as_mut().expect("nvlb child");
    let (status, _) = sigterm(child, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn with_the_xdp_backend_a_port_without_native_xdp_falls_back_to_generic_with_a_warning() {
    if common::skip_without_netns() {
        return;
    }
    // A bridge device has no native XDP: the kernel runs the program after building
    // the skb (generic mode), and AF_XDP in copy mode.
    let mut lab = Lab::create("xdpgeneric");
    must(
        "ip",
        &["-n", &lab.lb, "link", "add", "br0", "type", "bridge"],
    );
    must("ip", &["-n", &lab.lb, "link", "set", "br0", "up"]);
    let mut child = lab.spawn_nvlb(&[
        "--backend",
        "xdp",
        "--config",
        EXAMPLE,
        "--external",
        "br0",
        "--provider",
        "br0",
        "--api",
        "off",
    ]);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    lab.nvlb = Some(child);
    wait_for_line(&stderr, "no native XDP", Duration::from_secs(10));
    wait_for_line(
        &stderr,
        "br0 generic XDP, copy mode",
        Duration::from_secs(5),
    );
    wait_for_line(&stderr, "ready", Duration::from_secs(5));
    let out = common::run("ip", &["-n", &lab.lb, "link", "show", "dev", "br0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("xdpgeneric"), "{text}");
    let child = lab.nvlb.as_mut().expect("nvlb child");
    let (status, _) = sigterm(child, Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn with_the_xdp_backend_more_workers_than_queues_exits_1_saying_so() {
    if common::skip_without_netns() {
        return;
    }
    let lab = Lab::create("xdpqueues");
    must(
        "ip",
        &[
            "-n", &lab.lb, "link", "add", "q0", "type", "veth", "peer", "name", "q1",
        ],
    );
    must("ip", &["-n", &lab.lb, "link", "set", "q0", "up"]);
    let out = lab
        .spawn_nvlb(&[
            "--backend",
            "xdp",
            "--config",
            EXAMPLE,
            "--external",
            "q0",
            "--provider",
            "q0",
            "--workers",
            "2",
            "--api",
            "off",
        ])
        .wait_with_output()
        .expect("nvlb");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("\"q0\" has 1 receive queue(s) but --workers 2"),
        "{stderr}"
    );
    let shown = common::run("ip", &["-n", &lab.lb, "link", "show", "dev", "q0"]);
    assert!(
        !String::from_utf8_lossy(&shown.stdout).contains("prog/xdp"),
        "nothing attached"
    );
}
