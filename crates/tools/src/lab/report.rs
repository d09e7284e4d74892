//! The lab's findings as a user reads them: one table per VIP (requests, answers per
//! DIP, failures, the bulk transfer), the LB's and the hosts' counters, and the list of
//! problems that make `nvlb lab` exit non-zero.
//!
//! Pure formatting and judgement over results already collected: it must never run
//! anything, and never call a run good when a request failed or was answered by any
//! VM but the one the pool's Maglev table picks for that request's 5-tuple.
//!
//! Why each answer is checked against the pick rather than "every DIP got some": the
//! requests leave from ports the client's kernel chooses, so whether 20 of them reach
//! each of several DIPs is chance (about one lab run in twenty missed a DIP). The
//! pick is exact: `policy::pick` is the function the engine balances with.

use std::fmt::Write;
use std::net::SocketAddr;

use super::topology::{PoolPlan, Topology};
use super::traffic::{Bulk, Requests};
use crate::policy::Snapshot;

/// What the lab did against one VIP.
#[derive(Clone, Debug)]
pub struct PoolResult {
    pub plan: PoolPlan,
    /// The namespace it was tried from; empty when it was not tried.
    pub source: String,
    pub requests: Option<Requests>,
    pub bulk: Option<Bulk>,
}

/// Failed requests shown per VIP before the rest are summarised.
const SHOWN_FAILURES: usize = 5;

/// The tables, one per VIP.
pub fn render(t: &Topology, results: &[PoolResult]) -> String {
    let mut s = String::new();
    for r in results {
        let p = &r.plan;
        let kind = if p.public { "public" } else { "CA VIP" };
        let addr = match p.address {
            std::net::IpAddr::V4(a) => format!("{a}:{}", p.port),
            std::net::IpAddr::V6(a) => format!("[{a}]:{}", p.port),
        };
        let Some(req) = &r.requests else {
            let _ = writeln!(
                s,
                "VIP {} ({}, {kind}) {addr}: not tried (no namespace of the lab reaches it)\n",
                p.name, p.tenant
            );
            continue;
        };
        let _ = writeln!(
            s,
            "VIP {} ({}, {kind}) {addr} from {}: {} requests, {} answered, {} failed",
            p.name,
            p.tenant,
            r.source,
            req.sent,
            req.answered(),
            req.failures.len()
        );
        let _ = writeln!(
            s,
            "  {:<28} {:<10} {:>6} {:>8}",
            "DIP", "VM", "WEIGHT", "ANSWERS"
        );
        for d in &p.dips {
            let vm = t.vms.get(d.vm).map(|v| v.name.as_str()).unwrap_or("?");
            let dip = match d.ca {
                std::net::IpAddr::V4(a) => format!("{a}:{}", d.port),
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", d.port),
            };
            let n = req.answers.get(vm).copied().unwrap_or(0);
            let _ = writeln!(s, "  {dip:<28} {vm:<10} {:>6} {n:>8}", d.weight);
        }
        for (name, n) in &req.answers {
            if !p.dips.iter().any(|d| vm_name(t, d.vm) == name) {
                let _ = writeln!(s, "  {:<28} {name:<10} {:>6} {n:>8}", "(not a DIP!)", "-");
            }
        }
        for f in req.failures.iter().take(SHOWN_FAILURES) {
            let _ = writeln!(s, "  failed {f}");
        }
        if req.failures.len() > SHOWN_FAILURES {
            let _ = writeln!(
                s,
                "  ... and {} more failures",
                req.failures.len() - SHOWN_FAILURES
            );
        }
        match &r.bulk {
            Some(b) => {
                let _ = writeln!(s, "  {}", bulk_line(b));
            }
            None => {
                let _ = writeln!(s, "  bulk: not run");
            }
        }
        s.push('\n');
    }
    s
}

fn vm_name(t: &Topology, i: usize) -> &str {
    t.vms.get(i).map(|v| v.name.as_str()).unwrap_or("?")
}

fn bulk_line(b: &Bulk) -> String {
    match &b.error {
        None => format!(
            "bulk: {} bytes from {} in {:.3} s ({:.1} MB/s), sha256 equal",
            b.bytes,
            b.served_by,
            b.secs,
            b.rate_mb_s()
        ),
        Some(e) => format!(
            "bulk: FAILED after {} bytes from {}: {e}",
            b.bytes,
            if b.served_by.is_empty() {
                "?"
            } else {
                &b.served_by
            }
        ),
    }
}

