//! The data plane: frames from real interfaces through the engine and back out.
//!
//! `start` opens every worker's sockets first (so a missing interface or privilege
//! fails before anything runs), then starts one OS thread per worker; `Running::wait`
//! joins them once a stop was requested (SIGINT/SIGTERM via `shutdown`) and sums their
//! counters. Workers receive per frame from their sockets (`Backend::Socket`) or a
//! block at a time from TPACKET_V3 rings (`Backend::Ring`); both send on the socket.
//! With `Backend::Xdp` (module `xdp`), nvlb's own XDP program passes each port's
//! LB traffic to AF_XDP sockets, one per (port, queue) and one worker per queue, and
//! leaves the rest to the kernel. The data plane owns sockets and threads and never
//! decides about a packet: that is the engine's job. All `unsafe` code lives in `sys`
//! and, for the AF_XDP backend's bpf(2) calls and shared rings, in `xdp::sys`.

pub mod afpacket;
pub mod cell;
pub mod error;
pub mod handoff;
pub mod netns;
pub mod publish;
pub mod ring;
mod sys;
pub mod txbatch;
pub mod worker;
pub mod xdp;

use std::sync::Arc;

// The packet logic, under the names the modules here were written with.
use nvlb_proto::{engine, flow, policy};

pub use cell::PolicyCell;
pub use publish::{Publisher, WorkerSlot, WorkerStats};
use std::thread::JoinHandle;

use crate::engine::Engine;

pub use error::Error;
pub use worker::{Clock, IoCounters, Report};

use afpacket::Socket;
use ring::Ring;
use worker::{Ports, Worker};

/// Most workers one LB runs (fanout groups and steering use 16-bit worker ids; more
/// threads than this would only contend on these machines).
pub const MAX_WORKERS: usize = 64;
/// Frames an inbox holds before handoffs to it are dropped.
pub const HANDOFF_DEPTH: usize = 4096;

/// Frames a control-plane thread takes from the workers (`Verdict::Local`: health
/// probe replies): a bounded queue; workers never wait on it and count what it refuses.
pub type LocalSender = std::sync::mpsc::SyncSender<Vec<u8>>;
pub type LocalReceiver = std::sync::mpsc::Receiver<Vec<u8>>;
/// Frames the local queue holds before workers drop them (`io.local_queue_full`).
pub const LOCAL_DEPTH: usize = 1024;

/// The queue from the workers to the LB's own control plane.
pub fn local_queue() -> (LocalSender, LocalReceiver) {
    std::sync::mpsc::sync_channel(LOCAL_DEPTH)
}

/// How workers receive frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// One recvmsg per frame: simple, portable, the baseline.
    #[default]
    Socket,
    /// A TPACKET_V3 receive ring per socket, read a block at a time.
    Ring,
    /// nvlb's XDP program on each port and an AF_XDP socket per (port, queue), one
    /// worker per queue; the host keeps what the LB does not own (`xdp`).
    Xdp,
}

impl Backend {
    /// The name `nvlb run --backend` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Socket => "socket",
            Backend::Ring => "ring",
            Backend::Xdp => "xdp",
        }
    }
}

/// Where and how to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub backend: Backend,
    /// The Internet-side interface.
    pub external: String,
    /// The PA-network interface (may equal `external`).
    pub provider: String,
    pub workers: usize,
}

/// Running workers.
pub struct Running {
    handles: Vec<JoinHandle<Report>>,
    /// The XDP programs' links and maps (xdp backend): dropped after the workers.
    xdp: Option<xdp::Setup>,
}

/// Stop requests: the process-wide flag workers poll between batches.
pub mod shutdown {
    use super::{Error, sys};

    /// Makes SIGINT and SIGTERM request a stop instead of killing the process.
    pub fn install() -> Result<(), Error> {
        sys::install_stop_handler().map_err(|cause| Error::Setup {
            op: "sigaction",
            cause,
        })
    }

    /// Asks all workers to stop, as a signal would.
    pub fn request() {
        sys::request_stop()
    }

    pub fn requested() -> bool {
        sys::stop_requested()
    }

    /// A SIGHUP (reload request) arrived since the last call.
    pub fn take_hangup() -> bool {
        sys::take_hangup()
    }
}

/// Sets a stop request if a worker thread unwinds, so that the others do not run on
/// with a missing shard.
struct StopOnPanic;

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            sys::request_stop();
        }
    }
}

fn open_port(
    ifname: &str,
    group: Option<u16>,
    backend: Backend,
    rings: &mut Vec<Ring>,
) -> Result<Socket, Error> {
    match backend {
        Backend::Socket => Socket::open(ifname, group),
        // The xdp backend opens no AF_PACKET socket (`xdp::open`); never reached.
        Backend::Ring | Backend::Xdp => {
            let (sock, ring) = Ring::open(ifname, group)?;
            rings.push(ring);
            Ok(sock)
        }
    }
}

