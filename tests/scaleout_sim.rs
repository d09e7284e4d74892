//! Scale-out in process: N engines built from one shared policy, each as its own
//! `[[balancer.instance]]` (the lab's policy for N instances), fed the same crafted
//! frames. Checks what the lab cannot count at this scale and prints the figures of
//! docs/scale-out.md:
//!
//! - with N = 2, 3 and 16 every instance picks the same DIP for each of 10 000 flows;
//! - a mid-flow segment on an instance that never saw the flow goes to the DIP the
//!   owner picked, and a DIP's reply on such an instance is translated from policy;
//! - N = 16, one instance lost: the flows that change DIP on whichever survivor ECMP
//!   sends them to (measured on every survivor: none), and, as figures only, the share
//!   of flows that change instance under the kernel's hash-threshold ECMP and under
//!   resilient hashing (both modelled here, not nvlb);
//! - N = 16, one DIP lost: the share of other flows that change DIP (Maglev), equal
//!   on every instance.

use std::net::IpAddr;
use std::sync::Arc;

use nvlb::craft::{self, Outer, Transport};
use nvlb::engine::{Egress, Engine, Verdict, output_len};
use nvlb::lab::scaleout::{PA_GATEWAY_MAC, instance_name, policy_text};
use nvlb::policy::{DipState, Snapshot};
use nvlb::wire::MacAddr;

const EXAMPLE: &str = include_str!("../lb-config/example.toml");
const SEC: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FLOWS: usize = 10_000;

/// The instances' views of the shared policy for `n` instances.
fn instances(n: usize) -> Vec<Arc<Snapshot>> {
    let base = Snapshot::from_toml(EXAMPLE, "example.toml").unwrap();
    let text = policy_text(EXAMPLE, &base, n).unwrap();
    let shared = Snapshot::from_toml(&text, "shared.toml").unwrap();
    (1..=n)
        .map(|i| Arc::new(shared.for_instance(&instance_name(i)).unwrap()))
        .collect()
}

/// One client flow to a public VIP.
#[derive(Clone, Copy, Debug)]
struct Flow {
    pool: usize,
    client: IpAddr,
    port: u16,
    /// The flow's ECMP hash as a router would compute it (any fixed function will do
    /// for the model; here: xorshift of the 5-tuple's parts).
    ecmp: u64,
}

fn flows(policy: &Snapshot) -> Vec<Flow> {
    let public: Vec<usize> = (0..policy.pools().len())
        .filter(|&i| policy.pools()[i].is_public())
        .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..FLOWS)
        .map(|i| {
            let pool = public[i % public.len()];
            let r = next();
            let client = if policy.pools()[pool].address.is_ipv6() {
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0xc,
                    (r >> 48) as u16,
                    0,
                    0,
                    (r >> 32) as u16,
                    r as u16,
                ))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::from(
                    0xC000_0000 | ((r >> 8) as u32 & 0x00FF_FFFF),
                ))
            };
            Flow {
                pool,
                client,
                port: 1024 + (r >> 40) as u16 % 60_000,
                ecmp: next(),
            }
        })
        .collect()
}

fn segment(p: &Snapshot, f: &Flow, flags: u8) -> Vec<u8> {
    let pool = &p.pools()[f.pool];
    let t = Transport::Tcp {
        src_port: f.port,
        dst_port: pool.port,
        flags,
        seq: 1000,
        ack: if flags & ACK != 0 { 5000 } else { 0 },
    };
    let ip = craft::ip_packet(f.client, pool.address, 64, t, &[]);
    craft::ip_frame(MacAddr([2, 0, 0, 0, 1, 1]), p.balancer().external.mac, &ip)
}

/// The DIP index an engine sends this segment to.
fn dip_of(e: &mut Engine, p: &Snapshot, f: &Flow, flags: u8, out: &mut [u8]) -> u16 {
    match e.process(SEC, &segment(p, f, flags), out) {
        Verdict::Forward { matched, .. } => {
            assert_eq!(matched.pool as usize, f.pool);
            matched.dip
        }
        other => panic!("{f:?} flags {flags:#x}: {other:?}"),
    }
}

fn dips(policies: &[Arc<Snapshot>], fl: &[Flow], flags: u8) -> Vec<Vec<u16>> {
    let mut out = vec![0u8; output_len(2048)];
    policies
        .iter()
        .map(|p| {
            let mut e = Engine::new(p.clone(), 0, 1);
            fl.iter()
                .map(|f| dip_of(&mut e, p, f, flags, &mut out))
                .collect()
        })
        .collect()
}