/// A process's final counters, indented; zero-valued detail lines (`drop.x 0`,
/// `io.x 0`) are left out, totals are kept.
pub fn counters(title: &str, stdout: &str) -> String {
    let mut s = format!("{title}\n");
    let mut any = false;
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or("");
        let zero_detail = key.contains('.') && words.last() == Some("0");
        if !line.trim().is_empty() && !zero_detail {
            let _ = writeln!(s, "  {}", line.trim());
            any = true;
        }
    }
    if !any {
        s.push_str("  (no counters printed)\n");
    }
    s
}

/// A process's final counters on one line (`label: key value, ...`), zero values and
/// non-counter lines left out: for the hosts, which are many.
pub fn counters_line(label: &str, stdout: &str) -> String {
    let mut parts = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [key, value] = words[..]
            && value.parse::<u64>().is_ok_and(|v| v > 0)
        {
            parts.push(format!("{key} {value}"));
        }
    }
    if parts.is_empty() {
        parts.push("(no counters printed)".to_string());
    }
    format!("  {label}: {}\n", parts.join(", "))
}

/// The VM that the pool's Maglev table gives a TCP connection from `client` (as the
/// engine hashes it: the frontend's VSID, the VIP and its port); `None` when the table
/// picks no DIP or one that no VM of the lab holds.
fn picked_vm<'t>(
    policy: &Snapshot,
    t: &'t Topology,
    plan: &PoolPlan,
    client: SocketAddr,
) -> Option<&'t str> {
    let pool = policy.pools().get(plan.index)?;
    let hash = pool.flow_hash(
        pool.frontend.get(),
        6,
        client.ip(),
        client.port(),
        pool.address,
        pool.port,
    );
    let index = usize::from(pool.pick(hash)?);
    let dip = plan.dips.iter().find(|d| d.index == index)?;
    Some(vm_name(t, dip.vm))
}

