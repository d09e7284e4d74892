//! What the API's reads return: the running policy as the reply types of
//! [`super::replies`] (which `nvlb ctl` reads back), cut to what a scope may see. Reads
//! only; must never change policy or show one tenant another's pools.

use std::net::IpAddr;

use super::FlowCounts;
use super::auth::Scope;
use super::replies::{self, Frontend};
use crate::Control;
use crate::policy::{Dip, Snapshot, VipPool, Vsid};

fn tenant_of<'s>(s: &'s Snapshot, p: &VipPool) -> &'s str {
    s.tenant(p.tenant).map(|t| t.name.as_str()).unwrap_or("?")
}

fn frontend(v: Vsid) -> Frontend {
    if v.is_public() {
        Frontend::Named("public".into())
    } else {
        Frontend::Vsid(v.get())
    }
}

/// The host's name (`None` when the policy has no such host) and its PAs.
fn host_of(s: &Snapshot, id: crate::policy::HostId) -> (Option<String>, Vec<String>) {
    match s.get_host(id) {
        Some(h) => (
            Some(h.name.clone()),
            [h.pa(false), h.pa(true)]
                .into_iter()
                .flatten()
                .map(|a: IpAddr| a.to_string())
                .collect(),
        ),
        None => (None, Vec::new()),
    }
}

fn dip(s: &Snapshot, c: &Control, pool: &VipPool, d: &Dip) -> replies::Dip {
    let (host, pa) = host_of(s, d.host);
    replies::Dip {
        vsid: d.vsid.get(),
        ca: d.ca.to_string(),
        port: d.port,
        weight: d.weight,
        state: d.state.name().into(),
        health: if c.is_down(&pool.name, d.key()) {
            "down"
        } else {
            "up"
        }
        .into(),
        host,
        pa,
        mac: d.mac.to_string(),
    }
}

fn flows_of(flows: Option<&FlowCounts>, pool: &str) -> Option<u64> {
    flows.map(|f| f.per_pool.get(pool).copied().unwrap_or(0))
}

/// Pool `p` with `dips` standing for its DIPs (a count for a VIP, the list for a pool).
fn vip_with<D>(s: &Snapshot, p: &VipPool, flows: Option<&FlowCounts>, dips: D) -> replies::Vip<D> {
    replies::Vip {
        name: p.name.clone(),
        tenant: tenant_of(s, p).into(),
        frontend: frontend(p.frontend),
        address: p.address.to_string(),
        protocol: p.rule.protocol_name(p.protocol).into(),
        port: p.port,
        dips,
        active: p.dips.iter().filter(|d| d.effective_weight() > 0).count(),
        flows: flows_of(flows, &p.name),
        rule: rule(p),
    }
}

pub(super) fn vip(s: &Snapshot, p: &VipPool, flows: Option<&FlowCounts>) -> replies::Vip<usize> {
    vip_with(s, p, flows, p.dips.len())
}

/// The rule's mode; a load-balancing rule's settings change through
/// `PATCH /v1/pools/{pool}`, an inbound NAT rule's only in the policy file.
fn rule(p: &VipPool) -> replies::Rule {
    replies::Rule {
        kind: p.rule.kind().into(),
        all_ports: p.rule.all_ports,
        distribution: p.distribution.name().into(),
        idle_timeout_s: p.rule.idle_timeout.map(|d| d.as_secs()),
        tcp_reset: p.rule.tcp_reset,
        icmp_echo: p.rule.icmp_echo.name().into(),
        floating_ip: p.floating_ip,
        inbound_nat: p.rule.nat.as_ref().map(|n| replies::InboundNat {
            rule: n.rule.clone(),
            first: n.first,
            last: n.last,
        }),
    }
}

pub(super) fn pool(
    s: &Snapshot,
    c: &Control,
    p: &VipPool,
    flows: Option<&FlowCounts>,
) -> replies::Pool {
    let dips = p.dips.iter().map(|d| dip(s, c, p, d)).collect();
    vip_with(s, p, flows, dips)
}

