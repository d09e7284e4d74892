//! Per-flow connection state and the idle timeout that each state allows.
//!
//! The state machine is deliberately coarse: a load balancer sees both directions but
//! must not try to be a TCP stack. It only needs to know how long an idle binding may
//! live: short before the handshake completes (a SYN flood must not pin memory), long
//! once established, short again after FIN or RST.

use std::time::Duration;

use crate::wire::tcp::flags;

/// Which way a packet travels through a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client towards the DIP (VIP side in, NVGRE out).
    Forward,
    /// DIP back to the client.
    Return,
}

/// Connection state of one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// TCP: seen a SYN from the client, nothing back yet.
    SynSent,
    /// TCP: the DIP answered (or the flow was picked up mid-stream).
    Established,
    /// TCP: a FIN was seen in the forward direction.
    FinForward,
    /// TCP: a FIN was seen in the return direction.
    FinReturn,
    /// TCP: FINs seen both ways, or a RST: the binding lingers briefly for retransmits.
    Closing,
    /// UDP (or any datagram protocol): only idle time matters.
    Datagram,
    /// TCP: the DIP answered the SYN, the client has not acknowledged yet. Still on the
    /// SYN timeout: a flood of spoofed SYNs at servers that answer every one of them
    /// must not pin a binding for the established timeout (found by the SYN-flood lab
    /// test: until then a SYN-ACK alone established the flow).
    SynReceived,
}

/// Idle timeouts per state, in whole seconds (flow timestamps are kept in seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// States [`State::SynSent`] and [`State::SynReceived`]: handshake not complete.
    pub tcp_syn: u32,
    /// States [`State::Established`], [`State::FinForward`] and [`State::FinReturn`].
    pub tcp_established: u32,
    /// State [`State::Closing`]: after FINs both ways or a RST.
    pub tcp_closing: u32,
    /// State [`State::Datagram`]: UDP and other protocols without connection state.
    pub udp: u32,
}

impl Timeouts {
    /// Converts config durations to whole seconds: rounded down, at least 1 (a zero timeout
    /// would expire every flow at once), saturated at `u32::MAX`.
    pub fn from_durations(
        syn: Duration,
        established: Duration,
        closing: Duration,
        udp: Duration,
    ) -> Self {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1);
        Timeouts {
            tcp_syn: secs(syn),
            tcp_established: secs(established),
            tcp_closing: secs(closing),
            udp: secs(udp),
        }
    }

    /// How long a flow in `state` may stay idle.
    pub fn for_state(&self, state: State) -> u32 {
        match state {
            State::SynSent | State::SynReceived => self.tcp_syn,
            State::Established | State::FinForward | State::FinReturn => self.tcp_established,
            State::Closing => self.tcp_closing,
            State::Datagram => self.udp,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 20,
            tcp_established: 300,
            tcp_closing: 10,
            udp: 30,
        }
    }
}

impl State {
    /// The state a new binding starts in, given the first packet's TCP flags
    /// (`None` for datagram protocols).
    pub fn initial(tcp_flags: Option<u8>) -> State {
        match tcp_flags {
            None => State::Datagram,
            Some(f) if f & flags::RST != 0 => State::Closing,
            Some(f) if f & flags::SYN != 0 && f & flags::ACK == 0 => State::SynSent,
            // Picked up mid-stream (e.g. after a restart of this LB): Maglev sends it to
            // the same DIP, so treat it as the established connection it is.
            Some(_) => State::Established,
        }
    }

