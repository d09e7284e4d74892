//! Outbound source NAT: a tenant's VM opens a connection to the Internet through the
//! LB, which sends it with the rule's public address and a port of the VM's block as
//! source, and translates the replies back into NVGRE to that VM.
//!
//! The VM's packets arrive as NVGRE from its host, with an inner destination outside
//! the tenant's networks and no VIP; a DIP's reply to a VIP's client looks the same,
//! so a packet is outbound only when no reply binding and no public VIP claims it.
//! Steering: the VM's packets are steered by their destination endpoint (as the
//! replies of DIPs are, so that the same worker decides "reply or outbound"), the port
//! allocator gives that worker only ports `p ≡ worker (mod W)`, and the Internet's
//! replies, addressed to (outbound address, p), are steered by p. This module must
//! never let a host send for a CA that policy places elsewhere, never hand out a port
//! outside the VM's block, and never create a binding from an Internet packet.

use std::net::IpAddr;

use crate::flow::{Direction, Flow, FlowId, ForwardKey, Owner, ReturnKey, State, steer};
use crate::maglev;
use crate::policy::{OutboundRule, Protocol, Snapshot, Vsid};

use super::drop::DropReason;
use super::emit::Path;
use super::nat::Rewrite;
use super::packet::{IpPacket, Ports};
use super::{Arrival, Ctx, Egress, Matched, Verdict, reply};

/// The outbound rule index of a flow made here, `None` for a VIP flow.
pub(crate) fn rule_of(flow: &Flow) -> Option<u16> {
    match flow.owner() {
        Owner::Outbound(r) => u16::try_from(r).ok(),
        Owner::Pool(_) => None,
    }
}

/// Whether `dst` lies in a prefix of any subnet of `vsid`'s routing domain: such
/// traffic stays inside the tenant's network and is never source-NATed.
fn inside_tenant(policy: &Snapshot, vsid: Vsid, dst: IpAddr) -> bool {
    let Some(rd) = policy.subnet(vsid).map(|s| s.routing_domain) else {
        return true;
    };
    policy
        .subnets()
        .iter()
        .filter(|s| s.routing_domain == rd)
        .any(|s| s.prefixes.iter().any(|p| p.contains(dst)))
}

