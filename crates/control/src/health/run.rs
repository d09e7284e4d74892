//! The health thread of `nvlb run`: the prober's clock, its own AF_PACKET socket on the
//! provider interface (send only), the queue of probe replies from the workers, and
//! the [`Control`] it reports state changes to.
//!
//! It follows the declared policy by polling the control plane's generation, sleeps
//! until the next probe is due or a reply arrives (at most [`TICK`]), and stops with
//! the workers (SIGINT/SIGTERM). It must never block a worker: the workers' queue to
//! it is bounded, and a full queue costs a reply (counted by the worker), not a wait.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Control;
use crate::dataplane::afpacket::Socket;
use crate::dataplane::{Error, LocalReceiver, shutdown};

use super::prober::{Prober, Transition};
use super::status::HealthStatus;

/// Longest sleep: bounds how late the thread sees a reload or a stop request.
pub const TICK: Duration = Duration::from_millis(50);

/// The running health thread.
pub struct Checker {
    handle: JoinHandle<()>,
    status: Arc<HealthStatus>,
}

impl Checker {
    /// Opens the probe socket on `provider` (failing at once if it cannot), then runs
    /// the checks until a stop is requested.
    pub fn start(
        control: Arc<Control>,
        provider: &str,
        replies: LocalReceiver,
    ) -> Result<Checker, Error> {
        let socket = Socket::open_send_only(provider)?;
        let status = Arc::new(HealthStatus::new());
        let shared = status.clone();
        let handle = std::thread::Builder::new()
            .name("nvlb-health".into())
            .spawn(move || run(&control, &socket, &replies, &shared))
            .map_err(|cause| Error::Setup {
                op: "spawn health thread",
                cause,
            })?;
        Ok(Checker { handle, status })
    }

    /// The DIPs' health as last probed.
    pub fn status(&self) -> Arc<HealthStatus> {
        self.status.clone()
    }

    /// Waits for the thread to end (after a stop request); false if it panicked.
    pub fn wait(self) -> bool {
        self.handle.join().is_ok()
    }
}

fn run(control: &Control, socket: &Socket, replies: &LocalReceiver, status: &HealthStatus) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut prober = Prober::new(seed);
    let mut generation = None;
    let mut out: Vec<Vec<u8>> = Vec::new();
    while !shutdown::requested() {
        let now = Instant::now();
        let g = control.generation();
        if generation != Some(g) {
            generation = Some(g);
            for (pool, dip) in prober.sync(&control.declared(), now) {
                // No longer checked: an unchecked DIP is up.
                if let Err(e) = control.set_dip_health(&pool, dip, true) {
                    eprintln!("nvlb: health: {pool}: {e}");
                }
            }
        }
        let mut changes = prober.poll(now, &mut out);
        send(socket, &mut out);
        let wait = prober
            .next_wakeup()
            .map_or(TICK, |at| at.saturating_duration_since(Instant::now()))
            .min(TICK);
        match replies.recv_timeout(wait) {
            Ok(frame) => {
                changes.extend(prober.receive(Instant::now(), &frame, &mut out));
                while let Ok(frame) = replies.try_recv() {
                    changes.extend(prober.receive(Instant::now(), &frame, &mut out));
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // No worker left to send replies: probes time out, which is the truth.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        send(socket, &mut out);
        for t in &changes {
            apply(control, t);
        }
        status.publish(prober.report());
    }
}

fn send(socket: &Socket, out: &mut Vec<Vec<u8>>) {
    for f in out.drain(..) {
        // A frame the device queue refused is a probe that times out: the failure
        // shows where it matters, in the DIP's state.
        if let Err(e) = socket.send(&f)
            && e.kind() != io::ErrorKind::WouldBlock
        {
            eprintln!("nvlb: health: sending a probe failed: {e}");
        }
    }
}

/// A state change: the pool's table is rebuilt (Control), and one line for the log.
fn apply(control: &Control, t: &Transition) {
    match control.set_dip_health(&t.pool, t.dip, t.up) {
        Ok(_) => eprintln!("nvlb: health: {t}"),
        Err(e) => eprintln!("nvlb: health: {t}, but the pool could not be rebuilt: {e}"),
    }
}
