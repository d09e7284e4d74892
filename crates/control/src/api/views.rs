//! What the API's reads return: the running policy as JSON, cut to what a scope may
//! see. Reads only; must never change policy or show one tenant another's pools.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::FlowCounts;
use super::auth::Scope;
use crate::Control;
use crate::policy::{Dip, Snapshot, VipPool, Vsid};

fn tenant_of<'s>(s: &'s Snapshot, p: &VipPool) -> &'s str {
    s.tenant(p.tenant).map(|t| t.name.as_str()).unwrap_or("?")
}

fn frontend(v: Vsid) -> Value {
    if v.is_public() {
        json!("public")
    } else {
        json!(v.get())
    }
}

fn host_json(s: &Snapshot, id: crate::policy::HostId) -> (Value, Value) {
    match s.get_host(id) {
        Some(h) => (
            json!(h.name),
            json!(
                [h.pa(false), h.pa(true)]
                    .into_iter()
                    .flatten()
                    .map(|a: IpAddr| a.to_string())
                    .collect::<Vec<_>>()
            ),
        ),
        None => (Value::Null, json!([])),
    }
}

fn dip_json(s: &Snapshot, c: &Control, pool: &VipPool, d: &Dip) -> Value {
    let (host, pa) = host_json(s, d.host);
    json!({
        "vsid": d.vsid.get(),
        "ca": d.ca.to_string(),
        "port": d.port,
        "weight": d.weight,
        "state": d.state.name(),
        "health": if c.is_down(&pool.name, d.key()) { "down" } else { "up" },
        "host": host,
        "pa": pa,
        "mac": d.mac.to_string(),
    })
}

fn flows_of(flows: Option<&FlowCounts>, pool: &str) -> Value {
    flows
        .map(|f| json!(f.per_pool.get(pool).copied().unwrap_or(0)))
        .unwrap_or(Value::Null)
}

pub(super) fn vip_json(s: &Snapshot, p: &VipPool, flows: Option<&FlowCounts>) -> Value {
    json!({
        "name": p.name,
        "tenant": tenant_of(s, p),
        "frontend": frontend(p.frontend),
        "address": p.address.to_string(),
        "protocol": p.rule.protocol_name(p.protocol),
        "port": p.port,
        "dips": p.dips.len(),
        "active": p.dips.iter().filter(|d| d.effective_weight() > 0).count(),
        "flows": flows_of(flows, &p.name),
        "rule": rule_json(p),
    })
}

/// The rule's mode; a load-balancing rule's settings change through
/// `PATCH /v1/pools/{pool}`, an inbound NAT rule's only in the policy file.
fn rule_json(p: &VipPool) -> Value {
    json!({
        "kind": p.rule.kind(),
        "all_ports": p.rule.all_ports,
        "distribution": p.distribution.name(),
        "idle_timeout_s": p.rule.idle_timeout.map(|d| d.as_secs()),
        "tcp_reset": p.rule.tcp_reset,
        "icmp_echo": p.rule.icmp_echo.name(),
        "floating_ip": p.floating_ip,
        "inbound_nat": p.rule.nat.as_ref().map(|n| json!({
            "rule": n.rule,
            "first": n.first,
            "last": n.last,
        })),
    })
}

pub(super) fn pool_json(
    s: &Snapshot,
    c: &Control,
    p: &VipPool,
    flows: Option<&FlowCounts>,
) -> Value {
    let mut v = vip_json(s, p, flows);
    v["dips"] = p.dips.iter().map(|d| dip_json(s, c, p, d)).collect();
    v
}

/// Pools `scope` may see, in declaration order.
pub(super) fn visible<'s>(s: &'s Snapshot, scope: &Scope) -> Vec<&'s VipPool> {
    s.pools()
        .iter()
        .filter(|p| scope.covers(tenant_of(s, p)))
        .collect()
}

