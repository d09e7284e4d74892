//! The declared world of the guide's load-balancer scenario: tenants, routing domains,
//! virtual subnets (VSIDs), lookup records (CA, VSID -> host PA, MAC), Hyper-V hosts and
//! VIP pools with their DIPs, read from a TOML file (see `lb-config/example.toml`) and
//! validated into an immutable [`Snapshot`].
//!
//! Every refusal names the file, line, column and field; all of them are reported at
//! once. This module must never do I/O beyond reading the one file it is given, never
//! build Maglev tables (the caller does, from [`VipPool::dips`]) and never hand out a
//! snapshot that failed validation.

mod config;
mod diag;
mod ids;
pub mod instance;
mod mac;
mod model;
mod options;
mod outbound;
mod overlay;
mod pick;
mod prefix;
mod rules;
mod snapshot;
mod summary;
mod validate;

pub use crate::wire::MacAddr;
pub use diag::{ConfigError, Diagnostic};
pub use ids::{
    HostId, PoolId, Protocol, ProtocolParseError, SubnetId, TenantId, Vsid, is_reserved_on_wire,
};
pub use mac::MacParseError;
pub use model::{
    Balancer, Dip, DipKey, DipState, Distribution, FlowLimits, HealthCheck, HealthProbe,
    HealthSettings, Host, Instance, LookupRecord, Port, ReloadPolicy, RemovedDips, RoutingDomain,
    SnatRange, Tenant, VipPool, VirtualSubnet,
};
pub use options::CompileOptions;
pub use outbound::{OUTBOUND_POOL_TAG, OutboundRule, OutboundSource};
pub use prefix::{IpPrefix, PrefixError};
pub use rules::{IcmpEcho, InboundNat, RuleOptions};
pub use snapshot::Snapshot;
pub use summary::summary;
pub use validate::MAX_WEIGHT;
