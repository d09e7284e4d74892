//! The prober against crafted frames: a simulated DIP answers (or not) the frames the
//! prober emits, through the real engine's recognition of probe replies, with a
//! made-up clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::craft::{self, Outer, Transport};
use crate::engine::{Engine, Verdict, output_len};
use crate::policy::{DipKey, Snapshot};
use crate::wire::tcp::flags;

use super::frame;
use super::prober::Prober;

const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

fn policy(text: &str) -> Arc<Snapshot> {
    Arc::new(Snapshot::from_toml(text, "example.toml").unwrap())
}

fn key(p: &Snapshot, pool: &str, ca: &str) -> DipKey {
    p.pool_named(pool)
        .unwrap()
        .1
        .dips
        .iter()
        .find(|d| d.ca.to_string() == ca)
        .unwrap()
        .key()
}

/// The DIP side of a probe: answers a probe frame as the DIP's host would send the
/// DIP's answer back to the LB.
struct Dip<'a> {
    policy: &'a Snapshot,
    /// Spoof: send from this PA instead of the DIP's host.
    from_pa: Option<IpAddr>,
}

impl Dip<'_> {
    fn answer(&self, probe: &[u8], f: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let p = frame::parse(probe).expect("a probe frame");
        let vsid = crate::policy::Vsid::new(p.vsid).unwrap();
        let rec = self
            .policy
            .lookup(vsid, p.dst)
            .expect("probe to a known CA");
        let host = self.policy.get_host(rec.host).unwrap();
        let subnet = self.policy.subnet(vsid).unwrap();
        let b = self.policy.balancer();
        let ip = craft::ip_packet(
            p.dst,
            p.src,
            64,
            Transport::Tcp {
                src_port: p.dst_port,
                dst_port: p.src_port,
                flags: f,
                seq,
                ack,
            },
            payload,
        );
        let inner = craft::ip_frame(rec.mac, subnet.lb_mac, &ip);
        // The probe's outer source is the LB's PA; the host answers from its own.
        let lb_pa = p.host_pa;
        craft::nvgre(
            &Outer {
                src_mac: host.mac,
                dst_mac: b.provider.mac,
                src: self
                    .from_pa
                    .unwrap_or_else(|| host.pa(lb_pa.is_ipv6()).unwrap()),
                dst: lb_pa,
                vsid: p.vsid,
                flow_id: 3,
            },
            &inner,
        )
    }
}

/// The probe frame among `out` sent to `ca`:`port`.
fn to(out: &[Vec<u8>], ca: &str, port: u16) -> Vec<u8> {
    out.iter()
        .find(|f| frame::parse(f).is_some_and(|p| p.dst.to_string() == ca && p.dst_port == port))
        .unwrap_or_else(|| panic!("no probe to {ca}:{port} among {}", out.len()))
        .clone()
}

/// Every frame the engine must pass to the health thread, unchanged.
fn through_engine(engine: &mut Engine, frame: &[u8]) {
    let mut out = vec![0u8; output_len(frame.len())];
    let v = engine.process(0, frame, &mut out);
    assert_eq!(v, Verdict::Local, "a probe reply is for the health thread");
}

#[test]
fn probes_leave_as_data_does() {
    let p = policy(EXAMPLE);
    let mut prober = Prober::new(7);
    let t0 = Instant::now();
    assert!(prober.sync(&p, t0).is_empty());
    let mut out = Vec::new();
    // Nothing in the first interval (the hosts of a fresh LB need a moment).
    assert!(
        prober
            .poll(t0 + Duration::from_millis(900), &mut out)
            .is_empty()
    );
    assert!(out.is_empty());
    // Within two intervals every checked DIP of every pool got a SYN: 17 DIPs.
    prober.poll(t0 + Duration::from_millis(2100), &mut out);
    assert_eq!(out.len(), 17);
    let syn = to(&out, "10.0.0.6", 80);
    let f = frame::parse(&syn).unwrap();
    assert_eq!(
        f.host_pa.to_string(),
        "192.168.6.10",
        "outer source: the LB's PA"
    );
    assert_eq!(f.vsid, 5001);
    assert_eq!(
        f.src.to_string(),
        "10.0.0.250",
        "the LB's SNAT CA in the DIP's VSID"
    );
    assert!(p.balancer().health.is_probe_port(f.src_port));
    assert_eq!(f.tcp.flags, flags::SYN);
    let eth = crate::wire::ethernet::Frame::new_checked(&syn[..]).unwrap();
    assert_eq!(
        eth.dst_addr(),
        p.get_host(p.host_by_pa("192.168.6.12".parse().unwrap()).unwrap())
            .unwrap()
            .mac
    );
    // Inner MACs: the subnet's LB MAC to the DIP's.
    let inner = &syn[14 + 20 + 8..];
    assert_eq!(&inner[..6], &[0x00, 0x1d, 0xd8, 0xb7, 0x1c, 0x02]);
    assert_eq!(&inner[6..12], &[0x02, 0x00, 0x00, 0xb1, 0x00, 0xfe]);
    // IPv6 DIPs from the IPv6 SNAT CA; the CA VIP's DIPs on the check's port.
    let six = to(&out, "fd00:0:0:1::7", 80);
    let six = frame::parse(&six).unwrap();
    assert_eq!(six.src.to_string(), "fd00:0:0:1::fa");
    let tier2 = to(&out, "10.0.1.22", 8080);
    let tier2 = frame::parse(&tier2).unwrap();
    assert_eq!(
        (tier2.vsid, tier2.src.to_string().as_str()),
        (5002, "10.0.1.250")
    );
}

