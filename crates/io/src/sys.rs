//! One of the two modules of nvlb-io with `unsafe` (the other is `xdp::sys`, the AF_XDP
//! backend's bpf(2) calls and shared rings), so that all of the data plane's can be
//! reviewed in two files: thin, safe wrappers over the few Linux calls it needs
//! (AF_PACKET sockets and their mapped RX rings, sendmmsg, poll, eventfd, sigaction,
//! setns, an interface's index and flags). Elsewhere in crates/ and src/, `unsafe` is
//! only `kill(2)` where the lab signals processes in its own namespaces
//! (crates/tools/src/lab/) and `geteuid` in `nvlb lab`'s root check (src/cli/lab.rs);
//! nvlb-proto denies it altogether.
//!
//! Each wrapper passes Rust-owned buffers with their true lengths and turns a failed
//! call into `io::Error` from errno. Nothing here knows about frames, engines or policy,
//! and no wrapper may hand out a raw pointer or keep a buffer past the call.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_len(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// Takes ownership of a descriptor a successful syscall just returned.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(fd)?;
    // SAFETY: `fd` was just returned by a successful socket/eventfd call, so it is open
    // and no other owner exists; OwnedFd closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `c` is a NUL-terminated string shorter than IFNAMSIZ that outlives the
    // call; the function only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// A non-blocking AF_PACKET SOCK_RAW socket that receives nothing until bound
/// (protocol 0), so that no frame of another interface slips in before `bind_packet`.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with constant arguments and no pointers.
    owned(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
}

/// Binds a packet socket to one interface and starts reception of `protocol`
/// (host order, e.g. ETH_P_ALL).
pub fn bind_packet(fd: BorrowedFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    let addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: `addr` is a fully initialised sockaddr_ll living across the call and the
    // length passed is its exact size; the kernel only reads it.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// setsockopt with an int value.
pub fn set_int_option(
    fd: BorrowedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length passed is the size of a
    // c_int; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// PACKET_STATISTICS: (frames received, frames dropped) since the previous read; the
/// kernel resets both on every read.
pub fn packet_statistics(fd: BorrowedFd) -> io::Result<(u32, u32)> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid, writable and live across the call; `len`
    // tells the kernel how many bytes it may write into `stats`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast::<libc::c_void>(),
            &mut len,
        )
    })?;
    Ok((stats.tp_packets, stats.tp_drops))
}

/// What the kernel says about a received frame (PACKET_AUXDATA / a ring header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxStatus {
    /// tp_status: TP_STATUS_VLAN_VALID (a tag was stripped off the frame into metadata),
    /// TP_STATUS_CSUMNOTREADY (the checksum is partial, to be completed by hardware).
    pub status: u32,
}

/// Receives one frame into `buf` without blocking, with its PACKET_AUXDATA status
/// (zero when the option is off). Returns the frame's real length, which is larger
/// than `buf.len()` when the frame was cut (MSG_TRUNC).
pub fn recv(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, RxStatus)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast::<libc::c_void>(),
        iov_len: buf.len(),
    };
    // u64 elements: cmsghdr alignment.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header, filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast::<libc::c_void>();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which describes `buf`, exclusively borrowed) and at
    // `control`, all valid and writable for the call with their true lengths.
    let n = check_len(unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    })?;
    let mut rx = RxStatus::default();
    // SAFETY: `msg` was filled by a successful recvmsg; the CMSG macros only walk
    // within `msg_control[..msg_controllen]`, and the auxdata is copied out with an
    // unaligned read after checking that the message is long enough to hold it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let want = libc::CMSG_LEN(size_of::<libc::tpacket_auxdata>() as u32) as usize;
            if (*cmsg).cmsg_level == libc::SOL_PACKET
                && (*cmsg).cmsg_type == libc::PACKET_AUXDATA
                && (*cmsg).cmsg_len as usize >= want
            {
                let aux =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::tpacket_auxdata>());
                rx.status = aux.tp_status;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, rx))
}

/// Sends one frame on the interface the socket is bound to, without blocking.
pub fn send(fd: BorrowedFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most `frame.len()` bytes from `frame`, which is valid
    // for the call.
    check_len(unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr().cast::<libc::c_void>(),
            frame.len(),
            libc::MSG_DONTWAIT,
        )
    })
}

