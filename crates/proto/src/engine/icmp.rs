//! ICMP and ICMPv6: errors translated through the NAT binding they quote, errors the
//! LB makes itself (packet too big), and echo replies for the LB's own addresses.
//!
//! An error must reach the endpoint that sent the quoted packet, seen through the same
//! translation as the flow: a packet-too-big for a DIP's reply must reach the client
//! quoting VIP -> client, or path MTU discovery breaks and large transfers hang.

use std::net::IpAddr;

use crate::flow::{ForwardKey, steer};
use crate::wire::{icmp_message, icmpv4, icmpv6, ip_proto, ipv4, ipv6};

use super::drop::DropReason;
use super::emit::{self, Path};
use super::nat::{self, Rewrite};
use super::packet::IpPacket;
use super::reply::{dip_side_binding, path_to_client};
use super::{Arrival, Ctx, Egress, Matched, Verdict, tri};

const ICMP_HEADER_LEN: usize = icmp_message::HEADER_LEN;

/// The packet an ICMP error quotes: its addresses, protocol and ports, and where its
/// header and transport bytes sit inside the error's IP packet.
pub(super) struct Quoted {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: u8,
    pub(super) src_port: u16,
    pub(super) dst_port: u16,
    /// Offset of the quoted IP header in the error's IP packet.
    pub(super) at: usize,
    /// Offset of the quoted transport header, relative to `at`.
    pub(super) l4: usize,
}

pub(super) fn quoted(ip: &IpPacket) -> Result<Quoted, DropReason> {
    let at = ip.l4 + ICMP_HEADER_LEN;
    let q = ip.bytes.get(at..).ok_or(DropReason::MalformedIcmp)?;
    let (src, dst, proto, l4) = if ip.v6 {
        let p = ipv6::Packet::new_quoted(q).map_err(|_| DropReason::MalformedIcmp)?;
        (
            IpAddr::V6(p.src_addr()),
            IpAddr::V6(p.dst_addr()),
            p.next_header(),
            ipv6::HEADER_LEN,
        )
    } else {
        let p = ipv4::Packet::new_quoted(q).map_err(|_| DropReason::MalformedIcmp)?;
        (
            IpAddr::V4(p.src_addr()),
            IpAddr::V4(p.dst_addr()),
            p.protocol(),
            p.header_len(),
        )
    };
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return Err(DropReason::IcmpNoFlow);
    }
    let ports = q.get(l4..l4 + 4).ok_or(DropReason::MalformedIcmp)?;
    Ok(Quoted {
        src,
        dst,
        proto,
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
        at,
        l4,
    })
}

/// An ICMP error about one of our flows: find the binding from the quoted packet and
/// pass the error on through it.
pub(super) fn translate(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    out: &mut [u8],
) -> Verdict {
    let q = tri!(quoted(ip));
    if ip.ttl <= 1 {
        return Verdict::Drop(DropReason::TtlExpired);
    }
    let policy = ctx.policy;
    let vsid = arrival.vsid();
    // From the client's side the quoted packet is one the LB sent as VIP -> client;
    // from the DIP's side it is one the LB sent as client (or LB CA) -> DIP.
    let client_side =
        matches!(arrival, Arrival::Plain { .. }) || policy.is_vip_address(vsid, ip.dst);
    let (outer_src, outer_dst, q_rw, path, matched);
    if client_side {
        let owner = steer::by_endpoint(q.dst, q.dst_port, ctx.workers);
        if owner != ctx.worker {
            return Verdict::Handoff { worker: owner };
        }
        let key = ForwardKey {
            vsid: vsid.get(),
            proto: q.proto,
            client: q.dst,
            client_port: q.dst_port,
            vip: q.src,
            vip_port: q.src_port,
        };
        let Some(id) = ctx.shard.find_forward(&key, ctx.now) else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        let flow = *ctx.shard.flow(id);
        if let Arrival::Tunnel { host, .. } = arrival
            && flow.client_host != *host
        {
            return Verdict::Drop(DropReason::SpoofedPa);
        }
        let full_nat = flow.is_full_nat();
        outer_src = if full_nat { flow.ret.peer } else { ip.src };
        outer_dst = flow.ret.dip;
        q_rw = Rewrite {
            src: Some((flow.ret.dip, flow.ret.dip_port)),
            dst: full_nat.then_some((flow.ret.peer, flow.ret.peer_port)),
            hop: false,
        };
        path = tri!(ctx.routes.to_dip(flow.pool, flow.dip, flow.flow_id));
        matched = Matched::of(&flow);
    } else {
        let Arrival::Tunnel { host, .. } = *arrival else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        let dip = (q.dst, q.dst_port);
        let peer = (q.src, q.src_port);
        let flow =
            match dip_side_binding(ctx, vsid, host, q.proto, dip, peer, DropReason::IcmpNoFlow) {
                Ok((_, flow)) => flow,
                Err(verdict) => return verdict,
            };
        outer_src = flow.forward.vip;
        outer_dst = flow.forward.client;
        q_rw = Rewrite {
            src: Some((flow.forward.client, flow.forward.client_port)),
            dst: Some((flow.forward.vip, flow.forward.vip_port)),
            hop: false,
        };
        path = tri!(path_to_client(ctx.policy, &flow.forward, flow.flow_id));
        matched = Matched::of(&flow);
    }
    let len = ip.bytes.len();
    if len > path.max_ip_len(policy) {
        return Verdict::Drop(DropReason::TooBigNoDf);
    }
    let ident = ctx.next_ident();
    let off = tri!(path.write_headers(out, emit::ip_ethertype(ip.v6), len, ident));
    let pkt = &mut out[off..off + len];
    pkt.copy_from_slice(ip.bytes);
    nat::apply(&mut pkt[q.at..], ip.v6, q.proto, q.l4, &q_rw);
    nat::set_ip_header(pkt, ip.v6, outer_src, outer_dst, Some(ip.ttl - 1));
    icmp_message::fill_checksum(&mut pkt[ip.l4..], outer_src, outer_dst);
    Verdict::Forward {
        egress: path.egress(),
        len: off + len,
        matched,
    }
}

