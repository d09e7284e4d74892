//! The management API: reads of the running policy, DIP changes for tenants, lookup
//! records and virtual subnets for the orchestrator, reloads; JSON over HTTP/1.1 with
//! bearer tokens (see docs/api.md for every call).
//!
//! [`Api::handle`] is a plain function from a request to a response, so that every
//! rule (authentication, scope, validation, persistence) is tested without a socket;
//! `server` puts it on a TCP listener on its own thread. It must never let a tenant's
//! token see or change another tenant's pools, never change policy except through
//! [`Persist`] (validated, written, journaled), and never make the data plane wait.

pub mod auth;
pub mod client;
pub mod edit;
mod pick;
pub mod replies;
mod routes;
pub mod server;
mod views;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};

use self::auth::{Caller, Scope, Tokens};
use self::edit::{DipSpec, LookupSpec, RuleSpec, SubnetSpec};
use self::routes::{Call, Found, Who};
use super::ChangeError;
use super::persist::{Actor, Done, EditError, Persist, PersistError};
use crate::policy::{ConfigError, Vsid};

/// Largest request body accepted (a full lookup-record replacement fits many times).
pub const MAX_BODY: usize = 1 << 20;

/// Where `nvlb run` listens unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9180";

/// Active flows as the workers count them, summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    pub total: u64,
    pub per_pool: HashMap<String, u64>,
    pub per_tenant: HashMap<String, u64>,
}

/// The hook through which the API learns flow counts: `nvlb run` wires the workers'
/// published counters in. Without it the API reports flows as unknown (`null`).
pub trait FlowStats: Send + Sync {
    fn flows(&self) -> Option<FlowCounts>;
}

/// An answer: HTTP status and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    fn ok(body: Value) -> Response {
        Response { status: 200, body }
    }

    fn error(status: u16, message: impl Into<String>) -> Response {
        Response {
            status,
            body: replies::to_body(&replies::Refusal {
                error: message.into(),
                errors: None,
            }),
        }
    }

    fn config(status: u16, message: &str, e: &ConfigError) -> Response {
        let errors = e
            .errors
            .iter()
            .map(|d| replies::Finding {
                file: d.file.clone(),
                line: d.line,
                column: d.column,
                field: d.field.clone(),
                message: d.message.clone(),
            })
            .collect();
        Response {
            status,
            body: replies::to_body(&replies::Refusal {
                error: message.into(),
                errors: Some(errors),
            }),
        }
    }
}

/// A request that is wrong in itself (not in what it would do to the policy): 400.
struct Bad(String);

type Answer = Result<Response, Response>;

impl From<Bad> for Response {
    fn from(b: Bad) -> Response {
        Response::error(400, b.0)
    }
}

/// The fields of one JSON object, each read with a message naming it when it is not
/// what the call needs.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn of(v: &'a Value, prefix: &str, allowed: &[&str]) -> Result<Fields<'a>, Bad> {
        let what = if prefix.is_empty() {
            "the body".to_string()
        } else {
            prefix.trim_end_matches('.').to_string()
        };
        let map = v
            .as_object()
            .ok_or_else(|| Bad(format!("{what}: expected a JSON object")))?;
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Bad(format!(
                "{prefix}{k}: unknown field (expected one of: {})",
                allowed.join(", ")
            )));
        }
        Ok(Fields {
            map,
            prefix: prefix.to_string(),
        })
    }

    fn bad(&self, k: &str, what: &str) -> Bad {
        Bad(format!("{}{k}: expected {what}", self.prefix))
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> Result<Option<String>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(k, "a string")),
        }
    }

    fn need_str(&self, k: &str) -> Result<String, Bad> {
        self.str(k)?
            .ok_or_else(|| Bad(format!("{}{k}: missing", self.prefix)))
    }

    fn int(&self, k: &str) -> Result<Option<i64>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(k, "an integer")),
        }
    }

    fn need_int(&self, k: &str) -> Result<i64, Bad> {
        self.int(k)?
            .ok_or_else(|| Bad(format!("{}{k}: missing", self.prefix)))
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(k, "true or false")),
        }
    }

    fn list(&self, k: &str) -> Result<Option<&'a Vec<Value>>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.bad(k, "a list")),
        }
    }

    fn strings(&self, k: &str) -> Result<Option<Vec<String>>, Bad> {
        let Some(list) = self.list(k)? else {
            return Ok(None);
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Bad(format!("{}{k}[{i}]: expected a string", self.prefix)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| Bad(format!("malformed JSON: {e}")))
}

/// Percent-decoding of one path segment (IPv6 CAs may come with `:` encoded).
fn decode(seg: &str) -> Result<String, Bad> {
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = seg
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Bad(format!("bad percent-encoding in {seg:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Bad(format!("{seg:?} is not UTF-8")))
}

fn query_param(query: &str, name: &str) -> Result<Option<String>, Bad> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return decode(v).map(Some);
        }
    }
    Ok(None)
}

