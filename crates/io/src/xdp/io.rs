//! A worker's AF_XDP frames: received frames read in place from the UMEM and handed to
//! the engine as the ring backend hands its blocks, output frames written by the
//! engine straight into free UMEM send frames and put on the TX ring of their port.
//!
//! One copy per forwarded frame remains (the engine reads the received frame and
//! writes its output into a send frame). Forwarding in place plugs in here: the
//! engine would rewrite the received frame itself, and the worker would put that
//! frame's address on the TX ring and hand it back to a fill ring when its completion
//! arrives, instead of returning it to the fill ring after the batch. Both areas are
//! one UMEM per worker, shared by its sockets on both ports, so that move needs no
//! copy whichever port the frame leaves on; only the RX/TX split of the frames
//! (`sys::RxArea`/`TxArea`) becomes per-frame ownership.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::afpacket::Meta;
use crate::engine::Egress;
use crate::ring::RingFrame;
use crate::txbatch::Flushed;

use super::socket::{RxHalf, TxHalf};
use super::sys::{self, RxArea, TxArea};

/// UMEM frame ("chunk") size: a page, which holds the largest frame the PA network
/// carries (1500-byte inner frames plus 62 bytes of NVGRE over IPv6) with room for
/// the engine's growth ([`crate::engine::output_len`]) and the kernel's headroom.
pub const FRAME_SIZE: u32 = 4096;
/// Most frames taken from one RX ring per round.
pub const RX_BATCH: usize = 64;
/// Most sendto calls one flush makes to push a port's TX ring out (copy mode sends at
/// most 32 frames a call and says EAGAIN when more wait).
const MAX_KICKS: usize = 128;

fn chunk_of(addr: u64) -> u64 {
    addr & !(u64::from(FRAME_SIZE) - 1)
}

/// What the kernel does not tell an AF_XDP socket about a frame, read from its bytes:
/// a VLAN tag is still in the frame (nothing stripped it into metadata).
fn meta_of(frame: &[u8]) -> Meta {
    let tagged = matches!(frame.get(12..14), Some([0x81, 0x00]) | Some([0x88, 0xa8]));
    Meta {
        vlan_tagged: tagged,
        csum_partial: false,
    }
}

/// The receiving halves of a worker's sockets (external first) and their frames.
#[derive(Debug)]
pub struct XdpRx {
    area: RxArea,
    ports: Vec<RxHalf>,
}

impl XdpRx {
    pub fn new(area: RxArea, ports: Vec<RxHalf>) -> XdpRx {
        XdpRx { area, ports }
    }

    /// Hands up to [`RX_BATCH`] frames received on port `port` (0 external, 1
    /// provider) to `f` in one slice, then gives their buffers back to the fill ring.
    /// How many frames were taken.
    pub fn drain(&mut self, port: usize, mut f: impl FnMut(&[RingFrame<'_>])) -> usize {
        let Some(half) = self.ports.get_mut(port) else {
            return 0;
        };
        let mut descs = [(0u64, 0u32); RX_BATCH];
        let mut n = 0;
        while n < RX_BATCH {
            let Some(d) = half.rx.pop_desc() else { break };
            descs[n] = d;
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        half.rx.release();
        let mut frames: [RingFrame<'_>; RX_BATCH] = std::array::from_fn(|_| RingFrame::Truncated);
        for (slot, &(addr, len)) in frames.iter_mut().zip(&descs[..n]) {
            *slot = match self.area.frame(addr, len) {
                Some(bytes) => RingFrame::Frame(bytes, meta_of(bytes)),
                // A descriptor outside the receive area: never from a sane kernel.
                None => RingFrame::Truncated,
            };
        }
        f(&frames[..n]);
        for &(addr, _) in &descs[..n] {
            // Room is certain: the fill ring has a slot for every receive frame.
            let _ = half.fill.push_addr(chunk_of(addr));
        }
        half.fill.submit();
        if half.fill.needs_wakeup() {
            // Zero-copy drivers sleep when the fill ring ran dry; poll wakes them.
            let _ = crate::sys::poll_readable(&[half.fd.as_fd()], 0);
        }
        n
    }

    /// The sockets, for the worker's poll.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.ports.iter().map(|p| p.fd.as_fd())
    }
}

/// Counters the kernel keeps for a worker's sockets (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames the kernel dropped: no room on the RX ring, or no buffer on the fill ring.
    pub rx_dropped: u64,
    /// Descriptors the kernel refused.
    pub invalid: u64,
}

/// The sending halves of a worker's sockets (external first) and the free send frames.
#[derive(Debug)]
pub struct XdpTx {
    area: TxArea,
    ports: Vec<TxHalf>,
    free: Vec<u64>,
    /// The send frame the engine is writing into, until a verdict sends it.
    current: Option<u64>,
    /// Frames pushed on each port's TX ring since its last flush.
    pushed: [u32; 2],
}

/// Why a frame was not put on a TX ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotQueued {
    /// The TX ring is full.
    RingFull,
    /// No buffer was taken, or the length does not fit one.
    NoFrame,
}

impl XdpTx {
    pub fn new(area: TxArea, ports: Vec<TxHalf>, frames: impl Iterator<Item = u64>) -> XdpTx {
        XdpTx {
            area,
            ports,
            free: frames.collect(),
            current: None,
            pushed: [0; 2],
        }
    }