/// Most descriptors `poll_readable` takes at once (its set lives on the stack).
pub const MAX_POLL_FDS: usize = 64;

/// Waits until one of `fds` is readable or `timeout_ms` passed. Returns how many are
/// ready; an interrupting signal counts as zero ready. More than [`MAX_POLL_FDS`]
/// descriptors is refused (`InvalidInput`) rather than silently not watched.
pub fn poll_readable(fds: &[BorrowedFd], timeout_ms: i32) -> io::Result<usize> {
    let mut set = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_POLL_FDS];
    if fds.len() > set.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "more descriptors than poll_readable watches",
        ));
    }
    let n = fds.len();
    for (slot, fd) in set.iter_mut().zip(fds) {
        slot.fd = fd.as_raw_fd();
        slot.events = libc::POLLIN;
    }
    // SAFETY: `set` holds `n` initialised pollfd entries and is writable for the call;
    // every descriptor in it is borrowed, so open, for the call.
    let ret = unsafe { libc::poll(set.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    match check(ret) {
        Ok(ready) => Ok(ready as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// A non-blocking eventfd: a counter other threads write to wake a poller.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with constant arguments and no pointers.
    owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// Moves the calling thread (only it) into the network namespace `ns` refers to.
pub fn setns_net(ns: BorrowedFd) -> io::Result<()> {
    // SAFETY: a plain syscall on a borrowed, open descriptor; it changes only the
    // calling thread's network namespace.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    // Async-signal-safe: a single atomic store, no allocation, no lock.
    if signal == libc::SIGHUP {
        HANGUP.store(true, Ordering::SeqCst);
    } else {
        STOP.store(true, Ordering::SeqCst);
    }
}

/// Installs the one signal handler of the process for SIGINT and SIGTERM (stop) and
/// SIGHUP (reload): it sets the flags `stop_requested` and `take_hangup` read. No
/// SA_RESTART, so a blocked poll returns early.
pub fn install_stop_handler() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction is plain old data; all-zero is a valid empty value
        // (no flags, empty mask) that is filled in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `action.sa_mask` is a valid, writable sigset_t.
        check(unsafe { libc::sigemptyset(&mut action.sa_mask) })?;
        // SAFETY: `action` is fully initialised and read only during the call; the
        // handler it installs only performs an atomic store, which is async-signal-safe.
        check(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// A stop signal arrived (or `request_stop` was called).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Whether a SIGHUP arrived since the last call (which clears it).
pub fn take_hangup() -> bool {
    HANGUP.swap(false, Ordering::SeqCst)
}

/// Asks every worker to stop, as a signal would.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

const TPACKET_V3: libc::c_int = 2;
/// Offset of `block_status` in a TPACKET_V3 block descriptor (after `version` and
/// `offset_to_priv`).
const BLOCK_STATUS: usize = 8;

/// A TPACKET_V3 receive ring mapped into this process: `blocks` blocks of
/// `block_size` bytes that the kernel fills and hands over one block at a time.
#[derive(Debug)]
pub struct RxRingMap {
    base: std::ptr::NonNull<u8>,
    block_size: usize,
    blocks: usize,
}

// SAFETY: the mapping is owned by this value alone (no copies of `base` exist), so
// moving the value to another thread moves the ownership; it is not Sync, so only one
// thread touches it at a time.
unsafe impl Send for RxRingMap {}

impl RxRingMap {
    /// Switches the socket to TPACKET_V3, asks for the ring and maps it. Call before
    /// binding so that no frame takes the copying path first.
    pub fn setup(
        fd: BorrowedFd,
        block_size: u32,
        blocks: u32,
        frame_size: u32,
        retire_ms: u32,
    ) -> io::Result<RxRingMap> {
        set_int_option(fd, libc::SOL_PACKET, libc::PACKET_VERSION, TPACKET_V3)?;
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: blocks,
            tp_frame_size: frame_size,
            tp_frame_nr: (block_size / frame_size.max(1)).saturating_mul(blocks),
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        // SAFETY: `req` is fully initialised, lives across the call, and the length
        // passed is its exact size; the kernel only reads it.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&req as *const libc::tpacket_req3).cast::<libc::c_void>(),
                size_of::<libc::tpacket_req3>() as libc::socklen_t,
            )
        })?;
        let len = (block_size as usize).saturating_mul(blocks as usize);
        // SAFETY: maps the ring the kernel just allocated for this socket (offset 0,
        // its exact length); the result is checked before use and unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(RxRingMap {
            base,
            block_size: block_size as usize,
            blocks: blocks as usize,
        })
    }

    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The status word of block `i` (< blocks), shared with the kernel.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        debug_assert!(i < self.blocks);
        // SAFETY: `i < blocks`, so the word lies inside the mapping, which lives as long
        // as `self`; it is 4-byte aligned (blocks are page-aligned, offset 8); the
        // kernel only ever accesses it atomically-compatible (aligned u32 stores).
        unsafe {
            std::sync::atomic::AtomicU32::from_ptr(
                self.base
                    .as_ptr()
                    .add(i * self.block_size + BLOCK_STATUS)
                    .cast::<u32>(),
            )
        }
    }

    /// Block `i` if the kernel has handed it to user space, else None.
    pub fn user_block(&self, i: usize) -> Option<&[u8]> {
        if i >= self.blocks {
            return None;
        }
        if self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the block lies inside the mapping; the kernel does not write to a
        // block while its status says TP_STATUS_USER (the acquire load above orders
        // our reads after its writes), and it gets the block back only through
        // `release`, which takes `&mut self` and so ends this borrow first.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(i * self.block_size), self.block_size)
        })
    }

    /// Hands block `i` back to the kernel.
    pub fn release(&mut self, i: usize) {
        if i < self.blocks {
            self.status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        }
    }
}

