//! The generator's probe: 24 bytes at the start of every L4 payload it sends, kept by
//! the reflector (which only sets flags and the DIP it played), so that the generator
//! can match each answer to its flow, compute the round trip and attribute it to a DIP.
//!
//! A view in the manner of `wire`: length checked once by `new_checked`, fields as
//! byte ranges. Must never panic on any byte string: anything without the magic is
//! simply not a probe.

/// Identifies a probe among other traffic ("NV").
pub const MAGIC: u16 = 0x4e56;
/// Bytes of a probe; an L4 payload may be longer (padding to the frame size).
pub const LEN: usize = 24;
/// Pool or DIP index not (yet) set.
pub const UNSET: u16 = 0xffff;

/// Flag bits.
pub mod flags {
    /// Set by the reflector: this is an answer, not a request.
    pub const REFLECTED: u8 = 0x01;
    /// Set by the reflector: the LB delivered this to a DIP that is not in the pool
    /// the generator addressed (a tenant crossing).
    pub const WRONG_TENANT: u8 = 0x02;
}

mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const FLAGS: usize = 2;
    pub const POOL: Range<usize> = 4..6;
    pub const DIP: Range<usize> = 6..8;
    pub const FLOW: Range<usize> = 8..12;
    pub const SEQ: Range<usize> = 12..16;
    pub const TIME: Range<usize> = 16..24;
}

/// A probe over a buffer that holds at least [`LEN`] bytes.
#[derive(Debug)]
pub struct Probe<T: AsRef<[u8]>> {
    buf: T,
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(src) = b.get(..N) {
        a.copy_from_slice(src);
    }
    a
}

impl<T: AsRef<[u8]>> Probe<T> {
    /// `None` when the buffer is too short or does not start with the magic.
    pub fn new_checked(buf: T) -> Option<Probe<T>> {
        let b = buf.as_ref();
        if b.len() < LEN || b.get(field::MAGIC)? != MAGIC.to_be_bytes() {
            return None;
        }
        Some(Probe { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    pub fn flags(&self) -> u8 {
        self.b().get(field::FLAGS).copied().unwrap_or(0)
    }

    /// Index of the pool the generator addressed, in the policy's order.
    pub fn pool(&self) -> u16 {
        u16::from_be_bytes(arr(self.b().get(field::POOL).unwrap_or(&[])))
    }

    /// Index into that pool's DIPs of the one that answered ([`UNSET`] before).
    pub fn dip(&self) -> u16 {
        u16::from_be_bytes(arr(self.b().get(field::DIP).unwrap_or(&[])))
    }

    pub fn flow(&self) -> u32 {
        u32::from_be_bytes(arr(self.b().get(field::FLOW).unwrap_or(&[])))
    }

    /// Packet number within the flow instance: 0 is its first packet.
    pub fn seq(&self) -> u32 {
        u32::from_be_bytes(arr(self.b().get(field::SEQ).unwrap_or(&[])))
    }

    /// Send time, nanoseconds of the generator's monotonic clock.
    pub fn time(&self) -> u64 {
        u64::from_be_bytes(arr(self.b().get(field::TIME).unwrap_or(&[])))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Probe<T> {
    fn put(&mut self, r: core::ops::Range<usize>, v: &[u8]) {
        if let Some(dst) = self.buf.as_mut().get_mut(r) {
            dst.copy_from_slice(v);
        }
    }

    pub fn set_flags(&mut self, f: u8) {
        if let Some(b) = self.buf.as_mut().get_mut(field::FLAGS) {
            *b = f;
        }
    }

    pub fn set_dip(&mut self, dip: u16) {
        self.put(field::DIP, &dip.to_be_bytes());
    }
}

/// Writes a fresh probe into `buf[..LEN]` (nothing when it is shorter).
pub fn write(buf: &mut [u8], pool: u16, flow: u32, seq: u32, time: u64) {
    let Some(b) = buf.get_mut(..LEN) else {
        return;
    };
    b.fill(0);
    b[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
    b[field::POOL].copy_from_slice(&pool.to_be_bytes());
    b[field::DIP].copy_from_slice(&UNSET.to_be_bytes());
    b[field::FLOW].copy_from_slice(&flow.to_be_bytes());
    b[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    b[field::TIME].copy_from_slice(&time.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_probe_reads_back_and_keeps_its_fields_through_reflection() {
        let mut b = [0u8; 40];
        write(&mut b, 3, 77_000, 5, 0x0102_0304_0506_0708);
        let mut p = Probe::new_checked(&mut b[..]).expect("probe");
        assert_eq!(
            (p.pool(), p.dip(), p.flow(), p.seq(), p.time(), p.flags()),
            (3, UNSET, 77_000, 5, 0x0102_0304_0506_0708, 0)
        );
        p.set_flags(flags::REFLECTED);
        p.set_dip(2);
        let p = Probe::new_checked(&b[..]).expect("probe");
        assert_eq!(
            (p.dip(), p.flags(), p.flow()),
            (2, flags::REFLECTED, 77_000)
        );
    }

    #[test]
    fn short_or_foreign_payloads_are_not_probes() {
        assert!(Probe::new_checked(&[0x4e, 0x56][..]).is_none());
        assert!(Probe::new_checked(&[0u8; 40][..]).is_none());
        let mut b = [0u8; 10];
        write(&mut b, 1, 1, 1, 1);
        assert_eq!(b, [0u8; 10]);
    }
}