/// A VM's packet to the Internet, or `None` when it is not one (the caller treats it
/// as a reply of a DIP).
pub(super) fn from_vm(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Option<Verdict> {
    let Arrival::Tunnel { vsid, host, .. } = *arrival else {
        return None;
    };
    let policy = ctx.policy;
    let (r, i) = policy.outbound_source(vsid, ip.src)?;
    if inside_tenant(policy, vsid, ip.dst) {
        return None;
    }
    // The worker reply::ret would steer this packet to, were it a DIP's reply.
    let owner = steer::by_endpoint(ip.dst, ports.dst, ctx.workers);
    if owner != ctx.worker {
        return Some(Verdict::Handoff { worker: owner });
    }
    let as_reply = ReturnKey {
        vsid: vsid.get(),
        proto: ip.proto,
        dip: ip.src,
        dip_port: ports.src,
        peer: ip.dst,
        peer_port: ports.dst,
    };
    if ctx.shard.find_return(&as_reply, ctx.now).is_some() {
        return None;
    }
    if let Some(proto) = Protocol::from_number(ip.proto)
        && policy
            .public_vip_of(vsid, ip.src, ports.src, proto)
            .is_some()
    {
        return None;
    }
    Some(forward(ctx, arrival, host, r, i, ip, ports, out))
}

#[allow(clippy::too_many_arguments)]
fn forward(
    ctx: &mut Ctx,
    arrival: &Arrival,
    host: u16,
    r: u16,
    i: u16,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Verdict {
    let policy = ctx.policy;
    let (Some(rule), Some(vsid)) = (policy.outbound_rule(r), Some(arrival.vsid())) else {
        return Verdict::Drop(DropReason::NotForUs);
    };
    let Some(source) = rule.sources.get(usize::from(i)) else {
        return Verdict::Drop(DropReason::NotForUs);
    };
    // A host may only speak for the CAs that policy places on it.
    if source.host != host {
        return Verdict::Drop(DropReason::SpoofedPa);
    }
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let key = ForwardKey {
        vsid: vsid.get(),
        proto: ip.proto,
        client: ip.src,
        client_port: ports.src,
        vip: ip.dst,
        vip_port: ports.dst,
    };
    // A binding idle past its rule's timeout is expired by the shard (`flow/idle.rs`)
    // like any other, here or by a sweep, and misses.
    let (id, created) = match ctx.shard.find_forward(&key, ctx.now) {
        Some(id) => (id, false),
        None => match new_flow(ctx, rule, r, i, host, ip, ports, key) {
            Ok(id) => (id, true),
            Err(reason) => return Verdict::Drop(reason),
        },
    };
    ctx.shard
        .touch(id, Direction::Forward, ports.tcp_flags, ctx.now);
    let flow = *ctx.shard.flow(id);
    let b = policy.balancer();
    let Some(dst_mac) = b.external.gateway_mac else {
        return unbind(ctx, created, id, Verdict::Drop(DropReason::NoPath));
    };
    let path = Path::Plain {
        port: Egress::External,
        src_mac: b.external.mac,
        dst_mac,
    };
    let rw = Rewrite {
        src: Some((flow.ret.peer, flow.ret.peer_port)),
        dst: None,
        hop: true,
    };
    let v = ctx.send(arrival, path.into(), ip, &rw, Matched::of(&flow), out);
    ctx.direction = Direction::Forward;
    unbind(ctx, created, id, v)
}

/// A first packet that did not go out leaves no binding (as in balance.rs).
fn unbind(ctx: &mut Ctx, created: bool, id: FlowId, v: Verdict) -> Verdict {
    if created && !matches!(v, Verdict::Forward { .. }) {
        ctx.shard.remove(id);
        ctx.counters.new_flows = ctx.counters.new_flows.saturating_sub(1);
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn new_flow(
    ctx: &mut Ctx,
    rule: &OutboundRule,
    r: u16,
    i: u16,
    host: u16,
    ip: &IpPacket,
    ports: &Ports,
    key: ForwardKey,
) -> Result<FlowId, DropReason> {
    let source = rule
        .sources
        .get(usize::from(i))
        .ok_or(DropReason::NotForUs)?;
    let state = State::initial(ports.tcp_flags);
    // The Internet peer would reset a segment from a port it never saw.
    if ports.tcp_flags.is_some() && state != State::SynSent {
        return Err(DropReason::MidStreamNoFlow);
    }
    let template = ReturnKey {
        vsid: 0,
        proto: ip.proto,
        dip: ip.dst,
        dip_port: ports.dst,
        peer: rule.address,
        peer_port: 0,
    };
    let port = ctx
        .shard
        .allocate_port(
            &template,
            source.first_port,
            source.last_port,
            ctx.worker,
            ctx.workers,
        )
        .ok_or(DropReason::OutboundPortsExhausted)?;
    let ret = ReturnKey {
        peer_port: port,
        ..template
    };
    let hash = maglev::flow_hash(key.vsid, ip.proto, ip.src, ports.src, ip.dst, ports.dst);
    let mut flow = Flow::new(key, ret, rule.tenant, 0, i, state);
    flow.set_owner(Owner::Outbound(u32::from(r)));
    flow.flow_id = (hash >> 56) as u8;
    flow.client_host = host;
    ctx.bind(flow)
}

/// Whether a plain packet from the Internet is addressed to an outbound address at a
/// port of its rule: a reply to a VM's connection.
pub(super) fn is_reply(policy: &Snapshot, ip: &IpPacket, ports: &Ports) -> bool {
    policy
        .outbound_by_address(ip.dst)
        .is_some_and(|(_, r)| r.contains_port(ports.dst))
}

/// The Internet's reply to a VM's connection: back to (VM CA, port), NVGRE to its host.
pub(super) fn to_vm(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Verdict {
    let owner = steer::by_nat_port(ports.dst, ctx.workers);
    if owner != ctx.worker {
        return Verdict::Handoff { worker: owner };
    }
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let key = ReturnKey {
        vsid: 0,
        proto: ip.proto,
        dip: ip.src,
        dip_port: ports.src,
        peer: ip.dst,
        peer_port: ports.dst,
    };
    let Some(id) = ctx.shard.find_return(&key, ctx.now) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    let flow = *ctx.shard.flow(id);
    // A reload forgets the flows of a rule it removes (`remap`), so the rule is there.
    if rule_of(&flow)
        .and_then(|r| ctx.policy.outbound_rule(r))
        .is_none()
    {
        return Verdict::Drop(DropReason::NoFlow);
    }
    ctx.shard
        .touch(id, Direction::Return, ports.tcp_flags, ctx.now);
    let path = match reply::path_to_client(ctx.policy, &flow.forward, flow.flow_id) {
        Ok(p) => p,
        Err(r) => return Verdict::Drop(r),
    };
    let rw = Rewrite {
        src: None,
        dst: Some((flow.forward.client, flow.forward.client_port)),
        hop: true,
    };
    let v = ctx.send(arrival, path.into(), ip, &rw, Matched::of(&flow), out);
    ctx.direction = Direction::Return;
    v
}

/// Renumbers an outbound flow for a new snapshot by rule name and source; `None` for
/// a VIP flow (the caller handles those), `Some(false)` to forget it.
pub(crate) fn remap(old: &[OutboundRule], new: &Snapshot, flow: &mut Flow) -> Option<bool> {
    let r = rule_of(flow)?;
    let Some(old_rule) = old.get(usize::from(r)) else {
        return Some(false);
    };
    let client = (flow.forward.vsid, flow.forward.client);
    let kept = (0u16..).zip(new.outbound_rules()).find_map(|(nr, rule)| {
        let same = rule.name == old_rule.name && rule.address == old_rule.address;
        let (i, src) = (0u16..)
            .zip(&rule.sources)
            .find(|(_, s)| (s.vsid.get(), s.ca) == client)?;
        same.then_some((nr, i, rule.tenant, src.host))
    });
    Some(match kept {
        Some((nr, i, tenant, host)) => {
            flow.set_owner(Owner::Outbound(u32::from(nr)));
            flow.dip = i;
            flow.tenant = tenant;
            flow.client_host = host;
            true
        }
        None => false,
    })
}

/// An ICMP error from the Internet about a VM's outbound packet (it quotes the packet
/// as the LB sent it: outbound address and port -> server), e.g. the frag-needed that
/// path MTU discovery depends on: passed on to the VM through the binding, the quoted
/// source turned back into the VM's CA and port. `None` when the error does not quote
/// an outbound address at a port of its rule (icmp::translate takes it).
pub(super) fn icmp_error(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    out: &mut [u8],
) -> Option<Verdict> {
    let Arrival::Plain { .. } = arrival else {
        return None;
    };
    let q = super::icmp::quoted(ip).ok()?;
    let (_, rule) = ctx.policy.outbound_by_address(q.src)?;
    if !rule.contains_port(q.src_port) {
        return None;
    }
    let owner = steer::by_nat_port(q.src_port, ctx.workers);
    if owner != ctx.worker {
        return Some(Verdict::Handoff { worker: owner });
    }
    if ip.ttl <= 1 {
        return Some(Verdict::Drop(DropReason::TtlExpired));
    }
    let key = ReturnKey {
        vsid: 0,
        proto: q.proto,
        dip: q.dst,
        dip_port: q.dst_port,
        peer: q.src,
        peer_port: q.src_port,
    };
    let Some(id) = ctx.shard.find_return(&key, ctx.now) else {
        return Some(Verdict::Drop(DropReason::IcmpNoFlow));
    };
    let flow = *ctx.shard.flow(id);
    let path = match reply::path_to_client(ctx.policy, &flow.forward, flow.flow_id) {
        Ok(p) => p,
        Err(r) => return Some(Verdict::Drop(r)),
    };
    let len = ip.bytes.len();
    if len > path.max_ip_len(ctx.policy) {
        return Some(Verdict::Drop(DropReason::TooBigNoDf));
    }
    let ident = ctx.next_ident();
    let off = match path.write_headers(out, super::emit::ip_ethertype(ip.v6), len, ident) {
        Ok(off) => off,
        Err(r) => return Some(Verdict::Drop(r)),
    };
    let client = flow.forward.client;
    let pkt = out.get_mut(off..off + len)?;
    pkt.copy_from_slice(ip.bytes);
    let q_rw = Rewrite {
        src: Some((client, flow.forward.client_port)),
        dst: None,
        hop: false,
    };
    super::nat::apply(pkt.get_mut(q.at..)?, ip.v6, q.proto, q.l4, &q_rw);
    super::nat::set_ip_header(pkt, ip.v6, ip.src, client, Some(ip.ttl - 1));
    crate::wire::icmp_message::fill_checksum(pkt.get_mut(ip.l4..)?, ip.src, client);
    ctx.direction = Direction::Return;
    Some(Verdict::Forward {
        egress: path.egress(),
        len: off + len,
        matched: Matched::of(&flow),
    })
}
