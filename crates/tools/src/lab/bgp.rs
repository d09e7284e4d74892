//! BIRD (Debian's bird2) for the scale-out lab: the configuration of the router's
//! BIRD (one eBGP session per LB instance, received routes merged into kernel ECMP
//! routes) and of each instance's BIRD (announcing the VIPs and the anycast gateway PA
//! with the instance's data-side next hops), and the health hook that lets the
//! instance's own readiness (`GET /healthz` of its API) switch the announcement on and
//! off.
//!
//! Pure text: nothing runs here. It must never announce a route whose next hop is not
//! one of the instance's own links to the router, and never let the router export
//! anything to an instance.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The router's AS; instance i (1-based) is `ROUTER_AS + i`.
pub const ROUTER_AS: u32 = 65000;
/// BGP timers of the lab: short, so that a lost instance is noticed within seconds.
pub const HOLD_S: u32 = 3;
pub const KEEPALIVE_S: u32 = 1;
/// The static protocol the health hook enables and disables.
pub const SERVICE_PROTOCOL: &str = "svc";
/// Printed by the hook on stderr when it (re)announces, and when it withdraws.
pub const ANNOUNCED: &str = "nvlb-bgp: announced";
pub const WITHDRAWN: &str = "nvlb-bgp: withdrawn";

/// One instance as BGP sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// 1-based.
    pub index: usize,
    /// The router's and the instance's kernel addresses on their BGP link.
    pub router: Ipv4Addr,
    pub local: Ipv4Addr,
    /// Next hop of the VIPs: the instance's Internet-side data address (no kernel holds
    /// it; the router has a permanent neighbour entry to the instance's external MAC).
    pub vip_next_hop: Ipv4Addr,
    /// Next hop of the PAs: its PA-side data address, the same way.
    pub pa_next_hop: Ipv4Addr,
    /// The same for IPv6 VIPs: a second session over IPv6 on the BGP link, and the
    /// instance's IPv6 neighbour address on its external link.
    pub router6: Ipv6Addr,
    pub local6: Ipv6Addr,
    pub vip_next_hop6: Ipv6Addr,
}

fn timers() -> String {
    format!(
        "  hold time {HOLD_S}; keepalive time {KEEPALIVE_S}; connect delay time 1;\n  \
         connect retry time 1; error wait time 1, 2;\n"
    )
}

/// The router's BIRD: a session per instance, everything received imported, nothing
/// exported to them; the kernel gets every route, equal ones merged into one multipath
/// route (ECMP).
pub fn router_config(peers: &[Peer]) -> String {
    let mut s = String::from("log stderr all;\n");
    if let Some(p) = peers.first() {
        let _ = writeln!(s, "router id {};", p.router);
    }
    s.push_str(
        "protocol device { scan time 1; }\n\
         protocol kernel {\n  ipv4 { import none; export all; };\n  merge paths on;\n}\n\
         protocol kernel {\n  ipv6 { import none; export all; };\n  merge paths on;\n}\n",
    );
    for p in peers {
        let _ = write!(
            s,
            "protocol bgp lb{i} {{\n  local {r} as {ra};\n  neighbor {l} as {la};\n{t}  \
             ipv4 {{ import all; export none; }};\n}}\n",
            i = p.index,
            r = p.router,
            ra = ROUTER_AS,
            l = p.local,
            la = peer_as(p.index),
            t = timers(),
        );
        let _ = write!(
            s,
            "protocol bgp lb{i}v6 {{\n  local {r} as {ra};\n  neighbor {l} as {la};\n{t}  \
             ipv6 {{ import all; export none; }};\n}}\n",
            i = p.index,
            r = p.router6,
            ra = ROUTER_AS,
            l = p.local6,
            la = peer_as(p.index),
            t = timers(),
        );
    }
    s
}

pub fn peer_as(index: usize) -> u32 {
    ROUTER_AS.saturating_add(u32::try_from(index).unwrap_or(0))
}

