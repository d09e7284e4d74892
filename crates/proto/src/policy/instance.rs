//! Scale-out: one instance's own view of a policy shared by several instances behind
//! ECMP (docs/scale-out.md). Every instance balances with the same pools and Maglev
//! tables; only its PA (first of its family, so the outer source of what it sends) and
//! its source-NAT CAs are its own, so that what must come back to it alone (full-NAT
//! replies, health-probe replies) is addressed to it alone.
//!
//! `nvlb run --instance NAME` compiles every policy it loads (start, SIGHUP, the API's
//! edits) with that name in its [`CompileOptions`](super::CompileOptions), so that each
//! yields the instance's view. It must never change what is balanced: pools, DIPs and
//! tables stay exactly as declared.

use std::net::IpAddr;

use super::ids::Vsid;
use super::model::Instance;
use super::snapshot::{Parts, Snapshot};

impl Snapshot {
    /// The declared instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&Instance> {
        self.balancer().instances.iter().find(|i| i.name == name)
    }

    /// The policy as instance `name` runs it: its own PAs first on the provider port
    /// (the shared, anycast ones after them, still accepted as destinations), and its
    /// own SNAT CAs in place of the shared ones in every VSID and family it lists. `None` when no
    /// instance has that name.
    pub fn for_instance(&self, name: &str) -> Option<Snapshot> {
        let inst = self.instance(name)?.clone();
        let mut balancer = self.balancer().clone();
        let mut addresses = inst.provider_addresses.clone();
        addresses.extend(
            balancer
                .provider
                .addresses
                .iter()
                .filter(|a| !inst.provider_addresses.contains(a)),
        );
        balancer.provider.addresses = addresses;
        let mut subnets = self.subnets().to_vec();
        for s in &mut subnets {
            let own: Vec<_> = inst
                .snat
                .iter()
                .filter(|(v, _)| *v == s.vsid)
                .map(|(_, r)| *r)
                .collect();
            s.snat
                .retain(|r| !own.iter().any(|o| o.ca.is_ipv6() == r.ca.is_ipv6()));
            s.snat.extend(own);
        }
        Some(Snapshot::assemble(Parts {
            balancer,
            tenants: self.tenants().to_vec(),
            routing_domains: self.routing_domains().to_vec(),
            hosts: self.hosts().to_vec(),
            subnets,
            lookups: self.lookups().to_vec(),
            pools: self.pools().to_vec(),
            outbound: self.outbound_rules().to_vec(),
            warnings: self.warnings().to_vec(),
        }))
    }

    /// The PA of the instance that owns SNAT CA `ca` in `vsid`, of the family `v6`:
    /// where a host sends what a VM addresses to that CA.
    pub fn snat_owner_pa(&self, vsid: Vsid, ca: IpAddr, v6: bool) -> Option<IpAddr> {
        self.balancer()
            .instances
            .iter()
            .find(|i| i.snat.iter().any(|(v, r)| *v == vsid && r.ca == ca))?
            .provider_addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv6() == v6)
    }

    /// Whether `addr` is the own PA of a declared instance (a balancer, to a host).
    pub fn is_instance_pa(&self, addr: IpAddr) -> bool {
        self.balancer()
            .instances
            .iter()
            .any(|i| i.provider_addresses.contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    pub(super) fn two_instances() -> String {
        format!(
            "{EXAMPLE}\n[[balancer.instance]]\nname = \"a\"\nprovider_addresses = [\"192.168.6.31\"]\n\
             snat = [{{ vsid = 5002, ca = \"10.0.1.241\", ports = \"20000-29999\" }}]\n\
             [[balancer.instance]]\nname = \"b\"\nprovider_addresses = [\"192.168.6.32\", \"fd00:6::32\"]\n\
             snat = [{{ vsid = 5002, ca = \"10.0.1.242\", ports = \"20000-29999\" }}]\n"
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_instance_sends_from_its_own_pa_and_nats_to_its_own_ca() {
        let s = Snapshot::from_toml(&two_instances(), "x").unwrap();
        let b = s.for_instance("b").unwrap();
        let p = &b.balancer().provider;
        assert_eq!(p.address_v4(), Some("192.168.6.32".parse().unwrap()));
        assert_eq!(p.address_v6(), Some("fd00:6::32".parse().unwrap()));
        assert!(p.owns(ip("192.168.6.10")), "the anycast PA is still ours");
        let v = Vsid::new(5002).unwrap();
        assert_eq!(b.snat_for(v, false).unwrap().ca, ip("10.0.1.242"));
        assert!(b.is_snat_address(v, ip("10.0.1.242")));
        assert!(!b.is_snat_address(v, ip("10.0.1.250")));
        // VSIDs the instance does not list keep the shared CA; v6 in 5002 too.
        assert_eq!(b.snat_for(v, true).unwrap().ca, ip("fd00:0:0:2::fa"));
        // Balancing is untouched.
        assert_eq!(b.pools(), s.pools());
        assert!(s.for_instance("c").is_none());
    }

    #[test]
    fn hosts_send_to_the_owner_of_a_snat_ca() {
        let s = Snapshot::from_toml(&two_instances(), "x").unwrap();
        let v = Vsid::new(5002).unwrap();
        assert_eq!(
            s.snat_owner_pa(v, ip("10.0.1.241"), false),
            Some(ip("192.168.6.31"))
        );
        assert_eq!(
            s.snat_owner_pa(v, ip("10.0.1.242"), false),
            Some(ip("192.168.6.32"))
        );
        assert_eq!(
            s.snat_owner_pa(v, ip("10.0.1.242"), true),
            Some(ip("fd00:6::32"))
        );
        assert_eq!(s.snat_owner_pa(v, ip("10.0.1.250"), false), None);
        assert!(s.is_instance_pa(ip("192.168.6.31")));
        assert!(!s.is_instance_pa(ip("192.168.6.10")));
    }

    #[test]
    fn conflicting_instances_are_refused_with_their_fields() {
        let bad = format!(
            "{EXAMPLE}\n[[balancer.instance]]\nname = \"a\"\nprovider_addresses = [\"192.168.6.11\"]\n\
             snat = [{{ vsid = 5002, ca = \"10.0.1.21\", ports = \"20000-29999\" }},\n\
             {{ vsid = 7, ca = \"10.0.1.5\", ports = \"1-2\" }}]\n\
             [[balancer.instance]]\nname = \"a\"\nprovider_addresses = [\"10.9.9.9\", \"10.9.9.8\"]\n"
        );
        let e = Snapshot::from_toml(&bad, "x").unwrap_err().to_string();
        for want in [
            "balancer.instance[0].provider_addresses[0]",
            "host `host1`",
            "balancer.instance[0].snat[0].ca",
            "lookup record",
            "balancer.instance[0].snat[1].vsid",
            "balancer.instance[1].name",
            "balancer.instance[1].provider_addresses[1]",
        ] {
            assert!(e.contains(want), "missing {want} in {e}");
        }
    }

    #[test]
    fn the_single_balancer_policy_has_no_instances() {
        let s = Snapshot::from_toml(EXAMPLE, "x").unwrap();
        assert!(s.balancer().instances.is_empty());
    }
}
