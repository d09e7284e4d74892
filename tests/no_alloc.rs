//! The engine allocates nothing per packet on its established paths: a counting global
//! allocator (per thread, so the test harness's other threads do not count) watches
//! `Engine::process` for packets of flows that already have a binding, both ways,
//! public VIPs and CA VIPs (full NAT), IPv4 and IPv6.
//!
//! A new flow may allocate (a table growing), so bindings are made first; what is
//! measured is the steady state that every packet of a connection after its first pays.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use nvlb::craft::{self, Outer, Transport};
use nvlb::engine::{Engine, Verdict};
use nvlb::policy::{Snapshot, VipPool};
use nvlb::wire::MacAddr;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the only extra
// work is a thread-local counter bump, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const SEC: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FLOWS: u16 = 200;

fn policy() -> Arc<Snapshot> {
    let text = include_str!("../lb-config/example.toml");
    Arc::new(Snapshot::from_toml(text, "example.toml").expect("example policy"))
}

/// A client's TCP segment to `pool`, as it reaches the LB: plain IP from the Internet
/// for a public VIP, NVGRE from the client VM's host for a CA VIP.
fn to_vip(p: &Snapshot, pool: &VipPool, sport: u16, flags: u8) -> Vec<u8> {
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: pool.port,
        flags,
        seq: 1,
        ack: 1,
    };
    let b = p.balancer();
    if pool.is_public() {
        let client = if pool.address.is_ipv6() {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x77))
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77))
        };
        let ip = craft::ip_packet(client, pool.address, 64, t, b"");
        return craft::ip_frame(MacAddr([2, 0, 0, 0, 1, 0x77]), b.external.mac, &ip);
    }
    let v6 = pool.address.is_ipv6();
    let client = p
        .lookups()
        .iter()
        .find(|r| r.vsid == pool.frontend && r.ca.is_ipv6() == v6 && r.ca != pool.address)
        .expect("a client VM in the VIP's VSID");
    let host = p.host(client.host);
    let outer = Outer {
        src_mac: host.mac,
        dst_mac: b.provider.mac,
        src: IpAddr::V4(host.pa_v4.expect("hosts have IPv4 PAs")),
        dst: IpAddr::V4(b.provider.address_v4().expect("the LB has an IPv4 PA")),
        vsid: pool.frontend.get(),
        flow_id: 1,
    };
    let lb_mac = p.subnet(pool.frontend).expect("subnet").lb_mac;
    let ip = craft::ip_packet(client.ca, pool.address, 64, t, b"");
    craft::nvgre(&outer, &craft::ip_frame(client.mac, lb_mac, &ip))
}

/// The batch path's outputs: one buffer, forwards counted.
struct Sink<'a> {
    buf: &'a mut [u8],
    forwarded: u64,
}

impl nvlb::engine::Outputs for Sink<'_> {
    fn buffer(&mut self, _need: usize) -> &mut [u8] {
        self.buf
    }
    fn verdict(&mut self, _index: usize, _frame: &[u8], verdict: Verdict) {
        forwarded(verdict);
        self.forwarded += 1;
    }
}

fn forwarded(v: Verdict) -> usize {
    match v {
        Verdict::Forward { len, .. } => len,
        v => panic!("expected a forward, got {v:?}"),
    }
}

#[test]
fn established_packets_allocate_nothing() {
    let p = policy();
    let mut engine = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; 4096];
    let kinds: [(&str, bool, bool); 4] = [
        ("public IPv4", true, false),
        ("public IPv6", true, true),
        ("CA VIP IPv4 (full NAT)", false, false),
        ("CA VIP IPv6 (full NAT)", false, true),
    ];
    let mut report = Vec::new();
    for (name, public, v6) in kinds {
        let pool = p
            .pools()
            .iter()
            .find(|x| x.is_public() == public && x.address.is_ipv6() == v6)
            .expect("a pool of this kind in the example");
        // Bindings first: a SYN per flow, and the DIP's answer that establishes it.
        let mut forward = Vec::new();
        let mut back = Vec::new();
        for i in 0..FLOWS {
            let syn = to_vip(&p, pool, 20000 + i, SYN);
            let len = forwarded(engine.process(SEC, &syn, &mut out));
            back.push(craft::tunnel_reply(&out[..len], ACK, 1, 1).expect("NVGRE with TCP"));
            forward.push(to_vip(&p, pool, 20000 + i, ACK));
        }
        for frame in &back {
            forwarded(engine.process(SEC, frame, &mut out));
        }
        // The same, interleaved, for the batch path below.
        let frames: Vec<&[u8]> = forward
            .iter()
            .zip(&back)
            .flat_map(|(f, b)| [f.as_slice(), b.as_slice()])
            .collect();
        // The measured steady state: every packet of every flow, both ways, 5 times.
        let before = allocations();
        let mut packets = 0u64;
        for round in 0..5u64 {
            let now = 2 * SEC + round * 1_000;
            for (f, b) in forward.iter().zip(&back) {
                forwarded(engine.process(now, f, &mut out));
                forwarded(engine.process(now, b, &mut out));
                packets += 2;
            }
        }
        // And the batch path, as the ring data plane feeds it: both directions of
        // every flow in batches of up to 64.
        let mut sink = Sink {
            buf: &mut out,
            forwarded: 0,
        };
        for round in 0..5u64 {
            let now = 3 * SEC + round * 1_000;
            for batch in frames.chunks(nvlb::engine::MAX_BATCH) {
                engine.process_batch(now, batch, &mut sink);
            }
        }
        assert_eq!(
            sink.forwarded,
            5 * frames.len() as u64,
            "{name}: batch path"
        );
        packets += sink.forwarded;
        let allocated = allocations() - before;
        println!("{name}: {packets} established packets, {allocated} allocations");
        report.push((name, packets, allocated));
    }
    // The counter works: this thread's allocations are seen.
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert!(
        allocations() > before,
        "the counting allocator sees nothing"
    );
    drop(v);
    for (name, packets, allocated) in report {
        assert!(packets > 0);
        assert_eq!(
            allocated, 0,
            "{name}: {allocated} allocations in {packets} packets"
        );
    }
}
