//! `nvlb ctl` and `nvlb reload`: the management API's command-line client, and the
//! API's start inside `nvlb run`.
//!
//! Every subcommand is one API call, printed as a table (or the API's JSON with
//! `--json`); exit 0 when the API applied or answered it, 1 when it refused it (its
//! errors printed, one `file:line:column: field: message` per line for policy
//! findings) or could not be reached. `hash-token` and `new-token` work offline. The
//! token is never printed except by `new-token`, which exists to make one.

use std::io::{BufRead, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use nvlb::control::Control;
use nvlb::control::api::auth::{Tokens, hash_token, hex};
use nvlb::control::api::replies::{self, Frontend};
use nvlb::control::api::{Api, DEFAULT_ADDR, FlowStats, client, server};
use nvlb::control::persist::Persist;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Where the API is and who is calling.
#[derive(Args, Debug)]
pub struct Conn {
    /// The API's address, host:port (default: $NVLB_API, else 127.0.0.1:9180).
    #[arg(long, global = true, value_name = "ADDR")]
    api: Option<String>,
    /// The bearer token (default: the file given by --token-file, else $NVLB_TOKEN).
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// A file whose first line is the bearer token.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Ctl {
    /// Liveness: GET /healthz (no token needed); exit 0 when the API answers 200.
    Ping,
    /// The calling token's name and scope.
    Whoami,
    /// Tenants (a tenant's token sees only its own), their VSIDs, pools and flows.
    Tenants,
    /// VIPs: address, protocol, port, DIPs, active DIPs, flows.
    Vips,
    /// Pools with every DIP: weight, state, health, host and PA; or one pool.
    Pools { pool: Option<String> },
    /// Every DIP's state and health-check result.
    Health,
    /// Active flows per tenant and pool.
    Flows,
    /// Which DIP the running policy gives new flows from CLIENT:PORT... (nothing is sent).
    Pick {
        pool: String,
        /// Clients as IP:PORT ([IPv6]:PORT).
        #[arg(required = true)]
        clients: Vec<String>,
        /// The VIP port (all-ports rules need it).
        #[arg(long)]
        port: Option<u16>,
        /// `tcp` or `udp` (all-ports rules; default: the pool's).
        #[arg(long)]
        protocol: Option<String>,
    },
    /// Add, remove, drain a DIP or change its weight (written to the policy file).
    #[command(subcommand)]
    Dip(DipCmd),
    /// Lookup records (CA, VSID -> host, MAC), operator only.
    #[command(subcommand)]
    Lookup(LookupCmd),
    /// Virtual subnets, operator only.
    #[command(subcommand)]
    Subnet(SubnetCmd),
    /// Re-read the policy file (operator only); same as `nvlb reload`.
    Reload,
    /// Change a pool's load-balancing rule settings (written to the policy file).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Outbound (source NAT) rules and each source VM's block of ports.
    Outbound,
    /// Any call: METHOD PATH [JSON BODY] (see docs/api.md).
    Call {
        method: String,
        path: String,
        body: Option<String>,
    },
    /// Print the SHA-256 of a token, for the tokens file (reads stdin without TOKEN).
    HashToken { token: Option<String> },
    /// Make a random token: prints it, then its [[token]] entry for the tokens file.
    NewToken {
        /// The token's name (journaled with every change it makes).
        #[arg(long)]
        name: String,
        /// `operator` or a tenant's name.
        #[arg(long)]
        scope: String,
    },
}

/// Which DIP of a pool: its CA, and its port and VSID when the CA alone is ambiguous.
#[derive(Args, Debug)]
pub struct DipId {
    pool: String,
    ca: String,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    vsid: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum DipCmd {
    /// Add a DIP to a pool.
    Add {
        pool: String,
        ca: String,
        /// Default: the VIP's port.
        #[arg(long)]
        port: Option<i64>,
        /// Default: the pool's backend VSID.
        #[arg(long)]
        vsid: Option<i64>,
        /// Default 1.
        #[arg(long, allow_negative_numbers = true)]
        weight: Option<i64>,
        /// Add it draining (no new flows).
        #[arg(long)]
        drain: bool,
    },
    /// Remove a DIP (its flows drain or reset as [balancer.reload] says).
    Remove(DipId),
    /// Take no new flows on a DIP (--undo: take them again).
    Drain {
        #[command(flatten)]
        id: DipId,
        #[arg(long)]
        undo: bool,
    },
    /// Change a DIP's weight.
    Weight {
        #[command(flatten)]
        id: DipId,
        #[arg(allow_negative_numbers = true)]
        weight: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum LookupCmd {
    List,
    /// Add or change the record of CA in VSID (a VM placed or moved to HOST).
    Set {
        vsid: i64,
        ca: String,
        host: String,
        mac: String,
    },
    Delete {
        vsid: i64,
        ca: String,
    },
    /// Replace every record with those of a JSON file: [{vsid, ca, host, mac}, ...].
    Replace {
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubnetCmd {
    List,
    /// Create or change a virtual subnet.
    Set {
        vsid: i64,
        /// Required for a new subnet.
        #[arg(long)]
        tenant: Option<String>,
        /// Required for a new subnet (created if the tenant has none of that name).
        #[arg(long)]
        routing_domain: Option<String>,
        /// A prefix; repeat for more (replaces the list).
        #[arg(long = "prefix")]
        prefixes: Vec<String>,
        #[arg(long)]
        lb_mac: Option<String>,
        /// The LB's source-NAT CA and ports, CA=FIRST-LAST; repeat (replaces the list).
        #[arg(long, value_name = "CA=FIRST-LAST")]
        snat: Vec<String>,
        /// Remove every source-NAT range.
        #[arg(long, conflicts_with = "snat")]
        no_snat: bool,
    },
    Delete {
        vsid: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Set any of the rule's settings, then print the pool.
    Set {
        pool: String,
        /// five_tuple, source_ip_protocol or source_ip.
        #[arg(long, value_name = "MODE")]
        distribution: Option<String>,
        /// A duration such as 4m, or `none` to fall back to the balancer's.
        #[arg(long, value_name = "D|none")]
        idle_timeout: Option<String>,
        /// RST to both ends when a TCP flow times out idle.
        #[arg(long, value_name = "true|false")]
        tcp_reset: Option<bool>,
        /// answer, forward or drop.
        #[arg(long, value_name = "MODE")]
        icmp_echo: Option<String>,
        /// Keep the VIP as the destination the DIP sees.
        #[arg(long, value_name = "true|false")]
        floating_ip: Option<bool>,
    },
}

/// `pool set`: the rule change, then the pool as it runs now.
fn pool_set(conn: &Conn, cmd: PoolCmd) -> anyhow::Result<ExitCode> {
    let PoolCmd::Set {
        pool,
        distribution,
        idle_timeout,
        tcp_reset,
        icmp_echo,
        floating_ip,
    } = cmd;
    let mut b = json!({});
    if let Some(d) = distribution {
        b["distribution"] = json!(d);
    }
    if let Some(t) = idle_timeout {
        b["idle_timeout"] = if t == "none" { Value::Null } else { json!(t) };
    }
    if let Some(r) = tcp_reset {
        b["tcp_reset"] = json!(r);
    }
    if let Some(e) = icmp_echo {
        b["icmp_echo"] = json!(e);
    }
    if let Some(f) = floating_ip {
        b["floating_ip"] = json!(f);
    }
    let addr = conn.addr();
    let token = conn.token()?;
    let path = format!("/v1/pools/{pool}");
    let mut answers = Vec::new();
    for (method, body) in [("PATCH", Some(&b)), ("GET", None)] {
        match accepted(conn, &addr, token.as_deref(), method, &path, body)? {
            Ok(answer) => answers.push(answer),
            Err(code) => return Ok(code),
        }
    }
    let pool = answers.pop().unwrap_or(Value::Null);
    let change = answers.pop().unwrap_or(Value::Null);
    if conn.json {
        let both = json!({ "applied": change, "pool": pool });
        println!("{}", serde_json::to_string_pretty(&both)?);
    } else {
        let change: replies::Changed = read(&format!("PATCH {path}"), change)?;
        let pool: replies::Pool = read(&format!("GET {path}"), pool)?;
        print!("{}{}", change_text(&change, true), pool_text(&pool));
    }
    Ok(ExitCode::SUCCESS)
}

/// Calls the API and returns its 2xx answer, or the exit code after telling the user
/// why not (the API unreachable, or its refusal: as JSON too with `--json`).
fn accepted(
    conn: &Conn,
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Result<Value, ExitCode>> {
    let (status, answer) = match client::call(addr, token, method, path, body) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nvlb ctl: {e}");
            return Ok(Err(ExitCode::from(1)));
        }
    };
    if !(200..300).contains(&status) {
        if conn.json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        print_error(status, &answer, token.is_none());
        return Ok(Err(ExitCode::from(1)));
    }
    Ok(Ok(answer))
}

impl Conn {
    fn addr(&self) -> String {
        self.api
            .clone()
            .or_else(|| std::env::var("NVLB_API").ok())
            .unwrap_or_else(|| DEFAULT_ADDR.to_string())
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", f.display()))?;
            let t = text.lines().next().unwrap_or("").trim().to_string();
            return Ok(Some(t));
        }
        Ok(std::env::var("NVLB_TOKEN").ok().filter(|t| !t.is_empty()))
    }
}

/// `nvlb reload`.
pub fn reload(conn: &Conn) -> anyhow::Result<ExitCode> {
    run(conn, Ctl::Reload)
}

pub fn run(conn: &Conn, cmd: Ctl) -> anyhow::Result<ExitCode> {
    let (method, path, body, show): (&str, String, Option<Value>, Show) = match cmd {
        Ctl::HashToken { token } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim().to_string()
                }
            };
            if token.is_empty() {
                anyhow::bail!("an empty token");
            }
            println!("{}", hex(&hash_token(&token)));
            return Ok(ExitCode::SUCCESS);
        }
        Ctl::NewToken { name, scope } => {
            let mut raw = [0u8; 24];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
            let token = hex(&raw);
            println!("{token}");
            println!(
                "\n[[token]]\nname = {}\nscope = {}\nsha256 = \"{}\"",
                toml_string(&name),
                toml_string(&scope),
                hex(&hash_token(&token))
            );
            return Ok(ExitCode::SUCCESS);
        }
        Ctl::Pool(p) => return pool_set(conn, p),
        Ctl::Outbound => ("GET", "/v1/outbound".into(), None, Show::Outbound),
        Ctl::Ping => ("GET", "/healthz".into(), None, Show::Raw),
        Ctl::Whoami => ("GET", "/v1/whoami".into(), None, Show::Whoami),
        Ctl::Tenants => ("GET", "/v1/tenants".into(), None, Show::Tenants),
        Ctl::Vips => ("GET", "/v1/vips".into(), None, Show::Vips),
        Ctl::Pools { pool: None } => ("GET", "/v1/pools".into(), None, Show::Pools),
        Ctl::Pools { pool: Some(p) } => ("GET", format!("/v1/pools/{p}"), None, Show::Pool),
        Ctl::Health => ("GET", "/v1/health".into(), None, Show::Health),
        Ctl::Flows => ("GET", "/v1/flows".into(), None, Show::Flows),
        Ctl::Pick {
            pool,
            clients,
            port,
            protocol,
        } => (
            "POST",
            format!("/v1/pools/{pool}/pick"),
            Some(json!({ "clients": clients, "port": port, "protocol": protocol })),
            Show::Pick,
        ),
        Ctl::Dip(DipCmd::Add {
            pool,
            ca,
            port,
            vsid,
            weight,
            drain,
        }) => {
            let mut b = json!({ "ca": ca });
            for (k, v) in [("port", port), ("vsid", vsid), ("weight", weight)] {
                if let Some(v) = v {
                    b[k] = json!(v);
                }
            }
            if drain {
                b["drain"] = json!(true);
            }
            (
                "POST",
                format!("/v1/pools/{pool}/dips"),
                Some(b),
                Show::Change,
            )
        }
        Ctl::Dip(DipCmd::Remove(id)) => ("DELETE", id.path(), None, Show::Change),
        Ctl::Dip(DipCmd::Drain { id, undo }) => (
            "PATCH",
            id.path(),
            Some(json!({ "drain": !undo })),
            Show::Change,
        ),
        Ctl::Dip(DipCmd::Weight { id, weight }) => (
            "PATCH",
            id.path(),
            Some(json!({ "weight": weight })),
            Show::Change,
        ),
        Ctl::Lookup(LookupCmd::List) => ("GET", "/v1/lookups".into(), None, Show::Lookups),
        Ctl::Lookup(LookupCmd::Set {
            vsid,
            ca,
            host,
            mac,
        }) => (
            "PATCH",
            "/v1/lookups".into(),
            Some(json!({ "set": [{ "vsid": vsid, "ca": ca, "host": host, "mac": mac }] })),
            Show::Change,
        ),
        Ctl::Lookup(LookupCmd::Delete { vsid, ca }) => (
            "PATCH",
            "/v1/lookups".into(),
            Some(json!({ "delete": [{ "vsid": vsid, "ca": ca }] })),
            Show::Change,
        ),
        Ctl::Lookup(LookupCmd::Replace { file }) => {
            let records = read_json(&file)?;
            let body = if records.is_array() {
                json!({ "records": records })
            } else {
                records
            };
            ("PUT", "/v1/lookups".into(), Some(body), Show::Change)
        }
        Ctl::Subnet(SubnetCmd::List) => ("GET", "/v1/subnets".into(), None, Show::Subnets),
        Ctl::Subnet(SubnetCmd::Set {
            vsid,
            tenant,
            routing_domain,
            prefixes,
            lb_mac,
            snat,
            no_snat,
        }) => {
            let mut b = json!({});
            if let Some(t) = tenant {
                b["tenant"] = json!(t);
            }
            if let Some(r) = routing_domain {
                b["routing_domain"] = json!(r);
            }
            if !prefixes.is_empty() {
                b["prefixes"] = json!(prefixes);
            }
            if let Some(m) = lb_mac {
                b["lb_mac"] = json!(m);
            }
            if no_snat {
                b["snat"] = json!([]);
            } else if !snat.is_empty() {
                let mut list = Vec::new();
                for s in &snat {
                    let (ca, ports) = s
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--snat {s:?}: expected CA=FIRST-LAST"))?;
                    list.push(json!({ "ca": ca, "ports": ports }));
                }
                b["snat"] = Value::Array(list);
            }
            ("PUT", format!("/v1/subnets/{vsid}"), Some(b), Show::Change)
        }
        Ctl::Subnet(SubnetCmd::Delete { vsid }) => {
            ("DELETE", format!("/v1/subnets/{vsid}"), None, Show::Change)
        }
        Ctl::Reload => ("POST", "/v1/reload".into(), None, Show::Reload),
        Ctl::Call { method, path, body } => {
            let body = match body {
                Some(b) => Some(
                    serde_json::from_str(&b)
                        .map_err(|e| anyhow::anyhow!("the body is not JSON: {e}"))?,
                ),
                None => None,
            };
            let m: &'static str = match method.to_ascii_uppercase().as_str() {
                "GET" => "GET",
                "POST" => "POST",
                "PUT" => "PUT",
                "PATCH" => "PATCH",
                "DELETE" => "DELETE",
                other => anyhow::bail!("unknown method {other}"),
            };
            (m, path, body, Show::Raw)
        }
    };
    let addr = conn.addr();
    let token = conn.token()?;
    let answer = match accepted(conn, &addr, token.as_deref(), method, &path, body.as_ref())? {
        Ok(answer) => answer,
        Err(code) => return Ok(code),
    };
    if conn.json || matches!(show, Show::Raw) {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render(show, &format!("{method} {path}"), answer)?);
    }
    Ok(ExitCode::SUCCESS)
}

