//! Packets of flows the engine already bound, decided from fixed offsets: the
//! shortcut in front of the general path.
//!
//! Nearly every packet a balancer sees belongs to a connection it has bound, and the
//! general path pays on each for every case it can handle: the frame parsed into
//! enums and options (`IpPacket`, `Arrival`), policy hash lookups for an NVGRE sender
//! (its subnet, its host by PA, whether the address is a VIP), the outbound and probe
//! checks, the binding copied out of the shard, a rewrite that works out per packet
//! which fields it changes. The shortcut reads the common shapes only
//! ([`parse`]), checks the policy facts it needs in tables built once per snapshot
//! and indexed by the binding ([`facts`]), and rewrites at fixed offsets. It takes a
//! client's packet to a VIP ([`forward`]) and a DIP's reply ([`reply`]), when the
//! packet changes no binding's state.
//!
//! It is a shortcut, never a second opinion: wherever the general path could drop,
//! answer, hand off, create, retire or change the state of a binding, it returns
//! `None` before it has changed anything, and [`Engine::process`] goes the general
//! way. What it does decide must equal the general path byte for byte and counter for
//! counter; the engine's tests (`tests/shortcut.rs`, and the batch path's property
//! test, whose single-frame engine runs without it) and the engine fuzz target run
//! both on the same frames and hold them to that.

mod facts;
mod forward;
mod parse;
mod reply;

pub(crate) use facts::Facts;

use crate::flow::{Direction, FlowId, ForwardKey, Nanos, shard::seconds};
use crate::wire::{ip_proto, tcp};

use super::{Egress, Engine, Matched, Verdict, nat};
use parse::Seen;

impl Engine {
    /// The verdict on `frame` if the shortcut takes it; `None`, with nothing changed,
    /// for everything else. `hint` is the flow key the batch path peeked and its hash:
    /// when the key read here is that one, it is not hashed again.
    #[inline(always)]
    pub(super) fn shortcut(
        &mut self,
        now: Nanos,
        frame: &[u8],
        out: &mut [u8],
        hint: Option<(&ForwardKey, u64)>,
    ) -> Option<Verdict> {
        let seen = parse::read(frame, &self.facts.macs, &self.facts.provider)?;
        let now = seconds(now);
        if let Some(v) = self.shortcut_forward(now, frame.len(), &seen, out, hint) {
            return Some(v);
        }
        if seen.sender.is_some() {
            return self.shortcut_reply(now, frame.len(), &seen, out, hint);
        }
        None
    }

    /// The rest of a decided packet, either way: the IP packet copied after the
    /// headers already written at `out[..off]` and rewritten by `rw`, the counters,
    /// the binding's clock and, for a `tcp_reset` rule, its acknowledgment number.
    /// Nothing here can fail.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn shortcut_emit(
        &mut self,
        id: FlowId,
        now: u32,
        seen: &Seen,
        rw: &nat::Rewrite,
        (egress, off): (Egress, usize),
        frame_len: usize,
        out: &mut [u8],
        dir: Direction,
    ) -> Verdict {
        let ip = &seen.ip;
        let len = ip.bytes.len();
        let inner = &mut out[off..off + len];
        inner.copy_from_slice(ip.bytes);
        nat::apply_whole(inner, ip.v6, ip.proto == ip_proto::UDP, rw);
        let flow = self.shard.flow(id);
        self.counters
            .record_forward(frame_len, off + len, flow, dir);
        let verdict = Verdict::Forward {
            egress,
            len: off + len,
            matched: Matched::of(flow),
        };
        // `touch` with no change of state (checked by the caller): the clock only.
        self.shard.refresh(id, now);
        if let (Some(f), Some(ack)) = (seen.flags, ip.tcp_ack())
            && f & tcp::flags::ACK != 0
            && self.shard.resets_on_idle(id)
        {
            self.shard.note_ack(id, dir, ack);
        }
        verdict
    }
}
