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
pub(crate) struct Rewrite {
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

/// Writes `addr` at `at` and returns the RFC 1624 difference it made; a family
/// mismatch (never asked for: NAT does not change families) changes nothing.
fn put_addr(ip: &mut [u8], at: usize, addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => {
            let Some(field) = ip.get_mut(at..at + 4) else {
                return 0;
            };
            let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&a.octets());
            checksum::delta32(old, a.to_bits())
        }
        IpAddr::V6(a) => {
            let Some(field) = ip.get_mut(at..at + 16) else {
                return 0;
            };
            let new = a.octets();
            let d = checksum::delta_bytes(field, &new);
            field.copy_from_slice(&new);
            d
        }
    }
}

/// Applies `rw` to the IP packet `ip` (family `v6`, transport `proto` at offset `l4`).
/// Only the first 8 bytes of the transport header need to be present unless its
/// checksum lies beyond them (TCP), in which case a short header is left unchecked.
/// Each checksum is patched once with the sum of every change's difference.
pub(super) fn apply(ip: &mut [u8], v6: bool, proto: u8, l4: usize, rw: &Rewrite) {
    let (src_at, dst_at, alen) = if v6 { (8, 24, 16) } else { (12, 16, 4) };
    if ip.len() < dst_at + alen {
        return;
    }
    let has_ports = l4_layout(proto).is_some() && ip.len() >= l4 + 4;
    let (mut addr_delta, mut port_delta, mut ttl_delta) = (0u32, 0u32, 0u32);
    for (new, addr_at, port_at) in [(rw.src, src_at, l4), (rw.dst, dst_at, l4 + 2)] {
        let Some((addr, port)) = new else { continue };
        if addr.is_ipv6() != v6 {
            continue;
        }
        addr_delta += put_addr(ip, addr_at, addr);
        if has_ports {
            port_delta += checksum::delta16(read16(ip, port_at), port);
            write16(ip, port_at, port);
        }
    }
    if rw.hop {
        if v6 {
            ip[7] = ip[7].saturating_sub(1);
        } else {
            let old = read16(ip, 8);
            ip[8] = ip[8].saturating_sub(1);
            ttl_delta = checksum::delta16(old, read16(ip, 8));
        }
    }
    if !v6 {
        let ck = checksum::apply_delta(read16(ip, 10), addr_delta + ttl_delta);
        write16(ip, 10, ck);
    }
    // The transport checksum covers the pseudo header (addresses) and the ports.
    let Some(at) = l4_layout(proto)
        .map(|ck| l4 + ck)
        .filter(|at| ip.len() >= at + 2)
    else {
        return;
    };
    let old = read16(ip, at);
    if proto == ip_proto::UDP && !v6 && old == 0 {
        return; // IPv4 UDP without checksum stays without
    }
    let mut ck = checksum::apply_delta(old, addr_delta + port_delta);
    if proto == ip_proto::UDP && ck == 0 {
        ck = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    write16(ip, at, ck);
}

/// Sets the addresses and TTL/hop limit of an IP header without touching the payload.
pub(super) fn set_ip_header(ip: &mut [u8], v6: bool, src: IpAddr, dst: IpAddr, ttl: Option<u8>) {
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

/// [`apply`] for a packet whose layout the caller has checked: IPv4 without options
/// (`l4` = 20) or IPv6 (`l4` = 40), and the whole TCP or UDP header present. Straight
/// at fixed offsets, with the same differences in the same order as [`apply`], so
/// that even the two forms of a zero checksum come out alike (its test holds it to
/// that); anything else goes to [`apply`].
#[inline(always)]
pub(super) fn apply_whole(ip: &mut [u8], v6: bool, udp: bool, rw: &Rewrite) {
    let proto = if udp { ip_proto::UDP } else { ip_proto::TCP };
    let l4 = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let ck_at = if udp { 6 } else { 16 };
    let whole = if udp { 8 } else { 20 };
    if ip.len() < l4 + whole {
        return apply(ip, v6, proto, l4, rw);
    }
    let (h, t) = ip.split_at_mut(l4);
    let t = &mut t[..whole];
    let (mut addr_delta, mut port_delta) = (0u32, 0u32);
    if v6 {
        for (new, at, port_at) in [(rw.src, 8, 0), (rw.dst, 24, 2)] {
            if let Some((IpAddr::V6(a), port)) = new {
                let field = &mut h[at..at + 16];
                let new = a.octets();
                addr_delta += checksum::delta_bytes(field, &new);
                field.copy_from_slice(&new);
                port_delta += checksum::delta16(read16(t, port_at), port);
                write16(t, port_at, port);
            }
        }
        if rw.hop {
            h[7] = h[7].saturating_sub(1);
        }
    } else {
        for (new, at, port_at) in [(rw.src, 12, 0), (rw.dst, 16, 2)] {
            if let Some((IpAddr::V4(a), port)) = new {
                let old = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
                h[at..at + 4].copy_from_slice(&a.octets());
                addr_delta += checksum::delta32(old, a.to_bits());
                port_delta += checksum::delta16(read16(t, port_at), port);
                write16(t, port_at, port);
            }
        }
        let mut ttl_delta = 0;
        if rw.hop {
            let old = read16(h, 8);
            h[8] = h[8].saturating_sub(1);
            ttl_delta = checksum::delta16(old, read16(h, 8));
        }
        let ck = checksum::apply_delta(read16(h, 10), addr_delta + ttl_delta);
        write16(h, 10, ck);
    }
    let old = read16(t, ck_at);
    if udp && !v6 && old == 0 {
        return;
    }
    let mut ck = checksum::apply_delta(old, addr_delta + port_delta);
    if udp && ck == 0 {
        ck = 0xffff;
    }
    write16(t, ck_at, ck);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn endpoint(v6: bool, bits: u128, port: u16) -> (IpAddr, u16) {
        let a = if v6 {
            IpAddr::V6(Ipv6Addr::from_bits(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
        };
        (a, port)
    }

    proptest! {
        /// The fixed-offset form writes what the general one writes, byte for byte, on
        /// any bytes of the checked layout (checksums of every value, zero UDP
        /// checksums, TTL 0, a family that does not match).
        #[test]
        fn apply_whole_equals_apply(
            v6 in any::<bool>(),
            udp in any::<bool>(),
            mut bytes in proptest::collection::vec(any::<u8>(), 60..90),
            src in proptest::option::of((any::<u128>(), any::<u16>(), any::<bool>())),
            dst in proptest::option::of((any::<u128>(), any::<u16>(), any::<bool>())),
            hop in any::<bool>(),
            zero_ck in any::<bool>(),
        ) {
            let l4 = if v6 { 40 } else { 20 };
            let ck_at = l4 + if udp { 6 } else { 16 };
            if zero_ck {
                bytes[ck_at..ck_at + 2].fill(0);
            }
            let rw = Rewrite {
                src: src.map(|(b, p, other)| endpoint(v6 ^ other, b, p)),
                dst: dst.map(|(b, p, other)| endpoint(v6 ^ other, b, p)),
                hop,
            };
            let proto = if udp { ip_proto::UDP } else { ip_proto::TCP };
            let mut want = bytes.clone();
            apply(&mut want, v6, proto, l4, &rw);
            apply_whole(&mut bytes, v6, udp, &rw);
            prop_assert_eq!(want, bytes);
        }
    }
}
