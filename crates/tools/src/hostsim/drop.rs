//! Why the host simulator dropped a frame: a closed list, each reason counted and
//! printed by name when it stops.
//!
//! A drop is a value, never a panic or a log line. Names are part of the operator
//! interface (the lab and its tests grep for them): never rename one.

crate::drop_reasons! {
    #[doc = "Why the host simulator dropped a frame."]
    // Either side.
    VlanTagged => "vlan_tagged", "The frame arrived 802.1Q-tagged (the kernel stripped the tag); ports here are untagged.";
    MalformedEthernet => "malformed_ethernet", "Ethernet header cut short.";
    UnsupportedEthertype => "unsupported_ethertype", "EtherType other than IPv4, IPv6 or ARP.";
    MalformedArp => "malformed_arp", "ARP that is not Ethernet/IPv4, is cut short, or is not a request.";
    ArpNotAnswered => "arp_not_answered", "ARP request for an address this host does not answer for.";
    MalformedNd => "malformed_nd", "Neighbor Solicitation that is invalid (hop limit, checksum, target).";
    NdNotAnswered => "nd_not_answered", "Neighbor Solicitation for an address this host does not answer for.";
    // From the PA network.
    NotOurMac => "not_our_mac", "Outer destination MAC is not this host's (nor broadcast/multicast for ARP/ND).";
    MalformedOuter => "malformed_outer", "Outer IPv4/IPv6 header invalid, cut short, or with a bad header checksum.";
    NotOurPa => "not_our_pa", "Outer destination address is not this host's PA.";
    OuterFragment => "outer_fragment", "Outer IP fragment: NVGRE is never reassembled here.";
    NotGre => "not_gre", "IP to this host's PA that is not GRE.";
    MalformedGre => "malformed_gre", "GRE header cut short, version 1 or with routing.";
    GreFlags => "gre_flags", "GRE with C or S set or no key: not NVGRE (K bit only).";
    GreProtocol => "gre_protocol", "GRE protocol type is not 0x6558 (transparent Ethernet bridging).";
    ReservedVsid => "reserved_vsid", "VSID 0-0xFFF or 0xFFFFFF, reserved by RFC 7637.";
    UnknownVsid => "unknown_vsid", "VSID that no tenant declares.";
    UnknownPa => "unknown_pa", "NVGRE from an outer source that is neither the LB's PA nor a declared host's.";
    MalformedInner => "malformed_inner", "Inner Ethernet or IP header cut short or invalid.";
    InnerVlan => "inner_vlan", "Inner frame carries an 802.1Q tag, which NVGRE forbids.";
    InnerNotIp => "inner_not_ip", "Inner frame is not IPv4/IPv6 (ARP/ND inside a VSID is answered by each host itself).";
    UnknownVm => "unknown_vm", "Inner destination MAC is not a VM of this host in that VSID.";
    WrongCa => "wrong_ca", "Inner destination address is not a CA of that VM in that VSID.";
    SpoofedPa => "spoofed_pa", "NVGRE from a host PA that policy does not assign to the inner source CA and MAC.";
    // From a VM.
    SpoofedSource => "spoofed_source", "Source MAC is not the VM's.";
    SpoofedCa => "spoofed_ca", "Source address is not one of the VM's CAs in its VSID.";
    VmMulticast => "vm_multicast", "Multicast or broadcast from a VM other than ARP and Neighbor Solicitation.";
    MalformedIp => "malformed_ip", "IPv4/IPv6 from a VM invalid or cut short.";
    UnknownDestination => "unknown_destination", "Destination MAC is neither a VM of the VSID nor the subnet's lb_mac.";
    NoOuterFamily => "no_outer_family", "This host and the peer share no PA address family.";
    UnfinishableChecksum => "unfinishable_checksum", "Partial checksum (tx offload) on a packet that is not plain TCP/UDP.";
    TooBig => "too_big", "The frame does not fit an NVGRE packet.";
    // From the PA network, after a reload (appended: names and order stay).
    VmAway => "vm_away", "Inner destination MAC is a VM given to this host whose lookup records now place it on another host (live-migrated away): nothing keeps a stale PA.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_in_discriminant_order() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert!(
                r.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(DropReason::ALL[*r as usize], *r);
            assert!(!r.describe().is_empty());
        }
    }
}
