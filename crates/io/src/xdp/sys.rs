//! The AF_XDP backend's `unsafe`, kept apart from the rest of it as `crate::sys` is
//! for AF_PACKET: the bpf(2) commands the loader needs (map create/update/delete,
//! program load, BPF link, test run), the AF_XDP socket options, and the shared
//! mappings (UMEM, the four rings) with the only code that reads or writes them
//! through raw pointers.
//!
//! Each wrapper passes Rust-owned buffers with their true lengths and turns a failed
//! call into `io::Error` from errno. The attribute structs below carry only the leading
//! fields of `union bpf_attr` that a command reads: the kernel zero-fills the rest of
//! its copy when told a shorter size. Layouts and constants are those of the uapi
//! headers `linux/bpf.h` and `linux/if_xdp.h`.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// enum bpf_cmd.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

/// enum bpf_prog_type / enum bpf_attach_type.
const BPF_PROG_TYPE_XDP: u32 = 6;
pub const BPF_XDP: u32 = 37;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

/// Calls bpf(2) with one of the attribute structs above.
///
/// # Safety
/// `attr` must be the attribute struct of `cmd`, and every address it carries must
/// point at memory valid for what `cmd` does with it (read or written) for the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: passes the caller's guarantees on; the size is the struct's own.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    })
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: `fd` was just returned by a successful call that creates a descriptor,
    // so it is open and has no other owner; OwnedFd closes it exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (d, s) in out.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    out
}

/// A BPF map, with the key and value sizes it was made with: every access is checked
/// against them, since the kernel reads exactly that many bytes behind each pointer.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    pub fn create(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        name: &str,
    ) -> io::Result<Map> {
        let mut attr = MapCreateAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_name: name16(name),
            ..MapCreateAttr::default()
        };
        // SAFETY: a map-create attribute struct with no addresses in it.
        let fd = owned(unsafe { bpf(BPF_MAP_CREATE, &mut attr) }?)?;
        Ok(Map {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn sizes(&self, key: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        if key.len() != self.key_size || value.is_some_and(|v| v.len() != self.value_size) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    fn elem(&self, key: &[u8], value: u64, flags: u64) -> MapElemAttr {
        MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value,
            flags,
        }
    }

    /// Inserts or replaces `key` (BPF_ANY).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.sizes(key, Some(value))?;
        let mut attr = self.elem(key, value.as_ptr() as u64, 0);
        // SAFETY: key and value point at buffers of exactly the map's key and value
        // sizes (checked above), borrowed for the call; the kernel only reads them.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }?;
        Ok(())
    }

    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        self.sizes(key, None)?;
        let mut attr = self.elem(key, 0, 0);
        // SAFETY: key points at a buffer of exactly the map's key size, borrowed for
        // the call; the kernel only reads it.
        unsafe { bpf(BPF_MAP_DELETE_ELEM, &mut attr) }?;
        Ok(())
    }

    /// Whether `key` is in the map; its value is written into `value`.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.sizes(key, Some(value))?;
        let mut attr = self.elem(key, value.as_mut_ptr() as u64, 0);
        // SAFETY: key (read) and value (written) have exactly the map's sizes and are
        // borrowed for the call.
        match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key of a hash map (for reconciling it with a new set).
    pub fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut next = vec![0u8; self.key_size];
        let mut prev: Option<Vec<u8>> = None;
        loop {
            // A first call with a key that is not in the map returns the first key;
            // a null key pointer does the same.
            let key_ptr = prev.as_ref().map_or(0, |k| k.as_ptr() as u64);
            let mut attr = MapElemAttr {
                map_fd: self.fd.as_raw_fd() as u32,
                _pad: 0,
                key: key_ptr,
                value: next.as_mut_ptr() as u64,
                flags: 0,
            };
            // SAFETY: `key` is null or points at a key-sized buffer (read), `value` is
            // the key-sized `next` (written), both live across the call.
            match unsafe { bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) } {
                Ok(_) => {
                    keys.push(next.clone());
                    prev = Some(next.clone());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Loads an XDP program of raw 8-byte instructions. On a verifier refusal the
/// verifier's log (its last part) is appended to the error.
pub fn prog_load(insns: &[u64], name: &str) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: u32::try_from(insns.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        prog_name: name16(name),
        expected_attach_type: BPF_XDP,
        ..ProgLoadAttr::default()
    };
    // SAFETY: insns (insn_cnt 8-byte instructions) and the NUL-terminated license are
    // borrowed for the call and only read; no log buffer is passed.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => owned(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Again with the verifier's log, to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above, plus `log`, writable for log_size bytes, for the call.
            if let Ok(fd) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
                return owned(fd);
            }
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: String = text.lines().rev().take(8).collect::<Vec<_>>().join(" | ");
            Err(io::Error::new(e.kind(), format!("{e}; verifier: {tail}")))
        }
        Err(e) => Err(e),
    }
}

