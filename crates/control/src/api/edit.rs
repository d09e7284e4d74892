//! The edits the API makes to the policy file's TOML document: DIPs of a pool, lookup
//! records, virtual subnets.
//!
//! Each edit touches only the entries it names and writes values as the request gave
//! them (strings stay strings, integers integers), so that the policy validator, not
//! this module, judges them and its messages name the field in the file's own terms.
//! Entries are found through the policy the file holds now (DIPs are listed in
//! declaration order, so a pool's i-th DIP is its i-th `dips` entry). This module must
//! never reformat or reorder what it does not change, and never validate policy itself.

use std::net::IpAddr;

use serde_json::{Value, json};
use toml_edit::{
    Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike, Value as TVal,
};

use crate::persist::{EditError, Edited};
use crate::policy::{DipKey, Snapshot, Vsid};

fn not_found(what: String) -> EditError {
    EditError::NotFound(what)
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> EditError {
    EditError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn tenants_mut(doc: &mut DocumentMut) -> Option<&mut ArrayOfTables> {
    doc.get_mut("tenant")?.as_array_of_tables_mut()
}

fn tenant_mut<'d>(doc: &'d mut DocumentMut, name: &str) -> Option<&'d mut Table> {
    tenants_mut(doc)?
        .iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
}

/// The `[[tenant.vip]]` table of pool `name`.
fn vip_mut<'d>(doc: &'d mut DocumentMut, name: &str) -> Result<&'d mut Table, EditError> {
    tenants_mut(doc)
        .into_iter()
        .flat_map(|ts| ts.iter_mut())
        .filter_map(|t| t.get_mut("vip").and_then(Item::as_array_of_tables_mut))
        .flat_map(|vs| vs.iter_mut())
        .find(|v| v.get("name").and_then(Item::as_str) == Some(name))
        .ok_or_else(|| not_found(format!("no pool named {name:?} in the policy file")))
}

/// A pool's `dips`, written inline (`dips = [ { ... } ]`) or as `[[tenant.vip.dips]]`.
enum Dips<'a> {
    Inline(&'a mut Array),
    Tables(&'a mut ArrayOfTables),
}

impl Dips<'_> {
    fn of(vip: &mut Table) -> Result<Dips<'_>, EditError> {
        match vip.get_mut("dips") {
            Some(Item::Value(TVal::Array(a))) => Ok(Dips::Inline(a)),
            Some(Item::ArrayOfTables(a)) => Ok(Dips::Tables(a)),
            _ => Err(invalid(
                "dips",
                "the pool's dips are not a list in the file",
            )),
        }
    }

    fn entry(&mut self, i: usize) -> Option<&mut dyn TableLike> {
        match self {
            Dips::Inline(a) => a
                .get_mut(i)?
                .as_inline_table_mut()
                .map(|t| t as &mut dyn TableLike),
            Dips::Tables(a) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
        }
    }

    /// The entry as it reads in the file, for the journal.
    fn text(&self, i: usize) -> Option<String> {
        match self {
            Dips::Inline(a) => a.get(i).map(|v| v.to_string().trim().to_string()),
            Dips::Tables(a) => a.get(i).map(|t| inline_text(t.iter())),
        }
    }

    fn remove(&mut self, i: usize) {
        match self {
            Dips::Inline(a) => {
                a.remove(i);
            }
            Dips::Tables(a) => {
                a.remove(i);
            }
        }
    }

    fn push(&mut self, fields: Vec<(&'static str, TVal)>) {
        match self {
            Dips::Inline(a) => {
                let mut t = InlineTable::new();
                for (k, v) in fields {
                    t.insert(k, v);
                }
                push_like_last(a, TVal::InlineTable(t));
            }
            Dips::Tables(a) => {
                let mut t = Table::new();
                for (k, v) in fields {
                    t.insert(k, Item::Value(v));
                }
                a.push(t);
            }
        }
    }
}

