//! Path MTU discovery for VMs: when a VM's packet cannot be wrapped in NVGRE within the
//! PA network's MTU, the host answers the VM itself with an ICMPv4 fragmentation-needed
//! or ICMPv6 packet-too-big naming the inner MTU that does fit, as a router on the path
//! would, so the VM's TCP lowers its segment size instead of retransmitting forever.
//!
//! The answer comes from the address and MAC the VM sent to (the quoted packet's
//! destination and the frame's destination MAC), the way the LB answers for a VIP. It
//! quotes as much of the packet as the minimum MTU allows. Pure: it only writes into
//! `out`, never panics on any frame, and never answers a packet that may be fragmented
//! (IPv4 with DF clear is dropped by the caller) or an ICMP error (no error about an
//! error).

use crate::engine::packet::IpPacket;
use crate::wire::icmp_message::Message;
use crate::wire::{ethernet, icmpv4, ip_proto};

/// ICMPv6 types below 128 are errors.
const ICMPV6_FIRST_INFO: u8 = 128;

/// Whether `ip` may be answered with an error at all: not an ICMP error itself.
fn may_answer(ip: &IpPacket) -> bool {
    match (ip.v6, ip.proto, ip.icmp_type()) {
        (false, ip_proto::ICMP, Some(t)) => {
            t == icmpv4::msg_type::ECHO_REQUEST || t == icmpv4::msg_type::ECHO_REPLY
        }
        (true, ip_proto::ICMPV6, Some(t)) => t >= ICMPV6_FIRST_INFO,
        (_, ip_proto::ICMP | ip_proto::ICMPV6, None) => false,
        _ => true,
    }
}

/// Writes into `out` the Ethernet frame telling the sender of `frame` (an Ethernet
/// frame from a VM, without padding) that IP packets toward that destination must fit
/// `mtu` bytes; its length, or `None` when the frame must not be answered or `out` is
/// too small. `ident` is the IPv4 identification.
pub fn answer(frame: &[u8], mtu: usize, ident: u16, out: &mut [u8]) -> Option<usize> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let v6 = match eth.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return None,
    };
    let ip = IpPacket::parse(eth.payload(), v6).ok()?;
    if !may_answer(&ip) || ip.fragment {
        return None;
    }
    let msg = Message::too_big(v6, mtu, ip.bytes);
    let ip_len = msg.buffer_len(v6);
    let total = ethernet::HEADER_LEN.checked_add(ip_len)?;
    let buf = out.get_mut(..total)?;
    let (eth_buf, pkt) = buf.split_at_mut(ethernet::HEADER_LEN);
    let mut e = ethernet::Frame::new_unchecked(eth_buf);
    e.set_dst_addr(eth.src_addr());
    e.set_src_addr(eth.dst_addr());
    e.set_ethertype(eth.ethertype());
    msg.emit(pkt, ip.dst, ip.src, ident).ok()?;
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft::{self, Transport};
    use crate::wire::{MacAddr, icmpv6, ipv4, ipv6, tcp};

    const VM: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 1]);
    const LB: MacAddr = MacAddr([2, 0, 0, 0xb1, 0, 0xfe]);

    fn segment(src: &str, dst: &str, payload: usize) -> Vec<u8> {
        let ip = craft::ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            64,
            Transport::Tcp {
                src_port: 80,
                dst_port: 40000,
                flags: tcp::flags::ACK,
                seq: 1000,
                ack: 1,
            },
            &vec![0xab; payload],
        );
        craft::ip_frame(VM, LB, &ip)
    }

    #[test]
    fn ipv4_frag_needed_goes_back_to_the_vm_quoting_its_packet() {
        let frame = segment("10.0.0.5", "192.0.2.100", 1460);
        let mut out = vec![0u8; 2048];
        let len = answer(&frame, 1358, 9, &mut out).unwrap();
        let eth = ethernet::Frame::new_checked(&out[..len]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (VM, LB));
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr().to_string(), "192.0.2.100");
        assert_eq!(ip.dst_addr().to_string(), "10.0.0.5");
        assert_eq!(ip.protocol(), ip_proto::ICMP);
        assert_eq!(usize::from(ip.total_len()), 576, "quote fills the minimum");
        let icmp = ip.payload();
        assert_eq!((icmp[0], icmp[1]), (3, 4), "frag-needed");
        assert_eq!(&icmp[4..8], &[0, 0, 0x05, 0x4e], "MTU 1358");
        assert!(icmpv4::Packet::new_checked(icmp).unwrap().verify_checksum());
        assert_eq!(
            &icmp[8..],
            &frame[14..14 + crate::wire::icmp_message::QUOTE_V4]
        );
    }

    #[test]
    fn ipv6_packet_too_big_carries_the_mtu() {
        let frame = segment("fd00:0:0:1::5", "2001:db8:c::100", 1440);
        let mut out = vec![0u8; 2048];
        let len = answer(&frame, 1338, 0, &mut out).unwrap();
        let eth = ethernet::Frame::new_checked(&out[..len]).unwrap();
        let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.dst_addr().to_string(), "fd00:0:0:1::5");
        assert_eq!(ip.src_addr().to_string(), "2001:db8:c::100");
        assert_eq!(len, 14 + 1280, "the error fits the minimum MTU");
        let p = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code()),
            (icmpv6::msg_type::PKT_TOO_BIG, 0)
        );
        assert_eq!(&ip.payload()[4..8], &1338u32.to_be_bytes());
        assert!(p.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    }

    #[test]
    fn errors_and_short_buffers_are_not_answered() {
        let frame = segment("10.0.0.5", "192.0.2.100", 1460);
        let mut small = vec![0u8; 100];
        assert_eq!(answer(&frame, 1358, 0, &mut small), None);
        // An ICMP error (our own answer, looped back) is never answered.
        let mut out = vec![0u8; 2048];
        let len = answer(&frame, 1358, 0, &mut out).unwrap();
        let mut big = vec![0u8; 2048];
        assert_eq!(answer(&out[..len], 1358, 0, &mut big), None);
        for cut in 0..frame.len().min(80) {
            assert_eq!(answer(&frame[..cut], 1358, 0, &mut big), None, "cut {cut}");
        }
    }
}
