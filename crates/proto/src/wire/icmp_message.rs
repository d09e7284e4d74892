//! Whole ICMP/ICMPv6 messages in their IP header, as the LB and the host simulator
//! send them: echo replies and "too big" errors (IPv4 fragmentation-needed, IPv6
//! packet-too-big) quoting the offending packet.
//!
//! One emitter for both senders, so that the two answer path-MTU discovery alike. It
//! writes only into the buffer it is given and never panics: a buffer of the wrong
//! size or mixed address families give an error.

use core::net::IpAddr;

use super::{Error, Result, icmpv4, icmpv6, ip_proto, ipv4, ipv6};

/// The ICMP header before the body: type, code, checksum, 4 bytes of rest-of-header.
pub const HEADER_LEN: usize = 8;
/// Largest quote in an IPv4 error: the whole error fits 576 bytes (RFC 1812 4.3.2.3).
pub const QUOTE_V4: usize = 576 - ipv4::HEADER_LEN - HEADER_LEN;
/// Largest quote in an ICMPv6 error: the whole error fits the minimum MTU (RFC 4443 2.4).
pub const QUOTE_V6: usize = 1280 - ipv6::HEADER_LEN - HEADER_LEN;

/// The fields of one ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// ICMP or ICMPv6 type number, matching the address family later given to `emit`.
    pub msg_type: u8,
    /// Code within the type.
    pub code: u8,
    /// Bytes 4..8 of the header (e.g. echo identifier and sequence, or the MTU).
    pub rest: [u8; 4],
    /// Bytes after the 8-byte header: echo data or the quoted packet.
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// "Must fit `mtu` bytes" about `packet` (the offending IP packet, sent with the
    /// family `v6`): frag-needed with the next-hop MTU, or packet-too-big, quoting as
    /// much of `packet` as the minimum size allows.
    pub fn too_big(v6: bool, mtu: usize, packet: &'a [u8]) -> Message<'a> {
        if v6 {
            Message {
                msg_type: icmpv6::msg_type::PKT_TOO_BIG,
                code: 0,
                rest: u32::try_from(mtu).unwrap_or(u32::MAX).to_be_bytes(),
                body: &packet[..packet.len().min(QUOTE_V6)],
            }
        } else {
            let m = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
            Message {
                msg_type: icmpv4::msg_type::DST_UNREACHABLE,
                code: icmpv4::FRAG_NEEDED,
                rest: [0, 0, m[0], m[1]],
                body: &packet[..packet.len().min(QUOTE_V4)],
            }
        }
    }

    /// Bytes of the IP packet carrying this message.
    pub fn buffer_len(&self, v6: bool) -> usize {
        let ip = if v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        };
        ip + HEADER_LEN + self.body.len()
    }

    /// Writes the IP packet from `src` to `dst` (TTL / hop limit 64, DF clear) carrying
    /// this message, with every checksum filled, into `buf`, which must be exactly
    /// [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr, ident: u16) -> Result<()> {
        let v6 = src.is_ipv6();
        if buf.len() != self.buffer_len(v6) {
            return Err(Error::Malformed("ICMP message buffer size"));
        }
        let icmp_len = HEADER_LEN + self.body.len();
        let icmp = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (hdr, icmp) = buf.split_at_mut(ipv4::HEADER_LEN);
                ipv4::Repr {
                    src_addr: s,
                    dst_addr: d,
                    protocol: ip_proto::ICMP,
                    payload_len: icmp_len,
                    ttl: 64,
                    dont_frag: false,
                    dscp_ecn: 0,
                    ident,
                }
                .emit(&mut ipv4::Packet::new_unchecked(hdr));
                icmp
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let (hdr, icmp) = buf.split_at_mut(ipv6::HEADER_LEN);
                ipv6::Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: ip_proto::ICMPV6,
                    payload_len: icmp_len,
                    hop_limit: 64,
                    traffic_class: 0,
                    flow_label: 0,
                }
                .emit(&mut ipv6::Packet::new_unchecked(hdr));
                icmp
            }
            _ => return Err(Error::Malformed("ICMP message: mixed address families")),
        };
        icmp[..4].copy_from_slice(&[self.msg_type, self.code, 0, 0]);
        icmp[4..HEADER_LEN].copy_from_slice(&self.rest);
        icmp[HEADER_LEN..].copy_from_slice(self.body);
        fill_checksum(icmp, src, dst);
        Ok(())
    }
}

/// Fills the checksum of an ICMP (IPv4) or ICMPv6 message sent from `src` to `dst`.
pub fn fill_checksum(icmp: &mut [u8], src: IpAddr, dst: IpAddr) {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if let Ok(mut p) = icmpv6::Packet::new_checked(icmp) {
                p.fill_checksum(&s, &d);
            }
        }
        _ => {
            if let Ok(mut p) = icmpv4::Packet::new_checked(icmp) {
                p.fill_checksum();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_big_v4_quotes_up_to_576_bytes_and_verifies() {
        let packet = vec![0x45u8; 1500];
        let m = Message::too_big(false, 1358, &packet);
        assert_eq!(m.buffer_len(false), 576);
        let mut buf = vec![0u8; m.buffer_len(false)];
        m.emit(
            &mut buf,
            "192.0.2.1".parse().unwrap(),
            "10.0.0.5".parse().unwrap(),
            7,
        )
        .unwrap();
        let ip = ipv4::Packet::new_checked(&buf[..]).unwrap();
        assert!(ip.verify_checksum());
        let icmp = icmpv4::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code(), icmp.next_hop_mtu()),
            (3, 4, 1358)
        );
        assert!(icmp.verify_checksum());
    }

    #[test]
    fn too_big_v6_fits_the_minimum_mtu_and_verifies() {
        let packet = vec![0x60u8; 1500];
        let m = Message::too_big(true, 1338, &packet);
        let mut buf = vec![0u8; m.buffer_len(true)];
        assert_eq!(buf.len(), 1280);
        let (s, d) = ("2001:db8::1".parse().unwrap(), "fd00::5".parse().unwrap());
        m.emit(&mut buf, s, d, 0).unwrap();
        let ip = ipv6::Packet::new_checked(&buf[..]).unwrap();
        let icmp = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.mtu()),
            (icmpv6::msg_type::PKT_TOO_BIG, 1338)
        );
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    }

    #[test]
    fn wrong_sizes_and_mixed_families_are_errors() {
        let m = Message::too_big(false, 1400, &[1, 2, 3]);
        let mut buf = vec![0u8; m.buffer_len(false) - 1];
        assert!(
            m.emit(
                &mut buf,
                "10.0.0.1".parse().unwrap(),
                "10.0.0.2".parse().unwrap(),
                0
            )
            .is_err()
        );
        let mut buf = vec![0u8; m.buffer_len(false)];
        assert!(
            m.emit(
                &mut buf,
                "10.0.0.1".parse().unwrap(),
                "::2".parse().unwrap(),
                0
            )
            .is_err()
        );
    }
}
