//! Ethernet MAC addresses as written in the policy file.
//!
//! Temporary home: the lead replaces this with `crate::wire::MacAddr`, which has the
//! same shape (a transparent `[u8; 6]`). This module must never grow behaviour that
//! the wire type would not have.

use core::fmt;
use core::str::FromStr;

/// A 48-bit IEEE 802 MAC address, in transmission order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The group bit: a frame to such an address reaches many stations, so no port,
    /// VM or balancer interface may own one.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All zeros is what an unset field looks like; never a real station.
    pub const fn is_zero(self) -> bool {
        matches!(self.0, [0, 0, 0, 0, 0, 0])
    }

    /// What policy accepts as a station's address.
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast() && !self.is_zero()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Why a MAC address string was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("expected six two-digit hex bytes separated by ':' (e.g. 02:00:00:00:01:0a)")]
pub struct MacParseError;

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Accepts exactly `xx:xx:xx:xx:xx:xx` (either case): the form `ip link` prints,
    /// so operators can paste it. Other spellings are refused rather than guessed.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(MacParseError)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacParseError);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError)?;
        }
        if parts.next().is_some() {
            return Err(MacParseError);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let mac: MacAddr = "02:00:00:B1:00:fe".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0, 0, 0xb1, 0, 0xfe]);
        assert_eq!(mac.to_string(), "02:00:00:b1:00:fe");
        assert!(mac.is_unicast());
    }

    #[test]
    fn refuses_other_spellings() {
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:0a:0b",
            "02-00-00-00-01-0a",
            "2:00:00:00:01:0a",
            "02:00:00:00:01:0g",
            "+2:00:00:00:01:0a",
            "02:00:00:00:01:",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacParseError), "{bad:?}");
        }
    }

    #[test]
    fn classifies_group_and_zero() {
        assert!(
            "01:00:5e:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
        assert!(MacAddr([0; 6]).is_zero());
        assert!(!MacAddr([0; 6]).is_unicast());
    }
}
