//! Direct server return ("floating IP") on the host: a DIP of a floating-IP VIP gets
//! the client's packets with the VIP still as destination (the VM holds the VIP on its
//! loopback), and its replies, sourced from the VIP, leave this host straight for the
//! Internet as plain IP to the host's own gateway on the PA network, never through
//! the LB.
//!
//! Only policy decides: a VIP is accepted as inner destination only from the LB and
//! only for a VM that policy makes a DIP of that floating-IP VIP, and a VM may send
//! from the VIP only as such a DIP, only towards its gateway (the subnet's LB MAC),
//! only to an address outside its tenant's virtual networks, and only when policy
//! gives this host a `gateway_mac`. Everything else keeps its old path or drop.
//! The frames leave on the PA interface and are counted with the encapsulated ones.

use std::net::IpAddr;

use crate::engine::packet::IpPacket;
use crate::wire::{MacAddr, ethernet};

use super::view::{HostView, Peer, Vm};

/// Whether a frame from `sender` addressed to `dst` may be delivered to `vm`, which
/// does not hold `dst` as a CA: the LB forwarding to a floating-IP DIP.
pub fn may_deliver_vip(view: &HostView, vm: &Vm, sender: Peer, dst: IpAddr) -> bool {
    sender == Peer::Lb && view.policy().serves_floating_vip(vm.vsid, vm.mac, dst)
}

/// The next hop of a VM's reply sent from a floating VIP, when it goes out directly:
/// the host's gateway MAC. `None`: not a direct-return frame.
pub fn direct_next_hop(
    view: &HostView,
    vm: &Vm,
    dst_mac: MacAddr,
    ip: &IpPacket,
) -> Option<MacAddr> {
    let policy = view.policy();
    if dst_mac != vm.lb_mac || !policy.serves_floating_vip(vm.vsid, vm.mac, ip.src) {
        return None;
    }
    let rd = policy.subnet(vm.vsid)?.routing_domain;
    let inside = policy
        .subnets()
        .iter()
        .filter(|s| s.routing_domain == rd)
        .any(|s| s.prefixes.iter().any(|p| p.contains(ip.dst)));
    if inside {
        return None;
    }
    view.host().gateway_mac
}

