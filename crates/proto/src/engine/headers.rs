//! A path's headers built once, then copied and patched per packet.
//!
//! Building outer Ethernet + IP + GRE + inner Ethernet from their `Repr`s on every
//! packet cost more than any other step of forwarding an established flow (many small
//! stores and a full IPv4 header checksum). Per DIP, everything but the payload length,
//! the IPv4 identification, the FlowID and the inner EtherType is fixed for the life of
//! a policy snapshot, so [`Prebuilt`] holds those bytes, made by
//! [`Path::write_headers`] itself (so they cannot drift from it), and patches the rest
//! with an RFC 1624 incremental checksum update. Its output must always equal
//! `write_headers` byte for byte; the tests below hold it to that.

use crate::wire::{checksum, ethernet, gre, ipv4, ipv6};

use super::Egress;
use super::drop::DropReason;
use super::emit::{NVGRE_INNER_OVERHEAD, Path};

/// The longest headers a path writes: NVGRE over IPv6.
const MAX_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + NVGRE_INNER_OVERHEAD;

/// The headers of NVGRE over IPv4.
const V4_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + NVGRE_INNER_OVERHEAD;

/// The first `N` bytes of `out`, filled with the first `N` of `bytes`.
#[inline(always)]
fn fixed<'a, const N: usize>(
    out: &'a mut [u8],
    bytes: &[u8; MAX_LEN],
) -> Result<&'a mut [u8; N], DropReason> {
    let h = out.first_chunk_mut::<N>().ok_or(DropReason::NoPath)?;
    *h = *bytes.first_chunk::<N>().ok_or(DropReason::NoPath)?;
    Ok(h)
}

/// Which outer header the fixed bytes hold, so `write` knows what to patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outer {
    /// Only an Ethernet header.
    Plain,
    /// NVGRE over IPv4; `check0` is the header checksum with total length and
    /// identification zero.
    V4 { check0: u16 },
    /// NVGRE over IPv6.
    V6,
}

/// The fixed headers of one path (with FlowID 0), ready to copy.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prebuilt {
    bytes: [u8; MAX_LEN],
    len: usize,
    outer: Outer,
    egress: Egress,
    /// The largest IP packet the path carries (see [`Path::max_ip_len`]).
    room: usize,
}

/// Offsets inside the outer IP header.
const V4_TOTAL_LEN: usize = ethernet::HEADER_LEN + 2;
const V4_IDENT: usize = ethernet::HEADER_LEN + 4;
const V4_CHECKSUM: usize = ethernet::HEADER_LEN + 10;
const V6_FLOW_LABEL: usize = ethernet::HEADER_LEN + 1;
const V6_PAYLOAD_LEN: usize = ethernet::HEADER_LEN + 4;
/// The low byte of the GRE key (the FlowID), from the start of the GRE header.
const GRE_FLOW_ID: usize = 7;

impl Prebuilt {
    /// Prebuilds `path`, whose FlowID (if a tunnel) must be 0; `room` is its
    /// `max_ip_len` under the current policy.
    pub(crate) fn new(path: &Path, room: usize) -> Result<Prebuilt, DropReason> {
        let mut bytes = [0u8; MAX_LEN];
        let len = path.write_headers(&mut bytes, 0, 0, 0)?;
        let outer = match path {
            Path::Plain { .. } => Outer::Plain,
            Path::Tunnel(t) if t.outer_dst.is_ipv6() => Outer::V6,
            Path::Tunnel(_) => {
                // The checksum of the header as it would be with total length 0 (ident
                // is already 0), the base that `write` adds the real values to.
                bytes[V4_TOTAL_LEN..V4_TOTAL_LEN + 2].fill(0);
                bytes[V4_CHECKSUM..V4_CHECKSUM + 2].fill(0);
                let ip = &bytes[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv4::HEADER_LEN];
                Outer::V4 {
                    check0: checksum::data(ip),
                }
            }
        };
        Ok(Prebuilt {
            bytes,
            len,
            outer,
            egress: path.egress(),
            room,
        })
    }

    pub(crate) fn egress(&self) -> Egress {
        self.egress
    }

    pub(crate) fn room(&self) -> usize {
        self.room
    }