/// Attaches an XDP program to an interface through a BPF link (`flags`: the XDP mode);
/// the program stays attached as long as the returned descriptor is open, and the
/// kernel detaches it when the last holder exits, also on a crash.
pub fn link_create_xdp(prog: BorrowedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    // SAFETY: a link-create attribute struct with no addresses in it.
    owned(unsafe { bpf(BPF_LINK_CREATE, &mut attr) }?)
}

/// Runs an XDP program once on `frame` (BPF_PROG_TEST_RUN); its return value.
pub fn prog_test_run(prog: BorrowedFd, frame: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: u32::try_from(frame.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestRunAttr::default()
    };
    // SAFETY: data_in points at `frame` (data_size_in bytes, only read) for the call;
    // no output buffer is passed (data_out null, size 0).
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}

/// RLIMIT_MEMLOCK's soft limit in bytes (None: unlimited).
pub fn memlock_limit() -> io::Result<Option<u64>> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid, writable rlimit for the call.
    check(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) }.into())?;
    Ok((r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur))
}

/// A non-blocking AF_XDP socket.
pub fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with constant arguments and no pointers.
    owned(unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) }.into())
}

fn setsockopt_raw<T>(fd: BorrowedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a plain repr(C) value borrowed for the call with its exact
    // size; the kernel only reads it.
    check(
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                name,
                (value as *const T).cast::<libc::c_void>(),
                size_of::<T>() as libc::socklen_t,
            )
        }
        .into(),
    )?;
    Ok(())
}

/// Sets the size of one of the socket's rings (XDP_RX_RING, XDP_TX_RING,
/// XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING); a power of two.
pub fn set_ring_size(fd: BorrowedFd, ring: libc::c_int, entries: u32) -> io::Result<()> {
    setsockopt_raw(fd, ring, &entries)
}

