//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Job: compute and patch the 16-bit ones'-complement checksums of IPv4, ICMP, ICMPv6,
//! TCP, UDP and GRE, including the IPv4/IPv6 pseudo headers, so that a NAT rewrite costs
//! a few additions instead of a pass over the payload.
//!
//! Conventions, so partial sums from different places can be combined safely:
//! - every `sum`-like function returns a *partial sum already folded to at most 0xFFFF*
//!   (held in a `u32`), so callers may add tens of thousands of them with plain `+`;
//! - `fold` folds carries back into 16 bits, `finish` is its ones' complement and is the
//!   value written into a checksum field;
//! - a buffer verifies when `fold(sum(...)) == 0xFFFF`.
//!
//! Canonical form: `finish` never returns 0xFFFF for non-zero data (the ones'-complement
//! "negative zero" 0xFFFF and 0x0000 are the same number). The incremental functions
//! follow RFC 1624 eqn. 3, which may produce either representation of zero; both verify.
//! UDP gives 0x0000 the meaning "no checksum", see `udp::update_checksum`.
//!
//! Must never: allocate, or lose a carry (every step is overflow-free by construction).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit accumulator to at most 0xFFFF without changing it modulo 0xFFFF.
#[inline]
fn fold64(mut acc: u64) -> u32 {
    // 2^32 ≡ 1 and 2^16 ≡ 1 (mod 0xFFFF), so adding the halves preserves the residue.
    acc = (acc >> 32) + (acc & 0xFFFF_FFFF);
    acc = (acc >> 32) + (acc & 0xFFFF_FFFF);
    acc = (acc >> 16) + (acc & 0xFFFF);
    acc = (acc >> 16) + (acc & 0xFFFF);
    acc = (acc >> 16) + (acc & 0xFFFF);
    acc as u32
}

/// Ones'-complement partial sum of `data` taken as big-endian 16-bit words.
///
/// The data must start at an even offset of the checksummed byte stream; an odd final
/// byte is padded with a zero byte, so only the last piece of a stream may be odd.
/// Eight bytes are added per step: a big-endian `u64` is congruent, modulo 0xFFFF, to
/// the sum of its four 16-bit words, and the end-around carry keeps the residue exact.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // 32-bit words into a 64-bit accumulator: no carry to track until 2^32 words, and
    // the loop is simple enough to vectorise; headers (20-60 bytes) take a few adds.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
    }
    if rest.len() % 2 == 1 {
        acc += u64::from(rest[rest.len() - 1]) << 8;
    }
    fold64(acc)
}

/// Folds the carries of a partial sum into 16 bits (no complement).
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum >> 16) + (sum & 0xFFFF);
    let s = (s >> 16) + (s & 0xFFFF);
    s as u16
}

/// The value to store in a checksum field: the complement of the folded sum.
#[inline]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// Checksum of `data` alone (IPv4 header, ICMPv4, GRE).
#[inline]
pub fn data(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Partial sum of the IPv4 pseudo header (RFC 793/768): addresses, protocol and the
/// upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u32 {
    let s = u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(proto)
        + u64::from(len >> 16)
        + u64::from(len & 0xFFFF);
    fold64(s)
}

/// Partial sum of the IPv6 pseudo header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, proto: u8, len: u32) -> u32 {
    let s = u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(proto)
        + u64::from(len >> 16)
        + u64::from(len & 0xFFFF);
    fold64(s)
}

/// Pseudo header for either family.
///
/// Mixed families have no pseudo header; they yield 0, and callers that verify must
/// reject the mix themselves (the TCP/UDP/ICMP views do) rather than rely on the sum.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_v4(s, d, proto, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_v6(&s, &d, proto, len),
        _ => 0,
    }
}

/// RFC 1624 eqn. 3 on already-summed old and new contributions.
#[inline]
fn update_sums(cksum: u16, old: u32, new: u32) -> u16 {
    // ~m summed over words is congruent to the complement of the folded sum of m.
    let s = u32::from(!cksum) + u32::from(!fold(old)) + u32::from(fold(new));
    !fold(s)
}

