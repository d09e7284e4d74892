//! One AF_PACKET (SOCK_RAW, all protocols) socket bound to one interface: the plain,
//! per-frame backend. Non-blocking; `wait` polls with a timeout.
//!
//! The socket never re-reads what any socket on the host transmits on its interface
//! (PACKET_IGNORE_OUTGOING, Linux >= 4.20), so the LB does not see its own output as
//! input. Several workers on one interface join one PACKET_FANOUT group (hash mode), so
//! the kernel spreads flows over them. This module knows nothing of frames' contents.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use super::error::Error;
use super::sys;

const ETH_P_ALL: u16 = 0x0003;
/// Receive buffer asked for (the kernel caps it at net.core.rmem_max): bursts wait in
/// the socket instead of being dropped while a worker is busy.
const RCVBUF: i32 = 4 << 20;

/// What the kernel knows about a received frame that the bytes do not show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The frame arrived with an 802.1Q/802.1ad tag, which the kernel moved into
    /// metadata: the bytes look untagged, but the LB's ports are untagged, so such a
    /// frame must be dropped, not processed.
    pub vlan_tagged: bool,
    /// The frame's L4 checksum is partial (a local sender with tx offload); forwarding
    /// it unchanged would put a wrong checksum on the wire.
    pub csum_partial: bool,
}

impl Meta {
    pub(crate) fn from_status(status: u32) -> Meta {
        Meta {
            vlan_tagged: status & libc::TP_STATUS_VLAN_VALID != 0,
            csum_partial: status & libc::TP_STATUS_CSUMNOTREADY != 0,
        }
    }
}

/// What one `recv` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// A whole frame of this many bytes is at the front of the buffer.
    Frame(usize, Meta),
    /// A frame longer than the buffer (its real length): the buffer holds only its start.
    Truncated(usize),
    /// Nothing waiting.
    Empty,
}

/// Counters the kernel keeps for the socket (PACKET_STATISTICS): drops show only here,
/// not in `ip -s link`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    pub packets: u64,
    pub drops: u64,
}

/// An AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
}

impl Socket {
    /// Opens a socket on `ifname` (in the calling thread's network namespace), joining
    /// fanout group `fanout` in hash mode when given.
    pub fn open(ifname: &str, fanout: Option<u16>) -> Result<Socket, Error> {
        Socket::open_with(ifname, fanout, "", |_| Ok(())).map(|(s, ())| s)
    }

    /// Opens a socket as `open` does, running `setup` (named `op` in errors) on it
    /// before it is bound, when no frame has reached it yet.
    pub(crate) fn open_with<T>(
        ifname: &str,
        fanout: Option<u16>,
        op: &'static str,
        setup: impl FnOnce(BorrowedFd) -> io::Result<T>,
    ) -> Result<(Socket, T), Error> {
        let ifindex = sys::if_index(ifname).map_err(|_| Error::NoSuchInterface {
            ifname: ifname.to_string(),
        })?;
        let fd = sys::packet_socket().map_err(|e| Error::on_interface(ifname, "socket", e))?;
        let sock = Socket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
        };
        sys::set_int_option(
            sock.fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1,
        )
        .map_err(|e| Error::on_interface(ifname, "PACKET_IGNORE_OUTGOING (Linux >= 4.20)", e))?;
        // Tells stripped VLAN tags and partial checksums apart (see `Meta`).
        sys::set_int_option(sock.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, 1)
            .map_err(|e| Error::on_interface(ifname, "PACKET_AUXDATA", e))?;
        // Best effort: a smaller buffer only means earlier drops, which are counted.
        let _ = sys::set_int_option(sock.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
        let extra = setup(sock.fd.as_fd()).map_err(|e| Error::on_interface(ifname, op, e))?;
        sys::bind_packet(sock.fd.as_fd(), ifindex, ETH_P_ALL)
            .map_err(|e| Error::on_interface(ifname, "bind", e))?;
        if let Some(group) = fanout {
            let arg = i32::from(group) | ((libc::PACKET_FANOUT_HASH as i32) << 16);
            sys::set_int_option(sock.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, arg)
                .map_err(|e| Error::on_interface(ifname, "PACKET_FANOUT", e))?;
        }
        Ok((sock, extra))
    }

