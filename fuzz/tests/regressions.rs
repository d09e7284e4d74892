//! Every input a fuzz target ever failed on, minimised and kept under regressions/<target>/,
//! replayed through the harness: each must now pass. Run without libFuzzer:
//! `cargo test --no-default-features` (tests/fuzz-smoke.sh does).

use std::path::Path;

/// Replays every input under regressions/<target>/ (dot files aside) and returns their
/// names; a target with none fails, so that an emptied directory cannot pass as "every
/// input replays".
fn replay(target: &str, run: fn(&[u8]) -> Result<(), String>) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = run(&data) {
            panic!("{}: {e}", path.display());
        }
        names.push(name);
    }
    assert!(
        !names.is_empty(),
        "{}: no regression inputs, nothing replayed",
        dir.display()
    );
    eprintln!("{target}: {} regression inputs pass", names.len());
    names
}

#[test]
fn engine_regressions_pass() {
    replay("engine", nvlb_fuzz::engine::run);
}

#[test]
fn config_regressions_pass() {
    replay("config", nvlb_fuzz::config::run);
}

/// What each config regression input is kept for, as `nvlb check` would report it:
/// accepted (with its warnings' positions) or refused (with every diagnostic's
/// position), so that an input that stops reaching its corner is noticed.
const CONFIG_CORNERS: &[(&str, &str)] = &[
    // lb-config/bad/three-problems.toml: a bad duration and a bad MAC (value checks)
    // and a DIP without lookup record (cross-reference pass), reported in file order.
    ("three-problems-in-file-order", "refused 17:15 21:7 44:17"),
    // Invalid UTF-8 (replaced by U+FFFD, three bytes each) and multibyte characters
    // before a syntax error: its column counts characters, not bytes.
    (
        "replaced-bytes-and-multibyte-before-a-syntax-error",
        "refused 2:15",
    ),
    // A syntax error at the very end of a text without a final newline: one column
    // past the last character of the last line.
    ("unclosed-table-at-the-end-without-newline", "refused 1:10"),
    // Nothing at all: the missing [balancer] is placed at 1:1 of an empty line.
    ("empty-file", "refused 1:1"),
    // CRLF line endings: the carriage return is not a line of its own.
    ("crlf-line-endings-wrong-type", "refused 2:8"),
    // blue-web's weights 1:1:1:65535, the bound: the full 65537-entry Maglev table is
    // built (the replay does not shrink it) and an engine runs the policy.
    ("dip-weight-at-the-maglev-bound-accepted", "accepted"),
    // One past the bound: refused at the weight.
    ("dip-weight-past-the-maglev-bound-refused", "refused 214:42"),
    // A PA MTU that cannot carry 1500-byte inner packets: accepted, with a warning
    // placed at the value, and the engine built from it.
    (
        "provider-mtu-1500-accepted-with-a-warning",
        "accepted, warnings 35:7",
    ),
];

#[test]
fn config_regressions_reach_their_corners() {
    let mut names = replay("config", nvlb_fuzz::config::run);
    names.sort();
    let mut kept: Vec<String> = CONFIG_CORNERS.iter().map(|(n, _)| n.to_string()).collect();
    kept.sort();
    assert_eq!(
        names, kept,
        "regressions/config and CONFIG_CORNERS must name the same inputs"
    );
    let at = |ds: &[nvlb::policy::Diagnostic]| {
        ds.iter()
            .map(|d| format!("{}:{}", d.line, d.column))
            .collect::<Vec<_>>()
    };
    for (name, want) in CONFIG_CORNERS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions/config")
            .join(name);
        let text = nvlb_fuzz::config::text(&std::fs::read(&path).unwrap()).unwrap();
        let got = match nvlb::policy::Snapshot::from_toml(&text, "fuzz.toml") {
            Ok(s) if s.warnings().is_empty() => "accepted".to_string(),
            Ok(s) => format!("accepted, warnings {}", at(s.warnings()).join(" ")),
            Err(e) => format!("refused {}", at(&e.errors).join(" ")),
        };
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn api_regressions_pass() {
    replay("api", nvlb_fuzz::api::run);
}

/// The invariants can fail: a forwarded frame whose VSID is changed to another
/// tenant's, or whose TCP checksum is broken, is refused by `check::output`.
#[test]
fn the_checks_catch_a_wrong_tenant_and_a_bad_checksum() {
    use nvlb::engine::{Engine, Verdict, output_len};
    let p = nvlb_fuzz::engine::policy();
    let frames = nvlb_fuzz::seeds::built_frames();
    let mut e = Engine::new(p.clone(), 0, 1);
    let input = &frames[0];
    let mut out = vec![0u8; output_len(input.len())];
    let Verdict::Forward {
        egress,
        len,
        matched,
    } = e.process(1_000_000_000, input, &mut out)
    else {
        panic!("the first built frame is a public-VIP SYN and must be forwarded");
    };
    let what = nvlb_fuzz::check::Emitted::Forward { egress, matched };
    let good = out[..len].to_vec();
    nvlb_fuzz::check::output(&p, input, &good, what).unwrap();
    // The GRE key sits at 14 (Ethernet) + 20 (IPv4) + 4; the VSID is its upper 24 bits.
    let other = p
        .subnets()
        .iter()
        .find(|s| s.tenant != matched.tenant)
        .unwrap()
        .vsid
        .get();
    let mut wrong_tenant = good.clone();
    wrong_tenant[38..41].copy_from_slice(&other.to_be_bytes()[1..]);
    let err = nvlb_fuzz::check::output(&p, input, &wrong_tenant, what).unwrap_err();
    assert!(err.contains("belongs to tenant"), "{err}");
    let mut bad_sum = good.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 0xFF;
    let err = nvlb_fuzz::check::output(&p, input, &bad_sum, what).unwrap_err();
    assert!(err.contains("checksum"), "{err}");
}

/// The harness's fixed routes are the API's own calls: none is answered 404 or 405 (a
/// path or method the API does not know), and `pick` is among them.
#[test]
fn every_fixed_api_route_is_a_call() {
    let routes = nvlb_fuzz::api::routes();
    assert!(
        routes
            .iter()
            .any(|(m, p)| *m == "POST" && p.ends_with("/pick")),
        "{routes:?}"
    );
    for (i, (method, path)) in routes.iter().enumerate() {
        // The operator's token (index 2), no body.
        let input = [u8::try_from(i).unwrap(), 2];
        let status = nvlb_fuzz::api::status(&input).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            !matches!(status, Some(404 | 405) | None),
            "{method} {path}: answered {status:?}"
        );
    }
}

