//! Carrying flow bindings from one policy snapshot to the next.
//!
//! Bindings name their pool, DIP, tenant and client host by position in the snapshot
//! that made them, and positions change when an operator edits the file. Before a
//! worker adopts a new snapshot it renumbers every binding by identity (pool by name
//! and frontend, DIP by its Maglev key, tenant by name) so that established flows keep
//! their DIP; a binding whose pool or DIP is gone is forgotten. The client host of a
//! full-NAT flow is looked up afresh, so that a live-migrated client keeps its flows.
//! This must never move a flow to a different DIP: it only renumbers or forgets.

use hashbrown::HashMap;

use crate::flow::{Flow, FlowShard};
use crate::policy::{DipKey, Snapshot, Vsid};

use crate::flow::NO_HOST;

/// Where each old pool (and each of its DIPs) lives in the new snapshot.
struct PoolMap {
    pool: u32,
    dips: Vec<Option<u16>>,
}

/// Position translations from `old` to `new`.
pub(crate) struct Remap {
    pools: Vec<Option<PoolMap>>,
    tenants: Vec<Option<u16>>,
    /// The old snapshot's outbound rules, by which outbound flows are renumbered.
    outbound: Vec<crate::policy::OutboundRule>,
}

impl Remap {
    pub(crate) fn between(old: &Snapshot, new: &Snapshot) -> Remap {
        let mut by_name: HashMap<&str, u32> = HashMap::new();
        for (id, p) in (0..).zip(new.pools()) {
            by_name.insert(p.name.as_str(), id);
        }
        let pools = old
            .pools()
            .iter()
            .map(|op| {
                let &id = by_name.get(op.name.as_str())?;
                let np = new.get_pool(id)?;
                let same_vip = np.frontend == op.frontend
                    && np.address == op.address
                    && np.protocol == op.protocol
                    && np.port == op.port
                    && tenant_name(old, op.tenant) == tenant_name(new, np.tenant);
                if !same_vip {
                    return None;
                }
                let index: HashMap<DipKey, u16> =
                    (0..).zip(&np.dips).map(|(i, d)| (d.key(), i)).collect();
                let dips = op
                    .dips
                    .iter()
                    .map(|d| index.get(&d.key()).copied())
                    .collect();
                Some(PoolMap { pool: id, dips })
            })
            .collect();
        let tenants = old
            .tenants()
            .iter()
            .map(|t| {
                (0..)
                    .zip(new.tenants())
                    .find(|(_, n)| n.name == t.name)
                    .map(|(i, _)| i)
            })
            .collect();
        Remap {
            pools,
            tenants,
            outbound: old.outbound_rules().to_vec(),
        }
    }

    /// Renumbers `flow` for the new snapshot; false when it must be forgotten.
    fn apply(&self, flow: &mut Flow, new: &Snapshot) -> bool {
        if let Some(keep) = super::outbound::remap(&self.outbound, new, flow) {
            return keep;
        }
        let Some(Some(pm)) = self.pools.get(flow.pool as usize) else {
            return false;
        };
        let Some(Some(dip)) = pm.dips.get(usize::from(flow.dip)) else {
            return false;
        };
        let Some(Some(tenant)) = self.tenants.get(usize::from(flow.tenant)) else {
            return false;
        };
        flow.pool = pm.pool;
        flow.dip = *dip;
        flow.tenant = *tenant;
        if flow.client_host != NO_HOST {
            let host = Vsid::new(flow.forward.vsid)
                .and_then(|v| new.lookup(v, flow.forward.client))
                .map(|r| r.host);
            match host {
                Some(h) => flow.client_host = h,
                None => return false,
            }
        }
        true
    }

    /// Renumbers every binding of `shard`; returns how many were forgotten.
    pub(crate) fn shard(&self, shard: &mut FlowShard, new: &Snapshot) -> usize {
        shard.remap(|flow| self.apply(flow, new))
    }
}

fn tenant_name(s: &Snapshot, id: u16) -> Option<&str> {
    s.tenant(id).map(|t| t.name.as_str())
}
