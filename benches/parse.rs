//! Packet views: nvlb's `wire` against pnet_packet on the same NVGRE bytes.
//!
//! (a) parse outer Ethernet/IPv4/GRE -> inner Ethernet/IPv4/TCP, reading the VSID and the
//!     inner 5-tuple; (b) the same plus the return-path NAT: rewrite the inner IPv4
//!     destination and fix both checksums (RFC 1624 incremental for nvlb, pnet's own full
//!     recompute for pnet); (c) whether pnet panics on a GRE header with the routing bit.
//! Timings are for comparison within one run only, never thresholds.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use nvlb::wire::{checksum, ethernet, gre, ip_proto, ipv4, tcp};
use pnet_packet::ethernet::{EthernetPacket, MutableEthernetPacket};
use pnet_packet::gre::{GrePacket, MutableGrePacket};
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};
use pnet_packet::{MutablePacket as _, Packet as _};

/// Outer 192.168.100.1 -> .2, GRE key VSID 5001 / FlowID 42, inner TCP
/// 10.0.0.1:49152 -> 10.0.0.2:80 with 16 bytes of HTTP (checksums by scapy).
const NVGRE_FRAME: &str = "00155d00000200155d00000108004500006201014000402ff017c0a86401c0a86402\
    200065580013892a001dd8b71c01001dd8b71c0008004500003800070000400666b70a0000010a000002\
    c000005000000001000000025010020007d80000474554202f20485454502f312e310d0a";

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// VSID and inner 5-tuple, as the engine's flow lookup needs them.
type Key = (u32, Ipv4Addr, Ipv4Addr, u8, u16, u16);

fn ours_parse(buf: &[u8]) -> Option<Key> {
    let outer = ethernet::Frame::new_checked(buf).ok()?;
    if outer.ethertype() != ethernet::ethertype::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(outer.payload()).ok()?;
    if ip.protocol() != ip_proto::GRE {
        return None;
    }
    let g = gre::Packet::new_checked(ip.payload()).ok()?;
    let vsid = g.vsid()?;
    let inner = ethernet::Frame::new_checked(g.payload()).ok()?;
    let iip = ipv4::Packet::new_checked(inner.payload()).ok()?;
    let t = tcp::Packet::new_checked(iip.payload()).ok()?;
    Some((
        vsid,
        iip.src_addr(),
        iip.dst_addr(),
        iip.protocol(),
        t.src_port(),
        t.dst_port(),
    ))
}

fn pnet_parse(buf: &[u8]) -> Option<Key> {
    let outer = EthernetPacket::new(buf)?;
    if outer.get_ethertype().0 != 0x0800 {
        return None;
    }
    let ip = Ipv4Packet::new(outer.payload())?;
    if ip.get_next_level_protocol().0 != ip_proto::GRE {
        return None;
    }
    let g = GrePacket::new(ip.payload())?;
    // get_key() would allocate a Vec; the raw bytes are pnet's cheapest route.
    let raw = g.get_key_raw();
    let key = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?);
    let inner = EthernetPacket::new(g.payload())?;
    let iip = Ipv4Packet::new(inner.payload())?;
    let t = TcpPacket::new(iip.payload())?;
    Some((
        key >> 8,
        iip.get_source(),
        iip.get_destination(),
        iip.get_next_level_protocol().0,
        t.get_source(),
        t.get_destination(),
    ))
}

/// Parse, then rewrite the inner destination with RFC 1624 updates of both checksums.
fn ours_nat(buf: &mut [u8], new_dst: Ipv4Addr) -> Option<(u32, u16)> {
    let mut outer = ethernet::Frame::new_checked(&mut buf[..]).ok()?;
    let mut ip = ipv4::Packet::new_checked(outer.payload_mut()).ok()?;
    let mut g = gre::Packet::new_checked(ip.payload_mut()).ok()?;
    let vsid = g.vsid()?;
    let mut inner = ethernet::Frame::new_checked(g.payload_mut()).ok()?;
    let mut iip = ipv4::Packet::new_checked(inner.payload_mut()).ok()?;
    let old = iip.dst_addr();
    iip.set_dst_addr(new_dst);
    let c = checksum::update32(iip.checksum(), old.to_bits(), new_dst.to_bits());
    iip.set_checksum(c);
    let mut t = tcp::Packet::new_checked(iip.payload_mut()).ok()?;
    let tc = checksum::update_addr(t.checksum(), IpAddr::V4(old), IpAddr::V4(new_dst));
    t.set_checksum(tc);
    Some((vsid, tc))
}

