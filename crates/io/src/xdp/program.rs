//! The XDP filter nvlb attaches to each data port, and its attachment.
//!
//! The program passes the LB only what it owns and everything else to the kernel, so
//! the host keeps its own addresses (SSH, BGP, monitoring) on the same port: a frame
//! goes to the AF_XDP socket of its receive queue (`bpf_redirect_map` into the port's
//! XSKMAP) when the address that decides it is in the owned-address map, which is
//!
//! - IPv4: the destination; IPv6: the destination, or for a Neighbor Solicitation
//!   (next header ICMPv6, type 135) its target: NS go to solicited-node multicast
//!   addresses, which name no one;
//! - ARP: the target protocol address (requests for the LB's addresses, and replies
//!   to them);
//! - behind one 802.1Q or 802.1ad tag, the same fields: the LB's ports are untagged,
//!   so the worker drops such a frame and counts it (`io.rx_vlan_tagged`), as the
//!   AF_PACKET backends do, instead of the kernel seeing it.
//!
//! NVGRE to the LB is IPv4/IPv6 to one of its PAs, so the destination rule covers it.
//! With no socket on the frame's queue the redirect falls back to XDP_PASS (the low
//! bits of its flags), so nothing is lost while workers start or stop.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::asm::{Asm, AsmError, Cond, R0, R1, R2, R3, R4, R5, R6, R8, R9, R10, Size};
use super::maps::OwnedAddrs;
use super::sys;

/// XDP verdicts (enum xdp_action).
pub const XDP_PASS: i32 = 2;
/// What the test variant returns for a frame the LB owns (XDP_TX: never returned by
/// the real program, so a test run tells the two apart).
pub const TEST_OWNED: i32 = 3;

/// Kernel helpers (enum bpf_func_id).
const MAP_LOOKUP_ELEM: i32 = 1;
const REDIRECT_MAP: i32 = 51;

/// struct xdp_md fields.
const MD_DATA: i16 = 0;
const MD_DATA_END: i16 = 4;
const MD_RX_QUEUE_INDEX: i16 = 16;

/// The owned-address map's key on the stack: 16 bytes at r10 - 16.
const KEY: i16 = -16;

/// Ethertypes as a 16-bit load from the frame reads them (network byte order in
/// memory, so the comparison constant is the byte-swapped value on this host).
fn ethertype(t: u16) -> i32 {
    i32::from(u16::from_ne_bytes(t.to_be_bytes()))
}

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const IPPROTO_ICMPV6: i32 = 58;
const ND_NEIGHBOR_SOLICIT: i32 = 135;

/// What an owned frame does: the real redirect, or a marker for test runs.
#[derive(Clone, Copy, Debug)]
pub enum OnOwned<'a> {
    /// Redirect into this XSKMAP by receive queue.
    Redirect(BorrowedFd<'a>),
    /// Return [`TEST_OWNED`] (for BPF_PROG_TEST_RUN, where no socket can receive).
    Mark,
}

