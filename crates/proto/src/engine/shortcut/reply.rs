//! A DIP's reply on a bound flow, as `reply::ret` sends it: from the VIP to the
//! Internet gateway (public VIPs: prebuilt headers), or to the client VM's host in its
//! VSID (CA VIPs, full NAT: the path from the client's lookup record, as the general
//! path builds it). Replies of floating-IP pools stay the general path's.

use crate::flow::{Direction, ForwardKey, Owner, ReturnKey, steer};
use crate::policy::Vsid;
use crate::wire::ip_proto;

use super::super::reply::path_to_client;
use super::super::{Engine, Verdict, emit, nat};
use super::parse::Seen;

impl Engine {
    #[inline(always)]
    pub(super) fn shortcut_reply(
        &mut self,
        now: u32,
        frame_len: usize,
        seen: &Seen,
        out: &mut [u8],
        hint: Option<(&ForwardKey, u64)>,
    ) -> Option<Verdict> {
        let ip = &seen.ip;
        let sender = seen.sender?;
        let policy = &self.policy;
        // What the general path takes before a reply: a health probe's answer (any
        // probe port, without asking whether the address is an SNAT CA), and a packet
        // to a VIP of the VSID (a forward flow of the DIP's own).
        if ip.proto == ip_proto::TCP && policy.balancer().health.is_probe_port(seen.dport) {
            return None;
        }
        let vsid = Vsid::new(seen.vsid)?;
        if policy.is_vip_address(vsid, ip.dst) {
            return None;
        }
        if self.workers > 1 {
            let owner = if policy.is_snat_address(vsid, ip.dst) {
                steer::by_nat_port(seen.dport, self.workers)
            } else {
                steer::by_endpoint(ip.dst, seen.dport, self.workers)
            };
            if owner != self.worker {
                return None;
            }
        }
        let key = ReturnKey {
            vsid: seen.vsid,
            proto: ip.proto,
            dip: ip.src,
            dip_port: seen.sport,
            peer: ip.dst,
            peer_port: seen.dport,
        };
        // A forward key and a return key of the same six values hash alike.
        let id = match hint {
            Some((peeked, hash))
                if peeked.vsid == key.vsid
                    && peeked.proto == key.proto
                    && peeked.client == key.dip
                    && peeked.client_port == key.dip_port
                    && peeked.vip == key.peer
                    && peeked.vip_port == key.peer_port =>
            {
                self.shard.find_return_live_hashed(&key, hash, now)?
            }
            _ => self.shard.find_return_live(&key, now)?,
        };
        let facts = &self.facts;
        let flow = self.shard.flow(id);
        let Owner::Pool(pool) = flow.owner() else {
            return None;
        };
        let df = facts.dips.get(pool as usize)?.get(usize::from(flow.dip))?;
        // From the host policy places the DIP on, in the DIP's VSID, from its CA.
        if !df.reply_ok
            || df.vsid != seen.vsid
            || df.ca != ip.src
            || !facts.host_has_pa(df.host, sender)
            || flow.state.next(Direction::Return, seen.flags) != flow.state
        {
            return None;
        }
        let len = ip.bytes.len();
        let ident = self.ident.wrapping_add(1);
        let inner_type = emit::ip_ethertype(ip.v6);
        let (off, egress) = if flow.forward.vsid == 0 {
            let pre = facts.to_internet.as_ref()?;
            if len > pre.room() {
                return None;
            }
            let off = pre.write(out, inner_type, len, ident, flow.flow_id).ok()?;
            (off, pre.egress())
        } else {
            let path = path_to_client(&self.policy, &flow.forward, flow.flow_id).ok()?;
            if len > path.max_ip_len(&self.policy) {
                return None;
            }
            let off = path.write_headers(out, inner_type, len, ident).ok()?;
            (off, path.egress())
        };
        let rw = nat::Rewrite {
            src: Some((flow.forward.vip, flow.forward.vip_port)),
            dst: flow
                .is_full_nat()
                .then_some((flow.forward.client, flow.forward.client_port)),
            hop: true,
        };
        self.ident = ident;
        let verdict = self.shortcut_emit(
            id,
            now,
            seen,
            &rw,
            (egress, off),
            frame_len,
            out,
            Direction::Return,
        );
        Some(verdict)
    }
}
