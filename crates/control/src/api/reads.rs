//! The calls that read: each answers from one snapshot of the running policy (and the
//! workers' flow counts), cut to what the caller's scope covers. They must never
//! change anything, nor show a tenant's token another tenant's pools or counts.

use super::fields::parse_body;
use super::replies;
use super::{Answer, Api, Request, Response, pick, views};

impl Api {
    pub(super) fn whoami(&self, r: &Request) -> Answer {
        Ok(Response::ok(replies::to_body(&replies::Whoami {
            token: r.caller.name.clone(),
            scope: r.scope().name().to_string(),
        })))
    }

    pub(super) fn tenants(&self, r: &Request) -> Answer {
        let flows = self.flow_counts();
        let s = self.persist.control().policy();
        Ok(Response::ok(replies::to_body(&views::tenants(
            &s,
            r.scope(),
            flows.as_ref(),
        ))))
    }

    pub(super) fn vips(&self, r: &Request) -> Answer {
        let flows = self.flow_counts();
        let s = self.persist.control().policy();
        let vips: Vec<_> = views::visible(&s, r.scope())
            .into_iter()
            .map(|p| views::vip(&s, p, flows.as_ref()))
            .collect();
        Ok(Response::ok(replies::to_body(&vips)))
    }

    pub(super) fn pools(&self, r: &Request) -> Answer {
        let flows = self.flow_counts();
        let c = self.persist.control();
        let s = c.policy();
        let pools: Vec<_> = views::visible(&s, r.scope())
            .into_iter()
            .map(|p| views::pool(&s, c, p, flows.as_ref()))
            .collect();
        Ok(Response::ok(replies::to_body(&pools)))
    }

    pub(super) fn pool(&self, r: &Request) -> Answer {
        let flows = self.flow_counts();
        let c = self.persist.control();
        let s = c.policy();
        let p = self.pool_for(&s, r.scope(), r.params.get("pool"))?;
        Ok(Response::ok(replies::to_body(&views::pool(
            &s,
            c,
            p,
            flows.as_ref(),
        ))))
    }

    pub(super) fn outbound(&self, r: &Request) -> Answer {
        let s = self.persist.control().policy();
        Ok(Response::ok(replies::to_body(&views::outbound(
            &s,
            r.scope(),
        ))))
    }

    pub(super) fn health(&self, r: &Request) -> Answer {
        let c = self.persist.control();
        Ok(Response::ok(replies::to_body(&views::health(
            &c.policy(),
            c,
            r.scope(),
        ))))
    }

    /// Flow counts as the workers publish them; `null` when `nvlb run` wired none in.
    pub(super) fn flows(&self, r: &Request) -> Answer {
        let scope = r.scope();
        let reply = match self.flow_counts() {
            None => replies::Flows::Unavailable,
            Some(f) => {
                let s = self.persist.control().policy();
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
                    super::auth::Scope::Operator => f.total,
                    super::auth::Scope::Tenant(t) => f.per_tenant.get(t).copied().unwrap_or(0),
                };
                replies::Flows::Counted(replies::FlowCounts {
                    total,
                    tenants,
                    pools,
                })
            }
        };
        Ok(Response::ok(replies::to_body(&reply)))
    }

    /// `POST /v1/pools/{pool}/pick`: a read, though it takes a body (the flows).
    pub(super) fn pick(&self, r: &Request) -> Answer {
        let c = self.persist.control();
        let s = c.policy();
        let p = self.pool_for(&s, r.scope(), r.params.get("pool"))?;
        let v = parse_body(r.body)?;
        Ok(Response::ok(replies::to_body(&pick::pick(
            p,
            c.generation(),
            &v,
        )?)))
    }

    pub(super) fn lookups(&self, _: &Request) -> Answer {
        let declared = self.persist.control().declared();
        Ok(Response::ok(replies::to_body(&views::lookups(&declared))))
    }

    pub(super) fn subnets(&self, _: &Request) -> Answer {
        let declared = self.persist.control().declared();
        Ok(Response::ok(replies::to_body(&views::subnets(&declared))))
    }
}