    fn port(&self, egress: Egress) -> usize {
        match egress {
            Egress::Provider if self.ports.len() > 1 => 1,
            _ => 0,
        }
    }

    /// Takes back the send frames the kernel has finished with.
    fn reclaim(&mut self) {
        for p in &mut self.ports {
            let mut any = false;
            while let Some(addr) = p.completion.pop_addr() {
                self.free.push(chunk_of(addr));
                any = true;
            }
            if any {
                p.completion.release();
            }
        }
    }

    /// A send frame for the engine's next output (empty when every frame is in
    /// flight: the engine then refuses the frame, and it is counted as a drop).
    pub fn buffer(&mut self) -> &mut [u8] {
        if self.current.is_none() {
            if self.free.is_empty() {
                self.reclaim();
            }
            self.current = self.free.pop();
        }
        match self.current {
            Some(addr) => self
                .area
                .frame_mut(addr, FRAME_SIZE as usize)
                .unwrap_or(&mut []),
            None => &mut [],
        }
    }

    /// Puts the first `len` bytes of the frame [`XdpTx::buffer`] gave on the TX ring of
    /// `egress`'s port; it goes out at the next flush.
    pub fn commit(&mut self, egress: Egress, len: usize) -> Result<(), NotQueued> {
        let addr = self.current.take().ok_or(NotQueued::NoFrame)?;
        let len = match u32::try_from(len) {
            Ok(l) if l <= FRAME_SIZE => l,
            _ => {
                self.free.push(addr);
                return Err(NotQueued::NoFrame);
            }
        };
        let i = self.port(egress);
        let Some(p) = self.ports.get_mut(i) else {
            self.free.push(addr);
            return Err(NotQueued::NoFrame);
        };
        if !p.tx.push_desc(addr, len) {
            self.free.push(addr);
            return Err(NotQueued::RingFull);
        }
        self.pushed[i] += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.pushed.iter().all(|&n| n == 0)
    }

    /// Publishes the queued frames and asks the kernel to send them (when it wants to
    /// be asked: always in copy mode).
    pub fn flush(&mut self) -> Flushed {
        let mut out = Flushed::default();
        for (i, p) in self.ports.iter_mut().enumerate() {
            let Some(pushed) = self.pushed.get_mut(i) else {
                continue;
            };
            if *pushed == 0 {
                continue;
            }
            p.tx.submit();
            out.sent += u64::from(*pushed);
            *pushed = 0;
            if !p.tx.needs_wakeup() {
                continue;
            }
            for _ in 0..MAX_KICKS {
                match sys::kick_tx(p.fd.as_fd()) {
                    Ok(()) => {}
                    Err(e) if is_busy(&e) => {}
                    Err(_) => {
                        out.errors += 1;
                        break;
                    }
                }
                if p.tx.outstanding() == 0 {
                    break;
                }
            }
        }
        self.reclaim();
        out
    }

    /// Kernel counters over the worker's sockets.
    pub fn statistics(&self) -> XdpStats {
        let mut s = XdpStats::default();
        for p in &self.ports {
            if let Ok(k) = sys::xdp_statistics(p.fd.as_fd()) {
                s.rx_dropped += k.rx_dropped + k.rx_ring_full;
                s.invalid += k.rx_invalid_descs + k.tx_invalid_descs;
            }
        }
        s
    }
}

fn is_busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_frames_are_told_by_their_bytes() {
        let mut f = vec![0u8; 60];
        assert!(!meta_of(&f).vlan_tagged);
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(meta_of(&f).vlan_tagged);
        f[12..14].copy_from_slice(&[0x88, 0xa8]);
        assert!(meta_of(&f).vlan_tagged);
        assert!(
            !meta_of(&f[..13]).vlan_tagged,
            "a runt is the engine's to drop"
        );
    }

    #[test]
    fn chunks_are_frame_aligned() {
        assert_eq!(chunk_of(4096 * 3 + 256), 4096 * 3);
        assert_eq!(chunk_of(0), 0);
    }
}
