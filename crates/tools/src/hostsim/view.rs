//! One Hyper-V host's view of the policy: which host it is, which VMs it runs (given on
//! the command line, each checked against the lookup records), where every other VM of
//! the same VSIDs lives, and what ARP/ND answers a VM gets.
//!
//! Built before any socket opens, so that a wrong host name or a VM the policy does not
//! place here stops the simulator with a message naming it. A reload (SIGHUP) builds a
//! new view leniently instead: a VM given to this host whose lookup records now name
//! another host (live-migrated away) is kept aside as [`Away`], never delivered to, and
//! one whose records moved here is served. A view never changes once built and never
//! does I/O.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::dataplane::afpacket::MAX_WAIT;
use crate::policy::{Host, HostId, Snapshot, Vsid};
use crate::wire::MacAddr;

/// Most VMs one simulator serves: one socket each, plus the PA socket, in one poll set.
pub const MAX_VMS: usize = MAX_WAIT - 1;

/// A VM as given on the command line: `VSID,MAC,IFNAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec {
    pub vsid: Vsid,
    pub mac: MacAddr,
    /// The host-side end of the VM's veth.
    pub ifname: String,
}

/// Why a `--vm` argument could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmSpecError {
    #[error("expected VSID,MAC,IFNAME (e.g. 5001,00:1d:d8:b7:1c:01,vm-b5)")]
    Shape,
    #[error("VSID {0:?}: expected an integer in 4096..=16777214")]
    Vsid(String),
    #[error("MAC {0:?}: expected six hex bytes, e.g. 00:1d:d8:b7:1c:01")]
    Mac(String),
    #[error("interface name {0:?}: expected 1 to 15 characters without '/' or spaces")]
    Ifname(String),
}

impl FromStr for VmSpec {
    type Err = VmSpecError;

    fn from_str(s: &str) -> Result<VmSpec, VmSpecError> {
        let mut parts = s.split(',');
        let (Some(vsid), Some(mac), Some(ifname), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VmSpecError::Shape);
        };
        let vsid = vsid
            .trim()
            .parse::<u32>()
            .ok()
            .and_then(Vsid::new)
            .filter(|v| !v.is_reserved() && !v.is_public())
            .ok_or_else(|| VmSpecError::Vsid(vsid.to_string()))?;
        let mac = mac
            .trim()
            .parse::<MacAddr>()
            .ok()
            .filter(MacAddr::is_unicast)
            .ok_or_else(|| VmSpecError::Mac(mac.to_string()))?;
        let ifname = ifname.trim();
        if ifname.is_empty()
            || ifname.len() > 15
            || ifname.contains(|c: char| c == '/' || c.is_whitespace())
        {
            return Err(VmSpecError::Ifname(ifname.to_string()));
        }
        Ok(VmSpec {
            vsid,
            mac,
            ifname: ifname.to_string(),
        })
    }
}

/// Why a VM file (`--vm-file`) could not be read: every bad line, as `file:line: why`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct VmFileError(pub Vec<String>);

/// The VMs of a VM file: one `VSID,MAC,IFNAME` per line, `#` to the end of a line is a
/// comment, blank lines are skipped. `name` is the file's name in messages.
pub fn parse_vm_file(text: &str, name: &str) -> Result<Vec<VmSpec>, VmFileError> {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in (1..).zip(text.lines()) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<VmSpec>() {
            Ok(s) => specs.push(s),
            Err(e) => errors.push(format!("{name}:{n}: {line:?}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(VmFileError(errors))
    }
}

/// Why the simulator cannot serve the host and VMs it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("unknown host {name:?}: the policy declares {known}")]
    UnknownHost { name: String, known: String },
    #[error("--vm {vsid},{mac}: no lookup record in VSID {vsid} has MAC {mac}")]
    NoLookupRecord { vsid: Vsid, mac: MacAddr },
    #[error(
        "--vm {vsid},{mac}: the lookup records place this VM on host {other:?}, not on {host:?}"
    )]
    OnOtherHost {
        vsid: Vsid,
        mac: MacAddr,
        host: String,
        other: String,
    },
    #[error("--vm {vsid},{mac} is given twice")]
    DuplicateVm { vsid: Vsid, mac: MacAddr },
    #[error("interface {ifname:?} is given twice (--pa and --vm interfaces must differ)")]
    DuplicateInterface { ifname: String },
    #[error("at most {max} --vm per host simulator, got {got}")]
    TooManyVms { max: usize, got: usize },
}

