//! Scale-out on the real lab (`nvlb::lab::scaleout`: two `nvlb run --instance` behind a
//! router namespace with kernel ECMP, BIRD on every instance and on the router, host
//! simulators, kernel TCP in the VMs), as issue 9 asks:
//!
//! - 200 long-lived TCP connections (slow downloads through the public VIPs) keep
//!   transferring while one instance dies as a hung machine would (data plane killed,
//!   BIRD frozen): at least 99 % complete intact, BGP withdraws the instance's routes
//!   within the hold time (plus the router's scan), and every new connection after
//!   convergence succeeds;
//! - every instance picks the same DIP for the same flow: asked through each instance's
//!   API, and on the wire (the same client 5-tuples steered through each instance in
//!   turn reach the same DIP, as the NVGRE each sent and the answering VM show);
//! - the instance added back takes load: ECMP moves a share of 200 established
//!   connections to it (measured from its own binding count), and none of them breaks.
//!
//! Figures are printed (run with `--nocapture`); the asserts are the issue's bounds.
//! Skips (and passes) when not root, without `ip netns`, or without bird2.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nvlb::lab::bgp;
use nvlb::lab::scaleout::{Options, ScaleLab};
use nvlb::lab::traffic;

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const BULK: usize = 640 * 1024;
/// Bytes per second each slow client reads: 640 KiB take 20 s.
const RATE: usize = 32 * 1024;
const CONNECTIONS: usize = 200;
/// One lab at a time: the machine is small and the figures are timings.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The slow clients: N connections spread over the VIPs, each GET /bulk read at RATE
/// bytes/s through an 8 KiB receive buffer (so the server's sending follows the
/// reading); one line per connection: index, ok|fail, bytes, served-by, why.
const SLOW: &str = r#"
import hashlib, socket, sys, time
vips = [v.split(":") for v in sys.argv[1].split(",")]
n, rate, want_sha = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tick, idle = 0.05, 30.0
conns = []
for i in range(n):
    host, port = vips[i % len(vips)]
    c = {"i": i, "buf": b"", "len": None, "body": 0, "sha": hashlib.sha256(), "by": "-", "err": None, "last": time.time(), "done": False}
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(5)
        s.connect((host, int(port)))
        s.sendall(b"GET /bulk HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        s.setblocking(False)
        c["s"] = s
    except Exception as e:
        c["err"], c["done"] = "connect: %r" % e, True
    conns.append(c)
print("CONNECTED", sum(1 for c in conns if not c["done"]), flush=True)
budget = max(1, int(rate * tick))
while not all(c["done"] for c in conns):
    now = time.time()
    for c in conns:
        if c["done"]:
            continue
        try:
            data = c["s"].recv(budget)
        except BlockingIOError:
            data = None
        except Exception as e:
            c["err"], c["done"] = "recv: %r" % e, True
            continue
        if data is None:
            if now - c["last"] > idle:
                c["err"], c["done"] = "idle %.0f s" % idle, True
            continue
        c["last"] = now
        if data == b"":
            c["done"] = True
            if c["len"] is None or c["body"] != c["len"]:
                c["err"] = "closed after %d of %s bytes" % (c["body"], c["len"])
            elif c["sha"].hexdigest() != want_sha:
                c["err"] = "corrupt body"
            continue
        if c["len"] is None:
            c["buf"] += data
            if b"\r\n\r\n" in c["buf"]:
                head, rest = c["buf"].split(b"\r\n\r\n", 1)
                for line in head.split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    if k.lower() == b"content-length":
                        c["len"] = int(v)
                    if k.lower() == b"x-served-by":
                        c["by"] = v.strip().decode()
                if c["len"] is None:
                    c["err"], c["done"] = "no content-length", True
                    continue
                c["buf"] = b""
                data = rest
            else:
                continue
        c["body"] += len(data)
        c["sha"].update(data)
    time.sleep(tick)
for c in conns:
    print(c["i"], "fail" if c["err"] else "ok", c["body"], c["by"], c["err"] or "", flush=True)
"#;

struct Slow {
    child: Child,
}

impl Slow {
    fn start(lab: &ScaleLab, sha: &str) -> Slow {
        let script = lab.dir.join("slow.py");
        std::fs::write(&script, SLOW).unwrap();
        let vips: Vec<String> = lab.plan.vips.iter().map(|v| format!("{v}:80")).collect();
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.plan.t.client, "/usr/bin/python3"])
            .arg(&script)
            .args([
                vips.join(","),
                CONNECTIONS.to_string(),
                RATE.to_string(),
                sha.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        Slow { child }
    }

    /// (intact, failures) once every connection has ended.
    fn finish(self) -> (usize, Vec<String>) {
        let out = self.child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("CONNECTED"),
            "slow clients: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ok = 0;
        let mut failed = Vec::new();
        for line in stdout.lines().filter(|l| !l.starts_with("CONNECTED")) {
            let mut f = line.split_whitespace();
            let _i = f.next();
            match f.next() {
                Some("ok") => ok += 1,
                Some(_) => failed.push(line.to_string()),
                None => {}
            }
        }
        (ok, failed)
    }
}

fn skip() -> bool {
    if common::skip_without_netns() {
        return true;
    }
    if common::skip_without_program("bird", "tests/install.sh installs bird2") {
        return true;
    }
    false
}

/// Asks every instance's management API (`nvlb ctl pick`, in the instance's namespace,
/// with the lab's operator token) which DIP it gives each of `n` new flows of `pool`,
/// and returns the answers per instance. Nothing is sent: the answer is computed by
/// the same functions the engine balances with (src/control/api/pick.rs).
fn picks(
    netns: &[String],
    token: &std::path::Path,
    pool: &str,
    clients: &[String],
) -> Vec<Vec<String>> {
    netns
        .iter()
        .map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, NVLB, "ctl", "--json", "--token-file"])
                .arg(token)
                .args(["pick", pool])
                .args(clients)
                .output()
                .expect("nvlb ctl pick");
            assert!(
                out.status.success(),
                "{ns}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            v["dips"]
                .as_array()
                .expect("dips")
                .iter()
                .map(|d| d.as_str().unwrap_or("none").to_string())
                .collect()
        })
        .collect()
}

