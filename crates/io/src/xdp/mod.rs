//! The AF_XDP backend (`--backend xdp`): nvlb's own XDP program on each data port
//! passes it only what it owns (its VIPs, PAs, NVGRE to it, ARP/ND for its addresses)
//! and leaves everything else to the kernel, so the host keeps its own addresses on
//! the same ports; one AF_XDP socket per (port, queue), one worker per queue.
//!
//! Modules: `asm` encodes BPF instructions, `program` is the filter and its BPF link,
//! `maps` the owned-address map and the XSKMAPs, `socket` one bound socket and its
//! rings, `queue` the ring protocol, `io` a worker's receive and send paths; all
//! `unsafe` is in `sys`. [`open`] sets it all up in an order that never loses a frame
//! to the wrong side: maps filled, sockets bound and entered in the XSKMAPs, then the
//! program attached.

pub mod asm;
pub mod io;
pub mod maps;
pub mod program;
pub mod queue;
pub mod socket;
mod sys;

use std::sync::Arc;

use crate::error::Error;
use crate::{Options, PolicyCell};

use io::{FRAME_SIZE, XdpRx, XdpTx};
use maps::{OwnedAddrs, XskMap};
use program::{Attached, Mode, OnOwned, Program};
use socket::{RX_RING, TX_RING, UmemOf};

/// Send frames per worker, shared by its ports.
const TX_FRAMES: u32 = TX_RING;

/// What keeps the backend alive for the whole run: the programs' links (dropping them
/// detaches the programs), the maps, and what setup found worth a warning.
pub struct Setup {
    _links: Vec<Attached>,
    _programs: Vec<Program>,
    _xsks: Vec<XskMap>,
    pub owned: Arc<OwnedAddrs>,
    pub warnings: Vec<String>,
    /// How each port runs, e.g. `ext0 native XDP, copy mode`.
    pub modes: String,
    /// Per worker: its receive and send halves.
    pub workers: Vec<(XdpRx, XdpTx)>,
}

/// One data port as setup sees it.
struct Port<'a> {
    ifname: &'a str,
    ifindex: u32,
}

fn bpf_error(what: &'static str, cause: std::io::Error) -> Error {
    match cause.raw_os_error() {
        Some(libc::ENOSYS) => Error::NoBpf { op: what, cause },
        Some(libc::EPERM) => Error::NeedsCapability {
            op: what,
            caps: "CAP_BPF and CAP_NET_ADMIN",
        },
        _ => Error::Setup { op: what, cause },
    }
}

fn socket_error(ifname: &str, queue: u32, f: socket::Failed, umem_bytes: usize) -> Error {
    let errno = f.cause.raw_os_error();
    match (f.op, errno) {
        ("socket(AF_XDP)", Some(libc::EAFNOSUPPORT)) => Error::NoAfXdp,
        (_, Some(libc::EPERM)) | (_, Some(libc::EACCES)) => Error::NeedsCapability {
            op: f.op,
            caps: "CAP_NET_RAW (AF_XDP sockets)",
        },
        ("XDP_UMEM_REG", Some(libc::ENOBUFS)) | ("XDP_UMEM_REG", Some(libc::ENOMEM)) => {
            Error::Memlock {
                ifname: ifname.to_string(),
                bytes: umem_bytes as u64,
                limit: sys::memlock_limit().ok().flatten(),
            }
        }
        (_, Some(libc::ENODEV)) | (_, Some(libc::ENXIO)) => Error::NoSuchInterface {
            ifname: ifname.to_string(),
        },
        _ => Error::Xdp {
            ifname: ifname.to_string(),
            queue,
            op: f.op,
            cause: f.cause,
        },
    }
}

