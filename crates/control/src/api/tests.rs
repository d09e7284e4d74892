//! The API's rules, without a socket: tokens, scopes, validation, persistence.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::auth::{Tokens, hash_token, hex};
use super::{Api, FlowCounts, FlowStats};
use crate::Control;
use crate::persist::Persist;
use crate::policy::Snapshot;

const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

struct Setup {
    dir: PathBuf,
    api: Arc<Api>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Fixed;

impl FlowStats for Fixed {
    fn flows(&self) -> Option<FlowCounts> {
        let mut f = FlowCounts {
            total: 7,
            ..FlowCounts::default()
        };
        f.per_pool.insert("blue-web".into(), 5);
        f.per_pool.insert("red-web".into(), 2);
        f.per_tenant.insert("blue".into(), 5);
        f.per_tenant.insert("red".into(), 2);
        Some(f)
    }
}

fn setup(tag: &str, flows: bool) -> Setup {
    setup_with(tag, flows, EXAMPLE)
}

fn setup_with(tag: &str, flows: bool, policy: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("nvlb-api-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let control = Arc::new(Control::open(&path).unwrap());
    let tokens = [
        ("ops", "operator", "OPS"),
        ("b", "blue", "BLUE"),
        ("r", "red", "RED"),
    ]
    .iter()
    .map(|(n, s, t)| {
        format!(
            "[[token]]\nname = \"{n}\"\nscope = \"{s}\"\nsha256 = \"{}\"\n",
            hex(&hash_token(t))
        )
    })
    .collect::<String>();
    let tokens = Tokens::from_toml(&tokens, "tokens.toml").unwrap();
    let stats: Option<Arc<dyn FlowStats>> = if flows { Some(Arc::new(Fixed)) } else { None };
    Setup {
        dir,
        api: Arc::new(Api::new(Persist::new(control), tokens, stats)),
    }
}

impl Setup {
    fn call(&self, token: Option<&str>, method: &str, path: &str, body: &str) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let r = self.api.handle(
            method,
            path,
            auth.as_deref(),
            body.as_bytes(),
            Instant::now(),
        );
        (r.status, r.body)
    }

    fn file(&self) -> String {
        std::fs::read_to_string(self.dir.join("policy.toml")).unwrap()
    }

    fn journal(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("policy.toml.journal"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn no_token_wrong_token_other_tenant_and_own_tenant() {
    let s = setup("matrix", false);
    let path = "/v1/pools/blue-web";
    assert_eq!(s.call(None, "GET", path, "").0, 401);
    assert_eq!(s.call(Some("nope"), "GET", path, "").0, 401);
    assert_eq!(s.call(Some("RED"), "GET", path, "").0, 403);
    let (st, body) = s.call(Some("BLUE"), "GET", path, "");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["dips"].as_array().unwrap().len(), 4);
    assert_eq!(s.call(Some("OPS"), "GET", path, "").0, 200);
    // A change by the wrong tenant is refused before anything is touched.
    let add = r#"{"ca": "10.0.0.5", "port": 81}"#;
    assert_eq!(
        s.call(Some("RED"), "POST", "/v1/pools/blue-web/dips", add)
            .0,
        403
    );
    assert_eq!(s.file(), EXAMPLE);
    assert!(s.journal().is_empty());
}

#[test]
fn healthz_answers_without_a_token_and_tells_nothing_else() {
    let s = setup("healthz", false);
    let (st, body) = s.call(None, "GET", "/healthz", "");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["generation"], 1);
    assert_eq!(body.as_object().unwrap().len(), 2);
    // Only that exact call is open.
    assert_eq!(s.call(None, "GET", "/healthz/x", "").0, 401);
    assert_eq!(s.call(None, "POST", "/healthz", "").0, 401);
}

#[test]
fn a_tenant_lists_only_its_own() {
    let s = setup("lists", true);
    let (_, pools) = s.call(Some("RED"), "GET", "/v1/pools", "");
    let names: Vec<&str> = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["red-web", "red-web6", "red-vip1"]);
    let (_, tenants) = s.call(Some("RED"), "GET", "/v1/tenants", "");
    assert_eq!(tenants.as_array().unwrap().len(), 1);
    assert_eq!(tenants[0]["flows"], 2);
    let (_, all) = s.call(Some("OPS"), "GET", "/v1/vips", "");
    assert_eq!(all.as_array().unwrap().len(), 7);
    let (_, flows) = s.call(Some("BLUE"), "GET", "/v1/flows", "");
    assert_eq!(flows["total"], 5);
    assert!(flows["pools"].get("red-web").is_none());
    let (_, health) = s.call(Some("BLUE"), "GET", "/v1/health", "");
    assert!(
        health
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["pool"].as_str().unwrap().starts_with("blue"))
    );
    // Operator-only calls.
    for (m, p) in [
        ("GET", "/v1/lookups"),
        ("GET", "/v1/subnets"),
        ("POST", "/v1/reload"),
        ("PATCH", "/v1/lookups"),
    ] {
        assert_eq!(s.call(Some("BLUE"), m, p, "{}").0, 403, "{m} {p}");
    }
}