/// Issue 9's test 1: the DIP chosen for each of 10 000 flows of blue-web (and 2 000 of
/// red-web6) is the same on every instance, asked through each instance's API.
fn every_instance_picks_the_same_dips(netns: &[String], token: &std::path::Path) {
    let v4: Vec<String> = (0..10_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x6440_0000u32 + i * 13);
            format!("{a}:{}", 1024 + (i * 7919) % 60_000)
        })
        .collect();
    let v6: Vec<String> = (0..2_000u32)
        .map(|i| {
            format!(
                "[2001:db8:77::{:x}]:{}",
                i * 31 + 1,
                1024 + (i * 104_729) % 60_000
            )
        })
        .collect();
    for (pool, clients) in [("blue-web", &v4), ("red-web6", &v6)] {
        let answers = picks(netns, token, pool, clients);
        let first = &answers[0];
        assert_eq!(first.len(), clients.len(), "{pool}");
        let used: std::collections::BTreeSet<&String> = first.iter().collect();
        assert!(
            used.len() >= 2 && !used.contains(&"none".to_string()),
            "{pool}: {used:?}"
        );
        for (i, other) in answers.iter().enumerate().skip(1) {
            let differ = first.iter().zip(other).filter(|(a, b)| a != b).count();
            assert_eq!(
                differ,
                0,
                "{pool}: instance {} picks another DIP than instance 1 for {differ} of {} flows",
                i + 1,
                clients.len()
            );
        }
        println!(
            "PICK: {pool}: {} flows, {} instances, 0 differ, DIPs used {used:?}",
            clients.len(),
            answers.len()
        );
    }
}

/// The wire check's client: for every VIP (comma-separated, first argument) and every
/// source port in [second, third), one `GET /` from that port, closed with a reset (so
/// that neither end keeps the 4-tuple in TIME_WAIT and the next pass can reuse it);
/// one line per connection: VIP, port, the VM that answered (`X-Served-By`) or
/// `error:WHY`.
const SAME_PORTS: &str = r#"
import socket, struct, sys
ports = range(int(sys.argv[2]), int(sys.argv[3]))
for vip in sys.argv[1].split(","):
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    for p in ports:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(5)
        by = "error:no-x-served-by"
        try:
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", p))
            s.connect((vip, 80))
            s.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            for line in data.split(b"\r\n"):
                k, _, v = line.partition(b":")
                if k.lower() == b"x-served-by":
                    by = v.strip().decode()
        except Exception as e:
            by = "error:%r" % e
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        print(vip, p, by.replace(" ", "_"), flush=True)
"#;