/// The API seeds that name a call are accepted by it: each starts the fuzzer inside a
/// route's handler, past authorization and body parsing, not at a refusal.
#[test]
fn every_api_call_seed_is_accepted() {
    let calls: Vec<_> = nvlb_fuzz::seeds::api_seeds()
        .into_iter()
        .filter(|(name, _)| name.starts_with("call-"))
        .collect();
    assert!(calls.len() >= 19, "{} call seeds", calls.len());
    for (name, input) in calls {
        let status = nvlb_fuzz::api::status(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            matches!(status, Some(200..=299)),
            "{name}: answered {status:?} to {}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// The engine target's policy has a rule of every kind, and its seeds reach them: the
/// rule frames are forwarded (echo, floating IP, outbound both ways) or dropped as the
/// rule says, and the idle sequence makes the engines send idle resets, which the
/// harness checks like every other emitted frame.
#[test]
fn engine_seeds_reach_every_rule() {
    use nvlb::engine::Verdict;
    use nvlb::policy::OUTBOUND_POOL_TAG;

    let p = nvlb_fuzz::engine::policy();
    assert!(p.pools().iter().any(|x| x.rule.all_ports));
    assert!(p.pools().iter().any(|x| x.rule.tcp_reset));
    assert!(p.pools().iter().any(|x| x.rule.nat.is_some()));
    assert!(p.pools().iter().any(|x| x.floating_ip));
    assert!(!p.outbound_rules().is_empty());

    let mut h = nvlb_fuzz::engine::Harness::new(1);
    let verdicts: Vec<Verdict> = nvlb_fuzz::seeds::rule_frames()
        .iter()
        .map(|f| h.deliver(0, f, 0, false).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let name = |v: &Verdict| match v {
        Verdict::Forward { matched, .. } if matched.pool & OUTBOUND_POOL_TAG != 0 => {
            "outbound".to_string()
        }
        Verdict::Forward { matched, .. } => p.get_pool(matched.pool).unwrap().name.clone(),
        Verdict::Drop(r) => format!("drop {}", r.name()),
        v => format!("{v:?}"),
    };
    let got: Vec<String> = verdicts.iter().map(name).collect();
    assert_eq!(
        got,
        [
            "blue-ha",
            "drop icmp_echo_dropped",
            "red-dsr",
            "outbound",
            "outbound"
        ],
        "echo forwarded, echo dropped, floating IP, outbound out and back"
    );

    let idle = nvlb_fuzz::seeds::engine_seeds(&[])
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "idle-all")
        .unwrap()
        .1;
    nvlb_fuzz::engine::run(&idle).unwrap_or_else(|e| panic!("{e}"));
    let (&ctl, rest) = idle.split_first().unwrap();
    let mut h = nvlb_fuzz::engine::Harness::new(2);
    for (i, f) in nvlb_fuzz::engine::split(rest).into_iter().enumerate() {
        h.deliver(i % 2, f, 3, false).unwrap();
        h.advance(u64::from(ctl >> 2) * 500_000_000).unwrap();
    }
    let sent: u64 = (0..2)
        .map(|w| h.engine(w).counters().idle_resets_sent)
        .sum();
    assert!(sent >= 2, "{sent} idle resets sent");
}

/// The LB answers ARP inside a VSID for its CA VIPs (for Open vSwitch peers); the
/// checks accept that answer and catch one with a foreign MAC or for an address the LB
/// does not own there.
#[test]
fn the_checks_know_arp_answers_inside_a_vsid() {
    use nvlb::craft::{self, Outer};
    use nvlb::engine::{Engine, Verdict, output_len};
    use nvlb::wire::{MacAddr, arp, ethernet};
    let p = nvlb_fuzz::engine::policy();
    let b = p.balancer();
    let vsid = nvlb::policy::Vsid::new(6001).unwrap();
    let host = p.host(p.lookup(vsid, "10.0.0.5".parse().unwrap()).unwrap().host);
    let asker = MacAddr([2, 0, 0, 0, 1, 0x77]);
    let mut request = vec![0u8; 28];
    arp::Repr {
        operation: arp::op::REQUEST,
        sender_hw: asker,
        sender_ip: "10.0.0.5".parse().unwrap(),
        target_hw: MacAddr([0; 6]),
        target_ip: "10.0.0.100".parse().unwrap(),
    }
    .emit(&mut arp::Packet::new_unchecked(&mut request[..]));
    let inner = craft::ethernet(
        asker,
        MacAddr([0xff; 6]),
        ethernet::ethertype::ARP,
        &request,
    );
    let outer = Outer {
        src_mac: host.mac,
        dst_mac: b.provider.mac,
        src: host.pa(false).unwrap(),
        dst: b.provider.address_v4().unwrap().into(),
        vsid: 6001,
        flow_id: 0,
    };
    let input = craft::nvgre(&outer, &inner);
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; output_len(input.len())];
    let Verdict::Reply { egress, len } = e.process(1_000_000_000, &input, &mut out) else {
        panic!("an ARP request for Red VIP1 inside VSID 6001 is answered");
    };
    let what = nvlb_fuzz::check::Emitted::Reply { egress };
    let good = out[..len].to_vec();
    nvlb_fuzz::check::output(&p, &input, &good, what).unwrap();
    // Outer Ethernet, IPv4 and NVGRE, inner Ethernet: the ARP sender MAC is 8 bytes in
    // and its IP 14 bytes in.
    let arp_at = 14 + 20 + 8 + 14;
    let mut foreign = good.clone();
    foreign[arp_at + 8] ^= 0x01;
    let err = nvlb_fuzz::check::output(&p, &input, &foreign, what).unwrap_err();
    assert!(err.contains("foreign MAC"), "{err}");
    let mut not_ours = good.clone();
    not_ours[arp_at + 17] = 99; // 10.0.0.99
    let err = nvlb_fuzz::check::output(&p, &input, &not_ours, what).unwrap_err();
    assert!(err.contains("does not own"), "{err}");
}

/// The outbound checks catch a VM's connection sent from a port outside its block or
/// from another address than the rule's.
#[test]
fn the_checks_catch_an_outbound_port_outside_the_block() {
    use nvlb::engine::{Engine, Verdict, output_len};
    let p = nvlb_fuzz::engine::policy();
    // The rule frames' fourth is a Red VM's SYN to the Internet (outbound SNAT).
    let input = nvlb_fuzz::seeds::rule_frames()[3].clone();
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; output_len(input.len())];
    let Verdict::Forward {
        egress,
        len,
        matched,
    } = e.process(1_000_000_000, &input, &mut out)
    else {
        panic!("the VM's SYN to the Internet is forwarded");
    };
    let what = nvlb_fuzz::check::Emitted::Forward { egress, matched };
    let good = out[..len].to_vec();
    nvlb_fuzz::check::output(&p, &input, &good, what).unwrap();
    // Plain IPv4 to the gateway: TCP starts at 14 + 20, the source address at 14 + 12.
    let mut other_port = good.clone();
    other_port[34..36].copy_from_slice(&9999u16.to_be_bytes());
    let err = nvlb_fuzz::check::output(&p, &input, &other_port, what).unwrap_err();
    assert!(err.contains("outside"), "{err}");
    let mut other_address = good.clone();
    other_address[26..30].copy_from_slice(&[203, 0, 113, 41]);
    other_address[24..26].copy_from_slice(&[0, 0]);
    let ck = nvlb::wire::checksum::data(&other_address[14..34]);
    other_address[24..26].copy_from_slice(&ck.to_be_bytes());
    let err = nvlb_fuzz::check::output(&p, &input, &other_address, what).unwrap_err();
    assert!(err.contains("not 203.0.113.40"), "{err}");
}
