//! MAC addresses as the policy file spells them: stricter than the wire type's
//! parser, so that a config has one spelling operators can grep for.

use crate::wire::MacAddr;

/// A MAC address in the policy file not spelled `xx:xx:xx:xx:xx:xx`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("expected six two-digit hex bytes separated by ':' (e.g. 02:00:00:00:01:0a)")]
pub struct MacParseError;

/// Accepts exactly `xx:xx:xx:xx:xx:xx` (either case): the form `ip link` prints, so
/// operators can paste it. Other spellings are refused rather than guessed.
pub(super) fn parse(s: &str) -> Result<MacAddr, MacParseError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let mac = parse("02:00:00:B1:00:fe").unwrap();
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
            assert_eq!(parse(bad), Err(MacParseError), "{bad:?}");
        }
    }

    #[test]
    fn classifies_group_and_zero() {
        assert!(parse("01:00:5e:00:00:01").unwrap().is_multicast());
        assert!(MacAddr([0; 6]).is_zero());
        assert!(!MacAddr([0; 6]).is_unicast());
    }
}