/// Source ports of the wire check's flows; the router steers exactly these.
const SAME_FIRST_PORT: u16 = 31_000;
const SAME_PORTS_PER_VIP: u16 = 50;
/// Routing tables (plus the instance's number) and rule priority of the steering.
const STEER_TABLE: usize = 3100;
const STEER_PREF: &str = "3100";

/// A flow of the wire check: VIP and client source port.
type FlowKey = (IpAddr, u16);
/// How an instance tunnelled a client SYN: (VSID, inner destination: the DIP).
type Tunnelled = (u32, IpAddr);
/// What one instance chose for the client SYNs it tunnelled: the DIP by (IPv6, VSID,
/// client port).
type Choices = BTreeMap<(bool, u32, u16), IpAddr>;

/// The SYN of a client flow in an NVGRE frame an instance sent: (client port, what it
/// chose).
fn client_syn(frame: &[u8]) -> Option<(u16, Tunnelled)> {
    use nvlb::lab::topology::{CLIENT_V4, CLIENT_V6};
    use nvlb::wire::{ethernet, gre, ip_proto, ipv4, ipv6, tcp};
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != ip_proto::GRE {
        return None;
    }
    let g = gre::Packet::new_checked(ip.payload()).ok()?;
    let vsid = g.key()? >> 8;
    let inner = ethernet::Frame::new_checked(g.payload()).ok()?;
    let syn_port = |l4: &[u8]| {
        let t = tcp::Packet::new_checked(l4).ok()?;
        (t.syn() && !t.ack()).then_some(t.src_port())
    };
    match inner.ethertype() {
        ethernet::ethertype::IPV4 => {
            let p = ipv4::Packet::new_checked(inner.payload()).ok()?;
            (p.protocol() == ip_proto::TCP && p.src_addr() == CLIENT_V4).then_some(())?;
            Some((syn_port(p.payload())?, (vsid, p.dst_addr().into())))
        }
        ethernet::ethertype::IPV6 => {
            let p = ipv6::Packet::new_checked(inner.payload()).ok()?;
            (p.next_header() == ip_proto::TCP && p.src_addr() == CLIENT_V6).then_some(())?;
            Some((syn_port(p.payload())?, (vsid, p.dst_addr().into())))
        }
        _ => None,
    }
}