impl DipId {
    fn path(&self) -> String {
        let mut p = format!("/v1/pools/{}/dips/{}", self.pool, self.ca);
        if let Some(port) = self.port {
            p.push_str(&format!("/{port}"));
        }
        if let Some(v) = self.vsid {
            p.push_str(&format!("?vsid={v}"));
        }
        p
    }
}

fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

fn read_json(file: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

fn print_error(status: u16, answer: &Value, no_token: bool) {
    match replies::Refusal::deserialize(answer) {
        Ok(r) => {
            eprintln!("nvlb ctl: {status}: {}", r.error);
            for e in r.errors.iter().flatten() {
                let sep = if e.field.is_empty() { "" } else { ": " };
                eprintln!(
                    "{}:{}:{}: {}{sep}{}",
                    e.file, e.line, e.column, e.field, e.message
                );
            }
        }
        Err(e) => eprintln!(
            "nvlb ctl: {status}: {answer} (the API's refusal is not what this nvlb reads: {e})"
        ),
    }
    if status == 401 && no_token {
        eprintln!("nvlb ctl: give a token with --token, --token-file or NVLB_TOKEN");
    }
}

#[derive(Clone, Copy)]
enum Show {
    Whoami,
    Tenants,
    Vips,
    Pools,
    Pool,
    Health,
    Flows,
    Pick,
    Lookups,
    Subnets,
    Outbound,
    Change,
    Reload,
    Raw,
}

/// Rows padded to the widest cell of each column.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    let cols = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            all.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Reads the API's answer to `call` as the reply type the server builds it from
/// (crates/control/src/api/replies.rs). A key missing from the answer (an API that
/// renamed or dropped it) is an error naming the key, never an empty cell.
fn read<T: DeserializeOwned>(call: &str, answer: Value) -> anyhow::Result<T> {
    serde_json::from_value(answer)
        .map_err(|e| anyhow::anyhow!("the API's answer to {call} is not what this nvlb reads: {e}"))
}

/// A nullable value as a cell: `-` for null.
fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), T::to_string)
}