/// Appends `v` to `a` with the layout of its last element (one per line, indented).
fn push_like_last(a: &mut Array, mut v: TVal) {
    let prefix = a
        .iter()
        .last()
        .and_then(|l| l.decor().prefix())
        .and_then(|p| p.as_str())
        .map(str::to_string);
    v.decor_mut().clear();
    if let Some(p) = prefix {
        v.decor_mut().set_prefix(p);
    }
    if a.is_empty() {
        a.push(v);
    } else {
        a.push_formatted(v);
    }
}

fn inline_text<'a>(it: impl Iterator<Item = (&'a str, &'a Item)>) -> String {
    let mut t = InlineTable::new();
    for (k, v) in it {
        if let Some(v) = v.as_value() {
            t.insert(k, v.clone());
        }
    }
    t.fmt();
    t.to_string().trim().to_string()
}

/// The index in pool `pool` of the one DIP with this CA (and port, and VSID, when
/// given).
pub fn find_dip(
    cur: &Snapshot,
    pool: &str,
    ca: IpAddr,
    port: Option<u16>,
    vsid: Option<Vsid>,
) -> Result<(usize, DipKey), EditError> {
    let (_, p) = cur
        .pool_named(pool)
        .ok_or_else(|| not_found(format!("no pool named {pool:?}")))?;
    let hits: Vec<(usize, DipKey)> = p
        .dips
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.ca == ca && port.is_none_or(|x| x == d.port) && vsid.is_none_or(|v| v == d.vsid)
        })
        .map(|(i, d)| (i, d.key()))
        .collect();
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(not_found(format!(
            "pool {pool:?} has no DIP {ca}{}",
            port.map(|p| format!(" port {p}")).unwrap_or_default()
        ))),
        _ => Err(EditError::Conflict(format!(
            "pool {pool:?} has {} DIPs with CA {ca}: name the port (and VSID)",
            hits.len()
        ))),
    }
}

/// A DIP to add, as the request gave it.
#[derive(Clone, Debug, Default)]
pub struct DipSpec {
    pub ca: String,
    pub port: Option<i64>,
    pub vsid: Option<i64>,
    pub weight: Option<i64>,
    pub drain: Option<bool>,
}

