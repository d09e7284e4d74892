//! The policy file's schema, exactly as written: strings and integers with their spans.
//!
//! Addresses, MACs, prefixes, durations and port ranges stay strings here and are parsed
//! by the validator, so that one bad value does not stop the search for the next one and
//! every message can name its field. This module must never interpret values; serde only
//! checks the shape (unknown keys, missing keys, wrong TOML types).

use serde::Deserialize;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub balancer: S<RawBalancer>,
    #[serde(default)]
    pub host: Vec<S<RawHost>>,
    #[serde(default)]
    pub tenant: Vec<S<RawTenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBalancer {
    pub name: S<String>,
    pub external: S<RawPort>,
    pub provider: S<RawPort>,
    pub flows: Option<S<RawFlows>>,
    pub reload: Option<S<RawReload>>,
    pub health: Option<S<RawBalancerHealth>>,
    #[serde(default)]
    pub instance: Vec<S<RawInstance>>,
}

/// `[[balancer.instance]]`: one instance of a scale-out group.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstance {
    pub name: S<String>,
    pub provider_addresses: S<Vec<S<String>>>,
    #[serde(default)]
    pub snat: Vec<S<RawInstanceSnat>>,
}

/// One SNAT CA of an instance in one VSID.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInstanceSnat {
    pub vsid: S<i64>,
    pub ca: S<String>,
    pub ports: S<String>,
}

/// `[balancer.health]`: what health probes of every pool share.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBalancerHealth {
    pub probe_ports: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    pub removed_dips: Option<S<String>>,
    pub drain_timeout: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub mac: S<String>,
    pub addresses: Option<S<Vec<S<String>>>>,
    pub gateway_mac: Option<S<String>>,
    pub mtu: S<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlows {
    pub max_flows_per_worker: Option<S<i64>>,
    pub max_flows_per_tenant: Option<S<i64>>,
    pub preallocate_flows_per_worker: Option<S<i64>>,
    pub tcp_syn_timeout: Option<S<String>>,
    pub tcp_established_timeout: Option<S<String>>,
    pub tcp_closing_timeout: Option<S<String>>,
    pub udp_timeout: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub name: S<String>,
    pub pa: S<Vec<S<String>>>,
    pub mac: S<String>,
    pub gateway_mac: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub name: S<String>,
    #[serde(default)]
    pub routing_domain: Vec<S<RawRoutingDomain>>,
    #[serde(default)]
    pub lookup: Vec<S<RawLookup>>,
    #[serde(default)]
    pub vip: Vec<S<RawVip>>,
    #[serde(default)]
    pub inbound_nat: Vec<S<RawInboundNat>>,
    #[serde(default)]
    pub outbound: Vec<S<RawOutbound>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoutingDomain {
    pub name: S<String>,
    #[serde(default)]
    pub subnet: Vec<S<RawSubnet>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubnet {
    pub vsid: S<i64>,
    pub prefixes: S<Vec<S<String>>>,
    pub lb_mac: S<String>,
    #[serde(default)]
    pub snat: Vec<S<RawSnat>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSnat {
    pub ca: S<String>,
    pub ports: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLookup {
    pub vsid: S<i64>,
    pub ca: S<String>,
    pub host: S<String>,
    pub mac: S<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVip {
    pub name: S<String>,
    /// `"public"` or an integer VSID; kept as a raw value so the validator can say which.
    pub frontend: S<toml::Value>,
    pub address: S<String>,
    pub protocol: S<String>,
    pub port: S<i64>,
    pub backend_vsid: Option<S<i64>>,
    pub distribution: Option<S<String>>,
    pub dips: S<Vec<S<RawDip>>>,
    pub health: Option<S<RawHealth>>,
    pub idle_timeout: Option<S<String>>,
    pub tcp_reset: Option<S<bool>>,
    pub icmp_echo: Option<S<String>>,
    pub floating_ip: Option<S<bool>>,
}

/// A pool's health check (`health = { protocol = "http", ... }`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub protocol: S<String>,
    pub port: Option<S<i64>>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub rise: Option<S<i64>>,
    pub fall: Option<S<i64>>,
    pub path: Option<S<String>>,
    pub host: Option<S<String>>,
    pub status: Option<S<i64>>,
    pub body: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDip {
    pub ca: S<String>,
    pub port: Option<S<i64>>,
    pub weight: Option<S<i64>>,
    pub vsid: Option<S<i64>>,
    pub drain: Option<S<bool>>,
}

/// `[[tenant.inbound_nat]]`: a frontend port (or range) to one DIP's port each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInboundNat {
    pub name: S<String>,
    pub frontend: S<toml::Value>,
    pub address: S<String>,
    pub protocol: S<String>,
    /// An integer port or a `"FIRST-LAST"` range.
    pub port: S<toml::Value>,
    pub backend_vsid: Option<S<i64>>,
    pub targets: S<Vec<S<RawNatTarget>>>,
    pub idle_timeout: Option<S<String>>,
    pub tcp_reset: Option<S<bool>>,
}

/// One target of an inbound NAT rule: the DIP the i-th frontend port leads to.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNatTarget {
    pub ca: S<String>,
    pub port: Option<S<i64>>,
    pub vsid: Option<S<i64>>,
}

/// `[[tenant.outbound]]`: source NAT of the tenant's VMs towards the Internet.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutbound {
    pub name: S<String>,
    pub address: S<String>,
    pub pools: Option<S<Vec<S<String>>>>,
    pub sources: Option<S<Vec<S<RawOutboundSource>>>>,
    pub ports: Option<S<String>>,
    pub ports_per_dip: Option<S<i64>>,
    pub idle_timeout: Option<S<String>>,
}

/// One VM named by its CA (`{ vsid = 5001, ca = "10.0.0.9" }`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutboundSource {
    pub vsid: S<i64>,
    pub ca: S<String>,
}