/// Why the run is not good; empty when it is. `policy` is the snapshot the LB runs.
pub fn problems(policy: &Snapshot, t: &Topology, results: &[PoolResult]) -> Vec<String> {
    let mut v = Vec::new();
    for r in results {
        let p = &r.plan;
        let Some(req) = &r.requests else {
            continue;
        };
        if !req.failures.is_empty() {
            v.push(format!(
                "{}: {} of {} requests failed",
                p.name,
                req.failures.len(),
                req.sent
            ));
        }
        for name in req.answers.keys() {
            if !p.dips.iter().any(|d| vm_name(t, d.vm) == name) {
                v.push(format!(
                    "{}: answered by {name}, which is not one of its DIPs",
                    p.name
                ));
            }
        }
        let wrong: Vec<String> = req
            .served
            .iter()
            .filter_map(|s| {
                let picked = picked_vm(policy, t, p, s.client);
                (picked != Some(s.vm.as_str())).then(|| {
                    format!(
                        "#{} from {} answered by {}, Maglev picks {}",
                        s.request,
                        s.client,
                        s.vm,
                        picked.unwrap_or("no DIP of the lab")
                    )
                })
            })
            .collect();
        if !wrong.is_empty() {
            v.push(format!(
                "{}: {} of {} answers not from the DIP the pool's table picks: {}",
                p.name,
                wrong.len(),
                req.served.len(),
                wrong
                    .iter()
                    .take(SHOWN_FAILURES)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        match &r.bulk {
            Some(Bulk { error: Some(e), .. }) => v.push(format!("{}: bulk transfer: {e}", p.name)),
            Some(b) if !p.dips.iter().any(|d| vm_name(t, d.vm) == b.served_by) => v.push(format!(
                "{}: bulk transfer served by {:?}, not a DIP",
                p.name, b.served_by
            )),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::traffic::Served;
    use std::collections::BTreeMap;

    fn policy() -> Snapshot {
        Snapshot::from_toml(include_str!("../../../../lb-config/example.toml"), "x").unwrap()
    }

    /// A client of red-web (a CA VIP: a red VM's address) on `port`.
    fn client(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 7], port))
    }

    /// `served` as (client port, VM that answered) pairs.
    fn result(t: &Topology, pool: &str, served: &[(u16, &str)], failures: usize) -> PoolResult {
        let plan = t.pools.iter().find(|p| p.name == pool).unwrap().clone();
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        for (_, vm) in served {
            *answers.entry(vm.to_string()).or_default() += 1;
        }
        let served: Vec<Served> = served
            .iter()
            .enumerate()
            .map(|(request, (port, vm))| Served {
                request,
                client: client(*port),
                vm: vm.to_string(),
            })
            .collect();
        PoolResult {
            plan,
            source: "nvlab-client".into(),
            requests: Some(Requests {
                sent: served.len() + failures,
                answers,
                served,
                failures: (0..failures).map(|i| format!("#{i}: timeout")).collect(),
            }),
            bulk: Some(Bulk {
                bytes: 10_485_760,
                secs: 0.5,
                served_by: "red-5".into(),
                sha256_ok: true,
                error: None,
            }),
        }
    }

    /// Each of `ports` with the VM that red-web's table picks for it.
    fn picked(s: &Snapshot, t: &Topology, ports: std::ops::Range<u16>) -> Vec<(u16, String)> {
        let plan = t.pools.iter().find(|p| p.name == "red-web").unwrap();
        ports
            .map(|port| {
                let vm = picked_vm(s, t, plan, client(port)).unwrap();
                (port, vm.to_string())
            })
            .collect()
    }

    #[test]
    fn a_good_run_has_no_problems_and_shows_every_dip() {
        let s = policy();
        let t = Topology::from_snapshot(&s, "nvlab-");
        let picks = picked(&s, &t, 40000..40040);
        let served: Vec<(u16, &str)> = picks.iter().map(|(p, v)| (*p, v.as_str())).collect();
        let on_6 = served.iter().filter(|(_, v)| *v == "red-6").count();
        assert!(
            on_6 > 0 && on_6 < 40,
            "both DIPs are picked: {on_6} of 40 on red-6"
        );
        let r = [result(&t, "red-web", &served, 0)];
        assert!(
            problems(&s, &t, &r).is_empty(),
            "{:?}",
            problems(&s, &t, &r)
        );
        let text = render(&t, &r);
        assert!(
            text.contains("40 requests, 40 answered, 0 failed"),
            "{text}"
        );
        assert!(text.contains("10.0.0.5:80"), "{text}");
        let row = text.lines().find(|l| l.contains("red-6")).unwrap();
        assert_eq!(
            row.split_whitespace().last(),
            Some(on_6.to_string().as_str())
        );
        assert!(text.contains("(21.0 MB/s), sha256 equal"), "{text}");
    }

    #[test]
    fn failures_strangers_wrong_picks_and_bad_bulk_are_problems() {
        let s = policy();
        let t = Topology::from_snapshot(&s, "nvlab-");
        let picks = picked(&s, &t, 40000..40030);
        let mut served: Vec<(u16, &str)> = picks.iter().map(|(p, v)| (*p, v.as_str())).collect();
        // One answer from the other red DIP than the table picks, one from a stranger.
        let other = if served[3].1 == "red-5" {
            "red-6"
        } else {
            "red-5"
        };
        served[3].1 = other;
        served.push((41000, "blue-5"));
        let mut r = result(&t, "red-web", &served, 2);
        r.bulk.as_mut().unwrap().error = Some("sha256 x, expected y".into());
        let p = problems(&s, &t, std::slice::from_ref(&r));
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].contains("2 of 33 requests failed"), "{p:?}");
        assert!(
            p[1].contains("blue-5, which is not one of its DIPs"),
            "{p:?}"
        );
        assert!(p[2].contains("2 of 31 answers not from the DIP"), "{p:?}");
        let wrong = format!("#3 from 10.0.0.7:40003 answered by {other}, Maglev picks");
        assert!(p[2].contains(&wrong), "{p:?}");
        assert!(p[3].contains("sha256"), "{p:?}");
        let text = render(&t, &[r]);
        assert!(text.contains("(not a DIP!)"), "{text}");
        assert!(text.contains("failed #1: timeout"), "{text}");
        assert!(text.contains("bulk: FAILED"), "{text}");
    }

    #[test]
    fn counters_leave_out_zeros() {
        let c = counters(
            "LB",
            "packets_in 10\ndropped 3\ndrop.no_vip 3\ndrop.ttl 0\nio.x 0\n",
        );
        assert_eq!(c, "LB\n  packets_in 10\n  dropped 3\n  drop.no_vip 3\n");
        assert!(counters("LB", "").contains("no counters"));
        let line = counters_line(
            "host1",
            "nvlb: host host1 stopped after 1 s\nrx_pa 7\nvm_to_vm 0\ndrop.x 2\n",
        );
        assert_eq!(line, "  host1: rx_pa 7, drop.x 2\n");
    }
}