pub(super) fn tenants(s: &Snapshot, scope: &Scope, flows: Option<&FlowCounts>) -> Value {
    s.tenants()
        .iter()
        .filter(|t| scope.covers(&t.name))
        .map(|t| {
            let pools: Vec<&str> = s
                .pools()
                .iter()
                .filter(|p| p.tenant == t.id)
                .map(|p| p.name.as_str())
                .collect();
            let vsids: Vec<u32> = s
                .subnets()
                .iter()
                .filter(|n| n.tenant == t.id)
                .map(|n| n.vsid.get())
                .collect();
            json!({
                "name": t.name,
                "vsids": vsids,
                "pools": pools,
                "flows": flows
                    .map(|f| json!(f.per_tenant.get(&t.name).copied().unwrap_or(0)))
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}

pub(super) fn health(s: &Snapshot, c: &Control, scope: &Scope) -> Value {
    let mut out = Vec::new();
    for p in visible(s, scope) {
        for d in &p.dips {
            let mut v = dip_json(s, c, p, d);
            v["pool"] = json!(p.name);
            out.push(v);
        }
    }
    Value::Array(out)
}

pub(super) fn lookups(s: &Snapshot) -> Value {
    s.lookups()
        .iter()
        .map(|l| {
            let tenant = s
                .subnet(l.vsid)
                .and_then(|n| s.tenant(n.tenant))
                .map(|t| t.name.clone());
            let (host, pa) = host_json(s, l.host);
            json!({
                "tenant": tenant,
                "vsid": l.vsid.get(),
                "ca": l.ca.to_string(),
                "host": host,
                "pa": pa,
                "mac": l.mac.to_string(),
            })
        })
        .collect()
}

pub(super) fn subnets(s: &Snapshot) -> Value {
    s.subnets()
        .iter()
        .map(|n| {
            json!({
                "tenant": s.tenant(n.tenant).map(|t| t.name.clone()),
                "routing_domain": s
                    .routing_domains()
                    .get(n.routing_domain as usize)
                    .map(|r| r.name.clone()),
                "vsid": n.vsid.get(),
                "prefixes": n.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "lb_mac": n.lb_mac.to_string(),
                "snat": n.snat.iter().map(|r| json!({
                    "ca": r.ca.to_string(),
                    "ports": format!("{}-{}", r.first_port, r.last_port),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Outbound rules `scope` may see, each with its source VMs and their blocks of ports.
pub(super) fn outbound(s: &Snapshot, scope: &Scope) -> Value {
    s.outbound_rules()
        .iter()
        .filter_map(|r| {
            let tenant = s.tenant(r.tenant).map(|t| t.name.as_str())?;
            scope.covers(tenant).then(|| {
                let sources: Vec<Value> = r
                    .sources
                    .iter()
                    .map(|src| {
                        let (host, pa) = host_json(s, src.host);
                        json!({
                            "vsid": src.vsid.get(),
                            "ca": src.ca.to_string(),
                            "block": format!("{}-{}", src.first_port, src.last_port),
                            "host": host,
                            "pa": pa,
                        })
                    })
                    .collect();
                json!({
                    "name": r.name,
                    "tenant": tenant,
                    "address": r.address.to_string(),
                    "ports": format!("{}-{}", r.first_port, r.last_port),
                    "ports_per_dip": r.ports_per_dip,
                    "idle_timeout_s": r.idle_timeout.as_secs(),
                    "sources": sources,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod rule_tests {
    use super::*;

    #[test]
    fn vip_views_carry_each_rules_mode() {
        let example = include_str!("../../../../lb-config/example.toml");
        let red = "[[tenant]]\nname = \"red\"";
        let extra = r#"
[[tenant.vip]]
name = "blue-ha"
frontend = "public"
address = "203.0.113.30"
protocol = "all"
port = 0
backend_vsid = 5001
distribution = "source_ip"
idle_timeout = "4m"
tcp_reset = true
icmp_echo = "drop"
dips = [{ ca = "10.0.0.5" }]

[[tenant.inbound_nat]]
name = "blue-ssh"
frontend = "public"
address = "203.0.113.10"
protocol = "tcp"
port = "2222-2223"
backend_vsid = 5001
targets = [{ ca = "10.0.0.5", port = 22 }, { ca = "10.0.0.6", port = 22 }]
"#;
        let text = example.replacen(red, &format!("{extra}\n{red}"), 1);
        let s = Snapshot::from_toml(&text, "t.toml").unwrap();
        let (_, ha) = s.pool_named("blue-ha").unwrap();
        let v = vip_json(&s, ha, None);
        assert_eq!(v["protocol"], "all");
        assert_eq!(v["port"], 0);
        let r = &v["rule"];
        assert_eq!(
            (&r["kind"], &r["all_ports"], &r["distribution"]),
            (&json!("lb"), &json!(true), &json!("source_ip"))
        );
        assert_eq!(
            (&r["idle_timeout_s"], &r["tcp_reset"], &r["icmp_echo"]),
            (&json!(240), &json!(true), &json!("drop"))
        );
        assert!(r["inbound_nat"].is_null());
        let (_, ssh) = s.pool_named("blue-ssh:2223").unwrap();
        let v = vip_json(&s, ssh, None);
        assert_eq!((&v["protocol"], &v["port"]), (&json!("tcp"), &json!(2223)));
        assert_eq!(v["rule"]["kind"], "nat");
        assert!(v["rule"]["idle_timeout_s"].is_null());
        assert_eq!(
            v["rule"]["inbound_nat"],
            json!({"rule": "blue-ssh", "first": 2222, "last": 2223})
        );
        let (_, web) = s.pool_named("blue-web").unwrap();
        assert_eq!(vip_json(&s, web, None)["rule"]["icmp_echo"], "answer");
    }
}
