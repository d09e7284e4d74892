//! A client's packet on a flow the engine already bound, decided from fixed offsets.
//!
//! Nearly every packet a balancer sees belongs to a connection it has bound, and the
//! general path pays on each for every case it can handle: the frame parsed into
//! enums and options (`IpPacket`, `Arrival`), three policy hash lookups for an NVGRE
//! sender (its subnet, its host by PA, whether the address is a VIP), the outbound
//! and probe checks, the binding copied out of the shard, a rewrite that works out
//! per packet which fields it changes. This path reads the common shapes only: plain
//! or NVGRE-carried IPv4 without options or IPv6 without extension headers, TCP or
//! UDP, to a VIP whose binding needs no change of state. The policy facts it needs
//! come from [`Facts`], built once per snapshot and indexed by the binding's pool and
//! host.
//!
//! It is a shortcut, never a second opinion: wherever the general path could drop,
//! answer, hand off, create, retire or change the state of a binding, this returns
//! `None` before it has changed anything, and [`Engine::process`] goes the general
//! way. What it does decide must equal the general path byte for byte and counter for
//! counter; the property test in `tests/established.rs` runs both on the same streams
//! and holds them to that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::flow::{Direction, ForwardKey, NO_HOST, Nanos, Owner, State, shard::seconds, steer};
use crate::policy::{Snapshot, Vsid, is_reserved_on_wire};
use crate::wire::{MacAddr, checksum, ethernet, gre, ip_proto, tcp};

use super::{Engine, Matched, Verdict, emit, nat};

/// What one pool's VIP needs checked on a packet of an established flow, resolved
/// when the snapshot arrives.
#[derive(Clone, Copy, Debug)]
struct PoolFacts {
    /// The general path would treat a packet to this VIP as this pool's (no outbound
    /// rule or source-NAT CA shares the address, a CA VIP's subnet is declared); where
    /// it might not, every packet of the pool goes the general way.
    eligible: bool,
    frontend: u32,
    address: IpAddr,
    floating_ip: bool,
}

/// The per-snapshot tables of this path.
pub(crate) struct Facts {
    macs: [MacAddr; 2],
    /// The provider port's addresses (`Port::owns`), at most one per family.
    provider: [Option<IpAddr>; 2],
    pools: Vec<PoolFacts>,
    /// Each host's PAs, kept only where the PA names that host back (`host_by_pa`).
    host_pas: Vec<[Option<IpAddr>; 2]>,
}

impl Facts {
    pub(crate) fn build(policy: &Snapshot) -> Facts {
        let b = policy.balancer();
        let pools = policy
            .pools()
            .iter()
            .map(|p| {
                let eligible = if p.frontend == Vsid::PUBLIC {
                    policy.outbound_by_address(p.address).is_none()
                } else {
                    policy.subnet(p.frontend).is_some()
                        && !policy.is_snat_address(p.frontend, p.address)
                };
                PoolFacts {
                    eligible,
                    frontend: p.frontend.get(),
                    address: p.address,
                    floating_ip: p.floating_ip,
                }
            })
            .collect();
        let host_pas = (0..policy.hosts().len())
            .map(|i| {
                let id = i as u16;
                let own = |pa: Option<IpAddr>| pa.filter(|&a| policy.host_by_pa(a) == Some(id));
                let h = &policy.hosts()[i];
                [own(h.pa_v4.map(IpAddr::V4)), own(h.pa_v6.map(IpAddr::V6))]
            })
            .collect();
        let provider = [
            b.provider.address_v4().map(IpAddr::V4),
            b.provider.address_v6().map(IpAddr::V6),
        ];
        Facts {
            // `Port::owns` by a comparison or two, when the port has no more than one
            // address per family (validation's rule); else the tunnel shape is off.
            provider: if b.provider.addresses.len() <= 2
                && b.provider
                    .addresses
                    .iter()
                    .all(|a| provider.contains(&Some(*a)))
            {
                provider
            } else {
                [None, None]
            },
            macs: [b.external.mac, b.provider.mac],
            pools,
            host_pas,
        }
    }
}