/// Records, on the router, the client SYNs each instance tunnels onto the PA network
/// (what arrives on `rt-pK` came from instance K) until `stop`; per instance, what it
/// chose for each (address family, client port).
fn capture_choices(lab: &ScaleLab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Choices>> {
    use nvlb::dataplane::afpacket::{Recv, Socket, wait_any};
    let links: Vec<String> = lab.plan.lbs.iter().map(|l| l.rt_pa.clone()).collect();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let handle = common::in_netns(&lab.plan.t.router, move || {
        let socks: Vec<Socket> = links
            .iter()
            .map(|l| Socket::open(l, None).expect("capture socket"))
            .collect();
        ready_tx.send(()).unwrap();
        let mut seen: Vec<Choices> = vec![BTreeMap::new(); socks.len()];
        let mut buf = vec![0u8; 65536];
        let mut last_round = false;
        loop {
            for (sock, seen) in socks.iter().zip(&mut seen) {
                loop {
                    match sock.recv(&mut buf).expect("recv") {
                        Recv::Frame(n, _) => {
                            if let Some((port, (vsid, dip))) = client_syn(&buf[..n]) {
                                seen.insert((dip.is_ipv6(), vsid, port), dip);
                            }
                        }
                        Recv::Truncated(_) => {}
                        Recv::Empty => break,
                    }
                }
            }
            if last_round {
                return seen;
            }
            last_round = stop.load(Ordering::Relaxed);
            let refs: Vec<&Socket> = socks.iter().collect();
            wait_any(&refs, Duration::from_millis(50)).expect("poll");
        }
    });
    ready.recv().expect("capture thread ready");
    handle
}

/// Issue 9's test 1 on the wire: the same client flows (the same 5-tuples) sent through
/// each instance in turn, steered by the router (a policy-routing rule on their source
/// ports), reach the same DIP through every instance. Each flow is a real connection
/// answered by the VM it reached; the instance's own choice is read from the NVGRE it
/// sent (captured on the router's link from that instance), and every pass's SYNs must
/// have left through that instance only.
fn every_instance_sends_the_same_flows_to_the_same_dips(lab: &ScaleLab) {
    let router = lab.plan.t.router.as_str();
    let vips: Vec<IpAddr> = lab
        .plan
        .vips
        .iter()
        .map(|&v| v.into())
        .chain(lab.plan.vips6.iter().map(|&v| v.into()))
        .collect();
    let last = SAME_FIRST_PORT + SAME_PORTS_PER_VIP;
    let script = lab.dir.join("same_ports.py");
    std::fs::write(&script, SAME_PORTS).unwrap();
    let vip_list: Vec<String> = vips.iter().map(|v| v.to_string()).collect();
    let ports = format!("{SAME_FIRST_PORT}-{}", last - 1);
    // One table per instance: every public VIP through that instance alone.
    for l in &lab.plan.lbs {
        let table = (STEER_TABLE + l.peer.index).to_string();
        for vip in &vips {
            let hop = match vip {
                IpAddr::V4(_) => l.peer.vip_next_hop.to_string(),
                IpAddr::V6(_) => l.peer.vip_next_hop6.to_string(),
            };
            let vip = vip.to_string();
            common::must(
                "ip",
                &[
                    "-n", router, "route", "add", &vip, "via", &hop, "dev", &l.rt_ext, "table",
                    &table,
                ],
            );
        }
    }
    let mut served: Vec<BTreeMap<FlowKey, String>> = Vec::new();
    let mut chose = Vec::new();
    for l in &lab.plan.lbs {
        let table = (STEER_TABLE + l.peer.index).to_string();
        for family in ["-4", "-6"] {
            common::must(
                "ip",
                &[
                    "-n", router, family, "rule", "add", "pref", STEER_PREF, "ipproto", "tcp",
                    "sport", &ports, "lookup", &table,
                ],
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let capture = capture_choices(lab, stop.clone());
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.plan.t.client, "/usr/bin/python3"])
            .arg(&script)
            .args([
                vip_list.join(","),
                SAME_FIRST_PORT.to_string(),
                last.to_string(),
            ])
            .output()
            .expect("python3");
        // Nothing to wait for: a flow's SYN reached the router (and the capture) before
        // the flow could be answered, and the capture drains once more after `stop`.
        stop.store(true, Ordering::Relaxed);
        let per_link = capture.join().expect("capture thread");
        for family in ["-4", "-6"] {
            common::must(
                "ip",
                &["-n", router, family, "rule", "del", "pref", STEER_PREF],
            );
        }
        assert!(
            out.status.success(),
            "wire check client: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers: BTreeMap<FlowKey, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut f = line.split_whitespace();
                let vip = f.next()?.parse().ok()?;
                let port = f.next()?.parse().ok()?;
                Some(((vip, port), f.next()?.to_string()))
            })
            .collect();
        let flows = vips.len() * usize::from(SAME_PORTS_PER_VIP);
        let failed: Vec<_> = answers
            .iter()
            .filter(|(_, by)| by.starts_with("error:"))
            .collect();
        assert!(
            answers.len() == flows && failed.is_empty(),
            "through {} alone: {} of {flows} connections answered; failed: {failed:?}",
            l.name,
            answers.len() - failed.len()
        );
        // The steering held: this pass's SYNs left through this instance, and only it.
        for (k, link) in per_link.iter().enumerate() {
            let n = link.len();
            if k + 1 == l.peer.index {
                assert_eq!(
                    n, flows,
                    "{} tunnelled {n} of the {flows} SYNs steered to it",
                    l.name
                );
            } else {
                assert_eq!(
                    n,
                    0,
                    "instance {} tunnelled {n} SYNs that the router steered to {}",
                    k + 1,
                    l.name
                );
            }
        }
        let seen: Vec<usize> = per_link.iter().map(|m| m.len()).collect();
        println!(
            "WIRE: steered through {} alone: {flows} connections answered; SYNs tunnelled by \
             instance 1..{}: {seen:?}",
            l.name,
            seen.len()
        );
        served.push(answers);
        chose.push(per_link.into_iter().nth(l.peer.index - 1).unwrap());
    }
    let first = &served[0];
    for &vip in &vips {
        let used: BTreeSet<&String> = first
            .iter()
            .filter(|((v, _), _)| *v == vip)
            .map(|(_, by)| by)
            .collect();
        println!("WIRE: {vip}: {SAME_PORTS_PER_VIP} flows through instance 1 served by {used:?}");
        assert!(used.len() >= 2, "{vip}: every flow served by {used:?}");
    }
    for (i, (other, other_chose)) in served.iter().zip(&chose).enumerate().skip(1) {
        let differ: Vec<_> = first
            .iter()
            .filter(|(flow, by)| other.get(flow) != Some(*by))
            .map(|(flow, by)| (flow, by, other.get(flow)))
            .collect();
        let differ_dips = chose[0]
            .iter()
            .filter(|(flow, dip)| other_chose.get(flow) != Some(*dip))
            .count();
        println!(
            "WIRE: the same {} flows through instance 1 and through instance {}: {} served by \
             another VM, {differ_dips} tunnelled to another DIP",
            first.len(),
            i + 1,
            differ.len()
        );
        assert_eq!(
            differ_dips,
            0,
            "instance {} tunnelled {differ_dips} of {} flows to another DIP than instance 1",
            i + 1,
            chose[0].len()
        );
        assert!(
            differ.is_empty(),
            "instance {} sent {} of {} flows to another VM than instance 1 did \
             ((VIP, port), via 1, via {}): {:?}",
            i + 1,
            differ.len(),
            first.len(),
            i + 1,
            &differ[..differ.len().min(10)]
        );
    }
}