/// Writes `frame` (a VM's whole Ethernet frame, `len` bytes without padding) into
/// `out` with new MACs: from this host's PA-side MAC to `gateway`. Its length.
pub fn write_direct(
    view: &HostView,
    gateway: MacAddr,
    frame: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let ethertype = eth.ethertype();
    let bytes = out.get_mut(..frame.len())?;
    bytes.copy_from_slice(frame);
    let mut o = ethernet::Frame::new_checked(bytes).ok()?;
    o.set_dst_addr(gateway);
    o.set_src_addr(view.host().mac);
    o.set_ethertype(ethertype);
    Some(frame.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::craft::{self, Outer, Transport};
    use crate::dataplane::afpacket::Meta;
    use crate::hostsim::{DropReason, Verdict, decap, encap};
    use crate::policy::Snapshot;
    use crate::wire::tcp;

    const RED5: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xe0, 0x1c, 1]);
    const RED_LB_MAC: MacAddr = MacAddr([2, 0, 0, 0xe1, 0, 0xfe]);
    const HOST2_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0x12]);
    const LB_PA_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0x0a]);
    const GATEWAY: MacAddr = MacAddr([2, 0, 0, 0, 6, 1]);
    const VIP: &str = "203.0.113.21";
    const CLIENT: &str = "192.0.2.100";

    /// The example with red-dsr (floating IP on Red 10.0.0.5 on host2), host2 with a
    /// gateway; `gateway` false leaves host2's gateway out (refused by check, so the
    /// view is built from a policy without the floating VIP).
    fn view() -> HostView {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../lb-config/example.toml"
        ))
        .unwrap()
        .replace(
            "mac = \"02:00:00:00:06:12\"\n",
            "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
        );
        let text = format!(
            "{text}\n[[tenant.vip]]\nname = \"red-dsr\"\nfrontend = \"public\"\naddress = \"{VIP}\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001\nfloating_ip = true\ndips = [{{ ca = \"10.0.0.5\" }}]\n"
        );
        let policy = Arc::new(Snapshot::from_toml(&text, "t.toml").unwrap());
        HostView::new(
            policy,
            "host2",
            "pa0",
            &["6001,00:1d:d8:e0:1c:01,vm-r5".parse().unwrap()],
        )
        .unwrap()
    }

    fn tcp_frame(src: &str, dst: &str, src_mac: MacAddr, dst_mac: MacAddr, flags: u8) -> Vec<u8> {
        let t = Transport::Tcp {
            src_port: 80,
            dst_port: 40000,
            flags,
            seq: 1,
            ack: 1,
        };
        let ip = craft::ip_packet(src.parse().unwrap(), dst.parse().unwrap(), 64, t, b"hi");
        craft::ip_frame(src_mac, dst_mac, &ip)
    }

    fn from_lb(inner: &[u8], src_pa: &str) -> Vec<u8> {
        let outer = Outer {
            src_mac: LB_PA_MAC,
            dst_mac: HOST2_MAC,
            src: src_pa.parse().unwrap(),
            dst: "192.168.6.12".parse().unwrap(),
            vsid: 6001,
            flow_id: 3,
        };
        craft::nvgre(&outer, inner)
    }

    #[test]
    fn the_vip_is_delivered_only_to_its_floating_dip_and_only_from_the_lb() {
        let v = view();
        let mut out = [0u8; 512];
        let inner = tcp_frame(CLIENT, VIP, LB_PA_MAC, RED5, tcp::flags::SYN);
        let frame = from_lb(&inner, "192.168.6.10");
        match decap::from_pa(&v, &frame, false, &mut out) {
            Verdict::Deliver {
                vm: 0, start, len, ..
            } => {
                assert_eq!(
                    &frame[start..start + len],
                    &inner[..],
                    "delivered unchanged"
                )
            }
            other => panic!("{other:?}"),
        }
        // Another host may not send the VIP to the VM.
        let spoofed = from_lb(&inner, "192.168.6.13");
        assert_eq!(
            decap::from_pa(&v, &spoofed, false, &mut out),
            Verdict::Drop(DropReason::WrongCa)
        );
        // A public VIP without floating_ip is still refused as destination.
        let other = tcp_frame(CLIENT, "203.0.113.20", LB_PA_MAC, RED5, tcp::flags::SYN);
        assert_eq!(
            decap::from_pa(&v, &from_lb(&other, "192.168.6.10"), false, &mut out),
            Verdict::Drop(DropReason::WrongCa)
        );
    }

    #[test]
    fn replies_from_the_vip_leave_directly_for_the_gateway() {
        let v = view();
        let mut out = [0u8; 512];
        let mut reply = tcp_frame(
            VIP,
            CLIENT,
            RED5,
            RED_LB_MAC,
            tcp::flags::SYN | tcp::flags::ACK,
        );
        let want_ip = reply[ethernet::HEADER_LEN..].to_vec();
        match encap::from_vm(&v, 0, &mut reply, Meta::default(), 1, &mut out) {
            Verdict::Encapsulate { len, .. } => {
                let eth = ethernet::Frame::new_checked(&out[..len]).unwrap();
                assert_eq!(eth.dst_addr(), GATEWAY, "to the host's gateway, not the LB");
                assert_eq!(eth.src_addr(), HOST2_MAC);
                assert_eq!(eth.ethertype(), ethernet::ethertype::IPV4);
                assert_eq!(eth.payload(), &want_ip[..], "plain IP, unchanged");
            }
            other => panic!("{other:?}"),
        }
        // From a VIP the VM does not serve, or to the tenant's own network: refused.
        for (src, dst) in [("203.0.113.20", CLIENT), (VIP, "10.0.0.6")] {
            let mut f = tcp_frame(src, dst, RED5, RED_LB_MAC, tcp::flags::ACK);
            assert_eq!(
                encap::from_vm(&v, 0, &mut f, Meta::default(), 1, &mut out),
                Verdict::Drop(DropReason::SpoofedCa),
                "{src} -> {dst}"
            );
        }
        // Its own CA still goes to the LB as NVGRE.
        let mut f = tcp_frame("10.0.0.5", CLIENT, RED5, RED_LB_MAC, tcp::flags::ACK);
        match encap::from_vm(&v, 0, &mut f, Meta::default(), 1, &mut out) {
            Verdict::Encapsulate { len, .. } => {
                let eth = ethernet::Frame::new_checked(&out[..len]).unwrap();
                assert_eq!(eth.dst_addr(), LB_PA_MAC);
            }
            other => panic!("{other:?}"),
        }
    }
}