/// One IP header read at fixed offsets. Its checksum and addresses are read only
/// once the packet is known to be one this path takes: a SYN leaves early.
#[derive(Clone, Copy)]
struct Ip<'a> {
    /// The packet, header to end of payload, without link-layer padding.
    bytes: &'a [u8],
    v6: bool,
    proto: u8,
    /// Offset of the upper-layer header.
    l4: usize,
    ttl: u8,
    src: IpAddr,
    dst: IpAddr,
}

impl Ip<'_> {
    /// An IPv4 header checksum that verifies (IPv6 has none).
    #[inline(always)]
    fn checksum_ok(&self) -> bool {
        self.v6
            || self
                .bytes
                .first_chunk::<20>()
                .is_some_and(header_checksum_ok)
    }
}

/// IPv4 without options and unfragmented, or IPv6 whose next header is the upper
/// layer; `None` for anything else. The IPv4 checksum is left to [`Ip::checksum_ok`].
#[inline(always)]
fn ip(buf: &[u8], ethertype: u16) -> Option<Ip<'_>> {
    match ethertype {
        ethernet::ethertype::IPV4 => {
            let h = buf.first_chunk::<20>()?;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if h[0] != 0x45 || total < 20 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return None;
            }
            Some(Ip {
                bytes: buf.get(..total)?,
                v6: false,
                proto: h[9],
                l4: 20,
                ttl: h[8],
                src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
                dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            })
        }
        ethernet::ethertype::IPV6 => {
            let h = buf.first_chunk::<40>()?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let proto = h[6];
            if proto != ip_proto::TCP && proto != ip_proto::UDP && proto != ip_proto::GRE {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            Some(Ip {
                bytes: buf.get(..40 + usize::from(u16::from_be_bytes([h[4], h[5]])))?,
                v6: true,
                proto,
                l4: 40,
                ttl: h[7],
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
            })
        }
        _ => None,
    }
}

/// The IPv4 header checksum verifies: ten words summed straight, no loop.
#[inline(always)]
fn header_checksum_ok(h: &[u8; 20]) -> bool {
    let mut acc = 0u32;
    for w in h.chunks_exact(2) {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    checksum::fold(acc) == 0xFFFF
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(at..)?.first_chunk::<2>()?))
}

/// Ports and TCP flags of a header the general path accepts; `None` for a TCP
/// segment that opens, closes or resets (a change of state: the general path's).
#[inline(always)]
fn ports(proto: u8, l4: &[u8]) -> Option<(u16, u16, Option<u8>)> {
    match proto {
        ip_proto::TCP => {
            let h = l4.first_chunk::<20>()?;
            let hl = usize::from(h[12] >> 4) * 4;
            let f = h[13];
            if hl < 20
                || hl > l4.len()
                || f & (tcp::flags::SYN | tcp::flags::FIN | tcp::flags::RST) != 0
            {
                return None;
            }
            Some((u16_at(h, 0)?, u16_at(h, 2)?, Some(f)))
        }
        ip_proto::UDP => {
            let h = l4.first_chunk::<8>()?;
            let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if len < 8 || len > l4.len() {
                return None;
            }
            Some((u16_at(h, 0)?, u16_at(h, 2)?, None))
        }
        _ => None,
    }
}

impl Engine {
    /// The verdict on `frame` if it is a client's packet of an established flow in
    /// one of the common shapes; `None`, with nothing changed, for everything else.
    #[inline]
    pub(super) fn established(
        &mut self,
        now: Nanos,
        frame: &[u8],
        out: &mut [u8],
    ) -> Option<Verdict> {
        self.established_hinted(now, frame, out, None)
    }