    /// A socket on `ifname` that only sends: bound with protocol 0, it is never handed
    /// a received frame, so a sender that reads nothing costs the kernel no copies.
    pub fn open_send_only(ifname: &str) -> Result<Socket, Error> {
        let ifindex = sys::if_index(ifname).map_err(|_| Error::NoSuchInterface {
            ifname: ifname.to_string(),
        })?;
        let fd = sys::packet_socket().map_err(|e| Error::on_interface(ifname, "socket", e))?;
        sys::bind_packet(fd.as_fd(), ifindex, 0)
            .map_err(|e| Error::on_interface(ifname, "bind", e))?;
        Ok(Socket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Takes one waiting frame, if any, without blocking.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Recv> {
        match sys::recv(self.fd.as_fd(), buf) {
            Ok((n, _)) if n > buf.len() => Ok(Recv::Truncated(n)),
            Ok((n, rx)) => Ok(Recv::Frame(n, Meta::from_status(rx.status))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Recv::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Recv::Empty),
            Err(e) => Err(e),
        }
    }

    /// Sends one whole frame out of the interface. `WouldBlock` means the device queue
    /// is full (the frame is not sent).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = sys::send(self.fd.as_fd(), frame)?;
        if n == frame.len() {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::WriteZero, "short send"))
        }
    }

    /// Sends the frames from the front with one syscall (sendmmsg, at most
    /// [`MAX_SEND_BATCH`] at a time); how many the kernel took. `WouldBlock` means the
    /// device queue is full and none went out.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        sys::send_batch(self.fd.as_fd(), frames)
    }

    /// Waits until a frame is waiting or `timeout` passed; true when one is.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        Ok(sys::poll_readable(&[self.fd.as_fd()], ms)? > 0)
    }

    /// Kernel counters since the previous call (the kernel resets them on every read).
    pub fn statistics(&self) -> io::Result<Statistics> {
        let (packets, drops) = sys::packet_statistics(self.fd.as_fd())?;
        Ok(Statistics {
            packets: u64::from(packets),
            drops: u64::from(drops),
        })
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether interface `ifname` is administratively up and operational (carrier, and
/// the kernel's link watch done): `(up, running)`.
pub fn link_state(ifname: &str) -> Result<(bool, bool), Error> {
    let flags =
        sys::if_flags(ifname).map_err(|e| Error::on_interface(ifname, "SIOCGIFFLAGS", e))?;
    Ok((
        flags & libc::IFF_UP as u32 != 0,
        flags & libc::IFF_RUNNING as u32 != 0,
    ))
}

/// Most frames [`Socket::send_batch`] sends in one call.
pub const MAX_SEND_BATCH: usize = sys::MAX_SEND_BATCH;

/// Most sockets [`wait_any`] watches at once.
pub const MAX_WAIT: usize = sys::MAX_POLL_FDS;

/// Waits until a frame is waiting on any of `socks` or `timeout` passed; true when one
/// is. For one thread serving several interfaces (the host simulator); at most
/// [`MAX_WAIT`] sockets (more is an `InvalidInput` error).
pub fn wait_any(socks: &[&Socket], timeout: Duration) -> io::Result<bool> {
    let fds: Vec<BorrowedFd> = socks.iter().map(|s| s.fd.as_fd()).collect();
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    Ok(sys::poll_readable(&fds, ms)? > 0)
}

/// A fanout group id for interface `ifindex` of this process: ids are per network
/// namespace and a group binds to one device, so each interface needs its own, and
/// another process's group must not be joined by accident.
pub fn fanout_group(ifindex: u32) -> u16 {
    let pid = std::process::id();
    (pid as u16) ^ (ifindex as u16).rotate_left(8) ^ ((pid >> 16) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_is_named() {
        let e = Socket::open("nvlb-nosuch0", None).unwrap_err();
        assert!(matches!(e, Error::NoSuchInterface { .. }), "{e}");
        assert!(e.to_string().contains("nvlb-nosuch0"), "{e}");
        let e = Socket::open("a-name-longer-than-ifnamsiz", None).unwrap_err();
        assert!(matches!(e, Error::NoSuchInterface { .. }), "{e}");
    }

    #[test]
    fn fanout_groups_differ_per_interface() {
        assert_ne!(fanout_group(2), fanout_group(3));
    }
}
