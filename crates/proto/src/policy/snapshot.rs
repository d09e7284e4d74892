//! The immutable policy snapshot and the lookups the packet engine makes per packet.
//!
//! Built once from validated parts, with hash indices so that each lookup is one probe.
//! It must never change after construction and never be built from unvalidated values;
//! a new policy is a new snapshot, swapped in whole by the caller.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};

use super::diag::Diagnostic;
use super::ids::{HostId, PoolId, Protocol, SubnetId, TenantId, Vsid};
use super::model::{
    Balancer, Host, LookupRecord, RoutingDomain, SnatRange, Tenant, VipPool, VirtualSubnet,
};
use super::outbound::OutboundRule;
use super::rules::IcmpEcho;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;
/// A DIP endpoint as a reply shows it: (VSID, CA, port, protocol).
type DipEndpoint = (Vsid, IpAddr, u16, Protocol);

/// What validation hands to [`Snapshot::assemble`]: the model in declaration order.
pub(crate) struct Parts {
    pub balancer: Balancer,
    pub tenants: Vec<Tenant>,
    pub routing_domains: Vec<RoutingDomain>,
    pub hosts: Vec<Host>,
    pub subnets: Vec<VirtualSubnet>,
    pub lookups: Vec<LookupRecord>,
    pub pools: Vec<VipPool>,
    pub outbound: Vec<OutboundRule>,
    pub warnings: Vec<Diagnostic>,
}

/// The declared world, validated: tenants, hosts, virtual subnets, lookup records and
/// VIP pools, with the indices the data plane needs.
#[derive(Clone, Debug)]
pub struct Snapshot {
    balancer: Balancer,
    tenants: Vec<Tenant>,
    routing_domains: Vec<RoutingDomain>,
    hosts: Vec<Host>,
    subnets: Vec<VirtualSubnet>,
    lookups: Vec<LookupRecord>,
    pools: Vec<VipPool>,
    warnings: Vec<Diagnostic>,
    vips: Map<(Vsid, IpAddr, Protocol, u16), PoolId>,
    vip_addresses: Set<(Vsid, IpAddr)>,
    subnet_by_vsid: Map<Vsid, SubnetId>,
    lookup_by_ca: Map<(Vsid, IpAddr), usize>,
    host_by_pa: Map<IpAddr, HostId>,
    snat_addresses: Set<(Vsid, IpAddr)>,
    /// (DIP VSID, CA, port, protocol) -> the public VIP it serves and its index there;
    /// `None` when it serves more than one public VIP (a reply cannot tell which).
    public_backends: Map<DipEndpoint, Option<(PoolId, u16)>>,
    /// VIP addresses whose echo requests are not answered by the LB (`rules.rs`), with
    /// the pool a forwarded echo goes to.
    echo: Map<(Vsid, IpAddr), (IcmpEcho, PoolId)>,
    outbound: Vec<OutboundRule>,
    /// (VSID, CA) of a VM that may send to the Internet -> (rule, source index).
    outbound_by_source: Map<(Vsid, IpAddr), (u16, u16)>,
    /// Outbound address -> its rule (validation keeps addresses unique).
    outbound_by_address: Map<IpAddr, u16>,
    /// (DIP VSID, DIP MAC, VIP) of every DIP of a floating-IP VIP: what a host may
    /// deliver with the VIP as inner destination, and send back directly.
    floating: Set<(Vsid, crate::wire::MacAddr, IpAddr)>,
}

