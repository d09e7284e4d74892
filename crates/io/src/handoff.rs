//! Bounded queues between workers: a frame read by a worker that does not own its flow
//! goes to the owner (docs/architecture.md, "Steering").
//!
//! Each worker has one inbox (a bounded channel plus an eventfd that wakes its poll);
//! every worker holds a sender to every inbox. A full inbox drops the frame and the
//! sender counts it: a slow worker must never stall the others. Wakeups are written
//! once per batch, not once per frame.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::error::Error;
use super::sys;

/// A frame handed to another worker: its bytes, copied out of the receive buffer.
pub type Frame = Vec<u8>;

/// The receiving end, owned by one worker.
#[derive(Debug)]
pub struct Inbox {
    rx: Receiver<Frame>,
    wake: Arc<File>,
}

/// A sending end toward one worker.
#[derive(Debug)]
pub struct Outbox {
    tx: SyncSender<Frame>,
    wake: Arc<File>,
    pending: bool,
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Full,
    Closed,
}

/// One inbox per worker and, for each worker, outboxes to all inboxes (indexed by
/// worker), each holding at most `depth` frames.
pub fn mesh(workers: usize, depth: usize) -> Result<(Vec<Inbox>, Vec<Vec<Outbox>>), Error> {
    let mut inboxes = Vec::with_capacity(workers);
    let mut senders = Vec::with_capacity(workers);
    for _ in 0..workers {
        let fd = sys::eventfd().map_err(|cause| Error::Setup {
            op: "eventfd",
            cause,
        })?;
        let wake = Arc::new(File::from(fd));
        let (tx, rx) = sync_channel(depth);
        inboxes.push(Inbox {
            rx,
            wake: wake.clone(),
        });
        senders.push((tx, wake));
    }
    let outboxes = (0..workers)
        .map(|_| {
            senders
                .iter()
                .map(|(tx, wake)| Outbox {
                    tx: tx.clone(),
                    wake: wake.clone(),
                    pending: false,
                })
                .collect()
        })
        .collect();
    Ok((inboxes, outboxes))
}

impl Outbox {
    /// Queues a frame without waiting.
    pub fn push(&mut self, frame: Frame) -> Result<(), Refused> {
        match self.tx.try_send(frame) {
            Ok(()) => {
                self.pending = true;
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Closed),
        }
    }

    /// Wakes the owner if frames were queued since the last flush.
    pub fn flush(&mut self) {
        if self.pending {
            self.pending = false;
            // A full eventfd counter (EAGAIN) still means "wake up": nothing to do.
            let _ = (&*self.wake).write(&1u64.to_ne_bytes());
        }
    }
}

impl Inbox {
    /// Takes one queued frame, if any.
    pub fn pop(&self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Clears the wakeup so that poll sleeps again once the queue is drained.
    pub fn clear_wakeup(&self) {
        let mut buf = [0u8; 8];
        let _ = (&*self.wake).read(&mut buf);
    }

    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reach_their_owner_and_a_full_inbox_refuses() {
        let (inboxes, mut outboxes) = mesh(2, 2).unwrap();
        let to_1 = &mut outboxes[0][1];
        assert_eq!(to_1.push(vec![1]), Ok(()));
        assert_eq!(to_1.push(vec![2]), Ok(()));
        assert_eq!(to_1.push(vec![3]), Err(Refused::Full));
        to_1.flush();
        assert_eq!(sys::poll_readable(&[inboxes[1].wake_fd()], 0).unwrap(), 1);
        assert_eq!(sys::poll_readable(&[inboxes[0].wake_fd()], 0).unwrap(), 0);
        inboxes[1].clear_wakeup();
        assert_eq!(sys::poll_readable(&[inboxes[1].wake_fd()], 0).unwrap(), 0);
        assert_eq!(inboxes[1].pop(), Some(vec![1]));
        assert_eq!(inboxes[1].pop(), Some(vec![2]));
        assert_eq!(inboxes[1].pop(), None);
        assert_eq!(inboxes[0].pop(), None);
    }
}