/// One worker's sockets, and its receive rings (external first) with the ring backend.
fn open_ports(opts: &Options, fanout: bool) -> Result<(Ports, Vec<Ring>), Error> {
    let group = |ifname: &str| -> Result<Option<u16>, Error> {
        if !fanout {
            return Ok(None);
        }
        let index = sys::if_index(ifname).map_err(|_| Error::NoSuchInterface {
            ifname: ifname.to_string(),
        })?;
        Ok(Some(afpacket::fanout_group(index)))
    };
    let mut rings = Vec::new();
    let external = open_port(
        &opts.external,
        group(&opts.external)?,
        opts.backend,
        &mut rings,
    )?;
    let provider = if opts.provider == opts.external {
        None
    } else {
        let g = group(&opts.provider)?;
        Some(open_port(&opts.provider, g, opts.backend, &mut rings)?)
    };
    Ok((Ports { external, provider }, rings))
}

/// Opens all sockets, then starts the workers. Workers follow `cell`: a snapshot
/// published there is adopted by each between two batches.
pub fn start(cell: Arc<PolicyCell>, opts: &Options) -> Result<Running, Error> {
    start_with(cell, opts, None, |_| None)
}

/// [`start`], with the frames for the LB's own control plane sent to `local`, and
/// worker `i` publishing its counters through `publisher(i)` when that gives one (the
/// `/metrics` endpoint's slots; the metrics live in the control plane's crate, which
/// depends on this one, not the other way round).
pub fn start_with(
    cell: Arc<PolicyCell>,
    opts: &Options,
    local: Option<LocalSender>,
    mut publisher: impl FnMut(usize) -> Option<Publisher>,
) -> Result<Running, Error> {
    if opts.workers == 0 || opts.workers > MAX_WORKERS {
        return Err(Error::Workers {
            got: opts.workers,
            max: MAX_WORKERS,
        });
    }
    let n = opts.workers;
    let mut setup = None;
    let mut ios = Vec::with_capacity(n);
    if opts.backend == Backend::Xdp {
        let mut s = xdp::open(opts, &cell)?;
        ios.extend(std::mem::take(&mut s.workers).into_iter().map(Io::Xdp));
        setup = Some(s);
    } else {
        for _ in 0..n {
            ios.push(Io::Packet(open_ports(opts, n > 1)?));
        }
    }
    let (inboxes, outboxes) = handoff::mesh(n, HANDOFF_DEPTH)?;
    let clock = Clock::new();
    let mut handles = Vec::with_capacity(n);
    for (i, ((io, inbox), outboxes)) in ios.into_iter().zip(inboxes).zip(outboxes).enumerate() {
        let mut engine = Engine::new(cell.load(), i as u16, n as u16);
        // The engine's shortcut for bound flows stays off in the running data plane
        // until a lab failure seen only with it (tests/lab_rules.rs, a connection timed
        // out in the suite) is understood; NVLB_ENGINE_SHORTCUT=1 turns it on to
        // investigate. The engine's tests, fuzz target and benches run it either way.
        engine.set_shortcut(std::env::var_os("NVLB_ENGINE_SHORTCUT").is_some_and(|v| v == "1"));
        let mut worker = match io {
            Io::Packet((ports, rings)) => {
                Worker::new(engine, ports, rings, inbox, outboxes, cell.clone())
            }
            Io::Xdp((rx, tx)) => Worker::new_xdp(engine, rx, tx, inbox, outboxes, cell.clone()),
        };
        if let Some(tx) = &local {
            worker = worker.with_local(tx.clone());
        }
        if let Some(p) = publisher(i) {
            worker = worker.with_publisher(p);
        }
        let handle = std::thread::Builder::new()
            .name(format!("nvlb-worker-{i}"))
            .spawn(move || {
                let _guard = StopOnPanic;
                worker.run(clock)
            })
            .map_err(|cause| Error::Setup {
                op: "spawn worker thread",
                cause,
            });
        match handle {
            Ok(h) => handles.push(h),
            Err(e) => {
                sys::request_stop();
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        }
    }
    Ok(Running {
        handles,
        xdp: setup,
    })
}

/// One worker's I/O before it starts.
enum Io {
    Packet((Ports, Vec<Ring>)),
    Xdp((xdp::io::XdpRx, xdp::io::XdpTx)),
}

impl Running {
    /// What setup found worth a warning (xdp backend: generic mode, unused queues).
    pub fn warnings(&self) -> &[String] {
        self.xdp.as_ref().map_or(&[], |s| &s.warnings)
    }

    /// How the ports run, when that depends on the driver (xdp backend).
    pub fn modes(&self) -> Option<&str> {
        self.xdp.as_ref().map(|s| s.modes.as_str())
    }

    /// Waits for every worker to stop; the sum of their reports, and how many panicked.
    pub fn wait(mut self) -> (Report, usize) {
        let mut total = Report::default();
        let mut panicked = 0;
        for h in std::mem::take(&mut self.handles) {
            match h.join() {
                Ok(r) => total.add(&r),
                Err(_) => panicked += 1,
            }
        }
        (total, panicked)
    }
}
