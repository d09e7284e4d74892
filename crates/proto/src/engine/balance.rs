//! Client to DIP: match (VSID, VIP, protocol, port), pick a DIP by Maglev, bind the
//! flow, translate and encapsulate towards the DIP's host.
//!
//! Public VIPs rewrite only the destination (the DIP sees the client's address and
//! answers through the LB because its host's default gateway is the LB). CA VIPs
//! also rewrite the source to the LB's own CA in the DIP's VSID (full NAT), because
//! the client and the DIP share a virtual network and the DIP would otherwise answer
//! the client directly, bypassing the reverse translation.

use crate::flow::{Direction, Flow, FlowId, ForwardKey, NO_HOST, ReturnKey, State, steer};
use crate::policy::Protocol;
use crate::wire::tcp;

use super::drop::DropReason;
use super::nat::Rewrite;
use super::packet::{IpPacket, Ports};
use super::{Arrival, Ctx, Matched, Verdict, Via};

pub(super) fn forward(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &Ports,
    out: &mut [u8],
) -> Verdict {
    let owner = steer::by_endpoint(ip.src, ports.src, ctx.workers);
    if owner != ctx.worker {
        return Verdict::Handoff { worker: owner };
    }
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let vsid = arrival.vsid();
    let key = ForwardKey {
        vsid: vsid.get(),
        proto: ip.proto,
        client: ip.src,
        client_port: ports.src,
        vip: ip.dst,
        vip_port: ports.dst,
    };
    let mut created = false;
    // Closed connections' bindings a new one displaces: its forward key's (a reopened
    // 4-tuple) and its return key's (`new_flow`); put back if it is refused.
    let mut replaced: [Option<Flow>; 2] = [None, None];
    let mut found = ctx.shard.find_forward(&key, ctx.now);
    if let Some(id) = found {
        // A host may only speak for the CAs that policy places on it; checked before
        // anything below may retire the binding.
        if let Arrival::Tunnel { host, .. } = arrival
            && ctx.shard.flow(id).client_host != *host
        {
            return Verdict::Drop(DropReason::SpoofedPa);
        }
        if reopens(ports.tcp_flags, ctx.shard.flow(id).state) {
            // The client reuses the 4-tuple of a connection that has closed: a new
            // connection, balanced afresh (the old binding may point at a DIP that has
            // since gone down; found by tests/health.rs, a client port reused 5 s after
            // the server's FIN went to the killed DIP). The old binding comes back if
            // the new connection is refused, so that a dropped SYN changes nothing.
            replaced[0] = Some(*ctx.shard.flow(id));
            ctx.shard.remove(id);
            found = None;
        }
    }
    let id = match found {
        Some(id) => id,
        None => {
            created = true;
            match new_flow(ctx, arrival, ip, ports, key, &mut replaced[1]) {
                Ok(id) => id,
                Err(reason) => {
                    restore(ctx, replaced);
                    return Verdict::Drop(reason);
                }
            }
        }
    };
    ctx.shard
        .touch(id, Direction::Forward, ports.tcp_flags, ctx.now);
    super::idle_reset::note(ctx, id, Direction::Forward, ip, ports);
    let pool = ctx.shard.flow(id).pool;
    super::dsr::client_packet(ctx, id, pool, ports.tcp_flags);
    let flow = *ctx.shard.flow(id);
    let routes = ctx.routes;
    let pre = match routes.prebuilt(flow.pool, flow.dip) {
        Ok(pre) => pre,
        Err(reason) => return unbind(ctx, created, id, Verdict::Drop(reason), replaced),
    };
    let rw = Rewrite {
        src: flow
            .is_full_nat()
            .then_some((flow.ret.peer, flow.ret.peer_port)),
        // Floating IP (direct server return): the DIP holds the VIP itself.
        dst: (!ctx
            .policy
            .get_pool(flow.pool)
            .is_some_and(|p| p.floating_ip))
        .then_some((flow.ret.dip, flow.ret.dip_port)),
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
    unbind(ctx, created, id, v, replaced)
}

/// Puts back the bindings of closed connections that a refused SYN was to replace.
fn restore(ctx: &mut Ctx, replaced: [Option<Flow>; 2]) {
    for old in replaced.into_iter().flatten() {
        // Its slot was freed just now, so the table has room; it keeps its own clock.
        let _ = ctx.shard.insert(old, old.last_seen);
    }
}

/// Whether a client's segment with `tcp_flags` opens a new connection on the 4-tuple
/// of a binding in `state`: a SYN without ACK after both FINs or a RST. A SYN on a
/// binding still opening is a retransmission; on an established one it is left to the
/// DIP (which answers it with a challenge ACK, RFC 5961).
fn reopens(tcp_flags: Option<u8>, state: State) -> bool {
    let Some(f) = tcp_flags else { return false };
    let syn_only = f & tcp::flags::SYN != 0 && f & (tcp::flags::ACK | tcp::flags::RST) == 0;
    syn_only && state == State::Closing
}

/// A flow bound for this packet keeps its binding only if the packet went out: a first
/// packet dropped (too big with DF clear, no path) or answered (frag-needed) leaves no
/// binding and no new-flow count behind (found by the fuzz target's "a drop changes
/// nothing" invariant), and puts back the closed connection's binding it replaced.
fn unbind(
    ctx: &mut Ctx,
    created: bool,
    id: FlowId,
    v: Verdict,
    replaced: [Option<Flow>; 2],
) -> Verdict {
    if created && !matches!(v, Verdict::Forward { .. }) {
        ctx.shard.remove(id);
        ctx.counters.new_flows = ctx.counters.new_flows.saturating_sub(1);
        restore(ctx, replaced);
    }
    v
}

/// Binds a new flow: policy match, anti-spoofing, Maglev, source-NAT port, insert.
fn new_flow(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    ports: &Ports,
    key: ForwardKey,
    displaced: &mut Option<Flow>,
) -> Result<FlowId, DropReason> {
    let policy = ctx.policy;
    let vsid = arrival.vsid();
    let proto = Protocol::from_number(ip.proto).ok_or(DropReason::UnsupportedProtocol)?;
    let Some(pool_id) = policy.find_vip(vsid, ip.dst, proto, ports.dst) else {
        return Err(if policy.is_vip_address(vsid, ip.dst) {
            DropReason::UnknownVip
        } else {
            DropReason::NotForUs
        });
    };
    let pool = policy.pool(pool_id);
    let mut client_host = NO_HOST;
    if let Arrival::Tunnel { host, .. } = arrival {
        let record = policy.lookup(vsid, ip.src).ok_or(DropReason::UnknownCa)?;
        if record.host != *host {
            return Err(DropReason::SpoofedPa);
        }
        client_host = *host;
    }
    let state = State::initial(ports.tcp_flags);
    // The same function answers the API's `pick` call (policy/pick.rs).
    let hash = pool.flow_hash(vsid.get(), ip.proto, ip.src, ports.src, ip.dst, ports.dst);
    let dip_index = pool.pick(hash).ok_or(DropReason::NoHealthyDip)?;
    let dip = pool
        .dips
        .get(usize::from(dip_index))
        .ok_or(DropReason::NoHealthyDip)?;
    let mut ret = ReturnKey {
        vsid: dip.vsid.get(),
        proto: ip.proto,
        dip: dip.ca,
        dip_port: dip.port,
        peer: ip.src,
        peer_port: ports.src,
    };
    if pool.rule.all_ports {
        ret.dip_port = ports.dst; // an all-ports rule keeps the packet's port
    }
    if pool.floating_ip {
        // The DIP holds the VIP and answers from it: the connection it sees is with
        // the VIP, not its CA. Keyed by the CA, one client port used for this VIP and
        // for an ordinary VIP on the same DIP (two connections at the DIP) collided,
        // and the second SYN was dropped as a flow conflict (tests/lab_outbound.rs).
        ret.dip = ip.dst;
        ret.dip_port = ports.dst;
    }
    if !pool.is_public() {
        // Full NAT needs a fresh source port; a mid-stream segment would reach the DIP
        // from a port it never saw and be reset, so refuse it here instead.
        if ports.tcp_flags.is_some() && state != State::SynSent {
            return Err(DropReason::MidStreamNoFlow);
        }
        let snat = policy
            .snat_for(dip.vsid, ip.v6)
            .ok_or(DropReason::NoSnatAddress)?;
        ret.peer = snat.ca;
        ret.peer_port = ctx
            .shard
            .allocate_port(
                &ret,
                snat.first_port,
                snat.last_port,
                ctx.worker,
                ctx.workers,
            )
            .ok_or(DropReason::NatPortsExhausted)?;
    }
    // The same client port to another VIP on the same DIP endpoint is the same 4-tuple
    // at the DIP: a closed connection's binding still holding it gives way to the SYN,
    // as `reopens` lets one holding the forward key go (tests/lab_rules.rs lost SYNs
    // as flow conflicts for the 10 s a closed binding lingers).
    if reopens(ports.tcp_flags, State::Closing)
        && let Some(old) = ctx.shard.find_return(&ret, ctx.now)
        && ctx.shard.flow(old).state == State::Closing
    {
        *displaced = Some(*ctx.shard.flow(old));
        ctx.shard.remove(old);
    }
    let mut flow = Flow::new(key, ret, pool.tenant, pool_id, dip_index, state);
    flow.flow_id = (hash >> 56) as u8;
    flow.client_host = client_host;
    ctx.bind(flow)
}
