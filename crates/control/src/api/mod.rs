//! The management API: reads of the running policy, DIP changes for tenants, lookup
//! records and virtual subnets for the orchestrator, reloads; JSON over HTTP/1.1 with
//! bearer tokens (see docs/api.md for every call).
//!
//! [`Api::handle`] is a plain function from a request to a response, so that every
//! rule (authentication, scope, validation, persistence) is tested without a socket;
//! `server` puts it on a TCP listener on its own thread. Each concern has its module:
//! `auth` (tokens), `target` and `routes` (which call), `fields` and `bodies` (what
//! the request says), `reads` and `changes` (one function per call), `outcome` (how a
//! change's result is answered), `replies` (the bodies, shared with `nvlb ctl`). It must never let a tenant's
//! token see or change another tenant's pools, never change policy except through
//! [`Persist`] (validated, written, journaled), and never make the data plane wait.

pub mod auth;
mod bodies;
mod changes;
pub mod client;
pub mod edit;
mod fields;
mod outcome;
mod pick;
mod reads;
pub mod replies;
mod routes;
pub mod server;
mod target;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use self::auth::{Caller, Scope, Tokens};
use self::routes::{Call, Found, Params, Who};
use self::target::Target;
use super::persist::{Actor, Persist};
use crate::policy::ConfigError;

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

/// Every call of the API as (method, path pattern), in the route table's order: a
/// pattern's `{name}` stands for one path segment, `{name*}` for the rest of the path.
/// For tools that walk the API (the fuzz harness) without a route list of their own.
/// `GET /healthz` is not among them (it is no call of the versioned API).
pub fn calls() -> impl Iterator<Item = (&'static str, &'static str)> {
    routes::ROUTES.iter().map(|r| (r.method, r.path))
}

/// An answer: HTTP status and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Value,
}

/// What a call answers: the response, or the refusal that stops it.
type Answer = Result<Response, Response>;

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

/// The API over one policy: tokens, persistence, and the flow-count hook.
pub struct Api {
    persist: Persist,
    tokens: Tokens,
    flows: Option<Arc<dyn FlowStats>>,
    /// Where answered requests are counted by status code (`/metrics`).
    requests: Option<Arc<crate::metrics::ControlStats>>,
}

/// One authenticated request, matched to its route: all that a call reads.
struct Request<'r> {
    caller: &'r Caller,
    method: &'r str,
    path: &'r str,
    query: &'r str,
    params: Params<'r>,
    body: &'r [u8],
    now: Instant,
}

impl Request<'_> {
    fn scope(&self) -> &Scope {
        &self.caller.scope
    }

    /// Who the journal names as making a change.
    fn actor(&self) -> Actor {
        Actor {
            token: self.caller.name.clone(),
            scope: self.caller.scope.name().to_string(),
        }
    }

    /// The journal's name of the call: `METHOD PATH`.
    fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
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
        let caller = match self.tokens.caller(authorization) {
            Ok(c) => c,
            Err(why) => return Response::error(401, why),
        };
        match self.route(caller, method, target, body, now) {
            Ok(r) | Err(r) => r,
        }
    }

    /// Finds the call `method` `target` names and makes it: 400 for a target that
    /// does not decode, 404 for no such path, 405 for a wrong method on a known one,
    /// 403 for a tenant's token on an operator's call, then the call's own answer.
    fn route(
        &self,
        caller: &Caller,
        method: &str,
        target: &str,
        body: &[u8],
        now: Instant,
    ) -> Answer {
        let target = Target::parse(target)?;
        let path = target.path;
        let segs: Vec<&str> = target.segments.iter().map(String::as_str).collect();
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
        if let (Who::Operator, Scope::Tenant(t)) = (route.who, &caller.scope) {
            return Err(Response::error(
                403,
                format!("this call needs an operator token; this one is tenant {t:?}'s"),
            ));
        }
        let r = Request {
            caller,
            method,
            path,
            query: target.query,
            params,
            body,
            now,
        };
        match route.call {
            Call::Whoami => self.whoami(&r),
            Call::Tenants => self.tenants(&r),
            Call::Vips => self.vips(&r),
            Call::Pools => self.pools(&r),
            Call::Pool => self.pool(&r),
            Call::SetRule => self.set_rule(&r),
            Call::Outbound => self.outbound(&r),
            Call::Health => self.health(&r),
            Call::Flows => self.flows(&r),
            Call::AddDip => self.add_dip(&r),
            Call::Pick => self.pick(&r),
            Call::ChangeDip | Call::RemoveDip => self.change_dip(&r),
            Call::Lookups => self.lookups(&r),
            Call::ReplaceLookups => self.replace_lookups(&r),
            Call::PatchLookups => self.patch_lookups(&r),
            Call::Subnets => self.subnets(&r),
            Call::PutSubnet => self.put_subnet(&r),
            Call::DeleteSubnet => self.delete_subnet(&r),
            Call::Reload => self.reload(&r),
        }
    }

    /// The workers' flow counts, when `nvlb run` wired them in.
    fn flow_counts(&self) -> Option<FlowCounts> {
        self.flows.as_ref().and_then(|f| f.flows())
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

#[cfg(test)]
mod tests;
