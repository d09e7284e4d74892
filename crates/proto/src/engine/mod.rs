//! The pure per-packet pipeline: `process(now, frame, out) -> Verdict` over one flow
//! shard.
//!
//! Every path of docs/architecture.md's "Packet paths" table is here: public and CA VIPs
//! forward and return, ICMP errors through NAT, packet-too-big, ARP/ND, echo, and a
//! counted drop for everything else. The engine never does I/O, never reads a clock,
//! never takes a lock and never allocates per packet; it never panics on any input.
//! The data plane owns sockets and threads and hands frames in.

mod balance;
pub mod batch;
pub mod counters;
pub mod drop;
mod dsr;
mod echo_rule;
mod emit;
mod headers;
mod icmp;
mod idle_reset;
mod nat;
mod neighbor;
mod outbound;
pub mod packet;
mod peek;
mod remap;
mod reply;
mod route;
mod shortcut;

use std::net::IpAddr;
use std::sync::Arc;

use crate::flow::{FlowShard, Nanos, ShardLimits, Timeouts, shard::seconds};
use crate::policy::{HostId, PoolId, Snapshot, TenantId, Vsid};
use crate::wire::{MacAddr, ethernet, gre, ip_proto};

pub use batch::{MAX_BATCH, Outputs};
pub use counters::Counters;
pub use drop::DropReason;
pub use emit::{Path, Tunnel, next_hop_mac, outer_addresses};
pub use idle_reset::MAX_RESET_FRAME;
use packet::IpPacket;

/// Which side of the LB a frame leaves on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Egress {
    /// The Internet side: plain IP.
    External,
    /// The PA network: NVGRE (and the LB's own ARP/ND/ICMP on its PAs).
    Provider,
}

/// What a forwarded packet matched, for `nvlb replay` and per-VIP accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    /// Tenant of the flow.
    pub tenant: TenantId,
    /// VIP pool of the flow, or an outbound rule's index tagged with
    /// [`OUTBOUND_POOL_TAG`](crate::policy::OUTBOUND_POOL_TAG) (not counted per pool).
    pub pool: PoolId,
    /// Index of the DIP in its pool.
    pub dip: u16,
}

impl Matched {
    pub(crate) fn of(flow: &crate::flow::Flow) -> Matched {
        Matched {
            tenant: flow.tenant,
            pool: flow.pool,
            dip: flow.dip,
        }
    }
}

/// The engine's decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `out[..len]` is the translated frame, to send on `egress`.
    Forward {
        /// The port to send it on.
        egress: Egress,
        /// Length of the frame written at the start of `out`.
        len: usize,
        /// The flow it belongs to, for per-pool and per-DIP counters.
        matched: Matched,
    },
    /// `out[..len]` is a frame the LB answers with (ARP/ND, echo, packet-too-big).
    Reply {
        /// The port to send it on: back towards the sender.
        egress: Egress,
        /// Length of the frame written at the start of `out`.
        len: usize,
    },
    /// The flow belongs to another worker's shard: hand the frame over unchanged.
    Handoff {
        /// Index of the worker whose shard owns the flow (0-based, below the worker count).
        worker: u16,
    },
    /// The frame, unchanged, is for the LB's own control plane: the reply to a health
    /// probe (NVGRE to an LB SNAT CA, TCP to a probe port). Any worker may get it; it
    /// is never a flow and never a drop.
    Local,
    /// The frame is dropped; the reason is counted in [`Counters::drops`].
    Drop(DropReason),
}

/// Output buffer size that fits any verdict for an input of `frame_len` bytes.
pub const fn output_len(frame_len: usize) -> usize {
    frame_len + 128
}

/// Where a packet came from, so that answers can go back the same way.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arrival {
    /// Plain IP on `port`, from the neighbour with `peer_mac`.
    Plain { port: Egress, peer_mac: MacAddr },
    /// NVGRE in `vsid` from `host`.
    Tunnel {
        vsid: Vsid,
        host: HostId,
        lb_pa: IpAddr,
        host_pa: IpAddr,
        host_mac: MacAddr,
        inner_src_mac: MacAddr,
    },
}

impl Arrival {
    pub(crate) fn vsid(&self) -> Vsid {
        match self {
            Arrival::Plain { .. } => Vsid::PUBLIC,
            Arrival::Tunnel { vsid, .. } => *vsid,
        }
    }

