//! Validation tests: the example must load, and each refusal is provoked by one edit of
//! the example and must name the edited line and the right field.

use std::net::IpAddr;

use super::super::{Diagnostic, Protocol, Snapshot, Vsid, summary};

const EXAMPLE: &str = include_str!("../../../../../lb-config/example.toml");
const FILE: &str = "example.toml";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vsid(n: u32) -> Vsid {
    Vsid::new(n).unwrap()
}

fn load(text: &str) -> Snapshot {
    Snapshot::from_toml(text, FILE).unwrap_or_else(|e| panic!("refused:\n{e}"))
}

fn refuse(text: &str) -> Vec<Diagnostic> {
    match Snapshot::from_toml(text, FILE) {
        Ok(_) => panic!("accepted a bad policy"),
        Err(e) => e.errors,
    }
}

/// The example with `old` (which must occur exactly once) replaced by `new`.
fn mutate(old: &str, new: &str) -> String {
    assert_eq!(
        EXAMPLE.matches(old).count(),
        1,
        "anchor {old:?} must be unique"
    );
    EXAMPLE.replacen(old, new, 1)
}

/// `text` without its pools' health checks (for tests of what they would also refuse).
fn without_health(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("health = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// 1-based line and character column of the first occurrence of `needle`; when the
/// needle contains `⟨`, of the spot it marks (the marker itself is not in the text).
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let (pre, post) = needle.split_once('⟨').unwrap_or(("", needle));
    let at = text
        .find(&format!("{pre}{post}"))
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
        + pre.len();
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..at].chars().count() + 1)
}

/// Asserts that some error sits exactly at `needle`, names `field` and says `says`.
fn expect_at(errors: &[Diagnostic], text: &str, needle: &str, field: &str, says: &str) {
    let (line, column) = pos(text, needle);
    let found = errors.iter().any(|d| {
        d.file == FILE
            && d.line == line
            && d.column == column
            && d.field == field
            && d.message.contains(says)
    });
    assert!(
        found,
        "no error at {line}:{column} {field} containing {says:?}; got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Asserts that the only error is the expected one.
fn expect_only(text: &str, needle: &str, field: &str, says: &str) {
    let errors = refuse(text);
    expect_at(&errors, text, needle, field, says);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
}

// ------------------------------------------------------------------ the example loads

#[test]
fn example_loads_with_the_guides_topology() {
    let s = load(EXAMPLE);
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    assert_eq!(s.balancer().name, "lb1");
    let names: Vec<&str> = s.tenants().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["blue", "red"]);
    assert_eq!(s.hosts().len(), 5);
    assert_eq!(s.subnets().len(), 4);
    assert_eq!(s.lookups().len(), 17);
    assert_eq!(s.pools().len(), 7);
    // Figure 4: Blue's four VMs on three hosts, Red's two VMs on two hosts.
    let web_hosts = |pool: &str| {
        let p = s.pools().iter().find(|p| p.name == pool).unwrap();
        let mut hosts: Vec<u16> = p.dips.iter().map(|d| d.host).collect();
        hosts.sort_unstable();
        hosts.dedup();
        (p.dips.len(), hosts.len())
    };
    assert_eq!(web_hosts("blue-web"), (4, 3));
    assert_eq!(web_hosts("red-web"), (2, 2));
    assert_eq!(web_hosts("blue-web6"), (4, 3));
}

#[test]
fn balancer_ports_and_flow_limits() {
    let s = load(EXAMPLE);
    let b = s.balancer();
    assert_eq!(
        b.external.address_v4(),
        Some("198.51.100.10".parse().unwrap())
    );
    assert_eq!(
        b.external.address_v6(),
        Some("2001:db8:100::10".parse().unwrap())
    );
    assert_eq!(
        b.external.gateway_mac.unwrap().to_string(),
        "02:00:00:00:01:01"
    );
    assert_eq!(b.provider.gateway_mac, None);
    assert!(b.provider.owns(ip("fd00:6::10")));
    assert!(!b.provider.owns(ip("198.51.100.10")));
    assert_eq!((b.external.mtu, b.provider.mtu), (1500, 1600));
    assert_eq!(b.flows.tcp_established_timeout.as_secs(), 300);
    assert_eq!(b.flows.max_flows_per_tenant, 524_288);
    assert_eq!(b.flows.preallocate_flows_per_worker, 65_536);
}

#[test]
fn flows_table_is_optional_and_durations_take_units() {
    let start = EXAMPLE.find("[balancer.flows]").unwrap();
    let end = EXAMPLE.find("udp_timeout = \"30s\"\n").unwrap() + "udp_timeout = \"30s\"\n".len();
    let without = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
    assert_eq!(
        load(&without).balancer().flows,
        super::super::FlowLimits::default()
    );
    let s = load(&mutate("udp_timeout = \"30s\"", "udp_timeout = \"2m\""));
    assert_eq!(s.balancer().flows.udp_timeout.as_secs(), 120);
    let s = load(&mutate(
        "tcp_syn_timeout = \"20s\"",
        "tcp_syn_timeout = \"1500ms\"",
    ));
    assert_eq!(s.balancer().flows.tcp_syn_timeout.as_millis(), 1500);
}

#[test]
fn find_vip_tells_blue_and_red_vip1_apart_by_vsid() {
    let s = load(EXAMPLE);
    let vip1 = ip("10.0.0.100");
    let blue = s.find_vip(vsid(5001), vip1, Protocol::Tcp, 8080).unwrap();
    let red = s.find_vip(vsid(6001), vip1, Protocol::Tcp, 8080).unwrap();
    assert_ne!(blue, red);
    assert_eq!(s.pool(blue).name, "blue-vip1");
    assert_eq!(s.pool(red).name, "red-vip1");
    assert_eq!(s.tenant(s.pool(red).tenant).unwrap().name, "red");
    assert!(!s.pool(blue).is_public());
    // Same address, but not in the public side, nor for another protocol or port.
    assert_eq!(s.find_vip(Vsid::PUBLIC, vip1, Protocol::Tcp, 8080), None);
    assert_eq!(s.find_vip(vsid(5001), vip1, Protocol::Udp, 8080), None);
    assert_eq!(s.find_vip(vsid(5001), vip1, Protocol::Tcp, 80), None);
    assert!(s.is_vip_address(vsid(5001), vip1));
    assert!(!s.is_vip_address(vsid(5002), vip1));
    let public = s
        .find_vip(Vsid::PUBLIC, ip("2001:db8:203::20"), Protocol::Tcp, 80)
        .unwrap();
    assert_eq!(s.pool(public).name, "red-web6");
    assert!(s.pool(public).is_public());
}

#[test]
fn lookup_of_one_ca_depends_on_the_vsid() {
    let s = load(EXAMPLE);
    let blue = s.lookup(vsid(5001), ip("10.0.0.5")).unwrap();
    let red = s.lookup(vsid(6001), ip("10.0.0.5")).unwrap();
    assert_eq!(s.host(blue.host).name, "host1");
    assert_eq!(s.host(red.host).name, "host2");
    assert_ne!(blue.mac, red.mac);
    assert_eq!(s.lookup(vsid(5002), ip("10.0.0.5")), None);
    assert_eq!(s.lookup(Vsid::PUBLIC, ip("10.0.0.5")), None);
}

#[test]
fn dips_are_resolved_through_lookup_records() {
    let s = load(EXAMPLE);
    let id = s
        .find_vip(Vsid::PUBLIC, ip("203.0.113.10"), Protocol::Tcp, 80)
        .unwrap();
    let pool = s.pool(id);
    let weights: Vec<u32> = pool.dips.iter().map(|d| d.weight).collect();
    assert_eq!(weights, [1, 1, 1, 2]);
    let last = pool.dips[3];
    assert_eq!(
        (last.vsid, last.ca, last.port),
        (vsid(5001), ip("10.0.0.8"), 80)
    );
    assert_eq!(s.host(last.host).name, "host3");
    assert_eq!(last.mac.to_string(), "00:1d:d8:b7:1c:04");
    // DIP port defaults to the VIP's, weight to 1.
    let red = s.pool(
        s.find_vip(vsid(6001), ip("10.0.0.100"), Protocol::Tcp, 8080)
            .unwrap(),
    );
    assert_eq!(red.dips[0].vsid, vsid(6002));
    assert_eq!(red.dips[0].weight, 1);
}

#[test]
fn hosts_subnets_and_snat() {
    let s = load(EXAMPLE);
    let h = s.host_by_pa(ip("fd00:6::13")).unwrap();
    assert_eq!(s.host(h).name, "host3");
    assert_eq!(
        s.host_by_pa(ip("192.168.6.10")),
        None,
        "the LB's own PA is no host"
    );
    assert_eq!(s.get_host(999), None);
    assert_eq!(s.get_pool(999), None);
    let sub = s.subnet(vsid(6002)).unwrap();
    assert_eq!(s.tenant(sub.tenant).unwrap().name, "red");
    assert!(sub.prefixes.iter().any(|p| p.contains(ip("10.0.1.21"))));
    let v4 = s.snat_for(vsid(5002), false).unwrap();
    assert_eq!(
        (v4.ca, v4.first_port, v4.last_port),
        (ip("10.0.1.250"), 20000, 29999)
    );
    assert_eq!(
        s.snat_for(vsid(5002), true).unwrap().ca,
        ip("fd00:0:0:2::fa")
    );
    assert_eq!(s.snat_for(Vsid::PUBLIC, false), None);
    assert!(s.is_snat_address(vsid(6001), ip("10.0.0.250")));
    assert!(!s.is_snat_address(vsid(6001), ip("10.0.0.5")));
    assert!(s.same_routing_domain(vsid(5001), vsid(5002)));
    assert!(!s.same_routing_domain(vsid(5001), vsid(6001)));
    assert!(!s.same_routing_domain(Vsid::PUBLIC, Vsid::PUBLIC));
    assert!(!s.same_routing_domain(vsid(5001), vsid(9999)));
}

#[test]
fn snapshot_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Snapshot>();
}

