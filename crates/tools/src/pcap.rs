//! Classic libpcap capture files: a streaming reader and a writer, for `nvlb replay`,
//! engine test fixtures and captures that tshark/Wireshark can open.
//!
//! Format (the classic one, not pcapng): a 24-byte file header — magic, version major and
//! minor (u16 each, 2.4), timezone offset and sigfigs (i32/u32, unused), snaplen, link
//! type — then records, each a 16-byte header (ts_sec, ts_frac, incl_len, orig_len) and
//! `incl_len` bytes of frame. The magic's byte order gives the file's byte order and its
//! value the timestamp unit: `0xa1b2c3d4` microseconds, `0xa1b23c4d` nanoseconds.
//!
//! This module must never panic on a file's contents, never allocate more than the file
//! actually holds because a header says so (data is read in bounded chunks), and never
//! return a malformed record as if it were good: every malformation is a [`PcapError`]
//! naming the record index (0-based) and the byte offset of that record's header.
//! Only Ethernet (link type 1) is accepted, because that is all the engine parses.

use std::io::{self, Read, Write};

/// Magic of a file with microsecond timestamps (as the number, in the file's byte order).
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a file with nanosecond timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The only link type accepted and written: Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Records up to this length are accepted whatever the snaplen says (libpcap's own
/// ceiling for Ethernet), so files with a too-small snaplen still read.
pub const MAX_RECORD_LEN: u32 = 262_144;

const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
/// Data is read in pieces of at most this many bytes, so a length field that lies (up to
/// a lying snaplen of 4 GiB) costs no more memory than the bytes really present.
const READ_CHUNK: usize = 64 * 1024;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// What can go wrong reading a capture. Malformations name the record and where it
/// starts; `Io` is the underlying reader failing, not the file being wrong.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("pcap i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("{}", short_header(*got))]
    ShortFileHeader { got: usize },
    /// The first four bytes as they appear in the file, read big-endian.
    #[error("bad pcap magic {:#010x}: {}", .0, magic_hint(*.0))]
    BadMagic(u32),
    #[error("unsupported pcap version {major}.{minor} (only 2.x)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("unsupported pcap link type {0} (only Ethernet, 1)")]
    UnsupportedLinkType(u32),
    #[error("pcap record {record} at byte {offset}: header or data cut short")]
    Truncated { record: u64, offset: u64 },
    #[error(
        "pcap record {record} at byte {offset}: captured length {len} exceeds max(snaplen {snaplen}, 262144)"
    )]
    RecordTooLarge {
        record: u64,
        offset: u64,
        len: u32,
        snaplen: u32,
    },
    #[error(
        "pcap record {record} at byte {offset}: timestamp fraction {frac} is not below one second"
    )]
    BadTimestamp { record: u64, offset: u64, frac: u32 },
}

/// An empty file is the common case (a capture that never started): say so plainly.
fn short_header(got: usize) -> String {
    if got == 0 {
        "file is empty: no pcap file header".to_string()
    } else {
        format!("pcap file header cut short: {got} of 24 bytes")
    }
}

/// pcapng is what Wireshark and dumpcap write by default, so the likeliest wrong magic
/// gets the conversion command rather than a bare "not pcap".
fn magic_hint(raw: u32) -> &'static str {
    if raw == PCAPNG_MAGIC {
        "this is a pcapng file, not classic pcap; convert it with `editcap -F pcap IN OUT`"
    } else {
        "not a classic pcap file"
    }
}

/// Block type of a pcapng Section Header Block, the first four bytes of any pcapng file.
const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;

/// A record header, decoded: what [`Reader::next_into`] returns beside the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Nanoseconds since the Unix epoch (microsecond files are scaled up).
    pub ts_nanos: u64,
    /// Bytes captured, i.e. the length of the data returned.
    pub incl_len: u32,
    /// Length of the frame on the wire (≥ `incl_len` when the capture was cut by snaplen).
    pub orig_len: u32,
}

/// One record with its own buffer, for callers that do not reuse one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub ts_nanos: u64,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

