//! The Hyper-V host simulator (`nvlb host`): what the lab's hosts do in place of the
//! kernel GRE this machine lacks, from the same lookup records the LB reads.
//!
//! From the PA network it takes NVGRE addressed to its host, checks it against policy
//! (`decap`) and hands the inner frame unchanged to the VM's veth; from a VM it answers
//! ARP and Neighbor Solicitations itself (`proxy`), completes partial checksums
//! (`csum`), answers packets too big for the PA MTU (`toobig`) and sends unicast IP either to a VM of this host or as NVGRE to the host of
//! the destination VM or to the LB (`encap`). `run` owns the sockets and the loop.
//!
//! A SIGHUP makes the simulator take the policy file (and its VM list) afresh: a VM
//! whose lookup records moved to another host is no longer delivered to (`vm_away`),
//! one that moved here is served as soon as its interface is in this namespace.
//!
//! Every decision is a pure function from a frame to a [`Verdict`]; only `run` touches
//! sockets. Nothing here panics on any frame, and a frame is never forwarded without a
//! policy record that allows it: everything else is a counted [`DropReason`].

pub mod csum;
pub mod decap;
pub mod drop;
pub mod dsr;
pub mod encap;
pub mod metrics;
pub mod proxy;
pub mod run;
pub mod toobig;
pub mod view;

pub use drop::DropReason;
pub use run::{Counters, Event, Sockets};
pub use view::{
    Away, HostView, Peer, ViewError, Vm, VmFileError, VmSpec, VmSpecError, parse_vm_file,
};

/// What an ARP/ND answer was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    Arp,
    Nd,
    /// ICMPv4 frag-needed / ICMPv6 packet-too-big: the VM's packet does not fit the PA
    /// MTU once encapsulated.
    TooBig,
}

/// The decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `frame[start..start + len]` goes unchanged to this host's VM `vm`:
    /// decapsulated from the PA network, or from another VM of this host.
    Deliver {
        vm: usize,
        start: usize,
        len: usize,
        /// The frame came from a VM of this host, not from the PA network.
        local: bool,
        /// A partial checksum was completed in the frame first.
        completed: bool,
    },
    /// `out[..len]` is NVGRE for the PA network.
    Encapsulate {
        len: usize,
        completed: bool,
    },
    /// `out[..len]` answers the sender, on the interface the frame came in on.
    Answer {
        len: usize,
        kind: Answered,
    },
    Drop(DropReason),
}
