//! A frame's flow key read from its headers alone, for the batch path's lookahead.
//!
//! Only a hint: the batch path hashes it to prefetch the flow table, and
//! [`Engine::process`](super::Engine::process) then parses and checks the frame in
//! full. So this reads the fewest bytes that name a flow (plain IP, or NVGRE with its
//! key and one inner IP header; no options, extension headers or checksums), returns
//! `None` for anything else, and can be wrong without harm. Never panics: every read
//! is a checked `get`.
//!
//! The key is built as a [`ForwardKey`] from the packet as it arrived: (VSID, protocol,
//! source, source port, destination, destination port). A DIP's reply is found by its
//! [`ReturnKey`](crate::flow::ReturnKey), whose hash is the same function of the same
//! six values, so one hash serves both indexes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::ForwardKey;
use crate::wire::{ethernet, gre, ip_proto};

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// The flow key of `frame`, if it is plain or NVGRE-carried TCP or UDP.
#[inline]
pub(crate) fn flow_key(frame: &[u8]) -> Option<ForwardKey> {
    let ip = frame.get(ethernet::HEADER_LEN..)?;
    let (proto, src, dst, l4) = ip_header(ip, u16_at(frame, 12)?)?;
    if proto == ip_proto::GRE {
        let g = ip.get(l4..)?;
        if u16_at(g, 0)? != gre::NVGRE_FLAGS || u16_at(g, 2)? != ethernet::ethertype::TEB {
            return None;
        }
        let vsid = u32::from_be_bytes(g.get(4..8)?.try_into().ok()?) >> 8;
        let inner = g.get(gre::NVGRE_HEADER_LEN..)?;
        let ip = inner.get(ethernet::HEADER_LEN..)?;
        let (proto, src, dst, l4) = ip_header(ip, u16_at(inner, 12)?)?;
        return key(vsid, proto, src, dst, ip.get(l4..)?);
    }
    key(0, proto, src, dst, ip.get(l4..)?)
}

/// Protocol, addresses and transport offset of an IP header of `ethertype`.
#[inline(always)]
fn ip_header(ip: &[u8], ethertype: u16) -> Option<(u8, IpAddr, IpAddr, usize)> {
    match ethertype {
        ethernet::ethertype::IPV4 => {
            let h: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            Some((h[9], src.into(), dst.into(), usize::from(h[0] & 0x0f) * 4))
        }
        ethernet::ethertype::IPV6 => {
            let h: &[u8; 40] = ip.get(..40)?.try_into().ok()?;
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            Some((
                h[6],
                Ipv6Addr::from(src).into(),
                Ipv6Addr::from(dst).into(),
                40,
            ))
        }
        _ => None,
    }
}

#[inline(always)]
fn key(vsid: u32, proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Option<ForwardKey> {
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return None;
    }
    Some(ForwardKey {
        vsid,
        proto,
        client: src,
        client_port: u16_at(l4, 0)?,
        vip: dst,
        vip_port: u16_at(l4, 2)?,
    })
}