/// Sets up the backend for `opts.workers` workers: the owned-address map filled from
/// `cell`'s policy and kept in step with every snapshot published there from now on,
/// a socket on queue i of each port for worker i, and the filter attached to each port.
pub fn open(opts: &Options, cell: &PolicyCell) -> Result<Setup, Error> {
    let mut ports = Vec::new();
    for ifname in [opts.external.as_str(), opts.provider.as_str()] {
        if ports.iter().any(|p: &Port| p.ifname == ifname) {
            continue;
        }
        let ifindex = crate::sys::if_index(ifname).map_err(|_| Error::NoSuchInterface {
            ifname: ifname.to_string(),
        })?;
        ports.push(Port { ifname, ifindex });
    }
    let workers = opts.workers as u32;
    let mut warnings = Vec::new();
    for p in &ports {
        let queues = socket::rx_queues(p.ifname).map_err(|cause| Error::Interface {
            ifname: p.ifname.to_string(),
            op: "count receive queues (/sys/class/net/IF/queues)",
            cause,
        })?;
        if queues < workers {
            return Err(Error::Queues {
                ifname: p.ifname.to_string(),
                queues,
                workers,
            });
        }
        if queues > workers {
            warnings.push(format!(
                "interface {:?} has {queues} receive queues and nvlb runs {workers} worker(s): \
                 what arrives on queues {workers}..{queues} reaches the kernel, not nvlb \
                 (`ethtool -L {} combined {workers}`, or --workers {queues})",
                p.ifname, p.ifname
            ));
        }
    }

    let owned = Arc::new(OwnedAddrs::create().map_err(|e| bpf_error("create a BPF map", e))?);
    owned
        .sync(&maps::owned_addresses(&cell.load()))
        .map_err(|e| bpf_error("fill the owned-address map", e))?;
    // The API may publish while this runs: the hook catches up under the cell's lock.
    let hook_map = owned.clone();
    cell.set_before_publish(Box::new(move |policy| {
        if let Err(e) = hook_map.sync(&maps::owned_addresses(policy)) {
            eprintln!("nvlb: xdp: updating the owned-address map failed: {e}");
        }
    }));

    let mut xsks = Vec::new();
    let mut programs = Vec::new();
    for _ in &ports {
        let map = XskMap::create(workers).map_err(|e| bpf_error("create an XSKMAP", e))?;
        let prog = Program::load(&owned, OnOwned::Redirect(map.fd()))
            .map_err(|e| bpf_error("load the XDP program", e))?;
        xsks.push(map);
        programs.push(prog);
    }

    let rx_frames = RX_RING as usize * ports.len();
    let frames = rx_frames + TX_FRAMES as usize;
    let umem_bytes = frames * FRAME_SIZE as usize;
    let mut per_worker = Vec::new();
    let mut zero_copy = Vec::new();
    for w in 0..workers {
        let umem = sys::UmemMap::new(umem_bytes).map_err(|cause| Error::Setup {
            op: "map the UMEM",
            cause,
        })?;
        let addr = |i: usize| (i as u64) * u64::from(FRAME_SIZE);
        let mut rx_halves = Vec::new();
        let mut tx_halves = Vec::new();
        let mut owner: Option<Arc<std::os::fd::OwnedFd>> = None;
        for (pi, p) in ports.iter().enumerate() {
            let fill: Vec<u64> = (pi * RX_RING as usize..(pi + 1) * RX_RING as usize)
                .map(addr)
                .collect();
            let of = match &owner {
                None => UmemOf::Own(&umem, FRAME_SIZE),
                Some(fd) => UmemOf::Shared(std::os::fd::AsFd::as_fd(fd.as_ref())),
            };
            let opened = socket::open(p.ifindex, w, of, &fill)
                .map_err(|f| socket_error(p.ifname, w, f, umem_bytes))?;
            if w == 0 {
                zero_copy.push(opened.zero_copy);
            }
            if let Some(map) = xsks.get(pi) {
                map.set(w, std::os::fd::AsFd::as_fd(opened.rx.fd.as_ref()))
                    .map_err(|e| bpf_error("enter a socket in the XSKMAP", e))?;
            }
            owner.get_or_insert_with(|| opened.rx.fd.clone());
            rx_halves.push(opened.rx);
            tx_halves.push(opened.tx);
        }
        let (rx_area, tx_area) = umem.split(rx_frames * FRAME_SIZE as usize);
        let tx_start = tx_area.start();
        let tx = XdpTx::new(
            tx_area,
            tx_halves,
            (0..TX_FRAMES as usize).map(move |i| (tx_start + i * FRAME_SIZE as usize) as u64),
        );
        per_worker.push((XdpRx::new(rx_area, rx_halves), tx));
    }

    let mut links = Vec::new();
    for (p, prog) in ports.iter().zip(&programs) {
        let (attached, native_error) =
            Attached::attach(prog, p.ifindex).map_err(|cause| match cause.raw_os_error() {
                Some(libc::EPERM) => Error::NeedsCapability {
                    op: "attach the XDP program",
                    caps: "CAP_NET_ADMIN and CAP_BPF",
                },
                _ => Error::Xdp {
                    ifname: p.ifname.to_string(),
                    queue: 0,
                    op: "attach the XDP program (BPF_LINK_CREATE)",
                    cause,
                },
            })?;
        if attached.mode == Mode::Generic {
            warnings.push(format!(
                "interface {:?}: the driver has no native XDP ({}): running in generic (skb) \
                 mode, which costs an skb per frame",
                p.ifname,
                native_error.map_or_else(|| "refused".to_string(), |e| e.to_string())
            ));
        }
        links.push(attached);
    }
    let modes = ports
        .iter()
        .zip(&links)
        .zip(&zero_copy)
        .map(|((p, l), zc)| {
            format!(
                "{} {} XDP, {}",
                p.ifname,
                match l.mode {
                    Mode::Native => "native",
                    Mode::Generic => "generic",
                },
                if *zc { "zero-copy" } else { "copy mode" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Setup {
        _links: links,
        _programs: programs,
        _xsks: xsks,
        owned,
        warnings,
        modes,
        workers: per_worker,
    })
}
