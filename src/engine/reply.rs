//! DIP to client: find the binding from the reply, check that the sending host is the
//! one policy places the DIP on, translate DIP -> VIP (and LB CA -> client for full
//! NAT), and send it to the client: plain IP to the Internet, or NVGRE back into the
//! client's VSID.

use crate::flow::{Direction, ReturnKey, steer};
use crate::policy::Vsid;

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
    let policy = ctx.policy;
    let owner = if policy.is_snat_address(vsid, ip.dst) {
        steer::by_nat_port(ports.dst, ctx.workers)
    } else {
        steer::by_endpoint(ip.dst, ports.dst, ctx.workers)
    };
    if owner != ctx.worker {
        return Verdict::Handoff { worker: owner };
    }
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let key = ReturnKey {
        vsid: vsid.get(),
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
    let Some(dip) = policy
        .pools()
        .get(flow.pool as usize)
        .and_then(|p| p.dips.get(usize::from(flow.dip)))
    else {
        return Verdict::Drop(DropReason::NoFlow);
    };
    // Checked before the binding is touched: a spoofed reply must not keep it alive
    // or close it.
    if dip.host != host {
        return Verdict::Drop(DropReason::SpoofedPa);
    }
    ctx.shard
        .touch(id, Direction::Return, ports.tcp_flags, ctx.now);
    let path = tri!(path_to_client(ctx, &flow.forward, flow.flow_id));
    let rw = Rewrite {
        src: Some((flow.forward.vip, flow.forward.vip_port)),
        dst: flow
            .is_full_nat()
            .then_some((flow.forward.client, flow.forward.client_port)),
        hop: true,
    };
    let matched = Matched {
        tenant: flow.tenant,
        pool: flow.pool,
        dip: flow.dip,
    };
    ctx.send(arrival, path.into(), ip, &rw, matched, out)
}

/// The path to a flow's client: the Internet gateway, or the client's host in its VSID.
pub(super) fn path_to_client(
    ctx: &Ctx,
    forward: &crate::flow::ForwardKey,
    flow_id: u8,
) -> Result<Path, DropReason> {
    let policy = ctx.policy;
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