#[test]
fn flows_are_unknown_without_the_hook() {
    let s = setup("noflows", false);
    let (_, v) = s.call(Some("OPS"), "GET", "/v1/flows", "");
    assert_eq!(v["available"], false);
    let (_, t) = s.call(Some("OPS"), "GET", "/v1/tenants", "");
    assert!(t[0]["flows"].is_null());
}

#[test]
fn add_weight_drain_remove_through_the_api() {
    let s = setup("dips", false);
    let (st, v) = s.call(
        Some("BLUE"),
        "POST",
        "/v1/pools/blue-web/dips",
        r#"{"ca": "10.0.0.5", "port": 8081, "weight": 2}"#,
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["added"], 1);
    let policy = s.api.persist().control().policy();
    assert_eq!(policy.pool_named("blue-web").unwrap().1.dips.len(), 5);
    let (st, v) = s.call(
        Some("BLUE"),
        "PATCH",
        "/v1/pools/blue-web/dips/10.0.0.7/80",
        r#"{"weight": 4}"#,
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.call(
        Some("BLUE"),
        "PATCH",
        "/v1/pools/blue-web/dips/10.0.0.6",
        r#"{"drain": true}"#,
    );
    assert_eq!(st, 200, "{v}");
    let (_, pool) = s.call(Some("BLUE"), "GET", "/v1/pools/blue-web", "");
    let dip = |ca: &str, port: u64| {
        pool["dips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ca"] == ca && d["port"] == port)
            .cloned()
            .unwrap()
    };
    assert_eq!(dip("10.0.0.7", 80)["weight"], 4);
    assert_eq!(dip("10.0.0.6", 80)["state"], "draining");
    // 10.0.0.5 is listed twice now (ports 80 and 8081): without a port it is ambiguous.
    let (st, _) = s.call(
        Some("BLUE"),
        "DELETE",
        "/v1/pools/blue-web/dips/10.0.0.5",
        "",
    );
    assert_eq!(st, 409);
    let (st, v) = s.call(
        Some("BLUE"),
        "DELETE",
        "/v1/pools/blue-web/dips/10.0.0.5/8081",
        "",
    );
    assert_eq!(st, 200, "{v}");
    let file = Snapshot::from_toml(&s.file(), "f").unwrap();
    let web = file.pool_named("blue-web").unwrap().1;
    assert_eq!(web.dips.len(), 4);
    assert_eq!(web.dips[2].weight, 4);
    let j = s.journal();
    assert_eq!(j.len(), 5);
    assert_eq!(j[0]["token"], "b");
    assert_eq!(j[0]["call"], "POST /v1/pools/blue-web/dips");
    assert_eq!(j[2]["result"], "applied");
    assert_eq!(j[3]["result"], "refused");
    assert!(j[4]["before"]["dip"].as_str().unwrap().contains("8081"));
}

