//! The frames the engine benches feed it, built from the example policy: for each
//! scenario, one SYN per flow and the same flows' ACKs. Shared by `engine.rs` (timed)
//! and `engine_count.rs` (counted), so that both measure the same frames.

// Each bench binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nvlb::craft::{self, Outer, Transport};
use nvlb::policy::{Snapshot, VipPool};
use nvlb::wire::MacAddr;

pub const NOW: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

pub struct Scenario {
    pub name: &'static str,
    pub syn: Vec<Vec<u8>>,
    pub ack: Vec<Vec<u8>>,
}

/// The address of client `i` (each sends from 60 000 ports).
fn client_addr(v6: bool, i: usize) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, i as u16, 0x77))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(198, 51, 100, 77)) + i as u32,
        ))
    }
}

pub fn public(policy: &Snapshot, v6: bool, flows: usize, name: &'static str) -> Scenario {
    let pool = policy
        .pools()
        .iter()
        .find(|p| p.is_public() && p.address.is_ipv6() == v6)
        .expect("public pool");
    let b = policy.balancer();
    let client_mac = MacAddr([2, 0, 0, 0, 1, 0x77]);
    let build = |flags: u8| -> Vec<Vec<u8>> {
        (0..flows)
            .map(|i| {
                let t = Transport::Tcp {
                    src_port: 1024 + (i % 60000) as u16,
                    dst_port: pool.port,
                    flags,
                    seq: 1,
                    ack: 0,
                };
                let ip = craft::ip_packet(client_addr(v6, i / 60000), pool.address, 64, t, &[]);
                craft::ip_frame(client_mac, b.external.mac, &ip)
            })
            .collect()
    };
    Scenario {
        name,
        syn: build(SYN),
        ack: build(ACK),
    }
}

pub fn ca_vip(policy: &Snapshot, v6: bool, flows: usize, name: &'static str) -> Scenario {
    let pool: &VipPool = policy
        .pools()
        .iter()
        .find(|p| !p.is_public() && p.address.is_ipv6() == v6)
        .expect("CA VIP pool");
    let client = policy
        .lookups()
        .iter()
        .find(|r| r.vsid == pool.frontend && r.ca.is_ipv6() == v6 && r.ca != pool.address)
        .expect("client VM");
    let host = policy.host(client.host);
    let b = policy.balancer();
    let (outer_src, outer_dst) = match (host.pa_v4, b.provider.address_v4()) {
        (Some(h), Some(l)) => (IpAddr::V4(h), IpAddr::V4(l)),
        _ => (
            IpAddr::V6(host.pa_v6.unwrap()),
            IpAddr::V6(b.provider.address_v6().unwrap()),
        ),
    };
    let outer = Outer {
        src_mac: host.mac,
        dst_mac: b.provider.mac,
        src: outer_src,
        dst: outer_dst,
        vsid: pool.frontend.get(),
        flow_id: 1,
    };
    let lb_mac = policy.subnet(pool.frontend).unwrap().lb_mac;
    let build = |flags: u8| -> Vec<Vec<u8>> {
        (0..flows)
            .map(|i| {
                let t = Transport::Tcp {
                    src_port: 1024 + i as u16,
                    dst_port: pool.port,
                    flags,
                    seq: 1,
                    ack: 0,
                };
                let ip = craft::ip_packet(client.ca, pool.address, 64, t, &[]);
                craft::nvgre(&outer, &craft::ip_frame(client.mac, lb_mac, &ip))
            })
            .collect()
    };
    Scenario {
        name,
        syn: build(SYN),
        ack: build(ACK),
    }
}

/// The batch path's sink in the benches: one output buffer, verdicts discarded (after
/// `black_box`, so the work is not optimised away).
pub struct Discard {
    pub buf: Vec<u8>,
}

impl Discard {
    pub fn new() -> Discard {
        Discard {
            buf: vec![0; nvlb::engine::output_len(2048)],
        }
    }
}

impl nvlb::engine::Outputs for Discard {
    fn buffer(&mut self, _need: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn verdict(&mut self, _index: usize, _frame: &[u8], verdict: nvlb::engine::Verdict) {
        std::hint::black_box(verdict);
    }
}

/// A random permutation of `v` (splitmix64 and Fisher-Yates, fixed seed): lookups in
/// an order unrelated to the order the flows were inserted in.
pub fn shuffle<T>(v: &mut [T]) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..v.len()).rev() {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        v.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

/// The example policy with room for `flows` per worker, all of it preallocated.
pub fn policy_for(flows: usize) -> nvlb::policy::Snapshot {
    let text = include_str!("../../lb-config/example.toml")
        .replace(
            "max_flows_per_worker = 1048576",
            &format!("max_flows_per_worker = {flows}\npreallocate_flows_per_worker = {flows}"),
        )
        .replace(
            "max_flows_per_tenant = 524288",
            &format!("max_flows_per_tenant = {flows}"),
        );
    Snapshot::from_toml(&text, "example.toml").expect("example policy, resized")
}

/// Frames laid out back to back in one buffer, in the order they are processed, as a
/// receive ring holds them: reading them is sequential, so a bench measures the
/// engine's own cache misses, not those of frames scattered over the heap.
pub struct Packed {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Packed {
    pub fn new<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Packed {
        let mut p = Packed {
            bytes: Vec::new(),
            spans: Vec::new(),
        };
        for f in frames {
            // 64-byte aligned starts, as ring slots are.
            let start = p.bytes.len().next_multiple_of(64);
            p.bytes.resize(start, 0);
            p.bytes.extend_from_slice(f);
            p.spans.push((start, f.len()));
        }
        p
    }

    /// The frames, in order.
    pub fn frames(&self) -> Vec<&[u8]> {
        self.spans
            .iter()
            .map(|&(s, n)| &self.bytes[s..s + n])
            .collect()
    }
}
