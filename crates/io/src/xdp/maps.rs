//! The two BPF maps of the XDP filter: the addresses the LB owns (one hash map for all
//! ports, filled from each policy snapshot before it is published) and, per port, the
//! AF_XDP socket of each receive queue (XSKMAP).

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::policy::{Snapshot, Vsid};

use super::sys::Map;

const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;

/// Most addresses the owned map holds: a policy with more VIP addresses than this is
/// refused at publish time (counted, and said in the error), not silently half-served.
pub const MAX_OWNED: u32 = 65536;

/// Every address whose frames the LB must see on the wire (outside any tunnel): its
/// ports' own addresses (PAs, the external addresses), its public VIPs and the public
/// addresses of outbound rules. CA VIPs and source-NAT CAs arrive inside NVGRE to a PA.
pub fn owned_addresses(policy: &Snapshot) -> BTreeSet<IpAddr> {
    let b = policy.balancer();
    let mut set: BTreeSet<IpAddr> = b.external.addresses.iter().copied().collect();
    set.extend(b.provider.addresses.iter().copied());
    set.extend(
        policy
            .pools()
            .iter()
            .filter(|p| p.frontend == Vsid::PUBLIC)
            .map(|p| p.address),
    );
    set.extend(policy.outbound_rules().iter().map(|r| r.address));
    set
}

/// The map key of an address: IPv6 as is, IPv4 in its IPv4-mapped form (::ffff:a.b.c.d),
/// the form the program builds from an IPv4 or ARP header.
pub fn key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn addr_of(key: &[u8]) -> Option<IpAddr> {
    let octets: [u8; 16] = key.try_into().ok()?;
    let v6 = Ipv6Addr::from(octets);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    })
}

/// The owned-address map.
#[derive(Debug)]
pub struct OwnedAddrs {
    map: Map,
}

impl OwnedAddrs {
    pub fn create() -> io::Result<OwnedAddrs> {
        Ok(OwnedAddrs {
            map: Map::create(BPF_MAP_TYPE_HASH, 16, 4, MAX_OWNED, "nvlb_owned")?,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Makes the map hold exactly `want`: new addresses first (so that the frames of
    /// an address being added reach the LB no later than its policy), then the ones
    /// no longer owned are removed.
    pub fn sync(&self, want: &BTreeSet<IpAddr>) -> io::Result<SyncStats> {
        if want.len() > MAX_OWNED as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} addresses owned, the XDP filter holds at most {MAX_OWNED}",
                    want.len()
                ),
            ));
        }
        let have: BTreeSet<IpAddr> = self.map.keys()?.iter().filter_map(|k| addr_of(k)).collect();
        let mut stats = SyncStats::default();
        for a in want.difference(&have) {
            self.map.update(&key(*a), &1u32.to_ne_bytes())?;
            stats.added += 1;
        }
        for a in have.difference(want) {
            match self.map.delete(&key(*a)) {
                Ok(()) => stats.removed += 1,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stats)
    }

    /// Whether `addr` is in the map.
    pub fn contains(&self, addr: IpAddr) -> io::Result<bool> {
        let mut v = [0u8; 4];
        self.map.lookup(&key(addr), &mut v)
    }
}

/// What one [`OwnedAddrs::sync`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub added: usize,
    pub removed: usize,
}

/// One port's queue -> AF_XDP socket map.
#[derive(Debug)]
pub struct XskMap {
    map: Map,
}

impl XskMap {
    pub fn create(queues: u32) -> io::Result<XskMap> {
        Ok(XskMap {
            map: Map::create(BPF_MAP_TYPE_XSKMAP, 4, 4, queues.max(1), "nvlb_xsks")?,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Sends the frames the filter passes on `queue` to `socket`.
    pub fn set(&self, queue: u32, socket: BorrowedFd) -> io::Result<()> {
        let fd = socket.as_raw_fd() as u32;
        self.map.update(&queue.to_ne_bytes(), &fd.to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn keys_round_trip_both_families() {
        let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        assert_eq!(
            key(v4),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 10]
        );
        assert_eq!(addr_of(&key(v4)), Some(v4));
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        assert_eq!(addr_of(&key(v6)), Some(v6));
        assert_eq!(addr_of(&[0u8; 3]), None);
    }

    #[test]
    fn the_example_owns_its_ports_public_vips_and_outbound_addresses() {
        let text = include_str!("../../../../lb-config/example.toml");
        let policy = Snapshot::from_toml(text, "example.toml").expect("example loads");
        let set = owned_addresses(&policy);
        for a in ["203.0.113.10", "192.168.6.10"] {
            assert!(set.contains(&a.parse().unwrap()), "{a} in {set:?}");
        }
        // CA VIPs live inside NVGRE: never on the wire as a destination.
        for p in policy.pools().iter().filter(|p| p.frontend != Vsid::PUBLIC) {
            let public = policy
                .pools()
                .iter()
                .any(|q| q.frontend == Vsid::PUBLIC && q.address == p.address);
            if !public && !policy.balancer().external.owns(p.address) {
                assert!(!set.contains(&p.address), "{} is a CA VIP", p.address);
            }
        }
    }
}
