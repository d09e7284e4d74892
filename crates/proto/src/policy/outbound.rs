//! Outbound rules (`[[tenant.outbound]]`): which of a tenant's VMs may open connections
//! to the Internet through the LB, from which public address, with which source ports.
//!
//! Each source VM gets one fixed block of `ports_per_dip` ports of the rule's range, in
//! declaration order (the DIPs of the named pools first, then the `sources`), so that
//! every instance with the same policy gives a VM the same block without talking to
//! the others, and one busy VM cannot use up the ports of the rest. Values here are
//! validated; nothing may change them after the snapshot is built.

use std::net::IpAddr;
use std::time::Duration;

use super::ids::{HostId, TenantId, Vsid};
use crate::wire::MacAddr;

/// Marks a flow's `pool` field as an outbound rule's index rather than a VIP pool's:
/// outbound flows have no pool, and every reader of `pool` looks it up with `get`, so
/// a tagged index is simply not a pool to them.
pub const OUTBOUND_POOL_TAG: u32 = 0x8000_0000;

/// One outbound rule, validated.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboundRule {
    /// The rule's name, as written.
    pub name: String,
    /// The tenant whose VMs the rule serves.
    pub tenant: TenantId,
    /// The public source address the VMs' connections leave with (a VIP or an address
    /// of its own, routed to the LB like the VIPs).
    pub address: IpAddr,
    /// First source port of the rule's range on `address` (inclusive).
    pub first_port: u16,
    /// Last source port of the rule's range on `address` (inclusive).
    pub last_port: u16,
    /// Size of each source's fixed block of ports.
    pub ports_per_dip: u16,
    /// An outbound flow idle this long is forgotten (and its port freed), or at its
    /// state's usual timeout if that is shorter (`flow/idle.rs`).
    pub idle_timeout: Duration,
    /// In block order: source `i` owns ports `first_port + i * ports_per_dip ..`.
    pub sources: Vec<OutboundSource>,
}

/// A VM that may send through an outbound rule, resolved through its lookup record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutboundSource {
    /// VSID of the VM.
    pub vsid: Vsid,
    /// Customer address (CA) of the VM.
    pub ca: IpAddr,
    /// The only host that may send for this CA (anti-spoofing).
    pub host: HostId,
    /// The VM's MAC: inner destination MAC of replies sent back to it.
    pub mac: MacAddr,
    /// This source's block of ports.
    pub first_port: u16,
    /// Last port of this source's block (inclusive).
    pub last_port: u16,
}

impl OutboundRule {
    /// Whether `port` is in the rule's range `first_port..=last_port`.
    pub fn contains_port(&self, port: u16) -> bool {
        (self.first_port..=self.last_port).contains(&port)
    }
}

/// Blocks of `per` ports for `count` sources from `first..=last`, in order; `None`
/// when the range is too small for all of them.
pub(crate) fn blocks(first: u16, last: u16, per: u16, count: usize) -> Option<Vec<(u16, u16)>> {
    let per = u32::from(per);
    if per == 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut at = u32::from(first);
    for _ in 0..count {
        let end = at.checked_add(per - 1)?;
        if end > u32::from(last) {
            return None;
        }
        out.push((u16::try_from(at).ok()?, u16::try_from(end).ok()?));
        at = end + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_consecutive_and_bounded() {
        assert_eq!(
            blocks(1024, 1031, 4, 2),
            Some(vec![(1024, 1027), (1028, 1031)])
        );
        assert_eq!(blocks(1024, 1030, 4, 2), None, "7 ports, 2 blocks of 4");
        assert_eq!(blocks(65534, 65535, 2, 1), Some(vec![(65534, 65535)]));
        assert_eq!(blocks(65534, 65535, 2, 2), None);
        assert_eq!(blocks(1, 10, 0, 1), None);
        assert_eq!(blocks(1, 10, 3, 0), Some(vec![]));
    }
}
