//! Ethernet II frames and MAC addresses.
//!
//! Job: read and rewrite the 14-byte Ethernet header of outer frames and of the inner
//! frame an NVGRE packet carries. VLAN tags are recognised by ethertype only; stripping
//! them is the caller's decision. Must never allocate or panic on any input.

use core::fmt;
use core::net::Ipv6Addr;
use core::str::FromStr;

use super::bytes::{array_at, clamped, clamped_mut, set_bytes, set_u16, u16_at};
use super::{Error, Result};

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// EtherType values nvlb recognises.
pub mod ethertype {
    /// IPv4 (RFC 894).
    pub const IPV4: u16 = 0x0800;
    /// ARP (RFC 826).
    pub const ARP: u16 = 0x0806;
    /// IPv6 (RFC 2464).
    pub const IPV6: u16 = 0x86DD;
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad outer (service) VLAN tag.
    pub const QINQ: u16 = 0x88A8;
    /// Transparent Ethernet bridging: what NVGRE's GRE header carries.
    pub const TEB: u16 = 0x6558;
}

mod field {
    pub(super) const DST: usize = 0;
    pub(super) const SRC: usize = 6;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const PAYLOAD: usize = 14;
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff, the destination of ARP requests.
    pub const BROADCAST: MacAddr = MacAddr([0xFF; 6]);
    /// 00:00:00:00:00:00: never a valid station address, so it stands for "not set" or
    /// "unknown" (e.g. the target hardware address of an ARP request).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// All six octets are 0xff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit (I/G) of the first octet; broadcast is a multicast too.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// The MAC an IPv6 multicast group maps to (RFC 2464 section 7): 33:33 followed by
    /// the last four octets of the group, e.g. for a solicited-node address.
    pub fn ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The six octets in transmission order.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// All six octets are zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Neither a group address nor all zeros: what a port or a VM may have.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    /// Accepts six two-digit hex groups separated by `:` or `-` (config files use both).
    fn from_str(s: &str) -> Result<Self> {
        let bad = Error::Malformed("MAC address");
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for slot in out.iter_mut() {
            let p = parts.next().ok_or(bad)?;
            // from_str_radix alone would accept a leading '+'.
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad);
            }
            *slot = u8::from_str_radix(p, 16).map_err(|_| bad)?;
        }
        if parts.next().is_some() {
            return Err(bad);
        }
        Ok(MacAddr(out))
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps without checking; accessors then read zeros for missing bytes.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a frame after [`check_len`](Self::check_len) has passed.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that the 14-byte header is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated("Ethernet"))
        } else {
            Ok(())
        }
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC (bytes 0..6).
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::DST))
    }

    /// Source MAC (bytes 6..12).
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(array_at(self.buffer.as_ref(), field::SRC))
    }

    /// EtherType (bytes 12..14), in host byte order; see [`ethertype`].
    pub fn ethertype(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Bytes after the 14-byte header, up to the end of the buffer (padding included).
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), field::PAYLOAD, usize::MAX)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Writes the destination MAC.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::DST, &addr.0);
    }

    /// Writes the source MAC.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        set_bytes(self.buffer.as_mut(), field::SRC, &addr.0);
    }

    /// Writes the EtherType.
    pub fn set_ethertype(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// Mutable bytes after the 14-byte header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), field::PAYLOAD, usize::MAX)
    }
}

/// An Ethernet II header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source MAC.
    pub src_addr: MacAddr,
    /// Destination MAC.
    pub dst_addr: MacAddr,
    /// EtherType of the payload; see [`ethertype`].
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a frame of at least 14 bytes.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: always 14 (no VLAN tag).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the payload is left as it is.
    ///
    /// # Panics
    /// If the frame's buffer is shorter than [`HEADER_LEN`] (a sizing bug in the caller).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        assert!(
            frame.buffer.as_ref().len() >= HEADER_LEN,
            "Ethernet emit buffer"
        );
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use proptest::prelude::*;

    /// Broadcast ARP request from 52:54:00:12:34:56 (the Ethernet part is checked here).
    const ARP_FRAME: &str =
        "ffffffffffff525400123456080600010800060400015254001234560a0000010000000000000a000002";

    #[test]
    fn parses_captured_frame() {
        let b = hex(ARP_FRAME);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert!(f.dst_addr().is_broadcast() && f.dst_addr().is_multicast());
        assert_eq!(f.src_addr(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(!f.src_addr().is_multicast());
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload().len(), 28);
        assert_eq!(f.payload()[..2], [0x00, 0x01]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(ARP_FRAME);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&b[..n]).unwrap_err(),
                Error::Truncated("Ethernet")
            );
        }
        assert!(
            Frame::new_checked(&b[..HEADER_LEN])
                .unwrap()
                .payload()
                .is_empty()
        );
    }

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "00:15:5d:0A:bc:01".parse().unwrap();
        assert_eq!(m.0, [0x00, 0x15, 0x5d, 0x0a, 0xbc, 0x01]);
        assert_eq!(m.to_string(), "00:15:5d:0a:bc:01");
        assert_eq!("00-15-5d-0a-bc-01".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "00:15:5d:0a:bc",
            "00:15:5d:0a:bc:01:02",
            "0:15:5d:0a:bc:01",
            "zz:15:5d:0a:bc:01",
            "00:15:5d:0a:bc:+1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_multicast_mac() {
        let g: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        assert_eq!(
            MacAddr::ipv6_multicast(g),
            MacAddr([0x33, 0x33, 0xff, 0x00, 0x00, 0x02])
        );
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut b = hex(ARP_FRAME);
        let mut f = Frame::new_checked(&mut b[..]).unwrap();
        f.set_dst_addr(MacAddr([1, 2, 3, 4, 5, 6]));
        f.set_src_addr(MacAddr([7, 8, 9, 10, 11, 12]));
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut()[0] = 0xAA;
        assert_eq!(
            &b[..15],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xDD, 0xAA]
        );
    }

    proptest! {
        #[test]
        fn repr_round_trip(src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(), et in any::<u16>()) {
            let r = Repr { src_addr: MacAddr(src), dst_addr: MacAddr(dst), ethertype: et };
            let mut b = vec![0u8; r.buffer_len() + 3];
            let mut f = Frame::new_unchecked(&mut b[..]);
            r.emit(&mut f);
            prop_assert_eq!(Repr::parse(&Frame::new_checked(&b[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&b[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
                prop_assert!(Repr::parse(&f).is_ok());
            }
        }
    }
}
