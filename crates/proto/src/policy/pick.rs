//! Which DIP a new flow gets. The engine's balancing and the API's `pick` call both
//! come here, so what an operator (or a test comparing instances) is told is exactly
//! what a packet gets. Pure: the answer depends on the pool's table and the flow's
//! fields only, which is what lets every instance agree without talking. It must
//! never read anything a packet does not carry besides the policy.

use std::net::IpAddr;

use super::model::{Distribution, VipPool};
use crate::maglev;

impl VipPool {
    /// The Maglev hash of a new flow from `client`:`client_port` to this pool's
    /// address and `vip_port`, arriving in `vsid` (the frontend's; public: 0). The
    /// affinity modes hash fewer fields (specified in maglev.rs) so that every
    /// connection of a client lands on the same DIP, on every instance.
    pub fn flow_hash(
        &self,
        vsid: u32,
        proto: u8,
        client: IpAddr,
        client_port: u16,
        vip: IpAddr,
        vip_port: u16,
    ) -> u64 {
        let (proto, sport, dport) = match self.distribution {
            Distribution::FiveTuple => (proto, client_port, vip_port),
            Distribution::SourceIpProtocol => (proto, 0, 0),
            Distribution::SourceIp => (0, 0, 0),
        };
        maglev::flow_hash(vsid, proto, client, sport, vip, dport)
    }

    /// The index into `dips` of the DIP a flow with `hash` gets; `None` when no DIP
    /// takes new flows (all down, draining or weight 0).
    pub fn pick(&self, hash: u64) -> Option<u16> {
        self.table.lookup(hash)
    }
}
