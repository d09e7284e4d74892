//! The batch path against the single-frame path: two engines on the same policy get the
//! same frames, one through `process`, one through `process_batch` cut into batches,
//! and must agree on every verdict, every output byte, every counter and the flow
//! table, frame by frame. Batches hold related frames on purpose: a SYN and its ACK,
//! both directions of one flow, RST then SYN on one tuple, new flows racing for the
//! last source-NAT port and the last slot of a tenant's quota.
//!
//! The single-frame engine runs with the established-flow shortcut off
//! (`shortcut/`), so the batch path, which takes it, is held to the general path:
//! the same tests hold the shortcut to it too.

use super::*;
use crate::engine::batch::Outputs;

/// Collects what the batch path decides, with copies of its output frames.
pub(super) struct Collect {
    buf: Vec<u8>,
    got: Vec<(Verdict, Vec<u8>)>,
}

impl Outputs for Collect {
    fn buffer(&mut self, need: usize) -> &mut [u8] {
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        &mut self.buf
    }
    fn verdict(&mut self, index: usize, _frame: &[u8], verdict: Verdict) {
        // Verdicts come in frame order, each frame once.
        assert_eq!(index, self.got.len());
        self.got.push((verdict, output(&verdict, &self.buf)));
    }
}

fn output(v: &Verdict, buf: &[u8]) -> Vec<u8> {
    match *v {
        Verdict::Forward { len, .. } | Verdict::Reply { len, .. } => buf[..len].to_vec(),
        _ => Vec::new(),
    }
}

/// Two engines fed the same frames: `single` one at a time by the general path alone,
/// `batched` in batches, with the shortcut.
pub(super) struct Pair {
    pub(super) single: Engine,
    pub(super) batched: Engine,
    out: Vec<u8>,
    now: u64,
    /// Output frames of the single-frame engine, for replies.
    pub(super) sent: Vec<Vec<u8>>,
}

impl Pair {
    pub(super) fn new(p: &Arc<Snapshot>) -> Pair {
        Pair::of_worker(p, 0, 1)
    }

    /// The pair of worker `worker` of `workers` (frames another worker owns are
    /// handed off, by both).
    pub(super) fn of_worker(p: &Arc<Snapshot>, worker: u16, workers: u16) -> Pair {
        let mut single = Engine::new(p.clone(), worker, workers);
        single.set_shortcut(false);
        Pair {
            single,
            batched: Engine::new(p.clone(), worker, workers),
            out: vec![0; 4096],
            now: SEC,
            sent: Vec::new(),
        }
    }

    /// Runs `frames` cut at `cuts` (sizes, cycled; any size, also beyond a batch),
    /// a second later per batch, with expiry between batches as a worker does.
    pub(super) fn run(&mut self, frames: &[Vec<u8>], cuts: &[usize]) -> Result<(), TestCaseError> {
        let mut at = 0;
        let mut k = 0;
        while at < frames.len() {
            let n = cuts[k % cuts.len()].max(1).min(frames.len() - at);
            k += 1;
            let chunk = &frames[at..at + n];
            let mut want = Vec::with_capacity(n);
            for f in chunk {
                let v = self.single.process(self.now, f, &mut self.out);
                let bytes = output(&v, &self.out);
                if !bytes.is_empty() {
                    self.sent.push(bytes.clone());
                }
                want.push((v, bytes));
            }
            let refs: Vec<&[u8]> = chunk.iter().map(|f| f.as_slice()).collect();
            let mut got = Collect {
                buf: Vec::new(),
                got: Vec::with_capacity(n),
            };
            self.batched.process_batch(self.now, &refs, &mut got);
            prop_assert_eq!(got.got.len(), n);
            for (i, (w, g)) in want.iter().zip(&got.got).enumerate() {
                prop_assert_eq!(w.0, g.0, "frame {} of the batch at {}", i, at);
                prop_assert_eq!(&w.1, &g.1, "output of frame {} of the batch at {}", i, at);
            }
            prop_assert_eq!(self.single.counters(), self.batched.counters());
            prop_assert_eq!(self.single.shard().len(), self.batched.shard().len());
            self.now += SEC;
            let e = (
                self.single.expire(self.now, 64),
                self.batched.expire(self.now, 64),
            );
            prop_assert_eq!(e.0, e.1);
            at += n;
        }
        Ok(())
    }
}

/// A TCP segment from a VM in Blue's VSID 5001 to `dst`.
fn from_vm(p: &Snapshot, ca: &str, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    let rec = record(p, 5001, ca);
    let host = &p.hosts()[usize::from(rec.host)];
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: dport,
        flags,
        seq: 1,
        ack: 0,
    };
    from_host(
        p,
        &host.name,
        5001,
        rec.mac,
        &craft::ip_packet(rec.ca, dst, 64, t, b"x"),
    )
}

/// Frames of related flows: public VIPs in both families and a CA VIP, each through
/// SYN, retransmitted SYN, ACK, data, RST and a reopening SYN, from a few clients that
/// share ports.
fn related(p: &Snapshot) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let (web, web6, vip1) = (
        pool(p, "blue-web"),
        pool(p, "blue-web6"),
        pool(p, "blue-vip1"),
    );
    let steps = [
        SYN,
        SYN,
        ACK,
        ACK | tcp::flags::PSH,
        tcp::flags::RST,
        SYN,
        ACK,
    ];
    for c in 0..4u16 {
        for &flags in &steps {
            v.push(from_internet(
                p,
                client(false, c),
                4000 + c % 2,
                web,
                flags,
                64,
            ));
            v.push(from_internet(
                p,
                client(true, c),
                4000 + c % 2,
                web6,
                flags,
                64,
            ));
            let ca = ["10.0.0.5", "10.0.0.6"][usize::from(c % 2)];
            v.push(from_vm(p, ca, 5000 + c, vip1.address, vip1.port, flags));
        }
    }
    v
}

