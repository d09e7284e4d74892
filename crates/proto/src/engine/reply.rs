//! DIP to client: find the binding from the reply, check that the sending host is the
//! one policy places the DIP on, translate DIP -> VIP (and LB CA -> client for full
//! NAT), and send it to the client: plain IP to the Internet, or NVGRE back into the
//! client's VSID.

use std::net::IpAddr;

use crate::flow::{Direction, Flow, FlowId, ReturnKey, steer};
use crate::policy::{HostId, Vsid};

use super::drop::DropReason;
use super::emit::{Path, tunnel_to};
use super::nat::Rewrite;
use super::packet::{IpPacket, Ports};
use super::{Arrival, Ctx, Egress, Matched, Verdict, tri};

pub(super) fn ret(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Verdict {
    let Arrival::Tunnel { vsid, host, .. } = *arrival else {
        return Verdict::Drop(DropReason::NotForUs);
    };
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let dip = (ip.src, ports.src);
    let peer = (ip.dst, ports.dst);
    let (id, flow) =
        match dip_side_binding(ctx, vsid, host, ip.proto, dip, peer, DropReason::NoFlow) {
            Ok(found) => found,
            Err(Verdict::Drop(DropReason::NoFlow)) => {
                return from_policy(ctx, arrival, vsid, host, ip, ports, out);
            }
            Err(verdict) => return verdict,
        };
    ctx.shard
        .touch(id, Direction::Return, ports.tcp_flags, ctx.now);
    super::idle_reset::note(ctx, id, Direction::Return, ip, ports);
    let path = tri!(path_to_client(ctx.policy, &flow.forward, flow.flow_id));
    let rw = Rewrite {
        src: Some((flow.forward.vip, flow.forward.vip_port)),
        dst: flow
            .is_full_nat()
            .then_some((flow.forward.client, flow.forward.client_port)),
        hop: true,
    };
    ctx.send(arrival, path.into(), ip, &rw, Matched::of(&flow), out)
}

/// A reply of a public VIP's DIP with no binding here (this instance restarted, or ECMP
/// brought the flow's other packets to another instance): translated from policy alone,
/// since a public DIP endpoint serves exactly one VIP, and sent to the Internet. No
/// binding is made: the reply direction needs none, and the forward direction picks
/// the same DIP from the same Maglev table. Full-NAT replies cannot be translated
/// without their binding (the client is not in the packet) and stay dropped.
fn from_policy(
    ctx: &mut Ctx,
    arrival: &Arrival,
    vsid: Vsid,
    host: HostId,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Verdict {
    let policy = ctx.policy;
    let Some(proto) = crate::policy::Protocol::from_number(ip.proto) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    let Some((pool_id, dip)) = policy.public_vip_of(vsid, ip.src, ports.src, proto) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    let Some(pool) = policy.get_pool(pool_id) else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    let placed_on = pool.dips.get(usize::from(dip)).map(|d| d.host);
    if placed_on != Some(host) {
        return Verdict::Drop(DropReason::SpoofedPa);
    }
    let Some(dst_mac) = policy.balancer().external.gateway_mac else {
        return Verdict::Drop(DropReason::NoPath);
    };
    let path = Path::Plain {
        port: Egress::External,
        src_mac: policy.balancer().external.mac,
        dst_mac,
    };
    let rw = Rewrite {
        src: Some((pool.address, pool.port)),
        dst: None,
        hop: true,
    };
    let matched = Matched {
        tenant: pool.tenant,
        pool: pool_id,
        dip,
    };
    ctx.send(arrival, path.into(), ip, &rw, matched, out)
}

/// The binding of a packet sent from the DIP's side (`dip` -> `peer` in `vsid`) by
/// `host`: steered to the worker that owns it, found, and accepted only from the host
/// that policy places the DIP on. Checked before the binding is touched: a spoofed
/// packet must not keep a flow alive or close it. `miss` is counted when nothing matches.
pub(super) fn dip_side_binding(
    ctx: &mut Ctx,
    vsid: Vsid,
    host: HostId,
    proto: u8,
    dip: (IpAddr, u16),
    peer: (IpAddr, u16),
    miss: DropReason,
) -> Result<(FlowId, Flow), Verdict> {
    let owner = if ctx.policy.is_snat_address(vsid, peer.0) {
        steer::by_nat_port(peer.1, ctx.workers)
    } else {
        steer::by_endpoint(peer.0, peer.1, ctx.workers)
    };
    if owner != ctx.worker {
        return Err(Verdict::Handoff { worker: owner });
    }
    let key = ReturnKey {
        vsid: vsid.get(),
        proto,
        dip: dip.0,
        dip_port: dip.1,
        peer: peer.0,
        peer_port: peer.1,
    };
    let id = ctx
        .shard
        .find_return(&key, ctx.now)
        .ok_or(Verdict::Drop(miss))?;
    let flow = *ctx.shard.flow(id);
    let placed_on = ctx
        .policy
        .pools()
        .get(flow.pool as usize)
        .and_then(|p| p.dips.get(usize::from(flow.dip)))
        .map(|d| d.host)
        .ok_or(Verdict::Drop(miss))?;
    if placed_on != host {
        return Err(Verdict::Drop(DropReason::SpoofedPa));
    }
    Ok((id, flow))
}

/// The path to a flow's client: the Internet gateway, or the client's host in its VSID.
pub(super) fn path_to_client(
    policy: &crate::policy::Snapshot,
    forward: &crate::flow::ForwardKey,
    flow_id: u8,
) -> Result<Path, DropReason> {
    let b = policy.balancer();
    if forward.vsid == 0 {
        let dst_mac = b.external.gateway_mac.ok_or(DropReason::NoPath)?;
        return Ok(Path::Plain {
            port: Egress::External,
            src_mac: b.external.mac,
            dst_mac,
        });
    }
    let vsid = Vsid::new(forward.vsid).ok_or(DropReason::UnknownVsid)?;
    let record = policy
        .lookup(vsid, forward.client)
        .ok_or(DropReason::UnknownCa)?;
    let subnet = policy.subnet(vsid).ok_or(DropReason::UnknownVsid)?;
    tunnel_to(
        policy,
        policy.host(record.host),
        forward.vsid,
        flow_id,
        subnet.lb_mac,
        record.mac,
    )
}
