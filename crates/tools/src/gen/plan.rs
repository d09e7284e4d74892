//! What the generator sends: one target per (VIP pool, client) drawn from the same
//! policy the LB reads, and frame templates per target and frame size, patched per
//! packet (source port, TCP flags, probe) with incremental checksums.
//!
//! Public VIPs are reached as the Internet router would reach them (plain IP from the
//! gateway MAC to the LB's external MAC); CA VIPs as a Hyper-V host would (NVGRE from
//! a client VM's host PA and MAC to the LB's PA, in the VIP's VSID). Must never build
//! a frame the policy would not explain, and never panic while patching one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::craft::{self, Outer, Transport};
use crate::policy::{Protocol, Snapshot, Vsid};
use crate::wire::{MacAddr, checksum, ethernet, gre, ipv4, ipv6, tcp, udp};

use super::payload;

/// The source address of public-VIP clients: RFC 2544's benchmarking range.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// RFC 5180's IPv6 benchmarking range.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// Client source ports: flows of one target differ only in this.
pub const FIRST_PORT: u16 = 1024;
pub const PORTS: u32 = 65536 - FIRST_PORT as u32;

/// Which VIPs to load.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Pool names; empty = every pool the interfaces reach.
    pub vips: Vec<String>,
    /// Only IPv4 (Some(false)) or IPv6 (Some(true)) VIPs.
    pub v6: Option<bool>,
    /// Only this protocol.
    pub protocol: Option<Protocol>,
    /// Whether CA VIPs may be chosen (a PA-side interface is there to send NVGRE).
    pub ca_vips: bool,
    /// Only public VIPs (no CA VIP even when `ca_vips`).
    pub public_only: bool,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("no VIP pool named {0:?} in the policy")]
    UnknownVip(String),
    #[error(
        "VIP pool {0:?} is a CA VIP: it is reached over NVGRE from a host, give --provider IFNAME"
    )]
    NeedsProvider(String),
    #[error(
        "VIP pool {0:?} has no client: no lookup record of its family in VSID {1} besides its DIPs, or no PA of that family"
    )]
    NoClient(String, u32),
    #[error("the selection matches no VIP pool")]
    Empty,
    #[error("frame size {0} is out of range (1..=9000)")]
    Size(usize),
    #[error("VIP pool {0:?} {1}: the generator cannot load it")]
    Unsupported(String, &'static str),
}

/// Why a pool cannot be a target, if it cannot: an all-ports rule has no port to aim
/// at, and a floating-IP VIP's replies bypass the LB, so the reflector's answers
/// (sent back through the LB, as every other DIP's) would be dropped there and counted
/// as loss that is not the LB's.
fn unsupported(pool: &crate::policy::VipPool) -> Option<&'static str> {
    if pool.rule.all_ports {
        Some("is an all-ports rule (no port to send to)")
    } else if pool.floating_ip {
        Some("is a floating-IP (direct server return) VIP")
    } else {
        None
    }
}

/// How a target's frames reach the LB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Plain IP on the external interface.
    External,
    /// NVGRE on the PA interface; answers come back to `host_mac` in `vsid`.
    Provider { vsid: Vsid, host_mac: MacAddr },
}

/// One frame layout to copy and patch.
#[derive(Clone, Debug)]
struct Template {
    frame: Vec<u8>,
    l4: usize,
    probe: usize,
}

/// A VIP pool with the client that loads it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Index of the pool in the policy.
    pub pool: u16,
    pub name: String,
    pub protocol: Protocol,
    pub vip: IpAddr,
    pub port: u16,
    pub client: IpAddr,
    pub side: Side,
    /// One per frame size, in the order of `Plan::sizes`.
    templates: Vec<Template>,
}

/// Everything the senders and receivers share: targets and frame sizes.
#[derive(Clone, Debug)]
pub struct Plan {
    pub targets: Vec<Target>,
    /// The MAC the LB sends public-VIP answers to (the router's).
    pub gateway_mac: MacAddr,
    pub sizes: Vec<usize>,
}

/// The frame kind of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The first packet of a flow (TCP SYN).
    Open,
    /// A later packet (TCP ACK|PSH, an established-like segment).
    Data,
}