/// Linux's hash-threshold ECMP with equal weights: the hash space cut into n equal
/// ranges, in next-hop order.
fn hash_threshold(h: u64, n: usize) -> usize {
    ((u128::from(h >> 33) * n as u128) >> 31) as usize
}

/// Resilient hashing: a fixed table of buckets; a lost next hop's buckets are handed
/// to the survivors, every other bucket keeps its next hop.
fn resilient(h: u64, n: usize, lost: Option<usize>) -> usize {
    const BUCKETS: u64 = 4096;
    let b = (h % BUCKETS) as usize;
    let owner = b % n;
    match lost {
        Some(l) if owner == l => {
            let survivors: Vec<usize> = (0..n).filter(|&k| k != l).collect();
            survivors[(b / n) % survivors.len()]
        }
        _ => owner,
    }
}

#[test]
fn every_instance_picks_the_same_dip_for_each_of_10000_flows() {
    for n in [2, 3, 16] {
        let ps = instances(n);
        let fl = flows(&ps[0]);
        let picked = dips(&ps, &fl, SYN);
        let differ = (1..n)
            .map(|k| (0..FLOWS).filter(|&i| picked[k][i] != picked[0][i]).count())
            .sum::<usize>();
        println!("N = {n}: {FLOWS} flows, {differ} DIP choices differ between instances");
        assert_eq!(differ, 0);
        // Not a degenerate table: every DIP of every public pool gets flows.
        for (pool_id, pool) in ps[0]
            .pools()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_public())
        {
            for d in 0..pool.dips.len() {
                assert!(
                    (0..FLOWS).any(|i| fl[i].pool == pool_id && picked[0][i] == d as u16),
                    "{} DIP {d} unused",
                    pool.name
                );
            }
        }
    }
}

#[test]
fn a_mid_flow_segment_and_a_reply_need_no_state_on_another_instance() {
    let ps = instances(2);
    let fl = flows(&ps[0]);
    let mut out = vec![0u8; output_len(2048)];
    let mut owner = Engine::new(ps[0].clone(), 0, 1);
    let mut other = Engine::new(ps[1].clone(), 0, 1);
    for f in fl.iter().take(2000) {
        let d = dip_of(&mut owner, &ps[0], f, SYN, &mut out);
        // Routed PA network: NVGRE goes to the router's MAC, from the instance's own PA.
        assert_eq!(out[..6], PA_GATEWAY_MAC.0);
        assert_eq!(out[26..30], [192, 168, 6, 31]);
        // The DIP's reply reaches the instance that has no binding for it.
        let p = &ps[1];
        let pool = &p.pools()[f.pool];
        let dip = &pool.dips[usize::from(d)];
        let host = p.host(dip.host);
        let v6 = dip.ca.is_ipv6();
        let outer = Outer {
            src_mac: host.mac,
            dst_mac: p.balancer().provider.mac,
            src: host.pa(false).unwrap(),
            // The anycast gateway PA, as every host sends to.
            dst: "192.168.6.10".parse().unwrap(),
            vsid: dip.vsid.get(),
            flow_id: 1,
        };
        let t = Transport::Tcp {
            src_port: dip.port,
            dst_port: f.port,
            flags: ACK,
            seq: 5000,
            ack: 1001,
        };
        let ip = craft::ip_packet(dip.ca, f.client, 64, t, &[]);
        let inner = craft::ip_frame(dip.mac, p.subnet(dip.vsid).unwrap().lb_mac, &ip);
        let frame = craft::nvgre(&outer, &inner);
        match other.process(SEC, &frame, &mut out) {
            Verdict::Forward { egress, len, .. } => {
                assert_eq!(egress, Egress::External);
                // Source rewritten to the VIP: IPv4 source at 26, IPv6 at 22.
                let src = if v6 {
                    IpAddr::from(<[u8; 16]>::try_from(&out[22..38]).unwrap())
                } else {
                    IpAddr::from(<[u8; 4]>::try_from(&out[26..30]).unwrap())
                };
                assert_eq!(src, pool.address, "{len}");
            }
            v => panic!("reply on the other instance: {v:?}"),
        }
        // Then the client's next segment reaches it too: the owner's DIP.
        assert_eq!(dip_of(&mut other, &ps[1], f, ACK, &mut out), d, "{f:?}");
    }
}

