//! TCP resets when a flow of a `tcp_reset` rule times out idle: one RST to the client
//! (the way its packets came: plain IP to the gateway for a public VIP, NVGRE to its
//! host for a CA VIP) and one to the DIP (NVGRE to its host), each with the sequence
//! number its receiver expects next, so that both ends close instead of hanging on a
//! connection the LB has forgotten.
//!
//! The sequence numbers are the last acknowledgment numbers each end sent, recorded on
//! every TCP segment ([`note`]): on an idle connection everything is acknowledged, so
//! the client's last ACK is exactly the sequence number the client accepts (RFC 5961
//! accepts a reset only at RCV.NXT), and the DIP's likewise. Runs between batches from
//! `Engine::next_reset`; it must never run on the packet path or allocate.

use std::net::IpAddr;

use crate::flow::{Direction, Flow, FlowId, IdleRules, RuleIdle};
use crate::policy::{Snapshot, Vsid};
use crate::wire::{ip_proto, ipv4, ipv6, tcp};

use super::drop::DropReason;
use super::emit::{self, Path, tunnel_to};
use super::packet::{IpPacket, Ports};
use super::route::Routes;
use super::{Ctx, Egress};

/// TTL / hop limit of a reset the LB makes.
const RESET_TTL: u8 = 64;

/// Largest frame a reset takes: NVGRE over IPv6 around IPv6 + TCP.
pub const MAX_RESET_FRAME: usize = 14 + 40 + 8 + 14 + 40 + 20;

/// The idle rules of `policy`: every pool's, indexed like its pools, and every
/// outbound rule's timeout, indexed like its outbound rules.
pub(crate) fn rules_of(policy: &Snapshot) -> IdleRules {
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1);
    IdleRules {
        pools: policy
            .pools()
            .iter()
            .map(|p| RuleIdle {
                idle: p.rule.idle_timeout.map_or(0, secs),
                reset: p.rule.tcp_reset,
            })
            .collect(),
        outbound: policy
            .outbound_rules()
            .iter()
            .map(|r| secs(r.idle_timeout))
            .collect(),
    }
}

/// Records the acknowledgment number of a TCP segment with ACK set on its flow.
pub(super) fn note(ctx: &mut Ctx, id: FlowId, dir: Direction, ip: &IpPacket, ports: &Ports) {
    let Some(f) = ports.tcp_flags else {
        return;
    };
    // Only flows of a `tcp_reset` rule ever need the numbers: the others pay one
    // lookup of their pool's rule, not a header read and a write per segment.
    if f & tcp::flags::ACK == 0 || f & tcp::flags::RST != 0 || !ctx.shard.resets_on_idle(id) {
        return;
    }
    if let Some(seg) = ip
        .bytes
        .get(ip.l4..)
        .and_then(|b| tcp::Packet::new_checked(b).ok())
    {
        ctx.shard.note_ack(id, dir, seg.ack_number());
    }
}

/// The way back to a flow's client, as its packets came.
fn client_path(policy: &Snapshot, flow: &Flow) -> Result<Path, DropReason> {
    let b = policy.balancer();
    let fwd = &flow.forward;
    if fwd.vsid == 0 {
        let dst_mac = b.external.gateway_mac.ok_or(DropReason::NoPath)?;
        return Ok(Path::Plain {
            port: Egress::External,
            src_mac: b.external.mac,
            dst_mac,
        });
    }
    let vsid = Vsid::new(fwd.vsid).ok_or(DropReason::UnknownVsid)?;
    let record = policy
        .lookup(vsid, fwd.client)
        .ok_or(DropReason::UnknownCa)?;
    let subnet = policy.subnet(vsid).ok_or(DropReason::UnknownVsid)?;
    let host = policy.get_host(record.host).ok_or(DropReason::NoPath)?;
    tunnel_to(
        policy,
        host,
        fwd.vsid,
        flow.flow_id,
        subnet.lb_mac,
        record.mac,
    )
}

/// Writes the RST of `flow` to its client (`to_client`) or to its DIP into `out`;
/// returns the egress and the frame's length.
pub(super) fn write(
    policy: &Snapshot,
    routes: &Routes,
    flow: &Flow,
    acks: &crate::flow::Acks,
    to_client: bool,
    ident: u16,
    out: &mut [u8],
) -> Result<(Egress, usize), DropReason> {
    let (src, sport, dst, dport, seq, ack, path) = if to_client {
        let f = &flow.forward;
        let path = client_path(policy, flow)?;
        (
            f.vip,
            f.vip_port,
            f.client,
            f.client_port,
            acks.client,
            acks.dip,
            path,
        )
    } else {
        let r = &flow.ret;
        let path = routes.to_dip(flow.pool, flow.dip, flow.flow_id)?;
        (
            r.peer,
            r.peer_port,
            r.dip,
            r.dip_port,
            acks.dip,
            acks.client,
            path,
        )
    };
    let v6 = dst.is_ipv6();
    let ip_len = if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let len = ip_len + tcp::HEADER_LEN;
    let off = path.write_headers(out, emit::ip_ethertype(v6), len, ident)?;
    let pkt = out.get_mut(off..off + len).ok_or(DropReason::NoPath)?;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4::Repr {
            src_addr: s,
            dst_addr: d,
            protocol: ip_proto::TCP,
            payload_len: tcp::HEADER_LEN,
            ttl: RESET_TTL,
            dont_frag: true,
            dscp_ecn: 0,
            ident,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut pkt[..ip_len])),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6::Repr {
            src_addr: s,
            dst_addr: d,
            next_header: ip_proto::TCP,
            payload_len: tcp::HEADER_LEN,
            hop_limit: RESET_TTL,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut ipv6::Packet::new_unchecked(&mut pkt[..ip_len])),
        _ => return Err(DropReason::NoPath),
    }
    tcp::Repr {
        src_port: sport,
        dst_port: dport,
        seq_number: seq,
        ack_number: ack,
        flags: tcp::flags::RST | tcp::flags::ACK,
        window_len: 0,
        payload_len: 0,
    }
    .emit(
        &mut tcp::Packet::new_unchecked(&mut pkt[ip_len..]),
        src,
        dst,
    );
    Ok((path.egress(), off + len))
}