#[test]
fn bad_requests_name_the_field_and_change_nothing() {
    let s = setup("bad", false);
    let before = s.api.persist().control().policy();
    let cases = [
        (
            "POST",
            "/v1/pools/blue-web/dips",
            "{not json",
            400,
            "malformed JSON",
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"port": 80}"#,
            400,
            "ca: missing",
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": 5}"#,
            400,
            "ca: expected a string",
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.5", "wieght": 1}"#,
            400,
            "wieght: unknown field",
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.99", "port": 80}"#,
            422,
            "",
        ),
        (
            "POST",
            "/v1/pools/blue-web/dips",
            r#"{"ca": "10.0.0.5", "port": 80}"#,
            422,
            "",
        ),
        (
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.5",
            r#"{"weight": -1}"#,
            422,
            "",
        ),
        (
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.5",
            "{}",
            400,
            "nothing to change",
        ),
        (
            "PATCH",
            "/v1/pools/blue-web/dips/10.0.0.42",
            r#"{"weight": 1}"#,
            404,
            "no DIP",
        ),
        (
            "PATCH",
            "/v1/pools/blue-web/dips/banana",
            r#"{"weight": 1}"#,
            400,
            "not an IP",
        ),
        (
            "POST",
            "/v1/pools/nope/dips",
            r#"{"ca": "10.0.0.5"}"#,
            404,
            "no pool",
        ),
        ("GET", "/v1/nothing", "", 404, "no such call"),
        ("DELETE", "/v1/pools", "", 405, ""),
    ];
    for (m, p, b, status, text) in cases {
        let (st, v) = s.call(Some("OPS"), m, p, b);
        assert_eq!(st, status, "{m} {p} {b}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(text),
            "{m} {p} {b}: {v}"
        );
    }
    // A refused weight names the file, the line and the field.
    let (_, v) = s.call(
        Some("OPS"),
        "PATCH",
        "/v1/pools/blue-web/dips/10.0.0.5",
        r#"{"weight": -1}"#,
    );
    let e = &v["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("policy.toml"), "{v}");
    assert!(e["line"].as_u64().unwrap() > 0);
    assert_eq!(e["field"], "tenant[0].vip[0].dips[0].weight");
    assert_eq!(s.file(), EXAMPLE);
    assert!(Arc::ptr_eq(&before, &s.api.persist().control().policy()));
}