/// The API over one policy: tokens, persistence, and the flow-count hook.
pub struct Api {
    persist: Persist,
    tokens: Tokens,
    flows: Option<Arc<dyn FlowStats>>,
    /// Where answered requests are counted by status code (`/metrics`).
    requests: Option<Arc<crate::metrics::ControlStats>>,
}

fn edit_status(e: &EditError) -> u16 {
    match e {
        EditError::NotFound(_) => 404,
        EditError::Conflict(_) => 409,
        EditError::Invalid { .. } => 400,
    }
}

fn refused(e: PersistError) -> Response {
    match &e {
        PersistError::Edit(x) => Response::error(edit_status(x), x.to_string()),
        PersistError::Invalid(c) => Response::config(
            422,
            "refused: the changed policy does not validate; nothing was changed",
            c,
        ),
        PersistError::Disk(c) => Response::config(
            409,
            "refused: the policy file on disk does not validate (edited by hand?); fix it first",
            c,
        ),
        PersistError::Install(_) | PersistError::Io { .. } => Response::error(500, e.to_string()),
    }
}

fn applied_reply(a: &crate::Applied) -> replies::Applied {
    replies::Applied {
        generation: a.generation,
        added: a.added,
        removed: a.removed,
        draining: a.draining,
    }
}

fn applied(done: Done, status: u16) -> Response {
    Response {
        status,
        body: replies::to_body(&replies::Changed {
            applied: applied_reply(&done.applied),
            before: done.edited.before,
            after: done.edited.after,
        }),
    }
}

impl Api {
    pub fn new(persist: Persist, tokens: Tokens, flows: Option<Arc<dyn FlowStats>>) -> Api {
        Api {
            persist,
            tokens,
            flows,
            requests: None,
        }
    }

    /// Counts every answer by status code in `stats`.
    pub fn with_request_stats(mut self, stats: Arc<crate::metrics::ControlStats>) -> Api {
        self.requests = Some(stats);
        self
    }

    /// Counts one answered request (the HTTP server calls this for every answer,
    /// also those it makes itself, such as 413).
    pub fn record(&self, status: u16) {
        if let Some(r) = &self.requests {
            r.api_request(status);
        }
    }

    pub fn persist(&self) -> &Persist {
        &self.persist
    }

