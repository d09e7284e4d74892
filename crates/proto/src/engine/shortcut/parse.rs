//! The shortcut's reading of a frame: the common shapes only, at fixed offsets.
//!
//! Plain or NVGRE-carried IPv4 without options (unfragmented) or IPv6 whose next
//! header is the upper layer, then a whole TCP or UDP header. Anything else is `None`,
//! and so is a TCP segment that opens, closes or resets: those change a binding's
//! state and are the general path's. The checks here are a subset of the general
//! path's, never a different reading: what passes is a frame the general path parses
//! to the same values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::policy::is_reserved_on_wire;
use crate::wire::{MacAddr, checksum, ethernet, gre, ip_proto, tcp};

/// One IP header read at fixed offsets.
#[derive(Clone, Copy)]
pub(super) struct Ip<'a> {
    /// The packet, header to end of payload, without link-layer padding.
    pub(super) bytes: &'a [u8],
    pub(super) v6: bool,
    pub(super) proto: u8,
    /// Offset of the upper-layer header.
    pub(super) l4: usize,
    pub(super) ttl: u8,
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
}

impl Ip<'_> {
    /// An IPv4 header checksum that verifies (IPv6 has none).
    #[inline(always)]
    fn checksum_ok(&self) -> bool {
        self.v6
            || self
                .bytes
                .first_chunk::<20>()
                .is_some_and(header_checksum_ok)
    }

    /// The acknowledgment number of a TCP segment.
    #[inline(always)]
    pub(super) fn tcp_ack(&self) -> Option<u32> {
        let b = self.bytes.get(self.l4 + 8..)?.first_chunk::<4>()?;
        Some(u32::from_be_bytes(*b))
    }
}

/// What the shortcut needs of a frame.
pub(super) struct Seen<'a> {
    /// 0 for plain IP; the NVGRE VSID otherwise.
    pub(super) vsid: u32,
    /// The inner packet when tunnelled.
    pub(super) ip: Ip<'a>,
    /// The outer source (the sending host's PA) when tunnelled.
    pub(super) sender: Option<IpAddr>,
    pub(super) sport: u16,
    pub(super) dport: u16,
    /// TCP flags; `None` for UDP.
    pub(super) flags: Option<u8>,
}

/// `frame` in one of the common shapes, sent to one of `macs`, tunnelled only to one
/// of the `provider` addresses; `None` for anything else.
#[inline(always)]
pub(super) fn read<'a>(
    frame: &'a [u8],
    macs: &[MacAddr; 2],
    provider: &[Option<IpAddr>; 2],
) -> Option<Seen<'a>> {
    let mac = MacAddr(*frame.first_chunk::<6>()?);
    if mac != macs[0] && mac != macs[1] {
        return None;
    }
    let outer = ip(frame.get(ethernet::HEADER_LEN..)?, u16_at(frame, 12)?)?;
    let tunnel = outer.proto == ip_proto::GRE;
    let (vsid, ip) = if tunnel {
        if !provider.contains(&Some(outer.dst)) {
            return None;
        }
        let g = outer.bytes.get(outer.l4..)?;
        if u16_at(g, 0)? != gre::NVGRE_FLAGS || u16_at(g, 2)? != ethernet::ethertype::TEB {
            return None;
        }
        let vsid = u32::from_be_bytes(*g.get(4..)?.first_chunk::<4>()?) >> 8;
        if is_reserved_on_wire(vsid) {
            return None;
        }
        let inner = g.get(gre::NVGRE_HEADER_LEN..)?;
        (
            vsid,
            ip(inner.get(ethernet::HEADER_LEN..)?, u16_at(inner, 12)?)?,
        )
    } else {
        (0, outer)
    };
    if ip.ttl <= 1 {
        return None;
    }
    let (sport, dport, flags) = ports(ip.proto, ip.bytes.get(ip.l4..)?)?;
    // Verified last: a SYN has left by now.
    if !ip.checksum_ok() || (tunnel && !outer.checksum_ok()) {
        return None;
    }
    Some(Seen {
        vsid,
        ip,
        sender: tunnel.then_some(outer.src),
        sport,
        dport,
        flags,
    })
}

/// IPv4 without options and unfragmented, or IPv6 whose next header is the upper
/// layer; `None` for anything else. The IPv4 checksum is left to [`Ip::checksum_ok`].
#[inline(always)]
fn ip(buf: &[u8], ethertype: u16) -> Option<Ip<'_>> {
    match ethertype {
        ethernet::ethertype::IPV4 => {
            let h = buf.first_chunk::<20>()?;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] != 0x45 || total < 20 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return None;
            }
            Some(Ip {
                bytes: buf.get(..total)?,
                v6: false,
                proto: h[9],
                l4: 20,
                ttl: h[8],
                src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
                dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            })
        }
        ethernet::ethertype::IPV6 => {
            let h = buf.first_chunk::<40>()?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let proto = h[6];
            if proto != ip_proto::TCP && proto != ip_proto::UDP && proto != ip_proto::GRE {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            Some(Ip {
                bytes: buf.get(..40 + usize::from(u16::from_be_bytes([h[4], h[5]])))?,
                v6: true,
                proto,
                l4: 40,
                ttl: h[7],
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
            })
        }
        _ => None,
    }
}

/// The IPv4 header checksum verifies: ten words summed straight, no loop.
#[inline(always)]
fn header_checksum_ok(h: &[u8; 20]) -> bool {
    let mut acc = 0u32;
    for w in h.chunks_exact(2) {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    checksum::fold(acc) == 0xFFFF
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(at..)?.first_chunk::<2>()?))
}

/// Ports and TCP flags of a header the general path accepts; `None` for a TCP
/// segment that opens, closes or resets (a change of state: the general path's).
#[inline(always)]
fn ports(proto: u8, l4: &[u8]) -> Option<(u16, u16, Option<u8>)> {
    match proto {
        ip_proto::TCP => {
            let h = l4.first_chunk::<20>()?;
            let hl = usize::from(h[12] >> 4) * 4;
            let f = h[13];
            if hl < 20
                || hl > l4.len()
                || f & (tcp::flags::SYN | tcp::flags::FIN | tcp::flags::RST) != 0
            {
                return None;
            }
            Some((u16_at(h, 0)?, u16_at(h, 2)?, Some(f)))
        }
        ip_proto::UDP => {
            let h = l4.first_chunk::<8>()?;
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if len < 8 || len > l4.len() {
                return None;
            }
            Some((u16_at(h, 0)?, u16_at(h, 2)?, None))
        }
        _ => None,
    }
}
