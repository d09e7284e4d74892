//! The engine's reading of one IP packet: family, addresses, transport and ports.
//!
//! Parsed once from the bytes as they arrived; every later step (steering, flow
//! lookup, NAT) uses these values and offsets instead of parsing again. Never panics:
//! every length is checked by the wire views before it is used.

use std::net::{IpAddr, Ipv4Addr};

use crate::wire::{checksum, icmpv4, icmpv6, ip_proto, ipv4, ipv6, tcp, udp};

use super::drop::DropReason;

/// An IP packet as the engine sees it.
#[derive(Clone, Copy, Debug)]
pub struct IpPacket<'a> {
    /// Exactly the IP packet: header to end of payload, without link-layer padding.
    pub bytes: &'a [u8],
    /// True for IPv6.
    pub v6: bool,
    /// Source address, as received.
    pub src: IpAddr,
    /// Destination address, as received.
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Offset of the upper-layer header in `bytes`.
    pub l4: usize,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 DF bit; always true for IPv6, which routers never fragment.
    pub dont_frag: bool,
    /// Part of a fragmented packet (IPv4 MF or offset; any IPv6 fragment header): there is
    /// no complete L4 header to balance by.
    pub fragment: bool,
}

/// The transport view of a packet the LB balances.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// Source port, as received.
    pub src: u16,
    /// Destination port, as received.
    pub dst: u16,
    /// TCP flags; `None` for UDP.
    pub tcp_flags: Option<u8>,
}

impl<'a> IpPacket<'a> {
    /// Parses an IPv4 or IPv6 packet (chosen by `v6`) from `buf`, which may carry padding.
    pub fn parse(buf: &'a [u8], v6: bool) -> Result<IpPacket<'a>, DropReason> {
        if v6 {
            let p = ipv6::Packet::new_checked(buf).map_err(|_| DropReason::MalformedIp)?;
            let ul = p.upper_layer().map_err(|_| DropReason::MalformedIp)?;
            let len = ipv6::HEADER_LEN + usize::from(p.payload_len());
            let bytes = buf.get(..len).ok_or(DropReason::MalformedIp)?;
            Ok(IpPacket {
                bytes,
                v6: true,
                src: IpAddr::V6(p.src_addr()),
                dst: IpAddr::V6(p.dst_addr()),
                proto: ul.protocol,
                l4: ul.offset,
                ttl: p.hop_limit(),
                dont_frag: true,
                fragment: ul.fragment.is_some(),
            })
        } else {
            if let Some(h) = buf.first_chunk::<{ ipv4::HEADER_LEN }>()
                && h[0] == 0x45
            {
                return Self::parse_v4_plain(buf, h);
            }
            Self::parse_v4_view(buf)
        }
    }

    /// IPv4 through the wire view: any header, options included.
    fn parse_v4_view(buf: &'a [u8]) -> Result<IpPacket<'a>, DropReason> {
        let p = ipv4::Packet::new_checked(buf).map_err(|_| DropReason::MalformedIp)?;
        if !p.verify_checksum() {
            return Err(DropReason::BadIpChecksum);
        }
        let len = usize::from(p.total_len());
        let bytes = buf.get(..len).ok_or(DropReason::MalformedIp)?;
        Ok(IpPacket {
            bytes,
            v6: false,
            src: IpAddr::V4(p.src_addr()),
            dst: IpAddr::V4(p.dst_addr()),
            proto: p.protocol(),
            l4: p.header_len(),
            ttl: p.ttl(),
            dont_frag: p.dont_frag(),
            fragment: p.is_fragment(),
        })
    }

    /// IPv4 without options, nearly every packet: the same checks and the same answers
    /// as the general path through the wire view, from one fixed-size header read
    /// (the view checks every field's bounds as it reads it).
    #[inline(always)]
    fn parse_v4_plain(
        buf: &'a [u8],
        h: &[u8; ipv4::HEADER_LEN],
    ) -> Result<IpPacket<'a>, DropReason> {
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if total < ipv4::HEADER_LEN {
            return Err(DropReason::MalformedIp);
        }
        let bytes = buf.get(..total).ok_or(DropReason::MalformedIp)?;
        if checksum::fold(checksum::sum(h)) != 0xFFFF {
            return Err(DropReason::BadIpChecksum);
        }
        let flags_offset = u16::from_be_bytes([h[6], h[7]]);
        Ok(IpPacket {
            bytes,
            v6: false,
            src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
            dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            proto: h[9],
            l4: ipv4::HEADER_LEN,
            ttl: h[8],
            dont_frag: flags_offset & 0x4000 != 0,
            fragment: flags_offset & 0x3fff != 0,
        })
    }

    /// The upper-layer bytes.
    pub fn l4_bytes(&self) -> &'a [u8] {
        self.bytes.get(self.l4..).unwrap_or(&[])
    }

    /// Ports and flags of a TCP or UDP packet.
    pub fn ports(&self) -> Result<Ports, DropReason> {
        match self.proto {
            ip_proto::TCP => {
                let t = tcp::Packet::new_checked(self.l4_bytes())
                    .map_err(|_| DropReason::MalformedL4)?;
                Ok(Ports {
                    src: t.src_port(),
                    dst: t.dst_port(),
                    tcp_flags: Some(t.flags()),
                })
            }
            ip_proto::UDP => {
                let u = udp::Packet::new_checked(self.l4_bytes())
                    .map_err(|_| DropReason::MalformedL4)?;
                Ok(Ports {
                    src: u.src_port(),
                    dst: u.dst_port(),
                    tcp_flags: None,
                })
            }
            _ => Err(DropReason::UnsupportedProtocol),
        }
    }

    /// Whether this is an ICMP/ICMPv6 message of this packet's family.
    pub fn is_icmp(&self) -> bool {
        (!self.v6 && self.proto == ip_proto::ICMP) || (self.v6 && self.proto == ip_proto::ICMPV6)
    }

    /// ICMP type, if this is ICMP of this family with a full 8-byte header.
    pub fn icmp_type(&self) -> Option<u8> {
        if !self.is_icmp() {
            return None;
        }
        if self.v6 {
            icmpv6::Packet::new_checked(self.l4_bytes())
                .ok()
                .map(|p| p.msg_type())
        } else {
            icmpv4::Packet::new_checked(self.l4_bytes())
                .ok()
                .map(|p| p.msg_type())
        }
    }

    /// Whether this is an ICMP error message (which quotes a packet).
    pub fn is_icmp_error(&self) -> bool {
        match self.icmp_type() {
            Some(t) if self.v6 => icmpv6::is_error(t),
            Some(t) => icmpv4::is_error(t),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The option-less fast path answers exactly as the wire view does, on any
        /// bytes (checksum right or wrong, lengths in or out of range).
        #[test]
        fn plain_ipv4_fast_path_equals_the_view(
            mut bytes in proptest::collection::vec(any::<u8>(), 20..80),
            fix_checksum in any::<bool>(),
            total in proptest::option::of(0u16..100),
        ) {
            bytes[0] = 0x45;
            if let Some(t) = total {
                bytes[2..4].copy_from_slice(&t.to_be_bytes());
            }
            if fix_checksum {
                bytes[10..12].fill(0);
                let ck = checksum::finish(checksum::sum(&bytes[..20]));
                bytes[10..12].copy_from_slice(&ck.to_be_bytes());
            }
            let h = bytes.first_chunk::<20>().unwrap();
            let fast = IpPacket::parse_v4_plain(&bytes, h);
            let view = IpPacket::parse_v4_view(&bytes);
            prop_assert_eq!(format!("{fast:?}"), format!("{view:?}"));
        }
    }
}
