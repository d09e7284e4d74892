//! The invariants every frame the engine emits must satisfy, whatever came in.
//!
//! Each check returns a message instead of panicking so that the fuzz target can print
//! the input with it and so that regression tests can assert on it. Must never relax
//! an invariant to make a finding go away: a finding is fixed in the engine, or the
//! invariant is shown wrong and the reason written here.

use std::net::IpAddr;

use nvlb::engine::{Egress, Matched};
use nvlb::policy::{HostId, OUTBOUND_POOL_TAG, Snapshot, VirtualSubnet, Vsid};
use nvlb::wire::{arp, ethernet, gre, icmpv4, icmpv6, ip_proto, tcp};

use crate::decode::{self, Frame, Strict};

/// What the engine said about the frame it emitted.
#[derive(Clone, Copy, Debug)]
pub enum Emitted {
    Forward {
        egress: Egress,
        matched: Matched,
    },
    Reply {
        egress: Egress,
    },
    /// A TCP reset the LB built for a flow that timed out idle (`Engine::next_reset`):
    /// no input frame, and it goes to an end of a flow, like a forward.
    Reset {
        egress: Egress,
    },
}

impl Emitted {
    fn egress(&self) -> Egress {
        match *self {
            Emitted::Forward { egress, .. }
            | Emitted::Reply { egress }
            | Emitted::Reset { egress } => egress,
        }
    }