#[test]
fn connections_survive_an_instance_loss_and_an_instance_added_back() {
    if skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("nvsa{}-", std::process::id() % 10_000);
    let opts = Options {
        prefix: prefix.clone(),
        instances: 2,
        nvlb: NVLB.into(),
        base_policy: nvlb::lab::EXAMPLE_POLICY.to_string(),
        bulk_bytes: BULK,
    };
    let mut lab = ScaleLab::up(&opts, &mut |m| eprintln!("lab: {m}")).expect("scale-out lab up");
    let sha = traffic::sha256(&lab.bulk).unwrap();
    let vip = lab.plan.vips[0];
    let url = format!("http://{vip}:80");
    println!("router routes:\n{}", lab.routes());

    let netns: Vec<String> = lab.plan.lbs.iter().map(|l| l.netns.clone()).collect();
    every_instance_picks_the_same_dips(&netns, &lab.dir.join(nvlb::lab::API_TOKEN_FILE));
    every_instance_sends_the_same_flows_to_the_same_dips(&lab);

    // Both instances serve: new connections through ECMP all answered.
    let r = traffic::requests(&lab.plan.t.client, &url, 60, 5, &lab.dir, "warm").unwrap();
    assert!(r.failures.is_empty(), "before: {:?}", r.failures);

    // --- An instance dies under 200 long-lived connections.
    let slow = Slow::start(&lab, &sha);
    std::thread::sleep(Duration::from_secs(4));
    let killed_at = lab.kill_instance(2).unwrap();
    let hold = Duration::from_secs(u64::from(bgp::HOLD_S));
    let withdraw = lab
        .wait_next_hops(vip, |h| h == [1], hold * 4)
        .expect("the router withdraws instance 2's VIP route");
    let withdraw = killed_at
        .elapsed()
        .min(withdraw + Duration::from_millis(50));
    let pa_gone = lab
        .wait_next_hops(lab.plan.anycast_pa, |h| h == [1], hold * 4)
        .unwrap();
    println!(
        "withdraw: VIP route without instance 2 {:.2} s after the kill (hold time {} s); \
         gateway PA {:.2} s later",
        withdraw.as_secs_f64(),
        bgp::HOLD_S,
        pa_gone.as_secs_f64()
    );
    // New connections after convergence never fail.
    let after = traffic::requests(&lab.plan.t.client, &url, 100, 5, &lab.dir, "after").unwrap();
    let (ok, failed) = slow.finish();
    let survival = ok as f64 * 100.0 / CONNECTIONS as f64;
    println!(
        "instance loss: {ok}/{CONNECTIONS} long-lived connections intact ({survival:.1} %); \
         new connections after convergence: {}/{} answered",
        after.answered(),
        after.sent
    );
    assert!(
        after.failures.is_empty(),
        "after convergence: {:?}",
        after.failures
    );
    assert!(
        withdraw < hold + Duration::from_secs(2),
        "withdrawn after {withdraw:?}"
    );
    assert!(survival >= 99.0, "{survival} %: {failed:#?}");

    // --- The instance comes back while 200 connections run through instance 1 only.
    let slow = Slow::start(&lab, &sha);
    std::thread::sleep(Duration::from_secs(4));
    let back_at = Instant::now();
    lab.start_instance(2).unwrap();
    lab.wait_next_hops(vip, |h| h == [1, 2], Duration::from_secs(15))
        .expect("the router takes instance 2 back");
    let announce = back_at.elapsed();
    let (ok, failed) = slow.finish();
    let counters = lab.stop_instance(2);
    let moved = common::counter(&counters, "new_flows").unwrap_or(0);
    let moved_pct = moved as f64 * 100.0 / CONNECTIONS as f64;
    println!(
        "add-back: instance 2 announced {:.2} s after its start; ECMP moved {moved} of \
         {CONNECTIONS} established connections to it ({moved_pct:.1} %); {ok}/{CONNECTIONS} \
         intact, {} broken",
        announce.as_secs_f64(),
        failed.len()
    );
    assert!(
        moved > 0,
        "instance 2 took none of the connections:\n{counters}"
    );
    assert!(failed.len() <= moved as usize, "{failed:#?}");
    assert!(ok * 100 >= CONNECTIONS * 99, "{failed:#?}");

    // --- Only the data plane of instance 1 (now the only one) dies; its health hook
    // withdraws while its BIRD lives on.
    assert_eq!(lab.next_hops(vip).unwrap(), [1]);
    let at = lab.kill_data_plane(1);
    lab.wait_next_hops(vip, <[usize]>::is_empty, Duration::from_secs(5))
        .expect("the hook withdraws instance 1's VIP route");
    println!(
        "data plane killed, BIRD alive: VIP route withdrawn {:.2} s later (health hook)",
        at.elapsed().as_secs_f64()
    );
    assert!(at.elapsed() < hold, "the hook took {:?}", at.elapsed());

    lab.down();
    assert!(
        common::namespaces_with(&prefix).is_empty(),
        "namespaces left"
    );
}