    /// The path back to the sender, for answers the LB itself makes.
    pub(crate) fn path_back(&self, policy: &Snapshot, flow_id: u8) -> Result<Path, DropReason> {
        let b = policy.balancer();
        Ok(match *self {
            Arrival::Plain { port, peer_mac } => {
                let src_mac = if port == Egress::Provider {
                    b.provider.mac
                } else {
                    b.external.mac
                };
                Path::Plain {
                    port,
                    src_mac,
                    dst_mac: peer_mac,
                }
            }
            Arrival::Tunnel {
                vsid,
                lb_pa,
                host_pa,
                host_mac,
                inner_src_mac,
                ..
            } => {
                let subnet = policy.subnet(vsid).ok_or(DropReason::UnknownVsid)?;
                Path::Tunnel(Tunnel {
                    vsid: vsid.get(),
                    flow_id,
                    outer_src: lb_pa,
                    outer_dst: host_pa,
                    outer_src_mac: b.provider.mac,
                    outer_dst_mac: host_mac,
                    inner_src_mac: subnet.lb_mac,
                    inner_dst_mac: inner_src_mac,
                })
            }
        })
    }
}

/// How [`Ctx::send`] writes the headers: from a path, or from prebuilt headers with
/// the flow's FlowID.
pub(crate) enum Via<'a> {
    Path(Path),
    Prebuilt(&'a headers::Prebuilt, u8),
}

impl From<Path> for Via<'_> {
    fn from(path: Path) -> Self {
        Via::Path(path)
    }
}

/// What one call of `process` works with: borrowed pieces of the engine, so that the
/// policy can be read while the shard is changed.
pub(crate) struct Ctx<'a> {
    pub policy: &'a Snapshot,
    pub routes: &'a route::Routes,
    pub shard: &'a mut FlowShard,
    pub counters: &'a mut Counters,
    pub worker: u16,
    pub workers: u16,
    pub ident: &'a mut u16,
    /// Now, in seconds, as flows keep time.
    pub now: u32,
    /// Which way a forwarded packet went (client to DIP unless `send` says otherwise),
    /// for the per-VIP counters.
    pub direction: crate::flow::Direction,
}

impl Ctx<'_> {
    /// Inserts a new flow's binding and counts it, or names why the table refused it.
    pub(crate) fn bind(
        &mut self,
        flow: crate::flow::Flow,
    ) -> Result<crate::flow::FlowId, DropReason> {
        let id = self.shard.insert(flow, self.now).map_err(|e| match e {
            crate::flow::InsertError::TableFull => DropReason::FlowTableFull,
            crate::flow::InsertError::TenantQuota => DropReason::TenantQuota,
            crate::flow::InsertError::Duplicate => DropReason::FlowConflict,
        })?;
        self.counters.new_flows += 1;
        Ok(id)
    }

    pub(crate) fn next_ident(&mut self) -> u16 {
        *self.ident = self.ident.wrapping_add(1);
        *self.ident
    }

    /// Sends the IP packet `ip` along `path` after applying `rw`, or answers with
    /// packet-too-big when it does not fit.
    pub(crate) fn send(
        &mut self,
        arrival: &Arrival,
        via: Via,
        ip: &IpPacket,
        rw: &nat::Rewrite,
        matched: Matched,
        out: &mut [u8],
    ) -> Verdict {
        let len = ip.bytes.len();
        let (room, egress) = match &via {
            Via::Path(path) => (path.max_ip_len(self.policy), path.egress()),
            Via::Prebuilt(pre, _) => (pre.room(), pre.egress()),
        };
        if len > room {
            if !ip.dont_frag {
                return Verdict::Drop(DropReason::TooBigNoDf);
            }
            return icmp::too_big(self, arrival, ip, room, out);
        }
        let ident = self.next_ident();
        let inner_type = emit::ip_ethertype(ip.v6);
        // Prebuilt headers lead to a DIP; a computed path leads back to the client.
        self.direction = match via {
            Via::Prebuilt(..) => crate::flow::Direction::Forward,
            Via::Path(_) => crate::flow::Direction::Return,
        };
        let written = match via {
            Via::Path(path) => path.write_headers(out, inner_type, len, ident),
            Via::Prebuilt(pre, flow_id) => pre.write(out, inner_type, len, ident, flow_id),
        };
        let off = match written {
            Ok(off) => off,
            Err(r) => return Verdict::Drop(r),
        };
        let inner = &mut out[off..off + len];
        inner.copy_from_slice(ip.bytes);
        nat::apply(inner, ip.v6, ip.proto, ip.l4, rw);
        Verdict::Forward {
            egress,
            len: off + len,
            matched,
        }
    }
}

