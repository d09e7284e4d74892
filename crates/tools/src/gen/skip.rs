//! Why the reflector left a frame unanswered: a closed list, counted by name.
//!
//! Names are part of the operator interface (reports and tests use them): never rename one.

crate::drop_reasons! {
    #[doc = "Why the reflector did not answer a frame."]
    NotTcpUdp => "not_tcp_udp", "Not a TCP or UDP packet (ARP, ICMP, fragments, malformed).";
    NotNvgre => "not_nvgre", "Plain IP on the PA network.";
    NotHostMac => "not_host_mac", "Outer destination MAC is no declared host's.";
    NotHostPa => "not_host_pa", "Outer destination is not that host's PA.";
    NotFromLb => "not_from_lb", "Outer source is not the LB's PA.";
    BadGre => "bad_gre", "GRE flags other than K, or protocol not 0x6558.";
    UnknownVsid => "unknown_vsid", "VSID reserved or not declared.";
    NotProbe => "not_probe", "No generator probe in the payload.";
    Answer => "answer", "Already reflected: the LB's answer to a generator client on the PA side.";
    UnknownCa => "unknown_ca", "No lookup record for (VSID, inner destination).";
    WrongHost => "wrong_host", "The lookup record places the CA on another host.";
    WrongMac => "wrong_mac", "Inner MACs are not the VM's and the subnet's LB MAC.";
    UnknownPool => "unknown_pool", "The probe names no pool of the policy.";
    TooLong => "too_long", "Larger than the reflector's buffers.";
}