/// A VM given to this host (`--vm`, `--vm-file`) that the lookup records do not place
/// here: moved to another host (or its records deleted). Frames for it are dropped as
/// `vm_away`, and the simulator holds no socket on its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Away {
    pub spec: VmSpec,
    /// The host its records name now, if any.
    pub now_on: Option<String>,
}

/// A VM of this host, with the CAs its lookup records give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    pub vsid: Vsid,
    pub mac: MacAddr,
    pub ifname: String,
    pub cas: Vec<IpAddr>,
    /// The LB's MAC in the VM's VSID: the gateway and every unknown address resolve to it.
    pub lb_mac: MacAddr,
}

/// Where an encapsulated frame goes on the PA network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Lb,
    Host(HostId),
}

/// The outer layers toward one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
}

/// The policy as one host sees it.
#[derive(Debug)]
pub struct HostView {
    policy: Arc<Snapshot>,
    id: HostId,
    vms: Vec<Vm>,
    local: HashMap<(Vsid, MacAddr), usize>,
    remote: HashMap<(Vsid, MacAddr), HostId>,
    away: Vec<Away>,
}

impl HostView {
    /// Checks `name` and every VM against `policy`: each VM needs a lookup record with
    /// its VSID and MAC on this host. `pa_ifname` only takes part in the check that no
    /// interface is given twice.
    pub fn new(
        policy: Arc<Snapshot>,
        name: &str,
        pa_ifname: &str,
        specs: &[VmSpec],
    ) -> Result<HostView, ViewError> {
        HostView::build(policy, name, pa_ifname, specs, false)
    }

    /// The view after a reload: as [`HostView::new`], but a VM whose lookup records place
    /// it on another host (or nowhere) is set aside as [`Away`] instead of refused, since
    /// the orchestrator moves records before the host lists change.
    pub fn reload(
        policy: Arc<Snapshot>,
        name: &str,
        pa_ifname: &str,
        specs: &[VmSpec],
    ) -> Result<HostView, ViewError> {
        HostView::build(policy, name, pa_ifname, specs, true)
    }

