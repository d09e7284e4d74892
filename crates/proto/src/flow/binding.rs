//! One flow's binding and the two keys it is found by: what a shard stores, and what
//! the idle rules read. Apart from the shard so that the rules about a binding
//! (`idle`) and the table that holds bindings (`shard`) each import it, not each
//! other.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use super::state::State;
use crate::policy::OUTBOUND_POOL_TAG;

/// Index of a binding in its shard's slab.
pub type FlowId = u32;

/// [`Flow::client_host`] of a binding whose client is on the Internet side (public VIPs
/// and outbound replies): no host may speak for it.
pub const NO_HOST: u16 = u16::MAX;

/// What a binding belongs to. Stored packed in [`Flow::pool`] (an outbound rule's index
/// tagged with [`OUTBOUND_POOL_TAG`]) to keep the binding within its byte budget; read
/// and written through this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A VIP pool ([`PoolId`](crate::policy::PoolId)).
    Pool(u32),
    /// An outbound rule, by its index in the policy.
    Outbound(u32),
}

/// How the client's packets of a flow look when they reach the LB (before NAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardKey {
    /// VSID the client sent from: 0 for the Internet side (public VIPs).
    pub vsid: u32,
    /// IP protocol number (TCP or UDP; see [`ip_proto`](crate::wire::ip_proto)).
    pub proto: u8,
    /// Client address: an Internet address for public VIPs, a CA for CA VIPs.
    pub client: IpAddr,
    /// Client source port.
    pub client_port: u16,
    /// VIP the client sent to.
    pub vip: IpAddr,
    /// VIP port the client sent to.
    pub vip_port: u16,
}

/// How the DIP's replies of a flow look when they reach the LB (before NAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnKey {
    /// VSID of the DIP.
    pub vsid: u32,
    /// IP protocol number, as in the forward key.
    pub proto: u8,
    /// The chosen DIP's CA.
    pub dip: IpAddr,
    /// The DIP's port (the backend port, after any port translation).
    pub dip_port: u16,
    /// Whom the DIP talks to: the client itself (public VIPs) or the LB's source-NAT CA.
    pub peer: IpAddr,
    /// Port the DIP talks to: the client's port, or the LB's source-NAT port.
    pub peer_port: u16,
}

/// An address as 128 bits (IPv4 mapped into IPv6) for hashing: two wide writes hash a
/// key faster than the derived field-by-field hash of `IpAddr`. A v4 address and its
/// mapped v6 twin hash alike but never compare equal, so this only costs a probe.
///
/// The two `hash` functions below are `#[inline(always)]`: the flow table's insert,
/// lookup and rehash (in `shard.rs`, through hashbrown) called them out of line once
/// these keys moved out of `shard.rs`, 53 instructions a call and 8% more instructions
/// per new flow; `#[inline]` alone did not change that. Counted, not timed, with
/// `benches/count.sh` (docs/performance.md).
#[inline]
fn addr_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

#[inline]
fn small_fields(vsid: u32, proto: u8, a: u16, b: u16) -> u64 {
    (u64::from(vsid) << 40) | (u64::from(proto) << 32) | (u64::from(a) << 16) | u64::from(b)
}

impl Hash for ForwardKey {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(addr_bits(self.client));
        h.write_u128(addr_bits(self.vip));
        h.write_u64(small_fields(
            self.vsid,
            self.proto,
            self.client_port,
            self.vip_port,
        ));
    }
}

impl Hash for ReturnKey {
    #[inline(always)]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128(addr_bits(self.dip));
        h.write_u128(addr_bits(self.peer));
        h.write_u64(small_fields(
            self.vsid,
            self.proto,
            self.dip_port,
            self.peer_port,
        ));
    }
}

/// One bidirectional NAT binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Key of the client's packets.
    pub forward: ForwardKey,
    /// Key of the DIP's replies.
    pub ret: ReturnKey,
    /// Tenant ([`TenantId`](crate::policy::TenantId)) the binding counts against for
    /// [`ShardLimits::max_per_tenant`].
    pub tenant: u16,
    /// VIP pool ([`PoolId`](crate::policy::PoolId)), or an outbound rule's index tagged with
    /// [`OUTBOUND_POOL_TAG`](crate::policy::OUTBOUND_POOL_TAG); selects the idle rules.
    pub pool: u32,
    /// Index of the chosen DIP in its pool.
    pub dip: u16,
    /// NVGRE FlowID: 8 bits of the flow hash, for ECMP entropy in the PA network.
    pub flow_id: u8,
    /// Host of the client's CA (CA VIPs): the only host that may send for this flow.
    pub client_host: u16,
    /// Connection state; decides the idle timeout (see [`Timeouts::for_state`]).
    pub state: State,
    /// Seconds on the caller's clock when a packet last used this binding.
    pub last_seen: u32,
    pub(super) live: bool,
    /// Generation of the binding's expiry schedule (`wheel.rs`): its slot's entry in
    /// the wheel counts only while it carries this number.
    pub(super) schedule: u8,
}

/// The acknowledgment numbers a reset on idle uses as its sequence numbers: kept
/// beside the slab, not in [`Flow`], and only once a `tcp_reset` rule's flow sees
/// one ([`FlowShard::note_ack`](super::FlowShard::note_ack)), so that the entry keeps
/// room for what later features need (its byte budget, `shard.rs`'s test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acks {
    /// The last acknowledgment number the client sent (what it expects next from the
    /// DIP).
    pub client: u32,
    /// The DIP's last acknowledgment number (what it expects next from the client).
    pub dip: u32,
    /// Which of the two are known (`idle::ACK_FROM_*` bits).
    pub seen: u8,
}

impl Flow {
    /// A binding not yet in a table: NVGRE FlowID 0, no client host ([`NO_HOST`]), no
    /// acknowledgment numbers; [`FlowShard::insert`] sets `last_seen` and makes it live.
    pub fn new(
        forward: ForwardKey,
        ret: ReturnKey,
        tenant: u16,
        pool: u32,
        dip: u16,
        state: State,
    ) -> Flow {
        Flow {
            forward,
            ret,
            tenant,
            pool,
            dip,
            flow_id: 0,
            client_host: NO_HOST,
            state,
            last_seen: 0,
            live: false,
            schedule: 0,
        }
    }

    /// The pool or outbound rule the binding belongs to.
    #[inline]
    pub fn owner(&self) -> Owner {
        if self.pool & OUTBOUND_POOL_TAG != 0 {
            Owner::Outbound(self.pool & !OUTBOUND_POOL_TAG)
        } else {
            Owner::Pool(self.pool)
        }
    }

    /// Makes the binding belong to `owner` (a pool id or rule index below 2^31).
    pub fn set_owner(&mut self, owner: Owner) {
        self.pool = match owner {
            Owner::Pool(p) => p & !OUTBOUND_POOL_TAG,
            Owner::Outbound(r) => OUTBOUND_POOL_TAG | r,
        };
    }

    /// True for full-NAT bindings (CA VIPs), whose replies go to the LB's own CA.
    pub fn is_full_nat(&self) -> bool {
        self.ret.peer != self.forward.client || self.ret.peer_port != self.forward.client_port
    }
}