#[test]
fn tcp_check_falls_on_timeouts_and_rises_on_syn_acks() {
    let p = policy(EXAMPLE);
    let mut engine = Engine::new(p.clone(), 0, 1);
    let dip = Dip {
        policy: &p,
        from_pa: None,
    };
    let victim = key(&p, "blue-web6", "fd00:0:0:1::6");
    let mut prober = Prober::new(1);
    let t0 = Instant::now();
    prober.sync(&p, t0);
    let mut t = t0 + Duration::from_secs(2);
    let mut out = Vec::new();
    let mut downs = Vec::new();
    // Two intervals without an answer: down after the second timeout (fall = 2).
    for _ in 0..3 {
        out.clear();
        downs.extend(prober.poll(t, &mut out));
        t += Duration::from_millis(600); // past the 500 ms timeout
        downs.extend(prober.poll(t, &mut out));
        t += Duration::from_millis(400);
    }
    let mine: Vec<_> = downs
        .iter()
        .filter(|d| d.pool == "blue-web6" && d.dip == victim)
        .collect();
    assert_eq!(mine.len(), 1, "{downs:?}");
    assert!(!mine[0].up);
    assert_eq!(
        mine[0].to_string(),
        "blue-web6 [fd00:0:0:1::6]:80 down (2 x timeout)"
    );
    // Now it answers: a SYN-ACK, through the engine, for two probes in a row.
    let mut ups = Vec::new();
    for round in 0..2 {
        out.clear();
        ups.extend(prober.poll(t, &mut out));
        let syn = to(&out, "fd00:0:0:1::6", 80);
        let s = frame::parse(&syn).unwrap().tcp.seq;
        let synack = dip.answer(&syn, flags::SYN | flags::ACK, 99, s.wrapping_add(1), &[]);
        through_engine(&mut engine, &synack);
        out.clear();
        let change = prober.receive(t + Duration::from_millis(3), &synack, &mut out);
        // The prober resets the half-open connection at once.
        let rst = frame::parse(&out[0]).unwrap();
        assert_eq!(rst.tcp.flags & flags::RST, flags::RST);
        assert_eq!(change.is_some(), round == 1, "up after rise = 2");
        ups.extend(change);
        t += Duration::from_secs(1);
    }
    assert_eq!(ups.len(), 1);
    assert_eq!(
        ups[0].to_string(),
        "blue-web6 [fd00:0:0:1::6]:80 up (2 x ok)"
    );
    let st = prober.report();
    let h = st
        .iter()
        .find(|d| d.pool == "blue-web6" && d.dip == victim)
        .unwrap();
    assert!(h.up);
    assert_eq!(h.last_latency, Some(Duration::from_millis(3)));
    assert_eq!((h.probes, h.failures), (5, 3));
}