// ------------------------------------------------------------------ VIP keys

#[test]
fn refuses_a_public_vip_declared_twice_across_tenants() {
    let text = mutate("address = \"203.0.113.20\"", "address = \"203.0.113.10\"");
    expect_only(
        &text,
        "\"203.0.113.10\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001",
        "tenant[1].vip[0].address",
        "duplicate VIP: public 203.0.113.10 tcp/80 is already served by `blue-web`",
    );
}

#[test]
fn accepts_the_same_public_address_on_another_port_or_protocol() {
    let text = mutate("address = \"203.0.113.20\"", "address = \"203.0.113.10\"");
    let text = text.replacen(
        "port = 80\nbackend_vsid = 6001",
        "port = 443\nbackend_vsid = 6001",
        1,
    );
    let s = load(&text);
    assert!(
        s.find_vip(Vsid::PUBLIC, ip("203.0.113.10"), Protocol::Tcp, 443)
            .is_some()
    );
}

#[test]
fn refuses_a_duplicate_ca_vip_in_one_vsid() {
    let block = &EXAMPLE[EXAMPLE.find("[[tenant.vip]]\nname = \"red-vip1\"").unwrap()..];
    let text = format!("{EXAMPLE}\n{}", block.replace("red-vip1", "red-vip1-again"));
    let again = "name = \"red-vip1-again\"\nfrontend = 6001\naddress = ⟨\"10.0.0.100\"";
    expect_only(
        &text,
        again,
        "tenant[1].vip[3].address",
        "duplicate VIP: 6001 10.0.0.100 tcp/8080 is already served by `red-vip1`",
    );
}

// ------------------------------------------------------------------ DIPs

#[test]
fn refuses_a_dip_without_lookup_record() {
    let text = mutate(
        "{ ca = \"10.0.0.7\", port = 80, weight = 1 }",
        "{ ca = \"10.0.0.9\", port = 80, weight = 1 }",
    );
    expect_only(
        &text,
        "\"10.0.0.9\"",
        "tenant[0].vip[0].dips[2].ca",
        "10.0.0.9 has no lookup record in VSID 5001",
    );
}