/// Sends the ICMP message `msg` from `src` to `dst` along `path`.
fn make(
    ctx: &mut Ctx,
    path: Path,
    src: IpAddr,
    dst: IpAddr,
    msg: &icmp_message::Message,
    out: &mut [u8],
) -> Verdict {
    let v6 = src.is_ipv6();
    let len = msg.buffer_len(v6);
    let ident = ctx.next_ident();
    let off = tri!(path.write_headers(out, emit::ip_ethertype(v6), len, ident));
    if msg.emit(&mut out[off..off + len], src, dst, ident).is_err() {
        return Verdict::Drop(DropReason::NoPath);
    }
    Verdict::Reply {
        egress: path.egress(),
        len: off + len,
    }
}

/// Tells the sender of `ip` that it must fit `mtu` bytes (IPv4 frag-needed or IPv6
/// packet-too-big), quoting as much of the packet as the minimum MTU allows.
pub(super) fn too_big(
    ctx: &mut Ctx,
    arrival: &Arrival,
    ip: &IpPacket,
    mtu: usize,
    out: &mut [u8],
) -> Verdict {
    let path = tri!(arrival.path_back(ctx.policy, 0));
    let msg = icmp_message::Message::too_big(ip.v6, mtu, ip.bytes);
    make(ctx, path, ip.dst, ip.src, &msg, out)
}

/// Answers echo requests to the LB's own addresses and VIPs; counts anything else.
pub(super) fn echo(ctx: &mut Ctx, arrival: &Arrival, ip: &IpPacket, out: &mut [u8]) -> Verdict {
    let policy = ctx.policy;
    let b = policy.balancer();
    let request = if ip.v6 {
        icmpv6::msg_type::ECHO_REQUEST
    } else {
        icmpv4::msg_type::ECHO_REQUEST
    };
    if ip.icmp_type() != Some(request) {
        return super::echo_rule::reply(ctx, arrival, ip, out)
            .unwrap_or(Verdict::Drop(DropReason::IcmpNotHandled));
    }
    if let Some(v) = super::echo_rule::request(ctx, arrival, ip, out) {
        return v;
    }
    let vsid = arrival.vsid();
    let ours = match arrival {
        Arrival::Plain {
            port: Egress::Provider,
            ..
        } => b.provider.owns(ip.dst),
        Arrival::Plain {
            port: Egress::External,
            ..
        } => b.external.owns(ip.dst) || policy.is_vip_address(vsid, ip.dst),
        Arrival::Tunnel { .. } => {
            policy.is_vip_address(vsid, ip.dst) || policy.is_snat_address(vsid, ip.dst)
        }
    };
    if !ours {
        return Verdict::Drop(DropReason::NotForUs);
    }
    let icmp = ip.l4_bytes();
    if icmp.len() < ICMP_HEADER_LEN {
        return Verdict::Drop(DropReason::MalformedIcmp);
    }
    let reply = if ip.v6 {
        icmpv6::msg_type::ECHO_REPLY
    } else {
        icmpv4::msg_type::ECHO_REPLY
    };
    let rest = [icmp[4], icmp[5], icmp[6], icmp[7]];
    let path = tri!(arrival.path_back(policy, 0));
    let msg = icmp_message::Message {
        msg_type: reply,
        code: 0,
        rest,
        body: &icmp[ICMP_HEADER_LEN..],
    };
    make(ctx, path, ip.dst, ip.src, &msg, out)
}