impl Plan {
    /// Picks targets from the policy and builds their templates. `sizes` are Ethernet
    /// frame lengths without FCS of the plain (for CA VIPs: the inner) frame; each is
    /// raised to the least that carries the headers and the probe.
    pub fn new(policy: &Snapshot, sel: &Selection, sizes: &[usize]) -> Result<Plan, PlanError> {
        for &s in sizes {
            if s == 0 || s > 9000 {
                return Err(PlanError::Size(s));
            }
        }
        let sizes = if sizes.is_empty() {
            vec![128]
        } else {
            sizes.to_vec()
        };
        for name in &sel.vips {
            let Some(pool) = policy.pools().iter().find(|p| &p.name == name) else {
                return Err(PlanError::UnknownVip(name.clone()));
            };
            if !pool.is_public() && !sel.ca_vips {
                return Err(PlanError::NeedsProvider(name.clone()));
            }
            if let Some(why) = unsupported(pool) {
                return Err(PlanError::Unsupported(name.clone(), why));
            }
        }
        let mut targets = Vec::new();
        for (i, pool) in policy.pools().iter().enumerate() {
            let Ok(index) = u16::try_from(i) else { break };
            let named = sel.vips.iter().any(|n| n == &pool.name);
            if !sel.vips.is_empty() && !named {
                continue;
            }
            if unsupported(pool).is_some()
                || sel.v6.is_some_and(|v6| v6 != pool.address.is_ipv6())
                || sel.protocol.is_some_and(|p| p != pool.protocol)
                || (!pool.is_public() && (!sel.ca_vips || sel.public_only))
            {
                continue;
            }
            let (client, side, outer) = if pool.is_public() {
                let c = if pool.address.is_ipv6() {
                    IpAddr::V6(CLIENT_V6)
                } else {
                    IpAddr::V4(CLIENT_V4)
                };
                (c, Side::External, None)
            } else {
                match ca_client(policy, i) {
                    Some(x) => x,
                    None if named => {
                        return Err(PlanError::NoClient(pool.name.clone(), pool.frontend.get()));
                    }
                    None => continue,
                }
            };
            // Public VIPs: as the Internet router, from the gateway MAC to the LB's.
            let ext = &policy.balancer().external;
            let router = (ext.gateway_mac.unwrap_or(ext.mac), ext.mac);
            let templates = sizes
                .iter()
                .map(|&size| {
                    let link = match &outer {
                        Some(t) => Link::Tunnel(t),
                        None => Link::Router(router.0, router.1),
                    };
                    template(pool.protocol, client, pool.address, pool.port, size, link)
                })
                .collect();
            targets.push(Target {
                pool: index,
                name: pool.name.clone(),
                protocol: pool.protocol,
                vip: pool.address,
                port: pool.port,
                client,
                side,
                templates,
            });
        }
        if targets.is_empty() {
            return Err(PlanError::Empty);
        }
        let ext = &policy.balancer().external;
        Ok(Plan {
            targets,
            sizes,
            gateway_mac: ext.gateway_mac.unwrap_or(ext.mac),
        })
    }

    /// The target flow slot `slot` loads: slots are dealt round-robin over targets.
    pub fn target_of(&self, slot: u32) -> Option<&Target> {
        let n = u32::try_from(self.targets.len()).ok()?.max(1);
        self.targets.get(usize::try_from(slot % n).ok()?)
    }

    /// The client source port of slot `slot` in generation `generation` (renewed flows take
    /// fresh ports) when `flows` slots are in use.
    pub fn port_of(&self, slot: u32, generation: u32, flows: u32) -> u16 {
        let n = u32::try_from(self.targets.len()).unwrap_or(1).max(1);
        let per_target = flows.div_ceil(n).clamp(1, PORTS);
        let local = slot / n;
        let k =
            (u64::from(local) + u64::from(generation) * u64::from(per_target)) % u64::from(PORTS);
        FIRST_PORT.wrapping_add(k as u16)
    }