#[test]
fn sixteen_instances_losing_one_instance_or_one_dip() {
    const N: usize = 16;
    let ps = instances(N);
    let fl = flows(&ps[0]);
    let before = dips(&ps, &fl, SYN);
    // One instance (the 6th) lost. nvlb's part: whichever survivor the routers' ECMP
    // sends a flow to, that instance (no state for it: a mid-flow segment, balanced
    // afresh) picks the DIP the flow had. Checked on every survivor, so it holds for
    // any ECMP scheme.
    let lost = 5;
    let survivors: Vec<usize> = (0..N).filter(|&k| k != lost).collect();
    let mut out = vec![0u8; output_len(2048)];
    let mut engines: Vec<Engine> = ps.iter().map(|p| Engine::new(p.clone(), 0, 1)).collect();
    let mut dip_changed = Vec::new();
    for (i, f) in fl.iter().enumerate() {
        let had = before[hash_threshold(f.ecmp, N)][i];
        for &k in &survivors {
            let d = dip_of(&mut engines[k], &ps[k], f, ACK, &mut out);
            if d != had {
                dip_changed.push((instance_name(k + 1), *f, had, d));
            }
        }
    }
    // The routers' part, for the figures only (models, not nvlb): the share of flows
    // that change instance under the kernel's hash-threshold ECMP and under resilient
    // hashing.
    let moved_ht = fl
        .iter()
        .filter(|f| survivors[hash_threshold(f.ecmp, N - 1)] != hash_threshold(f.ecmp, N))
        .count();
    let moved_res = fl
        .iter()
        .filter(|f| resilient(f.ecmp, N, Some(lost)) != resilient(f.ecmp, N, None))
        .count();
    let pct = |x: usize| x as f64 * 100.0 / FLOWS as f64;
    println!(
        "N = 16, one instance lost: flows that change instance: hash-threshold ECMP {:.1} %, \
         resilient hashing {:.1} % (1/16 = 6.25 %; both modelled); a mid-flow segment \
         changes DIP on {} of {} (flow, surviving instance) pairs",
        pct(moved_ht),
        pct(moved_res),
        dip_changed.len(),
        FLOWS * survivors.len()
    );
    assert!(
        dip_changed.is_empty(),
        "{} of {} (flow, surviving instance) pairs change DIP on a mid-flow segment; \
         first ones (instance, flow, DIP before, DIP after): {:?}",
        dip_changed.len(),
        FLOWS * survivors.len(),
        &dip_changed[..dip_changed.len().min(3)]
    );

    // One DIP lost (blue-web's first): new snapshots on every instance, as health
    // checks would make them.
    let (pool_id, pool) = ps[0]
        .pools()
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == "blue-web")
        .unwrap();
    let gone = pool.dips[0].key();
    let down: Vec<Arc<Snapshot>> = ps
        .iter()
        .map(|p| {
            Arc::new(
                p.overlay(
                    |_, d| {
                        if d.key() == gone {
                            DipState::Down
                        } else {
                            DipState::Active
                        }
                    },
                    &[],
                )
                .unwrap(),
            )
        })
        .collect();
    let after = dips(&down, &fl, SYN);
    let differ = (1..N)
        .map(|k| (0..FLOWS).filter(|&i| after[k][i] != after[0][i]).count())
        .sum::<usize>();
    let in_pool: Vec<usize> = (0..FLOWS).filter(|&i| fl[i].pool == pool_id).collect();
    let on_lost = in_pool.iter().filter(|&&i| before[0][i] == 0).count();
    let others_moved = in_pool
        .iter()
        .filter(|&&i| before[0][i] != 0 && after[0][i] != before[0][i])
        .count();
    println!(
        "N = 16, one DIP of blue-web lost: {on_lost} of its {} flows were on it and move; \
         {others_moved} of the other {} change DIP ({:.2} %); instances disagree on {differ}",
        in_pool.len(),
        in_pool.len() - on_lost,
        others_moved as f64 * 100.0 / (in_pool.len() - on_lost).max(1) as f64
    );
    assert_eq!(differ, 0);
    assert!(in_pool.iter().all(|&i| after[0][i] != 0));
    assert!(
        others_moved * 100 <= (in_pool.len() - on_lost),
        "Maglev moved > 1 %"
    );
}
