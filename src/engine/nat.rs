//! Address and port translation of an IP packet in place, with RFC 1624 incremental
//! checksum updates.
//!
//! The packet is already in the output buffer; its layout was validated when it was
//! parsed ([`super::packet::IpPacket`]), so the offsets used here are known to fit.
//! Incremental updates keep the cost independent of the payload size, and they keep a
//! checksum that was wrong on arrival wrong on departure: the LB never launders a
//! corrupt segment into a valid one.

use std::net::IpAddr;

use crate::wire::{checksum, ip_proto, ipv4, ipv6};

/// New endpoint values; `None` leaves that side unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rewrite {
    pub src: Option<(IpAddr, u16)>,
    pub dst: Option<(IpAddr, u16)>,
    /// Decrement the TTL / hop limit by one (the LB is a hop for the inner packet).
    pub hop: bool,
}

/// Offsets of the checksum and the ports inside a TCP or UDP header.
fn l4_layout(proto: u8) -> Option<usize> {
    match proto {
        ip_proto::TCP => Some(16),
        ip_proto::UDP => Some(6),
        _ => None,
    }
}

fn read16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn write16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn addr_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            out[..4].copy_from_slice(&v.octets());
            (out, 4)
        }
        IpAddr::V6(v) => (v.octets(), 16),
    }
}

/// Applies `rw` to the IP packet `ip` (family `v6`, transport `proto` at offset `l4`).
/// Only the first 8 bytes of the transport header need to be present unless its
/// checksum lies beyond them (TCP), in which case a short header is left unchecked.
pub fn apply(ip: &mut [u8], v6: bool, proto: u8, l4: usize, rw: &Rewrite) {
    let (src_at, dst_at, alen) = if v6 { (8, 24, 16) } else { (12, 16, 4) };
    // Transport checksum covers the pseudo header (addresses) and the ports.
    let l4_ck = l4_layout(proto).and_then(|ck| (ip.len() >= l4 + ck + 2).then_some(l4 + ck));
    let mut l4_sum = l4_ck.map(|at| read16(ip, at));
    let udp_no_ck = proto == ip_proto::UDP && !v6 && l4_sum == Some(0);
    let mut ip_sum = (!v6).then(|| read16(ip, 10));

    for (new, addr_at, port_at) in [(rw.src, src_at, l4), (rw.dst, dst_at, l4 + 2)] {
        let Some((addr, port)) = new else { continue };
        let (bytes, n) = addr_bytes(&addr);
        if n != alen {
            continue; // a family change is not NAT; callers never ask for one
        }
        let old: [u8; 16] = {
            let mut o = [0u8; 16];
            o[..n].copy_from_slice(&ip[addr_at..addr_at + n]);
            o
        };
        if let Some(s) = ip_sum.as_mut() {
            *s = checksum::update_bytes(*s, &old[..n], &bytes[..n]);
        }
        if let Some(s) = l4_sum.as_mut() {
            *s = checksum::update_bytes(*s, &old[..n], &bytes[..n]);
        }
        ip[addr_at..addr_at + n].copy_from_slice(&bytes[..n]);
        if l4_layout(proto).is_some() && ip.len() >= port_at + 2 {
            let old_port = read16(ip, port_at);
            if let Some(s) = l4_sum.as_mut() {
                *s = checksum::update16(*s, old_port, port);
            }
            write16(ip, port_at, port);
        }
    }
    if rw.hop {
        if v6 {
            ip[7] = ip[7].saturating_sub(1);
        } else {
            let old = read16(ip, 8);
            ip[8] = ip[8].saturating_sub(1);
            if let Some(s) = ip_sum.as_mut() {
                *s = checksum::update16(*s, old, read16(ip, 8));
            }
        }
    }
    if let Some(s) = ip_sum {
        write16(ip, 10, s);
    }
    if let (Some(at), Some(mut s)) = (l4_ck, l4_sum) {
        if udp_no_ck {
            return; // IPv4 UDP without checksum stays without
        }
        if proto == ip_proto::UDP && s == 0 {
            s = 0xffff; // RFC 768: a computed zero is sent as all ones
        }
        write16(ip, at, s);
    }
}

/// Sets the addresses and TTL/hop limit of an IP header without touching the payload.
pub fn set_ip_header(ip: &mut [u8], v6: bool, src: IpAddr, dst: IpAddr, ttl: Option<u8>) {
    if v6 {
        if let (Ok(mut p), IpAddr::V6(s), IpAddr::V6(d)) =
            (ipv6::Packet::new_quoted(&mut *ip), src, dst)
        {
            p.set_src_addr(s);
            p.set_dst_addr(d);
            if let Some(t) = ttl {
                p.set_hop_limit(t);
            }
        }
    } else if let (Ok(mut p), IpAddr::V4(s), IpAddr::V4(d)) =
        (ipv4::Packet::new_quoted(&mut *ip), src, dst)
    {
        p.set_src_addr(s);
        p.set_dst_addr(d);
        if let Some(t) = ttl {
            p.set_ttl(t);
        }
        p.fill_checksum();
    }
}
