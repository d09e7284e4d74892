//! Steering: which worker owns a flow, computed from a packet alone.
//!
//! Both directions of a binding must reach the shard that holds it without any shared
//! lookup. Forward packets are steered by the client endpoint (inner source), replies
//! by the same endpoint seen as their destination; full-NAT replies are addressed to
//! the LB's own CA, so they are steered by port, and the port allocator hands worker
//! `w` only ports `p` with `p % workers == w`. The hash is fixed (xxh3, constant seed)
//! so that every process and every RSS/fanout agrees.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed of the steering hash. Changing it re-steers every flow of a running LB.
const STEER_SEED: u64 = 0x6e76_6c62_7374_6572; // "nvlbster"

/// Worker owning the flows whose client endpoint is (`addr`, `port`).
pub fn by_endpoint(addr: IpAddr, port: u16, workers: u16) -> u16 {
    if workers <= 1 {
        return 0;
    }
    let mut buf = [0u8; 18];
    match addr {
        IpAddr::V4(a) => buf[..16].copy_from_slice(&a.to_ipv6_mapped().octets()),
        IpAddr::V6(a) => buf[..16].copy_from_slice(&a.octets()),
    }
    buf[16..].copy_from_slice(&port.to_be_bytes());
    (xxh3_64_with_seed(&buf, STEER_SEED) % u64::from(workers)) as u16
}

/// Worker owning a full-NAT binding whose source-NAT port is `port`.
pub fn by_nat_port(port: u16, workers: u16) -> u16 {
    if workers <= 1 { 0 } else { port % workers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_is_stable() {
        let mut counts = [0u32; 2];
        for p in 0..10_000u16 {
            let a: IpAddr = "198.51.100.7".parse().unwrap();
            counts[by_endpoint(a, p, 2) as usize] += 1;
            assert_eq!(by_endpoint(a, p, 2), by_endpoint(a, p, 2));
        }
        assert!(counts[0] > 4_500 && counts[1] > 4_500, "{counts:?}");
        assert_eq!(by_endpoint("::1".parse().unwrap(), 5, 1), 0);
        assert_eq!(by_nat_port(20001, 2), 1);
    }
}
