//! Completing partial TCP/UDP checksums.
//!
//! A kernel sender with tx checksum offload (the default on veth) hands its frames to
//! the device with only the pseudo-header sum in the L4 checksum field, trusting the
//! "hardware" to finish it; AF_PACKET marks such frames TP_STATUS_CSUMNOTREADY. A frame
//! the simulator forwards leaves as a new packet that nobody will finish, so the
//! checksum is computed here over the whole segment. Must never change anything else
//! in the frame, and never panic on any input.

use std::net::IpAddr;

use crate::engine::packet::IpPacket;
use crate::wire::{ethernet, ip_proto, tcp, udp};

/// Recomputes the TCP or UDP checksum of the IP packet in an Ethernet frame. `None`
/// when the frame is not an unfragmented TCP/UDP packet whose header fits.
pub fn complete(frame: &mut [u8]) -> Option<()> {
    let eth = ethernet::Frame::new_checked(&*frame).ok()?;
    let v6 = match eth.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return None,
    };
    let ip = IpPacket::parse(eth.payload(), v6).ok()?;
    if ip.fragment {
        return None;
    }
    let (src, dst, proto) = (ip.src, ip.dst, ip.proto);
    let start = ethernet::HEADER_LEN.checked_add(ip.l4)?;
    let end = ethernet::HEADER_LEN.checked_add(ip.bytes.len())?;
    let l4 = frame.get_mut(start..end)?;
    fill(l4, proto, src, dst)
}

fn fill(l4: &mut [u8], proto: u8, src: IpAddr, dst: IpAddr) -> Option<()> {
    match proto {
        ip_proto::TCP => tcp::Packet::new_checked(l4).ok()?.fill_checksum(src, dst),
        ip_proto::UDP => udp::Packet::new_checked(l4).ok()?.fill_checksum(src, dst),
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft::{self, Transport};
    use crate::wire::{MacAddr, checksum, ipv4, ipv6};

    const A: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0xb1, 0, 0xfe]);

    /// A frame as a sender with tx offload hands it over: the L4 checksum field holds
    /// only the folded pseudo-header sum (not complemented).
    fn partial(src: &str, dst: &str, transport: Transport) -> (Vec<u8>, usize) {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let ip = craft::ip_packet(src, dst, 64, transport, b"payload bytes");
        let mut frame = craft::ip_frame(A, B, &ip);
        let hdr = if src.is_ipv6() {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        };
        let (proto, at) = match transport {
            Transport::Tcp { .. } => (ip_proto::TCP, 16),
            Transport::Udp { .. } => (ip_proto::UDP, 6),
        };
        let l4_len = ip.len() - hdr;
        let pseudo = checksum::fold(checksum::pseudo_header(src, dst, proto, l4_len as u32));
        let field = ethernet::HEADER_LEN + hdr + at;
        frame[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        (frame, field)
    }

    fn verifies(frame: &[u8]) -> bool {
        let eth = ethernet::Frame::new_checked(frame).unwrap();
        let v6 = eth.ethertype() == ethernet::ethertype::IPV6;
        let ip = IpPacket::parse(eth.payload(), v6).unwrap();
        match ip.proto {
            ip_proto::TCP => tcp::Packet::new_checked(ip.l4_bytes())
                .unwrap()
                .verify_checksum(ip.src, ip.dst),
            _ => udp::Packet::new_checked(ip.l4_bytes())
                .unwrap()
                .verify_checksum(ip.src, ip.dst),
        }
    }

    #[test]
    fn completes_tcp_and_udp_over_both_families() {
        let syn_ack = Transport::Tcp {
            src_port: 80,
            dst_port: 40000,
            flags: tcp::flags::SYN | tcp::flags::ACK,
            seq: 7,
            ack: 8,
        };
        let udp = Transport::Udp {
            src_port: 53,
            dst_port: 5353,
        };
        for (src, dst) in [
            ("10.0.0.5", "198.51.100.77"),
            ("fd00:0:0:1::5", "2001:db8:ff::77"),
        ] {
            for t in [syn_ack, udp] {
                let (mut frame, _) = partial(src, dst, t);
                assert!(!verifies(&frame), "the fixture is partial");
                let before = frame.clone();
                assert_eq!(complete(&mut frame), Some(()));
                assert!(verifies(&frame), "{src} {t:?}");
                let changed = before.iter().zip(&frame).filter(|(a, b)| a != b).count();
                assert!(changed <= 2, "only the checksum field changes");
            }
        }
    }

    #[test]
    fn refuses_what_it_cannot_finish() {
        let icmp = craft::ip_frame(
            A,
            B,
            &craft::ip_with_payload(
                "10.0.0.5".parse().unwrap(),
                "10.0.0.1".parse().unwrap(),
                64,
                ip_proto::ICMP,
                &mut [8, 0, 0, 0, 0, 1, 0, 1],
            ),
        );
        assert_eq!(complete(&mut icmp.clone()), None);
        let (frame, field) = partial(
            "10.0.0.5",
            "10.0.0.6",
            Transport::Udp {
                src_port: 1,
                dst_port: 2,
            },
        );
        for cut in [0, 13, field - 4] {
            assert_eq!(complete(&mut frame[..cut].to_vec()), None, "cut at {cut}");
        }
    }
}
