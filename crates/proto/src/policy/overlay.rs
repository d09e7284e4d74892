//! Run-time state laid over a declared policy: health checks and draining decide which
//! DIPs take new flows, without touching what the operator wrote.
//!
//! The result is an ordinary snapshot, so the engine needs no second source of truth:
//! a DIP that is down or draining keeps its place in its pool (its flows keep their
//! binding) but gets no Maglev slots. Only pools whose active set changed get a new
//! table, so that a health flap in one pool costs nothing in the others.

use crate::maglev::{self, MaglevError};

use super::ids::PoolId;
use super::model::{Dip, DipState, VipPool};
use super::snapshot::Snapshot;

impl Snapshot {
    /// A copy in which each DIP's state is `state(pool, dip)` and `extra` DIPs (removed
    /// by a reload but still draining) are appended to their pools as Draining. Every
    /// pool whose Maglev input changed gets a new table.
    pub fn overlay(
        &self,
        state: impl Fn(&VipPool, &Dip) -> DipState,
        extra: &[(PoolId, Dip)],
    ) -> Result<Snapshot, MaglevError> {
        let mut next = self.clone();
        for (id, pool) in (0..).zip(next.pools_mut().iter_mut()) {
            let before: Vec<u32> = pool.dips.iter().map(Dip::effective_weight).collect();
            let states: Vec<DipState> = pool.dips.iter().map(|d| state(pool, d)).collect();
            for (d, s) in pool.dips.iter_mut().zip(states) {
                d.state = s;
            }
            let mut grew = false;
            for (_, dip) in extra.iter().filter(|(p, _)| *p == id) {
                if pool.dips.iter().all(|d| d.key() != dip.key()) {
                    pool.dips.push(Dip {
                        state: DipState::Draining,
                        ..*dip
                    });
                    grew = true;
                }
            }
            let after: Vec<u32> = pool.dips.iter().map(Dip::effective_weight).collect();
            if grew || before != after {
                pool.table = table_of(&pool.dips, pool.table.size())?;
            }
        }
        Ok(next)
    }
}

/// The Maglev table of a pool's DIPs as they stand (only Active DIPs get slots). The
/// one place both validation and the overlay build tables, so they cannot disagree.
pub(crate) fn table_of(dips: &[Dip], size: u32) -> Result<maglev::Table, MaglevError> {
    let backends: Vec<maglev::Backend> = dips
        .iter()
        .map(|d| maglev::Backend {
            key: maglev::backend_key(d.vsid.get(), d.ca, d.port),
            weight: d.effective_weight(),
        })
        .collect();
    maglev::Table::build(&backends, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev::flow_hash;
    use std::net::{IpAddr, Ipv4Addr};

    fn example() -> Snapshot {
        let text = include_str!("../../../../lb-config/example.toml").to_string();
        Snapshot::from_toml(&text, "example.toml").unwrap()
    }

    fn owners(pool: &VipPool) -> Vec<u16> {
        (0..20_000u16)
            .map(|p| {
                let h = flow_hash(
                    0,
                    6,
                    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                    p,
                    pool.address,
                    pool.port,
                );
                pool.table.lookup(h).unwrap_or(u16::MAX)
            })
            .collect()
    }

    #[test]
    fn a_down_dip_loses_only_its_own_flows() {
        let s = example();
        let (id, pool) = s.pool_named("blue-web").unwrap();
        let victim = pool.dips[1].key();
        let o = s
            .overlay(
                |_, d| {
                    if d.key() == victim {
                        DipState::Down
                    } else {
                        d.state
                    }
                },
                &[],
            )
            .unwrap();
        let (before, after) = (owners(pool), owners(o.pool(id)));
        assert!(
            after.iter().all(|&d| d != 1),
            "the down DIP still gets flows"
        );
        // Maglev is near-minimal, not minimal: a few flows of healthy DIPs move with the
        // table too (established ones keep their DIP through the flow table).
        let (mut own, mut others) = (0, 0);
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                if *b == 1 { own += 1 } else { others += 1 }
            }
        }
        let on_victim = before.iter().filter(|&&d| d == 1).count();
        assert_eq!(own, on_victim, "every flow of the down DIP moved");
        eprintln!(
            "table moves: {own} of the down DIP, {others} of healthy DIPs, of {}",
            before.len()
        );
        assert!(
            others * 20 < before.len(),
            "more than 5% of healthy flows moved: {others}"
        );
        // Other pools keep their very table.
        for (other, p) in (0..).zip(s.pools()) {
            if other != id {
                assert_eq!(o.pool(other).table, p.table);
            }
        }
    }

    #[test]
    fn every_dip_down_leaves_an_empty_table() {
        let s = example();
        let o = s.overlay(|_, _| DipState::Down, &[]).unwrap();
        assert!(o.pools().iter().all(|p| p.table.is_empty()));
    }

    #[test]
    fn extra_dips_drain_without_slots() {
        let s = example();
        let (id, pool) = s.pool_named("blue-web").unwrap();
        let mut ghost = pool.dips[0];
        ghost.port = 8081;
        let o = s.overlay(|_, d| d.state, &[(id, ghost)]).unwrap();
        let p = o.pool(id);
        assert_eq!(p.dips.len(), pool.dips.len() + 1);
        let last = p.dips.last().unwrap();
        assert_eq!(last.state, DipState::Draining);
        assert_eq!(p.table.slots_of((p.dips.len() - 1) as u16), 0);
        // Unchanged weights elsewhere give the same owners.
        assert_eq!(owners(pool), owners(p));
    }
}
