//! The policy the engine target runs: the lab's example plus one rule of every kind the
//! engine implements (all-ports, ICMP echo forwarded and dropped, idle timeout with TCP
//! reset, inbound NAT, outbound SNAT, a floating IP), so that fuzzing reaches those
//! paths and not only plain balancing. Blue's rules are the engine's rule tests' own
//! (`src/engine/tests/rules.toml`), Red's its outbound tests' (`outbound.toml` there).
//! Must never: give a rule an address or VSID another tenant owns (the policy must stay
//! valid, which a test checks).

/// Blue's rules, shared with the engine's unit tests.
const BLUE: &str = include_str!("../../crates/proto/src/engine/tests/rules.toml");

/// Red's rules, shared with the engine's outbound tests, appended after the tenants.
const RED: &str = include_str!("../../crates/proto/src/engine/tests/outbound.toml");

/// The text of the policy (see the module's doc).
pub fn text() -> String {
    let red = "[[tenant]]\nname = \"red\"";
    let mut t = crate::EXAMPLE
        .replacen(red, &format!("{BLUE}\n{red}"), 1)
        // A floating IP's DIP host returns replies itself, through a next hop.
        .replacen(
            "mac = \"02:00:00:00:06:12\"\n",
            "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
            1,
        );
    t.push_str(RED);
    t
}