/// One worker's engine: a policy snapshot, a flow shard and counters.
pub struct Engine {
    policy: Arc<Snapshot>,
    routes: route::Routes,
    shard: FlowShard,
    counters: Counters,
    worker: u16,
    workers: u16,
    ident: u16,
    /// An expired flow whose client was reset and whose DIP is next (`idle_reset.rs`).
    resetting: Option<(crate::flow::Flow, crate::flow::Acks)>,
    /// The policy facts of the established-flow shortcut (`shortcut/`).
    facts: shortcut::Facts,
    /// Whether `process` tries the shortcut first (off only to test it against the
    /// general path).
    shortcut: bool,
}

/// Shard bounds and timeouts from the policy.
pub fn shard_limits(policy: &Snapshot) -> ShardLimits {
    let f = &policy.balancer().flows;
    ShardLimits {
        max_flows: f.max_flows_per_worker,
        max_per_tenant: f.max_flows_per_tenant,
        preallocate: f.preallocate_flows_per_worker,
        timeouts: Timeouts::from_durations(
            f.tcp_syn_timeout,
            f.tcp_established_timeout,
            f.tcp_closing_timeout,
            f.udp_timeout,
        ),
    }
}

impl Engine {
    /// The engine of worker `worker` out of `workers` (both at least 1).
    pub fn new(policy: Arc<Snapshot>, worker: u16, workers: u16) -> Engine {
        let mut shard = FlowShard::new(shard_limits(&policy));
        shard.set_rules(idle_reset::rules_of(&policy));
        let counters = Counters::for_policy(&policy);
        Engine {
            routes: route::Routes::build(&policy),
            facts: shortcut::Facts::build(&policy),
            shortcut: true,
            policy,
            shard,
            counters,
            worker,
            workers: workers.max(1),
            ident: 0,
            resetting: None,
        }
    }

    /// Replaces the policy snapshot. Established bindings keep their DIPs (renumbered
    /// to the new snapshot's positions); bindings whose pool or DIP is gone are
    /// forgotten, and their number is returned.
    pub fn set_policy(&mut self, policy: Arc<Snapshot>) -> usize {
        if Arc::ptr_eq(&policy, &self.policy) {
            return 0;
        }
        let forgotten =
            remap::Remap::between(&self.policy, &policy).shard(&mut self.shard, &policy);
        // Per-VIP and per-DIP counters follow their pool and DIP by identity, so that a
        // reload never makes a Prometheus counter go backwards.
        self.counters = self.counters.remap(&self.policy, &policy);
        self.shard.set_limits(shard_limits(&policy));
        self.shard.set_rules(idle_reset::rules_of(&policy));
        // Resets still queued name pools of the old snapshot: the worker sends them
        // before it adopts a new one, so whatever is left here could only go astray.
        let mut unsent = u64::from(self.resetting.take().is_some());
        while self.shard.take_reset().is_some() {
            unsent += 2;
        }
        self.counters.idle_resets_unsent += unsent;
        self.count_unqueued_resets();
        self.routes = route::Routes::build(&policy);
        self.facts = shortcut::Facts::build(&policy);
        self.policy = policy;
        forgotten
    }

    /// Turns the established-flow shortcut off or on: the general path alone decides
    /// every frame when off. For tests and fuzz targets that hold the two to the same
    /// answers; a data plane never needs it.
    #[doc(hidden)]
    pub fn set_shortcut(&mut self, on: bool) {
        self.shortcut = on;
    }

    /// The policy snapshot this engine works with now.
    pub fn policy(&self) -> &Arc<Snapshot> {
        &self.policy
    }

    /// This worker's counters since it started; the collector sums them across workers.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// This worker's flow table, read by the metrics publisher and tests.
    pub fn shard(&self) -> &FlowShard {
        &self.shard
    }

    /// This engine's worker index, as given to [`Engine::new`].
    pub fn worker(&self) -> u16 {
        self.worker
    }

    /// Removes up to `budget` expired bindings; call between batches.
    pub fn expire(&mut self, now: Nanos, budget: usize) -> usize {
        let n = self.shard.sweep(seconds(now), budget);
        self.count_unqueued_resets();
        n
    }

