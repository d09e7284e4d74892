//! Identifiers of the tenant model: VSIDs, dense indices into the snapshot, protocols.
//!
//! These are plain values the packet engine copies around per packet; this module must
//! never allocate or know about the config file.

use core::fmt;
use core::str::FromStr;

/// Index of a tenant in [`Snapshot::tenants`](super::Snapshot::tenants).
pub type TenantId = u16;
/// Index of a Hyper-V host in [`Snapshot::hosts`](super::Snapshot::hosts).
pub type HostId = u16;
/// Index of a VIP pool in [`Snapshot::pools`](super::Snapshot::pools).
pub type PoolId = u32;
/// Index of a virtual subnet in [`Snapshot::subnets`](super::Snapshot::subnets).
pub type SubnetId = u32;

/// A virtual subnet ID: the 24-bit tenant network identifier NVGRE carries in the GRE key.
///
/// The value 0 doubles as [`Vsid::PUBLIC`], the non-virtualised (Internet) side, so that
/// VIP lookups key on `(Vsid, address)` uniformly. 0 is never sent in a GRE key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Vsid(u32);

impl Vsid {
    /// The non-virtualised side: public VIPs live here.
    pub const PUBLIC: Vsid = Vsid(0);
    /// The largest value the 24-bit field holds.
    pub const MAX: u32 = 0x00FF_FFFF;

    /// `None` when `v` does not fit the 24-bit field; reserved values are accepted so
    /// that callers can name them (the validator refuses them separately).
    pub const fn new(v: u32) -> Option<Vsid> {
        if v <= Self::MAX { Some(Vsid(v)) } else { None }
    }

    /// The raw 24-bit value (0 for [`Vsid::PUBLIC`]).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// RFC 7637 reserves 0x1–0xFFF and 0xFFFFFF. 0 is reserved on the wire as well, but
    /// here it means [`Vsid::PUBLIC`], so it is not reported by this method; use
    /// [`is_reserved_on_wire`] for a raw key taken from a packet.
    pub const fn is_reserved(self) -> bool {
        (self.0 >= 1 && self.0 <= 0xFFF) || self.0 == Self::MAX
    }

    /// Whether this is [`Vsid::PUBLIC`], the Internet side.
    pub const fn is_public(self) -> bool {
        self.0 == 0
    }

    /// The VSID of an NVGRE key (VSID << 8 | FlowID), or `None` when it is reserved on
    /// the wire: a packet carrying it must be dropped.
    pub const fn from_key(key: u32) -> Option<Vsid> {
        let v = key >> 8;
        if is_reserved_on_wire(v) {
            None
        } else {
            Some(Vsid(v))
        }
    }
}

/// Whether a raw VSID read from (or about to be written into) a GRE key is unusable:
/// 0–0xFFF and 0xFFFFFF are reserved by RFC 7637. Values above 24 bits cannot come from
/// a key, but are reported as reserved too so that a bad computation never passes.
pub const fn is_reserved_on_wire(v: u32) -> bool {
    v <= 0xFFF || v >= Vsid::MAX
}

impl fmt::Display for Vsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_public() {
            f.write_str("public")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The L4 protocols a VIP pool can serve.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

impl Protocol {
    /// The IP protocol / IPv6 next-header number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol of an IP protocol / IPv6 next-header number; `None` for anything but
    /// TCP and UDP.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The name used in the policy file and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a protocol name was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("expected \"tcp\" or \"udp\"")]
pub struct ProtocolParseError;

impl FromStr for Protocol {
    type Err = ProtocolParseError;

    /// Lower case only, as written in the config file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(ProtocolParseError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsid_range_and_reserved_values() {
        assert_eq!(Vsid::new(0x100_0000), None);
        assert_eq!(Vsid::new(5001).map(Vsid::get), Some(5001));
        for reserved in [1, 0xFFF, 0xFF_FFFF] {
            assert!(Vsid::new(reserved).unwrap().is_reserved(), "{reserved:#x}");
        }
        for usable in [0, 0x1000, 0xFF_FFFE] {
            assert!(!Vsid::new(usable).unwrap().is_reserved(), "{usable:#x}");
        }
        assert!(Vsid::PUBLIC.is_public());
    }

    #[test]
    fn wire_reservation_includes_zero() {
        assert!(is_reserved_on_wire(0));
        assert!(is_reserved_on_wire(0xFFF));
        assert!(!is_reserved_on_wire(0x1000));
        assert!(!is_reserved_on_wire(0xFF_FFFE));
        assert!(is_reserved_on_wire(0xFF_FFFF));
        assert!(is_reserved_on_wire(u32::MAX));
    }

    #[test]
    fn protocol_numbers_round_trip() {
        for p in [Protocol::Tcp, Protocol::Udp] {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
        }
        assert_eq!(Protocol::from_number(1), None);
        assert!("TCP".parse::<Protocol>().is_err());
    }
}