/// The same with pnet: set_destination and full recomputes.
fn pnet_nat(buf: &mut [u8], new_dst: Ipv4Addr) -> Option<(u32, u16)> {
    let mut outer = MutableEthernetPacket::new(buf)?;
    let mut ip = MutableIpv4Packet::new(outer.payload_mut())?;
    let mut g = MutableGrePacket::new(ip.payload_mut())?;
    let raw = g.get_key_raw();
    let vsid = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?) >> 8;
    let mut inner = MutableEthernetPacket::new(g.payload_mut())?;
    let mut iip = MutableIpv4Packet::new(inner.payload_mut())?;
    iip.set_destination(new_dst);
    let c = pnet_packet::ipv4::checksum(&iip.to_immutable());
    iip.set_checksum(c);
    let src = iip.get_source();
    let mut t = MutableTcpPacket::new(iip.payload_mut())?;
    let tc = pnet_packet::tcp::ipv4_checksum(&t.to_immutable(), &src, &new_dst);
    t.set_checksum(tc);
    Some((vsid, tc))
}

fn check_outputs_agree() {
    let frame = hex(NVGRE_FRAME);
    assert_eq!(ours_parse(&frame), pnet_parse(&frame));
    assert!(ours_parse(&frame).is_some());
    let new_dst = Ipv4Addr::new(10, 0, 0, 99);
    let (mut a, mut b) = (frame.clone(), frame.clone());
    ours_nat(&mut a, new_dst).unwrap();
    pnet_nat(&mut b, new_dst).unwrap();
    assert_eq!(
        a, b,
        "incremental and full recompute must produce identical frames"
    );
}

fn report_pnet_routing_panic() {
    // GRE with C and R set (RFC 1701 source routing), protocol IPv4, then some bytes.
    let bytes = [0xC0u8, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let pnet = std::panic::catch_unwind(|| GrePacket::new(&bytes[..]).map(|g| g.payload().len()));
    std::panic::set_hook(quiet);
    let ours = gre::Packet::new_checked(&bytes[..]);
    println!(
        "GRE with routing bit: pnet_packet {}; nvlb wire returns {:?}",
        if pnet.is_err() {
            "PANICKED"
        } else {
            "did not panic"
        },
        ours.map(|_| ())
    );
}

fn benches(c: &mut Criterion) {
    check_outputs_agree();
    report_pnet_routing_panic();
    let frame = hex(NVGRE_FRAME);

    let mut group = c.benchmark_group("parse_nvgre");
    group.bench_function("nvlb", |b| b.iter(|| ours_parse(black_box(&frame))));
    group.bench_function("pnet", |b| b.iter(|| pnet_parse(black_box(&frame))));
    group.finish();

    // Alternate between two destinations so every iteration is a real rewrite and the
    // buffer stays a valid packet for the next one.
    let dsts = [Ipv4Addr::new(10, 0, 0, 99), Ipv4Addr::new(10, 0, 0, 2)];
    let mut group = c.benchmark_group("parse_nat_checksum");
    let mut buf = frame.clone();
    let mut i = 0usize;
    group.bench_function("nvlb_incremental", |b| {
        b.iter(|| {
            i ^= 1;
            ours_nat(black_box(&mut buf), dsts[i])
        })
    });
    let mut buf = frame.clone();
    let mut i = 0usize;
    group.bench_function("pnet_full_recompute", |b| {
        b.iter(|| {
            i ^= 1;
            pnet_nat(black_box(&mut buf), dsts[i])
        })
    });
    group.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