#[test]
fn refuses_a_dip_of_the_other_family() {
    let text = mutate(
        "{ ca = \"fd00:0:0:1::5\", port = 80 },\n  { ca = \"fd00:0:0:1::6\", port = 80 },\n  { ca = \"fd00:0:0:1::7\"",
        "{ ca = \"10.0.0.5\", port = 80 },\n  { ca = \"fd00:0:0:1::6\", port = 80 },\n  { ca = \"fd00:0:0:1::7\"",
    );
    expect_only(
        &text,
        "\"10.0.0.5\", port = 80 },\n  { ca = \"fd00:0:0:1::6\"",
        "tenant[0].vip[1].dips[0].ca",
        "IPv4 DIP 10.0.0.5 behind IPv6 VIP",
    );
}

#[test]
fn refuses_a_dip_listed_twice() {
    let text = mutate(
        "{ ca = \"10.0.0.6\", port = 80, weight = 1 }",
        "{ ca = \"10.0.0.5\", port = 80, weight = 1 }",
    );
    expect_only(
        &text,
        "{ ca = \"10.0.0.5\", port = 80, weight = 1 },\n  { ca = \"10.0.0.7\"",
        "tenant[0].vip[0].dips[1]",
        "listed twice",
    );
}

#[test]
fn refuses_pools_whose_weights_are_all_zero_or_empty() {
    let text = mutate(
        "  { ca = \"10.0.1.21\", port = 8080 },\n]\n",
        "  { ca = \"10.0.1.21\", port = 8080, weight = 0 },\n]\n",
    );
    let red_dips = "[\n  { ca = \"10.0.1.21\", port = 8080, weight = 0 }";
    expect_only(
        &text,
        red_dips,
        "tenant[1].vip[2].dips",
        "every DIP has weight 0",
    );

    let text = mutate(
        "dips = [\n  { ca = \"10.0.1.21\", port = 8080 },\n]\n",
        "dips = []\n",
    );
    expect_only(&text, "[]", "tenant[1].vip[2].dips", "at least one DIP");
}

#[test]
fn accepts_a_drained_dip_beside_a_live_one() {
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, weight = 0 }",
    );
    let s = load(&text);
    assert_eq!(s.pools()[0].dips[3].weight, 0);
}

#[test]
fn refuses_weights_beyond_the_maglev_bound() {
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, weight = 70000 }",
    );
    expect_only(
        &text,
        "70000",
        "tenant[0].vip[0].dips[3].weight",
        "weight 70000 is not in 0..=65535",
    );
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, weight = -1 }",
    );
    expect_only(&text, "-1", "tenant[0].vip[0].dips[3].weight", "weight -1");
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, weight = 65535 }",
    );
    assert_eq!(load(&text).pools()[0].dips[3].weight, 65535);
}

#[test]
fn refuses_bad_ports() {
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 65536, weight = 2 }",
    );
    expect_only(
        &text,
        "65536",
        "tenant[0].vip[0].dips[3].port",
        "port 65536 is not in 1..=65535",
    );
    let text = mutate(
        "port = 80\nbackend_vsid = 6001\ndips = [\n  { ca = \"10.0.0.5\"",
        "port = 0\nbackend_vsid = 6001\ndips = [\n  { ca = \"10.0.0.5\"",
    );
    expect_only(
        &text,
        "0\nbackend_vsid = 6001",
        "tenant[1].vip[0].port",
        "port 0",
    );
}

// ------------------------------------------------------------------ VSIDs

#[test]
fn refuses_reserved_vsids_wherever_written() {
    for bad in ["0", "1", "4095", "16777215", "16777216", "-5"] {
        // backend_vsid of a public VIP.
        let text = mutate(
            "backend_vsid = 6001\ndips = [\n  { ca = \"10.0.0.5\"",
            &format!("backend_vsid = {bad}\ndips = [\n  {{ ca = \"10.0.0.5\""),
        );
        let needle = format!("backend_vsid = ⟨{bad}\ndips = [\n  {{ ca = \"10.0.0.5\"");
        expect_only(&text, &needle, "tenant[1].vip[0].backend_vsid", "VSID");
        // A DIP's own vsid.
        let text = mutate(
            "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
            &format!("{{ ca = \"10.0.0.8\", port = 80, weight = 2, vsid = {bad} }}"),
        );
        expect_only(
            &text,
            &format!("vsid = ⟨{bad} }}"),
            "tenant[0].vip[0].dips[3].vsid",
            "VSID",
        );
    }
    let text = mutate("vsid = 6002\nprefixes", "vsid = 4096\nprefixes");
    assert!(
        load(
            &text
                .replace("vsid = 6002", "vsid = 4096")
                .replace("backend_vsid = 6002", "backend_vsid = 4096")
        )
        .subnet(vsid(4096))
        .is_some()
    );

    let text = mutate("vsid = 6002\nprefixes", "vsid = 16777215\nprefixes");
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "vsid = ⟨16777215\nprefixes",
        "tenant[1].routing_domain[0].subnet[1].vsid",
        "reserved",
    );

    let text = mutate("frontend = 6001", "frontend = 100");
    expect_only(
        &text,
        "100\naddress",
        "tenant[1].vip[2].frontend",
        "VSID 100 is reserved",
    );

    let text = mutate(
        "vsid = 6002\nca = \"10.0.1.21\"",
        "vsid = 16777216\nca = \"10.0.1.21\"",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "16777216",
        "tenant[1].lookup[4].vsid",
        "does not fit in 24 bits",
    );
}

#[test]
fn refuses_a_vsid_declared_twice_even_across_tenants() {
    let text = mutate("vsid = 6002\nprefixes", "vsid = 5002\nprefixes");
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "5002\nprefixes = [\"10.0.1.0/24\", \"fd00:0:0:2::/64\"]\nlb_mac = \"02:00:00:e2",
        "tenant[1].routing_domain[0].subnet[1].vsid",
        "VSID 5002 is already declared (tenant `blue`",
    );
}

