//! The host simulator's metrics (`nvlb host --metrics`): its counters, published by
//! its loop every [`crate::metrics::publish::PUBLISH_EVERY`], labelled with the host's name
//! from the policy. Exists so that the lab's Prometheus sees both ends of every tunnel;
//! it must never be read on the simulator's packet path.

use std::sync::{Mutex, MutexGuard};

use crate::hostsim::{Counters, DropReason};

use crate::metrics::text::{Exposition, Kind};

/// A host simulator's published counters.
#[derive(Debug)]
pub struct HostMetrics {
    host: String,
    counters: Mutex<Counters>,
}

impl HostMetrics {
    pub fn new(host: &str) -> HostMetrics {
        HostMetrics {
            host: host.to_string(),
            counters: Mutex::new(Counters::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the published copy (called by the simulator's loop between batches).
    pub fn publish(&self, c: &Counters) {
        self.lock().clone_from(c);
    }

    pub fn render(&self) -> String {
        let c = self.lock().clone();
        let host = [("host", self.host.as_str())];
        let mut e = Exposition::new();
        e.family(
            "nvlb_build_info",
            Kind::Gauge,
            "Always 1; the version of nvlb that serves these metrics.",
        );
        e.sample(
            "nvlb_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1u64,
        );
        e.family(
            "nvlb_host_received_frames_total",
            Kind::Counter,
            "Frames a host simulator received, from the PA network or from its VMs.",
        );
        for (side, v) in [("pa", c.rx_pa), ("vm", c.rx_vms)] {
            e.sample(
                "nvlb_host_received_frames_total",
                &[("host", &self.host), ("side", side)],
                v,
            );
        }
        for (name, help, v) in [
            (
                "nvlb_host_decapsulated_packets_total",
                "NVGRE packets from the PA network delivered to a VM.",
                c.decapsulated,
            ),
            (
                "nvlb_host_encapsulated_packets_total",
                "Packets from VMs sent as NVGRE (to the LB or another host).",
                c.encapsulated,
            ),
            (
                "nvlb_host_local_packets_total",
                "Packets from one VM to another VM of the same host.",
                c.vm_to_vm,
            ),
        ] {
            e.family(name, Kind::Counter, help);
            e.sample(name, &host, v);
        }
        e.family(
            "nvlb_host_answers_total",
            Kind::Counter,
            "Answers a host simulator made for its VMs: ARP, ND, packet-too-big.",
        );
        for (kind, v) in [
            ("arp", c.arp_answered),
            ("nd", c.nd_answered),
            ("too_big", c.too_big_answered),
        ] {
            e.sample(
                "nvlb_host_answers_total",
                &[("host", &self.host), ("kind", kind)],
                v,
            );
        }
        e.family(
            "nvlb_host_drops_total",
            Kind::Counter,
            "Frames a host simulator dropped, by reason (docs/metrics.md).",
        );
        for r in DropReason::ALL {
            e.sample(
                "nvlb_host_drops_total",
                &[("host", &self.host), ("reason", r.name())],
                c.dropped(*r),
            );
        }
        for (reason, v) in [
            ("rx_truncated", c.rx_truncated),
            ("rx_error", c.rx_errors),
            ("tx_error", c.tx_errors),
        ] {
            e.sample(
                "nvlb_host_drops_total",
                &[("host", &self.host), ("reason", reason)],
                v,
            );
        }
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_published_counters() {
        let m = HostMetrics::new("host1");
        let mut c = Counters {
            decapsulated: 5,
            ..Counters::default()
        };
        c.drops[DropReason::UnknownPa as usize] = 2;
        m.publish(&c);
        let page = m.render();
        assert!(page.contains("nvlb_host_decapsulated_packets_total{host=\"host1\"} 5\n"));
        assert!(page.contains("nvlb_host_drops_total{host=\"host1\",reason=\"unknown_pa\"} 2\n"));
        assert!(page.contains("nvlb_host_drops_total{host=\"host1\",reason=\"tx_error\"} 0\n"));
    }
}