    /// The state after a packet with `tcp_flags` travelled in `dir`.
    pub fn next(self, dir: Direction, tcp_flags: Option<u8>) -> State {
        let Some(f) = tcp_flags else {
            return State::Datagram;
        };
        if f & flags::RST != 0 {
            return State::Closing;
        }
        let fin = f & flags::FIN != 0;
        let syn = f & flags::SYN != 0;
        let ack = f & flags::ACK != 0;
        match (self, dir, fin) {
            (State::SynSent, Direction::Return, false) if syn => State::SynReceived,
            (State::SynSent, Direction::Return, false) => State::Established,
            (State::SynSent, Direction::Forward, false) => State::SynSent,
            // The client's ACK of the SYN-ACK: the handshake is complete.
            (State::SynReceived, Direction::Forward, false) if ack && !syn => State::Established,
            (
                State::SynSent | State::SynReceived | State::Established,
                Direction::Forward,
                true,
            ) => State::FinForward,
            (State::SynSent | State::SynReceived | State::Established, Direction::Return, true) => {
                State::FinReturn
            }
            (State::FinForward, Direction::Return, true)
            | (State::FinReturn, Direction::Forward, true) => State::Closing,
            (s, _, _) => s,
        }
    }
}

impl State {
    /// `self.next(Direction::Forward, tcp_flags) == self` for a client's packet that
    /// neither opens, closes nor resets (no SYN, FIN or RST; `None` for UDP): only
    /// the ACK that ends a handshake moves such a packet's binding. The shortcut's
    /// test of "no change of state", without the walk (held to `next` below).
    #[inline]
    pub fn kept_by_forward_segment(self, tcp_flags: Option<u8>) -> bool {
        match tcp_flags {
            None => self == State::Datagram,
            Some(f) => !(self == State::SynReceived && f & flags::ACK != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_by_forward_segment_is_next_without_a_change() {
        let states = [
            State::SynSent,
            State::SynReceived,
            State::Established,
            State::FinForward,
            State::FinReturn,
            State::Closing,
            State::Datagram,
        ];
        for s in states {
            assert_eq!(
                s.kept_by_forward_segment(None),
                s.next(Direction::Forward, None) == s
            );
            for f in 0..=u8::MAX {
                if f & (flags::SYN | flags::FIN | flags::RST) != 0 {
                    continue;
                }
                assert_eq!(
                    s.kept_by_forward_segment(Some(f)),
                    s.next(Direction::Forward, Some(f)) == s,
                    "{s:?} {f:#x}"
                );
            }
        }
    }

    #[test]
    fn handshake_then_close() {
        let s = State::initial(Some(flags::SYN));
        assert_eq!(s, State::SynSent);
        let s = s.next(Direction::Forward, Some(flags::SYN));
        assert_eq!(s, State::SynSent, "a retransmitted SYN does not establish");
        let s = s.next(Direction::Return, Some(flags::SYN | flags::ACK));
        assert_eq!(s, State::SynReceived, "a SYN-ACK alone does not establish");
        let s = s.next(Direction::Return, Some(flags::SYN | flags::ACK));
        assert_eq!(s, State::SynReceived, "a retransmitted SYN-ACK neither");
        let s = s.next(Direction::Forward, Some(flags::SYN));
        assert_eq!(s, State::SynReceived, "nor a retransmitted SYN");
        let s = s.next(Direction::Forward, Some(flags::ACK));
        assert_eq!(s, State::Established, "the client's ACK does");
        let s = s.next(Direction::Forward, Some(flags::FIN | flags::ACK));
        assert_eq!(s, State::FinForward);
        let s = s.next(Direction::Forward, Some(flags::ACK));
        assert_eq!(s, State::FinForward);
        let s = s.next(Direction::Return, Some(flags::FIN | flags::ACK));
        assert_eq!(s, State::Closing);
    }

    #[test]
    fn rst_closes_from_any_state() {
        for s in [State::SynSent, State::Established, State::FinReturn] {
            assert_eq!(s.next(Direction::Return, Some(flags::RST)), State::Closing);
        }
        assert_eq!(State::initial(Some(flags::ACK)), State::Established);
        assert_eq!(State::initial(None), State::Datagram);
    }

    #[test]
    fn timeouts_follow_state() {
        let t = Timeouts::default();
        assert_eq!(t.for_state(State::SynSent), 20);
        assert_eq!(t.for_state(State::SynReceived), 20);
        assert_eq!(t.for_state(State::Established), 300);
        assert_eq!(t.for_state(State::Closing), 10);
        assert_eq!(t.for_state(State::Datagram), 30);
    }
}