#[test]
fn refuses_a_ca_vip_in_another_tenants_vsid() {
    let text = mutate("frontend = 6001", "frontend = 5001");
    expect_only(
        &text,
        "5001\naddress = \"10.0.0.100\"\nprotocol = \"tcp\"\nport = 8080\nbackend_vsid = 6002",
        "tenant[1].vip[2].frontend",
        "VSID 5001 belongs to tenant `blue`, not `red`",
    );
}

#[test]
fn refuses_a_ca_vip_frontend_that_is_no_subnet() {
    let text = mutate("frontend = 6001", "frontend = 7001");
    expect_only(
        &text,
        "7001",
        "tenant[1].vip[2].frontend",
        "VSID 7001 is not declared",
    );
    let text = mutate("frontend = 6001", "frontend = \"private\"");
    expect_only(
        &text,
        "\"private\"",
        "tenant[1].vip[2].frontend",
        "expected \"public\" or the VSID",
    );
}

#[test]
fn refuses_a_ca_vip_backend_in_another_routing_domain() {
    let text = mutate(
        "# Tier 2 (Figure 6's Tier B2, behind Blue VIP1).\n",
        "[[tenant.routing_domain]]\nname = \"blue-rd2\"\n\n",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "5002\ndips = [\n  { ca = \"10.0.1.21\"",
        "tenant[0].vip[2].backend_vsid",
        "VSID 5002 is in routing domain `blue-rd2`, not in `blue-rd1`",
    );
    assert_eq!(errors.len(), 2, "blue-vip1 and blue-vip1-v6: {errors:#?}");
}

#[test]
fn refuses_a_ca_vip_backend_in_another_tenant() {
    let text = mutate(
        "backend_vsid = 5002\ndips = [\n  { ca = \"10.0.1.21\"",
        "backend_vsid = 6002\ndips = [\n  { ca = \"10.0.1.21\"",
    );
    expect_only(
        &text,
        "6002\ndips",
        "tenant[0].vip[2].backend_vsid",
        "VSID 6002 belongs to tenant `red`, not `blue`",
    );
}

#[test]
fn refuses_public_vip_dips_in_another_tenants_vsid() {
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, weight = 2, vsid = 6001 }",
    );
    expect_only(
        &text,
        "6001 }",
        "tenant[0].vip[0].dips[3].vsid",
        "VSID 6001 belongs to tenant `red`",
    );
    let text = mutate(
        "backend_vsid = 6001\ndips = [\n  { ca = \"10.0.0.5\"",
        "backend_vsid = 5001\ndips = [\n  { ca = \"10.0.0.5\"",
    );
    expect_only(
        &text,
        "5001\ndips = [\n  { ca = \"10.0.0.5\", port = 80 }",
        "tenant[1].vip[0].backend_vsid",
        "belongs to tenant `blue`",
    );
}

#[test]
fn refuses_a_public_vip_without_backend_vsid() {
    let text = mutate(
        "backend_vsid = 6001\ndips = [\n  { ca = \"10.0.0.5\"",
        "dips = [\n  { ca = \"10.0.0.5\"",
    );
    expect_only(
        &text,
        "[[tenant.vip]]\nname = \"red-web\"",
        "tenant[1].vip[0].backend_vsid",
        "missing",
    );
}

// ------------------------------------------------------------------ SNAT

#[test]
fn refuses_overlapping_snat_ranges_of_one_ca() {
    let text = mutate(
        "  { ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
        "  { ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"10.0.1.250\", ports = \"29999-30999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
    );
    expect_only(
        &text,
        "\"29999-30999\"",
        "tenant[0].routing_domain[0].subnet[1].snat[1].ports",
        "overlap 20000-29999",
    );
    let disjoint = text.replace("29999-30999", "30000-30999");
    let s = load(&disjoint);
    assert_eq!(s.snat_ranges(vsid(5002), false).count(), 2);
}

#[test]
fn refuses_a_second_snat_ca_of_one_family() {
    let text = mutate(
        "  { ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
        "  { ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"10.0.1.251\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
    );
    expect_only(
        &text,
        "\"10.0.1.251\"",
        "tenant[0].routing_domain[0].subnet[1].snat[1].ca",
        "one CA per family",
    );
}

#[test]
fn refuses_bad_snat_port_ranges() {
    let anchor = "{ ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup";
    for (bad, says) in [
        ("29999-20000", "FIRST is above LAST"),
        ("0-100", "port 0 is not usable"),
        ("20000-70000", "within 1..=65535"),
        ("20000:29999", "is not a port range"),
        ("", "is not a port range"),
    ] {
        let text = mutate(anchor, &anchor.replacen("20000-29999", bad, 1));
        let errors = refuse(&text);
        let needle = format!("\"{bad}\" }},\n  {{ ca = \"fd00:0:0:2::fa\"");
        expect_at(
            &errors,
            &text,
            &needle,
            "tenant[0].routing_domain[0].subnet[1].snat[0].ports",
            says,
        );
    }
}

#[test]
fn refuses_a_snat_range_holding_a_ca_vips_port() {
    let text = mutate(
        "{ ca = \"10.0.0.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:1::fa\", ports = \"20000-29999\" },\n]\n\n# Tier 2",
        "{ ca = \"10.0.0.100\", ports = \"8000-8999\" },\n  { ca = \"fd00:0:0:1::fa\", ports = \"20000-29999\" },\n]\n\n# Tier 2",
    );
    expect_only(
        &text,
        "\"8000-8999\"",
        "tenant[0].routing_domain[0].subnet[0].snat[0].ports",
        "port 8080, which CA VIP `blue-vip1` serves",
    );
    // The same CA with a range that avoids the VIP's port is fine.
    let s = load(&text.replace("8000-8999", "20000-29999"));
    assert!(s.is_snat_address(vsid(5001), ip("10.0.0.100")));
    assert!(s.is_vip_address(vsid(5001), ip("10.0.0.100")));
}

#[test]
fn refuses_a_ca_vip_frontend_without_snat_ca() {
    let text = mutate(
        "  { ca = \"fd00:0:0:1::fa\", ports = \"20000-29999\" },\n]\n\n# Tier 2",
        "]\n\n# Tier 2",
    );
    let text = without_health(&text);
    expect_only(
        &text,
        "5001\naddress = \"fd00:0:0:1::100\"",
        "tenant[0].vip[3].frontend",
        "VSID 5001 has no IPv6 SNAT CA",
    );
}