pub fn add_dip(doc: &mut DocumentMut, pool: &str, spec: &DipSpec) -> Result<Edited, EditError> {
    let vip = vip_mut(doc, pool)?;
    let mut dips = Dips::of(vip)?;
    let mut fields: Vec<(&'static str, TVal)> = vec![("ca", spec.ca.as_str().into())];
    if let Some(p) = spec.port {
        fields.push(("port", p.into()));
    }
    if let Some(v) = spec.vsid {
        fields.push(("vsid", v.into()));
    }
    if let Some(w) = spec.weight {
        fields.push(("weight", w.into()));
    }
    if let Some(true) = spec.drain {
        fields.push(("drain", true.into()));
    }
    dips.push(fields);
    let n = match &dips {
        Dips::Inline(a) => a.len(),
        Dips::Tables(a) => a.len(),
    };
    Ok(Edited {
        before: Value::Null,
        after: json!({ "pool": pool, "dip": dips.text(n.saturating_sub(1)) }),
    })
}

pub fn remove_dip(doc: &mut DocumentMut, pool: &str, index: usize) -> Result<Edited, EditError> {
    let vip = vip_mut(doc, pool)?;
    let mut dips = Dips::of(vip)?;
    let before = dips
        .text(index)
        .ok_or_else(|| not_found(format!("pool {pool:?} has no DIP #{index} in the file")))?;
    dips.remove(index);
    Ok(Edited {
        before: json!({ "pool": pool, "dip": before }),
        after: Value::Null,
    })
}

/// Changes a DIP's weight and/or drain flag; `drain = false` removes the key.
pub fn set_dip(
    doc: &mut DocumentMut,
    pool: &str,
    index: usize,
    weight: Option<i64>,
    drain: Option<bool>,
) -> Result<Edited, EditError> {
    let vip = vip_mut(doc, pool)?;
    let mut dips = Dips::of(vip)?;
    let before = dips
        .text(index)
        .ok_or_else(|| not_found(format!("pool {pool:?} has no DIP #{index} in the file")))?;
    let entry = dips
        .entry(index)
        .ok_or_else(|| invalid("dips", "a DIP entry is not a table in the file"))?;
    if let Some(w) = weight {
        entry.insert("weight", Item::Value(w.into()));
    }
    match drain {
        Some(true) => {
            entry.insert("drain", Item::Value(true.into()));
        }
        Some(false) => {
            entry.remove("drain");
        }
        None => {}
    }
    // A key added after the last one would keep that one's trailing space before it.
    entry.fmt();
    Ok(Edited {
        before: json!({ "pool": pool, "dip": before }),
        after: json!({ "pool": pool, "dip": dips.text(index) }),
    })
}

/// A pool's rule settings as the request gave them; `None` keeps what the file has.
#[derive(Clone, Debug, Default)]
pub struct RuleSpec {
    pub distribution: Option<String>,
    /// `Some(None)`: remove the key (the balancer's idle timeout applies).
    pub idle_timeout: Option<Option<String>>,
    pub tcp_reset: Option<bool>,
    pub icmp_echo: Option<String>,
    pub floating_ip: Option<bool>,
}

impl RuleSpec {
    pub fn is_empty(&self) -> bool {
        self.distribution.is_none()
            && self.idle_timeout.is_none()
            && self.tcp_reset.is_none()
            && self.icmp_echo.is_none()
            && self.floating_ip.is_none()
    }
}

/// The rule keys `set_rule` may change, in the order a new key is written.
const RULE_KEYS: [&str; 5] = [
    "distribution",
    "idle_timeout",
    "tcp_reset",
    "icmp_echo",
    "floating_ip",
];

/// The rule keys of a `[[tenant.vip]]` as they read in the file, for the journal.
fn rule_text(pool: &str, vip: &Table) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("pool".into(), json!(pool));
    for k in RULE_KEYS {
        let v = vip.get(k).and_then(Item::as_value).map(|v| {
            let mut bare = v.clone();
            bare.decor_mut().clear();
            json!(bare.to_string().trim())
        });
        m.insert(k.into(), v.unwrap_or(Value::Null));
    }
    Value::Object(m)
}

/// Writes `key = v`, keeping the old value's comments and spacing when the key exists.
fn set_key(vip: &mut Table, key: &str, mut v: TVal) {
    match vip.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        None => {
            // A new key goes after the pool's last key, written `key = value`.
            v.decor_mut().clear();
            vip.insert(key, Item::Value(v));
        }
    }
}

/// Changes the rule settings of pool `pool` (a `[[tenant.vip]]` entry); an
/// `idle_timeout` of `Some(None)` removes the key. Values are written as given: the
/// validator judges them.
pub fn set_rule(doc: &mut DocumentMut, pool: &str, spec: &RuleSpec) -> Result<Edited, EditError> {
    let vip = vip_mut(doc, pool)?;
    let before = rule_text(pool, vip);
    if let Some(d) = &spec.distribution {
        set_key(vip, "distribution", d.as_str().into());
    }
    match &spec.idle_timeout {
        Some(Some(t)) => set_key(vip, "idle_timeout", t.as_str().into()),
        Some(None) => {
            vip.remove("idle_timeout");
        }
        None => {}
    }
    if let Some(b) = spec.tcp_reset {
        set_key(vip, "tcp_reset", b.into());
    }
    if let Some(e) = &spec.icmp_echo {
        set_key(vip, "icmp_echo", e.as_str().into());
    }
    if let Some(b) = spec.floating_ip {
        set_key(vip, "floating_ip", b.into());
    }
    Ok(Edited {
        before,
        after: rule_text(pool, vip),
    })
}

/// A lookup record as the request gave it.
#[derive(Clone, Debug)]
pub struct LookupSpec {
    pub vsid: i64,
    pub ca: String,
    pub host: String,
    pub mac: String,
}

impl LookupSpec {
    fn json(&self) -> Value {
        json!({ "vsid": self.vsid, "ca": self.ca, "host": self.host, "mac": self.mac })
    }
}