#[test]
fn a_vm_moved_by_the_orchestrator_takes_its_dip_along() {
    let s = setup("move", false);
    let body = json!({ "set": [
        { "vsid": 5001, "ca": "10.0.0.6", "host": "host4", "mac": "00:1d:d8:b7:1c:02" }
    ]});
    let (st, v) = s.call(Some("OPS"), "PATCH", "/v1/lookups", &body.to_string());
    assert_eq!(st, 200, "{v}");
    let (_, pool) = s.call(Some("OPS"), "GET", "/v1/pools/blue-web", "");
    let d = pool["dips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["ca"] == "10.0.0.6")
        .cloned()
        .unwrap();
    assert_eq!(d["host"], "host4");
    assert_eq!(d["pa"][0], "192.168.6.14");
    // An unknown host is refused by validation, naming the field.
    let bad = json!({ "set": [
        { "vsid": 5001, "ca": "10.0.0.6", "host": "host9", "mac": "00:1d:d8:b7:1c:02" }
    ]});
    let (st, v) = s.call(Some("OPS"), "PATCH", "/v1/lookups", &bad.to_string());
    assert_eq!(st, 422, "{v}");
    assert!(
        v["errors"][0]["field"].as_str().unwrap().ends_with(".host"),
        "{v}"
    );
    let (_, l) = s.call(Some("OPS"), "GET", "/v1/lookups", "");
    let rec = l
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vsid"] == 5001 && r["ca"] == "10.0.0.6")
        .cloned()
        .unwrap();
    assert_eq!(rec["host"], "host4");
}

#[test]
fn reload_through_the_api_refuses_a_broken_file() {
    let s = setup("reload", false);
    std::fs::write(
        s.dir.join("policy.toml"),
        EXAMPLE.replace("mtu = 1600", "mtu = \"big\""),
    )
    .unwrap();
    let (st, v) = s.call(Some("OPS"), "POST", "/v1/reload", "");
    assert_eq!(st, 422, "{v}");
    assert!(v["errors"][0]["line"].as_u64().unwrap() > 0);
    assert_eq!(s.api.persist().control().generation(), 1);
    // A change on top of a broken file is refused too.
    let (st, _) = s.call(
        Some("OPS"),
        "PATCH",
        "/v1/pools/blue-web/dips/10.0.0.5",
        r#"{"weight": 3}"#,
    );
    assert_eq!(st, 409);
    std::fs::write(s.dir.join("policy.toml"), EXAMPLE).unwrap();
    let (st, v) = s.call(Some("OPS"), "POST", "/v1/reload", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["generation"], 2);
}

#[test]
fn over_http_bodies_are_limited_and_answers_are_json() {
    let s = setup("http", false);
    let addr = super::server::spawn(s.api.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = addr.to_string();
    let call = |token: Option<&str>, m: &str, p: &str, b: Option<&Value>| {
        super::client::call(&addr, token, m, p, b).unwrap()
    };
    let (st, v) = call(None, "GET", "/v1/whoami", None);
    assert_eq!((st, v["error"].as_str().is_some()), (401, true));
    let (st, v) = call(Some("BLUE"), "GET", "/v1/whoami", None);
    assert_eq!((st, &v["token"]), (200, &json!("b")));
    let big = json!({ "ca": "x".repeat(super::MAX_BODY) });
    let (st, v) = call(Some("BLUE"), "POST", "/v1/pools/blue-web/dips", Some(&big));
    assert_eq!(st, 413, "{v}");
    let (st, v) = call(
        Some("BLUE"),
        "PATCH",
        "/v1/pools/blue-web/dips/fd00:0:0:1::5/80",
        Some(&json!({ "weight": 2 })),
    );
    assert_eq!(st, 404, "{v}");
    let (st, v) = call(
        Some("BLUE"),
        "PATCH",
        "/v1/pools/blue-web6/dips/fd00:0:0:1::5/80",
        Some(&json!({ "weight": 2 })),
    );
    assert_eq!(st, 200, "{v}");
    let file = s.file();
    assert!(
        file.contains("{ ca = \"fd00:0:0:1::5\", port = 80, weight = 2 }"),
        "{file}"
    );
}

/// `pick` answers what the engine does: 500 SYNs from the Internet to blue-web and
/// blue-web6 through an `Engine` over the same policy land on the DIPs the API names.
#[test]
fn pick_names_the_dip_the_engine_forwards_to() {
    use crate::craft::{Transport, ip_frame, ip_packet};
    use crate::engine::{Engine, Verdict};
    use crate::wire::{ethernet, gre, ipv4, ipv6, tcp};
    use std::net::IpAddr;

    let s = setup("pick", false);
    let policy = Snapshot::from_toml(EXAMPLE, "example.toml").unwrap();
    let ext = policy.balancer().external.clone();
    let mut engine = Engine::new(Arc::new(policy.clone()), 0, 1);
    for (pool, client) in [
        ("blue-web", "192.0.2.100"),
        ("blue-web6", "2001:db8:c::100"),
    ] {
        let (_, p) = policy.pool_named(pool).unwrap();
        let client: IpAddr = client.parse().unwrap();
        let ports: Vec<u16> = (0..250).map(|i| 20_000 + i * 7).collect();
        let clients: Vec<String> = ports
            .iter()
            .map(|&port| std::net::SocketAddr::new(client, port).to_string())
            .collect();
        let body = json!({ "clients": clients }).to_string();
        let (st, answer) = s.call(
            Some("BLUE"),
            "POST",
            &format!("/v1/pools/{pool}/pick"),
            &body,
        );
        assert_eq!(st, 200, "{answer}");
        let named = answer["dips"].as_array().unwrap();
        assert_eq!(named.len(), ports.len());
        let mut seen = std::collections::BTreeSet::new();
        for (i, &port) in ports.iter().enumerate() {
            let ip = ip_packet(
                client,
                p.address,
                64,
                Transport::Tcp {
                    src_port: port,
                    dst_port: p.port,
                    flags: tcp::flags::SYN,
                    seq: 1,
                    ack: 0,
                },
                &[],
            );
            let frame = ip_frame(ext.gateway_mac.unwrap(), ext.mac, &ip);
            let mut out = vec![0u8; 2048];
            let v = engine.process(1_000_000_000, &frame, &mut out);
            let Verdict::Forward { len, .. } = v else {
                panic!("{pool} {port}: {v:?}");
            };
            // Outer Ethernet, outer IP (v4 PA network), GRE with key, inner Ethernet.
            let outer = ethernet::Frame::new_checked(&out[..len]).unwrap();
            let o4 = ipv4::Packet::new_checked(outer.payload()).unwrap();
            let g = gre::Packet::new_checked(o4.payload()).unwrap();
            let inner = ethernet::Frame::new_checked(g.payload()).unwrap();
            let (dst, l4) = if client.is_ipv6() {
                let i6 = ipv6::Packet::new_checked(inner.payload()).unwrap();
                (IpAddr::V6(i6.dst_addr()), i6.payload().to_vec())
            } else {
                let i4 = ipv4::Packet::new_checked(inner.payload()).unwrap();
                (IpAddr::V4(i4.dst_addr()), i4.payload().to_vec())
            };
            let dport = tcp::Packet::new_checked(&l4[..]).unwrap().dst_port();
            let got = std::net::SocketAddr::new(dst, dport).to_string();
            assert_eq!(
                named[i].as_str(),
                Some(got.as_str()),
                "{pool} client port {port}"
            );
            seen.insert(got);
        }
        assert_eq!(
            seen.len(),
            4,
            "{pool}: every DIP picked for some flow: {seen:?}"
        );
    }
}

#[test]
fn pick_refuses_what_it_cannot_answer_and_changes_nothing() {
    let s = setup("pick-bad", false);
    let gen0 = s.call(Some("OPS"), "GET", "/healthz", "").1["generation"].clone();
    let path = "/v1/pools/blue-web/pick";
    for (token, body, status, says) in [
        ("RED", r#"{"clients": ["192.0.2.1:1"]}"#, 403, "not tenant"),
        ("BLUE", r#"{}"#, 400, "clients: missing"),
        ("BLUE", r#"{"clients": ["192.0.2.1"]}"#, 400, "clients[0]"),
        ("BLUE", r#"{"clients": ["[2001:db8::1]:5"]}"#, 400, "family"),
        (
            "BLUE",
            r#"{"clients": ["192.0.2.1:1"], "port": 81}"#,
            400,
            "port: 81",
        ),
        (
            "BLUE",
            r#"{"clients": ["192.0.2.1:1"], "protocol": "udp"}"#,
            400,
            "protocol",
        ),
        ("BLUE", r#"{"clients": [], "bogus": 1}"#, 400, "bogus"),
    ] {
        let (st, answer) = s.call(Some(token), "POST", path, body);
        assert_eq!(st, status, "{body}: {answer}");
        assert!(answer.to_string().contains(says), "{body}: {answer}");
    }
    let (st, answer) = s.call(
        Some("BLUE"),
        "POST",
        path,
        r#"{"clients": ["192.0.2.1:1"]}"#,
    );
    assert_eq!(st, 200, "{answer}");
    let dip = answer["dips"][0].as_str().unwrap_or_default();
    assert!(dip.parse::<std::net::SocketAddr>().is_ok(), "{answer}");
    assert_eq!(
        s.call(Some("OPS"), "GET", "/healthz", "").1["generation"],
        gen0
    );
    assert_eq!(s.file(), EXAMPLE);
    assert!(s.journal().is_empty());
}

/// The example with a comment on blue-web's rule, an outbound rule and an inbound NAT
/// rule for Blue.
fn rules_example() -> String {
    let red = "[[tenant]]\nname = \"red\"";
    let extra = r#"
[[tenant.outbound]]
name = "blue-out"
address = "203.0.113.11"
pools = ["blue-web"]
sources = [{ vsid = 5002, ca = "10.0.1.21" }]
ports = "40000-49999"
ports_per_dip = 2000
idle_timeout = "2m"

[[tenant.inbound_nat]]
name = "blue-ssh"
frontend = "public"
address = "203.0.113.12"
protocol = "tcp"
port = "2222-2223"
backend_vsid = 5001
targets = [{ ca = "10.0.0.5", port = 22 }, { ca = "10.0.0.6", port = 22 }]
"#;
    EXAMPLE
        .replacen(
            "backend_vsid = 5001\ndips = [\n  { ca = \"10.0.0.5\", port = 80, weight = 1 },",
            "backend_vsid = 5001\ndistribution = \"five_tuple\" # how blue-web spreads\n\
             dips = [\n  { ca = \"10.0.0.5\", port = 80, weight = 1 },",
            1,
        )
        .replacen(red, &format!("{extra}\n{red}"), 1)
        // floating_ip needs a next hop off the PA network on every DIP's host.
        .replace(
            "\n[[host]]\nname = \"host",
            "\n[[host]]\ngateway_mac = \"02:00:00:00:06:01\"\nname = \"host",
        )
}

#[test]
fn each_rule_setting_changes_the_file_and_the_running_pool() {
    let text = rules_example();
    assert!(text.contains("# how blue-web spreads"));
    let s = setup_with("rule", false, &text);
    let pool = |s: &Setup| {
        let p = s.api.persist().control().policy();
        p.pool_named("blue-web").unwrap().1.clone()
    };
    let before = pool(&s);
    assert_eq!(before.distribution.name(), "five_tuple");
    assert_eq!(before.rule.idle_timeout, None);
    let patch = |body: &str| {
        let (st, v) = s.call(Some("BLUE"), "PATCH", "/v1/pools/blue-web", body);
        assert_eq!(st, 200, "{body}: {v}");
        v
    };
    let v = patch(r#"{"distribution": "source_ip"}"#);
    assert_eq!(v["before"]["distribution"], "\"five_tuple\"");
    assert_eq!(v["after"]["distribution"], "\"source_ip\"");
    assert_eq!(pool(&s).distribution.name(), "source_ip");
    // The changed key keeps its place and its comment.
    assert!(
        s.file()
            .contains("distribution = \"source_ip\" # how blue-web spreads\n"),
        "{}",
        s.file()
    );
    patch(r#"{"idle_timeout": "4m"}"#);
    assert_eq!(
        pool(&s).rule.idle_timeout,
        Some(std::time::Duration::from_secs(240))
    );
    assert!(
        s.file().contains("\nidle_timeout = \"4m\"\n"),
        "{}",
        s.file()
    );
    patch(r#"{"tcp_reset": true}"#);
    assert!(pool(&s).rule.tcp_reset);
    patch(r#"{"icmp_echo": "drop"}"#);
    assert_eq!(pool(&s).rule.icmp_echo.name(), "drop");
    patch(r#"{"floating_ip": true}"#);
    assert!(pool(&s).floating_ip);
    // Several at once, and null removes the idle timeout.
    let v = patch(r#"{"idle_timeout": null, "tcp_reset": false, "icmp_echo": "forward"}"#);
    assert_eq!(v["before"]["idle_timeout"], "\"4m\"");
    assert!(v["after"]["idle_timeout"].is_null());
    let p = pool(&s);
    assert_eq!(p.rule.idle_timeout, None);
    assert!(!p.rule.tcp_reset);
    assert_eq!(p.rule.icmp_echo.name(), "forward");
    assert!(!s.file().contains("idle_timeout = \"4m\""));
    // The file is what runs, its comments kept, its DIPs untouched.
    let file = Snapshot::from_toml(&s.file(), "f").unwrap();
    let (_, f) = file.pool_named("blue-web").unwrap();
    assert_eq!(
        (f.distribution, f.floating_ip, f.rule.icmp_echo),
        (p.distribution, p.floating_ip, p.rule.icmp_echo)
    );
    assert_eq!(f.dips, before.dips);
    assert!(s.file().contains("# Figure 6: Blue VIP1"));
    // The read views show the new mode.
    let (_, v) = s.call(Some("BLUE"), "GET", "/v1/pools/blue-web", "");
    assert_eq!(v["rule"]["distribution"], "source_ip");
    assert_eq!(v["rule"]["floating_ip"], true);
    assert_eq!(v["rule"]["icmp_echo"], "forward");
    let j = s.journal();
    assert_eq!(j.len(), 6);
    assert!(j.iter().all(|e| e["result"] == "applied"));
    assert_eq!(j[0]["call"], "PATCH /v1/pools/blue-web");
    assert_eq!(s.api.persist().control().generation(), 7);
}

#[test]
fn refused_rule_changes_leave_file_and_generation_alone() {
    let text = rules_example();
    let s = setup_with("rulebad", false, &text);
    let generation = s.api.persist().control().generation();
    let cases = [
        (
            "RED",
            "/v1/pools/blue-web",
            r#"{"tcp_reset": true}"#,
            403,
            "not tenant",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"tcp_rest": true}"#,
            400,
            "tcp_rest: unknown field",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"tcp_reset": "yes"}"#,
            400,
            "tcp_reset: expected true or false",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"floating_ip": 1}"#,
            400,
            "floating_ip: expected true or false",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"distribution": 5}"#,
            400,
            "distribution: expected a string",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"icmp_echo": null}"#,
            400,
            "icmp_echo: expected a value",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"idle_timeout": 240}"#,
            400,
            "idle_timeout: expected a duration",
        ),
        ("BLUE", "/v1/pools/blue-web", "{}", 400, "nothing to change"),
        (
            "BLUE",
            "/v1/pools/blue-web",
            "[1]",
            400,
            "expected a JSON object",
        ),
        (
            "BLUE",
            "/v1/pools/blue-ssh:2222",
            r#"{"tcp_reset": true}"#,
            409,
            "inbound NAT rule \"blue-ssh\"",
        ),
        (
            "BLUE",
            "/v1/pools/nope",
            r#"{"tcp_reset": true}"#,
            404,
            "no pool",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"distribution": "round_robin"}"#,
            422,
            "refused",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"idle_timeout": "soon"}"#,
            422,
            "refused",
        ),
        (
            "BLUE",
            "/v1/pools/blue-web",
            r#"{"icmp_echo": "reply"}"#,
            422,
            "refused",
        ),
        // floating_ip is for public VIPs only.
        (
            "BLUE",
            "/v1/pools/blue-vip1",
            r#"{"floating_ip": true}"#,
            422,
            "refused",
        ),
    ];
    for (token, path, body, status, msg) in cases {
        let (st, v) = s.call(Some(token), "PATCH", path, body);
        assert_eq!(st, status, "{path} {body}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(msg),
            "{path} {body}: {v}"
        );
        if status == 422 {
            let e = &v["errors"][0];
            assert!(e["file"].as_str().unwrap().ends_with("policy.toml"), "{v}");
            assert!(e["line"].as_u64().unwrap() > 0, "{v}");
            assert!(
                e["field"].as_str().unwrap().starts_with("tenant[0].vip["),
                "{v}"
            );
        }
    }
    assert_eq!(s.file(), text);
    assert_eq!(s.api.persist().control().generation(), generation);
    // The refused attempts that reached the file are journaled as refused.
    let j = s.journal();
    assert_eq!(j.len(), 4, "{j:?}");
    assert!(j.iter().all(|e| e["result"] == "refused"));
}

#[test]
fn outbound_rules_are_listed_to_their_tenant() {
    let s = setup_with("outbound", false, &rules_example());
    let (st, v) = s.call(Some("BLUE"), "GET", "/v1/outbound", "");
    assert_eq!(st, 200, "{v}");
    let rules = v.as_array().unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(
        (&r["name"], &r["tenant"], &r["address"], &r["ports"]),
        (
            &json!("blue-out"),
            &json!("blue"),
            &json!("203.0.113.11"),
            &json!("40000-49999")
        )
    );
    assert_eq!(
        (&r["ports_per_dip"], &r["idle_timeout_s"]),
        (&json!(2000), &json!(120))
    );
    let snap = s.api.persist().control().policy();
    let want = &snap.outbound_rules()[0];
    let srcs = r["sources"].as_array().unwrap();
    assert_eq!(srcs.len(), want.sources.len());
    // blue-web's four DIPs first, then the named source, each with its own block.
    assert_eq!(srcs.len(), 5);
    assert_eq!(srcs[0]["block"], "40000-41999");
    assert_eq!(srcs[4]["ca"], "10.0.1.21");
    assert_eq!(srcs[4]["vsid"], 5002);
    assert_eq!(srcs[4]["block"], "48000-49999");
    for (j, w) in srcs.iter().zip(&want.sources) {
        assert_eq!(j["ca"], w.ca.to_string());
        assert_eq!(j["host"], snap.host(w.host).name);
    }
    let (_, red) = s.call(Some("RED"), "GET", "/v1/outbound", "");
    assert_eq!(red, json!([]));
    let (_, ops) = s.call(Some("OPS"), "GET", "/v1/outbound", "");
    assert_eq!(ops, v);
    assert_eq!(s.call(Some("OPS"), "POST", "/v1/outbound", "").0, 405);
}

/// Every path of the route table answers 405 to a method it does not take, pick too
/// (a second list of paths once left it out, and it answered 404).
#[test]
fn a_known_path_with_another_method_is_405() {
    let s = setup("405", false);
    for (m, p) in [
        ("GET", "/v1/pools/blue-web/pick"),
        ("DELETE", "/v1/pools/blue-web/pick"),
        ("GET", "/v1/pools/blue-web/dips"),
        ("POST", "/v1/pools/blue-web/dips/10.0.0.5/80"),
        ("POST", "/v1/subnets/5001"),
        ("GET", "/v1/reload"),
    ] {
        let (st, v) = s.call(Some("OPS"), m, p, "");
        assert_eq!(st, 405, "{m} {p}: {v}");
        assert_eq!(v["error"], format!("{m} is not a call on {p}"));
    }
    let (st, _) = s.call(Some("OPS"), "POST", "/v1/pools/blue-web/pick/x", "{}");
    assert_eq!(st, 404);
}
