//! Per-rule options of a VIP pool, as tenants know them from cloud load balancers:
//! all-ports rules ("HA ports"), what happens to ICMP echo sent to a VIP address,
//! inbound NAT rules (one frontend port to one DIP's port), and the idle timeout of a
//! rule with its optional TCP reset.
//!
//! Plain values read by the engine and the reports; validation (`validate/rules.rs`)
//! is the only place that builds them. This module must never parse the file or
//! change a rule after its snapshot was built.

use std::time::Duration;

use super::ids::Protocol;

/// What the LB does with an ICMP or ICMPv6 echo request to a VIP address.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum IcmpEcho {
    /// The LB answers itself. The default: a ping tells a tenant that the frontend is
    /// reachable, as cloud load balancers answer it, and needs no DIP to be up.
    #[default]
    Answer,
    /// Passed to one DIP of the rule (chosen by the client's address), whose answer
    /// goes back as from the VIP: the ping then proves the path to a backend.
    Forward,
    /// Dropped and counted (`icmp_echo_dropped`): the address does not reveal itself.
    Drop,
}

impl IcmpEcho {
    /// The name used in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            IcmpEcho::Answer => "answer",
            IcmpEcho::Forward => "forward",
            IcmpEcho::Drop => "drop",
        }
    }

    /// The mode a policy-file name stands for; `None` for an unknown name.
    pub fn parse(s: &str) -> Option<IcmpEcho> {
        [IcmpEcho::Answer, IcmpEcho::Forward, IcmpEcho::Drop]
            .into_iter()
            .find(|e| e.name() == s)
    }
}

/// Where a pool came from when it is one port of an inbound NAT rule
/// (`[[tenant.inbound_nat]]`): each frontend port of the rule becomes a pool of one DIP.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct InboundNat {
    /// The rule's name as written (the pool's name adds `:PORT` for a range).
    pub rule: String,
    /// The rule's frontend ports, `first..=last`.
    pub first: u16,
    /// Last frontend port of the rule (inclusive).
    pub last: u16,
}

/// The options of one rule (one pool) besides its key and DIPs.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RuleOptions {
    /// `protocol = "all"`, `port = 0`: every TCP and UDP port of the address that no
    /// specific rule serves; DIPs get the packet's own destination port.
    pub all_ports: bool,
    /// Idle timeout of established TCP flows and of UDP flows of this rule; `None`:
    /// `[balancer.flows]`'s.
    pub idle_timeout: Option<Duration>,
    /// Send RST to both ends when a TCP flow of this rule times out idle.
    pub tcp_reset: bool,
    /// What echo requests to the rule's address get. Validation makes every rule of
    /// one address agree.
    pub icmp_echo: IcmpEcho,
    /// Set for the pools of an inbound NAT rule.
    pub nat: Option<InboundNat>,
}

impl RuleOptions {
    /// The protocol as the policy file writes it: `all` for an all-ports rule.
    pub fn protocol_name(&self, p: Protocol) -> &'static str {
        if self.all_ports { "all" } else { p.name() }
    }

    /// `lb` for a load-balancing rule, `nat` for a port of an inbound NAT rule.
    pub fn kind(&self) -> &'static str {
        if self.nat.is_some() { "nat" } else { "lb" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_names_round_trip() {
        for e in [IcmpEcho::Answer, IcmpEcho::Forward, IcmpEcho::Drop] {
            assert_eq!(IcmpEcho::parse(e.name()), Some(e));
        }
        assert_eq!(IcmpEcho::parse("Answer"), None);
        assert_eq!(IcmpEcho::default(), IcmpEcho::Answer);
    }

    #[test]
    fn names_follow_the_rule() {
        let mut r = RuleOptions::default();
        assert_eq!(r.protocol_name(Protocol::Udp), "udp");
        assert_eq!(r.kind(), "lb");
        r.all_ports = true;
        r.nat = Some(InboundNat {
            rule: "ssh".into(),
            first: 2222,
            last: 2222,
        });
        assert_eq!(r.protocol_name(Protocol::Tcp), "all");
        assert_eq!(r.kind(), "nat");
    }
}