    fn build(
        policy: Arc<Snapshot>,
        name: &str,
        pa_ifname: &str,
        specs: &[VmSpec],
        lenient: bool,
    ) -> Result<HostView, ViewError> {
        let Some(id) = (0..)
            .zip(policy.hosts())
            .find_map(|(id, h): (HostId, &Host)| (h.name == name).then_some(id))
        else {
            let known: Vec<&str> = policy.hosts().iter().map(|h| h.name.as_str()).collect();
            return Err(ViewError::UnknownHost {
                name: name.to_string(),
                known: if known.is_empty() {
                    "no hosts".to_string()
                } else {
                    known.join(", ")
                },
            });
        };
        if specs.len() > MAX_VMS {
            return Err(ViewError::TooManyVms {
                max: MAX_VMS,
                got: specs.len(),
            });
        }
        let mut ifnames = vec![pa_ifname];
        let mut vms = Vec::with_capacity(specs.len());
        let mut local = HashMap::new();
        let mut away: Vec<Away> = Vec::new();
        for spec in specs {
            if ifnames.contains(&spec.ifname.as_str()) {
                return Err(ViewError::DuplicateInterface {
                    ifname: spec.ifname.clone(),
                });
            }
            ifnames.push(&spec.ifname);
            let records: Vec<_> = policy
                .lookups()
                .iter()
                .filter(|r| r.vsid == spec.vsid && r.mac == spec.mac)
                .collect();
            let cas: Vec<IpAddr> = records
                .iter()
                .filter(|r| r.host == id)
                .map(|r| r.ca)
                .collect();
            if away
                .iter()
                .any(|a| a.spec.vsid == spec.vsid && a.spec.mac == spec.mac)
            {
                return Err(ViewError::DuplicateVm {
                    vsid: spec.vsid,
                    mac: spec.mac,
                });
            }
            let host_name = |id: HostId| {
                policy
                    .get_host(id)
                    .map_or_else(|| id.to_string(), |h| h.name.clone())
            };
            if cas.is_empty() && lenient {
                if local.contains_key(&(spec.vsid, spec.mac)) {
                    return Err(ViewError::DuplicateVm {
                        vsid: spec.vsid,
                        mac: spec.mac,
                    });
                }
                away.push(Away {
                    spec: spec.clone(),
                    now_on: records.first().map(|r| host_name(r.host)),
                });
                continue;
            }
            if cas.is_empty() {
                return Err(match records.first() {
                    None => ViewError::NoLookupRecord {
                        vsid: spec.vsid,
                        mac: spec.mac,
                    },
                    Some(r) => ViewError::OnOtherHost {
                        vsid: spec.vsid,
                        mac: spec.mac,
                        host: name.to_string(),
                        other: host_name(r.host),
                    },
                });
            }
            // A lookup record's VSID is declared (validation), so its subnet exists.
            let Some(subnet) = policy.subnet(spec.vsid) else {
                return Err(ViewError::NoLookupRecord {
                    vsid: spec.vsid,
                    mac: spec.mac,
                });
            };
            if local.insert((spec.vsid, spec.mac), vms.len()).is_some() {
                return Err(ViewError::DuplicateVm {
                    vsid: spec.vsid,
                    mac: spec.mac,
                });
            }
            vms.push(Vm {
                vsid: spec.vsid,
                mac: spec.mac,
                ifname: spec.ifname.clone(),
                cas,
                lb_mac: subnet.lb_mac,
            });
        }
        let mut remote = HashMap::new();
        for r in policy.lookups() {
            if r.host != id {
                remote.entry((r.vsid, r.mac)).or_insert(r.host);
            }
        }
        Ok(HostView {
            policy,
            id,
            vms,
            local,
            remote,
            away,
        })
    }

    /// The VMs given to this host that the lookup records place elsewhere.
    pub fn away(&self) -> &[Away] {
        &self.away
    }

    /// Whether the VM with `mac` in `vsid` was given to this host but has moved away.
    pub fn is_away(&self, vsid: Vsid, mac: MacAddr) -> bool {
        self.away
            .iter()
            .any(|a| a.spec.vsid == vsid && a.spec.mac == mac)
    }

    pub fn policy(&self) -> &Snapshot {
        &self.policy
    }

    pub fn host(&self) -> &Host {
        self.policy.host(self.id)
    }

    pub fn host_id(&self) -> HostId {
        self.id
    }

    pub fn vms(&self) -> &[Vm] {
        &self.vms
    }

    pub fn vm(&self, index: usize) -> Option<&Vm> {
        self.vms.get(index)
    }

    /// The index of this host's VM with `mac` in `vsid`.
    pub fn local_vm(&self, vsid: Vsid, mac: MacAddr) -> Option<usize> {
        self.local.get(&(vsid, mac)).copied()
    }

    /// The host of another host's VM with `mac` in `vsid`.
    pub fn remote_host(&self, vsid: Vsid, mac: MacAddr) -> Option<HostId> {
        self.remote.get(&(vsid, mac)).copied()
    }

    /// Whether `addr` is one of this host's PAs.
    pub fn owns_pa(&self, addr: IpAddr) -> bool {
        self.host().pa(addr.is_ipv6()) == Some(addr)
    }

