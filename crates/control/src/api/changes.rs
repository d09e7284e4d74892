//! The calls that change policy: each checks what the request names (the pool is the
//! caller's, the CA is an address), reads its body into a spec, and hands one edit to
//! [`Persist::change`](crate::persist::Persist::change), which validates the whole
//! changed policy, writes it and journals the call. They must never change the
//! running policy any other way, so that a refused change leaves nothing behind.

use std::net::IpAddr;

use toml_edit::DocumentMut;

use super::fields::Bad;
use super::outcome::{applied, applied_reply, refused};
use super::target::query_param;
use super::{Answer, Api, Request, Response, bodies, edit, replies};
use crate::ChangeError;
use crate::persist::{EditError, Edited};
use crate::policy::{Snapshot, Vsid};

impl Api {
    /// Applies `edit` as the request's change; `status` is the answer's on success.
    fn change(
        &self,
        r: &Request,
        status: u16,
        edit: impl FnOnce(&mut DocumentMut, &Snapshot) -> Result<Edited, EditError>,
    ) -> Answer {
        self.persist
            .change(&r.actor(), &r.call(), r.now, edit)
            .map(|d| applied(d, status))
            .map_err(refused)
    }

    /// `PATCH /v1/pools/{pool}`: the rule's settings.
    pub(super) fn set_rule(&self, r: &Request) -> Answer {
        let pool = r.params.get("pool");
        let s = self.persist.control().policy();
        let p = self.pool_for(&s, r.scope(), pool)?;
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
        let spec = bodies::rule_spec(r.body)?;
        self.change(r, 200, |doc, _| edit::set_rule(doc, pool, &spec))
    }

    pub(super) fn add_dip(&self, r: &Request) -> Answer {
        let pool = r.params.get("pool");
        self.pool_for(&self.persist.control().policy(), r.scope(), pool)?;
        let spec = bodies::dip_spec(r.body)?;
        self.change(r, 201, |doc, _| edit::add_dip(doc, pool, &spec))
    }

    /// `PATCH` (weight, drain) or `DELETE` of one DIP, named by CA with its port and
    /// VSID when the CA alone is ambiguous.
    pub(super) fn change_dip(&self, r: &Request) -> Answer {
        let (pool, ca, rest) = (r.params.get("pool"), r.params.get("ca"), r.params.rest());
        self.pool_for(&self.persist.control().policy(), r.scope(), pool)?;
        let ca: IpAddr = ca
            .parse()
            .map_err(|_| Bad(format!("{ca:?} is not an IP address (the DIP's CA)")))?;
        let port = match rest {
            [] => None,
            [p] => Some(
                p.parse::<u16>()
                    .map_err(|_| Bad(format!("{p:?} is not a port")))?,
            ),
            _ => {
                return Err(Response::error(404, format!("no such call: {}", r.path)));
            }
        };
        let vsid = match query_param(r.query, "vsid")? {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .and_then(Vsid::new)
                    .ok_or_else(|| Bad(format!("vsid: {v:?} is not a VSID")))?,
            ),
        };
        let patch = r.method == "PATCH";
        let (weight, drain) = if patch {
            bodies::dip_change(r.body)?
        } else {
            (None, None)
        };
        self.change(r, 200, |doc, cur| {
            let (i, _) = edit::find_dip(cur, pool, ca, port, vsid)?;
            if patch {
                edit::set_dip(doc, pool, i, weight, drain)
            } else {
                edit::remove_dip(doc, pool, i)
            }
        })
    }

    pub(super) fn replace_lookups(&self, r: &Request) -> Answer {
        let records = bodies::all_lookups(r.body)?;
        self.change(r, 200, |doc, cur| edit::replace_lookups(doc, cur, &records))
    }

    pub(super) fn patch_lookups(&self, r: &Request) -> Answer {
        let (set, delete) = bodies::lookup_patch(r.body)?;
        self.change(r, 200, |doc, cur| {
            edit::patch_lookups(doc, cur, &set, &delete)
        })
    }

    pub(super) fn put_subnet(&self, r: &Request) -> Answer {
        let vsid = vsid_segment(r.params.get("vsid"))?;
        let spec = bodies::subnet_spec(r.body)?;
        self.change(r, 200, |doc, _| edit::put_subnet(doc, vsid, &spec))
    }

    pub(super) fn delete_subnet(&self, r: &Request) -> Answer {
        let vsid = vsid_segment(r.params.get("vsid"))?;
        self.change(r, 200, |doc, _| edit::delete_subnet(doc, vsid))
    }

    /// Rereads the policy file: the same validation as at start, the running policy
    /// kept when it fails.
    pub(super) fn reload(&self, r: &Request) -> Answer {
        match self.persist.reload(&r.actor(), r.now) {
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
        }
    }
}

/// The `{vsid}` of a subnet call; its range is judged by the edit (with the policy's
/// own message), only its form here.
fn vsid_segment(seg: &str) -> Result<i64, Bad> {
    seg.parse()
        .map_err(|_| Bad(format!("{seg:?} is not a VSID")))
}
