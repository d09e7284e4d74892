//! The simulator's sockets and loop: one AF_PACKET socket on the PA interface and one
//! per VM veth, served by one thread until a stop is requested (SIGINT/SIGTERM through
//! `dataplane::shutdown`), with counters printed at the end.
//!
//! This is the only part of `hostsim` that does I/O. It never decides about a frame
//! (that is `decap`, `encap` and `proxy`), and a failed send is counted, never fatal.

use std::io;
use std::time::Duration;

use crate::dataplane::afpacket::{self, Meta, Recv, Socket};
use crate::dataplane::{Error, shutdown};

use super::drop::DropReason;
use super::view::HostView;
use super::{Answered, Verdict, decap, encap};

/// Largest frame received whole (veth MTUs stay below it); longer ones are counted.
const RX_LEN: usize = 65536;
/// Room for NVGRE around the largest frame.
const OUT_LEN: usize = RX_LEN + 128;
/// Frames taken from one socket before the next gets its turn.
const BATCH: usize = 64;
/// How long an idle loop sleeps before it looks at the stop flag again.
const IDLE_POLL: Duration = Duration::from_millis(100);

const REASONS: usize = DropReason::ALL.len();

/// What the simulator did, printed when it stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    pub rx_pa: u64,
    pub rx_vms: u64,
    /// NVGRE from the PA network, delivered to a VM.
    pub decapsulated: u64,
    /// From one VM of this host to another.
    pub vm_to_vm: u64,
    /// From VMs, sent as NVGRE.
    pub encapsulated: u64,
    pub arp_answered: u64,
    pub nd_answered: u64,
    /// Frag-needed / packet-too-big sent to VMs (path MTU discovery over the PA MTU).
    pub too_big_answered: u64,
    /// Partial TCP/UDP checksums (tx offload) completed before forwarding.
    pub checksums_completed: u64,
    pub drops: [u64; REASONS],
    /// Frames longer than the receive buffer: dropped.
    pub rx_truncated: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// PACKET_STATISTICS over all sockets.
    pub kernel_drops: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx_pa: 0,
            rx_vms: 0,
            decapsulated: 0,
            vm_to_vm: 0,
            encapsulated: 0,
            arp_answered: 0,
            nd_answered: 0,
            too_big_answered: 0,
            checksums_completed: 0,
            drops: [0; REASONS],
            rx_truncated: 0,
            rx_errors: 0,
            tx_errors: 0,
            kernel_drops: 0,
        }
    }
}

impl Counters {
    /// Counts one decision (sends are counted by the loop).
    pub fn record(&mut self, verdict: &Verdict) {
        match *verdict {
            Verdict::Deliver {
                local, completed, ..
            } => {
                if local {
                    self.vm_to_vm += 1;
                } else {
                    self.decapsulated += 1;
                }
                self.checksums_completed += u64::from(completed);
            }
            Verdict::Encapsulate { completed, .. } => {
                self.encapsulated += 1;
                self.checksums_completed += u64::from(completed);
            }
            Verdict::Answer {
                kind: Answered::Arp,
                ..
            } => self.arp_answered += 1,
            Verdict::Answer {
                kind: Answered::Nd, ..
            } => self.nd_answered += 1,
            Verdict::Answer {
                kind: Answered::TooBig,
                ..
            } => self.too_big_answered += 1,
            Verdict::Drop(r) => self.drops[r as usize] += 1,
        }
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// `name value` lines: totals, every non-zero drop reason as `drop.<name>`, then
    /// socket events as `io.<name>`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, v) in [
            ("rx_pa", self.rx_pa),
            ("rx_vms", self.rx_vms),
            ("decapsulated", self.decapsulated),
            ("vm_to_vm", self.vm_to_vm),
            ("encapsulated", self.encapsulated),
            ("arp_answered", self.arp_answered),
            ("nd_answered", self.nd_answered),
            ("too_big_answered", self.too_big_answered),
            ("checksums_completed", self.checksums_completed),
            ("dropped", self.dropped_total()),
        ] {
            s.push_str(&format!("{name} {v}\n"));
        }
        for reason in DropReason::ALL {
            let v = self.dropped(*reason);
            if v > 0 {
                s.push_str(&format!("drop.{} {v}\n", reason.name()));
            }
        }
        for (name, v) in [
            ("rx_truncated", self.rx_truncated),
            ("rx_errors", self.rx_errors),
            ("tx_errors", self.tx_errors),
            ("kernel_drops", self.kernel_drops),
        ] {
            s.push_str(&format!("io.{name} {v}\n"));
        }
        s
    }
}

/// The open sockets: the PA interface's and one per VM, in `view.vms()` order.
pub struct Sockets {
    pa: Socket,
    vms: Vec<Socket>,
}

impl Sockets {
    /// Opens every socket, so that a missing interface or privilege fails before the
    /// simulator says it is ready.
    pub fn open(view: &HostView, pa: &str) -> Result<Sockets, Error> {
        let pa = Socket::open(pa, None)?;
        let vms = view
            .vms()
            .iter()
            .map(|vm| Socket::open(&vm.ifname, None))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sockets { pa, vms })
    }
}

/// Where a frame came from.
#[derive(Clone, Copy)]
enum Source {
    Pa,
    Vm(usize),
}

/// Serves frames until a stop is requested; the counters at that moment.
pub fn run(view: &HostView, sockets: &Sockets) -> Counters {
    run_published(view, sockets, None)
}