impl Snapshot {
    /// Indexes validated parts. Uniqueness of every key was checked by validation, so
    /// the first insert of a key is the only one.
    pub(crate) fn assemble(parts: Parts) -> Snapshot {
        let mut vips = Map::default();
        let mut vip_addresses = Set::default();
        let mut echo = Map::default();
        for (id, pool) in (0..).zip(&parts.pools) {
            vips.entry((pool.frontend, pool.address, pool.protocol, pool.port))
                .or_insert(id);
            if pool.rule.all_ports {
                // Port 0 is no port a packet carries: the all-ports key of each protocol.
                vips.entry((pool.frontend, pool.address, Protocol::Udp, 0))
                    .or_insert(id);
            }
            if pool.rule.icmp_echo != IcmpEcho::Answer {
                echo.entry((pool.frontend, pool.address))
                    .or_insert((pool.rule.icmp_echo, id));
            }
            vip_addresses.insert((pool.frontend, pool.address));
        }
        let mut public_backends = Map::default();
        for (id, pool) in (0..).zip(&parts.pools) {
            if !pool.is_public() {
                continue;
            }
            for (i, dip) in (0..).zip(&pool.dips) {
                public_backends
                    .entry((dip.vsid, dip.ca, dip.port, pool.protocol))
                    .and_modify(|e: &mut Option<(PoolId, u16)>| *e = None)
                    .or_insert(Some((id, i)));
            }
        }
        let mut subnet_by_vsid = Map::default();
        let mut snat_addresses = Set::default();
        for (id, subnet) in (0..).zip(&parts.subnets) {
            subnet_by_vsid.entry(subnet.vsid).or_insert(id);
            for range in &subnet.snat {
                snat_addresses.insert((subnet.vsid, range.ca));
            }
        }
        let mut lookup_by_ca = Map::default();
        for (i, rec) in parts.lookups.iter().enumerate() {
            lookup_by_ca.entry((rec.vsid, rec.ca)).or_insert(i);
        }
        let mut host_by_pa = Map::default();
        for (id, host) in (0..).zip(&parts.hosts) {
            for pa in [host.pa(false), host.pa(true)].into_iter().flatten() {
                host_by_pa.entry(pa).or_insert(id);
            }
        }
        let mut outbound_by_source = Map::default();
        let mut outbound_by_address = Map::default();
        for (r, rule) in (0u16..).zip(&parts.outbound) {
            outbound_by_address.entry(rule.address).or_insert(r);
            for (i, src) in (0u16..).zip(&rule.sources) {
                outbound_by_source
                    .entry((src.vsid, src.ca))
                    .or_insert((r, i));
            }
        }
        let mut floating = Set::default();
        for pool in parts.pools.iter().filter(|p| p.floating_ip) {
            for dip in &pool.dips {
                floating.insert((dip.vsid, dip.mac, pool.address));
            }
        }
        Snapshot {
            balancer: parts.balancer,
            tenants: parts.tenants,
            routing_domains: parts.routing_domains,
            hosts: parts.hosts,
            subnets: parts.subnets,
            lookups: parts.lookups,
            pools: parts.pools,
            warnings: parts.warnings,
            vips,
            vip_addresses,
            subnet_by_vsid,
            lookup_by_ca,
            host_by_pa,
            snat_addresses,
            public_backends,
            echo,
            outbound: parts.outbound,
            outbound_by_source,
            outbound_by_address,
            floating,
        }
    }

    /// Every outbound rule, in declaration order.
    pub fn outbound_rules(&self) -> &[OutboundRule] {
        &self.outbound
    }

    /// The outbound rule a VM (`vsid`, `ca`) sends through, and its source index there.
    pub fn outbound_source(&self, vsid: Vsid, ca: IpAddr) -> Option<(u16, u16)> {
        self.outbound_by_source.get(&(vsid, ca)).copied()
    }

    /// The outbound rule whose address is `addr`.
    pub fn outbound_by_address(&self, addr: IpAddr) -> Option<(u16, &OutboundRule)> {
        let r = *self.outbound_by_address.get(&addr)?;
        Some((r, self.outbound.get(usize::from(r))?))
    }

    /// The outbound rule with index `r` (as in [`Snapshot::outbound_source`] and
    /// [`OUTBOUND_POOL_TAG`](super::OUTBOUND_POOL_TAG)-tagged flows), if it exists.
    pub fn outbound_rule(&self, r: u16) -> Option<&OutboundRule> {
        self.outbound.get(usize::from(r))
    }

    /// Whether the VM with `mac` in `vsid` is a DIP of a floating-IP VIP `vip`: it may
    /// receive packets addressed to the VIP and answer from it (direct server return).
    pub fn serves_floating_vip(&self, vsid: Vsid, mac: crate::wire::MacAddr, vip: IpAddr) -> bool {
        self.floating.contains(&(vsid, mac, vip))
    }

    /// The balancer's own identity: ports, flow limits, reload and health settings.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Findings that did not stop the policy from loading (e.g. a small PA MTU).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// Every tenant; a [`TenantId`] indexes this slice.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// Every routing domain, in declaration order ([`VirtualSubnet::routing_domain`] indexes
    /// this slice).
    pub fn routing_domains(&self) -> &[RoutingDomain] {
        &self.routing_domains
    }

