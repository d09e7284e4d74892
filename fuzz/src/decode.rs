//! Reads frames back with nvlb's own wire views, the way a receiver would.
//!
//! Two strictnesses: `Exact` for what the engine emitted (no padding, every IPv4
//! header checksum verifies, every length agrees with the bytes present) and `Lenient`
//! for what the fuzzer fed in (padding allowed, anything unreadable is `None`). This
//! module must never panic on any byte string: it is run on arbitrary input.

use std::net::IpAddr;

use nvlb::wire::{MacAddr, ethernet, gre, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp, udp};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Strict {
    /// Output of the engine: lengths exact, checksums of IPv4 headers valid.
    Exact,
    /// Input: trailing padding allowed, checksums not required.
    Lenient,
}

/// One IP packet (outer or inner).
#[derive(Clone, Copy, Debug)]
pub struct Ip<'a> {
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// Upper-layer protocol, behind any IPv6 extension headers.
    pub proto: u8,
    /// Upper-layer bytes, up to the IP length.
    pub l4: &'a [u8],
    /// Header plus payload, as the IP header says.
    pub len: usize,
    pub fragment: bool,
}

/// The NVGRE part of a tunnelled frame.
#[derive(Clone, Copy, Debug)]
pub struct Tunnel<'a> {
    pub outer: Ip<'a>,
    pub vsid: u32,
    pub inner_src_mac: MacAddr,
    pub inner_dst_mac: MacAddr,
    pub inner_ethertype: u16,
}

/// A decoded frame: Ethernet, optionally NVGRE, then the innermost IP packet (absent
/// for ARP and other non-IP payloads).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub ethertype: u16,
    pub tunnel: Option<Tunnel<'a>>,
    pub ip: Option<Ip<'a>>,
}

fn is_ip(ethertype: u16) -> bool {
    ethertype == ethernet::ethertype::IPV4 || ethertype == ethernet::ethertype::IPV6
}

/// Parses the IP packet at the start of `bytes`.
pub fn ip(bytes: &[u8], ethertype: u16, strict: Strict) -> Result<Ip<'_>, String> {
    let (v6, src, dst, ttl, proto, l4_off, len, fragment) =
        if ethertype == ethernet::ethertype::IPV6 {
            let p = ipv6::Packet::new_checked(bytes).map_err(|e| format!("IPv6: {e}"))?;
            let ul = p.upper_layer().map_err(|e| format!("IPv6 chain: {e}"))?;
            (
                true,
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                p.hop_limit(),
                ul.protocol,
                ul.offset,
                ipv6::HEADER_LEN + usize::from(p.payload_len()),
                ul.fragment.is_some(),
            )
        } else if ethertype == ethernet::ethertype::IPV4 {
            let p = ipv4::Packet::new_checked(bytes).map_err(|e| format!("IPv4: {e}"))?;
            if strict == Strict::Exact && !p.verify_checksum() {
                return Err("IPv4 header checksum does not verify".into());
            }
            (
                false,
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                p.ttl(),
                p.protocol(),
                p.header_len(),
                usize::from(p.total_len()),
                p.is_fragment(),
            )
        } else {
            return Err(format!("ethertype {ethertype:#06x} is not IP"));
        };
    if strict == Strict::Exact && len != bytes.len() {
        return Err(format!(
            "IP length {len} but {} bytes follow the Ethernet header",
            bytes.len()
        ));
    }
    let l4 = bytes
        .get(l4_off..len)
        .ok_or_else(|| format!("upper layer at {l4_off} beyond length {len}"))?;
    Ok(Ip {
        v6,
        src,
        dst,
        ttl,
        proto,
        l4,
        len,
        fragment,
    })
}

/// Bits 6-12 of GRE's first word, which RFC 2784 says a receiver ignores.
const GRE_IGNORED_BITS: u16 = 0x03F8;

/// NVGRE's flags: K alone; on input, whatever a receiver must ignore may be set too.
fn nvgre_flags(word: u16, strict: Strict) -> bool {
    match strict {
        Strict::Exact => word == gre::NVGRE_FLAGS,
        Strict::Lenient => word & !GRE_IGNORED_BITS == gre::NVGRE_FLAGS,
    }
}