/// The RFC 1624 difference (`~m + m'`) of replacing the 16-bit word `old` by `new`.
/// Differences add up; [`apply_delta`] patches a checksum with their sum once, so a
/// NAT that changes an address, a port and the TTL touches each checksum once.
#[inline]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// The difference of replacing a 32-bit field (two words) `old` by `new`.
#[inline]
pub fn delta32(old: u32, new: u32) -> u32 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// The difference of replacing the bytes `old` by `new` (equal, even lengths).
#[inline]
pub fn delta_bytes(old: &[u8], new: &[u8]) -> u32 {
    u32::from(!fold(sum(old))) + u32::from(fold(sum(new)))
}

/// Patches `cksum` with a sum of differences (at most a few thousand of them, so the
/// 32-bit sum cannot overflow). One fold, not two: `fold` is exact for any 32-bit
/// sum, and folding `delta` first would give the same residue and the same zero
/// (both sums are zero only when `!cksum` and `delta` are), so the same bits.
#[inline]
pub fn apply_delta(cksum: u16, delta: u32) -> u16 {
    !fold(u32::from(!cksum) + delta)
}

/// Patches `cksum` after one 16-bit word changed from `old` to `new`.
#[inline]
pub fn update16(cksum: u16, old: u16, new: u16) -> u16 {
    update_sums(cksum, u32::from(old), u32::from(new))
}

/// Patches `cksum` after a 32-bit field at an even offset changed (e.g. a TCP sequence
/// number or an IPv4 address).
#[inline]
pub fn update32(cksum: u16, old: u32, new: u32) -> u16 {
    update_sums(
        cksum,
        (old >> 16) + (old & 0xFFFF),
        (new >> 16) + (new & 0xFFFF),
    )
}

/// Patches `cksum` after the bytes `old` at an even offset were replaced by `new`.
///
/// Meant for equal, even lengths (4- or 16-byte addresses). Unequal lengths are still
/// arithmetically sound when the covered length did not otherwise change meaning; an
/// odd length is padded as in [`sum`], which is right only at the end of the data.
#[inline]
pub fn update_bytes(cksum: u16, old: &[u8], new: &[u8]) -> u16 {
    update_sums(cksum, sum(old), sum(new))
}