    /// Answers one request. `target` is the path with its query; `authorization` the
    /// header's value.
    pub fn handle(
        &self,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> Response {
        // Liveness for container runtimes and load-balancer pools: no token, no
        // tenant data, just that the process answers and which policy it runs.
        if method == "GET" && target == "/healthz" {
            let c = self.persist.control();
            return Response::ok(replies::to_body(&replies::Healthz {
                status: "ok".into(),
                generation: c.generation(),
            }));
        }
        let caller = match authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .and_then(|t| self.tokens.check(t))
        {
            Some(c) => c.clone(),
            None if authorization.is_none() => {
                return Response::error(401, "missing bearer token (Authorization: Bearer ...)");
            }
            None => return Response::error(401, "unknown bearer token"),
        };
        match self.route(&caller, method, target, body, now) {
            Ok(r) | Err(r) => r,
        }
    }

    fn route(
        &self,
        caller: &Caller,
        method: &str,
        target: &str,
        body: &[u8],
        now: Instant,
    ) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect::<Result<_, _>>()?;
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let actor = Actor {
            token: caller.name.clone(),
            scope: caller.scope.name().to_string(),
        };
        let call = format!("{method} {path}");
        let scope = &caller.scope;
        let (route, params) = match routes::find(method, &segs) {
            Found::Call(r, p) => (r, p),
            Found::WrongMethod => {
                return Err(Response::error(
                    405,
                    format!("{method} is not a call on {path}"),
                ));
            }
            Found::Unknown => return Err(Response::error(404, format!("no such call: {path}"))),
        };
        if let (Who::Operator, Scope::Tenant(t)) = (route.who, scope) {
            return Err(Response::error(
                403,
                format!("this call needs an operator token; this one is tenant {t:?}'s"),
            ));
        }
        let flows = self.flows.as_ref().and_then(|f| f.flows());
        let c = self.persist.control();
        match route.call {
            Call::Whoami => Ok(Response::ok(replies::to_body(&replies::Whoami {
                token: caller.name.clone(),
                scope: scope.name().to_string(),
            }))),
            Call::Tenants => Ok(Response::ok(replies::to_body(&views::tenants(
                &c.policy(),
                scope,
                flows.as_ref(),
            )))),
            Call::Vips => {
                let s = c.policy();
                let vips: Vec<_> = views::visible(&s, scope)
                    .into_iter()
                    .map(|p| views::vip(&s, p, flows.as_ref()))
                    .collect();
                Ok(Response::ok(replies::to_body(&vips)))
            }
            Call::Pools => {
                let s = c.policy();
                let pools: Vec<_> = views::visible(&s, scope)
                    .into_iter()
                    .map(|p| views::pool(&s, c, p, flows.as_ref()))
                    .collect();
                Ok(Response::ok(replies::to_body(&pools)))
            }
            Call::Pool => {
                let pool = params.get("pool");
                let s = c.policy();
                let p = self.pool_for(&s, scope, pool)?;
                Ok(Response::ok(replies::to_body(&views::pool(
                    &s,
                    c,
                    p,
                    flows.as_ref(),
                ))))
            }
            Call::SetRule => {
                let pool = params.get("pool");
                let s = c.policy();
                let p = self.pool_for(&s, scope, pool)?;
                if let Some(nat) = &p.rule.nat {
                    return Err(Response::error(
                        409,
                        format!(
                            "pool {pool:?} is a port of inbound NAT rule {:?}: its settings are \
                             edited in the policy file ([[tenant.inbound_nat]]), then reloaded",
                            nat.rule
                        ),
                    ));
                }
                let v = parse_body(body)?;
                let spec = rule_spec(&v)?;
                let pool = pool.to_string();
                self.persist
                    .change(&actor, &call, now, |doc, _| {
                        edit::set_rule(doc, &pool, &spec)
                    })
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::Outbound => Ok(Response::ok(replies::to_body(&views::outbound(
                &c.policy(),
                scope,
            )))),
            Call::Health => Ok(Response::ok(replies::to_body(&views::health(
                &c.policy(),
                c,
                scope,
            )))),
            Call::Flows => Ok(Response::ok(replies::to_body(&match &flows {
                None => replies::Flows::Unavailable,
                Some(f) => {
                    let s = c.policy();
                    let pools = views::visible(&s, scope)
                        .into_iter()
                        .map(|p| {
                            let n = f.per_pool.get(&p.name).copied().unwrap_or(0);
                            (p.name.clone(), n)
                        })
                        .collect();
                    let tenants = f
                        .per_tenant
                        .iter()
                        .filter(|(t, _)| scope.covers(t))
                        .map(|(t, n)| (t.clone(), *n))
                        .collect();
                    let total = match scope {
                        Scope::Operator => f.total,
                        Scope::Tenant(t) => f.per_tenant.get(t).copied().unwrap_or(0),
                    };
                    replies::Flows::Counted(replies::FlowCounts {
                        total,
                        tenants,
                        pools,
                    })
                }
            }))),
            Call::AddDip => {
                let pool = params.get("pool");
                self.pool_for(&c.policy(), scope, pool)?;
                let v = parse_body(body)?;
                let f = Fields::of(&v, "", &["ca", "port", "vsid", "weight", "drain"])?;
                let spec = DipSpec {
                    ca: f.need_str("ca")?,
                    port: f.int("port")?,
                    vsid: f.int("vsid")?,
                    weight: f.int("weight")?,
                    drain: f.bool("drain")?,
                };
                let pool = pool.to_string();
                self.persist
                    .change(&actor, &call, now, |doc, _| {
                        edit::add_dip(doc, &pool, &spec)
                    })
                    .map(|d| applied(d, 201))
                    .map_err(refused)
            }
            Call::Pick => {
                let pool = params.get("pool");
                let s = c.policy();
                let p = self.pool_for(&s, scope, pool)?;
                let v = parse_body(body)?;
                Ok(Response::ok(replies::to_body(&pick::pick(
                    p,
                    c.generation(),
                    &v,
                )?)))
            }
            Call::ChangeDip | Call::RemoveDip => {
                let m = method;
                let (pool, ca, rest) = (params.get("pool"), params.get("ca"), params.rest());
                self.pool_for(&c.policy(), scope, pool)?;
                let ca: IpAddr = ca
                    .parse()
                    .map_err(|_| Bad(format!("{ca:?} is not an IP address (the DIP's CA)")))?;
                let port = match rest {
                    [] => None,
                    [p] => Some(
                        p.parse::<u16>()
                            .map_err(|_| Bad(format!("{p:?} is not a port")))?,
                    ),
                    _ => return Err(Response::error(404, format!("no such call: {path}"))),
                };
                let vsid = match query_param(query, "vsid")? {
                    None => None,
                    Some(v) => Some(
                        v.parse::<u32>()
                            .ok()
                            .and_then(Vsid::new)
                            .ok_or_else(|| Bad(format!("vsid: {v:?} is not a VSID")))?,
                    ),
                };
                let (weight, drain) = if m == "PATCH" {
                    let v = parse_body(body)?;
                    let f = Fields::of(&v, "", &["weight", "drain"])?;
                    let (w, d) = (f.int("weight")?, f.bool("drain")?);
                    if w.is_none() && d.is_none() {
                        return Err(
                            Bad("nothing to change: give weight and/or drain".into()).into()
                        );
                    }
                    (w, d)
                } else {
                    (None, None)
                };
                let pool = pool.to_string();
                self.persist
                    .change(&actor, &call, now, |doc, cur| {
                        let (i, _) = edit::find_dip(cur, &pool, ca, port, vsid)?;
                        if m == "PATCH" {
                            edit::set_dip(doc, &pool, i, weight, drain)
                        } else {
                            edit::remove_dip(doc, &pool, i)
                        }
                    })
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::Lookups => Ok(Response::ok(replies::to_body(&views::lookups(
                &c.declared(),
            )))),
            Call::ReplaceLookups => {
                let v = parse_body(body)?;
                let f = Fields::of(&v, "", &["records"])?;
                let list = f
                    .list("records")?
                    .ok_or_else(|| Bad("records: missing".into()))?;
                let records = lookup_specs(list, "records")?;
                self.persist
                    .change(&actor, &call, now, |doc, cur| {
                        edit::replace_lookups(doc, cur, &records)
                    })
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::PatchLookups => {
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
                    return Err(Bad("nothing to change: give set and/or delete".into()).into());
                }
                self.persist
                    .change(&actor, &call, now, |doc, cur| {
                        edit::patch_lookups(doc, cur, &set, &delete)
                    })
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::Subnets => Ok(Response::ok(replies::to_body(&views::subnets(
                &c.declared(),
            )))),
            Call::PutSubnet => {
                let vsid = params.get("vsid");
                let vsid: i64 = vsid
                    .parse()
                    .map_err(|_| Bad(format!("{vsid:?} is not a VSID")))?;
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
                let spec = SubnetSpec {
                    tenant: f.str("tenant")?,
                    routing_domain: f.str("routing_domain")?,
                    prefixes: f.strings("prefixes")?,
                    lb_mac: f.str("lb_mac")?,
                    snat,
                };
                self.persist
                    .change(&actor, &call, now, |doc, _| {
                        edit::put_subnet(doc, vsid, &spec)
                    })
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::DeleteSubnet => {
                let vsid = params.get("vsid");
                let vsid: i64 = vsid
                    .parse()
                    .map_err(|_| Bad(format!("{vsid:?} is not a VSID")))?;
                self.persist
                    .change(&actor, &call, now, |doc, _| edit::delete_subnet(doc, vsid))
                    .map(|d| applied(d, 200))
                    .map_err(refused)
            }
            Call::Reload => match self.persist.reload(&actor, now) {
                Ok(a) => Ok(Response::ok(replies::to_body(&applied_reply(&a)))),
                Err(ChangeError::Config(e)) => Err(Response::config(
                    422,
                    "reload refused, the running policy stays",
                    &e,
                )),
                Err(e) => Err(Response::error(
                    500,
                    format!("reload refused, the running policy stays: {e}"),
                )),
            },
        }
    }

    /// Pool `name` if `scope` may touch it: 404 when there is none, 403 when it is
    /// another tenant's.
    fn pool_for<'s>(
        &self,
        s: &'s crate::policy::Snapshot,
        scope: &Scope,
        name: &str,
    ) -> Result<&'s crate::policy::VipPool, Response> {
        let (_, p) = s
            .pool_named(name)
            .ok_or_else(|| Response::error(404, format!("no pool named {name:?}")))?;
        let tenant = s.tenant(p.tenant).map(|t| t.name.as_str()).unwrap_or("");
        if scope.covers(tenant) {
            Ok(p)
        } else {
            Err(Response::error(
                403,
                format!("pool {name:?} is not tenant {:?}'s", scope.name()),
            ))
        }
    }
}

/// The body of `PATCH /v1/pools/{pool}`: the rule settings to change.
fn rule_spec(v: &Value) -> Result<RuleSpec, Bad> {
    let f = Fields::of(
        v,
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

#[cfg(test)]
mod tests;