/// The filter's instructions, for the owned-address map `owned` (a descriptor).
pub fn assemble(owned: BorrowedFd, on_owned: OnOwned) -> Result<Vec<u64>, AsmError> {
    let owned = owned.as_raw_fd();
    let mut a = Asm::new();
    let pass = a.label();
    let lookup = a.label();
    let key4 = a.label();
    let key6 = a.label();
    let tagged = a.label();

    // r6 = rx queue (kept across calls), r2 = data, r3 = data_end.
    a.load(Size::W, R6, R1, MD_RX_QUEUE_INDEX);
    a.load(Size::W, R2, R1, MD_DATA);
    a.load(Size::W, R3, R1, MD_DATA_END);
    a.mov_reg(R4, R2);
    a.add_imm(R4, 14);
    a.jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::H, R5, R2, 12);
    a.jump_imm(Cond::Eq, R5, ethertype(ETH_VLAN), tagged);
    a.jump_imm(Cond::Eq, R5, ethertype(ETH_QINQ), tagged);
    network(&mut a, 14, pass, key4, key6)?;
    a.place(tagged)?;
    a.mov_reg(R4, R2);
    a.add_imm(R4, 18);
    a.jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::H, R5, R2, 16);
    network(&mut a, 18, pass, key4, key6)?;

    // key4: ::ffff:r5 (the IPv4-mapped form: one map for both families).
    a.place(key4)?;
    a.store_imm(Size::DW, R10, KEY, 0);
    a.store_imm(
        Size::W,
        R10,
        KEY + 8,
        i32::from_ne_bytes([0, 0, 0xff, 0xff]),
    );
    a.store_reg(Size::W, R10, KEY + 12, R5);
    a.goto(lookup);
    // key6: r8, r9 (the address's two halves, in memory order).
    a.place(key6)?;
    a.store_reg(Size::DW, R10, KEY, R8);
    a.store_reg(Size::DW, R10, KEY + 8, R9);

    a.place(lookup)?;
    a.load_map_fd(R1, owned);
    a.mov_reg(R2, R10);
    a.add_imm(R2, i32::from(KEY));
    a.call(MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, pass);
    match on_owned {
        OnOwned::Redirect(xsks) => {
            a.load_map_fd(R1, xsks.as_raw_fd());
            a.mov_reg(R2, R6);
            a.mov_imm(R3, XDP_PASS);
            a.call(REDIRECT_MAP);
        }
        OnOwned::Mark => a.mov_imm(R0, TEST_OWNED),
    }
    a.exit();

    a.place(pass)?;
    a.mov_imm(R0, XDP_PASS);
    a.exit();
    a.finish()
}

/// The network layer at `l3` (ethertype in r5, r2..r3 the frame): picks the address
/// to look up and jumps to `key4` (address in r5) or `key6` (in r8, r9).
fn network(
    a: &mut Asm,
    l3: i16,
    pass: super::asm::Label,
    key4: super::asm::Label,
    key6: super::asm::Label,
) -> Result<(), AsmError> {
    let v4 = a.label();
    let v6 = a.label();
    let arp = a.label();
    let v6_dst = a.label();
    a.jump_imm(Cond::Eq, R5, ethertype(ETH_IPV4), v4);
    a.jump_imm(Cond::Eq, R5, ethertype(ETH_IPV6), v6);
    a.jump_imm(Cond::Eq, R5, ethertype(ETH_ARP), arp);
    a.goto(pass);

    // IPv4: destination at 16 of a 20-byte header.
    a.place(v4)?;
    a.mov_reg(R4, R2);
    a.add_imm(R4, i32::from(l3 + 20));
    a.jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::W, R5, R2, l3 + 16);
    a.goto(key4);

    // ARP (Ethernet/IPv4): target protocol address at 24 of 28.
    a.place(arp)?;
    a.mov_reg(R4, R2);
    a.add_imm(R4, i32::from(l3 + 28));
    a.jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::W, R5, R2, l3 + 24);
    a.goto(key4);

    // IPv6: a Neighbor Solicitation's target (8 bytes into the ICMPv6 message after a
    // 40-byte header), else the destination (at 24).
    a.place(v6)?;
    a.mov_reg(R4, R2);
    a.add_imm(R4, i32::from(l3 + 40));
    a.jump_reg(Cond::Gt, R4, R3, pass);
    a.load(Size::B, R5, R2, l3 + 6);
    a.jump_imm(Cond::Ne, R5, IPPROTO_ICMPV6, v6_dst);
    a.mov_reg(R4, R2);
    a.add_imm(R4, i32::from(l3 + 64));
    a.jump_reg(Cond::Gt, R4, R3, v6_dst);
    a.load(Size::B, R5, R2, l3 + 40);
    a.jump_imm(Cond::Ne, R5, ND_NEIGHBOR_SOLICIT, v6_dst);
    a.load(Size::DW, R8, R2, l3 + 48);
    a.load(Size::DW, R9, R2, l3 + 56);
    a.goto(key6);
    a.place(v6_dst)?;
    a.load(Size::DW, R8, R2, l3 + 24);
    a.load(Size::DW, R9, R2, l3 + 32);
    a.goto(key6);
    Ok(())
}

