//! ARP for Ethernet/IPv4 (RFC 826).
//!
//! Job: let the data plane answer "who has" for its own addresses and VIPs. Only the
//! Ethernet/IPv4 shape (htype 1, ptype 0x0800, hlen 6, plen 4) is accepted; anything else
//! is `Unsupported`, so later accessors can use fixed offsets. Must never allocate or
//! panic on any input.

use core::net::Ipv4Addr;

use super::bytes::{array_at, set_bytes, set_u8, set_u16, u8_at, u16_at};
use super::ethernet::{MacAddr, ethertype};
use super::{Error, Result};

/// ARP operation codes.
pub mod op {
    /// "Who has `target_ip`?": broadcast by a host that needs the MAC for an address.
    pub const REQUEST: u16 = 1;
    /// "`sender_ip` is at `sender_hw`": the answer, sent unicast to the asker.
    pub const REPLY: u16 = 2;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

const HTYPE_ETHERNET: u16 = 1;

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    pub(super) const SHA: usize = 8;
    pub(super) const SPA: usize = 14;
    pub(super) const THA: usize = 18;
    pub(super) const TPA: usize = 24;
}

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without any check; accessors then read zero (and setters do nothing)
    /// for bytes that are absent.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a packet after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Length and the fixed Ethernet/IPv4 shape.
    pub fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            return Err(Error::Truncated("ARP"));
        }
        if self.hardware_type() != HTYPE_ETHERNET {
            return Err(Error::Unsupported("ARP hardware type"));
        }
        if self.protocol_type() != ethertype::IPV4 {
            return Err(Error::Unsupported("ARP protocol type"));
        }
        if self.hardware_len() != 6 || self.protocol_len() != 4 {
            return Err(Error::Unsupported("ARP address length"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (HTYPE); 1 (Ethernet) on a checked view.
    pub fn hardware_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (PTYPE), an EtherType; 0x0800 (IPv4) on a checked view.
    pub fn protocol_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length (HLEN) in bytes; 6 on a checked view.
    pub fn hardware_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HLEN)
    }

    /// Protocol address length (PLEN) in bytes; 4 on a checked view.
    pub fn protocol_len(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PLEN)
    }

    /// Operation code (see [`op`]).
    pub fn operation(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address (SHA).
    pub fn sender_hw(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::SHA))
    }

    /// Sender protocol address (SPA); in a request, the address the asker claims.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address (THA); usually zero in a request, since it is what is asked for.
    pub fn target_hw(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::THA))
    }

    /// Target protocol address (TPA): the address being resolved.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes htype/ptype/hlen/plen for Ethernet/IPv4, the only shape this view reads.
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, ethertype::IPV4);
        set_u8(b, field::HLEN, 6);
        set_u8(b, field::PLEN, 4);
    }

    /// Writes the operation code (see [`op`]).
    pub fn set_operation(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, value);
    }

    /// Writes the sender hardware address (SHA).
    pub fn set_sender_hw(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SHA, &addr.0);
    }

    /// Writes the sender protocol address (SPA).
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SPA, &addr.octets());
    }

    /// Writes the target hardware address (THA).
    pub fn set_target_hw(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::THA, &addr.0);
    }

    /// Writes the target protocol address (TPA).
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::TPA, &addr.octets());
    }
}

/// An Ethernet/IPv4 ARP packet as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Operation code (see [`op`]).
    pub operation: u16,
    /// Sender hardware address (SHA).
    pub sender_hw: MacAddr,
    /// Sender protocol address (SPA).
    pub sender_ip: Ipv4Addr,
    /// Target hardware address (THA); zero in a request.
    pub target_hw: MacAddr,
    /// Target protocol address (TPA): the address being resolved or answered for.
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Reads a packet that has the Ethernet/IPv4 shape (see [`Packet::check`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            operation: packet.operation(),
            sender_hw: packet.sender_hw(),
            sender_ip: packet.sender_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: always 28.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// # Panics
    /// If the buffer is shorter than [`PACKET_LEN`] (a sizing bug in the caller).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        assert!(
            packet.buffer.as_ref().len() >= PACKET_LEN,
            "ARP emit buffer"
        );
        packet.set_ethernet_ipv4();
        packet.set_operation(self.operation);
        packet.set_sender_hw(self.sender_hw);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_hw(self.target_hw);
        packet.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use proptest::prelude::*;

    /// "Who has 10.0.0.2? Tell 10.0.0.1" from 52:54:00:12:34:56 (Ethernet header removed).
    const REQUEST: &str = "0001080006040001525400123456 0a000001 000000000000 0a000002";

    #[test]
    fn parses_captured_request() {
        let b = hex(REQUEST);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), op::REQUEST);
        assert_eq!(p.sender_hw(), MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_hw(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(REQUEST);
        for n in 0..b.len() {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                Error::Truncated("ARP")
            );
        }
    }

    #[test]
    fn other_shapes_are_unsupported() {
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = hex(REQUEST);
            b[at] = v;
            assert!(matches!(
                Packet::new_checked(&b[..]),
                Err(Error::Unsupported(_))
            ));
        }
    }

    #[test]
    fn reply_built_from_request_matches_wire_layout() {
        let req = Repr::parse(&Packet::new_checked(hex(REQUEST)).unwrap()).unwrap();
        let ours = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
        let reply = Repr {
            operation: op::REPLY,
            sender_hw: ours,
            sender_ip: req.target_ip,
            target_hw: req.sender_hw,
            target_ip: req.sender_ip,
        };
        let mut b = [0u8; PACKET_LEN];
        reply.emit(&mut Packet::new_unchecked(&mut b[..]));
        assert_eq!(
            &b[..],
            &hex("0001080006040002020000000002 0a000002 525400123456 0a000001")[..]
        );
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            operation in any::<u16>(), sh in any::<[u8; 6]>(), si in any::<u32>(),
            th in any::<[u8; 6]>(), ti in any::<u32>()
        ) {
            let r = Repr {
                operation, sender_hw: MacAddr(sh), sender_ip: Ipv4Addr::from(si),
                target_hw: MacAddr(th), target_ip: Ipv4Addr::from(ti),
            };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Packet::new_checked(&b[..]).and_then(|p| Repr::parse(&p));
            let p = Packet::new_unchecked(&b[..]);
            let _ = (p.operation(), p.sender_hw(), p.sender_ip(), p.target_hw(), p.target_ip());
        }
    }
}
