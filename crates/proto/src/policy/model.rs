//! The compiled tenant model: validated, typed values the packet engine reads.
//!
//! Every value here has passed validation, so readers need no further checks (a DIP's
//! host exists, its family matches its VIP's, its VSID is not reserved). Nothing here may
//! be mutated after the snapshot is built; a policy change builds a new snapshot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::ids::{HostId, Protocol, TenantId, Vsid};
use super::prefix::IpPrefix;
use crate::wire::MacAddr;

/// The load balancer's own identity: its two network ports and flow-table limits.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Balancer {
    pub name: String,
    /// The Internet side: plain IP, public VIPs, clients.
    pub external: Port,
    /// The PA network: NVGRE to and from Hyper-V hosts.
    pub provider: Port,
    pub flows: FlowLimits,
    pub reload: ReloadPolicy,
    pub health: HealthSettings,
    /// `[[balancer.instance]]`: the identities of several nvlb instances that share this
    /// policy behind ECMP (docs/scale-out.md); empty for a single balancer.
    pub instances: Vec<Instance>,
}

/// One nvlb instance among several that share a policy (`nvlb run --instance NAME`).
/// Everything balanced is shared; only what must come back to this instance and no
/// other is its own: a PA (where hosts send replies to its SNAT CAs and its health
/// probes) and its source-NAT CAs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Instance {
    pub name: String,
    /// Its own PAs, at most one per family, each of a family the shared provider port
    /// has: the outer source of the NVGRE it sends.
    pub provider_addresses: Vec<IpAddr>,
    /// Its own source-NAT CAs, per VSID; in a VSID and family listed here they replace
    /// the subnet's shared `snat`.
    pub snat: Vec<(Vsid, SnatRange)>,
}

/// What every pool's health probes share (`[balancer.health]`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HealthSettings {
    /// Source ports of probes, on the LB's SNAT CAs. Validation keeps the range apart
    /// from every SNAT range, so that the engine can tell a probe's reply from a
    /// flow's by its destination port alone, and no flow ever takes a probe's port.
    pub probe_first: u16,
    pub probe_last: u16,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            probe_first: 61000,
            probe_last: 61999,
        }
    }
}

impl HealthSettings {
    pub fn is_probe_port(&self, port: u16) -> bool {
        (self.probe_first..=self.probe_last).contains(&port)
    }
}

/// How the LB checks each DIP of a pool. Probes travel as data does: NVGRE to the
/// DIP's host, from the LB's SNAT CA in the DIP's VSID.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// The port probed; `None`: each DIP's own port.
    pub port: Option<u16>,
    /// Time between the starts of two probes of one DIP.
    pub interval: Duration,
    /// How long one probe may take; never longer than `interval`.
    pub timeout: Duration,
    /// Consecutive successes that bring a down DIP up.
    pub rise: u32,
    /// Consecutive failures that take an up DIP down.
    pub fall: u32,
}

/// What one probe does.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HealthProbe {
    /// SYN answered by SYN-ACK (then reset).
    Tcp,
    /// `GET path HTTP/1.0` answered with `status` (and a body containing `body`).
    Http {
        path: String,
        /// The Host header; `None`: the DIP's address.
        host: Option<String>,
        status: u16,
        body: Option<String>,
    },
}

impl HealthProbe {
    pub fn name(&self) -> &'static str {
        match self {
            HealthProbe::Tcp => "tcp",
            HealthProbe::Http { .. } => "http",
        }
    }
}

/// What a reload does to flows bound to a DIP that the new policy no longer has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RemovedDips {
    /// Keep the DIP, with no new flows, until its flows end or `drain_timeout` passes:
    /// what operators expect from a planned removal (connection draining).
    Drain,
    /// Forget its bindings at once; the next packet of such a flow is balanced afresh
    /// (and the new DIP's stack resets it).
    Reset,
}

/// How a reload treats established flows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReloadPolicy {
    pub removed_dips: RemovedDips,
    pub drain_timeout: Duration,
}

impl Default for ReloadPolicy {
    fn default() -> Self {
        ReloadPolicy {
            removed_dips: RemovedDips::Drain,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// One network port of the balancer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Port {
    pub mac: MacAddr,
    /// Addresses the balancer owns on this port (answers ARP/ND for; on the provider
    /// port, the outer source of NVGRE it emits). At most one per family on the provider.
    pub addresses: Vec<IpAddr>,
    /// IP MTU of the attached network.
    pub mtu: u16,
    /// Next hop for destinations not on the link. Always set on the external port.
    pub gateway_mac: Option<MacAddr>,
}

impl Port {
    /// The first IPv4 address declared.
    pub fn address_v4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    /// The first IPv6 address declared.
    pub fn address_v6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }

    pub fn owns(&self, a: IpAddr) -> bool {
        self.addresses.contains(&a)
    }
}

/// Bounds on flow state; the counts are per worker shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowLimits {
    pub max_flows_per_worker: u32,
    /// Per tenant and per worker: one tenant cannot fill a shard.
    pub max_flows_per_tenant: u32,
    pub tcp_syn_timeout: Duration,
    pub tcp_established_timeout: Duration,
    pub tcp_closing_timeout: Duration,
    pub udp_timeout: Duration,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_flows_per_worker: 1 << 20,
            max_flows_per_tenant: 1 << 19,
            tcp_syn_timeout: Duration::from_secs(20),
            tcp_established_timeout: Duration::from_secs(300),
            tcp_closing_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(30),
        }
    }
}