#[test]
fn http_check_reads_status_and_body_and_ignores_spoofs() {
    let p = policy(EXAMPLE);
    let mut engine = Engine::new(p.clone(), 0, 1);
    let dip = Dip {
        policy: &p,
        from_pa: None,
    };
    let mut prober = Prober::new(2);
    let t0 = Instant::now();
    prober.sync(&p, t0);
    let t = t0 + Duration::from_secs(2);
    let mut out = Vec::new();
    prober.poll(t, &mut out);
    let syn = to(&out, "10.0.0.6", 80);
    let isn = frame::parse(&syn).unwrap().tcp.seq;
    // A SYN-ACK from another host (host1 holds 10.0.0.5, not 10.0.0.6) is ignored.
    let spoof = Dip {
        policy: &p,
        from_pa: Some("192.168.6.11".parse().unwrap()),
    };
    let fake = spoof.answer(&syn, flags::SYN | flags::ACK, 500, isn.wrapping_add(1), &[]);
    out.clear();
    assert_eq!(prober.receive(t, &fake, &mut out), None);
    assert!(out.is_empty(), "nothing answers a spoofed reply");
    // The real one: the request follows.
    let synack = dip.answer(&syn, flags::SYN | flags::ACK, 500, isn.wrapping_add(1), &[]);
    through_engine(&mut engine, &synack);
    assert_eq!(prober.receive(t, &synack, &mut out), None);
    let req = frame::parse(&out[0]).unwrap();
    let text = String::from_utf8(req.tcp.payload.to_vec()).unwrap();
    assert!(
        text.starts_with("GET / HTTP/1.0\r\nHost: 10.0.0.6\r\n"),
        "{text:?}"
    );
    let after_req = isn.wrapping_add(1 + text.len() as u32);
    // The answer, with the body text the check wants ("blue"), and FIN.
    let body = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nblue-6\n";
    let answer = dip.answer(
        &syn,
        flags::ACK | flags::PSH | flags::FIN,
        501,
        after_req,
        body,
    );
    through_engine(&mut engine, &answer);
    out.clear();
    assert_eq!(
        prober.receive(t, &answer, &mut out),
        None,
        "up already: no change"
    );
    let h = prober
        .report()
        .into_iter()
        .find(|d| d.pool == "blue-web" && d.dip.ca.to_string() == "10.0.0.6")
        .unwrap();
    assert_eq!(h.last_result.as_deref(), Some("ok"));
    assert_eq!(
        frame::parse(&out[0]).unwrap().tcp.flags & flags::RST,
        flags::RST
    );
    // The engine never takes a probe port for anything else: a reply to a port outside
    // the range is an ordinary (unmatched) return packet.
    let mut other = answer.clone();
    let off = 14 + 20 + 8 + 14 + 20 + 2;
    other[off..off + 2].copy_from_slice(&20000u16.to_be_bytes());
    let mut buf = vec![0u8; output_len(other.len())];
    assert_ne!(engine.process(0, &other, &mut buf), Verdict::Local);
}

#[test]
fn a_wrong_body_fails_and_reloads_keep_or_release_state() {
    let text = EXAMPLE.replace("body = \"red\"", "body = \"green\"");
    let p = policy(&text);
    let dip = Dip {
        policy: &p,
        from_pa: None,
    };
    let mut prober = Prober::new(3);
    let t0 = Instant::now();
    prober.sync(&p, t0);
    let mut t = t0 + Duration::from_secs(2);
    let mut downs = Vec::new();
    for _ in 0..2 {
        let mut out = Vec::new();
        prober.poll(t, &mut out);
        // blue-web's 10.0.0.5 (VSID 5001) and red-web's (6001) share the CA: pick red.
        let syn = out
            .iter()
            .find(|f| {
                frame::parse(f).is_some_and(|x| {
                    x.vsid == 6001 && x.dst_port == 80 && x.dst.to_string() == "10.0.0.5"
                })
            })
            .unwrap()
            .clone();
        let isn = frame::parse(&syn).unwrap().tcp.seq;
        let synack = dip.answer(&syn, flags::SYN | flags::ACK, 1, isn.wrapping_add(1), &[]);
        out.clear();
        prober.receive(t, &synack, &mut out);
        let req_len = frame::parse(&out[0]).unwrap().tcp.payload.len() as u32;
        let body = b"HTTP/1.1 200 OK\r\n\r\nred-5\n";
        let answer = dip.answer(
            &syn,
            flags::ACK | flags::FIN,
            2,
            isn.wrapping_add(1 + req_len),
            body,
        );
        downs.extend(prober.receive(t, &answer, &mut out));
        t += Duration::from_secs(1);
    }
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(
        downs[0].to_string(),
        "red-web 10.0.0.5:80 down (2 x body mismatch)"
    );
    // A reload that keeps the pool keeps the DIP down; one that drops the check
    // releases it (the caller brings it up).
    let same = policy(&text);
    assert!(prober.sync(&same, t).is_empty());
    assert!(
        !prober
            .report()
            .iter()
            .find(|d| d.pool == "red-web" && d.dip.ca.to_string() == "10.0.0.5")
            .unwrap()
            .up
    );
    let unchecked = policy(&text.replace(
        "health = { protocol = \"http\", body = \"green\", interval = \"1s\", timeout = \"500ms\", rise = 2, fall = 2 }\n",
        "",
    ));
    let released = prober.sync(&unchecked, t);
    assert_eq!(
        released,
        vec![("red-web".to_string(), key(&p, "red-web", "10.0.0.5"))]
    );
    assert!(prober.report().iter().all(|d| d.pool != "red-web"));
}

