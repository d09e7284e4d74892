//! What only the timed engine bench needs beside the shared scenarios: the batch
//! path's sink, frames packed as a ring holds them, a policy sized for large
//! tables. Apart from `engine_scenarios` so that `benches/count.sh` can still build that
//! module against revisions from before the batch path.

/// The batch path's sink in the benches: one output buffer, verdicts discarded (after
/// `black_box`, so the work is not optimised away).
pub struct Discard {
    pub buf: Vec<u8>,
}

impl Discard {
    pub fn new() -> Discard {
        Discard {
            buf: vec![0; nvlb::engine::output_len(2048)],
        }
    }
}

impl nvlb::engine::Outputs for Discard {
    fn buffer(&mut self, _need: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn verdict(&mut self, _index: usize, _frame: &[u8], verdict: nvlb::engine::Verdict) {
        std::hint::black_box(verdict);
    }
}

/// The example policy with room for `flows` per worker, all of it preallocated.
pub fn policy_for(flows: usize) -> nvlb::policy::Snapshot {
    let text = include_str!("../../lb-config/example.toml")
        .replace(
            "max_flows_per_worker = 1048576",
            &format!("max_flows_per_worker = {flows}\npreallocate_flows_per_worker = {flows}"),
        )
        .replace(
            "max_flows_per_tenant = 524288",
            &format!("max_flows_per_tenant = {flows}"),
        );
    nvlb::policy::Snapshot::from_toml(&text, "example.toml").expect("example policy, resized")
}

/// Frames laid out back to back in one buffer, in the order they are processed, as a
/// receive ring holds them: reading them is sequential, so a bench measures the
/// engine's own cache misses, not those of frames scattered over the heap.
pub struct Packed {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Packed {
    pub fn new<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Packed {
        let mut p = Packed {
            bytes: Vec::new(),
            spans: Vec::new(),
        };
        for f in frames {
            // 64-byte aligned starts, as ring slots are.
            let start = p.bytes.len().next_multiple_of(64);
            p.bytes.resize(start, 0);
            p.bytes.extend_from_slice(f);
            p.spans.push((start, f.len()));
        }
        p
    }

    /// The frames, in order.
    pub fn frames(&self) -> Vec<&[u8]> {
        self.spans
            .iter()
            .map(|&(s, n)| &self.bytes[s..s + n])
            .collect()
    }
}