    /// Who sent NVGRE from outer source `addr`, if anyone this host accepts it from.
    pub fn sender(&self, addr: IpAddr) -> Option<Peer> {
        if self.policy.balancer().provider.owns(addr) || self.policy.is_instance_pa(addr) {
            Some(Peer::Lb)
        } else {
            self.policy.host_by_pa(addr).map(Peer::Host)
        }
    }

    /// The MAC that ARP/ND answers for `addr` asked inside `vsid`: a VM's (from its lookup
    /// record, wherever it runs), else the LB's for any other address of the VSID's
    /// prefixes (the gateway, VIPs, off-subnet hops), else none.
    pub fn resolve(&self, vsid: Vsid, addr: IpAddr) -> Option<MacAddr> {
        if let Some(r) = self.policy.lookup(vsid, addr) {
            return Some(r.mac);
        }
        let subnet = self.policy.subnet(vsid)?;
        subnet
            .prefixes
            .iter()
            .any(|p| p.contains(addr))
            .then_some(subnet.lb_mac)
    }

    /// The outer layers toward `peer`: IPv4 when both sides have an IPv4 PA, else IPv6
    /// (the LB's own rule), else none.
    pub fn outer_to(&self, peer: Peer) -> Option<Outer> {
        let me = self.host();
        let (v4, v6, dst_mac) = match peer {
            Peer::Lb => {
                let p = &self.policy.balancer().provider;
                (p.address_v4(), p.address_v6(), p.mac)
            }
            Peer::Host(id) => {
                let h = self.policy.get_host(id)?;
                (h.pa_v4, h.pa_v6, h.mac)
            }
        };
        let (src, dst) = match (me.pa_v4, v4, me.pa_v6, v6) {
            (Some(s), Some(d), _, _) => (IpAddr::V4(s), IpAddr::V4(d)),
            (_, _, Some(s), Some(d)) => (IpAddr::V6(s), IpAddr::V6(d)),
            _ => return None,
        };
        Some(Outer {
            src,
            dst,
            src_mac: me.mac,
            dst_mac,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    pub(crate) fn policy() -> Arc<Snapshot> {
        Arc::new(Snapshot::from_toml(EXAMPLE, "example.toml").expect("example policy"))
    }

    pub(crate) fn spec(s: &str) -> VmSpec {
        s.parse().expect("vm spec")
    }

    /// host1 with Blue 10.0.0.5 (as the lab runs it), built once: building the
    /// policy's Maglev tables dominates the tests' time.
    pub(crate) fn host1() -> &'static HostView {
        static VIEW: std::sync::LazyLock<HostView> = std::sync::LazyLock::new(|| {
            HostView::new(
                policy(),
                "host1",
                "pa0",
                &[spec("5001,00:1d:d8:b7:1c:01,vm-b5")],
            )
            .expect("host1 view")
        });
        &VIEW
    }

    #[test]
    fn vm_specs_parse_and_refuse() {
        let s = spec(" 5001, 00:1d:d8:b7:1c:01 ,vm-b5");
        assert_eq!(s.vsid.get(), 5001);
        assert_eq!(s.mac.to_string(), "00:1d:d8:b7:1c:01");
        assert_eq!(s.ifname, "vm-b5");
        for (bad, want) in [
            ("5001,00:1d:d8:b7:1c:01", VmSpecError::Shape),
            ("5001,00:1d:d8:b7:1c:01,a,b", VmSpecError::Shape),
            (
                "4095,00:1d:d8:b7:1c:01,vm",
                VmSpecError::Vsid("4095".into()),
            ),
            ("x,00:1d:d8:b7:1c:01,vm", VmSpecError::Vsid("x".into())),
            (
                "5001,01:00:5e:00:00:01,vm",
                VmSpecError::Mac("01:00:5e:00:00:01".into()),
            ),
            (
                "5001,00:1d:d8:b7:1c:01,a-very-long-ifname",
                VmSpecError::Ifname("a-very-long-ifname".into()),
            ),
            ("5001,00:1d:d8:b7:1c:01,", VmSpecError::Ifname("".into())),
        ] {
            assert_eq!(bad.parse::<VmSpec>(), Err(want), "{bad}");
        }
    }

    #[test]
    fn a_vm_gets_its_cas_and_subnet_from_policy() {
        let v = host1();
        let vm = &v.vms()[0];
        let cas: Vec<String> = vm.cas.iter().map(|a| a.to_string()).collect();
        assert_eq!(cas, ["10.0.0.5", "fd00:0:0:1::5"]);
        assert_eq!(vm.lb_mac.to_string(), "02:00:00:b1:00:fe");
        assert_eq!(v.local_vm(vm.vsid, vm.mac), Some(0));
        let red = Vsid::new(6001).unwrap();
        assert_eq!(
            v.local_vm(red, vm.mac),
            None,
            "a MAC is local only in its VSID"
        );
        // Blue 10.0.0.6 lives on host2.
        let b6 = "00:1d:d8:b7:1c:02".parse().unwrap();
        assert_eq!(v.remote_host(vm.vsid, b6), Some(1));
    }

    #[test]
    fn refuses_unknown_hosts_and_misplaced_vms() {
        let e = HostView::new(policy(), "host9", "pa0", &[]).unwrap_err();
        assert!(matches!(e, ViewError::UnknownHost { .. }));
        assert!(e.to_string().contains("host1, host2"), "{e}");
        // Blue 10.0.0.6 runs on host2.
        let e = HostView::new(
            policy(),
            "host1",
            "pa0",
            &[spec("5001,00:1d:d8:b7:1c:02,vm-b6")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"host2\""), "{e}");
        // Blue's MAC in Red's VSID has no record at all.
        let e = HostView::new(
            policy(),
            "host1",
            "pa0",
            &[spec("6001,00:1d:d8:b7:1c:01,vm-b5")],
        )
        .unwrap_err();
        assert!(matches!(e, ViewError::NoLookupRecord { .. }), "{e}");
        let twice = [
            spec("5001,00:1d:d8:b7:1c:01,vm-a"),
            spec("5001,00:1d:d8:b7:1c:01,vm-b"),
        ];
        let e = HostView::new(policy(), "host1", "pa0", &twice).unwrap_err();
        assert!(matches!(e, ViewError::DuplicateVm { .. }), "{e}");
        let e = HostView::new(
            policy(),
            "host1",
            "vm-b5",
            &[spec("5001,00:1d:d8:b7:1c:01,vm-b5")],
        )
        .unwrap_err();
        assert!(matches!(e, ViewError::DuplicateInterface { .. }), "{e}");
    }

    #[test]
    fn resolves_vms_then_the_lb_inside_the_prefixes_only() {
        let v = host1();
        let blue = Vsid::new(5001).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lb_mac: MacAddr = "02:00:00:b1:00:fe".parse().unwrap();
        assert_eq!(
            v.resolve(blue, ip("10.0.0.6")),
            Some("00:1d:d8:b7:1c:02".parse().unwrap())
        );
        assert_eq!(v.resolve(blue, ip("10.0.0.1")), Some(lb_mac));
        assert_eq!(v.resolve(blue, ip("fd00:0:0:1::1")), Some(lb_mac));
        assert_eq!(v.resolve(blue, ip("10.0.1.1")), None, "not Blue tier 1");
        assert_eq!(v.resolve(blue, ip("fe80::1")), None);
        // Red's 10.0.0.5 is another VM than Blue's.
        let red = Vsid::new(6001).unwrap();
        assert_eq!(
            v.resolve(red, ip("10.0.0.5")),
            Some("00:1d:d8:e0:1c:01".parse().unwrap())
        );
    }

    #[test]
    fn outer_prefers_ipv4_and_names_senders() {
        let v = host1();
        let o = v.outer_to(Peer::Lb).unwrap();
        assert_eq!(o.src, ip4("192.168.6.11"));
        assert_eq!(o.dst, ip4("192.168.6.10"));
        assert_eq!(o.dst_mac.to_string(), "02:00:00:00:06:0a");
        assert_eq!(o.src_mac.to_string(), "02:00:00:00:06:11");
        let o = v.outer_to(Peer::Host(2)).unwrap();
        assert_eq!(o.dst, ip4("192.168.6.13"));
        assert_eq!(v.sender(ip4("192.168.6.10")), Some(Peer::Lb));
        assert_eq!(v.sender("fd00:6::12".parse().unwrap()), Some(Peer::Host(1)));
        assert_eq!(v.sender(ip4("192.168.6.99")), None);
        assert!(v.owns_pa(ip4("192.168.6.11")));
        assert!(v.owns_pa("fd00:6::11".parse().unwrap()));
        assert!(!v.owns_pa(ip4("192.168.6.12")));
    }

    fn ip4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The example with Blue 10.0.0.5 (both records) moved from host1 to host2.
    pub(crate) fn b5_moved_to_host2() -> Arc<Snapshot> {
        let text = EXAMPLE
            .replace(
                "ca = \"10.0.0.5\"\nhost = \"host1\"",
                "ca = \"10.0.0.5\"\nhost = \"host2\"",
            )
            .replace(
                "ca = \"fd00:0:0:1::5\"\nhost = \"host1\"",
                "ca = \"fd00:0:0:1::5\"\nhost = \"host2\"",
            );
        assert_ne!(text, EXAMPLE, "the example's records are as expected");
        Arc::new(Snapshot::from_toml(&text, "moved.toml").expect("moved policy"))
    }

    #[test]
    fn a_reload_sets_a_moved_vm_aside_and_serves_one_moved_here() {
        let moved = b5_moved_to_host2();
        let b5 = spec("5001,00:1d:d8:b7:1c:01,vm-b5");
        let b6 = spec("5001,00:1d:d8:b7:1c:02,vm-b6");
        // At start a misplaced VM is refused; on reload it is away.
        let e =
            HostView::new(moved.clone(), "host1", "pa0", std::slice::from_ref(&b5)).unwrap_err();
        assert!(matches!(e, ViewError::OnOtherHost { .. }), "{e}");
        let v = HostView::reload(moved.clone(), "host1", "pa0", std::slice::from_ref(&b5))
            .expect("lenient");
        assert!(v.vms().is_empty());
        assert_eq!(v.away().len(), 1);
        assert_eq!(v.away()[0].now_on.as_deref(), Some("host2"));
        assert!(v.is_away(b5.vsid, b5.mac));
        assert_eq!(v.local_vm(b5.vsid, b5.mac), None);
        assert_eq!(v.remote_host(b5.vsid, b5.mac), Some(1), "sent to host2 now");
        // host2 serves it with both CAs, beside its own VM.
        let v = HostView::reload(moved, "host2", "pa0", &[b6.clone(), b5.clone()]).unwrap();
        assert_eq!(v.vms().len(), 2);
        assert!(v.away().is_empty());
        let i = v.local_vm(b5.vsid, b5.mac).expect("b5 here");
        assert_eq!(v.vm(i).unwrap().cas.len(), 2);
        // Lenient is not careless: duplicates are still refused.
        let again = spec("5001,00:1d:d8:b7:1c:01,vm-x");
        let e = HostView::reload(policy(), "host2", "pa0", &[b5, again]).unwrap_err();
        assert!(matches!(e, ViewError::DuplicateVm { .. }), "{e}");
    }

    #[test]
    fn vm_files_take_comments_and_name_every_bad_line() {
        let specs = parse_vm_file(
            "# host3\n\n5001,00:1d:d8:b7:1c:03,vm-b7  # web\n 5001,00:1d:d8:b7:1c:04,vm-b8\n",
            "h.vms",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].ifname, "vm-b8");
        let e = parse_vm_file(
            "5001,00:1d:d8:b7:1c:03,vm-b7\nnope\n7,00:1d:d8:b7:1c:03,x\n",
            "h.vms",
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.0[0].starts_with("h.vms:2: "), "{e}");
        assert!(e.0[1].starts_with("h.vms:3: "), "{e}");
    }
}