    /// Whether the frame goes to an end of a flow (a client, a DIP, the Internet)
    /// rather than back to whoever sent the input.
    fn reaches_flow_end(self) -> bool {
        !matches!(self, Emitted::Reply { .. })
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Whether an ICMP message is one the LB builds from scratch (errors, ND adverts),
/// whose checksum must verify whatever the input carried.
fn built_from_scratch(ip: &decode::Ip) -> bool {
    match decode::icmp_type(ip) {
        Some((t, _)) if !ip.v6 => icmpv4::is_error(t),
        Some((t, _)) => icmpv6::is_error(t) || t == icmpv6::msg_type::NEIGHBOR_ADVERT,
        None => false,
    }
}

/// Checks one emitted frame `out` against the policy and the input frame `input`.
pub fn output(p: &Snapshot, input: &[u8], out: &[u8], what: Emitted) -> Result<(), String> {
    let b = p.balancer();
    let f = decode::frame(out, Strict::Exact)?;
    let egress = what.egress();
    let port = match egress {
        Egress::External => &b.external,
        Egress::Provider => &b.provider,
    };
    ensure!(
        f.src_mac == port.mac,
        "source MAC {:?} is not the {egress:?} port's",
        f.src_mac
    );
    if f.ethertype == ethernet::ethertype::ARP {
        ensure!(matches!(what, Emitted::Reply { .. }), "ARP forwarded");
        let a = arp::Packet::new_checked(&out[ethernet::HEADER_LEN..])
            .map_err(|e| format!("ARP: {e}"))?;
        ensure!(a.sender_hw() == port.mac, "ARP answer with a foreign MAC");
        return Ok(());
    }
    let outer_len = f
        .tunnel
        .map(|t| t.outer.len)
        .or(f.ip.map(|i| i.len))
        .ok_or_else(|| format!("emitted ethertype {:#06x}", f.ethertype))?;
    ensure!(
        outer_len <= usize::from(port.mtu),
        "{outer_len}-byte IP packet on a {egress:?} port of MTU {}",
        port.mtu
    );
    if let Some(t) = f.tunnel
        && f.ip.is_none()
        && t.inner_ethertype == ethernet::ethertype::ARP
    {
        return tunnelled_arp(p, &f, t, what);
    }
    let inner = f.ip.ok_or("tunnel without an inner IP packet")?;
    let input = decode::frame(input, Strict::Lenient).ok();
    let input_ip = input.and_then(|i| i.ip);

    if let Some(t) = f.tunnel {
        let (host_id, vsid, subnet) = tunnel_ends(p, &f, &t, egress)?;
        let host = p.host(host_id);
        if let Emitted::Forward { matched, .. } = what {
            ensure!(
                subnet.tenant == matched.tenant,
                "VSID {} belongs to tenant {:?}, the flow to {:?}",
                t.vsid,
                subnet.tenant,
                matched.tenant
            );
        }
        inner_source_is_lb(&t, subnet)?;
        if what.reaches_flow_end() {
            let ca = destination_ca(p, &inner, what)?;
            let rec = p
                .lookup(vsid, ca)
                .ok_or_else(|| format!("forwarded to {ca} in VSID {}: no lookup record", t.vsid))?;
            ensure!(
                rec.host == host_id,
                "CA {ca} of VSID {} lives on host {:?}, sent to {}",
                t.vsid,
                rec.host,
                host.name
            );
            ensure!(
                rec.mac == t.inner_dst_mac,
                "inner MAC is not the lookup record's"
            );
        }
    } else if what.reaches_flow_end() {
        ensure!(
            egress == Egress::External,
            "plain IP forwarded on {egress:?}"
        );
        ensure!(
            Some(f.dst_mac) == b.external.gateway_mac,
            "plain IP forwarded to {:?}, not the gateway",
            f.dst_mac
        );
    }

    if let Emitted::Reset { .. } = what {
        let flags = tcp::Packet::new_checked(inner.l4)
            .map(|t| t.flags())
            .map_err(|e| format!("idle reset without a TCP header: {e}"))?;
        ensure!(
            inner.proto == ip_proto::TCP && flags & tcp::flags::RST != 0,
            "idle reset without RST (protocol {}, flags {flags:#04x})",
            inner.proto
        );
    }

    if let Emitted::Forward { matched, .. } = what {
        if matched.pool & OUTBOUND_POOL_TAG != 0 {
            outbound(p, &f, &inner, matched)?;
        } else {
            let pool = p
                .get_pool(matched.pool)
                .ok_or("matched pool out of range")?;
            ensure!(pool.tenant == matched.tenant, "pool and tenant disagree");
            ensure!(
                usize::from(matched.dip) < pool.dips.len(),
                "matched DIP out of range"
            );
        }
        if let Some(t) = input.and_then(|i: Frame| i.tunnel) {
            let from = Vsid::new(t.vsid).and_then(|v| p.subnet(v));
            ensure!(
                from.is_some_and(|s| s.tenant == matched.tenant),
                "a frame from VSID {} was forwarded for tenant {:?}",
                t.vsid,
                matched.tenant
            );
        }
        if let Some(i) = input_ip {
            ensure!(i.v6 == inner.v6, "IP family changed");
            ensure!(
                inner.ttl == i.ttl.wrapping_sub(1),
                "TTL {} in, {} out",
                i.ttl,
                inner.ttl
            );
        }
    }

    // Upper-layer checksums: the engine patches them (RFC 1624), so a valid one must
    // stay valid; one it builds itself must be valid outright.
    let out_ok = decode::l4_checksum_ok(&inner);
    let in_ok = input_ip.as_ref().and_then(decode::l4_checksum_ok);
    if out_ok == Some(false) {
        ensure!(
            in_ok == Some(false) && !built_from_scratch(&inner),
            "upper-layer checksum of the emitted {} packet does not verify (input's: {in_ok:?})",
            proto_name(inner.proto)
        );
    }
    ensure!(
        !matches!(inner.src, IpAddr::V4(a) if a.is_broadcast()),
        "emitted from the broadcast address"
    );
    Ok(())
}

/// What every NVGRE frame the LB sends must be: on the provider port, from an LB PA
/// to a declared host (its MAC, or the PA network's gateway), in a declared VSID that
/// is not reserved. Returns the host, the VSID and its subnet.
fn tunnel_ends<'p>(
    p: &'p Snapshot,
    f: &Frame,
    t: &decode::Tunnel,
    egress: Egress,
) -> Result<(HostId, Vsid, &'p VirtualSubnet), String> {
    let b = p.balancer();
    ensure!(egress == Egress::Provider, "NVGRE sent to {egress:?}");
    ensure!(
        b.provider.owns(t.outer.src),
        "outer source {} is not an LB PA",
        t.outer.src
    );
    let host_id = p
        .host_by_pa(t.outer.dst)
        .ok_or_else(|| format!("outer destination {} is no host's PA", t.outer.dst))?;
    let host = p.host(host_id);
    ensure!(
        f.dst_mac == host.mac || Some(f.dst_mac) == b.provider.gateway_mac,
        "outer MAC {:?} is neither {}'s nor the gateway's",
        f.dst_mac,
        host.name
    );
    let vsid = Vsid::new(t.vsid)
        .filter(|v| !v.is_reserved())
        .ok_or_else(|| format!("emitted reserved VSID {}", t.vsid))?;
    let subnet = p
        .subnet(vsid)
        .ok_or_else(|| format!("emitted undeclared VSID {}", t.vsid))?;
    Ok((host_id, vsid, subnet))
}

/// The inner source MAC of an NVGRE frame the LB sends: its own in that VSID.
fn inner_source_is_lb(t: &decode::Tunnel, subnet: &VirtualSubnet) -> Result<(), String> {
    ensure!(
        t.inner_src_mac == subnet.lb_mac,
        "inner source MAC is not the LB's MAC in VSID {}",
        t.vsid
    );
    Ok(())
}

/// An ARP answer inside a VSID (`engine/neighbor.rs`: the LB answers for its CA VIPs
/// and source-NAT CAs there, for NVGRE peers that do not proxy ARP, such as Open
/// vSwitch). The check first assumed a tunnel carries only IP; the engine target found
/// such an answer in session 4. It must be a reply, never a forward, with the LB's MAC
/// in that VSID for an address the LB owns in that VSID.
fn tunnelled_arp(p: &Snapshot, f: &Frame, t: decode::Tunnel, what: Emitted) -> Result<(), String> {
    ensure!(
        matches!(what, Emitted::Reply { .. }),
        "ARP forwarded in VSID {}",
        t.vsid
    );
    let (_, vsid, subnet) = tunnel_ends(p, f, &t, what.egress())?;
    inner_source_is_lb(&t, subnet)?;
    let at = gre::NVGRE_HEADER_LEN + ethernet::HEADER_LEN;
    let a = arp::Packet::new_checked(t.outer.l4.get(at..).unwrap_or(&[]))
        .map_err(|e| format!("ARP in VSID {}: {e}", t.vsid))?;
    ensure!(
        a.operation() == arp::op::REPLY,
        "ARP request sent in VSID {}",
        t.vsid
    );
    ensure!(
        a.sender_hw() == subnet.lb_mac,
        "ARP answer in VSID {} with a foreign MAC",
        t.vsid
    );
    let ip = IpAddr::V4(a.sender_ip());
    ensure!(
        p.is_vip_address(vsid, ip) || p.is_snat_address(vsid, ip),
        "ARP answer for {ip}, which the LB does not own in VSID {}",
        t.vsid
    );
    Ok(())
}

/// The CA whose lookup record a frame to a flow's end must follow: its inner
/// destination, except for a floating-IP VIP, whose frames keep the VIP as destination
/// and go to the chosen DIP's record.
fn destination_ca(p: &Snapshot, inner: &decode::Ip, what: Emitted) -> Result<IpAddr, String> {
    let Emitted::Forward { matched, .. } = what else {
        return Ok(inner.dst);
    };
    match p.get_pool(matched.pool) {
        Some(pool) if pool.floating_ip && inner.dst == pool.address => pool
            .dips
            .get(usize::from(matched.dip))
            .map(|d| d.ca)
            .ok_or_else(|| "matched DIP out of range".to_string()),
        Some(pool) if pool.floating_ip => Err(format!(
            "floating-IP pool {:?} forwarded to {}, not its VIP {}",
            pool.name, inner.dst, pool.address
        )),
        _ => Ok(inner.dst),
    }
}

/// A forward of an outbound flow: to the Internet from the rule's address and a port
/// of the VM's own block, or back to that VM in its VSID.
fn outbound(p: &Snapshot, f: &Frame, inner: &decode::Ip, matched: Matched) -> Result<(), String> {
    let r = u16::try_from(matched.pool & !OUTBOUND_POOL_TAG)
        .ok()
        .and_then(|r| p.outbound_rule(r))
        .ok_or("matched outbound rule out of range")?;
    ensure!(
        r.tenant == matched.tenant,
        "outbound rule {:?} and tenant disagree",
        r.name
    );
    let source = r
        .sources
        .get(usize::from(matched.dip))
        .ok_or("matched outbound source out of range")?;
    // TCP and UDP both start with the source port.
    let sport = match (inner.proto, inner.l4) {
        (ip_proto::TCP | ip_proto::UDP, [a, b, ..]) => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    };
    match f.tunnel {
        None => {
            ensure!(
                inner.src == r.address,
                "outbound rule {:?} sent from {}, not {}",
                r.name,
                inner.src,
                r.address
            );
            if let Some(sport) = sport {
                ensure!(
                    (source.first_port..=source.last_port).contains(&sport),
                    "outbound port {sport} outside {}'s block {}-{}",
                    source.ca,
                    source.first_port,
                    source.last_port
                );
            }
        }
        Some(t) => {
            ensure!(
                t.vsid == source.vsid.get() && inner.dst == source.ca,
                "an outbound reply went to {} in VSID {}, not to {} in VSID {}",
                inner.dst,
                t.vsid,
                source.ca,
                source.vsid.get()
            );
        }
    }
    Ok(())
}

fn proto_name(p: u8) -> &'static str {
    match p {
        ip_proto::TCP => "TCP",
        ip_proto::UDP => "UDP",
        ip_proto::ICMP => "ICMP",
        ip_proto::ICMPV6 => "ICMPv6",
        _ => "other",
    }
}
