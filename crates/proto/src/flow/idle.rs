//! Per-rule idle timeouts and the flows an idle timeout must reset.
//!
//! A rule (a pool) may set its own idle timeout for established TCP and for UDP flows
//! and ask for TCP resets when one times out; the shard keeps one [`RuleIdle`] per pool
//! of the current policy, indexed like [`Flow::pool`](super::Flow). A reset needs the
//! sequence numbers each end accepts: the last acknowledgment number each end sent
//! (what it expects next), kept in the flow. This module must never read a clock and
//! never hold more expired flows than [`MAX_PENDING_RESETS`].

use super::binding::Flow;
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

/// The idle rules of the current policy: per VIP pool, and the idle timeout of each
/// outbound rule (whose flows carry the rule's index tagged in `Flow::pool`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdleRules {
    /// Per VIP pool, indexed by [`PoolId`](crate::policy::PoolId) like [`Flow::pool`].
    pub pools: Vec<RuleIdle>,
    /// Seconds per outbound rule, indexed like the policy's outbound rules.
    pub outbound: Vec<u32>,
}

/// How long `flow` may stay idle under `rules` and `defaults`. An outbound flow lives
/// until its rule's idle timeout or its state's usual timeout, whichever is first; a
/// VIP rule's own timeout replaces the usual one for established TCP and UDP.
pub fn timeout(rules: &IdleRules, defaults: &Timeouts, flow: &Flow) -> u32 {
    if let super::Owner::Outbound(rule) = flow.owner() {
        let own = rules
            .outbound
            .get(rule as usize)
            .copied()
            .unwrap_or(u32::MAX);
        return defaults.for_state(flow.state).min(own);
    }
    let own = rules.pools.get(flow.pool as usize).map_or(0, |r| r.idle);
    match flow.state {
        State::Established | State::FinForward | State::FinReturn | State::Datagram if own != 0 => {
            own
        }
        s => defaults.for_state(s),
    }
}

/// Whether an expired `flow` must be reset: a TCP flow past its handshake and not yet
/// closing, of a rule that asks for it, with acknowledgment numbers seen both ways.
pub fn wants_reset(rules: &IdleRules, flow: &Flow, acks: &super::binding::Acks) -> bool {
    let asked = rules.pools.get(flow.pool as usize).is_some_and(|r| r.reset);
    asked
        && matches!(
            flow.state,
            State::Established | State::FinForward | State::FinReturn
        )
        && acks.seen == ACKS_BOTH
}

/// Bits of [`Acks::seen`](super::binding::Acks::seen): which end's acknowledgment number is known.
pub const ACK_FROM_CLIENT: u8 = 1;
/// The DIP's acknowledgment number is known.
pub const ACK_FROM_DIP: u8 = 2;
/// Both acknowledgment numbers are known: the flow can be reset on idle.
pub const ACKS_BOTH: u8 = ACK_FROM_CLIENT | ACK_FROM_DIP;

#[cfg(test)]
mod tests {
    use crate::policy::OUTBOUND_POOL_TAG;
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::flow::{ForwardKey, ReturnKey};

    fn flow(pool: u32, state: State) -> Flow {
        let a = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let f = ForwardKey {
            vsid: 0,
            proto: 6,
            client: a,
            client_port: 1,
            vip: a,
            vip_port: 2,
        };
        let r = ReturnKey {
            vsid: 5001,
            proto: 6,
            dip: a,
            dip_port: 2,
            peer: a,
            peer_port: 1,
        };
        Flow::new(f, r, 0, pool, 0, state)
    }

    #[test]
    fn a_rules_timeout_covers_established_and_udp_only() {
        let rules = IdleRules {
            pools: vec![
                RuleIdle::default(),
                RuleIdle {
                    idle: 2,
                    reset: true,
                },
            ],
            outbound: vec![60],
        };
        let d = Timeouts::default();
        assert_eq!(timeout(&rules, &d, &flow(0, State::Established)), 300);
        assert_eq!(timeout(&rules, &d, &flow(1, State::Established)), 2);
        assert_eq!(timeout(&rules, &d, &flow(1, State::Datagram)), 2);
        assert_eq!(timeout(&rules, &d, &flow(1, State::SynSent)), 20);
        assert_eq!(timeout(&rules, &d, &flow(1, State::Closing)), 10);
        assert_eq!(
            timeout(&rules, &d, &flow(9, State::Established)),
            300,
            "unknown pool"
        );
        // Outbound rule 0: its 60 s, or the state's own timeout when that is shorter.
        let out = |state| flow(OUTBOUND_POOL_TAG, state);
        assert_eq!(timeout(&rules, &d, &out(State::Established)), 60);
        assert_eq!(timeout(&rules, &d, &out(State::SynSent)), 20);
        assert_eq!(
            timeout(&rules, &d, &flow(OUTBOUND_POOL_TAG | 1, State::Established)),
            300,
            "unknown outbound rule"
        );
    }

    #[test]
    fn only_established_flows_with_both_acks_are_reset() {
        let rules = IdleRules {
            pools: vec![RuleIdle {
                idle: 2,
                reset: true,
            }],
            outbound: Vec::new(),
        };
        let mut f = flow(0, State::Established);
        let mut acks = crate::flow::binding::Acks::default();
        assert!(
            !wants_reset(&rules, &f, &acks),
            "no sequence numbers known yet"
        );
        acks.seen = ACK_FROM_CLIENT;
        assert!(!wants_reset(&rules, &f, &acks));
        acks.seen = ACKS_BOTH;
        assert!(wants_reset(&rules, &f, &acks));
        assert!(
            !wants_reset(
                &IdleRules {
                    pools: vec![RuleIdle::default()],
                    outbound: Vec::new()
                },
                &f,
                &acks
            ),
            "rule without tcp_reset"
        );
        f.state = State::Closing;
        assert!(!wants_reset(&rules, &f, &acks), "already closing");
    }
}