/// A list as a cell: space-separated, `-` when empty.
fn list<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(" ")
    }
}

fn frontend(f: &Frontend) -> String {
    match f {
        Frontend::Vsid(v) => v.to_string(),
        Frontend::Named(n) => n.clone(),
    }
}

const DIP_HEAD: [&str; 8] = [
    "VSID", "CA", "PORT", "WEIGHT", "STATE", "HEALTH", "HOST", "PA",
];

fn dip_row(d: &replies::Dip) -> Vec<String> {
    vec![
        d.vsid.to_string(),
        d.ca.clone(),
        d.port.to_string(),
        d.weight.to_string(),
        d.state.clone(),
        d.health.clone(),
        opt(&d.host),
        list(&d.pa),
    ]
}

fn pool_text(p: &replies::Pool) -> String {
    let r = &p.rule;
    format!(
        "pool {} (tenant {}): {} {} {}/{}, flows {}\nrule {}: distribution {}, idle_timeout {}, \
         tcp_reset {}, icmp_echo {}, floating_ip {}\n{}",
        p.name,
        p.tenant,
        frontend(&p.frontend),
        p.address,
        p.protocol,
        p.port,
        opt(&p.flows),
        r.kind,
        r.distribution,
        opt(&r.idle_timeout_s.map(|s| format!("{s}s"))),
        r.tcp_reset,
        r.icmp_echo,
        r.floating_ip,
        table(&DIP_HEAD, p.dips.iter().map(dip_row).collect())
    )
}