#[test]
fn refuses_a_ca_vip_backend_without_snat_ca() {
    let text = mutate(
        "  { ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
        "  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
    );
    let text = without_health(&text);
    expect_only(
        &text,
        "5002\ndips = [\n  { ca = \"10.0.1.21\"",
        "tenant[0].vip[2].backend_vsid",
        "DIP VSID 5002 has no IPv4 SNAT CA",
    );
}

#[test]
fn public_vips_need_no_snat() {
    // Strip every SNAT CA and every CA VIP: public VIPs alone still load.
    let cut = EXAMPLE.find("# Figure 6: Blue VIP1").unwrap();
    let red = EXAMPLE
        .find("# ----------------------------------------------------------------------------- Red")
        .unwrap();
    let red_vip1 = EXAMPLE.find("# Red VIP1").unwrap();
    let text = format!("{}{}{}", &EXAMPLE[..cut], &EXAMPLE[red..red_vip1], "");
    let text = without_health(&text);
    let mut stripped = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("snat = [") {
            skipping = true;
        }
        if !skipping {
            stripped.push_str(line);
            stripped.push('\n');
        }
        if skipping && line == "]" {
            skipping = false;
        }
    }
    let s = load(&stripped);
    assert_eq!(s.pools().len(), 4);
    assert!(s.pools().iter().all(|p| p.is_public()));
    assert_eq!(s.snat_for(vsid(5001), false), None);
}

#[test]
fn refuses_a_snat_ca_outside_the_subnet() {
    let text = mutate(
        "{ ca = \"10.0.1.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
        "{ ca = \"10.0.2.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:2::fa\", ports = \"20000-29999\" },\n]\n\n# Lookup",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"10.0.2.250\"",
        "tenant[0].routing_domain[0].subnet[1].snat[0].ca",
        "outside the subnet's prefixes",
    );
}

// ------------------------------------------------------------------ lookup records and hosts

#[test]
fn refuses_a_lookup_record_on_an_unknown_host() {
    let text = mutate(
        "ca = \"10.0.0.6\"\nhost = \"host2\"",
        "ca = \"10.0.0.6\"\nhost = \"host9\"",
    );
    expect_only(
        &text,
        "\"host9\"",
        "tenant[0].lookup[2].host",
        "no [[host]] is named `host9`",
    );
}

#[test]
fn refuses_a_host_the_provider_port_cannot_reach() {
    let text = mutate(
        "addresses = [\"192.168.6.10\", \"fd00:6::10\"]",
        "addresses = [\"192.168.6.10\"]",
    );
    let text = text.replace(
        "pa = [\"192.168.6.15\", \"fd00:6::15\"]",
        "pa = [\"fd00:6::15\"]",
    );
    let errors = refuse(&text);
    let needle = "\"host5\"\nmac = \"00:1d:d8:b7:2c:22\"";
    expect_at(
        &errors,
        &text,
        needle,
        "tenant[0].lookup[10].host",
        "host `host5` has IPv6 PA, but the balancer's provider port has no address of that family",
    );
    // blue lookup 10 and 11, red lookup 4: one error each, no cascade into the DIPs.
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn refuses_duplicate_lookup_records() {
    let text = mutate(
        "ca = \"fd00:0:0:1::6\"\nhost = \"host2\"\nmac = \"00:1d:d8:b7:1c:02\"",
        "ca = \"fd00:0:0:1::5\"\nhost = \"host2\"\nmac = \"00:1d:d8:b7:1c:02\"",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"fd00:0:0:1::5\"\nhost = \"host2\"\nmac = \"00:1d:d8:b7:1c:02\"",
        "tenant[0].lookup[3].ca",
        "a lookup record for fd00:0:0:1::5 in VSID 5001 already exists",
    );
}

#[test]
fn refuses_a_lookup_ca_outside_its_subnet() {
    let text = mutate("ca = \"10.0.1.22\"\nhost", "ca = \"10.0.2.22\"\nhost");
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"10.0.2.22\"",
        "tenant[0].lookup[10].ca",
        "10.0.2.22 is outside the prefixes of VSID 5002",
    );
}

#[test]
fn refuses_a_lookup_in_another_tenants_vsid() {
    let text = mutate(
        "vsid = 6002\nca = \"10.0.1.21\"",
        "vsid = 5002\nca = \"10.0.1.21\"",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "5002\nca = \"10.0.1.21\"\nhost = \"host5\"",
        "tenant[1].lookup[4].vsid",
        "VSID 5002 belongs to tenant `blue`",
    );
}

#[test]
fn refuses_duplicate_host_names_and_pas() {
    let text = mutate("name = \"host2\"", "name = \"host1\"");
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"host1\"\npa = [\"192.168.6.12\"",
        "host[1].name",
        "host `host1` is already declared at line",
    );

    let text = mutate(
        "pa = [\"192.168.6.12\", \"fd00:6::12\"]",
        "pa = [\"192.168.6.12\", \"fd00:6::11\"]",
    );
    expect_only(
        &text,
        "\"fd00:6::11\"]\nmac = \"02:00:00:00:06:12\"",
        "host[1].pa[1]",
        "PA fd00:6::11 already belongs to host `host1`",
    );

    let text = mutate(
        "pa = [\"192.168.6.12\", \"fd00:6::12\"]",
        "pa = [\"192.168.6.12\", \"192.168.6.16\"]",
    );
    expect_only(
        &text,
        "\"192.168.6.16\"",
        "host[1].pa[1]",
        "a second IPv4 PA",
    );

    let text = mutate(
        "pa = [\"192.168.6.12\", \"fd00:6::12\"]",
        "pa = [\"192.168.6.10\", \"fd00:6::12\"]",
    );
    expect_only(
        &text,
        "\"192.168.6.10\", \"fd00:6::12\"",
        "host[1].pa[0]",
        "the balancer's own PA",
    );
}

