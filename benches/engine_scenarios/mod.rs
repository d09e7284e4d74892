//! The frames the engine benches feed it, built from the example policy: for each
//! scenario, one SYN per flow and the same flows' ACKs. Shared by `engine.rs` (timed)
//! and `engine_count.rs` (counted), so that both measure the same frames.

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