    /// Every host; a [`HostId`] indexes this slice.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub(crate) fn pools_mut(&mut self) -> &mut [VipPool] {
        &mut self.pools
    }

    /// The pool named `name` (VIP names are unique across tenants).
    pub fn pool_named(&self, name: &str) -> Option<(PoolId, &VipPool)> {
        (0..).zip(&self.pools).find(|(_, p)| p.name == name)
    }

    /// The host named `name`.
    pub fn host_named(&self, name: &str) -> Option<HostId> {
        (0..)
            .zip(&self.hosts)
            .find(|(_, h)| h.name == name)
            .map(|(id, _)| id)
    }

    /// Every VIP pool; a [`PoolId`] indexes this slice.
    pub fn pools(&self) -> &[VipPool] {
        &self.pools
    }

    /// Every virtual subnet, in declaration order.
    pub fn subnets(&self) -> &[VirtualSubnet] {
        &self.subnets
    }

    /// Every lookup record, in declaration order (what a host simulator loads).
    pub fn lookups(&self) -> &[LookupRecord] {
        &self.lookups
    }

    /// # Panics
    /// If `id` did not come from this snapshot. Ids kept across a policy swap (in flow
    /// entries) must go through [`Snapshot::get_host`] instead.
    pub fn host(&self, id: HostId) -> &Host {
        &self.hosts[usize::from(id)]
    }

    /// # Panics
    /// If `id` did not come from this snapshot; see [`Snapshot::get_pool`].
    pub fn pool(&self, id: PoolId) -> &VipPool {
        &self.pools[id as usize]
    }

    /// The host `id`, or `None` when this snapshot has no such host: safe for ids kept
    /// across a policy swap.
    pub fn get_host(&self, id: HostId) -> Option<&Host> {
        self.hosts.get(usize::from(id))
    }

    /// The pool `id`, or `None` when this snapshot has no such pool: safe for ids kept
    /// across a policy swap.
    pub fn get_pool(&self, id: PoolId) -> Option<&VipPool> {
        self.pools.get(usize::try_from(id).ok()?)
    }

    /// The tenant `id`, or `None` when this snapshot has no such tenant.
    pub fn tenant(&self, id: TenantId) -> Option<&Tenant> {
        self.tenants.get(usize::from(id))
    }

    /// The pool serving `(vsid, addr, proto, port)`; `vsid` is [`Vsid::PUBLIC`] for
    /// traffic from the Internet side. The VSID is part of the key because CA VIPs of
    /// different tenants may share an address.
    /// A rule for this port wins over an all-ports rule of the address (port 0).
    pub fn find_vip(&self, vsid: Vsid, addr: IpAddr, proto: Protocol, port: u16) -> Option<PoolId> {
        if port == 0 {
            return None; // no service listens on port 0; 0 keys the all-ports rules
        }
        self.vips
            .get(&(vsid, addr, proto, port))
            .or_else(|| self.vips.get(&(vsid, addr, proto, 0)))
            .copied()
    }

    /// What an echo request to a VIP address gets, and the pool a forwarded one goes
    /// to (`None` with [`IcmpEcho::Answer`]).
    pub fn icmp_echo(&self, vsid: Vsid, addr: IpAddr) -> (IcmpEcho, Option<PoolId>) {
        match self.echo.get(&(vsid, addr)) {
            Some(&(e, pool)) => (e, Some(pool)),
            None => (IcmpEcho::Answer, None),
        }
    }

    /// The public VIP that a DIP endpoint serves, and the DIP's index in it: lets any
    /// instance translate a reply it holds no binding for (after a restart, or behind
    /// ECMP). `None` for a DIP of no public VIP, or of more than one.
    pub fn public_vip_of(
        &self,
        vsid: Vsid,
        ca: IpAddr,
        port: u16,
        proto: Protocol,
    ) -> Option<(PoolId, u16)> {
        self.public_backends
            .get(&(vsid, ca, port, proto))
            .copied()
            .flatten()
    }

    /// Whether any pool listens on this address in this VSID: tells "not ours" from
    /// "ours but no such port", and which addresses ARP/ND must answer for.
    pub fn is_vip_address(&self, vsid: Vsid, addr: IpAddr) -> bool {
        self.vip_addresses.contains(&(vsid, addr))
    }

    /// The declared subnet of `vsid`; `None` for an undeclared VSID or [`Vsid::PUBLIC`].
    pub fn subnet(&self, vsid: Vsid) -> Option<&VirtualSubnet> {
        let id = *self.subnet_by_vsid.get(&vsid)?;
        self.subnets.get(usize::try_from(id).ok()?)
    }

    /// HNV lookup: which host and MAC a CA in a VSID has.
    pub fn lookup(&self, vsid: Vsid, ca: IpAddr) -> Option<&LookupRecord> {
        self.lookups.get(*self.lookup_by_ca.get(&(vsid, ca))?)
    }

    /// The host that owns provider address `pa`: tells which host an NVGRE packet came from.
    pub fn host_by_pa(&self, pa: IpAddr) -> Option<HostId> {
        self.host_by_pa.get(&pa).copied()
    }

    /// The balancer's source-NAT CA of one family in a VSID: its first declared range.
    /// Further ranges of the same CA are in [`Snapshot::snat_ranges`].
    pub fn snat_for(&self, vsid: Vsid, v6: bool) -> Option<&SnatRange> {
        self.snat_ranges(vsid, v6).next()
    }

    /// Every source-NAT range of one family in a VSID (all of the same CA).
    pub fn snat_ranges(&self, vsid: Vsid, v6: bool) -> impl Iterator<Item = &SnatRange> {
        self.subnet(vsid)
            .map(|s| s.snat.as_slice())
            .unwrap_or(&[])
            .iter()
            .filter(move |r| r.ca.is_ipv6() == v6)
    }

    /// Whether `addr` is one of the balancer's own source-NAT CAs in `vsid`.
    pub fn is_snat_address(&self, vsid: Vsid, addr: IpAddr) -> bool {
        self.snat_addresses.contains(&(vsid, addr))
    }

    /// Both VSIDs are declared and belong to one routing domain (so one tenant).
    /// [`Vsid::PUBLIC`] belongs to none.
    pub fn same_routing_domain(&self, a: Vsid, b: Vsid) -> bool {
        match (self.subnet(a), self.subnet(b)) {
            (Some(x), Some(y)) => x.routing_domain == y.routing_domain,
            _ => false,
        }
    }
}
