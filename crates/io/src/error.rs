//! What can go wrong while setting the data plane up, named for the operator: which
//! interface, which step, and what to do about missing privileges.
//!
//! Only setup errors live here; a failed send or receive on the packet path is counted,
//! never returned, so that one bad frame cannot stop a worker.

use std::io;

/// A data-plane setup failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("interface {ifname:?}: no such interface in this network namespace")]
    NoSuchInterface { ifname: String },
    #[error(
        "interface {ifname:?}: {op} not permitted: needs CAP_NET_RAW (run as root or grant the capability)"
    )]
    NeedsCapNetRaw { ifname: String, op: &'static str },
    #[error("interface {ifname:?}: {op}: {cause}")]
    Interface {
        ifname: String,
        op: &'static str,
        cause: io::Error,
    },
    #[error("{op}: {cause}")]
    Setup { op: &'static str, cause: io::Error },
    #[error("--workers must be between 1 and {max}, got {got}")]
    Workers { got: usize, max: usize },
    #[error(
        "{op}: this kernel has no BPF system call (bpf(2): {cause}): --backend xdp needs a \
         kernel built with CONFIG_BPF_SYSCALL and CONFIG_XDP_SOCKETS; use --backend ring"
    )]
    NoBpf { op: &'static str, cause: io::Error },
    #[error("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): use --backend ring")]
    NoAfXdp,
    #[error("{op} not permitted: needs {caps} (run as root or grant the capabilities)")]
    NeedsCapability {
        op: &'static str,
        caps: &'static str,
    },
    #[error(
        "interface {ifname:?}: registering the AF_XDP UMEM ({} MiB per worker) failed: the \
         locked-memory limit ({}) is too low: raise it (`ulimit -l unlimited`, systemd \
         LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK",
        bytes >> 20,
        limit.map_or("unlimited".to_string(), |l| format!("{} KiB", l >> 10))
    )]
    Memlock {
        ifname: String,
        bytes: u64,
        limit: Option<u64>,
    },
    #[error(
        "interface {ifname:?} has {queues} receive queue(s) but --workers {workers}: \
         --backend xdp runs one worker per queue (raise the queue count: `ethtool -L \
         {ifname} combined {workers}`, or a veth made with `numrxqueues {workers} \
         numtxqueues {workers}`; or lower --workers)"
    )]
    Queues {
        ifname: String,
        queues: u32,
        workers: u32,
    },
    #[error("interface {ifname:?} queue {queue}: {op}: {cause}")]
    Xdp {
        ifname: String,
        queue: u32,
        op: &'static str,
        cause: io::Error,
    },
}

impl Error {
    /// Classifies an errno from a step on interface `ifname`.
    pub(crate) fn on_interface(ifname: &str, op: &'static str, cause: io::Error) -> Error {
        let ifname = ifname.to_string();
        match cause.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::NeedsCapNetRaw { ifname, op },
            Some(libc::ENODEV) | Some(libc::ENXIO) => Error::NoSuchInterface { ifname },
            _ => Error::Interface { ifname, op, cause },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_classes_name_the_interface_and_the_fix() {
        let e = Error::on_interface("ext0", "socket", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(e, Error::NeedsCapNetRaw { .. }));
        assert!(e.to_string().contains("\"ext0\""), "{e}");
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        let e = Error::on_interface("nope", "bind", io::Error::from_raw_os_error(libc::ENODEV));
        assert!(matches!(e, Error::NoSuchInterface { .. }), "{e}");
        let e = Error::on_interface("x", "bind", io::Error::from_raw_os_error(libc::EINVAL));
        assert!(e.to_string().starts_with("interface \"x\": bind: "), "{e}");
    }
}
