//! IP prefixes (`10.0.0.0/24`, `fd00:b1::/64`): the address ranges of virtual subnets.
//!
//! Must never accept a prefix with host bits set: `10.0.0.5/24` is nearly always a typo
//! for an address or for `10.0.0.0/24`, and guessing would hide it.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;

/// An IPv4 or IPv6 network: an address with all host bits clear and a length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PrefixError {
    /// Not of the form `ADDRESS/LENGTH`, or either part does not parse.
    #[error("expected ADDRESS/LENGTH (e.g. 10.0.0.0/24)")]
    Syntax,
    /// The length is beyond the family's width.
    #[error("prefix length {len} is longer than {max} bits")]
    TooLong {
        /// The length given.
        len: u8,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// The address has bits set beyond the prefix length.
    #[error("host bits are set; the network is {network}")]
    HostBits {
        /// The prefix with those bits cleared: most likely what was meant.
        network: IpPrefix,
    },
}

impl IpPrefix {
    /// Refuses a length beyond the family's width and any set host bit.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        let max = max_len(addr);
        if len > max {
            return Err(PrefixError::TooLong { len, max });
        }
        let network = IpPrefix {
            addr: mask(addr, len),
            len,
        };
        if network.addr != addr {
            return Err(PrefixError::HostBits { network });
        }
        Ok(network)
    }

    /// The network address (host bits all clear).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is an IPv6 prefix.
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// Only addresses of the prefix's own family can match.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv6() == self.addr.is_ipv6() && mask(a, self.len) == self.addr
    }

    /// Two prefixes overlap when the shorter one contains the other's network address.
    pub fn overlaps(&self, other: &IpPrefix) -> bool {
        if self.len <= other.len {
            self.contains(other.addr)
        } else {
            other.contains(self.addr)
        }
    }
}

fn max_len(a: IpAddr) -> u8 {
    if a.is_ipv6() { 128 } else { 32 }
}

/// Clears every bit after the first `len`; `len` is at most the family's width.
fn mask(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for IpPrefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or(PrefixError::Syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Syntax)?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
            return Err(PrefixError::Syntax);
        }
        let len: u8 = len.parse().map_err(|_| PrefixError::Syntax)?;
        IpPrefix::new(addr, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contains_respects_length_and_family() {
        let v4 = p("10.0.0.0/24");
        assert!(v4.contains(ip("10.0.0.255")));
        assert!(!v4.contains(ip("10.0.1.0")));
        assert!(!v4.contains(ip("::a00:5")));
        let v6 = p("fd00:b1::/64");
        assert!(v6.contains(ip("fd00:b1::5")));
        assert!(!v6.contains(ip("fd00:b2::5")));
        assert!(p("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(p("10.0.0.5/32").contains(ip("10.0.0.5")));
        assert!(!p("10.0.0.5/32").contains(ip("10.0.0.4")));
    }

    #[test]
    fn refuses_host_bits_and_bad_lengths() {
        assert_eq!(
            "10.0.0.5/24".parse::<IpPrefix>(),
            Err(PrefixError::HostBits {
                network: p("10.0.0.0/24")
            })
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<IpPrefix>(),
            Err(PrefixError::TooLong { .. })
        ));
        for bad in ["10.0.0.0", "10.0.0.0/", "10.0.0.0/+8", "x/8", "fd00::/1290"] {
            assert_eq!(bad.parse::<IpPrefix>(), Err(PrefixError::Syntax), "{bad}");
        }
    }

    #[test]
    fn overlap_is_symmetric() {
        let a = p("10.0.0.0/16");
        let b = p("10.0.3.0/24");
        let c = p("10.1.0.0/24");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(!p("10.0.0.0/8").overlaps(&p("::/0")));
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(p("fd00:b1::/64").to_string(), "fd00:b1::/64");
    }
}
