//! The simulator's sockets and loop: one AF_PACKET socket on the PA interface and one
//! per VM veth, served by one thread until a stop is requested (SIGINT/SIGTERM through
//! `dataplane::shutdown`), with counters printed at the end.
//!
//! A SIGHUP asks the caller for a new view (between batches); when it gives one, the VM
//! sockets follow it: kept by interface name for VMs still here, closed for VMs that
//! moved away, and opened for VMs that moved here — at once if their interface exists,
//! else as soon as it appears (tried every `ATTACH_POLL` while any is waiting), which is
//! how a live-migrated VM's veth, moved into this host's namespace, gets served.
//!
//! This is the only part of `hostsim` that does I/O. It never decides about a frame
//! (that is `decap`, `encap` and `proxy`), and a failed send is counted, never fatal.

use std::io;
use std::time::{Duration, Instant};

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
/// How often a VM interface that does not exist yet is looked for, and the idle sleep
/// while one is waiting: the gap it adds to a live migration.
const ATTACH_POLL: Duration = Duration::from_millis(5);

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
    /// New views taken on SIGHUP.
    pub reloads: u64,
    /// SIGHUPs whose policy or VM list was refused (the old view kept serving).
    pub reloads_refused: u64,
    /// VM interfaces opened after start (moved here, or appeared late).
    pub vms_attached: u64,
    /// Frames for a VM of this host whose interface has not appeared yet: what a live
    /// migration loses between the record's move and the veth's arrival.
    pub vm_waiting: u64,
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
            reloads: 0,
            reloads_refused: 0,
            vms_attached: 0,
            vm_waiting: 0,
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
            ("reloads", self.reloads),
            ("reloads_refused", self.reloads_refused),
            ("vms_attached", self.vms_attached),
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
            ("vm_waiting", self.vm_waiting),
        ] {
            s.push_str(&format!("io.{name} {v}\n"));
        }
        s
    }
}

/// The open sockets: the PA interface's and one per VM, in `view.vms()` order (`None`
/// for a VM whose interface has not appeared yet).
pub struct Sockets {
    pa: Socket,
    vms: Vec<Option<Socket>>,
}

impl Sockets {
    /// Opens every socket, so that a missing interface or privilege fails before the
    /// simulator says it is ready.
    pub fn open(view: &HostView, pa: &str) -> Result<Sockets, Error> {
        let pa = Socket::open(pa, None)?;
        let vms = view
            .vms()
            .iter()
            .map(|vm| Socket::open(&vm.ifname, None).map(Some))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sockets { pa, vms })
    }

    /// The sockets laid out for `next`, taken from these (laid out for `prev`): kept by
    /// interface name for VMs still here, closed for the others, `None` for VMs new here
    /// (see [`Sockets::attach_waiting`]).
    pub fn realign(&mut self, prev: &HostView, next: &HostView) {
        let mut old: Vec<(String, Socket)> = prev
            .vms()
            .iter()
            .zip(std::mem::take(&mut self.vms))
            .filter_map(|(vm, s)| s.map(|s| (vm.ifname.clone(), s)))
            .collect();
        self.vms = next
            .vms()
            .iter()
            .map(|vm| {
                let i = old.iter().position(|(name, _)| *name == vm.ifname)?;
                Some(old.swap_remove(i).1)
            })
            .collect();
    }

    /// Opens the socket of every VM of `view` that has none yet and whose interface now
    /// exists; the indexes (into `view.vms()`) of those opened. Any other failure to
    /// open (privilege, a vanished interface) leaves the VM waiting.
    pub fn attach_waiting(&mut self, view: &HostView) -> Vec<usize> {
        let mut opened = Vec::new();
        for (i, (vm, slot)) in view.vms().iter().zip(self.vms.iter_mut()).enumerate() {
            if slot.is_none()
                && let Ok(sock) = Socket::open(&vm.ifname, None)
            {
                *slot = Some(sock);
                opened.push(i);
            }
        }
        opened
    }

    /// The indexes of the VMs still waiting for their interface.
    pub fn waiting(&self) -> Vec<usize> {
        (0..self.vms.len())
            .filter(|&i| self.vms.get(i).is_some_and(Option::is_none))
            .collect()
    }

    fn vm(&self, index: usize) -> Option<&Socket> {
        self.vms.get(index).and_then(Option::as_ref)
    }

    fn all(&self) -> Vec<&Socket> {
        std::iter::once(&self.pa)
            .chain(self.vms.iter().flatten())
            .collect()
    }
}

/// What the loop tells its caller about, for the operator's log.
pub enum Event<'a> {
    /// A new view is serving; `waiting` are the indexes of its VMs whose interface
    /// does not exist yet.
    Reloaded {
        view: &'a HostView,
        waiting: &'a [usize],
    },
    /// A VM's interface appeared and is served from now on.
    Attached { view: &'a HostView, vm: usize },
}

/// Where a frame came from.
#[derive(Clone, Copy)]
enum Source {
    Pa,
    Vm(usize),
}

