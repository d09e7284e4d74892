//! Changes to the policy text that lab flags ask for (`--pa-mtu`), made on the text
//! before it is loaded, so that the LB, the hosts and the lab's own links all read the
//! same changed policy from the one file the lab writes.
//!
//! Line-based and conservative: it edits only a key inside the `[balancer.provider]`
//! table and refuses a policy whose provider table it cannot find; it must never
//! change any other line (the result is loaded and checked like any policy).

/// Why a flag could not be applied to the policy text.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error(
        "--pa-mtu: the policy has no `[balancer.provider]` table header (an inline \
         `provider = {{...}}` cannot be changed): set `mtu` in the file instead"
    )]
    NoProviderTable,
}

/// The header line of a TOML table, without comments and spaces.
fn header(line: &str) -> Option<&str> {
    let l = line.split('#').next().unwrap_or("").trim();
    (l.starts_with('[') && l.ends_with(']')).then_some(l)
}

/// Whether `line` assigns `key` (`key = ...`, any spacing).
fn assigns(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

/// The policy text with `balancer.provider.mtu` set to `mtu` (the PA network's MTU):
/// the existing `mtu` line replaced, or one added under the table header.
pub fn with_provider_mtu(text: &str, mtu: u16) -> Result<String, OverrideError> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| header(l) == Some("[balancer.provider]"))
        .ok_or(OverrideError::NoProviderTable)?;
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| header(l).is_some())
        .map_or(lines.len(), |(i, _)| i);
    let new_line = format!("mtu = {mtu}   # set by nvlb lab --pa-mtu");
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match (start + 1..end).find(|&i| lines.get(i).is_some_and(|l| assigns(l, "mtu"))) {
        Some(i) => {
            if let Some(slot) = out.get_mut(i) {
                *slot = new_line;
            }
        }
        None => out.insert(start + 1, new_line),
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Snapshot;

    const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    #[test]
    fn sets_the_provider_mtu_and_nothing_else() {
        let text = with_provider_mtu(EXAMPLE, 1400).unwrap();
        let s = Snapshot::from_toml(&text, "x").unwrap();
        assert_eq!(s.balancer().provider.mtu, 1400);
        assert_eq!(s.balancer().external.mtu, 1500, "external untouched");
        let before: Vec<&str> = EXAMPLE.lines().collect();
        let after: Vec<&str> = text.lines().collect();
        assert_eq!(before.len(), after.len());
        let changed: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
    }

    #[test]
    fn adds_the_key_when_absent_and_refuses_without_a_table() {
        let text = "[balancer]\nname = \"x\"\n[balancer.provider] # PA\nmac = \"a\"\n\
                    [balancer.flows]\nmtu = 9\n";
        let got = with_provider_mtu(text, 1300).unwrap();
        assert!(
            got.contains("[balancer.provider] # PA\nmtu = 1300"),
            "{got}"
        );
        assert!(got.contains("[balancer.flows]\nmtu = 9\n"), "{got}");
        assert!(with_provider_mtu("[balancer]\nprovider = { mtu = 1 }\n", 1400).is_err());
        assert!(assigns("  mtu=1", "mtu"));
        assert!(!assigns("mtu_x = 1", "mtu"));
    }
}
