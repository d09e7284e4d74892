//! The API's reply bodies as types: the server builds its answers from these structs,
//! and `nvlb ctl` reads the answers back into the same structs. One definition of each
//! key, so a key renamed on one side fails to compile or, against another nvlb's
//! API, fails to deserialize with an error naming the key, instead of `ctl` printing
//! an empty cell.
//!
//! The bytes on the wire are the server's `Value` printed by `serde_json`: a reply
//! goes through [`to_body`] into a `Value`, whose objects sort their keys (the crate
//! is built without `preserve_order`), so the order of fields here does not reach the
//! wire, and tests/api_routes.rs's goldens hold byte for byte.
//!
//! Unknown keys are accepted on purpose, so an API that adds a key does not break an
//! older `ctl`. Missing keys are not: nullable fields use [`nullable`], because serde
//! otherwise reads a missing `Option` field as `None` (a `-` cell, the failure these
//! types exist to stop).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A reply as the server's response body. Never fails for these types (string keys,
/// no non-finite floats); `Value::Null` would only mark a bug in a type here.
pub fn to_body<T: Serialize>(reply: &T) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

/// An `Option` that must be present as a key (`null` or a value): serde's derive
/// treats a missing `Option` field as `None` unless the field has its own
/// `deserialize_with`, as this is.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// `GET /v1/whoami`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub token: String,
    /// `operator` or the tenant's name.
    pub scope: String,
}

/// A pool's frontend: `"public"` or its VSID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Frontend {
    Vsid(u32),
    Named(String),
}

/// One element of `GET /v1/tenants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub vsids: Vec<u32>,
    pub pools: Vec<String>,
    /// `null` when the API has no flow counts.
    #[serde(deserialize_with = "nullable")]
    pub flows: Option<u64>,
}

/// A pool's rule (`rule` of a VIP or pool).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// `lb` or `nat`.
    pub kind: String,
    pub all_ports: bool,
    pub distribution: String,
    /// `null`: the balancer's idle timeout applies.
    #[serde(deserialize_with = "nullable")]
    pub idle_timeout_s: Option<u64>,
    pub tcp_reset: bool,
    pub icmp_echo: String,
    pub floating_ip: bool,
    /// The inbound NAT rule this pool is a port of; `null` for a load-balancing rule.
    #[serde(deserialize_with = "nullable")]
    pub inbound_nat: Option<InboundNat>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundNat {
    pub rule: String,
    pub first: u16,
    pub last: u16,
}

/// A VIP (`D = usize`, the number of DIPs: `GET /v1/vips`) or a pool (`D = Vec<Dip>`:
/// `GET /v1/pools[/{pool}]`); the two differ only in `dips`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vip<D> {
    pub name: String,
    pub tenant: String,
    pub frontend: Frontend,
    pub address: String,
    pub protocol: String,
    pub port: u16,
    pub dips: D,
    /// DIPs with an effective weight above 0.
    pub active: usize,
    /// `null` when the API has no flow counts.
    #[serde(deserialize_with = "nullable")]
    pub flows: Option<u64>,
    pub rule: Rule,
}

/// `GET /v1/pools/{pool}`; `GET /v1/pools` is a list of these.
pub type Pool = Vip<Vec<Dip>>;

/// A DIP of a pool, with its health and where it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dip {
    pub vsid: u32,
    pub ca: String,
    pub port: u16,
    pub weight: u32,
    pub state: String,
    /// `up` or `down`.
    pub health: String,
    /// `null` when no lookup record places the DIP.
    #[serde(deserialize_with = "nullable")]
    pub host: Option<String>,
    pub pa: Vec<String>,
    pub mac: String,
}

/// One element of `GET /v1/health`: a DIP and its pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRow {
    pub pool: String,
    #[serde(flatten)]
    pub dip: Dip,
}

/// `GET /v1/flows`: `{"available": false}`, or the counts the caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flows {
    Unavailable,
    Counted(FlowCounts),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounts {
    pub total: u64,
    pub tenants: BTreeMap<String, u64>,
    pub pools: BTreeMap<String, u64>,
}

impl Serialize for Flows {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            available: bool,
            #[serde(flatten)]
            counts: Option<&'a FlowCounts>,
        }
        let counts = match self {
            Flows::Unavailable => None,
            Flows::Counted(c) => Some(c),
        };
        Wire {
            available: counts.is_some(),
            counts,
        }
        .serialize(s)
    }
}