    /// Moves the shard's count of flows it could not queue for resets (expired by a
    /// sweep, here or on the packet path) into the counters: two segments each.
    fn count_unqueued_resets(&mut self) {
        self.counters.idle_resets_unsent += 2 * self.shard.take_unqueued_resets();
    }

    /// Whether expired flows wait for their TCP resets ([`Engine::next_reset`]).
    pub fn has_resets(&self) -> bool {
        self.resetting.is_some() || self.shard.pending_resets() > 0
    }

    /// Writes the next RST of a flow that timed out idle under a `tcp_reset` rule into
    /// `out` (at least [`MAX_RESET_FRAME`] bytes): first to its client, then to its
    /// DIP. Call between batches, after [`Engine::expire`], until it returns `None`.
    pub fn next_reset(&mut self, out: &mut [u8]) -> Option<(Egress, usize)> {
        loop {
            let ((flow, acks), to_client) = match self.resetting.take() {
                Some(f) => (f, false),
                None => {
                    let f = self.shard.take_reset()?;
                    self.resetting = Some(f);
                    (f, true)
                }
            };
            self.ident = self.ident.wrapping_add(1);
            // A flow whose path is gone (its pool removed by a reload) is skipped.
            match idle_reset::write(
                &self.policy,
                &self.routes,
                &flow,
                &acks,
                to_client,
                self.ident,
                out,
            ) {
                Ok(sent) => {
                    self.counters.idle_resets_sent += 1;
                    return Some(sent);
                }
                Err(_) => self.counters.idle_resets_unsent += 1,
            }
        }
    }

    /// Decides what to do with one received frame. Output frames are written to
    /// `out`, which should be at least [`output_len`]`(frame.len())` bytes long.
    pub fn process(&mut self, now: Nanos, frame: &[u8], out: &mut [u8]) -> Verdict {
        if self.shortcut
            && let Some(v) = self.shortcut(now, frame, out, None)
        {
            return v;
        }
        self.process_general(now, frame, out)
    }

    /// `process` by the general path: every kind of frame. Kept out of line so that
    /// the shortcut's callers do not pay its prologue.
    #[inline(never)]
    pub(super) fn process_general(&mut self, now: Nanos, frame: &[u8], out: &mut [u8]) -> Verdict {
        let mut ctx = Ctx {
            policy: &self.policy,
            routes: &self.routes,
            shard: &mut self.shard,
            counters: &mut self.counters,
            worker: self.worker,
            workers: self.workers,
            ident: &mut self.ident,
            now: seconds(now),
            direction: crate::flow::Direction::Forward,
        };
        let flows_before = ctx.counters.new_flows;
        let verdict = match dispatch(&mut ctx, frame, out) {
            Ok(v) => v,
            Err(reason) => Verdict::Drop(reason),
        };
        let direction = ctx.direction;
        let new_flow = self.counters.new_flows != flows_before;
        self.counters
            .record(frame.len(), &verdict, new_flow, direction);
        verdict
    }
}

/// `?` on a `Result<_, DropReason>` inside functions that return a `Verdict`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reason) => return $crate::engine::Verdict::Drop(reason),
        }
    };
}
pub(crate) use tri;

fn dispatch(ctx: &mut Ctx, frame: &[u8], out: &mut [u8]) -> Result<Verdict, DropReason> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::MalformedEthernet)?;
    let b = ctx.policy.balancer();
    let dst = eth.dst_addr();
    if dst != b.external.mac && dst != b.provider.mac && !dst.is_broadcast() && !dst.is_multicast()
    {
        return Err(DropReason::NotOurMac);
    }
    let v6 = match eth.ethertype() {
        ethernet::ethertype::ARP => return Ok(neighbor::arp(ctx, &eth, out)),
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        ethernet::ethertype::VLAN | ethernet::ethertype::QINQ => {
            return Err(DropReason::VlanTagged);
        }
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    let ip = IpPacket::parse(eth.payload(), v6)?;
    let provider_owned = b.provider.owns(ip.dst);
    if ip.proto == ip_proto::GRE && provider_owned {
        return nvgre(ctx, &ip, out);
    }
    let port = if provider_owned {
        Egress::Provider
    } else {
        Egress::External
    };
    let arrival = Arrival::Plain {
        port,
        peer_mac: eth.src_addr(),
    };
    Ok(inner_ip(ctx, &arrival, &ip, out))
}

