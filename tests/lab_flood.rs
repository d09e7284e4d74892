//! A SYN flood on the real lab (`nvlb lab --keep`: namespaces, the real LB with two
//! workers, host simulators, kernel TCP in the VMs, curl): `nvlb gen --syn-flood`
//! sends 1 M SYNs of new flows from random spoofed clients (198.18.0.0/15, random
//! ports) at Red's public VIP as fast as it can, from the router's side of the LB's
//! external link, while Blue's clients keep making requests (public VIP from the
//! Internet client, CA VIP from a tier-1 VM, so Blue's source-NAT ports keep binding)
//! and slow Blue downloads keep transferring. The policy bounds the table small
//! (`max_flows_per_worker = 32768`, `max_flows_per_tenant = 16384`) so the flood
//! reaches the bound in its first second.
//!
//! Shown: the LB's resident memory grows by less than its two full flow tables; Blue
//! sees no failed request and no broken download; Red's excess is dropped and counted
//! (`tenant_quota`); Red never holds more than its quota; Blue's new flows bind during
//! the flood; once the flood's bindings time out, Red is answered again. Then a Red VM
//! sends 60 000 SYNs to Red's CA VIP (full NAT) from raw sockets: Red's source-NAT
//! ports run out (`nat_ports_exhausted`) while Blue's CA-VIP requests, on Blue's own
//! ports, keep binding. The figures are printed (`FLOOD:` lines) for
//! docs/reliability.md.
//!
//! The router blackholes the spoofed range, as the Internet would lose answers to
//! addresses nobody owns: Red's VMs answer each SYN, and the LB holds each answered
//! binding (SYN-ACK seen, no ACK) for the SYN timeout (5 s here), from its last SYN-ACK.
//! A full-NAT flow takes a source-NAT port only if it then fits Red's quota, so the NAT
//! flood starts only once Red's active-flow gauge (`nvlb_tenant_active_flows`) leaves
//! room in every shard for that worker's whole share of the ports: when Red is first
//! answered again the flood's bindings still hold nearly all of its quota, and NAT SYNs
//! would be counted as `tenant_quota`, not `nat_ports_exhausted`. Skips (and passes)
//! when not root or without `ip netns`.

mod common;
mod rlab;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nvlb::flow::Flow;
use nvlb::lab::traffic;
use rlab::{Lab, METRICS, Slow, metric};

const BLUE_URL: &str = "http://203.0.113.10:80";
const RED_URL: &str = "http://203.0.113.20:80";
const WORKERS: u64 = 2;
const MAX_FLOWS: u64 = 32768;
const PER_TENANT: u64 = 16384;
const SYNS: u64 = 1_000_000;
/// Room left in Red's quota beyond its source-NAT ports before the NAT flood starts.
const NAT_HEADROOM: u64 = 1024;

/// The most a worker's full shard holds: the slab at its largest capacity (it grows by
/// doubling from 4096, so at most the next power of two of the bound), the free list,
/// and two hashbrown index tables of 4-byte ids (buckets: the next power of two of
/// 8/7 of the entries, plus one control byte each).
fn shard_bound_bytes(max: u64) -> u64 {
    let entry = std::mem::size_of::<Flow>() as u64;
    let slab = max.next_power_of_two() * entry;
    let free = max.next_power_of_two() * 4;
    let buckets = (max * 8 / 7).next_power_of_two();
    let index = buckets * 4 + buckets + 16;
    slab + free + 2 * index
}

