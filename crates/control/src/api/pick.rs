//! `POST /v1/pools/{pool}/pick`: which DIP the running policy gives each of a list of
//! new flows. For operators asking where a client lands, and for checking that
//! instances of a scale-out agree (tests/lab_scaleout.rs asks every instance for the
//! same 10 000 flows). The answer is computed by `VipPool::flow_hash` and
//! `VipPool::pick`, the functions the engine balances with; it must never create,
//! touch or count a flow.

use std::net::SocketAddr;

use serde_json::Value;

use super::fields::{Bad, Fields};
use super::replies::Pick;
use crate::policy::{Protocol, VipPool};

/// Most flows one call may ask about: the answer stays well under the API's body
/// limits and a scrape-sized amount of work.
pub const MAX_CLIENTS: usize = 65_536;

/// The answer for body `v` (`{"clients": ["IP:PORT", ...], "port": N, "protocol": P}`).
pub(super) fn pick(p: &VipPool, generation: u64, v: &Value) -> Result<Pick, Bad> {
    let f = Fields::of(v, "", &["clients", "port", "protocol"])?;
    let clients = f
        .strings("clients")?
        .ok_or_else(|| Bad("clients: missing (a list of \"IP:PORT\")".into()))?;
    if clients.len() > MAX_CLIENTS {
        return Err(Bad(format!(
            "clients: {} flows asked, at most {MAX_CLIENTS} per call",
            clients.len()
        )));
    }
    let port = match f.int("port")? {
        None if p.rule.all_ports => {
            return Err(Bad(format!(
                "port: missing; pool {:?} is an all-ports rule, give the VIP port",
                p.name
            )));
        }
        None => p.port,
        Some(n) => u16::try_from(n)
            .ok()
            .filter(|&n| n != 0 && (p.rule.all_ports || n == p.port))
            .ok_or_else(|| Bad(format!("port: {n} is not a port pool {:?} serves", p.name)))?,
    };
    let protocol = match f.str("protocol")?.as_deref() {
        None => p.protocol,
        Some(name) => match [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .find(|x| x.name() == name)
        {
            Some(x) if p.rule.all_ports || x == p.protocol => x,
            _ => {
                return Err(Bad(format!(
                    "protocol: {name:?} is not a protocol pool {:?} serves",
                    p.name
                )));
            }
        },
    };
    let proto = protocol.number();
    let mut dips = Vec::with_capacity(clients.len());
    for (i, c) in clients.iter().enumerate() {
        let client: SocketAddr = c
            .parse()
            .map_err(|_| Bad(format!("clients[{i}]: {c:?} is not IP:PORT")))?;
        if client.is_ipv6() != p.address.is_ipv6() {
            return Err(Bad(format!(
                "clients[{i}]: {c:?} is not of the family of VIP {}",
                p.address
            )));
        }
        let hash = p.flow_hash(
            p.frontend.get(),
            proto,
            client.ip(),
            client.port(),
            p.address,
            port,
        );
        let dip = p
            .pick(hash)
            .and_then(|i| p.dips.get(usize::from(i)))
            .map(|d| {
                let dport = if p.rule.all_ports { port } else { d.port };
                SocketAddr::new(d.ca, dport).to_string()
            });
        dips.push(dip);
    }
    Ok(Pick {
        pool: p.name.clone(),
        generation,
        vip: SocketAddr::new(p.address, port).to_string(),
        protocol: protocol.name().into(),
        clients,
        dips,
    })
}