/// `nvlb lab --instances 3` as a user runs it: three instances converge, and every
/// VIP of the example (both families) answers through them — the public ones over
/// ECMP, the CA VIPs (full NAT)
/// through whichever instance ECMP picks, whose own SNAT CA brings the DIPs' replies
/// back to it alone.
#[test]
fn three_instances_answer_every_vip_from_the_cli() {
    if skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("nvsb{}-", std::process::id() % 10_000);
    let out = Command::new(NVLB)
        .args([
            "lab",
            "--instances",
            "3",
            "--prefix",
            &prefix,
            "--requests",
            "40",
        ])
        .output()
        .expect("nvlb lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
    for vip in [
        "blue-web: 40/40",
        "blue-web6: 40/40",
        "red-web: 40/40",
        "red-web6: 40/40",
        "blue-vip1: 40/40",
        "blue-vip1-v6: 40/40",
        "red-vip1: 40/40",
    ] {
        assert!(stdout.contains(vip), "{vip}: {stdout}");
    }
    // Three next hops per VIP; every instance took new flows.
    assert!(stdout.contains("dev rt-e3"), "{stdout}");
    for i in 1..=3 {
        let section = stdout
            .split(&format!("lb{i} counters"))
            .nth(1)
            .unwrap_or_else(|| panic!("no counters of lb{i}: {stdout}"));
        let flows: u64 = section
            .lines()
            .find_map(|l| l.trim().strip_prefix("new_flows "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(flows > 0, "lb{i} took no flows: {section}");
    }
    assert!(
        common::namespaces_with(&prefix).is_empty(),
        "namespaces left"
    );
}

/// Issue 9's test 1 with three instances (the two-instance case is part of the
/// connection test above): every instance's API names the same DIP for every flow.
#[test]
fn three_instances_pick_the_same_dip_for_every_flow() {
    if skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let prefix = format!("nvsc{}-", std::process::id() % 10_000);
    let opts = Options {
        prefix: prefix.clone(),
        instances: 3,
        nvlb: NVLB.into(),
        base_policy: nvlb::lab::EXAMPLE_POLICY.to_string(),
        bulk_bytes: 4096,
    };
    let lab = ScaleLab::up(&opts, &mut |m| eprintln!("lab: {m}")).expect("scale-out lab up");
    let netns: Vec<String> = lab.plan.lbs.iter().map(|l| l.netns.clone()).collect();
    assert_eq!(netns.len(), 3);
    every_instance_picks_the_same_dips(&netns, &lab.dir.join(nvlb::lab::API_TOKEN_FILE));
    every_instance_sends_the_same_flows_to_the_same_dips(&lab);
    lab.down();
    assert!(
        common::namespaces_with(&prefix).is_empty(),
        "namespaces left"
    );
}
