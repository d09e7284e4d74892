//! Why a packet was dropped: a closed list, each reason counted and named.
//!
//! A drop is a value, never a panic or a log line: the workers count each reason in
//! their own counters, `/metrics` exposes them under `reason="<name>"`, and `nvlb
//! replay` prints the name. Names are part of the operator interface: never rename one.

crate::drop_reasons! {
    #[doc = "Why the engine dropped a packet."]
    MalformedEthernet => "malformed_ethernet", "Ethernet header cut short.";
    NotOurMac => "not_our_mac", "Destination MAC is neither the LB's, broadcast nor multicast.";
    VlanTagged => "vlan_tagged", "Outer frame carries an 802.1Q/802.1ad tag; the LB's ports are untagged.";
    UnsupportedEthertype => "unsupported_ethertype", "EtherType other than IPv4, IPv6 or ARP.";
    MalformedArp => "malformed_arp", "ARP that is not Ethernet/IPv4 or is cut short.";
    ArpNotForUs => "arp_not_for_us", "ARP for an address the LB does not own (or not a request).";
    MalformedNd => "malformed_nd", "Neighbor Discovery message that is invalid (hop limit, length, target).";
    NdNotForUs => "nd_not_for_us", "Neighbor Discovery for an address the LB does not own.";
    MalformedIp => "malformed_ip", "IPv4/IPv6 header invalid or cut short.";
    BadIpChecksum => "bad_ip_checksum", "IPv4 header checksum does not verify.";
    Fragment => "fragment", "IP fragment: the LB balances by ports and does not reassemble.";
    UnsupportedProtocol => "unsupported_protocol", "Transport protocol other than TCP, UDP or ICMP.";
    MalformedL4 => "malformed_l4", "TCP/UDP header invalid or cut short.";
    NotForUs => "not_for_us", "Destination is neither a VIP nor one of the LB's addresses.";
    UnknownVip => "unknown_vip", "The address is a VIP but no pool serves this protocol and port.";
    MalformedGre => "malformed_gre", "GRE header cut short.";
    GreFlags => "gre_flags", "GRE with C, S, routing or RFC 1701 s/recursion bits, no key, or a version other than 0: not NVGRE.";
    GreProtocol => "gre_protocol", "GRE protocol type is not 0x6558 (transparent Ethernet bridging).";
    ReservedVsid => "reserved_vsid", "VSID 0-0xFFF or 0xFFFFFF, reserved by RFC 7637.";
    UnknownVsid => "unknown_vsid", "VSID that no tenant declares.";
    UnknownPa => "unknown_pa", "NVGRE from a provider address that is not a declared host.";
    SpoofedPa => "spoofed_pa", "NVGRE from a host PA that policy does not assign to that CA in that VSID.";
    InnerVlan => "inner_vlan", "Inner frame carries an 802.1Q tag, which NVGRE forbids.";
    MalformedInner => "malformed_inner", "Inner Ethernet frame cut short.";
    UnknownCa => "unknown_ca", "Client CA without a lookup record in its VSID.";
    NoFlow => "no_flow", "Return packet that matches no binding.";
    MidStreamNoFlow => "mid_stream_no_flow", "Non-SYN TCP to a CA VIP without a binding: full NAT cannot resume it.";
    MalformedIcmp => "malformed_icmp", "ICMP message cut short or quoting an unusable packet.";
    IcmpNoFlow => "icmp_no_flow", "ICMP error quoting a packet of no known binding.";
    IcmpNotHandled => "icmp_not_handled", "ICMP message that is neither an error for a flow nor an echo to the LB.";
    TtlExpired => "ttl_expired", "Inner TTL or hop limit would reach zero.";
    TooBigNoDf => "too_big_no_df", "Too big for the next network and DF is clear: the LB does not fragment.";
    NoHealthyDip => "no_healthy_dip", "The pool has no DIP with weight to take a new flow.";
    FlowTableFull => "flow_table_full", "The worker's flow table is full: new flows refused, old ones kept.";
    TenantQuota => "tenant_quota", "The tenant's share of the flow table is used up.";
    NoSnatAddress => "no_snat_address", "Full NAT needs an LB CA of this family in the DIP's VSID.";
    NatPortsExhausted => "nat_ports_exhausted", "No free source-NAT port for this DIP.";
    FlowConflict => "flow_conflict", "Another binding already uses the same return key (two VIPs sharing one DIP port for one client endpoint).";
    NoPath => "no_path", "No outer address family shared with the destination host, or no room to build the frame.";
    IcmpEchoDropped => "icmp_echo_dropped", "Echo request to a VIP address whose rules say icmp_echo = \"drop\".";
    OutboundPortsExhausted => "outbound_ports_exhausted", "A VM's block of outbound source-NAT ports has no free port for this destination.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::ALL {
            assert!(seen.insert(r.name()), "duplicate name {}", r.name());
            assert!(
                r.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            );
            assert_eq!(
                DropReason::ALL[*r as usize],
                *r,
                "ALL is in discriminant order"
            );
        }
    }
}