fn same_ca(written: Option<&str>, ca: &str) -> bool {
    match (
        written.and_then(|w| w.parse::<IpAddr>().ok()),
        ca.parse::<IpAddr>(),
    ) {
        (Some(a), Ok(b)) => a == b,
        _ => written == Some(ca),
    }
}

fn record_of(t: &Table) -> Value {
    json!({
        "vsid": t.get("vsid").and_then(Item::as_integer),
        "ca": t.get("ca").and_then(Item::as_str),
        "host": t.get("host").and_then(Item::as_str),
        "mac": t.get("mac").and_then(Item::as_str),
    })
}

/// Where the record (vsid, ca) is: (tenant index, lookup index).
fn find_lookup(doc: &mut DocumentMut, vsid: i64, ca: &str) -> Option<(usize, usize)> {
    let tenants = tenants_mut(doc)?;
    for (ti, t) in tenants.iter_mut().enumerate() {
        if let Some(ls) = t.get_mut("lookup").and_then(Item::as_array_of_tables_mut) {
            for (li, l) in ls.iter().enumerate() {
                if l.get("vsid").and_then(Item::as_integer) == Some(vsid)
                    && same_ca(l.get("ca").and_then(Item::as_str), ca)
                {
                    return Some((ti, li));
                }
            }
        }
    }
    None
}