#[test]
fn a_syn_flood_on_red_leaves_blue_untouched_and_memory_bounded() {
    if common::skip_without_netns() {
        return;
    }
    let flows = format!(
        "max_flows_per_worker = {MAX_FLOWS}\nmax_flows_per_tenant = {PER_TENANT}\n\
         tcp_syn_timeout = \"5s\"\ntcp_established_timeout = \"15s\"\n\
         tcp_closing_timeout = \"5s\"\nudp_timeout = \"30s\"\n"
    );
    let policy = rlab::example_with_flows(&flows);
    let mut lab = Lab::up(format!("nvf{}-", std::process::id()), &policy);
    let restart = lab.restart_lb(&["--metrics", METRICS]);
    println!("LB restarted with --metrics in {restart:?}");
    // Replies to the spoofed clients die at the router, silently.
    common::must(
        "ip",
        &[
            "-n",
            &lab.topo.router,
            "route",
            "add",
            "blackhole",
            "198.18.0.0/15",
        ],
    );
    let client = lab.topo.client.clone();
    let vip1 = lab
        .topo
        .pools
        .iter()
        .find(|p| p.name == "blue-vip1")
        .expect("blue-vip1");
    let vip1_ns = lab
        .topo
        .source_netns(vip1.source.expect("a VM reaches blue-vip1"))
        .to_string();
    let vip1_url: &'static str = Box::leak(vip1.base_url().into_boxed_str());
    // Health checks of the restarted LB take their DIPs up again first.
    let t = Instant::now();
    loop {
        let b = traffic::requests(&client, BLUE_URL, 8, 3, &lab.dir(), "warm-b").unwrap();
        let r = traffic::requests(&client, RED_URL, 8, 3, &lab.dir(), "warm-r").unwrap();
        if b.failures.is_empty() && r.failures.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{b:?} {r:?}");
        thread::sleep(Duration::from_millis(500));
    }
    let rss_before = lab.lb_rss_kib();
    let page0 = lab.metrics();
    let bulk_sha = traffic::sha256(&lab.dir().join("bulk.bin")).unwrap();

    // Long-lived Blue transfers (10 MiB at 400 kB/s: about 26 s), then Blue load.
    let mut slow: Vec<Slow> = (0..3)
        .map(|i| Slow::start(&lab.dir(), &client, BLUE_URL, "400K", 170, i))
        .collect();
    slow.push(Slow::start(&lab.dir(), &vip1_ns, vip1_url, "400K", 170, 3));
    let stop = Arc::new(AtomicBool::new(false));
    let blue_public = common::load_batches(client.clone(), BLUE_URL, 8, 5, lab.dir(), stop.clone());
    // Its own directory: batches name their answer files by batch number.
    let ca_dir = lab.dir().join("ca-load");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let blue_ca = common::load_batches(vip1_ns.clone(), vip1_url, 4, 5, ca_dir, stop.clone());
    // RSS every 50 ms.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let lb_pid = lab.lb().0;
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(r) = rlab::rss_kib(lb_pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    thread::sleep(Duration::from_secs(1));

    // The flood, from the router's end of the LB's external link.
    let cfg = lab.config.display().to_string();
    let count = SYNS.to_string();
    let flood_start = Instant::now();
    let out = common::run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.topo.router,
            rlab::NVLB,
            "gen",
            "--config",
            &cfg,
            "--external",
            "rt-lb",
            "--vip",
            "red-web",
            "--syn-flood",
            "--count",
            &count,
            "--threads",
            "1",
            "--drain",
            "0ms",
            "--json",
        ],
    );
    let flood_time = flood_start.elapsed();
    assert!(out.status.success(), "gen: {}", rlab::text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = summary["sent"].as_u64().unwrap();
    let tx_pps = summary["tx_pps"].as_f64().unwrap();
    let page1 = lab.metrics();
    // Recovery: Red's flood bindings time out, then Red is answered again.
    let flood_end = flood_start + flood_time;
    let recovered = loop {
        let r = traffic::requests(&client, RED_URL, 10, 3, &lab.dir(), "red-after").unwrap();
        if r.failures.is_empty() && r.answered() == r.sent {
            break flood_end.elapsed();
        }
        assert!(
            flood_end.elapsed() < Duration::from_secs(90),
            "Red not answered after the flood: {:?}",
            r.failures
        );
        thread::sleep(Duration::from_secs(1));
    };
    // Part two: Red's VM opens new flows to its CA VIP (red-vip1, full NAT) faster than
    // Red's source-NAT ports free up, while Blue's CA-VIP load (its own ports) goes on.
    // A full-NAT flow takes a source-NAT port only if it then fits Red's quota, so the
    // ports can run out (`nat_ports_exhausted`) only once every shard has room for its
    // worker's whole share of the ports; when Red is answered again, the flood's
    // answered bindings (on the SYN timeout from their last SYN-ACK) may still hold
    // nearly all of the quota, and the NAT flood would then meet `tenant_quota` instead.
    let red_vsid = lab
        .policy
        .pools()
        .iter()
        .find(|p| p.name == "red-vip1")
        .and_then(|p| p.dips.first())
        .expect("red-vip1 has a DIP")
        .vsid
        .get();
    let at_recovery = lab.metrics();
    let vsid_label = format!("vsid=\"{red_vsid}\"");
    let nat_ports = rlab::sample(&at_recovery, "nvlb_nat_ports", &[&vsid_label])
        .expect("nvlb_nat_ports of red-vip1's VSID on the metrics page");
    let quota = rlab::sample(&at_recovery, "nvlb_tenant_flow_quota", &[])
        .expect("nvlb_tenant_flow_quota on the metrics page");
    // Each worker hands out the ports p = worker (mod W).
    let share = nat_ports.div_ceil(WORKERS);
    let room_for = quota.saturating_sub(share + NAT_HEADROOM);
    let red_then = red_per_shard(&at_recovery);
    let (roomy_page, waited, roomy) =
        lab.poll_metrics(Duration::from_secs(60), Duration::from_millis(200), |p| {
            red_per_shard(p).iter().all(|&n| n <= room_for)
        });
    let red_roomy = red_per_shard(&roomy_page);
    println!(
        "FLOOD: Red answered again {recovered:.1?} after the flood (tcp_syn_timeout 5 s), \
         holding {red_then:?} flows per shard (quota {quota}); Red's source-NAT ports: \
         {nat_ports} per DIP endpoint, {share} per worker; at most {room_for} Red flows per \
         shard leave room for them ({NAT_HEADROOM} to spare): {} {waited:.1?} later \
         ({red_roomy:?})",
        if roomy { "reached" } else { "NOT reached" }
    );
    let nat = nat_flood(&lab, red_vsid);
    // Blue went on through the flood, Red's recovery and the NAT flood.
    stop.store(true, Ordering::Relaxed);
    let public = blue_public.join().unwrap();
    let ca = blue_ca.join().unwrap();
    sampler.join().unwrap();
    let rss_peak = peak.load(Ordering::Relaxed);

    let delta = |name: &str, labels: &[&str]| {
        metric(&page1, name, labels).saturating_sub(metric(&page0, name, labels))
    };
    let quota_drops = delta("nvlb_drops_total", &["reason=\"tenant_quota\""]);
    let full_drops = delta("nvlb_drops_total", &["reason=\"flow_table_full\""]);
    let red_new = delta("nvlb_vip_new_flows_total", &["vip=\"red-web\""]);
    let blue_new = delta("nvlb_vip_new_flows_total", &["vip=\"blue-web\""]);
    let blue_ca_new = delta("nvlb_vip_new_flows_total", &["vip=\"blue-vip1\""]);
    let red_active = rlab::sample(&page1, "nvlb_tenant_active_flows", &["tenant=\"red\""])
        .expect("nvlb_tenant_active_flows of red on the metrics page");
    let received = delta("nvlb_received_packets_total", &[]);
    let (pf, ps, pwhy) = rlab::failures(&public);
    let (cf, cs, cwhy) = rlab::failures(&ca);
    let mut broken = Vec::new();
    let nslow = slow.len();
    for s in slow {
        if let Err(e) = s.finish(&bulk_sha) {
            broken.push(e);
        }
    }
    let table = shard_bound_bytes(MAX_FLOWS);
    let bound_kib = WORKERS * table / 1024;
    println!(
        "FLOOD: {sent} SYNs sent in {flood_time:.1?} at {tx_pps:.0} SYN/s (gen's tx rate), \
         not sent {}; LB received {received} packets",
        summary["not_sent"]
    );
    println!(
        "FLOOD: drops tenant_quota {quota_drops}, flow_table_full {full_drops}; red-web new \
         flows {red_new}; red active flows after {red_active} (quota {PER_TENANT} x {WORKERS} \
         workers)"
    );
    println!(
        "FLOOD: blue-web {ps} requests, {pf} failed, {blue_new} new flows; blue-vip1 \
         {cs} requests, {cf} failed, {blue_ca_new} new flows (source NAT); {nslow} slow \
         downloads, {} broken",
        broken.len()
    );
    println!(
        "FLOOD: RSS before {rss_before} KiB, peak {rss_peak} KiB (+{} KiB); table bound: \
         Flow {} B, {MAX_FLOWS} per worker -> {} KiB per shard, {bound_kib} KiB for \
         {WORKERS} workers",
        rss_peak.saturating_sub(rss_before),
        std::mem::size_of::<Flow>(),
        table / 1024
    );
    println!(
        "FLOOD: Red's VM sent {} SYNs to red-vip1 in {:.1?} (Red's flows per shard then \
         {:?}); the LB's counters {} {:.1?} later: red-vip1 new flows {}, drops \
         nat_ports_exhausted {}, tenant_quota {}; Red's source-NAT ports in use {} of \
         {nat_ports} ({share} per worker), Red's flows per shard {:?}",
        nat.syns,
        nat.took,
        nat.red_before,
        if nat.still { "settled" } else { "still moved" },
        nat.settled,
        nat.new_flows,
        nat.nat_drops,
        nat.quota_drops,
        nat.ports_in_use,
        nat.red_after
    );
    let rss_after = lab.lb_rss_kib();
    println!("FLOOD: RSS after the NAT flood {rss_after} KiB");
    assert!(sent >= SYNS * 99 / 100, "sent {sent}");
    assert!(
        roomy,
        "Red's flood bindings still hold {red_roomy:?} flows per shard {waited:.1?} after \
         Red was answered again (at most {room_for} leave room for {share} ports)"
    );
    assert!(
        nat.still,
        "the LB's counters still moved after the NAT flood"
    );
    assert!(
        nat.nat_drops > 0,
        "Red's source-NAT ports ran out and were counted: nat_ports_exhausted {}, \
         tenant_quota {} during the NAT flood",
        nat.nat_drops,
        nat.quota_drops
    );
    assert!(pf == 0 && cf == 0, "Blue failed: {pwhy:?} {cwhy:?}");
    assert!(broken.is_empty(), "broken downloads: {broken:?}");
    assert!(
        quota_drops > 0,
        "the flood reached Red's quota and was counted"
    );
    assert!(red_active <= PER_TENANT * WORKERS, "red holds {red_active}");
    assert!(
        blue_new > 0 && blue_ca_new > 0,
        "Blue's new flows bound during the flood"
    );
    // Memory: the tables at their bound (plus the allocator's copy while a slab grows:
    // a doubling holds old and new at once) and nothing proportional to the SYNs sent.
    assert!(
        rss_peak.saturating_sub(rss_before) <= 2 * bound_kib,
        "RSS grew {} KiB, bound {bound_kib} KiB",
        rss_peak.saturating_sub(rss_before)
    );
    lab.down();
}