/// What the docs quote: when one DIP of blue-web goes down, which flows move.
/// Established flows never move (the flow table keeps their binding); of new flows,
/// exactly those Maglev gave the down DIP move, plus the few entries of healthy DIPs
/// that the rebuilt table shifts. A pool with no DIP left drops new flows, counted as
/// `no_healthy_dip`.
#[test]
fn a_down_dip_moves_only_its_own_new_flows_and_an_empty_pool_drops() {
    use crate::Control;
    use crate::engine::DropReason;
    const FLOWS: u16 = 20_000;
    let dir = std::env::temp_dir().join(format!("nvlb-health-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    std::fs::write(&file, EXAMPLE).unwrap();
    let control = Control::open(&file).unwrap();
    let p = control.policy();
    let b = p.balancer().clone();
    let vip: IpAddr = "203.0.113.10".parse().unwrap();
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    let frame = |port: u16, f: u8| {
        let ip = craft::ip_packet(
            client,
            vip,
            64,
            Transport::Tcp {
                src_port: port,
                dst_port: 80,
                flags: f,
                seq: 1,
                ack: 0,
            },
            &[],
        );
        craft::ip_frame(b.external.gateway_mac.unwrap(), b.external.mac, &ip)
    };
    let mut out = vec![0u8; 2048];
    let dip_of = |engine: &mut Engine, port: u16, f: u8, out: &mut Vec<u8>| match engine.process(
        0,
        &frame(port, f),
        out,
    ) {
        Verdict::Forward { matched, .. } => {
            Ok(engine.policy().pool(matched.pool).dips[usize::from(matched.dip)].key())
        }
        Verdict::Drop(r) => Err(r),
        v => panic!("{v:?}"),
    };
    let mut established = Engine::new(p.clone(), 0, 1);
    let before: Vec<DipKey> = (1..=FLOWS)
        .map(|port| dip_of(&mut established, port, flags::SYN, &mut out).unwrap())
        .collect();
    let victim = key(&p, "blue-web", "10.0.0.6");
    assert!(control.set_dip_health("blue-web", victim, false).unwrap());
    established.set_policy(control.policy());
    let mut fresh = Engine::new(control.policy(), 0, 1);
    let (mut kept, mut own_moved, mut others_moved, mut on_victim) = (0, 0, 0, 0);
    for (port, was) in (1..=FLOWS).zip(&before) {
        if dip_of(&mut established, port, flags::ACK, &mut out).unwrap() == *was {
            kept += 1;
        }
        let now = dip_of(&mut fresh, port, flags::SYN, &mut out).unwrap();
        assert_ne!(now, victim, "a new flow went to the down DIP");
        if *was == victim {
            on_victim += 1;
            own_moved += 1;
        } else if now != *was {
            others_moved += 1;
        }
    }
    eprintln!(
        "blue-web, 1 of 4 DIPs (weights 1,1,1,2) down, {FLOWS} flows: established kept \
         {kept}; new flows moved: {own_moved} of the down DIP's {on_victim} \
         ({:.1}%), {others_moved} of the healthy DIPs' {} ({:.3}%)",
        100.0 * f64::from(on_victim) / f64::from(FLOWS),
        u32::from(FLOWS) - on_victim,
        100.0 * f64::from(others_moved) / f64::from(u32::from(FLOWS) - on_victim)
    );
    assert_eq!(kept, FLOWS, "established flows keep their DIP");
    assert!(
        on_victim > 0 && others_moved * 100 < u32::from(FLOWS),
        "{others_moved}"
    );
    // Every DIP of red-web down: new flows are dropped with a counted reason.
    let red = control.policy();
    for d in &red.pool_named("red-web").unwrap().1.dips {
        control.set_dip_health("red-web", d.key(), false).unwrap();
    }
    let mut e = Engine::new(control.policy(), 0, 1);
    let red_vip: IpAddr = "203.0.113.20".parse().unwrap();
    let ip = craft::ip_packet(
        client,
        red_vip,
        64,
        Transport::Tcp {
            src_port: 4000,
            dst_port: 80,
            flags: flags::SYN,
            seq: 1,
            ack: 0,
        },
        &[],
    );
    let syn = craft::ip_frame(b.external.gateway_mac.unwrap(), b.external.mac, &ip);
    assert_eq!(
        e.process(0, &syn, &mut out),
        Verdict::Drop(DropReason::NoHealthyDip)
    );
    assert_eq!(e.counters().dropped(DropReason::NoHealthyDip), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