fn lookups_of(tenant: &mut Table) -> Result<&mut ArrayOfTables, EditError> {
    if !tenant.contains_key("lookup") {
        tenant.insert("lookup", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    tenant
        .get_mut("lookup")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| {
            invalid(
                "lookup",
                "a tenant's lookup is not [[tenant.lookup]] tables",
            )
        })
}

/// The tenant (by name) whose virtual subnet `vsid` is.
fn owner(cur: &Snapshot, vsid: i64, field: &str) -> Result<String, EditError> {
    u32::try_from(vsid)
        .ok()
        .and_then(Vsid::new)
        .and_then(|v| cur.subnet(v))
        .and_then(|s| cur.tenant(s.tenant))
        .map(|t| t.name.clone())
        .ok_or_else(|| {
            invalid(
                field,
                format!("VSID {vsid} is in no virtual subnet (add the subnet first)"),
            )
        })
}

fn lookup_table(r: &LookupSpec) -> Table {
    let mut t = Table::new();
    t.decor_mut().set_prefix("\n");
    t.insert("vsid", toml_edit::value(r.vsid));
    t.insert("ca", toml_edit::value(r.ca.as_str()));
    t.insert("host", toml_edit::value(r.host.as_str()));
    t.insert("mac", toml_edit::value(r.mac.as_str()));
    t
}

fn push_lookup(
    doc: &mut DocumentMut,
    cur: &Snapshot,
    r: &LookupSpec,
    field: &str,
) -> Result<(), EditError> {
    let tenant = owner(cur, r.vsid, &format!("{field}.vsid"))?;
    let t = tenant_mut(doc, &tenant)
        .ok_or_else(|| not_found(format!("no tenant {tenant:?} in the policy file")))?;
    lookups_of(t)?.push(lookup_table(r));
    Ok(())
}

/// Adds or updates (`set`, keyed by VSID and CA) and deletes lookup records. A record
/// whose host changes is a VM that moved: flows to it follow at once.
pub fn patch_lookups(
    doc: &mut DocumentMut,
    cur: &Snapshot,
    set: &[LookupSpec],
    delete: &[(i64, String)],
) -> Result<Edited, EditError> {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (i, (vsid, ca)) in delete.iter().enumerate() {
        let (ti, li) = find_lookup(doc, *vsid, ca).ok_or_else(|| {
            not_found(format!(
                "delete[{i}]: no lookup record for {ca} in VSID {vsid}"
            ))
        })?;
        if let Some(ls) = tenants_mut(doc)
            .and_then(|ts| ts.get_mut(ti))
            .and_then(|t| t.get_mut("lookup"))
            .and_then(Item::as_array_of_tables_mut)
        {
            if let Some(l) = ls.get(li) {
                before.push(record_of(l));
            }
            ls.remove(li);
        }
    }
    for (i, r) in set.iter().enumerate() {
        match find_lookup(doc, r.vsid, &r.ca) {
            Some((ti, li)) => {
                let l = tenants_mut(doc)
                    .and_then(|ts| ts.get_mut(ti))
                    .and_then(|t| t.get_mut("lookup"))
                    .and_then(Item::as_array_of_tables_mut)
                    .and_then(|ls| ls.get_mut(li))
                    .ok_or_else(|| not_found(format!("set[{i}]: record vanished")))?;
                before.push(record_of(l));
                l.insert("host", toml_edit::value(r.host.as_str()));
                l.insert("mac", toml_edit::value(r.mac.as_str()));
            }
            None => push_lookup(doc, cur, r, &format!("set[{i}]"))?,
        }
        after.push(r.json());
    }
    Ok(Edited {
        before: Value::Array(before),
        after: Value::Array(after),
    })
}

/// Replaces every lookup record of every tenant with `records`.
pub fn replace_lookups(
    doc: &mut DocumentMut,
    cur: &Snapshot,
    records: &[LookupSpec],
) -> Result<Edited, EditError> {
    let mut removed = 0usize;
    if let Some(ts) = tenants_mut(doc) {
        for t in ts.iter_mut() {
            if let Some(Item::ArrayOfTables(ls)) = t.remove("lookup") {
                removed += ls.len();
            }
        }
    }
    for (i, r) in records.iter().enumerate() {
        push_lookup(doc, cur, r, &format!("records[{i}]"))?;
    }
    Ok(Edited {
        before: json!({ "records": removed }),
        after: json!({ "records": records.len() }),
    })
}

/// A virtual subnet as the request gave it; `None` keeps what the file has.
#[derive(Clone, Debug, Default)]
pub struct SubnetSpec {
    pub tenant: Option<String>,
    pub routing_domain: Option<String>,
    pub prefixes: Option<Vec<String>>,
    pub lb_mac: Option<String>,
    /// (ca, "FIRST-LAST")
    pub snat: Option<Vec<(String, String)>>,
}

/// Where subnet `vsid` is: (tenant, routing domain, subnet) indices.
fn find_subnet(doc: &mut DocumentMut, vsid: i64) -> Option<(usize, usize, usize)> {
    let tenants = tenants_mut(doc)?;
    for (ti, t) in tenants.iter_mut().enumerate() {
        let Some(rds) = t
            .get_mut("routing_domain")
            .and_then(Item::as_array_of_tables_mut)
        else {
            continue;
        };
        for (ri, rd) in rds.iter_mut().enumerate() {
            let Some(ss) = rd.get_mut("subnet").and_then(Item::as_array_of_tables_mut) else {
                continue;
            };
            if let Some(si) = ss
                .iter()
                .position(|s| s.get("vsid").and_then(Item::as_integer) == Some(vsid))
            {
                return Some((ti, ri, si));
            }
        }
    }
    None
}

fn subnet_at(doc: &mut DocumentMut, (ti, ri, si): (usize, usize, usize)) -> Option<&mut Table> {
    tenants_mut(doc)?
        .get_mut(ti)?
        .get_mut("routing_domain")?
        .as_array_of_tables_mut()?
        .get_mut(ri)?
        .get_mut("subnet")?
        .as_array_of_tables_mut()?
        .get_mut(si)
}

fn subnet_json(t: &Table) -> Value {
    let text = |k: &str| t.get(k).map(|v| v.to_string().trim().to_string());
    json!({
        "vsid": t.get("vsid").and_then(Item::as_integer),
        "prefixes": text("prefixes"),
        "lb_mac": t.get("lb_mac").and_then(Item::as_str),
        "snat": text("snat"),
    })
}

fn fill_subnet(t: &mut Table, spec: &SubnetSpec) {
    if let Some(ps) = &spec.prefixes {
        let a: Array = ps.iter().map(String::as_str).collect();
        t.insert("prefixes", toml_edit::value(a));
    }
    if let Some(m) = &spec.lb_mac {
        t.insert("lb_mac", toml_edit::value(m.as_str()));
    }
    match &spec.snat {
        Some(s) if s.is_empty() => {
            t.remove("snat");
        }
        Some(s) => {
            let mut a = Array::new();
            for (ca, ports) in s {
                let mut it = InlineTable::new();
                it.insert("ca", ca.as_str().into());
                it.insert("ports", ports.as_str().into());
                a.push(it);
            }
            t.insert("snat", toml_edit::value(a));
        }
        None => {}
    }
}

/// Creates or changes virtual subnet `vsid`. A new one needs its tenant and routing
/// domain (created if the tenant has none of that name); an existing one stays where it
/// is (moving it between routing domains is a delete and an add).
pub fn put_subnet(
    doc: &mut DocumentMut,
    vsid: i64,
    spec: &SubnetSpec,
) -> Result<Edited, EditError> {
    if let Some(at) = find_subnet(doc, vsid) {
        let (tenant, rd) = {
            let ts = tenants_mut(doc).and_then(|ts| ts.get_mut(at.0));
            let tname = ts
                .as_ref()
                .and_then(|t| t.get("name"))
                .and_then(Item::as_str)
                .map(str::to_string);
            let rname = ts
                .and_then(|t| t.get("routing_domain"))
                .and_then(Item::as_array_of_tables)
                .and_then(|r| r.get(at.1))
                .and_then(|r| r.get("name"))
                .and_then(Item::as_str)
                .map(str::to_string);
            (tname, rname)
        };
        if spec.tenant.is_some() && spec.tenant != tenant {
            return Err(invalid(
                "tenant",
                format!("VSID {vsid} belongs to tenant {tenant:?}: delete it there first"),
            ));
        }
        if spec.routing_domain.is_some() && spec.routing_domain != rd {
            return Err(invalid(
                "routing_domain",
                format!("VSID {vsid} is in routing domain {rd:?}: delete it there first"),
            ));
        }
        let t = subnet_at(doc, at).ok_or_else(|| not_found(format!("subnet {vsid}")))?;
        let before = subnet_json(t);
        fill_subnet(t, spec);
        return Ok(Edited {
            before,
            after: subnet_json(t),
        });
    }
    let tenant = spec
        .tenant
        .as_deref()
        .ok_or_else(|| invalid("tenant", "required for a new subnet"))?;
    let rd_name = spec
        .routing_domain
        .as_deref()
        .ok_or_else(|| invalid("routing_domain", "required for a new subnet"))?;
    if spec.prefixes.is_none() || spec.lb_mac.is_none() {
        return Err(invalid(
            "prefixes",
            "a new subnet needs prefixes and lb_mac",
        ));
    }
    let t = tenant_mut(doc, tenant)
        .ok_or_else(|| invalid("tenant", format!("no tenant named {tenant:?}")))?;
    if !t.contains_key("routing_domain") {
        t.insert("routing_domain", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let rds = t
        .get_mut("routing_domain")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| invalid("routing_domain", "not [[tenant.routing_domain]] tables"))?;
    if !rds
        .iter()
        .any(|r| r.get("name").and_then(Item::as_str) == Some(rd_name))
    {
        let mut r = Table::new();
        r.decor_mut().set_prefix("\n");
        r.insert("name", toml_edit::value(rd_name));
        rds.push(r);
    }
    let rd = rds
        .iter_mut()
        .find(|r| r.get("name").and_then(Item::as_str) == Some(rd_name))
        .ok_or_else(|| not_found(format!("routing domain {rd_name:?}")))?;
    if !rd.contains_key("subnet") {
        rd.insert("subnet", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let subnets = rd
        .get_mut("subnet")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| invalid("subnet", "not [[tenant.routing_domain.subnet]] tables"))?;
    let mut s = Table::new();
    s.decor_mut().set_prefix("\n");
    s.insert("vsid", toml_edit::value(vsid));
    fill_subnet(&mut s, spec);
    let after = subnet_json(&s);
    subnets.push(s);
    Ok(Edited {
        before: Value::Null,
        after,
    })
}

pub fn delete_subnet(doc: &mut DocumentMut, vsid: i64) -> Result<Edited, EditError> {
    let at = find_subnet(doc, vsid).ok_or_else(|| not_found(format!("no subnet {vsid}")))?;
    let before = subnet_at(doc, at).map(|t| subnet_json(t));
    if let Some(ss) = tenants_mut(doc)
        .and_then(|ts| ts.get_mut(at.0))
        .and_then(|t| t.get_mut("routing_domain"))
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|r| r.get_mut(at.1))
        .and_then(|r| r.get_mut("subnet"))
        .and_then(Item::as_array_of_tables_mut)
    {
        ss.remove(at.2);
    }
    Ok(Edited {
        before: before.unwrap_or(Value::Null),
        after: Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    fn doc() -> (DocumentMut, Snapshot) {
        (
            EXAMPLE.parse().unwrap(),
            Snapshot::from_toml(EXAMPLE, "example.toml").unwrap(),
        )
    }

    fn check(doc: &DocumentMut) -> Snapshot {
        Snapshot::from_toml(&doc.to_string(), "edited.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_added_dip_lands_in_its_pool_in_the_file_layout() {
        let (mut d, _) = doc();
        let spec = DipSpec {
            ca: "10.0.0.5".into(),
            port: Some(8081),
            weight: Some(3),
            ..DipSpec::default()
        };
        add_dip(&mut d, "blue-web", &spec).unwrap();
        let text = d.to_string();
        assert!(
            text.contains(
                "  { ca = \"10.0.0.8\", port = 80, weight = 2 },\n  { ca = \"10.0.0.5\", port = 8081, weight = 3 },\n]"
            ),
            "{text}"
        );
        let s = check(&d);
        let web = s.pool_named("blue-web").unwrap().1;
        assert_eq!(web.dips.len(), 5);
        assert_eq!((web.dips[4].port, web.dips[4].weight), (8081, 3));
        // Nothing else moved: the text differs by one line.
        let added: Vec<_> = text.lines().filter(|l| !EXAMPLE.contains(l)).collect();
        assert_eq!(added.len(), 1, "{added:?}");
    }

    #[test]
    fn weight_drain_and_removal_touch_one_entry() {
        let (mut d, cur) = doc();
        let (i, _) = find_dip(
            &cur,
            "blue-web",
            "10.0.0.7".parse().unwrap(),
            Some(80),
            None,
        )
        .unwrap();
        assert_eq!(i, 2);
        let e = set_dip(&mut d, "blue-web", i, Some(5), Some(true)).unwrap();
        assert_eq!(
            e.after["dip"],
            "{ ca = \"10.0.0.7\", port = 80, weight = 5, drain = true }"
        );
        let s = check(&d);
        let dip = s.pool_named("blue-web").unwrap().1.dips[2];
        assert_eq!(dip.weight, 5);
        assert_eq!(dip.state, crate::policy::DipState::Draining);
        set_dip(&mut d, "blue-web", i, None, Some(false)).unwrap();
        assert!(!d.to_string().contains("drain = true"));
        remove_dip(&mut d, "blue-web", i).unwrap();
        let s = check(&d);
        assert!(
            s.pool_named("blue-web")
                .unwrap()
                .1
                .dips
                .iter()
                .all(|d| d.ca.to_string() != "10.0.0.7")
        );
    }

    #[test]
    fn an_ambiguous_or_missing_dip_is_named() {
        let (_, cur) = doc();
        let ca: IpAddr = "10.0.0.9".parse().unwrap();
        let e = find_dip(&cur, "blue-web", ca, None, None).unwrap_err();
        assert!(matches!(e, EditError::NotFound(_)), "{e}");
        assert!(matches!(
            find_dip(&cur, "nope", ca, None, None).unwrap_err(),
            EditError::NotFound(_)
        ));
    }

    #[test]
    fn a_moved_lookup_record_moves_the_dip_to_the_new_host() {
        let (mut d, cur) = doc();
        let r = LookupSpec {
            vsid: 5001,
            ca: "10.0.0.6".into(),
            host: "host4".into(),
            mac: "00:1d:d8:b7:1c:02".into(),
        };
        let e = patch_lookups(&mut d, &cur, &[r], &[]).unwrap();
        assert_eq!(e.before[0]["host"], "host2");
        let s = check(&d);
        let web = s.pool_named("blue-web").unwrap().1;
        let dip = web
            .dips
            .iter()
            .find(|d| d.ca.to_string() == "10.0.0.6")
            .unwrap();
        assert_eq!(s.host(dip.host).name, "host4");
    }

    #[test]
    fn new_lookup_records_go_to_the_tenant_of_their_vsid() {
        let (mut d, cur) = doc();
        let r = LookupSpec {
            vsid: 6002,
            ca: "10.0.1.22".into(),
            host: "host1".into(),
            mac: "00:1d:d8:e0:2c:22".into(),
        };
        patch_lookups(&mut d, &cur, std::slice::from_ref(&r), &[]).unwrap();
        let s = check(&d);
        let v = Vsid::new(6002).unwrap();
        let rec = s.lookup(v, "10.0.1.22".parse().unwrap()).unwrap();
        assert_eq!(s.host(rec.host).name, "host1");
        // The new record sits with red's other records, before red's VIPs.
        let text = d.to_string();
        let at = text.find("ca = \"10.0.1.22\"\nhost = \"host1\"").unwrap();
        assert!(at < text.find("name = \"red-web\"").unwrap(), "{text}");
        let unknown = LookupSpec { vsid: 7777, ..r };
        let e = patch_lookups(&mut d, &cur, &[unknown], &[]).unwrap_err();
        assert!(e.to_string().contains("set[0].vsid"), "{e}");
    }

    #[test]
    fn deleting_a_record_a_dip_needs_is_refused_by_validation() {
        let (mut d, cur) = doc();
        patch_lookups(&mut d, &cur, &[], &[(5001, "10.0.0.5".into())]).unwrap();
        let e = Snapshot::from_toml(&d.to_string(), "x.toml").unwrap_err();
        assert!(e.to_string().contains("10.0.0.5"), "{e}");
    }

    #[test]
    fn replace_puts_every_record_back() {
        let (mut d, cur) = doc();
        let all: Vec<LookupSpec> = cur
            .lookups()
            .iter()
            .map(|l| LookupSpec {
                vsid: i64::from(l.vsid.get()),
                ca: l.ca.to_string(),
                host: cur.host(l.host).name.clone(),
                mac: l.mac.to_string(),
            })
            .collect();
        replace_lookups(&mut d, &cur, &all).unwrap();
        let s = check(&d);
        assert_eq!(s.lookups(), cur.lookups());
    }

    #[test]
    fn subnets_are_created_changed_and_deleted() {
        let (mut d, _) = doc();
        let spec = SubnetSpec {
            tenant: Some("blue".into()),
            routing_domain: Some("blue-rd2".into()),
            prefixes: Some(vec!["10.9.0.0/24".into()]),
            lb_mac: Some("02:00:00:b9:00:fe".into()),
            snat: Some(vec![("10.9.0.250".into(), "20000-29999".into())]),
        };
        put_subnet(&mut d, 5009, &spec).unwrap();
        let s = check(&d);
        let sub = s.subnet(Vsid::new(5009).unwrap()).unwrap();
        assert_eq!(sub.snat.len(), 1);
        assert_eq!(s.routing_domains().len(), 3);
        let change = SubnetSpec {
            lb_mac: Some("02:00:00:b9:00:fd".into()),
            ..SubnetSpec::default()
        };
        put_subnet(&mut d, 5009, &change).unwrap();
        let s = check(&d);
        let sub = s.subnet(Vsid::new(5009).unwrap()).unwrap();
        assert_eq!(sub.lb_mac.to_string(), "02:00:00:b9:00:fd");
        let wrong = SubnetSpec {
            tenant: Some("red".into()),
            ..SubnetSpec::default()
        };
        assert!(put_subnet(&mut d, 5009, &wrong).is_err());
        delete_subnet(&mut d, 5009).unwrap();
        assert!(check(&d).subnet(Vsid::new(5009).unwrap()).is_none());
    }
}