/// Raw TCP SYNs from a VM (its kernel fills the IP header and answers each SYN-ACK with
/// a reset, so each binding holds its source-NAT port for the closing timeout).
const SYN_SCRIPT: &str = r#"
import socket, struct, sys
src, dst, dport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF)
    t += t >> 16
    return ~t & 0xFFFF
for i in range(n):
    sport = 30000 + i % 30000
    h = struct.pack("!HHIIBBHHH", sport, dport, 0x4E560000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
    c = csum(sa + da + struct.pack("!BBH", 0, 6, len(h)) + h)
    s.sendto(h[:16] + struct.pack("!H", c) + h[18:], (dst, 0))
"#;

/// What the NAT flood did, from the LB's counters.
struct NatFlood {
    syns: u64,
    took: Duration,
    /// From the end of the sending until the counters stopped moving (`still`), or
    /// until the poll gave up.
    settled: Duration,
    still: bool,
    new_flows: u64,
    nat_drops: u64,
    quota_drops: u64,
    ports_in_use: u64,
    red_before: Vec<u64>,
    red_after: Vec<u64>,
}

/// Red's flows in each shard (`nvlb_tenant_active_flows`); the gauge must be there.
fn red_per_shard(page: &str) -> Vec<u64> {
    (0..WORKERS)
        .map(|w| {
            let shard = format!("shard=\"{w}\"");
            rlab::sample(
                page,
                "nvlb_tenant_active_flows",
                &["tenant=\"red\"", &shard],
            )
            .unwrap_or_else(|| panic!("no nvlb_tenant_active_flows of red in shard {w}"))
        })
        .collect()
}

/// Red's tier-1 VM floods red-vip1 with new flows; what the LB counted meanwhile.
fn nat_flood(lab: &Lab, backend_vsid: u32) -> NatFlood {
    let pool = lab
        .topo
        .pools
        .iter()
        .find(|p| p.name == "red-vip1")
        .expect("red-vip1");
    let ns = lab
        .topo
        .source_netns(pool.source.expect("a Red VM reaches red-vip1"));
    let vm = lab
        .topo
        .vms
        .iter()
        .find(|v| v.netns == ns)
        .expect("the VM of that namespace");
    let src = vm.v4.as_ref().expect("an IPv4 CA").addr.to_string();
    let before = lab.metrics();
    let n: u64 = 60_000;
    let t = Instant::now();
    let out = common::run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "python3",
            "-c",
            SYN_SCRIPT,
            &src,
            &pool.address.to_string(),
            &pool.port.to_string(),
            &n.to_string(),
        ],
    );
    let took = t.elapsed();
    assert!(out.status.success(), "{}", rlab::text(&out.stderr));
    // The workers publish their counters every 100 ms: scrape until the NAT flood's
    // counters stop moving.
    let nat = ["reason=\"nat_ports_exhausted\""];
    let quota = ["reason=\"tenant_quota\""];
    let vip = ["vip=\"red-vip1\""];
    let key = |p: &str| {
        (
            rlab::sample(p, "nvlb_drops_total", &nat).expect("drop reason nat_ports_exhausted"),
            rlab::sample(p, "nvlb_drops_total", &quota).expect("drop reason tenant_quota"),
            rlab::sample(p, "nvlb_vip_new_flows_total", &vip).expect("red-vip1's new flows"),
            rlab::sample(p, "nvlb_vip_packets_total", &vip).expect("red-vip1's packets"),
        )
    };
    let mut last = key(&lab.metrics());
    let (after, settled, still) =
        lab.poll_metrics(Duration::from_secs(10), Duration::from_millis(300), |p| {
            let now = key(p);
            std::mem::replace(&mut last, now) == now
        });
    let (k0, k1) = (key(&before), key(&after));
    let ports_label = format!("vsid=\"{backend_vsid}\"");
    NatFlood {
        syns: n,
        took,
        settled,
        still,
        new_flows: k1.2 - k0.2,
        nat_drops: k1.0 - k0.0,
        quota_drops: k1.1 - k0.1,
        ports_in_use: rlab::sample(&after, "nvlb_nat_ports_in_use", &[&ports_label])
            .expect("nvlb_nat_ports_in_use of red-vip1's VSID"),
        red_before: red_per_shard(&before),
        red_after: red_per_shard(&after),
    }
}