#[test]
fn refuses_a_ca_vip_that_a_vm_holds() {
    let text = mutate(
        "address = \"10.0.0.100\"\nprotocol = \"tcp\"\nport = 8080\nbackend_vsid = 5002",
        "address = \"10.0.0.5\"\nprotocol = \"tcp\"\nport = 8080\nbackend_vsid = 5002",
    );
    expect_only(
        &text,
        "\"10.0.0.5\"\nprotocol",
        "tenant[0].vip[2].address",
        "10.0.0.5 is the CA of a VM in VSID 5001",
    );
}

#[test]
fn refuses_overlapping_prefixes_in_one_routing_domain() {
    let text = mutate(
        "prefixes = [\"10.0.1.0/24\", \"fd00:0:0:2::/64\"]\nlb_mac = \"02:00:00:b2",
        "prefixes = [\"10.0.0.128/25\", \"fd00:0:0:2::/64\"]\nlb_mac = \"02:00:00:b2",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"10.0.0.128/25\"",
        "tenant[0].routing_domain[0].subnet[1].prefixes[0]",
        "10.0.0.128/25 overlaps 10.0.0.0/24 of tenant[0].routing_domain[0].subnet[0]",
    );
}

// ------------------------------------------------------------------ values and syntax

#[test]
fn refuses_unknown_keys_with_their_path() {
    let text = mutate(
        "name = \"blue-web6\"",
        "name = \"blue-web6\"\ncolour = \"blue\"",
    );
    expect_only(
        &text,
        "colour",
        "tenant[0].vip[1].colour",
        "unknown field `colour`",
    );
    let text = mutate(
        "{ ca = \"10.0.0.8\", port = 80, weight = 2 }",
        "{ ca = \"10.0.0.8\", port = 80, wieght = 2 }",
    );
    expect_only(
        &text,
        "wieght",
        "tenant[0].vip[0].dips.wieght",
        "unknown field `wieght`",
    );
}

#[test]
fn refuses_syntax_errors_with_a_position() {
    let text = mutate(
        "max_flows_per_worker = 1048576",
        "max_flows_per_worker = = 1048576",
    );
    let errors = refuse(&text);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, pos(&text, "= = 1048576").0);
    assert_eq!(errors[0].field, "balancer.flows.max_flows_per_worker");
}

#[test]
fn refuses_wrong_toml_types() {
    let text = mutate("vsid = 5001\nprefixes", "vsid = \"5001\"\nprefixes");
    expect_only(
        &text,
        "\"5001\"",
        "tenant[0].routing_domain[0].subnet[0].vsid",
        "invalid type",
    );
}

#[test]
fn refuses_bad_addresses_macs_and_durations() {
    let text = mutate("address = \"203.0.113.20\"", "address = \"203.0.113.300\"");
    expect_only(
        &text,
        "\"203.0.113.300\"",
        "tenant[1].vip[0].address",
        "`203.0.113.300` is not an IPv4 or IPv6 address",
    );

    let text = mutate("address = \"203.0.113.20\"", "address = \"224.0.0.1\"");
    expect_only(
        &text,
        "\"224.0.0.1\"",
        "tenant[1].vip[0].address",
        "not a unicast address",
    );

    let text = mutate(
        "lb_mac = \"02:00:00:e1:00:fe\"",
        "lb_mac = \"02:00:00:r1:00:fe\"",
    );
    expect_only(
        &text,
        "\"02:00:00:r1:00:fe\"",
        "tenant[1].routing_domain[0].subnet[0].lb_mac",
        "is not a MAC address",
    );

    let text = mutate("mac = \"02:00:00:00:06:13\"", "mac = \"03:00:00:00:06:13\"");
    expect_only(
        &text,
        "\"03:00:00:00:06:13\"",
        "host[2].mac",
        "not a unicast MAC",
    );

    for bad in ["20", "20 s", "s", "20d", "-5s", "0s"] {
        let text = mutate(
            "tcp_syn_timeout = \"20s\"",
            &format!("tcp_syn_timeout = \"{bad}\""),
        );
        expect_only(
            &text,
            &format!("\"{bad}\""),
            "balancer.flows.tcp_syn_timeout",
            "",
        );
    }

    let text = mutate("max_flows_per_tenant = 524288", "max_flows_per_tenant = 0");
    expect_only(
        &text,
        "0      # per tenant",
        "balancer.flows.max_flows_per_tenant",
        "not in 1..",
    );

    let text = mutate(
        "max_flows_per_worker = 1048576",
        "max_flows_per_worker = 16777217",
    );
    expect_only(
        &text,
        "16777217",
        "balancer.flows.max_flows_per_worker",
        "more than a shard can index (16777216",
    );

    let text = mutate(
        "max_flows_per_tenant = 524288",
        "max_flows_per_tenant = 524288\npreallocate_flows_per_worker = 2000000",
    );
    expect_only(
        &text,
        "2000000",
        "balancer.flows.preallocate_flows_per_worker",
        "more than max_flows_per_worker (1048576)",
    );

    let text = mutate(
        "protocol = \"tcp\"\nport = 8080\nbackend_vsid = 6002",
        "protocol = \"sctp\"\nport = 8080\nbackend_vsid = 6002",
    );
    expect_only(
        &text,
        "\"sctp\"",
        "tenant[1].vip[2].protocol",
        "expected \"tcp\" or \"udp\"",
    );

    let text = mutate(
        "prefixes = [\"10.0.1.0/24\", \"fd00:0:0:2::/64\"]\nlb_mac = \"02:00:00:e2",
        "prefixes = [\"10.0.1.5/24\", \"fd00:0:0:2::/64\"]\nlb_mac = \"02:00:00:e2",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"10.0.1.5/24\"",
        "tenant[1].routing_domain[0].subnet[1].prefixes[0]",
        "host bits are set; the network is 10.0.1.0/24",
    );
}