/// A loaded filter program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Assembles and loads the filter (the kernel's verifier checks it here).
    pub fn load(owned: &OwnedAddrs, on_owned: OnOwned) -> std::io::Result<Program> {
        let insns = assemble(owned.fd(), on_owned).map_err(std::io::Error::other)?;
        let fd = sys::prog_load(&insns, "nvlb_owned")?;
        Ok(Program { fd })
    }

    /// The program's verdict on `frame` (BPF_PROG_TEST_RUN).
    pub fn test_run(&self, frame: &[u8]) -> std::io::Result<u32> {
        sys::prog_test_run(self.fd.as_fd(), frame)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// XDP attach modes (XDP_FLAGS_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the driver, before an skb exists.
    Native,
    /// After the skb is built (any driver; the slow fallback).
    Generic,
}

impl Mode {
    fn flags(self) -> u32 {
        match self {
            Mode::Generic => 1 << 1,
            Mode::Native => 1 << 2,
        }
    }
}

/// A program attached to an interface through a BPF link: detached when this (and so
/// the link's descriptor) is dropped, or when the process dies in any way.
#[derive(Debug)]
pub struct Attached {
    _link: OwnedFd,
    pub mode: Mode,
}

impl Attached {
    /// Attaches `prog` to `ifindex` in native mode, or in generic mode when the driver
    /// has no native XDP; with the reason native mode was refused, for a warning.
    pub fn attach(
        prog: &Program,
        ifindex: u32,
    ) -> std::io::Result<(Attached, Option<std::io::Error>)> {
        match sys::link_create_xdp(prog.fd(), ifindex, Mode::Native.flags()) {
            Ok(link) => Ok((
                Attached {
                    _link: link,
                    mode: Mode::Native,
                },
                None,
            )),
            Err(native) => {
                let link = sys::link_create_xdp(prog.fd(), ifindex, Mode::Generic.flags())?;
                Ok((
                    Attached {
                        _link: link,
                        mode: Mode::Generic,
                    },
                    Some(native),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The filter run by the kernel itself (BPF_PROG_TEST_RUN) on crafted frames: the
    //! verifier accepts it, and it marks exactly the frames the LB owns.

    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use nvlb_proto::craft::{self, Outer, Transport};
    use nvlb_proto::wire::MacAddr;

    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn vip4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))
    }
    fn pa4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 6, 10))
    }
    fn vip6() -> IpAddr {
        IpAddr::V6("2001:db8:1::10".parse().unwrap())
    }
    fn host4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))
    }

    fn udp(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let t = Transport::Udp {
            src_port: 1000,
            dst_port: 53,
        };
        craft::ip_frame(A, B, &craft::ip_packet(src, dst, 64, t, b"x"))
    }

    fn arp(target: Ipv4Addr) -> Vec<u8> {
        let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
        body.extend_from_slice(&A.0);
        body.extend_from_slice(&[198, 51, 100, 1]);
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&target.octets());
        craft::ethernet(A, MacAddr::BROADCAST, 0x0806, &body)
    }

    /// A Neighbor Solicitation for `target`, to its solicited-node group.
    fn ns(target: Ipv6Addr) -> Vec<u8> {
        let t = target.octets();
        let group = Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | u16::from(t[13]),
            u16::from_be_bytes([t[14], t[15]]),
        );
        let mut ip = vec![0x60, 0, 0, 0, 0, 24, 58, 255];
        ip.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&group.octets());
        ip.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&t);
        craft::ethernet(A, B, 0x86dd, &ip)
    }

    fn tagged(frame: &[u8]) -> Vec<u8> {
        let mut t = frame[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        t.extend_from_slice(&frame[12..]);
        t
    }

    /// Loads the test variant over a map holding `owned`; None (after saying why)
    /// where this process may not load BPF and the tests may skip.
    fn loaded(owned: &[IpAddr]) -> Option<(OwnedAddrs, Program)> {
        let map = match OwnedAddrs::create() {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                assert!(
                    std::env::var_os("NVLB_TESTS_MUST_RUN").is_none(),
                    "cannot create a BPF map here: {e}"
                );
                eprintln!("SKIPPED (cannot run here): BPF not permitted: {e}");
                return None;
            }
            Err(e) => panic!("create the map: {e}"),
        };
        let set: BTreeSet<IpAddr> = owned.iter().copied().collect();
        map.sync(&set).expect("fill the map");
        let prog = Program::load(&map, OnOwned::Mark).expect("the verifier accepts the filter");
        Some((map, prog))
    }

    #[test]
    fn passes_the_lb_only_what_it_owns() {
        let Some((_map, prog)) = loaded(&[vip4(), pa4(), vip6()]) else {
            return;
        };
        let owned = TEST_OWNED as u32;
        let pass = XDP_PASS as u32;
        let IpAddr::V4(vip) = vip4() else {
            unreachable!()
        };
        let IpAddr::V6(v6) = vip6() else {
            unreachable!()
        };
        let nvgre = craft::nvgre(
            &Outer {
                src_mac: A,
                dst_mac: B,
                src: IpAddr::V4(Ipv4Addr::new(192, 168, 6, 11)),
                dst: pa4(),
                vsid: 5001,
                flow_id: 7,
            },
            &udp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), host4()),
        );
        let cases: Vec<(&str, Vec<u8>, u32)> = vec![
            ("IPv4 to a VIP", udp(host4(), vip4()), owned),
            ("NVGRE to the PA", nvgre, owned),
            (
                "IPv6 to a VIP",
                udp("2001:db8::99".parse().unwrap(), vip6()),
                owned,
            ),
            ("ARP for a VIP", arp(vip), owned),
            ("ND solicitation for a VIP", ns(v6), owned),
            ("tagged IPv4 to a VIP", tagged(&udp(host4(), vip4())), owned),
            ("IPv4 to the host", udp(vip4(), host4()), pass),
            (
                "ARP for the host",
                arp(Ipv4Addr::new(198, 51, 100, 2)),
                pass,
            ),
            (
                "ND solicitation for the host",
                ns("2001:db8::2".parse().unwrap()),
                pass,
            ),
            (
                "IPv6 to the host",
                udp(vip6(), "2001:db8::2".parse().unwrap()),
                pass,
            ),
            ("a runt", vec![0u8; 14], pass),
            (
                "a cut IPv4 header",
                udp(host4(), vip4())[..30].to_vec(),
                pass,
            ),
            (
                "a cut IPv6 header",
                udp(vip6(), vip6())[..50].to_vec(),
                pass,
            ),
        ];
        for (what, frame, want) in cases {
            let got = prog
                .test_run(&frame)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn the_filter_stays_small() {
        // docs/decisions.md compares its size with clang's build of the same filter.
        let fd = std::fs::File::open("/dev/null").unwrap();
        let insns = assemble(fd.as_fd(), OnOwned::Redirect(fd.as_fd())).unwrap();
        eprintln!("the filter: {} instructions", insns.len());
        assert!(insns.len() < 128, "{} instructions", insns.len());
    }

    #[test]
    fn the_map_follows_each_sync() {
        let Some((map, prog)) = loaded(&[vip4()]) else {
            return;
        };
        let frame = udp(host4(), pa4());
        assert_eq!(prog.test_run(&frame).unwrap(), XDP_PASS as u32);
        let mut set = BTreeSet::from([pa4()]);
        let s = map.sync(&set).unwrap();
        assert_eq!((s.added, s.removed), (1, 1));
        assert_eq!(prog.test_run(&frame).unwrap(), TEST_OWNED as u32);
        assert!(!map.contains(vip4()).unwrap());
        set.clear();
        map.sync(&set).unwrap();
        assert_eq!(prog.test_run(&frame).unwrap(), XDP_PASS as u32);
    }
}
