//! The API's one route table: every call's method, path and who may make it.
//!
//! Dispatch and the 404-vs-405 answer both come from [`ROUTES`], so a call cannot be
//! served without also being known, nor known without being served (a second list
//! once left `pools/{pool}/pick` out, and a wrong method there answered 404).
//! `GET /healthz` is not here: it is the liveness probe outside the versioned API,
//! answered before any token is read (`Api::handle`).

/// What a route does; `Api::call` has one handler per variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Whoami,
    Tenants,
    Vips,
    Pools,
    Pool,
    SetRule,
    Outbound,
    Health,
    Flows,
    AddDip,
    Pick,
    ChangeDip,
    RemoveDip,
    Lookups,
    ReplaceLookups,
    PatchLookups,
    Subnets,
    PutSubnet,
    DeleteSubnet,
    Reload,
}

/// Which tokens a call takes (every call but `/healthz` needs one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Who {
    /// Any token; the call cuts what it reads or changes to the token's scope.
    Scoped,
    /// Operator tokens only; a tenant's is refused with 403 before the body is read.
    Operator,
}

/// One call: `path` is split on `/`; `{name}` takes one segment, `{name*}` the rest
/// of the path (zero or more segments).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub who: Who,
    pub call: Call,
}

const fn route(method: &'static str, path: &'static str, who: Who, call: Call) -> Route {
    Route {
        method,
        path,
        who,
        call,
    }
}

/// Every call of the API, in the order docs/api.md lists them.
pub(super) const ROUTES: &[Route] = &[
    route("GET", "/v1/whoami", Who::Scoped, Call::Whoami),
    route("GET", "/v1/tenants", Who::Scoped, Call::Tenants),
    route("GET", "/v1/vips", Who::Scoped, Call::Vips),
    route("GET", "/v1/pools", Who::Scoped, Call::Pools),
    route("GET", "/v1/pools/{pool}", Who::Scoped, Call::Pool),
    route("GET", "/v1/health", Who::Scoped, Call::Health),
    route("GET", "/v1/flows", Who::Scoped, Call::Flows),
    route("GET", "/v1/outbound", Who::Scoped, Call::Outbound),
    route("POST", "/v1/pools/{pool}/pick", Who::Scoped, Call::Pick),
    route("POST", "/v1/pools/{pool}/dips", Who::Scoped, Call::AddDip),
    // `{port*}`: the port is optional, and a longer path is answered by the call
    // (after the pool and the CA are judged) as no such call.
    route(
        "PATCH",
        "/v1/pools/{pool}/dips/{ca}/{port*}",
        Who::Scoped,
        Call::ChangeDip,
    ),
    route(
        "DELETE",
        "/v1/pools/{pool}/dips/{ca}/{port*}",
        Who::Scoped,
        Call::RemoveDip,
    ),
    route("PATCH", "/v1/pools/{pool}", Who::Scoped, Call::SetRule),
    route("GET", "/v1/lookups", Who::Operator, Call::Lookups),
    route("PATCH", "/v1/lookups", Who::Operator, Call::PatchLookups),
    route("PUT", "/v1/lookups", Who::Operator, Call::ReplaceLookups),
    route("GET", "/v1/subnets", Who::Operator, Call::Subnets),
    route("PUT", "/v1/subnets/{vsid}", Who::Operator, Call::PutSubnet),
    route(
        "DELETE",
        "/v1/subnets/{vsid}",
        Who::Operator,
        Call::DeleteSubnet,
    ),
    route("POST", "/v1/reload", Who::Operator, Call::Reload),
];

/// The path segments a route's `{name}` and `{name*}` matched.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Params<'a> {
    one: Vec<(&'static str, &'a str)>,
    rest: &'a [&'a str],
}

impl<'a> Params<'a> {
    /// The segment `{name}` matched (the table guarantees each handler's names).
    pub fn get(&self, name: &str) -> &'a str {
        self.one
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    }

    /// The segments `{name*}` matched.
    pub fn rest(&self) -> &'a [&'a str] {
        self.rest
    }
}

/// `segs` against one route's path.
fn matches<'a>(path: &'static str, segs: &'a [&'a str]) -> Option<Params<'a>> {
    let mut params = Params::default();
    let mut at = 0;
    for pat in path.split('/').filter(|s| !s.is_empty()) {
        if let Some(name) = pat.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if name.ends_with('*') {
                params.rest = segs.get(at..).unwrap_or_default();
                return Some(params);
            }
            params.one.push((name, segs.get(at)?));
        } else if segs.get(at) != Some(&pat) {
            return None;
        }
        at += 1;
    }
    (at == segs.len()).then_some(params)
}

/// What the table says of a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found<'a> {
    Call(&'static Route, Params<'a>),
    /// The path is a call's, the method is none of them (405).
    WrongMethod,
    /// No call has this path (404).
    Unknown,
}

/// The route for `method` on the path `segs` (decoded segments).
pub(super) fn find<'a>(method: &str, segs: &'a [&'a str]) -> Found<'a> {
    let mut known = false;
    for r in ROUTES {
        if let Some(p) = matches(r.path, segs) {
            if r.method == method {
                return Found::Call(r, p);
            }
            known = true;
        }
    }
    if known {
        Found::WrongMethod
    } else {
        Found::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, path: &str) -> Option<Call> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match find(method, &segs) {
            Found::Call(r, _) => Some(r.call),
            _ => None,
        }
    }

    fn found(method: &str, path: &str) -> &'static str {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match find(method, &segs) {
            Found::Call(..) => "call",
            Found::WrongMethod => "405",
            Found::Unknown => "404",
        }
    }

    #[test]
    fn every_path_takes_its_method_and_no_other() {
        for r in ROUTES {
            let path = r.path.replace("{port*}", "80").replace(['{', '}'], "");
            assert_eq!(
                call(r.method, &path),
                Some(r.call),
                "{} {}",
                r.method,
                r.path
            );
            for m in ["GET", "POST", "PATCH", "PUT", "DELETE"] {
                let served = ROUTES.iter().any(|o| {
                    o.method == m
                        && matches(
                            o.path,
                            &path
                                .split('/')
                                .filter(|s| !s.is_empty())
                                .collect::<Vec<_>>(),
                        )
                        .is_some()
                });
                let want = if served { "call" } else { "405" };
                assert_eq!(found(m, &path), want, "{m} {path}");
            }
        }
    }

    #[test]
    fn pick_with_another_method_is_405() {
        assert_eq!(found("GET", "/v1/pools/blue-web/pick"), "405");
        assert_eq!(found("POST", "/v1/pools/blue-web/pick/x"), "404");
    }

    #[test]
    fn params_and_rest() {
        let segs = ["v1", "pools", "p", "dips", "10.0.0.5", "80", "x"];
        let Found::Call(r, p) = find("DELETE", &segs) else {
            panic!("no route")
        };
        assert_eq!(r.call, Call::RemoveDip);
        assert_eq!((p.get("pool"), p.get("ca")), ("p", "10.0.0.5"));
        assert_eq!(p.rest(), &["80", "x"]);
        let Found::Call(_, p) = find("PATCH", &segs[..5]) else {
            panic!("no route")
        };
        assert!(p.rest().is_empty());
        assert_eq!(found("GET", "/v1/pools/p/dips/ca/1/2/3"), "405");
        assert_eq!(found("GET", "/v1/pools/p/dips"), "405");
        assert_eq!(found("GET", "/v1/pools/p/other"), "404");
        assert_eq!(found("GET", "/v1"), "404");
        assert_eq!(found("GET", "/healthz"), "404");
    }
}