/// Decapsulates NVGRE and checks it against RFC 7637 and policy before anything else
/// looks at the inner frame.
fn nvgre(ctx: &mut Ctx, outer: &IpPacket, out: &mut [u8]) -> Result<Verdict, DropReason> {
    if outer.fragment {
        return Err(DropReason::Fragment);
    }
    let g = gre::Packet::new_checked(outer.l4_bytes()).map_err(|e| match e {
        crate::wire::Error::Unsupported(_) => DropReason::GreFlags,
        _ => DropReason::MalformedGre,
    })?;
    if g.checksum_present() || g.seq_present() {
        return Err(DropReason::GreFlags);
    }
    let key = g.key().ok_or(DropReason::GreFlags)?;
    if g.protocol_type() != ethernet::ethertype::TEB {
        return Err(DropReason::GreProtocol);
    }
    let vsid = Vsid::from_key(key).ok_or(DropReason::ReservedVsid)?;
    if ctx.policy.subnet(vsid).is_none() {
        return Err(DropReason::UnknownVsid);
    }
    let host = ctx
        .policy
        .host_by_pa(outer.src)
        .ok_or(DropReason::UnknownPa)?;
    let inner =
        ethernet::Frame::new_checked(g.payload()).map_err(|_| DropReason::MalformedInner)?;
    let arrival = Arrival::Tunnel {
        vsid,
        host,
        lb_pa: outer.dst,
        host_pa: outer.src,
        // Answers go to the host policy declares for this PA, never to whatever MAC
        // sent the frame (a spoofer's); forwarding uses the same MAC (emit::tunnel_to).
        host_mac: emit::next_hop_mac(
            ctx.policy,
            ctx.policy.get_host(host).ok_or(DropReason::UnknownPa)?,
        ),
        inner_src_mac: inner.src_addr(),
    };
    let v6 = match inner.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        ethernet::ethertype::ARP => return Ok(neighbor::inner_arp(ctx, &arrival, &inner, out)),
        ethernet::ethertype::VLAN | ethernet::ethertype::QINQ => return Err(DropReason::InnerVlan),
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    let ip = IpPacket::parse(inner.payload(), v6)?;
    Ok(inner_ip(ctx, &arrival, &ip, out))
}

/// An IP packet from a client or a DIP: plain (VSID 0) or decapsulated.
fn inner_ip(ctx: &mut Ctx, arrival: &Arrival, ip: &IpPacket, out: &mut [u8]) -> Verdict {
    if ip.is_icmp() {
        if ip.v6 && neighbor::is_nd(ip) {
            return neighbor::nd(ctx, arrival, ip, out);
        }
        if ip.fragment {
            return Verdict::Drop(DropReason::Fragment);
        }
        if ip.is_icmp_error() {
            if let Some(v) = outbound::icmp_error(ctx, arrival, ip, out) {
                return v;
            }
            return icmp::translate(ctx, arrival, ip, out);
        }
        return icmp::echo(ctx, arrival, ip, out);
    }
    if ip.fragment {
        return Verdict::Drop(DropReason::Fragment);
    }
    let ports = tri!(ip.ports());
    if is_probe_reply(ctx.policy, arrival, ip, &ports) {
        return Verdict::Local;
    }
    match arrival {
        Arrival::Plain { .. } if outbound::is_reply(ctx.policy, ip, &ports) => {
            outbound::to_vm(ctx, arrival, ip, &ports, out)
        }
        Arrival::Plain { .. } => balance::forward(ctx, arrival, ip, &ports, out),
        Arrival::Tunnel { vsid, .. } => {
            if ctx.policy.is_vip_address(*vsid, ip.dst) {
                balance::forward(ctx, arrival, ip, &ports, out)
            } else if let Some(v) = outbound::from_vm(ctx, arrival, ip, &ports, out) {
                v
            } else {
                reply::ret(ctx, arrival, ip, &ports, out)
            }
        }
    }
}

/// A health probe's reply: TCP in NVGRE to one of the LB's SNAT CAs, to a port of the
/// probe range (which validation keeps apart from every SNAT range and CA VIP port).
fn is_probe_reply(
    policy: &Snapshot,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &packet::Ports,
) -> bool {
    let Arrival::Tunnel { vsid, .. } = arrival else {
        return false;
    };
    ip.proto == ip_proto::TCP
        && policy.balancer().health.is_probe_port(ports.dst)
        && policy.is_snat_address(*vsid, ip.dst)
}

#[cfg(test)]
mod tests;