impl Drop for RxRingMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `setup` mapped; no borrow of it can outlive
        // `self`.
        unsafe {
            libc::munmap(
                self.base.as_ptr().cast::<libc::c_void>(),
                self.block_size * self.blocks,
            );
        }
    }
}

/// Most frames [`send_batch`] hands to the kernel in one call (its headers live on the
/// stack).
pub const MAX_SEND_BATCH: usize = 64;

/// Sends up to [`MAX_SEND_BATCH`] whole frames with one sendmmsg call, without
/// blocking: the traffic generator's way to pay one syscall per batch instead of per
/// frame. Returns how many frames the kernel took (from the front); a full device
/// queue is `WouldBlock` when it took none.
pub fn send_batch(fd: BorrowedFd, frames: &[&[u8]]) -> io::Result<usize> {
    let n = frames.len().min(MAX_SEND_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SEND_BATCH];
    // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header (no address,
    // no control data), filled in below.
    let mut msgs: [libc::mmsghdr; MAX_SEND_BATCH] = unsafe { std::mem::zeroed() };
    for ((slot, msg), frame) in iov.iter_mut().zip(msgs.iter_mut()).zip(frames) {
        slot.iov_base = frame.as_ptr().cast_mut().cast::<libc::c_void>();
        slot.iov_len = frame.len();
        msg.msg_hdr.msg_iov = slot;
        msg.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` entries of `msgs` each point at one iovec of `iov`, which
    // describes a frame borrowed for the call with its true length; the kernel only
    // reads the frames and writes `msg_len` into `msgs`, which is writable and outlives
    // the call.
    let ret = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    check(ret).map(|sent| sent as usize)
}

/// The interface flags of `name` (IFF_UP, IFF_RUNNING, ...) in the calling thread's
/// network namespace, read with SIOCGIFFLAGS on a throwaway datagram socket. Lets the
/// traffic generator wait for a link to be operational: until the kernel's link watch
/// has run after `ip link set up`, a device silently drops what is sent on it.
pub fn if_flags(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: a plain syscall with constant arguments and no pointers.
    let sock =
        owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value (empty name, no flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid, writable ifreq whose name is NUL-terminated (the name
    // is shorter than IFNAMSIZ and the rest is zero); SIOCGIFFLAGS writes only the
    // flags member of it.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: after a successful SIOCGIFFLAGS the union holds `ifru_flags`.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(u32::from(flags as u16))
}