/// Streaming reader. After the first error it yields nothing more: a stream cut or
/// corrupted at one record gives no trustworthy boundary for the next.
pub struct Reader<R: Read> {
    inner: R,
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    /// Index of the next record.
    record: u64,
    /// Byte offset of the next record's header.
    offset: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the file header. Pass a buffered reader: records are read with
    /// several small reads each.
    pub fn new(mut inner: R) -> Result<Self, PcapError> {
        let mut h = [0u8; FILE_HEADER_LEN];
        let got = fill(&mut inner, &mut h)?;
        if got < FILE_HEADER_LEN {
            // Even four bytes of garbage should be called a bad magic, not a short file.
            if got >= 4 {
                let raw = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if magic_kind(raw).is_none() {
                    return Err(PcapError::BadMagic(raw));
                }
            }
            return Err(PcapError::ShortFileHeader { got });
        }
        let raw = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = magic_kind(raw).ok_or(PcapError::BadMagic(raw))?;
        let u16_at = |i: usize| {
            let b = [h[i], h[i + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        if major != VERSION_MAJOR {
            return Err(PcapError::UnsupportedVersion { major, minor });
        }
        let snaplen = u32_at(16);
        // The whole field, FCS-length bits included: frames with a trailing FCS would
        // not be what the engine expects.
        let linktype = u32_at(20);
        if linktype != LINKTYPE_ETHERNET {
            return Err(PcapError::UnsupportedLinkType(linktype));
        }
        Ok(Reader {
            inner,
            big_endian,
            nanos,
            snaplen,
            record: 0,
            offset: FILE_HEADER_LEN as u64,
            done: false,
        })
    }

    /// Timestamps in the file are nanoseconds (else microseconds).
    pub fn nanos(&self) -> bool {
        self.nanos
    }

    /// The file is big-endian (written on such a host).
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// Reads the next record's data into `buf` (replacing its contents, keeping its
    /// allocation). `Ok(None)` at the end of the file, and after any error.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordHeader>, PcapError> {
        buf.clear();
        if self.done {
            return Ok(None);
        }
        let result = self.read_record(buf);
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    /// Like [`Reader::next_into`] with a fresh buffer per record.
    pub fn next_record(&mut self) -> Option<Result<Record, PcapError>> {
        let mut data = Vec::new();
        match self.next_into(&mut data) {
            Ok(Some(h)) => Some(Ok(Record {
                ts_nanos: h.ts_nanos,
                data,
                orig_len: h.orig_len,
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn read_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<RecordHeader>, PcapError> {
        let (record, offset) = (self.record, self.offset);
        let mut h = [0u8; RECORD_HEADER_LEN];
        match fill(&mut self.inner, &mut h)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => return Err(PcapError::Truncated { record, offset }),
        }
        let field = |i: usize| {
            let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
            if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (sec, frac, incl_len, orig_len) = (field(0), field(4), field(8), field(12));
        let (limit, unit) = if self.nanos {
            (NANOS_PER_SEC, 1)
        } else {
            (1_000_000, 1_000)
        };
        if u64::from(frac) >= limit {
            return Err(PcapError::BadTimestamp {
                record,
                offset,
                frac,
            });
        }
        // sec < 2^32 and frac·unit < 10^9: the sum is below 2^63.
        let ts_nanos = u64::from(sec) * NANOS_PER_SEC + u64::from(frac) * unit;
        if incl_len > self.snaplen.max(MAX_RECORD_LEN) {
            return Err(PcapError::RecordTooLarge {
                record,
                offset,
                len: incl_len,
                snaplen: self.snaplen,
            });
        }
        let mut left = incl_len as usize;
        while left > 0 {
            let start = buf.len();
            let n = left.min(READ_CHUNK);
            buf.resize(start + n, 0);
            let got = match buf.get_mut(start..) {
                Some(dst) => fill(&mut self.inner, dst)?,
                None => 0,
            };
            if got < n {
                buf.truncate(start + got);
                return Err(PcapError::Truncated { record, offset });
            }
            left -= n;
        }
        self.record = record.saturating_add(1);
        self.offset = offset.saturating_add(RECORD_HEADER_LEN as u64 + u64::from(incl_len));
        Ok(Some(RecordHeader {
            ts_nanos,
            incl_len,
            orig_len,
        }))
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Record, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// (big-endian file, nanosecond timestamps) for a magic read big-endian from the file.
fn magic_kind(raw: u32) -> Option<(bool, bool)> {
    match raw {
        MAGIC_MICROS => Some((true, false)),
        MAGIC_NANOS => Some((true, true)),
        r if r == MAGIC_MICROS.swap_bytes() => Some((false, false)),
        r if r == MAGIC_NANOS.swap_bytes() => Some((false, true)),
        _ => None,
    }
}

/// Reads until `dst` is full or the stream ends; returns how much was read, so that a
/// clean end (0) can be told from a cut one.
fn fill<R: Read>(r: &mut R, dst: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < dst.len() {
        let Some(rest) = dst.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Writes little-endian classic pcap with link type Ethernet. [`Writer::new`] uses the
/// microsecond magic because every pcap reader ever written understands it;
/// [`Writer::new_nanos`] keeps full timestamp precision for readers that know the
/// nanosecond magic (libpcap ≥ 1.5, Wireshark, tshark). Pass a buffered writer.
pub struct Writer<W: Write> {
    inner: W,
    snaplen: u32,
    nanos: bool,
}

impl<W: Write> Writer<W> {
    /// Microsecond timestamps (sub-microsecond digits are dropped).
    pub fn new(inner: W, snaplen: u32) -> io::Result<Self> {
        Self::start(inner, snaplen, false)
    }

    /// Nanosecond timestamps.
    pub fn new_nanos(inner: W, snaplen: u32) -> io::Result<Self> {
        Self::start(inner, snaplen, true)
    }

    fn start(mut inner: W, snaplen: u32, nanos: bool) -> io::Result<Self> {
        if snaplen == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pcap snaplen must be > 0",
            ));
        }
        let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
        let mut h = [0u8; FILE_HEADER_LEN];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone and sigfigs stay 0, as every modern writer leaves them.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        inner.write_all(&h)?;
        Ok(Writer {
            inner,
            snaplen,
            nanos,
        })
    }

    /// Appends one frame, cut to the snaplen (the original length is kept in the record).
    /// Fails, writing nothing, for times past 2106 (seconds no longer fit in 32 bits) and
    /// frames longer than 4 GiB.
    pub fn write(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let sec = u32::try_from(ts_nanos / NANOS_PER_SEC)
            .map_err(|_| invalid("pcap timestamp beyond 2106"))?;
        let sub = ts_nanos % NANOS_PER_SEC;
        // Below 10^9, so it fits in u32.
        let frac = if self.nanos { sub } else { sub / 1_000 } as u32;
        let orig_len =
            u32::try_from(frame.len()).map_err(|_| invalid("frame longer than 4 GiB"))?;
        let incl_len = orig_len.min(self.snaplen);
        let data = frame.get(..incl_len as usize).unwrap_or(frame);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&incl_len.to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(data)
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TS: u64 = 1_700_000_000_123_456_789;

    /// A hand-built file: header and records encoded field by field in the given order.
    fn handmade(big_endian: bool, magic: u32, records: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
        let e32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let e16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut f = Vec::new();
        f.extend_from_slice(&e32(magic));
        f.extend_from_slice(&e16(2));
        f.extend_from_slice(&e16(4));
        f.extend_from_slice(&e32(0));
        f.extend_from_slice(&e32(0));
        f.extend_from_slice(&e32(65535));
        f.extend_from_slice(&e32(1));
        for &(sec, frac, data, orig) in records {
            f.extend_from_slice(&e32(sec));
            f.extend_from_slice(&e32(frac));
            f.extend_from_slice(&e32(data.len() as u32));
            f.extend_from_slice(&e32(orig));
            f.extend_from_slice(data);
        }
        f
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, PcapError> {
        Reader::new(bytes)?.collect()
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn round_trip_micro_and_nano() {
        for nanos in [false, true] {
            let frames = [frame(60, 1), frame(1514, 2), frame(0, 3)];
            let mut w = if nanos {
                Writer::new_nanos(Vec::new(), 65535).unwrap()
            } else {
                Writer::new(Vec::new(), 65535).unwrap()
            };
            for (i, f) in frames.iter().enumerate() {
                w.write(TS + i as u64 * 1_000_001, f).unwrap();
            }
            let bytes = w.finish().unwrap();
            assert_eq!(bytes.len(), 24 + 3 * 16 + 60 + 1514);
            let mut r = Reader::new(&bytes[..]).unwrap();
            assert_eq!(r.nanos(), nanos);
            assert!(!r.big_endian());
            assert_eq!(r.snaplen(), 65535);
            let mut buf = Vec::new();
            for (i, f) in frames.iter().enumerate() {
                let h = r.next_into(&mut buf).unwrap().unwrap();
                let ts = TS + i as u64 * 1_000_001;
                let want = if nanos { ts } else { ts / 1000 * 1000 };
                assert_eq!(h.ts_nanos, want);
                assert_eq!(&buf, f);
                assert_eq!(h.incl_len as usize, f.len());
                assert_eq!(h.orig_len as usize, f.len());
            }
            assert_eq!(r.next_into(&mut buf).unwrap(), None);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn snaplen_cuts_frames_and_keeps_orig_len() {
        let mut w = Writer::new(Vec::new(), 64).unwrap();
        let f = frame(100, 9);
        w.write(TS, &f).unwrap();
        let recs = read_all(&w.finish().unwrap()).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].data, &f[..64]);
        assert_eq!(recs[0].orig_len, 100);
    }

    #[test]
    fn writer_rejects_what_pcap_cannot_hold() {
        assert!(Writer::new(Vec::new(), 0).is_err());
        let mut w = Writer::new(Vec::new(), 100).unwrap();
        assert!(w.write(u64::MAX, &[1, 2, 3]).is_err());
        // 2106-02-07 06:28:15 is the last representable second.
        assert!(w.write(u64::from(u32::MAX) * NANOS_PER_SEC, &[1]).is_ok());
        assert!(
            w.write((u64::from(u32::MAX) + 1) * NANOS_PER_SEC, &[1])
                .is_err()
        );
        assert_eq!(w.finish().unwrap().len(), 24 + 16 + 1);
    }

    #[test]
    fn both_byte_orders_and_both_magics() {
        let data: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0x01];
        for big in [false, true] {
            for (magic, frac, want) in [
                (MAGIC_MICROS, 250_000u32, 10 * NANOS_PER_SEC + 250_000_000),
                (MAGIC_NANOS, 250_000u32, 10 * NANOS_PER_SEC + 250_000),
            ] {
                let f = handmade(big, magic, &[(10, frac, data, 70), (11, 0, &[], 0)]);
                let mut r = Reader::new(&f[..]).unwrap();
                assert_eq!(r.big_endian(), big);
                assert_eq!(r.nanos(), magic == MAGIC_NANOS);
                let a = r.next_record().unwrap().unwrap();
                assert_eq!(
                    (a.ts_nanos, a.data.as_slice(), a.orig_len),
                    (want, data, 70)
                );
                let b = r.next_record().unwrap().unwrap();
                assert_eq!((b.ts_nanos, b.data.len()), (11 * NANOS_PER_SEC, 0));
                assert!(r.next_record().is_none());
            }
        }
        // A known little-endian µs header, byte for byte as libpcap writes it.
        let f = handmade(false, MAGIC_MICROS, &[]);
        assert_eq!(&f[..8], &[0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00]);
        let ours = Writer::new(Vec::new(), 65535).unwrap().finish().unwrap();
        assert_eq!(ours, f);
    }

    #[test]
    fn bad_file_headers() {
        assert!(matches!(
            read_all(&[]),
            Err(PcapError::ShortFileHeader { got: 0 })
        ));
        let good = handmade(false, MAGIC_MICROS, &[]);
        assert!(matches!(
            read_all(&good[..23]),
            Err(PcapError::ShortFileHeader { got: 23 })
        ));
        let mut bad = good.clone();
        bad[0] = 0x0a; // pcapng starts 0a 0d 0d 0a
        assert!(matches!(
            read_all(&bad),
            Err(PcapError::BadMagic(0x0ac3_b2a1))
        ));
        assert!(matches!(
            read_all(&bad[..6]),
            Err(PcapError::BadMagic(0x0ac3_b2a1))
        ));
        let mut v = good.clone();
        v[4] = 3;
        assert!(matches!(
            read_all(&v),
            Err(PcapError::UnsupportedVersion { major: 3, minor: 4 })
        ));
        let mut lt = good.clone();
        lt[20] = 105; // 802.11
        assert!(matches!(
            read_all(&lt),
            Err(PcapError::UnsupportedLinkType(105))
        ));
        let mut fcs = good;
        fcs[23] = 0x10; // FCS-present bit on an Ethernet link type
        assert!(matches!(
            read_all(&fcs),
            Err(PcapError::UnsupportedLinkType(0x1000_0001))
        ));
    }

    #[test]
    fn truncated_record_header_and_data() {
        let f = handmade(
            false,
            MAGIC_MICROS,
            &[(1, 0, &[7; 40], 40), (2, 0, &[8; 30], 30)],
        );
        // Second record header starts at 24 + 16 + 40 = 80.
        for cut in [81, 95, 96, 100, 125] {
            let mut r = Reader::new(&f[..cut]).unwrap();
            assert!(r.next_record().unwrap().is_ok());
            match r.next_record() {
                Some(Err(PcapError::Truncated { record, offset })) => {
                    assert_eq!((record, offset), (1, 80), "cut at {cut}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
            assert!(r.next_record().is_none(), "reader stops after an error");
        }
        // First record's data cut.
        match read_all(&f[..50]) {
            Err(PcapError::Truncated { record, offset }) => assert_eq!((record, offset), (0, 24)),
            other => panic!("{other:?}"),
        }
        // A cut exactly at a record boundary is a clean end.
        assert_eq!(read_all(&f[..80]).unwrap().len(), 1);
        assert_eq!(read_all(&f).unwrap().len(), 2);
    }

    #[test]
    fn lying_lengths_are_errors_without_huge_buffers() {
        let mut f = handmade(false, MAGIC_MICROS, &[(1, 0, &[1; 10], 10)]);
        f[24 + 8..24 + 12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        match read_all(&f) {
            Err(PcapError::RecordTooLarge {
                record,
                offset,
                len,
                snaplen,
            }) => assert_eq!((record, offset, len, snaplen), (0, 24, 0xffff_fff0, 65535)),
            other => panic!("{other:?}"),
        }
        // A lying snaplen lets the length pass the limit; the data is still not there,
        // and the buffer grows only by what was read.
        f[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = Reader::new(&f[..]).unwrap();
        let mut buf = Vec::new();
        assert!(matches!(
            r.next_into(&mut buf),
            Err(PcapError::Truncated {
                record: 0,
                offset: 24
            })
        ));
        assert!(
            buf.capacity() <= 2 * READ_CHUNK,
            "capacity {}",
            buf.capacity()
        );
        // Just over the 256 KiB floor with the normal snaplen.
        let mut g = handmade(false, MAGIC_MICROS, &[(1, 0, &[], 0)]);
        g[24 + 8..24 + 12].copy_from_slice(&(MAX_RECORD_LEN + 1).to_le_bytes());
        assert!(matches!(
            read_all(&g),
            Err(PcapError::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn large_record_within_limit_reads_in_chunks() {
        let big = frame(200_000, 5);
        let mut w = Writer::new(Vec::new(), MAX_RECORD_LEN).unwrap();
        w.write(TS, &big).unwrap();
        w.write(TS + 1, &big[..10]).unwrap();
        let recs = read_all(&w.finish().unwrap()).unwrap();
        assert_eq!(recs[0].data, big);
        assert_eq!(recs[1].data, &big[..10]);
    }

    #[test]
    fn bad_timestamp_fraction() {
        for (magic, frac) in [(MAGIC_MICROS, 1_000_000u32), (MAGIC_NANOS, 1_000_000_000)] {
            let f = handmade(true, magic, &[(1, frac - 1, &[], 0), (1, frac, &[], 0)]);
            match read_all(&f) {
                Err(PcapError::BadTimestamp {
                    record,
                    offset,
                    frac: got,
                }) => assert_eq!((record, offset, got), (1, 40, frac)),
                other => panic!("{other:?}"),
            }
        }
    }

    /// tshark (Wireshark's reader, written by nobody here) must read what we write.
    #[test]
    fn tshark_reads_our_files() {
        let Ok(out) = std::process::Command::new("tshark")
            .arg("--version")
            .output()
        else {
            eprintln!("NOTE: tshark not found; skipping tshark_reads_our_files");
            return;
        };
        assert!(out.status.success());
        // Ethernet + IPv4 header + 6 bytes of zero UDP-ish payload: well-formed enough.
        let mut eth = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
        eth.extend_from_slice(&[0x45, 0, 0, 26, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        eth.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        eth.extend_from_slice(&[0; 6]);
        let mut long = eth.clone();
        long.resize(300, 0xab);
        for nanos in [false, true] {
            let path = std::env::temp_dir().join(format!(
                "nvlb-pcap-test-{}-{nanos}.pcap",
                std::process::id()
            ));
            let file = std::fs::File::create(&path).unwrap();
            let mut w = if nanos {
                Writer::new_nanos(io::BufWriter::new(file), 128).unwrap()
            } else {
                Writer::new(io::BufWriter::new(file), 128).unwrap()
            };
            w.write(TS, &eth).unwrap();
            w.write(TS + 1_500_000, &long).unwrap();
            w.finish().unwrap();
            let out = std::process::Command::new("tshark")
                .args(["-n", "-r"])
                .arg(&path)
                .args(["-T", "fields", "-e", "frame.len", "-e", "frame.cap_len"])
                .args(["-e", "frame.time_epoch"])
                .output()
                .unwrap();
            let _ = std::fs::remove_file(&path);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
            assert_eq!(rows.len(), 2, "{text}");
            assert_eq!(&rows[0][..2], ["40", "40"]);
            assert_eq!(&rows[1][..2], ["300", "128"]);
            let want = if nanos {
                ["1700000000.123456789", "1700000000.124956789"]
            } else {
                ["1700000000.123456000", "1700000000.124956000"]
            };
            assert_eq!(rows[0][2], want[0]);
            assert_eq!(rows[1][2], want[1]);
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(mut r) = Reader::new(&bytes[..]) {
                let mut buf = Vec::new();
                let mut n = 0;
                while let Ok(Some(_)) = r.next_into(&mut buf) {
                    n += 1;
                    prop_assert!(n <= bytes.len());
                }
            }
        }

        /// A valid header followed by random record bytes, so records are actually parsed.
        #[test]
        fn random_records_never_panic(
            big in any::<bool>(),
            nanos in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
            let mut f = handmade(big, magic, &[]);
            f.extend_from_slice(&tail);
            let r = Reader::new(&f[..]);
            prop_assert!(r.is_ok());
            for rec in r.into_iter().flatten() {
                if let Err(e) = rec {
                    // The message names the record and offset when there is one.
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }

        #[test]
        fn round_trip_any_frames(
            frames in proptest::collection::vec(
                (0u64..4_000_000_000_000_000_000, proptest::collection::vec(any::<u8>(), 0..200)),
                0..8,
            ),
            snaplen in 1u32..300,
            nanos in any::<bool>(),
        ) {
            let mut w = if nanos { Writer::new_nanos(Vec::new(), snaplen) } else { Writer::new(Vec::new(), snaplen) }
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (ts, f) in &frames {
                w.write(*ts, f).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let bytes = w.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let recs = read_all(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(recs.len(), frames.len());
            for (rec, (ts, f)) in recs.iter().zip(&frames) {
                let want_ts = if nanos { *ts } else { ts / 1000 * 1000 };
                prop_assert_eq!(rec.ts_nanos, want_ts);
                let cut = f.len().min(snaplen as usize);
                prop_assert_eq!(&rec.data[..], &f[..cut]);
                prop_assert_eq!(rec.orig_len as usize, f.len());
            }
        }
    }
}
