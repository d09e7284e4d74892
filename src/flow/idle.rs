//! Per-rule idle timeouts and the flows an idle timeout must reset.
//!
//! A rule (a pool) may set its own idle timeout for established TCP and for UDP flows
//! and ask for TCP resets when one times out; the shard keeps one [`RuleIdle`] per pool
//! of the current policy, indexed like [`Flow::pool`](super::Flow). A reset needs the
//! sequence numbers each end accepts: the last acknowledgment number each end sent
//! (what it expects next), kept in the flow. This module must never read a clock and
//! never hold more expired flows than [`MAX_PENDING_RESETS`].

use super::shard::Flow;
use super::state::{State, Timeouts};

/// Expired flows waiting for their resets; beyond this the oldest wait and newer
/// expiries are not reset (counted by the caller as they are dropped from the queue).
pub const MAX_PENDING_RESETS: usize = 1024;

/// One pool's idle rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleIdle {
    /// Seconds an established TCP or a UDP flow may stay idle; 0: the shard's default.
    pub idle: u32,
    /// Reset both ends of a TCP flow that times out idle.
    pub reset: bool,
}

/// How long `flow` may stay idle under `rules` (indexed by pool) and `defaults`.
pub fn timeout(rules: &[RuleIdle], defaults: &Timeouts, flow: &Flow) -> u32 {
    let own = rules.get(flow.pool as usize).map_or(0, |r| r.idle);
    match flow.state {
        State::Established | State::FinForward | State::FinReturn | State::Datagram if own != 0 => {
            own
        }
        s => defaults.for_state(s),
    }
}

/// Whether an expired `flow` must be reset: a TCP flow past its handshake and not yet
/// closing, of a rule that asks for it, with acknowledgment numbers seen both ways.
pub fn wants_reset(rules: &[RuleIdle], flow: &Flow) -> bool {
    let asked = rules.get(flow.pool as usize).is_some_and(|r| r.reset);
    asked
        && matches!(
            flow.state,
            State::Established | State::FinForward | State::FinReturn
        )
        && flow.acks_seen == ACKS_BOTH
}

/// Bits of [`Flow::acks_seen`]: which end's acknowledgment number is known.
pub const ACK_FROM_CLIENT: u8 = 1;
pub const ACK_FROM_DIP: u8 = 2;
pub const ACKS_BOTH: u8 = ACK_FROM_CLIENT | ACK_FROM_DIP;