/// An instance's BIRD: its own PA announced as long as BIRD runs (only this instance
/// can answer there), the VIPs and the shared gateway PA in a static protocol that
/// starts disabled and that the health hook enables while the instance is healthy.
pub fn instance_config(
    p: &Peer,
    vips: &[Ipv4Addr],
    vips6: &[Ipv6Addr],
    anycast_pa: Ipv4Addr,
    own_pa: Ipv4Addr,
) -> String {
    let mut s = format!(
        "log stderr all;\nrouter id {};\nprotocol device {{ scan time 1; }}\n\
         protocol static own {{\n  ipv4;\n  route {own_pa}/32 blackhole;\n}}\n\
         protocol static {SERVICE_PROTOCOL} {{\n  ipv4;\n  disabled;\n  route {anycast_pa}/32 blackhole;\n",
        p.local
    );
    for v in vips {
        let _ = writeln!(s, "  route {v}/32 blackhole;");
    }
    s.push_str("}\n");
    let _ = write!(
        s,
        "protocol bgp up {{\n  local {l} as {la};\n  neighbor {r} as {ra};\n{t}  ipv4 {{\n    \
         import none;\n    export filter {{\n      if net ~ [ {anycast_pa}/32, {own_pa}/32 ] then \
         bgp_next_hop = {pa};\n      else bgp_next_hop = {vip};\n      accept;\n    }};\n  }};\n}}\n",
        l = p.local,
        la = peer_as(p.index),
        r = p.router,
        ra = ROUTER_AS,
        t = timers(),
        pa = p.pa_next_hop,
        vip = p.vip_next_hop,
    );
    let _ = write!(
        s,
        "protocol static {SERVICE_PROTOCOL}6 {{\n  ipv6;\n  disabled;\n"
    );
    for v in vips6 {
        let _ = writeln!(s, "  route {v}/128 blackhole;");
    }
    let _ = write!(
        s,
        "}}\nprotocol bgp up6 {{\n  local {l} as {la};\n  neighbor {r} as {ra};\n{t}  ipv6 {{\n    \
         import none;\n    export filter {{ bgp_next_hop = {vip}; accept; }};\n  }};\n}}\n",
        l = p.local6,
        la = peer_as(p.index),
        r = p.router6,
        ra = ROUTER_AS,
        t = timers(),
        vip = p.vip_next_hop6,
    );
    s
}

/// The health hook, a POSIX shell loop run in the instance's namespace: announce
/// while `GET /healthz` of the instance's API answers, withdraw when it stops.
/// Arguments: BIRD's control socket and the health URL.
pub const HOOK: &str = r#"sock="$1"; url="$2"; up=0
while :; do
  if curl -sf -m 1 -o /dev/null "$url"; then
    if [ $up = 0 ] && birdc -s "$sock" enable svc >/dev/null && birdc -s "$sock" enable svc6 >/dev/null; then up=1; echo "nvlb-bgp: announced" >&2; fi
  else
    if [ $up = 1 ] && birdc -s "$sock" disable svc >/dev/null && birdc -s "$sock" disable svc6 >/dev/null; then up=0; echo "nvlb-bgp: withdrawn" >&2; fi
  fi
  sleep 0.2
done
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u8) -> Peer {
        Peer {
            index: usize::from(i),
            router: Ipv4Addr::new(100, 66, i, 1),
            local: Ipv4Addr::new(100, 66, i, 2),
            vip_next_hop: Ipv4Addr::new(100, 64, i, 2),
            pa_next_hop: Ipv4Addr::new(100, 65, i, 2),
            router6: Ipv6Addr::new(0xfd66, 0, 0, i.into(), 0, 0, 0, 1),
            local6: Ipv6Addr::new(0xfd66, 0, 0, i.into(), 0, 0, 0, 2),
            vip_next_hop6: Ipv6Addr::new(0xfd64, 0, 0, i.into(), 0, 0, 0, 2),
        }
    }

    #[test]
    fn the_router_merges_paths_and_peers_with_every_instance() {
        let c = router_config(&[peer(1), peer(2)]);
        assert!(c.contains("merge paths on"), "{c}");
        assert!(c.contains("neighbor 100.66.1.2 as 65001"), "{c}");
        assert!(c.contains("neighbor 100.66.2.2 as 65002"), "{c}");
        assert!(c.contains("hold time 3"), "{c}");
        assert_eq!(c.matches("export none").count(), 4, "{c}");
        assert!(c.contains("neighbor fd66:0:0:2::2 as 65002"), "{c}");
    }

    #[test]
    fn an_instance_announces_vips_via_its_external_hop_and_pas_via_its_pa_hop() {
        let vip = Ipv4Addr::new(203, 0, 113, 10);
        let vip6: Ipv6Addr = "2001:db8:203::10".parse().unwrap();
        let c = instance_config(
            &peer(2),
            &[vip],
            &[vip6],
            Ipv4Addr::new(192, 168, 6, 10),
            Ipv4Addr::new(192, 168, 6, 32),
        );
        assert!(c.contains("route 203.0.113.10/32 blackhole"), "{c}");
        assert!(c.contains("bgp_next_hop = 100.65.2.2"), "{c}");
        assert!(c.contains("bgp_next_hop = 100.64.2.2"), "{c}");
        assert!(c.contains("route 2001:db8:203::10/128 blackhole"), "{c}");
        assert!(c.contains("bgp_next_hop = fd64:0:0:2::2"), "{c}");
        let svc6 = c.split("protocol static svc6").nth(1).unwrap();
        assert!(
            svc6.trim_start().starts_with("{\n  ipv6;\n  disabled;"),
            "{c}"
        );
        // The service routes start withdrawn: only the hook announces them.
        let svc = c.split("protocol static svc").nth(1).unwrap();
        assert!(
            svc.trim_start().starts_with("{\n  ipv4;\n  disabled;"),
            "{c}"
        );
        assert!(HOOK.contains(ANNOUNCED) && HOOK.contains(WITHDRAWN));
        assert!(HOOK.contains(&format!("enable {SERVICE_PROTOCOL}")));
    }
}