/// Decodes a whole frame. GRE is taken as NVGRE only when it looks like NVGRE (K bit
/// alone, protocol 0x6558); in `Exact` mode any other GRE is an error, since the
/// engine emits nothing else.
pub fn frame(bytes: &[u8], strict: Strict) -> Result<Frame<'_>, String> {
    let eth = ethernet::Frame::new_checked(bytes).map_err(|e| format!("Ethernet: {e}"))?;
    let ethertype = eth.ethertype();
    let mut f = Frame {
        src_mac: eth.src_addr(),
        dst_mac: eth.dst_addr(),
        ethertype,
        tunnel: None,
        ip: None,
    };
    let payload = bytes.get(ethernet::HEADER_LEN..).unwrap_or(&[]);
    if !is_ip(ethertype) {
        return Ok(f);
    }
    let outer = ip(payload, ethertype, strict)?;
    if outer.proto != ip_proto::GRE || outer.fragment {
        f.ip = Some(outer);
        return Ok(f);
    }
    let g = match gre::Packet::new_checked(outer.l4) {
        Ok(g)
            if nvgre_flags(g.flags_word(), strict)
                && g.protocol_type() == ethernet::ethertype::TEB =>
        {
            g
        }
        Ok(g) if strict == Strict::Exact => {
            return Err(format!(
                "GRE flags {:#06x} protocol {:#06x} is not NVGRE",
                g.flags_word(),
                g.protocol_type()
            ));
        }
        Err(e) if strict == Strict::Exact => return Err(format!("GRE: {e}")),
        _ => {
            f.ip = Some(outer);
            return Ok(f);
        }
    };
    let vsid = g.vsid().ok_or("NVGRE without a key")?;
    let inner_bytes = outer.l4.get(g.header_len()..).unwrap_or(&[]);
    let inner = ethernet::Frame::new_checked(inner_bytes).map_err(|e| format!("inner: {e}"))?;
    let inner_ethertype = inner.ethertype();
    f.tunnel = Some(Tunnel {
        outer,
        vsid,
        inner_src_mac: inner.src_addr(),
        inner_dst_mac: inner.dst_addr(),
        inner_ethertype,
    });
    if is_ip(inner_ethertype) {
        let inner_ip = inner_bytes.get(ethernet::HEADER_LEN..).unwrap_or(&[]);
        f.ip = Some(ip(inner_ip, inner_ethertype, strict).map_err(|e| format!("inner {e}"))?);
    }
    Ok(f)
}

/// Whether the upper-layer checksum (TCP, UDP, ICMP, ICMPv6) verifies; `None` when the
/// packet is a fragment, another protocol, or too short to tell.
pub fn l4_checksum_ok(ip: &Ip) -> Option<bool> {
    if ip.fragment {
        return None;
    }
    match ip.proto {
        ip_proto::TCP => tcp::Packet::new_checked(ip.l4)
            .ok()
            .map(|t| t.verify_checksum(ip.src, ip.dst)),
        ip_proto::UDP => udp::Packet::new_checked(ip.l4)
            .ok()
            .map(|u| u.verify_checksum(ip.src, ip.dst)),
        ip_proto::ICMP if !ip.v6 => icmpv4::Packet::new_checked(ip.l4)
            .ok()
            .map(|i| i.verify_checksum()),
        ip_proto::ICMPV6 => match (ip.src, ip.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => icmpv6::Packet::new_checked(ip.l4)
                .ok()
                .map(|i| i.verify_checksum(&s, &d)),
            _ => None,
        },
        _ => None,
    }
}

/// (type, code) of an ICMP or ICMPv6 message.
pub fn icmp_type(ip: &Ip) -> Option<(u8, u8)> {
    match ip.proto {
        ip_proto::ICMP if !ip.v6 => icmpv4::Packet::new_checked(ip.l4)
            .ok()
            .map(|i| (i.msg_type(), i.msg_code())),
        ip_proto::ICMPV6 if ip.v6 => icmpv6::Packet::new_checked(ip.l4)
            .ok()
            .map(|i| (i.msg_type(), i.msg_code())),
        _ => None,
    }
}