    /// Writes packet `seq` of flow slot `slot` into `out`, in the `size_index`th size
    /// of `sizes`; its length (0 when `out` is too small or the slot has no target).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        out: &mut [u8],
        slot: u32,
        port: u16,
        seq: u32,
        size_index: usize,
        kind: Kind,
        now_ns: u64,
    ) -> usize {
        let Some(t) = self.target_of(slot) else {
            return 0;
        };
        let Some(tp) = t.templates.get(size_index % t.templates.len().max(1)) else {
            return 0;
        };
        let n = tp.frame.len();
        let Some(dst) = out.get_mut(..n) else {
            return 0;
        };
        dst.copy_from_slice(&tp.frame);
        let tcp = t.protocol == Protocol::Tcp;
        let csum_at = tp.l4 + if tcp { 16 } else { 6 };
        let mut delta = checksum::delta16(FIRST_PORT, port);
        put16(dst, tp.l4, port);
        if tcp && kind == Kind::Data {
            let old = get16(dst, tp.l4 + 12);
            let new = (old & 0xff00) | u16::from(tcp::flags::ACK | tcp::flags::PSH);
            put16(dst, tp.l4 + 12, new);
            delta = delta.wrapping_add(checksum::delta16(old, new));
        }
        if let Some(p) = dst.get_mut(tp.probe..) {
            payload::write(p, t.pool, slot, seq, now_ns);
            // The template's probe bytes are zero: the new bytes add their sum.
            delta = delta.wrapping_add(checksum::fold(checksum::sum(
                p.get(..payload::LEN).unwrap_or(&[]),
            )) as u32);
        }
        let mut c = checksum::apply_delta(get16(dst, csum_at), delta);
        if !tcp && c == 0 {
            c = 0xffff;
        }
        put16(dst, csum_at, c);
        n
    }
}

