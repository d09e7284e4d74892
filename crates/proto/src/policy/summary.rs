//! `nvlb check`'s report: the compiled policy as fixed-width tables an operator can read
//! and diff. Reads a snapshot only; must never validate, fail, or depend on terminal
//! width.

use core::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::model::{Dip, DipState, Host, VipPool};
use super::snapshot::Snapshot;

/// The whole snapshot: balancer, hosts, subnets, lookup records, VIP pools, warnings.
pub fn summary(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    balancer(snapshot, &mut out);
    hosts(snapshot, &mut out);
    subnets(snapshot, &mut out);
    lookups(snapshot, &mut out);
    rules(snapshot, &mut out);
    pools(snapshot, &mut out);
    outbound(snapshot, &mut out);
    if !snapshot.warnings().is_empty() {
        out.push_str("\nwarnings\n");
        for w in snapshot.warnings() {
            let _ = writeln!(out, "  {w}");
        }
    }
    out
}

/// Rows of cells, padded to the widest cell of each column (the last one unpadded).
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from("  ");
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn or_dash(s: Option<String>) -> String {
    s.unwrap_or_else(|| "-".to_owned())
}

fn join<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(" ")
    }
}

fn duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `addr:port`, bracketing IPv6 as in URLs.
fn endpoint(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

fn endpoint_range(a: IpAddr, first: u16, last: u16) -> String {
    match a {
        IpAddr::V4(v4) => format!("{v4}:{first}-{last}"),
        IpAddr::V6(v6) => format!("[{v6}]:{first}-{last}"),
    }
}

fn balancer(s: &Snapshot, out: &mut String) {
    let b = s.balancer();
    let _ = writeln!(out, "balancer {}", b.name);
    let mut t = Table::new(&["PORT", "MAC", "MTU", "GATEWAY MAC", "ADDRESSES"]);
    for (name, p) in [("external", &b.external), ("provider", &b.provider)] {
        t.row(vec![
            name.to_owned(),
            p.mac.to_string(),
            p.mtu.to_string(),
            or_dash(p.gateway_mac.map(|m| m.to_string())),
            join(&p.addresses),
        ]);
    }
    t.render(out);
    let f = &b.flows;
    let _ = writeln!(
        out,
        "  flows: {} per worker, {} per tenant per worker; timeouts: tcp syn {}, established {}, closing {}, udp {}",
        f.max_flows_per_worker,
        f.max_flows_per_tenant,
        duration(f.tcp_syn_timeout),
        duration(f.tcp_established_timeout),
        duration(f.tcp_closing_timeout),
        duration(f.udp_timeout)
    );
}

fn hosts(s: &Snapshot, out: &mut String) {
    let _ = writeln!(out, "\nhosts ({})", s.hosts().len());
    let mut t = Table::new(&["HOST", "PA IPv4", "PA IPv6", "MAC"]);
    for h in s.hosts() {
        t.row(vec![
            h.name.clone(),
            or_dash(h.pa_v4.map(|a| a.to_string())),
            or_dash(h.pa_v6.map(|a| a.to_string())),
            h.mac.to_string(),
        ]);
    }
    t.render(out);
}

fn tenant_name(s: &Snapshot, id: u16) -> String {
    s.tenant(id)
        .map_or_else(|| "?".to_owned(), |t| t.name.clone())
}

fn subnets(s: &Snapshot, out: &mut String) {
    let _ = writeln!(
        out,
        "\nvirtual subnets ({} tenants, {} routing domains, {} VSIDs)",
        s.tenants().len(),
        s.routing_domains().len(),
        s.subnets().len()
    );
    let mut t = Table::new(&[
        "TENANT",
        "ROUTING DOMAIN",
        "VSID",
        "LB MAC",
        "PREFIXES",
        "SNAT CA:PORTS",
    ]);
    for sub in s.subnets() {
        let rd = usize::try_from(sub.routing_domain)
            .ok()
            .and_then(|i| s.routing_domains().get(i))
            .map_or_else(|| "?".to_owned(), |r| r.name.clone());
        let snat = sub
            .snat
            .iter()
            .map(|r| endpoint_range(r.ca, r.first_port, r.last_port));
        t.row(vec![
            tenant_name(s, sub.tenant),
            rd,
            sub.vsid.to_string(),
            sub.lb_mac.to_string(),
            join(&sub.prefixes),
            join(snat),
        ]);
    }
    t.render(out);
}

fn lookups(s: &Snapshot, out: &mut String) {
    let _ = writeln!(out, "\nlookup records ({})", s.lookups().len());
    let mut t = Table::new(&["TENANT", "VSID", "CA", "MAC", "HOST", "PA"]);
    for l in s.lookups() {
        let tenant = s
            .subnet(l.vsid)
            .map_or_else(|| "?".to_owned(), |x| tenant_name(s, x.tenant));
        let host = s.get_host(l.host);
        t.row(vec![
            tenant,
            l.vsid.to_string(),
            l.ca.to_string(),
            l.mac.to_string(),
            or_dash(host.map(|h| h.name.clone())),
            or_dash(host.map(host_pas)),
        ]);
    }
    t.render(out);
}

fn host_pas(h: &Host) -> String {
    join([h.pa(false), h.pa(true)].into_iter().flatten())
}

fn pools(s: &Snapshot, out: &mut String) {
    let _ = writeln!(out, "\nVIP pools ({})", s.pools().len());
    let mut t = Table::new(&[
        "VIP", "TENANT", "FRONTEND", "ADDRESS", "PROTO", "PORT", "MODE", "DIP VSID", "DIP",
        "WEIGHT", "HOST", "PA",
    ]);
    for pool in s.pools() {
        for (i, dip) in pool.dips.iter().enumerate() {
            let mut row = if i == 0 {
                pool_cells(s, pool)
            } else {
                vec![String::new(); 7]
            };
            row.extend(dip_cells(s, dip));
            t.row(row);
        }
    }
    t.render(out);
}

fn pool_cells(s: &Snapshot, p: &VipPool) -> Vec<String> {
    vec![
        p.name.clone(),
        tenant_name(s, p.tenant),
        p.frontend.to_string(),
        p.address.to_string(),
        p.rule.protocol_name(p.protocol).to_string(),
        p.port.to_string(),
        if p.floating_ip {
            format!("{} floating_ip", p.distribution.name())
        } else {
            p.distribution.name().to_string()
        },
    ]
}

fn dip_cells(s: &Snapshot, d: &Dip) -> Vec<String> {
    let host = s.get_host(d.host);
    vec![
        d.vsid.to_string(),
        endpoint(d.ca, d.port),
        match d.state {
            DipState::Active => d.weight.to_string(),
            other => format!("{} ({})", d.weight, other.name()),
        },
        or_dash(host.map(|h| h.name.clone())),
        or_dash(host.map(host_pas)),
    ]
}

/// Outbound rules: one row per source VM, with the block of ports it owns.
fn outbound(s: &Snapshot, out: &mut String) {
    if s.outbound_rules().is_empty() {
        return;
    }
    let _ = writeln!(out, "\noutbound rules ({})", s.outbound_rules().len());
    let mut t = Table::new(&[
        "RULE", "TENANT", "ADDRESS", "PORTS", "PER DIP", "IDLE", "VSID", "SOURCE", "BLOCK", "HOST",
    ]);
    for rule in s.outbound_rules() {
        for (i, src) in rule.sources.iter().enumerate() {
            let mut row = if i == 0 {
                vec![
                    rule.name.clone(),
                    tenant_name(s, rule.tenant),
                    rule.address.to_string(),
                    format!("{}-{}", rule.first_port, rule.last_port),
                    rule.ports_per_dip.to_string(),
                    duration(rule.idle_timeout),
                ]
            } else {
                vec![String::new(); 6]
            };
            row.extend([
                src.vsid.to_string(),
                src.ca.to_string(),
                format!("{}-{}", src.first_port, src.last_port),
                or_dash(s.get_host(src.host).map(|h| h.name.clone())),
            ]);
            t.row(row);
        }
    }
    t.render(out);
}

/// Every rule of every VIP address, grouped by (frontend, address): load-balancing
/// rules and inbound NAT ports with their mode, as a tenant reads a cloud LB's rules.
fn rules(s: &Snapshot, out: &mut String) {
    let mut order: Vec<(crate::policy::Vsid, IpAddr)> = Vec::new();
    for p in s.pools() {
        if !order.contains(&(p.frontend, p.address)) {
            order.push((p.frontend, p.address));
        }
    }
    let _ = writeln!(out, "\nrules by VIP address ({})", order.len());
    let mut t = Table::new(&[
        "FRONTEND",
        "ADDRESS",
        "ICMP ECHO",
        "RULE",
        "KIND",
        "PROTO/PORT",
        "DISTRIBUTION",
        "IDLE TIMEOUT",
        "TCP RESET",
        "TO",
    ]);
    for (frontend, address) in order {
        let (echo, _) = s.icmp_echo(frontend, address);
        let mut first = true;
        for p in s
            .pools()
            .iter()
            .filter(|p| (p.frontend, p.address) == (frontend, address))
        {
            let mut row = if first {
                vec![
                    frontend.to_string(),
                    address.to_string(),
                    echo.name().to_owned(),
                ]
            } else {
                vec![String::new(); 3]
            };
            first = false;
            let port = if p.rule.all_ports {
                "all ports".to_owned()
            } else {
                format!("{}/{}", p.protocol, p.port)
            };
            let to = if p.rule.all_ports {
                join(p.dips.iter().map(|d| d.ca))
            } else {
                join(p.dips.iter().map(|d| endpoint(d.ca, d.port)))
            };
            row.extend([
                p.name.clone(),
                p.rule.kind().to_owned(),
                port,
                if p.rule.nat.is_some() {
                    "-".to_owned()
                } else if p.floating_ip {
                    format!("{} floating_ip", p.distribution.name())
                } else {
                    p.distribution.name().to_owned()
                },
                p.rule
                    .idle_timeout
                    .map_or_else(|| "default".to_owned(), duration),
                if p.rule.tcp_reset { "yes" } else { "no" }.to_owned(),
                to,
            ]);
            t.row(row);
        }
    }
    t.render(out);
}
