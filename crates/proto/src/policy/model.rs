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
    /// `[balancer] name`: names this balancer in reports and lab monitoring.
    pub name: String,
    /// The Internet side: plain IP, public VIPs, clients.
    pub external: Port,
    /// The PA network: NVGRE to and from Hyper-V hosts.
    pub provider: Port,
    /// Flow-table bounds and idle timeouts (`[balancer.flows]`).
    pub flows: FlowLimits,
    /// What a reload does to established flows (`[balancer.reload]`).
    pub reload: ReloadPolicy,
    /// What every pool's health probes share (`[balancer.health]`).
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
    /// The name `nvlb run --instance NAME` selects; unique among the instances.
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
    /// Last source port of probes (inclusive).
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
    /// Whether `port` is in the probe source range, i.e. a packet to it answers a probe.
    pub fn is_probe_port(&self, port: u16) -> bool {
        (self.probe_first..=self.probe_last).contains(&port)
    }
}

/// How the LB checks each DIP of a pool. Probes travel as data does: NVGRE to the
/// DIP's host, from the LB's SNAT CA in the DIP's VSID.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthCheck {
    /// What one probe sends and expects.
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
        /// Request path, sent as is.
        path: String,
        /// The Host header; `None`: the DIP's address.
        host: Option<String>,
        /// Expected HTTP status code of the response.
        status: u16,
        /// Text the response body must contain; `None`: any body.
        body: Option<String>,
    },
}

impl HealthProbe {
    /// The name used in the policy file's `protocol` key.
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
    /// Drain or forget the flows of DIPs the new policy removes.
    pub removed_dips: RemovedDips,
    /// With [`RemovedDips::Drain`], how long a removed DIP keeps its flows at most.
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
    /// The port's own MAC: source of what the balancer sends on it.
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

    /// Whether `a` is one of the port's own addresses.
    pub fn owns(&self, a: IpAddr) -> bool {
        self.addresses.contains(&a)
    }
}

/// Bounds on flow state; the counts are per worker shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FlowLimits {
    /// Most bindings one worker's flow table holds; new flows beyond it are refused.
    pub max_flows_per_worker: u32,
    /// Per tenant and per worker: one tenant cannot fill a shard.
    pub max_flows_per_tenant: u32,
    /// Bindings each worker's table has room for from its start: memory held while
    /// idle, traded for new flows that never wait for the table to grow.
    pub preallocate_flows_per_worker: u32,
    /// Idle timeout of a TCP flow before its handshake completes.
    pub tcp_syn_timeout: Duration,
    /// Idle timeout of an established TCP flow.
    pub tcp_established_timeout: Duration,
    /// Idle timeout of a TCP flow after FINs both ways or a RST.
    pub tcp_closing_timeout: Duration,
    /// Idle timeout of a UDP flow.
    pub udp_timeout: Duration,
}

impl Default for FlowLimits {
    fn default() -> Self {
        FlowLimits {
            max_flows_per_worker: 1 << 20,
            max_flows_per_tenant: 1 << 19,
            preallocate_flows_per_worker: 1 << 16,
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
    /// Host name, unique; lookup records name their host by it.
    pub name: String,
    /// The host's IPv4 PA, if it has one: outer destination of NVGRE sent to it.
    pub pa_v4: Option<Ipv4Addr>,
    /// The host's IPv6 PA, if it has one.
    pub pa_v6: Option<Ipv6Addr>,
    /// MAC of the host's PA interface: outer destination MAC of NVGRE sent to it, unless
    /// the provider port has a `gateway_mac`.
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

/// A tenant: an owner of VSIDs, VIPs and outbound rules, and the unit of the per-tenant
/// flow quota.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tenant {
    /// Tenant name, unique in the policy.
    pub name: String,
    /// The tenant's own index in [`Snapshot::tenants`](super::Snapshot::tenants).
    pub id: TenantId,
}

/// A tenant's routing domain: the virtual subnets whose VMs may reach each other.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RoutingDomain {
    /// Name, as written in `[[tenant.routing_domain]]`.
    pub name: String,
    /// The tenant that owns the domain.
    pub tenant: TenantId,
}

/// A virtual subnet (one VSID) and the balancer's presence inside it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VirtualSubnet {
    /// The subnet's 24-bit ID, never reserved (RFC 7637).
    pub vsid: Vsid,
    /// The tenant that owns the subnet.
    pub tenant: TenantId,
    /// Index into [`Snapshot::routing_domains`](super::Snapshot::routing_domains).
    pub routing_domain: u32,
    /// The CA prefixes of the subnet; every CA used in it lies inside one of them.
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
    /// The balancer's CA: source of full-NAT traffic it sends into the VSID.
    pub ca: IpAddr,
    /// First source port the balancer may allocate on `ca` (inclusive).
    pub first_port: u16,
    /// Last source port the balancer may allocate on `ca` (inclusive).
    pub last_port: u16,
}