impl Plan {
    /// A SYN flood packet: the first packet (SYN) of a new flow of slot `slot`'s
    /// target from client address `src` and port `port`, as [`Plan::build`] writes it,
    /// with the source address replaced (IPv4 header and L4 checksums patched, RFC
    /// 1624). Only public-VIP targets (plain IP) can be spoofed: a CA VIP's client is
    /// a VM the LB checks against its host, so this returns 0 for those, and for an
    /// address of the other family.
    pub fn build_spoofed(
        &self,
        out: &mut [u8],
        slot: u32,
        src: IpAddr,
        port: u16,
        size_index: usize,
        now_ns: u64,
    ) -> usize {
        let Some(t) = self.target_of(slot) else {
            return 0;
        };
        if t.side != Side::External || src.is_ipv6() != t.client.is_ipv6() {
            return 0;
        }
        let Some(tp) = t.templates.get(size_index % t.templates.len().max(1)) else {
            return 0;
        };
        let l4 = tp.l4;
        let n = self.build(out, slot, port, 0, size_index, Kind::Open, now_ns);
        let Some(frame) = out.get_mut(..n) else {
            return 0;
        };
        let ip = ethernet::HEADER_LEN;
        let (at, len) = if src.is_ipv6() {
            (ip + 8, 16)
        } else {
            (ip + 12, 4)
        };
        let new = match src {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let Some(old) = frame.get(at..at + len).map(<[u8]>::to_vec) else {
            return 0;
        };
        let delta = checksum::delta_bytes(&old, &new);
        if let Some(x) = frame.get_mut(at..at + len) {
            x.copy_from_slice(&new);
        }
        if !src.is_ipv6() {
            let c = checksum::apply_delta(get16(frame, ip + 10), delta);
            put16(frame, ip + 10, c);
        }
        let csum_at = l4 + if t.protocol == Protocol::Tcp { 16 } else { 6 };
        let mut c = checksum::apply_delta(get16(frame, csum_at), delta);
        if t.protocol == Protocol::Udp && c == 0 {
            c = 0xffff;
        }
        put16(frame, csum_at, c);
        n
    }
}

/// A small, fast pseudo-random sequence (xorshift64*) for spoofed sources: the flood
/// needs variety, not quality, and no dependency.
#[derive(Clone, Debug)]
pub struct Spoof {
    state: u64,
}

impl Spoof {
    pub fn new(seed: u64) -> Spoof {
        Spoof { state: seed | 1 }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A client address in 198.18.0.0/15 (RFC 2544's benchmarking range) or, for IPv6,
    /// 2001:2::/48 (RFC 5180), and a source port in 1024..=65535.
    pub fn client(&mut self, v6: bool) -> (IpAddr, u16) {
        let r = self.next_u64();
        let port = FIRST_PORT.wrapping_add((r % u64::from(PORTS)) as u16);
        let host = r >> 16;
        let addr = if v6 {
            let base = CLIENT_V6.to_bits() & !((1u128 << 80) - 1);
            IpAddr::V6(Ipv6Addr::from_bits(base | u128::from(host)))
        } else {
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
            IpAddr::V4(Ipv4Addr::from(base | ((host as u32) & 0x1_ffff)))
        };
        (addr, port)
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(x) => u16::from_be_bytes([x[0], x[1]]),
        None => 0,
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(x) = b.get_mut(at..at + 2) {
        x.copy_from_slice(&v.to_be_bytes());
    }
}

/// The NVGRE wrapping of a CA VIP's frames.
#[derive(Clone, Copy, Debug)]
struct Tunnel {
    outer: Outer,
    vm_mac: MacAddr,
    lb_mac: MacAddr,
}

/// The client of a CA VIP: the first VM (lookup record) of its frontend VSID and
/// family that is not one of its DIPs, on a host with a PA of a family the LB has.
fn ca_client(policy: &Snapshot, pool: usize) -> Option<(IpAddr, Side, Option<Tunnel>)> {
    let p = policy.pools().get(pool)?;
    let v6 = p.address.is_ipv6();
    let subnet = policy.subnet(p.frontend)?;
    let lb = &policy.balancer().provider;
    for rec in policy.lookups() {
        if rec.vsid != p.frontend
            || rec.ca.is_ipv6() != v6
            || p.dips.iter().any(|d| d.vsid == rec.vsid && d.ca == rec.ca)
            || policy.is_snat_address(rec.vsid, rec.ca)
        {
            continue;
        }
        let Some(host) = policy.get_host(rec.host) else {
            continue;
        };
        // Prefer an IPv4 outer, as the lab does.
        let pair = [false, true].into_iter().find_map(|outer_v6| {
            let lb_pa = if outer_v6 {
                lb.address_v6().map(IpAddr::V6)
            } else {
                lb.address_v4().map(IpAddr::V4)
            }?;
            Some((host.pa(outer_v6)?, lb_pa))
        });
        let Some((src, dst)) = pair else { continue };
        let tunnel = Tunnel {
            outer: Outer {
                src_mac: host.mac,
                dst_mac: lb.mac,
                src,
                dst,
                vsid: p.frontend.get(),
                flow_id: 0,
            },
            vm_mac: rec.mac,
            lb_mac: subnet.lb_mac,
        };
        let side = Side::Provider {
            vsid: p.frontend,
            host_mac: host.mac,
        };
        return Some((rec.ca, side, Some(tunnel)));
    }
    None
}

/// How a template's frame reaches the LB.
enum Link<'a> {
    /// Plain IP from the first MAC to the second.
    Router(MacAddr, MacAddr),
    Tunnel(&'a Tunnel),
}

/// Header bytes in front of the probe: Ethernet + IP + TCP/UDP.
fn header_len(v6: bool, protocol: Protocol) -> usize {
    ethernet::HEADER_LEN
        + if v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
        + match protocol {
            Protocol::Tcp => 20,
            Protocol::Udp => udp::HEADER_LEN,
        }
}

/// A frame of `size` bytes (inner frame for a tunnel) with source port FIRST_PORT, a
/// SYN for TCP, and an all-zero probe, so that patches only add to its checksum.
fn template(
    protocol: Protocol,
    client: IpAddr,
    vip: IpAddr,
    port: u16,
    size: usize,
    link: Link,
) -> Template {
    let hdr = header_len(vip.is_ipv6(), protocol);
    let body = vec![0u8; size.max(hdr + payload::LEN) - hdr];
    let transport = match protocol {
        Protocol::Tcp => Transport::Tcp {
            src_port: FIRST_PORT,
            dst_port: port,
            flags: tcp::flags::SYN,
            seq: 0x4e56_0000,
            ack: 0,
        },
        Protocol::Udp => Transport::Udp {
            src_port: FIRST_PORT,
            dst_port: port,
        },
    };
    let ip = craft::ip_packet(client, vip, 64, transport, &body);
    let l4_in_ip = if vip.is_ipv6() {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let l4_len = hdr - ethernet::HEADER_LEN - l4_in_ip;
    match link {
        Link::Router(src, dst) => {
            let frame = craft::ip_frame(src, dst, &ip);
            let l4 = ethernet::HEADER_LEN + l4_in_ip;
            Template {
                frame,
                l4,
                probe: l4 + l4_len,
            }
        }
        Link::Tunnel(t) => {
            let inner = craft::ip_frame(t.vm_mac, t.lb_mac, &ip);
            let frame = craft::nvgre(&t.outer, &inner);
            let outer_ip = if t.outer.dst.is_ipv6() {
                ipv6::HEADER_LEN
            } else {
                ipv4::HEADER_LEN
            };
            let l4 = ethernet::HEADER_LEN
                + outer_ip
                + gre::NVGRE_HEADER_LEN
                + ethernet::HEADER_LEN
                + l4_in_ip;
            Template {
                frame,
                l4,
                probe: l4 + l4_len,
            }
        }
    }
}