/// The example policy, or one whose quota and source-NAT range run out within a test.
fn policy(tight: bool) -> Arc<Snapshot> {
    if !tight {
        return example();
    }
    let text = example_text()
        .replace("max_flows_per_tenant = 524288", "max_flows_per_tenant = 6")
        .replace("ports = \"20000-29999\"", "ports = \"20000-20001\"");
    policy_from(&text)
}

#[test]
fn both_directions_and_reopened_flows_agree_in_any_batching() {
    for tight in [false, true] {
        let p = policy(tight);
        for cuts in [
            vec![1],
            vec![2],
            vec![7],
            vec![64],
            vec![200],
            vec![3, 61, 1, 64],
        ] {
            let mut pair = Pair::new(&p);
            pair.run(&related(&p), &cuts).unwrap();
            // The DIPs answer everything forwarded to them: SYN-ACK then ACK, batched
            // together with the clients' next segments.
            let mut replies = Vec::new();
            for sent in &pair.sent {
                for flags in [SYN_ACK, ACK] {
                    replies.extend(craft::tunnel_reply(sent, flags, 9, 2));
                }
            }
            assert!(!replies.is_empty());
            let mut mixed = related(&p);
            mixed.extend(replies);
            mixed.rotate_left(5);
            pair.run(&mixed, &cuts).unwrap();
        }
    }
}

#[test]
fn new_flows_racing_for_the_last_port_and_quota_slot_agree() {
    let p = policy(true);
    let vip1 = pool(&p, "blue-vip1");
    // More SYNs than the two source-NAT ports times the DIPs, and than the quota: in
    // one batch, the same ones win as one at a time.
    let syns: Vec<Vec<u8>> = (0..24u16)
        .map(|i| from_vm(&p, "10.0.0.5", 6000 + i, vip1.address, vip1.port, SYN))
        .collect();
    let mut pair = Pair::new(&p);
    pair.run(&syns, &[24]).unwrap();
    let c = pair.batched.counters();
    assert!(c.dropped(DropReason::TenantQuota) + c.dropped(DropReason::NatPortsExhausted) > 0);
    assert!(c.new_flows > 0);
}

/// Frames the property test draws from: related flows, the engine tests' seeds, and
/// the frames that answer them.
fn pool_of_frames(p: &Arc<Snapshot>) -> Vec<Vec<u8>> {
    let mut v = related(p);
    v.extend(seeds(p));
    let mut pair = Pair::new(p);
    pair.run(&v.clone(), &[64]).unwrap();
    for sent in &pair.sent {
        v.extend(craft::tunnel_reply(sent, SYN_ACK, 9, 2));
    }
    v
}

proptest! {
    // 1 600 cases of 256–1 023 frames each: about a million frames through each path,
    // up to 400 of each case's frames mutated, plus random bytes.
    #![proptest_config(ProptestConfig::with_cases(1600))]

    #[test]
    fn the_batch_path_agrees_with_the_single_frame_path(
        tight in any::<bool>(),
        picks in proptest::collection::vec(any::<usize>(), 256..1024),
        flips in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 0..400),
        noise in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..8),
        cuts in proptest::collection::vec(1usize..100, 1..12),
    ) {
        let p = policy(tight);
        let from = pool_of_frames(&p);
        let mut frames: Vec<Vec<u8>> = picks.iter().map(|&i| from[i % from.len()].clone()).collect();
        for (which, at, bits) in flips {
            let f = &mut frames[which % picks.len()];
            let i = at % f.len();
            f[i] ^= bits.max(1);
        }
        frames.extend(noise);
        let mut pair = Pair::new(&p);
        pair.run(&frames, &cuts)?;
    }
}

/// The lookahead's key (engine/peek.rs) is the binding's own: a client's frame peeks to
/// its forward key, and a DIP's answer to a key that hashes as the binding's return
/// key, plain and in NVGRE. Were it wrong, the batch path would still decide right and
/// only prefetch the wrong lines; this holds it to what it is for.
#[test]
fn the_lookahead_key_is_the_bindings_key() {
    let p = example();
    let (web, vip1) = (pool(&p, "blue-web"), pool(&p, "blue-vip1"));
    let frames = [
        from_internet(&p, client(false, 3), 4100, web, SYN, 64),
        from_vm(&p, "10.0.0.5", 5100, vip1.address, vip1.port, SYN),
    ];
    let mut rig = Rig::new(&p);
    for (i, f) in frames.iter().enumerate() {
        let Verdict::Forward { len, .. } = rig.run(SEC, f) else {
            panic!("frame {i} not forwarded");
        };
        let flow = *rig.engine.shard().flow(i as u32);
        assert_eq!(
            crate::engine::peek::flow_key(f),
            Some(flow.forward),
            "frame {i}"
        );
        let answer = craft::tunnel_reply(&rig.out[..len], SYN_ACK, 9, 2).expect("NVGRE");
        let key = crate::engine::peek::flow_key(&answer).expect("a key from the answer");
        let shard = rig.engine.shard();
        assert_eq!(
            shard.hash(&key),
            shard.hash(&flow.ret),
            "answer to frame {i}"
        );
    }
    assert_eq!(crate::engine::peek::flow_key(&[0u8; 20]), None);
}