/// Serves frames until a stop is requested, without reloads or metrics; the counters
/// at that moment.
pub fn run(view: HostView, sockets: Sockets) -> Counters {
    serve(view, sockets, &mut |_| None, &mut |_| {}, None)
}

/// Serves frames until a stop is requested; on SIGHUP, `reload` is asked for a new view
/// (`None`: refused, it has said why, the current view stays). `log` hears of reloads
/// and attached interfaces. With `metrics`, the counters are copied there between
/// batches every [`PUBLISH_EVERY`](crate::metrics::publish::PUBLISH_EVERY) for
/// `nvlb host --metrics`. The counters at the stop.
pub fn serve(
    view: HostView,
    sockets: Sockets,
    reload: &mut dyn FnMut(&HostView) -> Option<HostView>,
    log: &mut dyn FnMut(Event),
    metrics: Option<&crate::hostsim::metrics::HostMetrics>,
) -> Counters {
    let every = Duration::from_nanos(crate::metrics::publish::PUBLISH_EVERY);
    let mut next_publish = Instant::now();
    let mut state = Loop {
        view,
        sockets,
        rx: vec![0u8; RX_LEN],
        out: vec![0u8; OUT_LEN],
        ident: 0,
        counters: Counters::default(),
    };
    let mut waiting = !state.sockets.waiting().is_empty();
    let mut last_attach = Instant::now();
    while !shutdown::requested() {
        if shutdown::take_hangup() {
            match reload(&state.view) {
                Some(next) => {
                    state.adopt(next);
                    state.counters.reloads += 1;
                    let opened = state.sockets.attach_waiting(&state.view);
                    state.counters.vms_attached += opened.len() as u64;
                    let still = state.sockets.waiting();
                    waiting = !still.is_empty();
                    log(Event::Reloaded {
                        view: &state.view,
                        waiting: &still,
                    });
                    for vm in opened {
                        log(Event::Attached {
                            view: &state.view,
                            vm,
                        });
                    }
                }
                None => state.counters.reloads_refused += 1,
            }
        }
        if waiting && last_attach.elapsed() >= ATTACH_POLL {
            last_attach = Instant::now();
            for vm in state.sockets.attach_waiting(&state.view) {
                state.counters.vms_attached += 1;
                log(Event::Attached {
                    view: &state.view,
                    vm,
                });
            }
            waiting = !state.sockets.waiting().is_empty();
        }
        let mut moved = state.drain(Source::Pa);
        for i in 0..state.sockets.vms.len() {
            moved += state.drain(Source::Vm(i));
        }
        let idle = if waiting { ATTACH_POLL } else { IDLE_POLL };
        if moved == 0 && afpacket::wait_any(&state.sockets.all(), idle).is_err() {
            // Not expected (the set was sized when the view was built): do not spin.
            state.counters.rx_errors += 1;
            std::thread::sleep(idle);
        }
        if let Some(m) = metrics
            && Instant::now() >= next_publish
        {
            m.publish(&state.counters);
            next_publish = Instant::now() + every;
        }
    }
    for sock in state.sockets.all() {
        if let Ok(s) = sock.statistics() {
            state.counters.kernel_drops += s.drops;
        }
    }
    state.counters
}

struct Loop {
    view: HostView,
    sockets: Sockets,
    rx: Vec<u8>,
    out: Vec<u8>,
    ident: u16,
    counters: Counters,
}

impl Loop {
    /// Serves `next` from now on, with the sockets realigned to its VMs.
    fn adopt(&mut self, next: HostView) {
        self.sockets.realign(&self.view, &next);
        self.view = next;
    }

    fn socket(&self, source: Source) -> Option<&Socket> {
        match source {
            Source::Pa => Some(&self.sockets.pa),
            Source::Vm(i) => self.sockets.vm(i),
        }
    }

    /// Handles up to `BATCH` frames waiting on one socket; how many there were.
    fn drain(&mut self, source: Source) -> usize {
        let mut n = 0;
        while n < BATCH {
            let sock = match source {
                Source::Pa => Some(&self.sockets.pa),
                Source::Vm(i) => self.sockets.vm(i),
            };
            let Some(sock) = sock else {
                return n;
            };
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
                decap::from_pa(&self.view, frame, meta.vlan_tagged, &mut self.out)
            }
            Source::Vm(i) => {
                self.counters.rx_vms += 1;
                self.ident = self.ident.wrapping_add(1);
                encap::from_vm(&self.view, i, frame, meta, self.ident, &mut self.out)
            }
        };
        self.counters.record(&verdict);
        let sent = match verdict {
            Verdict::Deliver { vm, start, len, .. } => {
                match (self.sockets.vm(vm), start.checked_add(len)) {
                    (Some(sock), Some(end)) => send(sock, self.rx.get(start..end)),
                    (None, _) if vm < self.sockets.vms.len() => {
                        self.counters.vm_waiting += 1;
                        Ok(())
                    }
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
