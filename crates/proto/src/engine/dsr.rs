//! Floating-IP (direct server return) flows: the LB sees only the client's half.
//!
//! The DIP's SYN-ACK never passes the LB, so the TCP state of a floating-IP flow
//! would stay "SYN sent" and expire after `tcp_syn_timeout` in the middle of a long
//! download (the next ACK would then be balanced afresh: same DIP, but counted as a
//! new flow). The client's first ACK without SYN shows that the handshake completed,
//! so it establishes the flow here. This must never touch a flow of another pool.

use crate::flow::{Direction, FlowId};
use crate::wire::tcp;

use super::Ctx;

/// After a client's packet on flow `id` of pool `pool` was recorded.
pub(super) fn client_packet(ctx: &mut Ctx, id: FlowId, pool: u32, tcp_flags: Option<u8>) {
    let Some(flags) = tcp_flags else {
        return;
    };
    let floating = ctx.policy.get_pool(pool).is_some_and(|p| p.floating_ip);
    let ack_only = flags & tcp::flags::ACK != 0
        && flags & (tcp::flags::SYN | tcp::flags::RST | tcp::flags::FIN) == 0;
    if floating && ack_only && ctx.shard.flow(id).state == crate::flow::State::SynSent {
        // What the DIP's SYN-ACK would have done, had it come this way.
        ctx.shard.touch(
            id,
            Direction::Return,
            Some(tcp::flags::SYN | tcp::flags::ACK),
            ctx.now,
        );
        // And the client's ACK, now that it follows a SYN-ACK, completes the handshake.
        ctx.shard
            .touch(id, Direction::Forward, Some(tcp::flags::ACK), ctx.now);
    }
}