impl SnatRange {
    /// Whether `port` is in `first_port..=last_port`.
    pub fn contains_port(&self, port: u16) -> bool {
        (self.first_port..=self.last_port).contains(&port)
    }

    /// Number of ports in the range (1..=65535).
    pub fn len(&self) -> u32 {
        u32::from(self.last_port)
            .saturating_sub(u32::from(self.first_port))
            .saturating_add(1)
    }

    /// True when `first_port > last_port`; validation never builds such a range.
    pub fn is_empty(&self) -> bool {
        self.first_port > self.last_port
    }
}

/// HNV policy: a customer address in a VSID lives on this host, behind this MAC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LookupRecord {
    /// VSID of the customer address.
    pub vsid: Vsid,
    /// Customer address (CA) of the VM.
    pub ca: IpAddr,
    /// The Hyper-V host the VM runs on: where NVGRE for it goes.
    pub host: HostId,
    /// The VM's MAC: inner destination MAC of frames sent to it.
    pub mac: MacAddr,
}

/// A VIP and the DIPs that serve it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VipPool {
    /// The rule's name (an inbound NAT rule's pool adds `:PORT` for a port range).
    pub name: String,
    /// The tenant that owns the VIP.
    pub tenant: TenantId,
    /// [`Vsid::PUBLIC`] for a public VIP, else the VSID a CA VIP lives in.
    pub frontend: Vsid,
    /// The VIP address; its family is that of every DIP.
    pub address: IpAddr,
    /// TCP or UDP; an all-ports rule is kept as TCP plus its rule flag.
    pub protocol: Protocol,
    /// The VIP port; 0 for an all-ports rule.
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

    /// The mode a policy-file name stands for; `None` for an unknown name.
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
    /// Whether the VIP is on the Internet side ([`Vsid::PUBLIC`]) rather than a CA VIP.
    pub fn is_public(&self) -> bool {
        self.frontend.is_public()
    }
}

/// One backend of a pool, resolved through its lookup record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Dip {
    /// The VSID the DIP lives in.
    pub vsid: Vsid,
    /// The DIP's customer address.
    pub ca: IpAddr,
    /// The DIP's port: where forwarded packets go (the VIP port unless the policy says
    /// otherwise). 0 in an all-ports rule, whose packets keep their own port.
    pub port: u16,
    /// The configured weight; the Maglev table uses it only while `state` is Active.
    pub weight: u32,
    /// The host the DIP runs on, from its lookup record.
    pub host: HostId,
    /// The DIP VM's MAC, from its lookup record.
    pub mac: MacAddr,
    /// Whether the DIP takes new flows.
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
    /// The VSID the DIP lives in.
    pub vsid: Vsid,
    /// The DIP's customer address.
    pub ca: IpAddr,
    /// The DIP's port.
    pub port: u16,
}

/// Whether a DIP takes new flows. Only Active DIPs get Maglev slots; the others keep
/// serving the flows already bound to them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum DipState {
    /// Takes new flows (Maglev slots in proportion to its weight).
    #[default]
    Active,
    /// `drain = true` in the policy, or removed by a reload and draining.
    Draining,
    /// Failed its health checks.
    Down,
}

impl DipState {
    /// The name used in the policy file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            DipState::Active => "active",
            DipState::Draining => "draining",
            DipState::Down => "down",
        }
    }
}