/// Pools `scope` may see, in declaration order.
pub(super) fn visible<'s>(s: &'s Snapshot, scope: &Scope) -> Vec<&'s VipPool> {
    s.pools()
        .iter()
        .filter(|p| scope.covers(tenant_of(s, p)))
        .collect()
}

pub(super) fn tenants(
    s: &Snapshot,
    scope: &Scope,
    flows: Option<&FlowCounts>,
) -> Vec<replies::Tenant> {
    s.tenants()
        .iter()
        .filter(|t| scope.covers(&t.name))
        .map(|t| replies::Tenant {
            name: t.name.clone(),
            vsids: s
                .subnets()
                .iter()
                .filter(|n| n.tenant == t.id)
                .map(|n| n.vsid.get())
                .collect(),
            pools: s
                .pools()
                .iter()
                .filter(|p| p.tenant == t.id)
                .map(|p| p.name.clone())
                .collect(),
            flows: flows.map(|f| f.per_tenant.get(&t.name).copied().unwrap_or(0)),
        })
        .collect()
}

pub(super) fn health(s: &Snapshot, c: &Control, scope: &Scope) -> Vec<replies::HealthRow> {
    let mut out = Vec::new();
    for p in visible(s, scope) {
        for d in &p.dips {
            out.push(replies::HealthRow {
                pool: p.name.clone(),
                dip: dip(s, c, p, d),
            });
        }
    }
    out
}

pub(super) fn lookups(s: &Snapshot) -> Vec<replies::Lookup> {
    s.lookups()
        .iter()
        .map(|l| {
            let tenant = s
                .subnet(l.vsid)
                .and_then(|n| s.tenant(n.tenant))
                .map(|t| t.name.clone());
            let (host, pa) = host_of(s, l.host);
            replies::Lookup {
                tenant,
                vsid: l.vsid.get(),
                ca: l.ca.to_string(),
                host,
                pa,
                mac: l.mac.to_string(),
            }
        })
        .collect()
}

pub(super) fn subnets(s: &Snapshot) -> Vec<replies::Subnet> {
    s.subnets()
        .iter()
        .map(|n| replies::Subnet {
            tenant: s.tenant(n.tenant).map(|t| t.name.clone()),
            routing_domain: s
                .routing_domains()
                .get(n.routing_domain as usize)
                .map(|r| r.name.clone()),
            vsid: n.vsid.get(),
            prefixes: n.prefixes.iter().map(|p| p.to_string()).collect(),
            lb_mac: n.lb_mac.to_string(),
            snat: n
                .snat
                .iter()
                .map(|r| replies::Snat {
                    ca: r.ca.to_string(),
                    ports: format!("{}-{}", r.first_port, r.last_port),
                })
                .collect(),
        })
        .collect()
}

/// Outbound rules `scope` may see, each with its source VMs and their blocks of ports.
pub(super) fn outbound(s: &Snapshot, scope: &Scope) -> Vec<replies::Outbound> {
    s.outbound_rules()
        .iter()
        .filter_map(|r| {
            let tenant = s.tenant(r.tenant).map(|t| t.name.as_str())?;
            scope.covers(tenant).then(|| replies::Outbound {
                name: r.name.clone(),
                tenant: tenant.into(),
                address: r.address.to_string(),
                ports: format!("{}-{}", r.first_port, r.last_port),
                ports_per_dip: r.ports_per_dip,
                idle_timeout_s: r.idle_timeout.as_secs(),
                sources: r
                    .sources
                    .iter()
                    .map(|src| {
                        let (host, pa) = host_of(s, src.host);
                        replies::OutboundSource {
                            vsid: src.vsid.get(),
                            ca: src.ca.to_string(),
                            block: format!("{}-{}", src.first_port, src.last_port),
                            host,
                            pa,
                        }
                    })
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod rule_tests {
    use super::*;
    use serde_json::{Value, json};

    fn vip_json(s: &Snapshot, p: &VipPool, flows: Option<&FlowCounts>) -> Value {
        replies::to_body(&vip(s, p, flows))
    }

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
