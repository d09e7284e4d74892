//! The bodies of the calls that change policy, read into the specs that `edit`
//! applies: each field checked by `Fields`, and a body that asks for nothing refused
//! (400) rather than written as a no-op change to the journal.

use serde_json::Value;

use super::edit::{DipSpec, LookupSpec, RuleSpec, SubnetSpec};
use super::fields::{Bad, Fields, parse_body};

/// The body of `POST /v1/pools/{pool}/dips`.
pub(super) fn dip_spec(body: &[u8]) -> Result<DipSpec, Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(&v, "", &["ca", "port", "vsid", "weight", "drain"])?;
    Ok(DipSpec {
        ca: f.need_str("ca")?,
        port: f.int("port")?,
        vsid: f.int("vsid")?,
        weight: f.int("weight")?,
        drain: f.bool("drain")?,
    })
}

/// The body of `PATCH /v1/pools/{pool}/dips/{ca}`: the new weight and/or drain flag.
pub(super) fn dip_change(body: &[u8]) -> Result<(Option<i64>, Option<bool>), Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(&v, "", &["weight", "drain"])?;
    let (w, d) = (f.int("weight")?, f.bool("drain")?);
    if w.is_none() && d.is_none() {
        return Err(Bad("nothing to change: give weight and/or drain".into()));
    }
    Ok((w, d))
}

/// The body of `PUT /v1/lookups`: the whole new set of records.
pub(super) fn all_lookups(body: &[u8]) -> Result<Vec<LookupSpec>, Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(&v, "", &["records"])?;
    let list = f
        .list("records")?
        .ok_or_else(|| Bad("records: missing".into()))?;
    lookup_specs(list, "records")
}

/// Records to add or replace, and (VSID, CA) pairs to delete.
pub(super) type LookupPatch = (Vec<LookupSpec>, Vec<(i64, String)>);

/// The body of `PATCH /v1/lookups`.
pub(super) fn lookup_patch(body: &[u8]) -> Result<LookupPatch, Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(&v, "", &["set", "delete"])?;
    let set = match f.list("set")? {
        Some(l) => lookup_specs(l, "set")?,
        None => Vec::new(),
    };
    let mut delete = Vec::new();
    for (i, d) in f.list("delete")?.into_iter().flatten().enumerate() {
        let g = Fields::of(d, &format!("delete[{i}]."), &["vsid", "ca"])?;
        delete.push((g.need_int("vsid")?, g.need_str("ca")?));
    }
    if set.is_empty() && delete.is_empty() {
        return Err(Bad("nothing to change: give set and/or delete".into()));
    }
    Ok((set, delete))
}

/// The body of `PUT /v1/subnets/{vsid}`.
pub(super) fn subnet_spec(body: &[u8]) -> Result<SubnetSpec, Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(
        &v,
        "",
        &["tenant", "routing_domain", "prefixes", "lb_mac", "snat"],
    )?;
    let snat = match f.list("snat")? {
        None => None,
        Some(l) => Some(
            l.iter()
                .enumerate()
                .map(|(i, s)| {
                    let g = Fields::of(s, &format!("snat[{i}]."), &["ca", "ports"])?;
                    Ok((g.need_str("ca")?, g.need_str("ports")?))
                })
                .collect::<Result<Vec<_>, Bad>>()?,
        ),
    };
    Ok(SubnetSpec {
        tenant: f.str("tenant")?,
        routing_domain: f.str("routing_domain")?,
        prefixes: f.strings("prefixes")?,
        lb_mac: f.str("lb_mac")?,
        snat,
    })
}

/// The body of `PATCH /v1/pools/{pool}`: the rule settings to change.
pub(super) fn rule_spec(body: &[u8]) -> Result<RuleSpec, Bad> {
    let v = parse_body(body)?;
    let f = Fields::of(
        &v,
        "",
        &[
            "distribution",
            "idle_timeout",
            "tcp_reset",
            "icmp_echo",
            "floating_ip",
        ],
    )?;
    // `null` means "remove the key" here, so it is told from a missing field.
    let idle_timeout = match f.map.get("idle_timeout") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(t)) => Some(Some(t.clone())),
        Some(_) => {
            return Err(f.bad(
                "idle_timeout",
                "a duration string such as \"4m\", or null to remove it",
            ));
        }
    };
    for k in ["distribution", "tcp_reset", "icmp_echo", "floating_ip"] {
        if f.map.get(k).is_some_and(Value::is_null) {
            return Err(f.bad(k, "a value (only idle_timeout can be null)"));
        }
    }
    let spec = RuleSpec {
        distribution: f.str("distribution")?,
        idle_timeout,
        tcp_reset: f.bool("tcp_reset")?,
        icmp_echo: f.str("icmp_echo")?,
        floating_ip: f.bool("floating_ip")?,
    };
    if spec.is_empty() {
        return Err(Bad(
            "nothing to change: give distribution, idle_timeout, tcp_reset, icmp_echo \
             and/or floating_ip"
                .into(),
        ));
    }
    Ok(spec)
}

fn lookup_specs(list: &[Value], name: &str) -> Result<Vec<LookupSpec>, Bad> {
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let f = Fields::of(r, &format!("{name}[{i}]."), &["vsid", "ca", "host", "mac"])?;
            Ok(LookupSpec {
                vsid: f.need_int("vsid")?,
                ca: f.need_str("ca")?,
                host: f.need_str("host")?,
                mac: f.need_str("mac")?,
            })
        })
        .collect()
}