#[test]
fn refuses_a_missing_external_gateway_and_small_mtus() {
    let text = mutate("gateway_mac = \"02:00:00:00:01:01\"", "");
    expect_only(
        &text,
        "[balancer.external]",
        "balancer.external.gateway_mac",
        "missing",
    );

    let text = mutate("mtu = 1500  ", "mtu = 1200  ");
    expect_only(
        &text,
        "1200",
        "balancer.external.mtu",
        "MTU 1200 is not in 1280..=65535",
    );

    let text = mutate("mtu = 1600", "mtu = 70000");
    expect_only(&text, "70000", "balancer.provider.mtu", "MTU 70000");
}

#[test]
fn warns_when_the_pa_mtu_cannot_carry_full_frames() {
    let text = mutate("mtu = 1600", "mtu = 1500");
    let s = load(&text);
    let (line, column) = pos(&text, "1500               #");
    let w = &s.warnings()[0];
    assert_eq!(
        (w.line, w.column, w.field.as_str()),
        (line, column, "balancer.provider.mtu")
    );
    assert!(w.message.contains("needs 1542"), "{w}");
    assert_eq!(s.warnings().len(), 1);
    // 1550 fits IPv4 outer headers but not IPv6 ones, and this provider has both.
    let s = load(&mutate("mtu = 1600", "mtu = 1550"));
    assert!(s.warnings()[0].message.contains("over IPv6"));
}

#[test]
fn the_provider_port_needs_one_pa_per_family() {
    let text = mutate(
        "addresses = [\"192.168.6.10\", \"fd00:6::10\"]",
        "addresses = [\"192.168.6.10\", \"192.168.6.9\"]",
    );
    expect_only(
        &text,
        "\"192.168.6.9\"",
        "balancer.provider.addresses[1]",
        "one PA per family",
    );
}

// ------------------------------------------------------------------ reporting

#[test]
fn collects_every_error_in_file_order() {
    let text = mutate("mac = \"02:00:00:00:06:11\"", "mac = \"02:00:00:00:06\"");
    let text = text.replace("udp_timeout = \"30s\"", "udp_timeout = \"30x\"");
    let text = text.replace("weight = 2 }", "weight = 99999 }");
    let errors = refuse(&text);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let fields: Vec<&str> = errors.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "balancer.flows.udp_timeout",
            "host[0].mac",
            "tenant[0].vip[0].dips[3].weight"
        ]
    );
    let err = Snapshot::from_toml(&text, FILE).unwrap_err();
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 3);
    let (line, column) = pos(&text, "\"30x\"");
    assert!(
        shown.starts_with(&format!(
            "example.toml:{line}:{column}: balancer.flows.udp_timeout: "
        )),
        "{shown}"
    );
}

#[test]
fn summary_lists_every_pool_and_dip_in_aligned_columns() {
    let s = load(EXAMPLE);
    let text = summary(&s);
    for needle in [
        "balancer lb1",
        "host5",
        "[fd00:0:0:2::fa]:20000-29999",
        "blue-vip1-v6",
        "[fd00:0:0:2::22]:8080",
        "red-vip1",
        "10.0.1.21:8080",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    // In the VIP table every DIP row has its DIP column where the header says.
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("VIP pools"))
        .skip(1)
        .collect();
    let header = table[0];
    let col = header.find("DIP VSID").unwrap();
    let dip_rows = table.iter().skip(1).filter(|l| !l.trim().is_empty());
    let mut rows = 0;
    for row in dip_rows {
        let cell = &row[col..];
        assert!(
            cell.starts_with("5001")
                || cell.starts_with("5002")
                || cell.starts_with("6001")
                || cell.starts_with("6002"),
            "{row}"
        );
        rows += 1;
    }
    let dips: usize = s.pools().iter().map(|p| p.dips.len()).sum();
    assert_eq!(rows, dips);
    assert!(!text.contains("warnings"));
    let warned = load(&mutate("mtu = 1600", "mtu = 1500"));
    assert!(summary(&warned).contains("warnings\n  example.toml:"));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any edit of the example either loads or is refused with positioned errors
        /// inside the text; it never panics.
        #[test]
        fn edited_example(at in 0usize..EXAMPLE.len(), cut in 0usize..40, insert in "[ -~\n]{0,12}") {
            let mut start = at;
            while !EXAMPLE.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + cut).min(EXAMPLE.len());
            while !EXAMPLE.is_char_boundary(end) {
                end -= 1;
            }
            let text = format!("{}{}{}", &EXAMPLE[..start], insert, &EXAMPLE[end..]);
            if let Err(e) = Snapshot::from_toml(&text, FILE) {
                prop_assert!(!e.errors.is_empty());
                let lines = text.lines().count() + 1;
                for d in &e.errors {
                    prop_assert!(d.line >= 1 && d.line <= lines, "{d}");
                    prop_assert!(d.column >= 1, "{d}");
                }
            }
        }

        #[test]
        fn arbitrary_text(text in "[ -~\n\u{e9}]{0,200}") {
            let _ = Snapshot::from_toml(&text, FILE);
        }
    }
}

// ------------------------------------------------- reload, drain and distribution keys

#[test]
fn reload_drain_and_distribution_keys() {
    let text = mutate(
        "[balancer.flows]",
        "[balancer.reload]\nremoved_dips = \"forget\"\ndrain_timeout = \"10q\"\n\n[balancer.flows]",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "\"forget\"",
        "balancer.reload.removed_dips",
        "neither \"drain\" nor \"reset\"",
    );
    expect_at(
        &errors,
        &text,
        "\"10q\"",
        "balancer.reload.drain_timeout",
        "10q",
    );
    let text = mutate(
        "name = \"blue-web\"\n",
        "name = \"blue-web\"\ndistribution = \"sticky\"\n",
    );
    expect_only(
        &text,
        "\"sticky\"",
        "tenant[0].vip[0].distribution",
        "five_tuple, source_ip_protocol or source_ip",
    );
    let s = load(&mutate(
        "name = \"blue-web\"\n",
        "name = \"blue-web\"\ndistribution = \"source_ip\"\n",
    ));
    assert_eq!(
        s.pools()[0].distribution,
        crate::policy::Distribution::SourceIp
    );
    let s = load(&mutate(
        "[balancer.flows]",
        "[balancer.reload]\nremoved_dips = \"reset\"\ndrain_timeout = \"5s\"\n\n[balancer.flows]",
    ));
    assert_eq!(
        s.balancer().reload.removed_dips,
        crate::policy::RemovedDips::Reset
    );
    assert_eq!(s.balancer().reload.drain_timeout.as_secs(), 5);
}