/// Patches a checksum whose coverage (pseudo header or IPv4 header) includes an address
/// that changed from `old` to `new`. Mixed families change nothing: a family change is
/// not an in-place rewrite and needs a full recompute.
#[inline]
pub fn update_addr(cksum: u16, old: IpAddr, new: IpAddr) -> u16 {
    match (old, new) {
        (IpAddr::V4(o), IpAddr::V4(n)) => update32(cksum, o.to_bits(), n.to_bits()),
        (IpAddr::V6(o), IpAddr::V6(n)) => update_bytes(cksum, &o.octets(), &n.octets()),
        _ => cksum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// One fold gives the bits that folding the differences first gave (the
        /// form before): same residue, same zero, for any checksum and up to a few
        /// thousand 16-bit differences.
        #[test]
        fn apply_delta_folds_once_to_the_same_bits(
            cksum in any::<u16>(),
            diffs in proptest::collection::vec((any::<u16>(), any::<u16>()), 0..4000),
        ) {
            let delta: u32 = diffs.iter().map(|&(a, b)| delta16(a, b)).sum();
            let twice = !fold(u32::from(!cksum) + u32::from(fold(delta)));
            prop_assert_eq!(apply_delta(cksum, delta), twice);
        }
    }

    proptest! {
        #[test]
        fn summed_deltas_equal_a_full_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 40..80),
            a in any::<[u8; 16]>(), w in any::<u16>(), x in any::<u32>()
        ) {
            let original = bytes.clone();
            let ck = data(&original);
            bytes[4..20].copy_from_slice(&a);
            bytes[20..22].copy_from_slice(&w.to_be_bytes());
            bytes[24..28].copy_from_slice(&x.to_be_bytes());
            let d = delta_bytes(&original[4..20], &a)
                + delta16(u16::from_be_bytes([original[20], original[21]]), w)
                + delta32(u32::from_be_bytes([original[24], original[25], original[26], original[27]]), x);
            let patched = apply_delta(ck, d);
            let full = data(&bytes);
            // 0x0000 and 0xFFFF are the same ones'-complement number.
            prop_assert!(patched == full || (patched == 0xFFFF && full == 0) || (patched == 0 && full == 0xFFFF));
        }
    }

    /// Straightforward RFC 1071 reference: 16 bits at a time.
    fn reference_sum(data: &[u8]) -> u32 {
        let mut s: u64 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            s += u64::from(w);
        }
        while s > 0xFFFF {
            s = (s >> 16) + (s & 0xFFFF);
        }
        s as u32
    }

    /// Both representations of ones'-complement zero are the same checksum.
    fn same_checksum(a: u16, b: u16) -> bool {
        a == b || (a == 0 || a == 0xFFFF) && (b == 0 || b == 0xFFFF)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(data(&d), !0xddf2);
    }

    #[test]
    fn real_ipv4_header_checksum() {
        // IPv4 header of a TCP SYN 192.168.1.10 -> 93.184.216.34, checksum 0x26e9.
        let mut h = crate::wire::test_util::hex("4500003c1c464000400626e9c0a8010a5db8d822");
        assert_eq!(fold(sum(&h)), 0xFFFF);
        h[10] = 0;
        h[11] = 0;
        assert_eq!(data(&h), 0x26e9);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(sum(&[0xAB]), 0xAB00);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let d = [0xFFu8; 4096];
        assert_eq!(sum(&d), reference_sum(&d));
        assert_eq!(fold(sum(&d)), 0xFFFF);
    }

    #[test]
    fn pseudo_header_mixed_families_is_zero() {
        let a = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let b = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(pseudo_header(a, b, 6, 20), 0);
        assert_eq!(update_addr(0x1234, a, b), 0x1234);
    }

    proptest! {
        #[test]
        fn sum_matches_reference(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&d)), fold(reference_sum(&d)));
            prop_assert!(sum(&d) <= 0xFFFF);
        }

        #[test]
        fn sum_is_splittable_at_even_offsets(
            d in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150
        ) {
            let cut = (cut * 2).min(d.len() & !1);
            let whole = fold(sum(&d));
            let parts = fold(sum(&d[..cut]) + sum(&d[cut..]));
            prop_assert!(same_checksum(whole, parts));
        }

        #[test]
        fn update16_matches_recompute(
            mut d in proptest::collection::vec(any::<u8>(), 2..200),
            idx in any::<usize>(), new in any::<u16>()
        ) {
            let words = d.len() / 2;
            let i = (idx % words) * 2;
            let before = data(&d);
            let old = u16::from_be_bytes([d[i], d[i + 1]]);
            d[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update16(before, old, new);
            prop_assert!(same_checksum(updated, data(&d)));
        }

        #[test]
        fn update_bytes_and_addr_match_recompute(
            // A packet whose checksum field (bytes 0..2) is embedded, as on the wire.
            mut d in proptest::collection::vec(any::<u8>(), 40..120),
            v6 in any::<bool>(), seed in any::<[u8; 16]>()
        ) {
            d[0] = 0;
            d[1] = 0;
            let c = data(&d);
            d[0..2].copy_from_slice(&c.to_be_bytes());
            // Address lives at byte 8 (even), like the IPv4/IPv6 source address.
            let (old, new) = if v6 {
                let o: [u8; 16] = d[8..24].try_into().unwrap();
                (IpAddr::V6(Ipv6Addr::from(o)), IpAddr::V6(Ipv6Addr::from(seed)))
            } else {
                let o: [u8; 4] = d[8..12].try_into().unwrap();
                let n: [u8; 4] = seed[..4].try_into().unwrap();
                (IpAddr::V4(Ipv4Addr::from(o)), IpAddr::V4(Ipv4Addr::from(n)))
            };
            let len = if v6 { 16 } else { 4 };
            let newbytes: Vec<u8> = match new {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            let oldbytes = d[8..8 + len].to_vec();
            d[8..8 + len].copy_from_slice(&newbytes);
            let via_addr = update_addr(c, old, new);
            let via_bytes = update_bytes(c, &oldbytes, &newbytes);
            prop_assert_eq!(via_addr, via_bytes);
            // The incrementally patched field must make the packet verify.
            d[0..2].copy_from_slice(&via_addr.to_be_bytes());
            prop_assert_eq!(fold(sum(&d)), 0xFFFF);
            // And it equals a full recompute, up to the two zeros.
            d[0] = 0;
            d[1] = 0;
            prop_assert!(same_checksum(via_addr, data(&d)));
        }

        #[test]
        fn update32_matches_recompute(
            mut d in proptest::collection::vec(any::<u8>(), 8..64), new in any::<u32>()
        ) {
            let before = data(&d);
            let old = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
            d[4..8].copy_from_slice(&new.to_be_bytes());
            prop_assert!(same_checksum(update32(before, old, new), data(&d)));
        }
    }
}