    /// [`Engine::established`], given the flow key the batch path peeked and its hash:
    /// when the key read here is that one, its hash is not computed again.
    #[inline(always)]
    pub(super) fn established_hinted(
        &mut self,
        now: Nanos,
        frame: &[u8],
        out: &mut [u8],
        hint: Option<(&ForwardKey, u64)>,
    ) -> Option<Verdict> {
        let facts = &self.facts;
        let mac = MacAddr(*frame.first_chunk::<6>()?);
        if mac != facts.macs[0] && mac != facts.macs[1] {
            return None;
        }
        let outer = ip(frame.get(ethernet::HEADER_LEN..)?, u16_at(frame, 12)?)?;
        let tunnel = outer.proto == ip_proto::GRE;
        let (vsid, ip) = if tunnel {
            if !facts.provider.contains(&Some(outer.dst)) {
                return None;
            }
            let g = outer.bytes.get(outer.l4..)?;
            if u16_at(g, 0)? != gre::NVGRE_FLAGS || u16_at(g, 2)? != ethernet::ethertype::TEB {
                return None;
            }
            let vsid = u32::from_be_bytes(*g.get(4..)?.first_chunk::<4>()?) >> 8;
            if is_reserved_on_wire(vsid) {
                return None;
            }
            let inner = g.get(gre::NVGRE_HEADER_LEN..)?;
            (
                vsid,
                ip(inner.get(ethernet::HEADER_LEN..)?, u16_at(inner, 12)?)?,
            )
        } else {
            (0, outer)
        };
        if ip.ttl <= 1 {
            return None;
        }
        let (sport, dport, flags) = ports(ip.proto, ip.bytes.get(ip.l4..)?)?;
        if !ip.checksum_ok() || (tunnel && !outer.checksum_ok()) {
            return None;
        }
        let sender = tunnel.then_some(outer.src);
        let (src, dst) = (ip.src, ip.dst);
        if self.workers > 1 && steer::by_endpoint(src, sport, self.workers) != self.worker {
            return None;
        }
        let key = ForwardKey {
            vsid,
            proto: ip.proto,
            client: src,
            client_port: sport,
            vip: dst,
            vip_port: dport,
        };
        let now_s = seconds(now);
        let id = match hint {
            Some((peeked, hash)) if *peeked == key => {
                self.shard.find_forward_live_hashed(&key, hash, now_s)?
            }
            _ => self.shard.find_forward_live(&key, now_s)?,
        };
        let flow = self.shard.flow(id);
        let Owner::Pool(pool) = flow.owner() else {
            return None;
        };
        let pf = facts.pools.get(pool as usize)?;
        if !pf.eligible || pf.frontend != vsid || pf.address != dst {
            return None;
        }
        if let Some(pa) = sender {
            // The general path finds the sender's host by its PA and refuses a binding
            // of another host's client; a PA that names the binding's host is that.
            let pas = facts.host_pas.get(usize::from(flow.client_host))?;
            if flow.client_host == NO_HOST || !pas.contains(&Some(pa)) {
                return None;
            }
        }
        // A floating-IP flow still opening is the DSR handshake's (`dsr.rs`).
        let dsr_opening = pf.floating_ip && flow.state == State::SynSent;
        if dsr_opening || !flow.state.kept_by_forward_segment(flags) {
            return None;
        }
        let pre = self.routes.prebuilt(flow.pool, flow.dip).ok()?;
        let len = ip.bytes.len();
        if len > pre.room() {
            return None;
        }
        let ack = ip
            .bytes
            .get(ip.l4 + 8..)
            .and_then(|b| b.first_chunk::<4>())
            .map(|b| u32::from_be_bytes(*b));
        let ident = self.ident.wrapping_add(1);
        let off = pre
            .write(out, emit::ip_ethertype(ip.v6), len, ident, flow.flow_id)
            .ok()?;
        // Decided: from here on, what the general path does, and nothing can fail.
        self.ident = ident;
        let inner = &mut out[off..off + len];
        inner.copy_from_slice(ip.bytes);
        let rw = nat::Rewrite {
            src: flow
                .is_full_nat()
                .then_some((flow.ret.peer, flow.ret.peer_port)),
            dst: (!pf.floating_ip).then_some((flow.ret.dip, flow.ret.dip_port)),
            hop: true,
        };
        nat::apply_whole(inner, ip.v6, ip.proto == ip_proto::UDP, &rw);
        let verdict = Verdict::Forward {
            egress: pre.egress(),
            len: off + len,
            matched: Matched::of(flow),
        };
        self.counters
            .record_forward(frame.len(), off + len, flow, Direction::Forward);
        // `touch` with no change of state (checked above): the clock only.
        self.shard.refresh(id, now_s);
        if let (Some(f), Some(ack)) = (flags, ack)
            && f & tcp::flags::ACK != 0
            && self.shard.resets_on_idle(id)
        {
            self.shard.note_ack(id, Direction::Forward, ack);
        }
        Some(verdict)
    }
}