/// By hand, not `#[serde(flatten)] Option<FlowCounts>`: that would read an answer
/// whose `total` was renamed as no counts at all instead of an error naming `total`.
impl<'de> Deserialize<'de> for Flows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Head {
            available: bool,
        }
        use serde::de::Error as _;
        let v = Value::deserialize(d)?;
        let head = Head::deserialize(&v).map_err(D::Error::custom)?;
        if !head.available {
            return Ok(Flows::Unavailable);
        }
        FlowCounts::deserialize(&v)
            .map(Flows::Counted)
            .map_err(D::Error::custom)
    }
}

/// `POST /v1/pools/{pool}/pick`: `dips[i]` is the DIP of `clients[i]` (`null`: the
/// pool has no DIP to give).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pick {
    pub pool: String,
    pub generation: u64,
    pub vip: String,
    pub protocol: String,
    pub clients: Vec<String>,
    pub dips: Vec<Option<String>>,
}

/// One element of `GET /v1/lookups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// `null` when the VSID is no declared subnet's.
    #[serde(deserialize_with = "nullable")]
    pub tenant: Option<String>,
    pub vsid: u32,
    pub ca: String,
    #[serde(deserialize_with = "nullable")]
    pub host: Option<String>,
    pub pa: Vec<String>,
    pub mac: String,
}

/// One element of `GET /v1/subnets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    #[serde(deserialize_with = "nullable")]
    pub tenant: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub routing_domain: Option<String>,
    pub vsid: u32,
    pub prefixes: Vec<String>,
    pub lb_mac: String,
    pub snat: Vec<Snat>,
}

/// A subnet's source-NAT range: the LB's CA and `FIRST-LAST` ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snat {
    pub ca: String,
    pub ports: String,
}

/// One element of `GET /v1/outbound`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    pub name: String,
    pub tenant: String,
    pub address: String,
    /// `FIRST-LAST`.
    pub ports: String,
    pub ports_per_dip: u16,
    pub idle_timeout_s: u64,
    pub sources: Vec<OutboundSource>,
}

/// A source VM of an outbound rule and its block of ports (`FIRST-LAST`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundSource {
    pub vsid: u32,
    pub ca: String,
    pub block: String,
    #[serde(deserialize_with = "nullable")]
    pub host: Option<String>,
    pub pa: Vec<String>,
}

/// What a change applied: the answer to `POST /v1/reload`, and the head of [`Changed`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub generation: u64,
    /// DIPs the new policy has that the old one did not.
    pub added: usize,
    pub removed: usize,
    /// Removed DIPs that keep their flows until the drain timeout.
    pub draining: usize,
}

/// The answer to an edit (DIPs, lookups, subnets, a pool's rule): what it applied,
/// and the edited entry before and after as the policy file spells it (`null` where
/// there was none, e.g. `before` of an added DIP).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    #[serde(flatten)]
    pub applied: Applied,
    pub before: Value,
    pub after: Value,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthz {
    /// Always `ok`: the API answers.
    pub status: String,
    pub generation: u64,
}

/// Every refusal (4xx, 5xx): a message, and for a policy that does not validate, its
/// findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    /// Only when the refusal is the policy's validation (a reload, or an edit that
    /// would leave a policy that does not validate); absent otherwise, so a missing
    /// key is `None` here by design.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Finding>>,
}

/// One validation finding: where in which file, the field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Empty when the finding is about no one field.
    pub field: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_nullable_key_is_an_error_naming_it() {
        let v = json!({"name": "blue", "vsids": [5001], "pools": [], "flows": null});
        let t: Tenant = serde_json::from_value(v).unwrap();
        assert_eq!(t.flows, None);
        let v = json!({"name": "blue", "vsids": [5001], "pools": [], "flow": 3});
        let e = serde_json::from_value::<Tenant>(v).unwrap_err().to_string();
        assert!(e.contains("missing field `flows`"), "{e}");
    }

    #[test]
    fn flows_round_trip_and_name_a_renamed_key() {
        for f in [
            Flows::Unavailable,
            Flows::Counted(FlowCounts {
                total: 3,
                tenants: [("blue".to_string(), 3)].into(),
                pools: [("blue-web".to_string(), 2)].into(),
            }),
        ] {
            let v = to_body(&f);
            assert_eq!(serde_json::from_value::<Flows>(v).unwrap(), f);
        }
        assert_eq!(to_body(&Flows::Unavailable), json!({"available": false}));
        let v = json!({"available": true, "count": 3, "tenants": {}, "pools": {}});
        let e = serde_json::from_value::<Flows>(v).unwrap_err().to_string();
        assert!(e.contains("missing field `total`"), "{e}");
    }
}
