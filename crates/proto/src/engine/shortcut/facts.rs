//! The policy facts the shortcut checks per packet, resolved once per snapshot and
//! indexed by what a binding already names (its pool, DIP and host), so that a packet
//! of a bound flow costs no policy hash lookup.

use std::net::IpAddr;

use crate::policy::{Snapshot, Vsid};
use crate::wire::MacAddr;

use super::super::Egress;
use super::super::emit::Path;
use super::super::headers::Prebuilt;

/// What one pool's VIP needs checked on a client's packet.
#[derive(Clone, Copy, Debug)]
pub(super) struct PoolFacts {
    /// The general path would treat a packet to this VIP as this pool's (no outbound
    /// rule or source-NAT CA shares the address, a CA VIP's subnet is declared); where
    /// it might not, every packet of the pool goes the general way.
    pub eligible: bool,
    pub frontend: u32,
    pub address: IpAddr,
    pub floating_ip: bool,
}

/// What one DIP needs checked on its reply to a public VIP's client.
#[derive(Clone, Copy, Debug)]
pub(super) struct DipFacts {
    /// The general path would take the DIP's packet as a reply: the pool is not
    /// floating (a floating DIP answers from the VIP, mostly not through the LB), the
    /// DIP's subnet is declared and no outbound rule claims its CA.
    pub reply_ok: bool,
    pub vsid: u32,
    pub ca: IpAddr,
    pub host: u16,
}

/// The per-snapshot tables of the shortcut.
pub(crate) struct Facts {
    pub(super) macs: [MacAddr; 2],
    /// The provider port's addresses (`Port::owns`), at most one per family.
    pub(super) provider: [Option<IpAddr>; 2],
    pub(super) pools: Vec<PoolFacts>,
    /// By pool, then DIP index.
    pub(super) dips: Vec<Vec<DipFacts>>,
    /// Each host's PAs, kept only where the PA names that host back (`host_by_pa`).
    pub(super) host_pas: Vec<[Option<IpAddr>; 2]>,
    /// The headers towards the Internet gateway, when the external port has one.
    pub(super) to_internet: Option<Prebuilt>,
}

impl Facts {
    pub(crate) fn build(policy: &Snapshot) -> Facts {
        let b = policy.balancer();
        let pools = policy
            .pools()
            .iter()
            .map(|p| {
                let eligible = if p.frontend == Vsid::PUBLIC {
                    policy.outbound_by_address(p.address).is_none()
                } else {
                    policy.subnet(p.frontend).is_some()
                        && !policy.is_snat_address(p.frontend, p.address)
                };
                PoolFacts {
                    eligible,
                    frontend: p.frontend.get(),
                    address: p.address,
                    floating_ip: p.floating_ip,
                }
            })
            .collect();
        let dips = policy
            .pools()
            .iter()
            .map(|p| {
                p.dips
                    .iter()
                    .map(|d| DipFacts {
                        reply_ok: !p.floating_ip
                            && policy.subnet(d.vsid).is_some()
                            && policy.outbound_source(d.vsid, d.ca).is_none(),
                        vsid: d.vsid.get(),
                        ca: d.ca,
                        host: d.host,
                    })
                    .collect()
            })
            .collect();
        let host_pas = (0..policy.hosts().len())
            .map(|i| {
                let id = i as u16;
                let own = |pa: Option<IpAddr>| pa.filter(|&a| policy.host_by_pa(a) == Some(id));
                let h = &policy.hosts()[i];
                [own(h.pa_v4.map(IpAddr::V4)), own(h.pa_v6.map(IpAddr::V6))]
            })
            .collect();
        let provider = [
            b.provider.address_v4().map(IpAddr::V4),
            b.provider.address_v6().map(IpAddr::V6),
        ];
        let to_internet = b.external.gateway_mac.and_then(|dst_mac| {
            let path = Path::Plain {
                port: Egress::External,
                src_mac: b.external.mac,
                dst_mac,
            };
            Prebuilt::new(&path, path.max_ip_len(policy)).ok()
        });
        Facts {
            macs: [b.external.mac, b.provider.mac],
            // `Port::owns` by a comparison or two when the port has at most one address
            // per family (validation's rule); otherwise no tunnelled packet is taken.
            provider: if b.provider.addresses.len() <= 2
                && b.provider
                    .addresses
                    .iter()
                    .all(|a| provider.contains(&Some(*a)))
            {
                provider
            } else {
                [None, None]
            },
            pools,
            dips,
            host_pas,
            to_internet,
        }
    }

    /// Whether `pa` is a PA of host `host` that names it back.
    pub(super) fn host_has_pa(&self, host: u16, pa: IpAddr) -> bool {
        self.host_pas
            .get(usize::from(host))
            .is_some_and(|pas| pas.contains(&Some(pa)))
    }
}
