//! ICMP echo to a VIP address as its rules say (`icmp_echo`): answered by the LB (the
//! default, done by `icmp::echo`), dropped, or forwarded to one DIP of the rule.
//!
//! A forwarded echo is a small flow like any other: keyed by (client, echo identifier)
//! where TCP and UDP have ports, bound to the DIP that Maglev picks for the client's
//! address, and its echo reply comes back from the DIP's host and leaves as from the
//! VIP. Only public VIPs forward (validation refuses it for CA VIPs, whose DIPs would
//! answer the client directly). This module must never answer or forward an echo to
//! an address that is not a VIP.

use crate::flow::{Direction, Flow, ForwardKey, InsertError, ReturnKey, State, steer};
use crate::maglev;
use crate::policy::{IcmpEcho, PoolId};
use crate::wire::{icmp_message, icmpv4, icmpv6};

use super::drop::DropReason;
use super::nat::Rewrite;
use super::packet::IpPacket;
use super::reply::{dip_side_binding, path_to_client};
use super::{Arrival, Ctx, Matched, Verdict, Via, tri};

/// The echo identifier: the "port" of an echo flow.
fn ident_of(ip: &IpPacket) -> Result<u16, DropReason> {
    let b = ip
        .bytes
        .get(ip.l4.saturating_add(4)..ip.l4.saturating_add(6))
        .ok_or(DropReason::MalformedIcmp)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn is_type(ip: &IpPacket, v4: u8, v6: u8) -> bool {
    ip.icmp_type() == Some(if ip.v6 { v6 } else { v4 })
}

/// What the address's rules say about this echo request, or `None`: answer it.
pub(super) fn request(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    out: &mut [u8],
) -> Option<Verdict> {
    if !is_type(
        ip,
        icmpv4::msg_type::ECHO_REQUEST,
        icmpv6::msg_type::ECHO_REQUEST,
    ) {
        return None;
    }
    let vsid = arrival.vsid();
    if !ctx.policy.is_vip_address(vsid, ip.dst) || ctx.policy.balancer().external.owns(ip.dst) {
        return None;
    }
    match ctx.policy.icmp_echo(vsid, ip.dst) {
        (IcmpEcho::Answer, _) | (_, None) => None,
        (IcmpEcho::Drop, _) => Some(Verdict::Drop(DropReason::IcmpEchoDropped)),
        (IcmpEcho::Forward, Some(pool)) => Some(forward(ctx, arrival, ip, pool, out)),
    }
}

/// Writes the ICMPv6 checksum again after the addresses changed (ICMPv4's does not
/// cover them).
fn fix_v6_checksum(
    v: Verdict,
    ip: &IpPacket,
    out: &mut [u8],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
) -> Verdict {
    if let Verdict::Forward { len, .. } = v
        && ip.v6
        && let Some(start) = len.checked_sub(ip.bytes.len())
        && let Some(icmp) = out.get_mut(start.saturating_add(ip.l4)..len)
    {
        icmp_message::fill_checksum(icmp, src, dst);
    }
    v
}

fn forward(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    pool_id: PoolId,
    out: &mut [u8],
) -> Verdict {
    let ident = tri!(ident_of(ip));
    let owner = steer::by_endpoint(ip.src, ident, ctx.workers);
    if owner != ctx.worker {
        return Verdict::Handoff { worker: owner };
    }
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let key = ForwardKey {
        vsid: arrival.vsid().get(),
        proto: ip.proto,
        client: ip.src,
        client_port: ident,
        vip: ip.dst,
        vip_port: 0,
    };
    let (id, created) = match ctx.shard.find_forward(&key, ctx.now) {
        Some(id) => (id, false),
        None => {
            let Some(pool) = ctx.policy.get_pool(pool_id) else {
                return Verdict::Drop(DropReason::UnknownVip);
            };
            let hash = maglev::flow_hash(key.vsid, 0, ip.src, 0, ip.dst, 0);
            let Some(dip_index) = pool.table.lookup(hash) else {
                return Verdict::Drop(DropReason::NoHealthyDip);
            };
            let Some(dip) = pool.dips.get(usize::from(dip_index)) else {
                return Verdict::Drop(DropReason::NoHealthyDip);
            };
            let ret = ReturnKey {
                vsid: dip.vsid.get(),
                proto: ip.proto,
                dip: dip.ca,
                dip_port: 0,
                peer: ip.src,
                peer_port: ident,
            };
            let mut flow = Flow::new(key, ret, pool.tenant, pool_id, dip_index, State::Datagram);
            flow.flow_id = (hash >> 56) as u8;
            match ctx.shard.insert(flow, ctx.now) {
                Ok(id) => {
                    ctx.counters.new_flows += 1;
                    (id, true)
                }
                Err(InsertError::TableFull) => return Verdict::Drop(DropReason::FlowTableFull),
                Err(InsertError::TenantQuota) => return Verdict::Drop(DropReason::TenantQuota),
                Err(InsertError::Duplicate) => return Verdict::Drop(DropReason::FlowConflict),
            }
        }
    };
    ctx.shard.touch(id, Direction::Forward, None, ctx.now);
    let flow = *ctx.shard.flow(id);
    let routes = ctx.routes;
    let v = match routes.prebuilt(flow.pool, flow.dip) {
        Ok(pre) => {
            let rw = Rewrite {
                src: None,
                dst: Some((flow.ret.dip, 0)),
                hop: true,
            };
            let v = ctx.send(
                arrival,
                Via::Prebuilt(pre, flow.flow_id),
                ip,
                &rw,
                Matched::of(&flow),
                out,
            );
            fix_v6_checksum(v, ip, out, ip.src, flow.ret.dip)
        }
        Err(reason) => Verdict::Drop(reason),
    };
    if created && !matches!(v, Verdict::Forward { .. }) {
        ctx.shard.remove(id);
        ctx.counters.new_flows = ctx.counters.new_flows.saturating_sub(1);
    }
    v
}

/// An echo reply from a DIP's host: back to the client as from the VIP, when it
/// belongs to a forwarded echo; `None` otherwise (counted by the caller).
pub(super) fn reply(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    out: &mut [u8],
) -> Option<Verdict> {
    let Arrival::Tunnel { vsid, host, .. } = *arrival else {
        return None;
    };
    if !is_type(
        ip,
        icmpv4::msg_type::ECHO_REPLY,
        icmpv6::msg_type::ECHO_REPLY,
    ) {
        return None;
    }
    let ident = ident_of(ip).ok()?;
    let miss = DropReason::IcmpNotHandled;
    let (id, flow) = match dip_side_binding(
        ctx,
        vsid,
        host,
        ip.proto,
        (ip.src, 0),
        (ip.dst, ident),
        miss,
    ) {
        Ok(found) => found,
        Err(v) => return Some(v),
    };
    if ip.ttl <= 1 {
        return Some(Verdict::Drop(DropReason::TtlExpired));
    }
    ctx.shard.touch(id, Direction::Return, None, ctx.now);
    let path = match path_to_client(ctx.policy, &flow.forward, flow.flow_id) {
        Ok(p) => p,
        Err(r) => return Some(Verdict::Drop(r)),
    };
    let rw = Rewrite {
        src: Some((flow.forward.vip, 0)),
        dst: None,
        hop: true,
    };
    let v = ctx.send(arrival, path.into(), ip, &rw, Matched::of(&flow), out);
    Some(fix_v6_checksum(
        v,
        ip,
        out,
        flow.forward.vip,
        flow.forward.client,
    ))
}
