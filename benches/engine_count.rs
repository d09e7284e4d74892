//! Instructions per frame of the engine, counted rather than timed, for
//! `benches/count.sh`: run under callgrind with `--toggle-collect='*measured*'`, only
//! the engine's work on the scenario's frames is counted, so two builds compare to a
//! fraction of a percent on a machine too noisy to time a few percent (the split's
//! regression of new flows, 8% more instructions, hid in ±15% timing noise).
//!
//! `engine_count SCENARIO new|established` runs one scenario; without arguments (as
//! `cargo bench` runs it) every scenario runs once natively, a smoke test.

use std::hint::black_box;
use std::sync::Arc;

use nvlb::engine::{Engine, output_len};
use nvlb::policy::Snapshot;

mod engine_scenarios;
use engine_scenarios::{NOW, Scenario, ca_vip, public};

/// The engine's work alone; callgrind counts only inside this function.
#[inline(never)]
fn measured(engine: &mut Engine, frames: &[Vec<u8>], out: &mut [u8]) {
    for f in frames {
        black_box(engine.process(NOW, f, out));
    }
}

const SCENARIOS: [&str; 4] = ["public_v4", "public_v6", "ca_vip_v4", "ca_vip_v6"];

fn scenario(policy: &Snapshot, name: &str) -> Option<Scenario> {
    Some(match name {
        "public_v4" => public(policy, false, 16_384, "public_v4"),
        "public_v6" => public(policy, true, 16_384, "public_v6"),
        "ca_vip_v4" => ca_vip(policy, false, 16_384, "ca_vip_v4"),
        "ca_vip_v6" => ca_vip(policy, true, 16_384, "ca_vip_v6"),
        _ => return None,
    })
}

/// Runs `phase` of `s` on a fresh engine: `new` counts the SYNs into an empty table,
/// `established` the ACKs after the SYNs set every flow up.
fn run(policy: &Arc<Snapshot>, s: &Scenario, phase: &str) -> Option<()> {
    let mut out = vec![0u8; output_len(2048)];
    let mut engine = Engine::new(policy.clone(), 0, 1);
    match phase {
        "new" => measured(&mut engine, &s.syn, &mut out),
        "established" => {
            for f in &s.syn {
                black_box(engine.process(NOW, f, &mut out));
            }
            measured(&mut engine, &s.ack, &mut out);
        }
        _ => return None,
    }
    Some(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = include_str!("../lb-config/example.toml");
    let policy = Arc::new(Snapshot::from_toml(text, "example.toml").expect("example policy"));
    // `cargo bench` passes `--bench`; only two plain words name a run.
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [name, phase] = words[..] {
        let s = scenario(&policy, name).unwrap_or_else(|| {
            eprintln!("unknown scenario {name:?} (one of {SCENARIOS:?})");
            std::process::exit(2);
        });
        if run(&policy, &s, phase).is_none() {
            eprintln!("unknown phase {phase:?} (new or established)");
            std::process::exit(2);
        }
        println!("{} {phase}: {} frames", s.name, s.syn.len());
        return;
    }
    for name in SCENARIOS {
        let s = scenario(&policy, name).expect("known scenario");
        for phase in ["new", "established"] {
            run(&policy, &s, phase).expect("known phase");
        }
        println!("{name}: {} frames, new and established", s.syn.len());
    }
}
