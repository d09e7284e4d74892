//! `nvlb check FILE`: the policy as the LB would load it, or every reason it would not.

use std::path::Path;
use std::process::ExitCode;

use nvlb::policy::{Snapshot, summary};
use serde_json::{Value, json};

pub fn run(file: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    match nvlb::control::policy_file::read(file, &Default::default()) {
        Ok(snapshot) => {
            for w in snapshot.warnings() {
                eprintln!("warning: {w}");
            }
            if as_json {
                println!("{}", serde_json::to_string_pretty(&to_json(&snapshot))?);
            } else {
                print!("{}", summary(&snapshot));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            super::print_config_error(&e);
            Ok(ExitCode::from(1))
        }
    }
}

/// The snapshot as plain JSON, for scripts (the golden tests' scapy side reads it).
fn to_json(s: &Snapshot) -> Value {
    let b = s.balancer();
    let port = |p: &nvlb::policy::Port| {
        json!({
            "mac": p.mac.to_string(),
            "addresses": p.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "gateway_mac": p.gateway_mac.map(|m| m.to_string()),
            "mtu": p.mtu,
        })
    };
    let tenant = |id: u16| s.tenant(id).map(|t| t.name.clone());
    let host = |id: u16| s.get_host(id).map(|h| h.name.clone());
    json!({
        "balancer": { "name": b.name, "external": port(&b.external), "provider": port(&b.provider) },
        "tenants": s.tenants().iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "hosts": s.hosts().iter().map(|h| json!({
            "name": h.name,
            "pa_v4": h.pa_v4.map(|a| a.to_string()),
            "pa_v6": h.pa_v6.map(|a| a.to_string()),
            "mac": h.mac.to_string(),
        })).collect::<Vec<_>>(),
        "subnets": s.subnets().iter().map(|n| json!({
            "vsid": n.vsid.get(),
            "tenant": tenant(n.tenant),
            "prefixes": n.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "lb_mac": n.lb_mac.to_string(),
            "snat": n.snat.iter().map(|r| json!({
                "ca": r.ca.to_string(), "first_port": r.first_port, "last_port": r.last_port,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "lookups": s.lookups().iter().map(|r| json!({
            "vsid": r.vsid.get(), "ca": r.ca.to_string(), "host": host(r.host), "mac": r.mac.to_string(),
        })).collect::<Vec<_>>(),
        "pools": s.pools().iter().map(|p| json!({
            "name": p.name,
            "tenant": tenant(p.tenant),
            "frontend": p.frontend.get(),
            "address": p.address.to_string(),
            "protocol": p.protocol.name(),
            "port": p.port,
            "distribution": p.distribution.name(),
            "dips": p.dips.iter().map(|d| json!({
                "vsid": d.vsid.get(), "ca": d.ca.to_string(), "port": d.port, "weight": d.weight,
                "state": d.state.name(), "host": host(d.host), "mac": d.mac.to_string(),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