/// Registers `umem` as the socket's UMEM (XDP_UMEM_REG).
pub fn umem_reg(fd: BorrowedFd, umem: &UmemMap, chunk_size: u32) -> io::Result<()> {
    let reg = libc::xdp_umem_reg {
        addr: umem.base.as_ptr() as u64,
        len: umem.len as u64,
        chunk_size,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    // The kernel pins the pages behind addr..addr+len for as long as the UMEM lives;
    // the socket keeps a reference to the UMEM, and `Umem` keeps the mapping alive
    // at least as long as the sockets (they are dropped first, see socket.rs).
    setsockopt_raw(fd, libc::XDP_UMEM_REG, &reg)
}

fn getsockopt_raw<T>(fd: BorrowedFd, name: libc::c_int, value: &mut T) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` and `len` are writable for the call and `len` is the size of
    // `value`: the kernel writes at most that many bytes.
    check(
        unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                name,
                (value as *mut T).cast::<libc::c_void>(),
                &mut len,
            )
        }
        .into(),
    )?;
    Ok(len as usize)
}

/// Where each ring's producer, consumer, flags and descriptors lie in its mapping.
pub fn mmap_offsets(fd: BorrowedFd) -> io::Result<libc::xdp_mmap_offsets> {
    let zero = libc::xdp_ring_offset {
        producer: 0,
        consumer: 0,
        desc: 0,
        flags: 0,
    };
    let mut off = libc::xdp_mmap_offsets {
        rx: zero,
        tx: zero,
        fr: zero,
        cr: zero,
    };
    let len = getsockopt_raw(fd, libc::XDP_MMAP_OFFSETS, &mut off)?;
    if len != size_of::<libc::xdp_mmap_offsets>() {
        // Kernels before 5.4 lack the flags word (need_wakeup): not supported.
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(off)
}

/// XDP_OPTIONS: whether the socket is bound in zero-copy mode.
pub fn is_zero_copy(fd: BorrowedFd) -> io::Result<bool> {
    let mut opts = libc::xdp_options { flags: 0 };
    getsockopt_raw(fd, libc::XDP_OPTIONS, &mut opts)?;
    Ok(opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// XDP_STATISTICS: (frames dropped for lack of room or fill, invalid descriptors).
pub fn xdp_statistics(fd: BorrowedFd) -> io::Result<libc::xdp_statistics> {
    let mut s = libc::xdp_statistics {
        rx_dropped: 0,
        rx_invalid_descs: 0,
        tx_invalid_descs: 0,
        rx_ring_full: 0,
        rx_fill_ring_empty_descs: 0,
        tx_ring_empty_descs: 0,
    };
    getsockopt_raw(fd, libc::XDP_STATISTICS, &mut s)?;
    Ok(s)
}

/// Binds the socket to (ifindex, queue). `shared`: the socket whose UMEM it uses.
pub fn bind_xsk(
    fd: BorrowedFd,
    ifindex: u32,
    queue: u32,
    flags: u16,
    shared: Option<BorrowedFd>,
) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: shared.map_or(0, |s| s.as_raw_fd() as u32),
    };
    // SAFETY: `addr` is a fully initialised sockaddr_xdp living across the call and the
    // length passed is its exact size; the kernel only reads it.
    check(
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_xdp).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        }
        .into(),
    )?;
    Ok(())
}

/// Asks the kernel to send what the TX ring holds (copy mode sends only from this
/// call; zero-copy drivers only when they flagged need_wakeup).
pub fn kick_tx(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer and no address.
    check(unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    } as libc::c_long)?;
    Ok(())
}

/// Anonymous, page-aligned memory registered as a UMEM. Shared between the RX and TX
/// halves of a worker's sockets, each of which only touches its own frames.
#[derive(Debug)]
pub struct UmemMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; access to its bytes goes through
// `RxArea`/`TxArea`, which hand out slices only of disjoint ranges (see there).
unsafe impl Send for UmemMap {}
// SAFETY: as for Send: shared references never give overlapping mutable access.
unsafe impl Sync for UmemMap {}

impl UmemMap {
    pub fn new(len: usize) -> io::Result<UmemMap> {
        // SAFETY: a fresh private anonymous mapping; the result is checked before use
        // and unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(UmemMap { base, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Splits the UMEM at `at` into the receive frames (below) and the send frames.
    pub fn split(self, at: usize) -> (RxArea, TxArea) {
        let at = at.min(self.len);
        let map = Arc::new(self);
        (
            RxArea {
                map: map.clone(),
                end: at,
            },
            TxArea { map, start: at },
        )
    }
}

impl Drop for UmemMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped; every area holding it is
        // gone (they hold the Arc), so no slice of it is alive.
        unsafe {
            libc::munmap(self.base.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}

/// The UMEM's receive frames, `0..end`: the kernel writes a frame only while it is on
/// a fill ring, and user space reads it only after the RX ring handed it over.
#[derive(Debug)]
pub struct RxArea {
    map: Arc<UmemMap>,
    end: usize,
}

impl RxArea {
    /// The bytes of a received frame at UMEM address `addr` (as the RX descriptor
    /// gives it), or None if they do not lie inside the receive area.
    pub fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.end {
            return None;
        }
        // SAFETY: start..end lies inside the mapping, which lives as long as `self`.
        // The frame came off the RX ring, so the kernel is done writing it (the RX
        // ring's acquire load of the producer orders these reads after its writes)
        // and gets it back only through a fill ring after this borrow ends.
        Some(unsafe { std::slice::from_raw_parts(self.map.base.as_ptr().add(start), end - start) })
    }
}

/// The UMEM's send frames, `start..`: written by user space while free, read by the
/// kernel from the TX ring until the completion ring returns them.
#[derive(Debug)]
pub struct TxArea {
    map: Arc<UmemMap>,
    start: usize,
}

impl TxArea {
    pub fn start(&self) -> usize {
        self.start
    }

    /// The `len` writable bytes of the free send frame at `addr`.
    pub fn frame_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = start.checked_add(len)?;
        if start < self.start || end > self.map.len {
            return None;
        }
        // SAFETY: start..end lies inside the send area of the mapping, which lives as
        // long as `self`; `&mut self` makes this the only slice of the send area, and
        // the caller hands out only frames it owns (not on a TX ring), so the kernel
        // does not read them meanwhile. The receive area is never part of it.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.map.base.as_ptr().add(start), end - start)
        })
    }
}

/// One of a socket's four rings, mapped: a producer and a consumer index, a flags
/// word, and `entries` descriptors of `desc_size` bytes (8: an address, for the fill
/// and completion rings; 16: struct xdp_desc, for RX and TX).
#[derive(Debug)]
pub struct RingMap {
    base: NonNull<u8>,
    len: usize,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    entries: u32,
    desc_size: usize,
}

// SAFETY: the mapping is owned by this value alone and is not Sync, so one thread at a
// time uses it; the kernel side synchronises through the producer/consumer atomics.
unsafe impl Send for RingMap {}

impl RingMap {
    /// Maps the ring at page offset `pgoff` of the socket (XDP_PGOFF_RX_RING, ...).
    pub fn map(
        fd: BorrowedFd,
        pgoff: u64,
        off: &libc::xdp_ring_offset,
        entries: u32,
        desc_size: usize,
    ) -> io::Result<RingMap> {
        let len = (off.desc as usize).saturating_add((entries as usize).saturating_mul(desc_size));
        // SAFETY: maps the ring the kernel allocated for this socket at its documented
        // page offset, with the length the kernel's offsets give; checked before use
        // and unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let ring = RingMap {
            base,
            len,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            desc: off.desc as usize,
            entries,
            desc_size,
        };
        let words = [ring.producer, ring.consumer, ring.flags];
        if entries == 0
            || !entries.is_power_of_two()
            || words
                .iter()
                .any(|&w| !w.is_multiple_of(4) || w + 4 > ring.desc)
            || !ring.desc.is_multiple_of(8)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected AF_XDP ring layout",
            ));
        }
        Ok(ring)
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` is one of the offsets checked in `map` (4-aligned, inside the
        // mapping before the descriptors); the mapping lives as long as `self`, and the
        // kernel accesses these words atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(at).cast::<u32>()) }
    }

    pub fn producer(&self) -> &AtomicU32 {
        self.word(self.producer)
    }

    pub fn consumer(&self) -> &AtomicU32 {
        self.word(self.consumer)
    }

    pub fn flags(&self) -> &AtomicU32 {
        self.word(self.flags)
    }

    /// Pointer to descriptor `index` (taken modulo the ring size).
    fn slot(&self, index: u32) -> *mut u8 {
        let i = (index & (self.entries - 1)) as usize;
        // SAFETY: i < entries, so the slot lies inside the mapping (len covers
        // desc + entries * desc_size).
        unsafe { self.base.as_ptr().add(self.desc + i * self.desc_size) }
    }

    /// An address descriptor (fill and completion rings).
    pub fn read_addr(&self, index: u32) -> u64 {
        debug_assert_eq!(self.desc_size, 8);
        // SAFETY: the slot is in bounds and 8-aligned (desc is 8-aligned, slots are 8
        // bytes); the caller reads only slots the producer index has published (its
        // acquire load orders this read after the kernel's write).
        unsafe { self.slot(index).cast::<u64>().read_volatile() }
    }

    pub fn write_addr(&mut self, index: u32, addr: u64) {
        debug_assert_eq!(self.desc_size, 8);
        // SAFETY: as in read_addr; the caller writes only slots it reserved (between
        // the consumer and the ring size), which the kernel does not read until the
        // producer index is released past them.
        unsafe { self.slot(index).cast::<u64>().write_volatile(addr) }
    }

    /// A frame descriptor (RX and TX rings): (address, length).
    pub fn read_desc(&self, index: u32) -> (u64, u32) {
        debug_assert_eq!(self.desc_size, 16);
        // SAFETY: as in read_addr, for a 16-byte struct xdp_desc (8-aligned).
        let d = unsafe { self.slot(index).cast::<libc::xdp_desc>().read_volatile() };
        (d.addr, d.len)
    }

    pub fn write_desc(&mut self, index: u32, addr: u64, len: u32) {
        debug_assert_eq!(self.desc_size, 16);
        let d = libc::xdp_desc {
            addr,
            len,
            options: 0,
        };
        // SAFETY: as in write_addr, for a 16-byte struct xdp_desc (8-aligned).
        unsafe { self.slot(index).cast::<libc::xdp_desc>().write_volatile(d) }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped; no borrow outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}