/// [`run`], copying the counters into `metrics` between batches every
/// [`PUBLISH_EVERY`](crate::metrics::publish::PUBLISH_EVERY) for `nvlb host --metrics`.
pub fn run_published(
    view: &HostView,
    sockets: &Sockets,
    metrics: Option<&crate::metrics::HostMetrics>,
) -> Counters {
    let every = Duration::from_nanos(crate::metrics::publish::PUBLISH_EVERY);
    let mut next_publish = std::time::Instant::now();
    let mut state = Loop {
        view,
        sockets,
        rx: vec![0u8; RX_LEN],
        out: vec![0u8; OUT_LEN],
        ident: 0,
        counters: Counters::default(),
    };
    let all: Vec<&Socket> = std::iter::once(&sockets.pa)
        .chain(sockets.vms.iter())
        .collect();
    while !shutdown::requested() {
        let mut moved = state.drain(Source::Pa);
        for i in 0..sockets.vms.len() {
            moved += state.drain(Source::Vm(i));
        }
        if moved == 0 && afpacket::wait_any(&all, IDLE_POLL).is_err() {
            // Not expected (the set was sized when the view was built): do not spin.
            state.counters.rx_errors += 1;
            std::thread::sleep(IDLE_POLL);
        }
        if let Some(m) = metrics
            && std::time::Instant::now() >= next_publish
        {
            m.publish(&state.counters);
            next_publish = std::time::Instant::now() + every;
        }
    }
    for sock in &all {
        if let Ok(s) = sock.statistics() {
            state.counters.kernel_drops += s.drops;
        }
    }
    state.counters
}

struct Loop<'a> {
    view: &'a HostView,
    sockets: &'a Sockets,
    rx: Vec<u8>,
    out: Vec<u8>,
    ident: u16,
    counters: Counters,
}

impl<'a> Loop<'a> {
    fn socket(&self, source: Source) -> Option<&'a Socket> {
        match source {
            Source::Pa => Some(&self.sockets.pa),
            Source::Vm(i) => self.sockets.vms.get(i),
        }
    }

    /// Handles up to `BATCH` frames waiting on one socket; how many there were.
    fn drain(&mut self, source: Source) -> usize {
        let Some(sock) = self.socket(source) else {
            return 0;
        };
        let mut n = 0;
        while n < BATCH {
            match sock.recv(&mut self.rx) {
                Ok(Recv::Frame(len, meta)) => {
                    n += 1;
                    self.handle(source, len, meta);
                }
                Ok(Recv::Truncated(_)) => {
                    n += 1;
                    self.counters.rx_truncated += 1;
                }
                Ok(Recv::Empty) => break,
                Err(_) => {
                    self.counters.rx_errors += 1;
                    break;
                }
            }
        }
        n
    }

    fn handle(&mut self, source: Source, len: usize, meta: Meta) {
        let Some(frame) = self.rx.get_mut(..len) else {
            self.counters.rx_truncated += 1;
            return;
        };
        let verdict = match source {
            Source::Pa => {
                self.counters.rx_pa += 1;
                decap::from_pa(self.view, frame, meta.vlan_tagged, &mut self.out)
            }
            Source::Vm(i) => {
                self.counters.rx_vms += 1;
                self.ident = self.ident.wrapping_add(1);
                encap::from_vm(self.view, i, frame, meta, self.ident, &mut self.out)
            }
        };
        self.counters.record(&verdict);
        let sent = match verdict {
            Verdict::Deliver { vm, start, len, .. } => {
                match (self.sockets.vms.get(vm), start.checked_add(len)) {
                    (Some(sock), Some(end)) => send(sock, self.rx.get(start..end)),
                    _ => Err(io::ErrorKind::InvalidInput.into()),
                }
            }
            Verdict::Encapsulate { len, .. } => send(&self.sockets.pa, self.out.get(..len)),
            Verdict::Answer { len, .. } => match self.socket(source) {
                Some(sock) => send(sock, self.out.get(..len)),
                None => Err(io::ErrorKind::InvalidInput.into()),
            },
            Verdict::Drop(_) => Ok(()),
        };
        if sent.is_err() {
            self.counters.tx_errors += 1;
        }
    }
}

fn send(sock: &Socket, frame: Option<&[u8]>) -> io::Result<()> {
    match frame {
        Some(f) => sock.send(f),
        None => Err(io::ErrorKind::InvalidInput.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_record_and_render_every_kind() {
        let mut c = Counters::default();
        for v in [
            Verdict::Deliver {
                vm: 0,
                start: 0,
                len: 60,
                local: false,
                completed: false,
            },
            Verdict::Deliver {
                vm: 1,
                start: 0,
                len: 60,
                local: true,
                completed: true,
            },
            Verdict::Encapsulate {
                len: 100,
                completed: true,
            },
            Verdict::Answer {
                len: 42,
                kind: Answered::Arp,
            },
            Verdict::Answer {
                len: 86,
                kind: Answered::Nd,
            },
            Verdict::Answer {
                len: 590,
                kind: Answered::TooBig,
            },
            Verdict::Drop(DropReason::UnknownPa),
            Verdict::Drop(DropReason::UnknownVm),
            Verdict::Drop(DropReason::UnknownVm),
        ] {
            c.record(&v);
        }
        let text = c.render();
        for line in [
            "decapsulated 1\n",
            "vm_to_vm 1\n",
            "encapsulated 1\n",
            "arp_answered 1\n",
            "nd_answered 1\n",
            "too_big_answered 1\n",
            "checksums_completed 2\n",
            "dropped 3\n",
            "drop.unknown_pa 1\n",
            "drop.unknown_vm 2\n",
            "io.tx_errors 0\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(
            !text.contains("drop.spoofed_source"),
            "zero reasons are left out"
        );
    }
}
