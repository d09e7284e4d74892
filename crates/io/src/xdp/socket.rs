//! One AF_XDP socket bound to one (interface, queue), split into the half a worker
//! receives with (RX and fill rings) and the half it sends with (TX and completion
//! rings), so that a received frame can be read while an output frame is written.
//!
//! A worker's sockets (one per port) share one UMEM: the first registers it, the
//! others bind with XDP_SHARED_UMEM and bring their own fill and completion rings.
//! One UMEM per worker is what lets a frame received on one port leave on the other
//! without a copy once the engine rewrites in place (docs/architecture.md).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::queue::{Consumer, Producer};
use super::sys::{self, RingMap, UmemMap};

/// Ring sizes (entries; powers of two). The fill ring holds every receive frame of its
/// socket, so a burst of that many frames is absorbed while the worker is busy.
pub const RX_RING: u32 = 2048;
pub const TX_RING: u32 = 2048;

/// Whose UMEM a socket uses.
pub enum UmemOf<'a> {
    /// Registers this one (the worker's first socket).
    Own(&'a UmemMap, u32),
    /// Shares the UMEM of this socket (bound with XDP_SHARED_UMEM).
    Shared(BorrowedFd<'a>),
}

/// Which step failed, for the caller's error.
#[derive(Debug)]
pub struct Failed {
    pub op: &'static str,
    pub cause: io::Error,
}

fn step<T>(op: &'static str, r: io::Result<T>) -> Result<T, Failed> {
    r.map_err(|cause| Failed { op, cause })
}

/// The receiving half: frames arrive on `rx`, buffers go back on `fill`.
#[derive(Debug)]
pub struct RxHalf {
    pub rx: Consumer,
    pub fill: Producer,
    pub fd: Arc<OwnedFd>,
}

/// The sending half: frames go out on `tx`, come back on `completion`.
#[derive(Debug)]
pub struct TxHalf {
    pub tx: Producer,
    pub completion: Consumer,
    pub fd: Arc<OwnedFd>,
}

/// A bound socket's halves, and whether the driver runs it in zero-copy mode.
pub struct Opened {
    pub rx: RxHalf,
    pub tx: TxHalf,
    pub zero_copy: bool,
}

/// Opens, sets up and binds a socket on (`ifindex`, `queue`), its fill ring filled
/// with `fill` (UMEM addresses of free receive frames; at most [`RX_RING`]).
pub fn open(ifindex: u32, queue: u32, umem: UmemOf, fill: &[u64]) -> Result<Opened, Failed> {
    let fd = step("socket(AF_XDP)", sys::xsk_socket())?;
    let shared = match umem {
        UmemOf::Own(map, chunk) => {
            step("XDP_UMEM_REG", sys::umem_reg(fd.as_fd(), map, chunk))?;
            None
        }
        UmemOf::Shared(owner) => Some(owner),
    };
    let f = fd.as_fd();
    step(
        "XDP_UMEM_FILL_RING",
        sys::set_ring_size(f, libc::XDP_UMEM_FILL_RING, RX_RING),
    )?;
    step(
        "XDP_UMEM_COMPLETION_RING",
        sys::set_ring_size(f, libc::XDP_UMEM_COMPLETION_RING, TX_RING),
    )?;
    step(
        "XDP_RX_RING",
        sys::set_ring_size(f, libc::XDP_RX_RING, RX_RING),
    )?;
    step(
        "XDP_TX_RING",
        sys::set_ring_size(f, libc::XDP_TX_RING, TX_RING),
    )?;
    let off = step("XDP_MMAP_OFFSETS", sys::mmap_offsets(f))?;
    let map = |pgoff: u64, o: &libc::xdp_ring_offset, n: u32, size: usize| {
        step("mmap an AF_XDP ring", RingMap::map(f, pgoff, o, n, size))
    };
    let mut fill_ring = Producer::new(map(libc::XDP_UMEM_PGOFF_FILL_RING, &off.fr, RX_RING, 8)?);
    let completion = Consumer::new(map(
        libc::XDP_UMEM_PGOFF_COMPLETION_RING,
        &off.cr,
        TX_RING,
        8,
    )?);
    let rx = Consumer::new(map(libc::XDP_PGOFF_RX_RING as u64, &off.rx, RX_RING, 16)?);
    let tx = Producer::new(map(libc::XDP_PGOFF_TX_RING as u64, &off.tx, TX_RING, 16)?);
    for &addr in fill {
        if !fill_ring.push_addr(addr) {
            break;
        }
    }
    fill_ring.submit();
    match shared {
        // Zero-copy where the driver offers it, else copy mode: with neither mode flag
        // the kernel tries zero-copy first and falls back by itself.
        None => step(
            "bind",
            sys::bind_xsk(f, ifindex, queue, libc::XDP_USE_NEED_WAKEUP, None),
        )?,
        // A socket sharing a UMEM may not name a mode: it takes its owner's.
        Some(owner) => step(
            "bind (XDP_SHARED_UMEM)",
            sys::bind_xsk(f, ifindex, queue, libc::XDP_SHARED_UMEM, Some(owner)),
        )?,
    }
    let zero_copy = step("XDP_OPTIONS", sys::is_zero_copy(f))?;
    let fd = Arc::new(fd);
    Ok(Opened {
        rx: RxHalf {
            rx,
            fill: fill_ring,
            fd: fd.clone(),
        },
        tx: TxHalf { tx, completion, fd },
        zero_copy,
    })
}

/// Receive-queue count of `ifname` (its `queues/rx-N` folders in sysfs).
pub fn rx_queues(ifname: &str) -> io::Result<u32> {
    let mut n = 0;
    for e in std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))? {
        if e?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}
