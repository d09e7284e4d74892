//! The tunnel to every DIP, resolved once per policy snapshot.
//!
//! Resolving a DIP's path takes three policy lookups (subnet for the LB's inner MAC,
//! host, outer address family); doing it per packet cost a hash lookup on the hot
//! path. The engine builds this table when it gets a snapshot, and established flows
//! index it by (pool, DIP) instead.

use crate::policy::Snapshot;

use super::drop::DropReason;
use super::emit::{Path, tunnel_to};
use super::headers::Prebuilt;

/// A DIP's path, and its headers prebuilt for the forwarding fast path.
struct Route {
    path: Path,
    prebuilt: Prebuilt,
}

pub(crate) struct Routes {
    pools: Vec<Vec<Result<Route, DropReason>>>,
}

impl Routes {
    pub(crate) fn build(policy: &Snapshot) -> Routes {
        let pools = policy
            .pools()
            .iter()
            .map(|pool| {
                pool.dips
                    .iter()
                    .map(|dip| {
                        let subnet = policy.subnet(dip.vsid).ok_or(DropReason::UnknownVsid)?;
                        let host = policy.get_host(dip.host).ok_or(DropReason::NoPath)?;
                        let path =
                            tunnel_to(policy, host, dip.vsid.get(), 0, subnet.lb_mac, dip.mac)?;
                        let prebuilt = Prebuilt::new(&path, path.max_ip_len(policy))?;
                        Ok(Route { path, prebuilt })
                    })
                    .collect()
            })
            .collect();
        Routes { pools }
    }

    fn route(&self, pool: u32, dip: u16) -> Result<&Route, DropReason> {
        self.pools
            .get(pool as usize)
            .and_then(|p| p.get(usize::from(dip)))
            .ok_or(DropReason::NoHealthyDip)?
            .as_ref()
            .map_err(|r| *r)
    }

    /// The prebuilt headers towards DIP `dip` of pool `pool` (FlowID patched per packet).
    pub(crate) fn prebuilt(&self, pool: u32, dip: u16) -> Result<&Prebuilt, DropReason> {
        Ok(&self.route(pool, dip)?.prebuilt)
    }

    /// The path to DIP `dip` of pool `pool`, carrying FlowID `flow_id`.
    pub(crate) fn to_dip(&self, pool: u32, dip: u16, flow_id: u8) -> Result<Path, DropReason> {
        let mut path = self.route(pool, dip)?.path;
        if let Path::Tunnel(t) = &mut path {
            t.flow_id = flow_id;
        }
        Ok(path)
    }
}