/// A Hyper-V host on the PA network.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Host {
    pub name: String,
    pub pa_v4: Option<Ipv4Addr>,
    pub pa_v6: Option<Ipv6Addr>,
    pub mac: MacAddr,
    /// The host's own next hop off the PA network (its default gateway there): where
    /// it sends a floating-IP DIP's replies directly, bypassing the LB. `None`: the
    /// host has no such path and every reply goes through the LB.
    pub gateway_mac: Option<MacAddr>,
}

impl Host {
    /// The host's PA of the given family.
    pub fn pa(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.pa_v6.map(IpAddr::V6)
        } else {
            self.pa_v4.map(IpAddr::V4)
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tenant {
    pub name: String,
    pub id: TenantId,
}

/// A tenant's routing domain: the virtual subnets whose VMs may reach each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RoutingDomain {
    pub name: String,
    pub tenant: TenantId,
}

/// A virtual subnet (one VSID) and the balancer's presence inside it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VirtualSubnet {
    pub vsid: Vsid,
    pub tenant: TenantId,
    /// Index into [`Snapshot::routing_domains`](super::Snapshot::routing_domains).
    pub routing_domain: u32,
    pub prefixes: Vec<IpPrefix>,
    /// The balancer's MAC inside this VSID: inner source MAC of what it emits.
    pub lb_mac: MacAddr,
    /// The balancer's own CAs here, used as source for full NAT; at most one CA per
    /// family, possibly with several disjoint port ranges.
    pub snat: Vec<SnatRange>,
}

/// A source-NAT address of the balancer in a VSID, with the ports it may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SnatRange {
    pub ca: IpAddr,
    pub first_port: u16,
    pub last_port: u16,
}

impl SnatRange {
    pub fn contains_port(&self, port: u16) -> bool {
        (self.first_port..=self.last_port).contains(&port)
    }

    /// Number of ports in the range (1..=65535).
    pub fn len(&self) -> u32 {
        u32::from(self.last_port)
            .saturating_sub(u32::from(self.first_port))
            .saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        self.first_port > self.last_port
    }
}

/// HNV policy: a customer address in a VSID lives on this host, behind this MAC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LookupRecord {
    pub vsid: Vsid,
    pub ca: IpAddr,
    pub host: HostId,
    pub mac: MacAddr,
}

/// A VIP and the DIPs that serve it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VipPool {
    pub name: String,
    pub tenant: TenantId,
    /// [`Vsid::PUBLIC`] for a public VIP, else the VSID a CA VIP lives in.
    pub frontend: Vsid,
    pub address: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// Which fields of a new flow choose its DIP.
    pub distribution: Distribution,
    /// In declaration order; weights 0..=65535, not all zero.
    pub dips: Vec<Dip>,
    /// Maglev table over `dips` (indices into it), built with the snapshot so that a
    /// worker never builds one on the packet path; health changes swap in a new one.
    pub table: crate::maglev::Table,
    /// `None`: no health check, every DIP counts as up.
    pub health: Option<HealthCheck>,
    /// All-ports, ICMP echo, inbound NAT origin, idle timeout and reset (`rules.rs`).
    pub rule: super::rules::RuleOptions,
    /// Direct server return: the LB leaves the destination (VIP and port) as it is, the
    /// DIP holds the VIP itself and its host returns the replies without the LB.
    pub floating_ip: bool,
}

/// Which fields of a new flow feed the Maglev hash: the whole 5-tuple spreads flows,
/// the affinity modes keep a client on one DIP across its connections (the modes
/// tenants know from cloud load balancers as "source IP affinity").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Distribution {
    /// Source and destination address and port, protocol.
    #[default]
    FiveTuple,
    /// Source and destination address, protocol ("client IP and protocol").
    SourceIpProtocol,
    /// Source and destination address ("client IP").
    SourceIp,
}

impl Distribution {
    /// The name used in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::FiveTuple => "five_tuple",
            Distribution::SourceIpProtocol => "source_ip_protocol",
            Distribution::SourceIp => "source_ip",
        }
    }

    pub fn parse(s: &str) -> Option<Distribution> {
        [
            Distribution::FiveTuple,
            Distribution::SourceIpProtocol,
            Distribution::SourceIp,
        ]
        .into_iter()
        .find(|d| d.name() == s)
    }
}

impl VipPool {
    pub fn is_public(&self) -> bool {
        self.frontend.is_public()
    }
}

/// One backend of a pool, resolved through its lookup record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Dip {
    pub vsid: Vsid,
    pub ca: IpAddr,
    pub port: u16,
    /// The configured weight; the Maglev table uses it only while `state` is Active.
    pub weight: u32,
    pub host: HostId,
    pub mac: MacAddr,
    pub state: DipState,
}

impl Dip {
    /// The DIP's identity across snapshots (pool positions change on reload).
    pub fn key(&self) -> DipKey {
        DipKey {
            vsid: self.vsid,
            ca: self.ca,
            port: self.port,
        }
    }

    /// The weight the Maglev table gives it now.
    pub fn effective_weight(&self) -> u32 {
        if self.state == DipState::Active {
            self.weight
        } else {
            0
        }
    }
}

/// What identifies a DIP within its pool, whatever its position: the same triple the
/// Maglev hash keys on.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct DipKey {
    pub vsid: Vsid,
    pub ca: IpAddr,
    pub port: u16,
}

/// Whether a DIP takes new flows. Only Active DIPs get Maglev slots; the others keep
/// serving the flows already bound to them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DipState {
    #[default]
    Active,
    /// `drain = true` in the policy, or removed by a reload and draining.
    Draining,
    /// Failed its health checks.
    Down,
}

impl DipState {
    pub fn name(self) -> &'static str {
        match self {
            DipState::Active => "active",
            DipState::Draining => "draining",
            DipState::Down => "down",
        }
    }
}