// ------------------------------------------------------------------ health checks

const BLUE_WEB_HEALTH: &str = "health = { protocol = \"http\", path = \"/\", status = 200, body = \"blue\", interval = \"1s\", timeout = \"500ms\", rise = 2, fall = 2 }";

#[test]
fn example_health_checks_load() {
    use super::super::{HealthProbe, HealthSettings};
    use std::time::Duration;
    let s = load(EXAMPLE);
    assert_eq!(s.balancer().health, HealthSettings::default());
    let web = s.pool_named("blue-web").unwrap().1.health.clone().unwrap();
    assert_eq!(
        web.probe,
        HealthProbe::Http {
            path: "/".into(),
            host: None,
            status: 200,
            body: Some("blue".into())
        }
    );
    assert_eq!(
        (web.port, web.interval, web.timeout, web.rise, web.fall),
        (
            None,
            Duration::from_secs(1),
            Duration::from_millis(500),
            2,
            2
        )
    );
    let vip1 = s.pool_named("blue-vip1").unwrap().1.health.clone().unwrap();
    assert_eq!(vip1.port, Some(8080));
    let six = s.pool_named("blue-web6").unwrap().1.health.clone().unwrap();
    assert_eq!(six.probe, HealthProbe::Tcp);
    // Without `health`, no check; defaults fill what is not written.
    let text = mutate(BLUE_WEB_HEALTH, "health = { protocol = \"http\" }");
    let h = load(&text)
        .pool_named("blue-web")
        .unwrap()
        .1
        .health
        .clone()
        .unwrap();
    assert_eq!(
        (h.interval, h.timeout, h.rise, h.fall),
        (Duration::from_secs(2), Duration::from_secs(1), 2, 3)
    );
    let none = load(&without_health(EXAMPLE));
    assert!(none.pools().iter().all(|p| p.health.is_none()));
}

#[test]
fn refuses_bad_health_keys_naming_each() {
    // (what in blue-web's health line, replaced by what; ⟨ marks where the error is)
    let cases: [(&str, &str, &str, &str); 8] = [
        (
            "\"http\"",
            "⟨\"icmp\"",
            "protocol",
            "neither \"tcp\" nor \"http\"",
        ),
        ("\"/\"", "⟨\"x y\"", "path", "not a request path"),
        ("200", "⟨99", "status", "not an HTTP status"),
        ("\"blue\"", "⟨\"\"", "body", "1..=1024 bytes"),
        ("\"1s\"", "⟨\"1 s\"", "interval", "not a duration"),
        (
            "\"500ms\"",
            "⟨\"2s\"",
            "timeout",
            "longer than the interval",
        ),
        ("rise = 2", "rise = ⟨0", "rise", "not in 1..=100"),
        ("fall = 2", "fall = ⟨101", "fall", "not in 1..=100"),
    ];
    for (old, new, key, says) in cases {
        let line = BLUE_WEB_HEALTH.replacen(old, &new.replace('⟨', ""), 1);
        let text = mutate(BLUE_WEB_HEALTH, &line);
        let at = line.replacen(&new.replace('⟨', ""), new, 1);
        expect_only(&text, &at, &format!("tenant[0].vip[0].health.{key}"), says);
    }
}

#[test]
fn refuses_http_keys_on_a_tcp_check() {
    let text = mutate(
        BLUE_WEB_HEALTH,
        "health = { protocol = \"tcp\", body = \"blue\" }",
    );
    expect_only(
        &text,
        "body = ⟨\"blue\" }",
        "tenant[0].vip[0].health.body",
        "protocol = \"http\" only",
    );
}

#[test]
fn refuses_a_health_check_without_a_probe_source() {
    // Blue's VSID 5001 loses its IPv4 SNAT CA: blue-web's probes have no source (the
    // CA VIP in 5001 is refused for its own reason too).
    let text = mutate(
        "  { ca = \"10.0.0.250\", ports = \"20000-29999\" },\n  { ca = \"fd00:0:0:1::fa\", ports = \"20000-29999\" },\n]\n\n# Tier 2",
        "  { ca = \"fd00:0:0:1::fa\", ports = \"20000-29999\" },\n]\n\n# Tier 2",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "health = ⟨{ protocol = \"http\", path",
        "tenant[0].vip[0].health",
        "DIP VSID 5001 has no IPv4 SNAT CA of the balancer: health probes to 10.0.0.5",
    );
}

#[test]
fn refuses_probe_ports_that_overlap_snat_ports() {
    let text = mutate(
        "probe_ports = \"61000-61999\"",
        "probe_ports = \"29000-30999\"",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "probe_ports = ⟨\"29000-30999\"",
        "balancer.health.probe_ports",
        "overlap SNAT ports 20000-29999 of 10.0.0.250 in VSID 5001",
    );
    // The default range against a SNAT range written over it: named at the SNAT range.
    let text = mutate("probe_ports = \"61000-61999\"\n", "").replacen(
        "{ ca = \"10.0.0.250\", ports = \"20000-29999\" }",
        "{ ca = \"10.0.0.250\", ports = \"20000-61000\" }",
        1,
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "ports = ⟨\"20000-61000\"",
        "tenant[0].routing_domain[0].subnet[0].snat[0].ports",
        "overlap the health probe ports 61000-61999",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
}

#[test]
fn refuses_a_ca_vip_on_a_snat_ca_serving_a_probe_port() {
    let text = mutate(
        "address = \"10.0.0.100\"\nprotocol = \"tcp\"\nport = 8080\nbackend_vsid = 5002",
        "address = \"10.0.0.250\"\nprotocol = \"tcp\"\nport = 61005\nbackend_vsid = 5002",
    );
    let errors = refuse(&text);
    expect_at(
        &errors,
        &text,
        "port = ⟨61005",
        "tenant[0].vip[2].port",
        "health probe port (61000-61999) of the balancer's CA 10.0.0.250",
    );
}