    /// What `Path::write_headers(out, inner_type, len, ident)` writes for this path
    /// with FlowID `flow_id`; returns the offset of the payload.
    #[inline]
    pub(crate) fn write(
        &self,
        out: &mut [u8],
        inner_type: u16,
        len: usize,
        ident: u16,
        flow_id: u8,
    ) -> Result<usize, DropReason> {
        let hl = self.len;
        if out.len() < hl + len {
            return Err(DropReason::NoPath);
        }
        match self.outer {
            Outer::Plain => {
                let h = &mut out[..hl];
                h.copy_from_slice(&self.bytes[..hl]);
                h[hl - 2..].copy_from_slice(&inner_type.to_be_bytes());
                return Ok(hl);
            }
            Outer::V4 { check0 } => {
                // One copy of a fixed size: no call into memcpy for a few dozen bytes.
                let h = fixed::<V4_LEN>(out, &self.bytes)?;
                h[V4_LEN - 2..].copy_from_slice(&inner_type.to_be_bytes());
                // Saturating as `ipv4::Repr::emit` does (callers keep `len` within MTU).
                let total = u16::try_from(ipv4::HEADER_LEN + NVGRE_INNER_OVERHEAD + len)
                    .unwrap_or(u16::MAX);
                h[V4_TOTAL_LEN..V4_TOTAL_LEN + 2].copy_from_slice(&total.to_be_bytes());
                h[V4_IDENT..V4_IDENT + 2].copy_from_slice(&ident.to_be_bytes());
                let delta = checksum::delta16(0, total) + checksum::delta16(0, ident);
                let ck = checksum::apply_delta(check0, delta);
                h[V4_CHECKSUM..V4_CHECKSUM + 2].copy_from_slice(&ck.to_be_bytes());
                h[ethernet::HEADER_LEN + ipv4::HEADER_LEN + GRE_FLOW_ID] = flow_id;
            }
            Outer::V6 => {
                let payload = NVGRE_INNER_OVERHEAD + len;
                let payload = u16::try_from(payload).map_err(|_| DropReason::NoPath)?;
                let h = fixed::<MAX_LEN>(out, &self.bytes)?;
                h[MAX_LEN - 2..].copy_from_slice(&inner_type.to_be_bytes());
                h[V6_PAYLOAD_LEN..V6_PAYLOAD_LEN + 2].copy_from_slice(&payload.to_be_bytes());
                // Flow label = FlowID << 12 | (VSID & 0xfff); the VSID part is prebuilt.
                h[V6_FLOW_LABEL] |= flow_id >> 4;
                h[V6_FLOW_LABEL + 1] |= flow_id << 4;
                h[ethernet::HEADER_LEN + ipv6::HEADER_LEN + GRE_FLOW_ID] = flow_id;
            }
        }
        debug_assert_eq!(gre::NVGRE_HEADER_LEN, 8);
        Ok(hl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::emit::Tunnel;
    use crate::wire::MacAddr;
    use std::net::IpAddr;

    fn tunnel(src: &str, dst: &str, vsid: u32) -> Path {
        Path::Tunnel(Tunnel {
            vsid,
            flow_id: 0,
            outer_src: src.parse::<IpAddr>().unwrap(),
            outer_dst: dst.parse::<IpAddr>().unwrap(),
            outer_src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            outer_dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            inner_src_mac: MacAddr([2, 0, 0, 0, 0, 3]),
            inner_dst_mac: MacAddr([2, 0, 0, 0, 0, 4]),
        })
    }

    fn with_flow_id(path: Path, flow_id: u8) -> Path {
        match path {
            Path::Tunnel(t) => Path::Tunnel(Tunnel { flow_id, ..t }),
            p => p,
        }
    }

    #[test]
    fn equals_write_headers_byte_for_byte() {
        let paths = [
            tunnel("192.0.2.1", "192.0.2.200", 5001),
            tunnel("10.255.255.254", "10.0.0.1", 0xFF_FFFE),
            tunnel("2001:db8::1", "2001:db8::2", 0x1234),
            tunnel("fd00::ffff", "fd00::1", 0xABCDEF),
            Path::Plain {
                port: Egress::External,
                src_mac: MacAddr([2, 0, 0, 0, 0, 9]),
                dst_mac: MacAddr([2, 0, 0, 0, 0, 8]),
            },
        ];
        for path in paths {
            let pre = Prebuilt::new(&path, 1500).unwrap();
            assert_eq!(pre.egress(), path.egress());
            let v4 = matches!(pre.outer, Outer::V4 { .. });
            for len in [
                0usize, 1, 20, 40, 1458, 9000, 65_000, 65_473, 65_493, 70_000,
            ] {
                if v4 && len > 65_493 {
                    continue; // beyond what ipv4::Repr may be asked to emit
                }
                for ident in [0u16, 1, 0x1234, 0xFFFF] {
                    for flow_id in [0u8, 1, 0x5A, 0xFF] {
                        for inner_type in [0x0800u16, 0x86DD] {
                            let mut want = vec![0u8; MAX_LEN + len];
                            let mut got = vec![0xEEu8; MAX_LEN + len];
                            let w = with_flow_id(path, flow_id)
                                .write_headers(&mut want, inner_type, len, ident);
                            let g = pre.write(&mut got, inner_type, len, ident, flow_id);
                            assert_eq!(w, g, "{path:?} len {len}");
                            if let Ok(off) = w {
                                assert_eq!(want[..off], got[..off], "{path:?} {len} {ident}");
                            }
                        }
                    }
                }
            }
            let mut short = [0u8; 10];
            assert_eq!(
                pre.write(&mut short, 0x0800, 0, 0, 0),
                Err(DropReason::NoPath)
            );
        }
    }
}