fn applied_text(a: &replies::Applied) -> String {
    format!(
        "applied: generation {}, {} DIP(s) added, {} removed, {} draining\n",
        a.generation, a.added, a.removed, a.draining
    )
}

/// An edit's answer; with `edits`, the entry before and after it.
fn change_text(c: &replies::Changed, edits: bool) -> String {
    let mut s = applied_text(&c.applied);
    for (k, v) in [("before", &c.before), ("after", &c.after)] {
        if !v.is_null() && edits {
            s.push_str(&format!("{k}: {v}\n"));
        }
    }
    s
}

/// The table (or text) of `show` for the answer to `call`.
fn render(show: Show, call: &str, v: Value) -> anyhow::Result<String> {
    Ok(match show {
        Show::Whoami => {
            let w: replies::Whoami = read(call, v)?;
            format!("token {}, scope {}\n", w.token, w.scope)
        }
        Show::Tenants => {
            let t: Vec<replies::Tenant> = read(call, v)?;
            table(
                &["TENANT", "VSIDS", "POOLS", "FLOWS"],
                t.iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            list(&t.vsids),
                            list(&t.pools),
                            opt(&t.flows),
                        ]
                    })
                    .collect(),
            )
        }
        Show::Vips => {
            let vips: Vec<replies::Vip<usize>> = read(call, v)?;
            table(
                &[
                    "NAME", "TENANT", "FRONTEND", "ADDRESS", "PROTO", "PORT", "DIPS", "ACTIVE",
                    "FLOWS",
                ],
                vips.iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.tenant.clone(),
                            frontend(&p.frontend),
                            p.address.clone(),
                            p.protocol.clone(),
                            p.port.to_string(),
                            p.dips.to_string(),
                            p.active.to_string(),
                            opt(&p.flows),
                        ]
                    })
                    .collect(),
            )
        }
        Show::Pools => {
            let pools: Vec<replies::Pool> = read(call, v)?;
            pools.iter().map(pool_text).collect::<Vec<_>>().join("\n")
        }
        Show::Pool => pool_text(&read(call, v)?),
        Show::Health => {
            let rows: Vec<replies::HealthRow> = read(call, v)?;
            let mut head = vec!["POOL"];
            head.extend(DIP_HEAD);
            table(
                &head,
                rows.iter()
                    .map(|r| {
                        let mut row = vec![r.pool.clone()];
                        row.extend(dip_row(&r.dip));
                        row
                    })
                    .collect(),
            )
        }
        Show::Flows => {
            let replies::Flows::Counted(f) = read(call, v)? else {
                return Ok("flow counts are not available from this nvlb\n".into());
            };
            let mut r: Vec<Vec<String>> = Vec::new();
            for (kind, counts) in [("tenant", &f.tenants), ("pool", &f.pools)] {
                for (name, n) in counts {
                    r.push(vec![kind.into(), name.clone(), n.to_string()]);
                }
            }
            r.push(vec!["total".into(), "-".into(), f.total.to_string()]);
            table(&["KIND", "NAME", "FLOWS"], r)
        }
        Show::Pick => {
            let p: replies::Pick = read(call, v)?;
            let r = p
                .clients
                .iter()
                .zip(&p.dips)
                .map(|(c, d)| vec![c.clone(), p.vip.clone(), opt(d)])
                .collect();
            table(&["CLIENT", "VIP", "DIP"], r)
        }
        Show::Lookups => {
            let l: Vec<replies::Lookup> = read(call, v)?;
            table(
                &["TENANT", "VSID", "CA", "HOST", "PA", "MAC"],
                l.iter()
                    .map(|l| {
                        vec![
                            opt(&l.tenant),
                            l.vsid.to_string(),
                            l.ca.clone(),
                            opt(&l.host),
                            list(&l.pa),
                            l.mac.clone(),
                        ]
                    })
                    .collect(),
            )
        }
        Show::Subnets => {
            let subnets: Vec<replies::Subnet> = read(call, v)?;
            let r = subnets
                .iter()
                .map(|s| {
                    let snat: Vec<String> = s
                        .snat
                        .iter()
                        .map(|x| format!("{}={}", x.ca, x.ports))
                        .collect();
                    vec![
                        opt(&s.tenant),
                        opt(&s.routing_domain),
                        s.vsid.to_string(),
                        list(&s.prefixes),
                        s.lb_mac.clone(),
                        list(&snat),
                    ]
                })
                .collect();
            table(
                &[
                    "TENANT",
                    "ROUTING_DOMAIN",
                    "VSID",
                    "PREFIXES",
                    "LB_MAC",
                    "SNAT",
                ],
                r,
            )
        }
        Show::Outbound => {
            let rules: Vec<replies::Outbound> = read(call, v)?;
            let mut r: Vec<Vec<String>> = Vec::new();
            for rule in &rules {
                for (i, src) in rule.sources.iter().enumerate() {
                    let mut row = if i == 0 {
                        vec![
                            rule.name.clone(),
                            rule.tenant.clone(),
                            rule.address.clone(),
                            rule.ports.clone(),
                            rule.ports_per_dip.to_string(),
                            format!("{}s", rule.idle_timeout_s),
                        ]
                    } else {
                        vec![String::new(); 6]
                    };
                    row.extend([
                        src.vsid.to_string(),
                        src.ca.clone(),
                        src.block.clone(),
                        opt(&src.host),
                    ]);
                    r.push(row);
                }
            }
            table(
                &[
                    "RULE", "TENANT", "ADDRESS", "PORTS", "PER_DIP", "IDLE", "VSID", "SOURCE",
                    "BLOCK", "HOST",
                ],
                r,
            )
        }
        Show::Change => change_text(&read(call, v)?, true),
        Show::Reload => applied_text(&read(call, v)?),
        Show::Raw => format!("{v}\n"),
    })
}

