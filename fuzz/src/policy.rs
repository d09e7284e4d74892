//! The policy the engine target runs: the lab's example plus one rule of every kind the
//! engine implements (all-ports, ICMP echo forwarded and dropped, idle timeout with TCP
//! reset, inbound NAT, outbound SNAT, a floating IP), so that fuzzing reaches those
//! paths and not only plain balancing. Blue's rules are the engine's rule tests' own
//! (`src/engine/tests/rules.toml`); Red's are below. Must never: give a rule an address
//! or VSID another tenant owns (the policy must stay valid, which a test checks).

/// Blue's rules, shared with the engine's unit tests.
const BLUE: &str = include_str!("../../src/engine/tests/rules.toml");

/// Red's rules, appended after its tenant table: a floating-IP VIP on a DIP of host2
/// and outbound rules with small port blocks (four per VM), so exhaustion is reachable.
const RED: &str = r#"
[[tenant.vip]]
name = "red-dsr"
frontend = "public"
address = "203.0.113.21"
protocol = "tcp"
port = 80
backend_vsid = 6001
floating_ip = true
dips = [{ ca = "10.0.0.5" }]

[[tenant.outbound]]
name = "red-out"
address = "203.0.113.40"
pools = ["red-web"]
ports = "1024-1031"
ports_per_dip = 4
idle_timeout = "60s"

[[tenant.outbound]]
name = "red-out6"
address = "2001:db8:203::40"
pools = ["red-web6"]
ports = "1024-1031"
ports_per_dip = 4
"#;

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
