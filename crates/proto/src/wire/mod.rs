//! Zero-copy typed views over packet bytes, their emitters, and Internet checksums.
//!
//! Job: give the engine cheap, typed access to Ethernet, ARP, IPv4, IPv6, ICMP, ICMPv6,
//! TCP, UDP and GRE/NVGRE headers that live in a borrowed buffer, let it rewrite them in
//! place, and keep checksums right with RFC 1624 incremental updates.
//!
//! Each header follows one shape: a view `Packet<T: AsRef<[u8]>>` whose `new_checked`
//! validates lengths once so later accessors stay in bounds, setters only where
//! `T: AsMut<[u8]>`, and a plain `Repr` with `parse`/`emit`/`buffer_len` so that parsing
//! and building mirror each other.
//!
//! Must never: allocate, do I/O, or panic on any byte sequence handed to a `new_checked`
//! or `new_quoted` constructor (or on any accessor used after it). The only documented
//! panics are `emit` calls given a buffer shorter than `buffer_len()`, which is a
//! programming error in the caller, never a property of received bytes.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod gre;
pub mod icmp_message;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use ethernet::MacAddr;

/// Why a buffer could not be viewed as the header that was asked for.
///
/// The payload names the header or the field, so a drop counter can say more than
/// "bad packet" without the library allocating a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the named header (or its declared length) does.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A field holds a value the protocol forbids.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Valid on the wire, but a variant nvlb deliberately does not handle.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Result of every fallible operation in `wire`.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") used by nvlb.
pub mod ip_proto {
    /// IPv6 hop-by-hop options (only valid directly after the IPv6 header).
    pub const HOPOPT: u8 = 0;
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 Routing extension header (RFC 8200 section 4.4).
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 Fragment extension header (RFC 8200 section 4.5).
    pub const IPV6_FRAG: u8 = 44;
    /// GRE (RFC 2784), the carrier of NVGRE (RFC 7637).
    pub const GRE: u8 = 47;
    /// IPsec ESP (RFC 4303); its payload is opaque, so no L4 ports can be read past it.
    pub const ESP: u8 = 50;
    /// IPsec AH (RFC 4302); on IPv6 it is walked like an extension header.
    pub const AH: u8 = 51;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// "No next header" (RFC 8200 section 4.7): nothing follows this header.
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 Destination Options extension header (RFC 8200 section 4.6).
    pub const IPV6_OPTS: u8 = 60;
}

/// Byte-level readers and writers shared by the views.
///
/// Readers return zero and writers do nothing when the bytes are absent: a view built by
/// `new_quoted` (or `new_unchecked` on a short buffer) must not be able to panic through
/// an accessor. On a view that passed `new_checked` the fallback never triggers; the
/// bounds check it costs is the one plain indexing would also pay.
mod bytes {
    #[inline]
    pub(crate) fn u8_at(buf: &[u8], at: usize) -> u8 {
        buf.get(at).copied().unwrap_or(0)
    }

    #[inline]
    pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
        match buf.get(at..at.wrapping_add(2)) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    #[inline]
    pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
        match buf.get(at..at.wrapping_add(4)) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    #[inline]
    pub(crate) fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = buf.get(at..at.wrapping_add(N)) {
            out.copy_from_slice(src);
        }
        out
    }

    #[inline]
    pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
        if let Some(b) = buf.get_mut(at) {
            *b = value;
        }
    }

    #[inline]
    pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
        set_bytes(buf, at, &value.to_be_bytes());
    }

    #[inline]
    pub(crate) fn set_u32(buf: &mut [u8], at: usize, value: u32) {
        set_bytes(buf, at, &value.to_be_bytes());
    }

    #[inline]
    pub(crate) fn set_bytes(buf: &mut [u8], at: usize, value: &[u8]) {
        if let Some(dst) = buf.get_mut(at..at.wrapping_add(value.len())) {
            dst.copy_from_slice(value);
        }
    }

    /// `buf[from..to]`, clamped to what is present; empty when the range is inverted.
    #[inline]
    pub(crate) fn clamped(buf: &[u8], from: usize, to: usize) -> &[u8] {
        let to = to.min(buf.len());
        buf.get(from..to).unwrap_or(&[])
    }

    #[inline]
    pub(crate) fn clamped_mut(buf: &mut [u8], from: usize, to: usize) -> &mut [u8] {
        let to = to.min(buf.len());
        buf.get_mut(from..to).unwrap_or(&mut [])
    }
}

/// Helpers shared by the unit tests of every header.
#[cfg(test)]
pub(crate) mod test_util {
    /// Decodes a hex fixture; fixtures are constants in the tests, so a bad one is a bug
    /// in the test itself.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(s.len().is_multiple_of(2), "odd hex fixture");
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }
}