/// How `nvlb run` serves the API.
pub struct ApiOptions {
    /// `None`: no API (`--api off`).
    pub addr: Option<SocketAddr>,
    pub tokens: Option<PathBuf>,
}

/// `--api`: where to listen, or `None` for `off`.
#[derive(Clone, Copy, Debug)]
pub struct ApiAddr(pub Option<SocketAddr>);

/// Parses `--api`: host:port, or `off`.
pub fn parse_api_addr(s: &str) -> Result<ApiAddr, String> {
    if s == "off" {
        return Ok(ApiAddr(None));
    }
    s.parse()
        .map(|a| ApiAddr(Some(a)))
        .map_err(|_| format!("{s:?} is not ADDRESS:PORT (e.g. 127.0.0.1:9180) or off"))
}

/// Loads the tokens and starts the API's thread; an error stops `nvlb run` before it
/// says it is ready.
pub fn start_api(
    control: &Arc<Control>,
    opts: &ApiOptions,
    flows: Option<Arc<dyn FlowStats>>,
    requests: Arc<nvlb::metrics::ControlStats>,
) -> Result<(), String> {
    let Some(addr) = opts.addr else {
        return Ok(());
    };
    let tokens = match &opts.tokens {
        Some(f) => Tokens::from_file(f).map_err(|e| e.to_string())?,
        None => Tokens::default(),
    };
    let declared = control.declared();
    let known: Vec<&str> = declared
        .tenants()
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>();
    for c in tokens.callers() {
        if c.scope.name() != "operator" && !known.contains(&c.scope.name()) {
            eprintln!(
                "warning: token {:?} is scoped to tenant {:?}, which the policy does not have",
                c.name,
                c.scope.name()
            );
        }
    }
    if tokens.is_empty() {
        eprintln!(
            "warning: the API has no tokens (--api-tokens FILE): every call is refused with 401"
        );
    }
    let persist = Persist::new(control.clone());
    let api = Arc::new(Api::new(persist, tokens, flows).with_request_stats(requests));
    let local =
        server::spawn(api, addr).map_err(|e| format!("api: cannot listen on {addr}: {e}"))?;
    eprintln!("nvlb: api listening on {local}");
    Ok(())
}
