//! A client's packet to a VIP whose flow is bound: to the binding's DIP, as
//! `balance::forward` sends it.

use crate::flow::{Direction, ForwardKey, NO_HOST, Owner, State, steer};

use super::super::{Engine, Verdict, emit, nat};
use super::parse::Seen;

impl Engine {
    #[inline(always)]
    pub(super) fn shortcut_forward(
        &mut self,
        now: u32,
        frame_len: usize,
        seen: &Seen,
        out: &mut [u8],
        hint: Option<(&ForwardKey, u64)>,
    ) -> Option<Verdict> {
        let ip = &seen.ip;
        if self.workers > 1 && steer::by_endpoint(ip.src, seen.sport, self.workers) != self.worker {
            return None;
        }
        let key = ForwardKey {
            vsid: seen.vsid,
            proto: ip.proto,
            client: ip.src,
            client_port: seen.sport,
            vip: ip.dst,
            vip_port: seen.dport,
        };
        let id = match hint {
            Some((peeked, hash)) if *peeked == key => {
                self.shard.find_forward_live_hashed(&key, hash, now)?
            }
            _ => self.shard.find_forward_live(&key, now)?,
        };
        let facts = &self.facts;
        let flow = self.shard.flow(id);
        let Owner::Pool(pool) = flow.owner() else {
            return None;
        };
        let pf = facts.pools.get(pool as usize)?;
        if !pf.eligible || pf.frontend != seen.vsid || pf.address != ip.dst {
            return None;
        }
        if let Some(pa) = seen.sender {
            // The general path finds the sender's host by its PA and refuses a binding
            // of another host's client; a PA that names the binding's host is that.
            if flow.client_host == NO_HOST || !facts.host_has_pa(flow.client_host, pa) {
                return None;
            }
        }
        // A floating-IP flow still opening is the DSR handshake's (`dsr.rs`).
        let dsr_opening = pf.floating_ip && flow.state == State::SynSent;
        if dsr_opening || !flow.state.kept_by_forward_segment(seen.flags) {
            return None;
        }
        let pre = self.routes.prebuilt(flow.pool, flow.dip).ok()?;
        let len = ip.bytes.len();
        if len > pre.room() {
            return None;
        }
        let ident = self.ident.wrapping_add(1);
        let off = pre
            .write(out, emit::ip_ethertype(ip.v6), len, ident, flow.flow_id)
            .ok()?;
        let rw = nat::Rewrite {
            src: flow
                .is_full_nat()
                .then_some((flow.ret.peer, flow.ret.peer_port)),
            dst: (!pf.floating_ip).then_some((flow.ret.dip, flow.ret.dip_port)),
            hop: true,
        };
        let egress = pre.egress();
        self.ident = ident;
        let verdict = self.shortcut_emit(
            id,
            now,
            seen,
            &rw,
            (egress, off),
            frame_len,
            out,
            Direction::Forward,
        );
        Some(verdict)
    }
}
