#!/usr/bin/python3
"""Crafts the golden inputs of tests/golden.rs with scapy, from `nvlb check --json`.

Each crafted frame comes with the verdict the LB must reach and, for frames the LB
sends, what tshark must read in its output. The packets are built by scapy, not by
nvlb's own builders, so that the engine is checked against a peer nobody here wrote.

  craft.py forward FACTS OUT.pcap CASES.json
  craft.py reflect FACTS FWD_IN.pcap FWD_OUT.pcap FWD_CASES.json OUT.pcap CASES.json
  craft.py toobig FACTS OUT.pcap CASES.json
"""
import json
import sys

from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest,
                       ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6, Raw, rdpcap, wrpcap)

CLIENT4 = "198.51.100.77"
CLIENT6 = "2001:db8:ff::77"
CLIENT_MAC = "02:00:00:00:01:77"


def is6(a):
    return ":" in a


class Lab:
    def __init__(self, facts):
        self.f = facts
        self.b = facts["balancer"]
        self.hosts = {h["name"]: h for h in facts["hosts"]}
        self.subnets = {s["vsid"]: s for s in facts["subnets"]}
        self.pools = facts["pools"]
        self.lookups = facts["lookups"]
        self.frames = []
        self.cases = []

    # -- addresses -------------------------------------------------------------
    def lb_pa(self, v6):
        return next((a for a in self.b["provider"]["addresses"] if is6(a) == v6), None)

    def outer_of(self, host):
        """The outer family the LB uses towards a host: IPv4 when both have it."""
        h = self.hosts[host]
        if h["pa_v4"] and self.lb_pa(False):
            return h["pa_v4"], False
        return h["pa_v6"], True

    def ext_mac(self):
        return self.b["external"]["mac"]

    def pa_mac(self):
        return self.b["provider"]["mac"]

    # -- builders ----------------------------------------------------------------
    def ip(self, src, dst, **kw):
        if is6(src):
            kw = {("hlim" if k == "ttl" else k): v for k, v in kw.items()}
            return IPv6(src=src, dst=dst, **kw)
        return IP(src=src, dst=dst, flags="DF", **kw)

    def nvgre(self, host, vsid, inner, flow_id=0x2A, outer_src=None, gre=None):
        pa, v6 = self.outer_of(host)
        pa = outer_src or pa
        outer = IPv6(src=pa, dst=self.lb_pa(True)) if v6 else IP(src=pa, dst=self.lb_pa(False))
        g = gre or GRE(key_present=1, proto=0x6558, key=(vsid << 8) | flow_id)
        return Ether(src=self.hosts[host]["mac"], dst=self.pa_mac()) / outer / g / inner

    def add(self, name, frame, verdict, reason=None, expect=None):
        self.frames.append(frame)
        self.cases.append({"name": name, "verdict": verdict, "reason": reason,
                           "expect": expect or []})

    # -- expectations --------------------------------------------------------------
    def to_dip(self, dip, src, sport=None, proto="tcp"):
        """What tshark must read in a frame sent to `dip` (one alternative)."""
        host = self.hosts[dip["host"]]
        pa, v6 = self.outer_of(dip["host"])
        e = {"vsid": str(dip["vsid"]), "eth.dst": f"{host['mac']},{dip['mac']}"}
        e.update(addr_fields(self.lb_pa(v6), pa, src, dip["ca"]))
        e[f"{proto}.dstport"] = str(dip["port"])
        if sport is not None:
            e[f"{proto}.srcport"] = str(sport)
        return e

    def record(self, vsid, ca):
        return next(r for r in self.lookups if r["vsid"] == vsid and r["ca"] == ca)


def addr_fields(outer_src, outer_dst, inner_src, inner_dst):
    """tshark's ip.src/ip.dst/ipv6.src/ipv6.dst with occurrence=a for outer+inner."""
    fields = {"ip.src": [], "ip.dst": [], "ipv6.src": [], "ipv6.dst": []}
    for s, d in ((outer_src, outer_dst), (inner_src, inner_dst)):
        fam = "ipv6" if is6(s) else "ip"
        fields[f"{fam}.src"].append(s)
        fields[f"{fam}.dst"].append(d)
    return {k: ",".join(v) for k, v in fields.items()}


def plain_fields(src, dst):
    fam = "ipv6" if is6(src) else "ip"
    other = "ip" if fam == "ipv6" else "ipv6"
    return {f"{fam}.src": src, f"{fam}.dst": dst, f"{other}.src": "", f"{other}.dst": ""}


def tcp(sport, dport, flags="S", seq=1000, ack=0, payload=b""):
    t = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240)
    return t / Raw(payload) if payload else t


def forward(lab):
    public = [p for p in lab.pools if p["frontend"] == 0]
    ca_vips = [p for p in lab.pools if p["frontend"] != 0]
    assert public and ca_vips, "the golden tests need public and CA VIPs"
    seen_tenants = set()
    for pool in public:
        client = CLIENT6 if is6(pool["address"]) else CLIENT4
        for i in range(8):
            sport = 40000 + i
            pkt = Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / lab.ip(client, pool["address"]) / tcp(sport, pool["port"])
            alts = [lab.to_dip(d, client, sport) for d in pool["dips"] if d["weight"] > 0]
            lab.add(f"public {pool['name']} SYN {i}", pkt, "forwarded", expect=alts)
        seen_tenants.add(pool["tenant"])
    for pool in ca_vips:
        vsid = pool["frontend"]
        fam6 = is6(pool["address"])
        dip_cas = {d["ca"] for d in pool["dips"]}
        clients = [r for r in lab.lookups if r["vsid"] == vsid and is6(r["ca"]) == fam6
                   and r["ca"] != pool["address"] and r["ca"] not in dip_cas]
        assert clients, f"no client VM for CA VIP {pool['name']}"
        client = clients[0]
        for i in range(4):
            sport = 41000 + i
            inner = (Ether(src=client["mac"], dst=lab.subnets[vsid]["lb_mac"])
                     / lab.ip(client["ca"], pool["address"]) / tcp(sport, pool["port"]))
            alts = []
            for d in pool["dips"]:
                snat = next(s["ca"] for s in lab.subnets[d["vsid"]]["snat"] if is6(s["ca"]) == fam6)
                alts.append(lab.to_dip(d, snat))
            lab.add(f"ca-vip {pool['name']} SYN {i}", lab.nvgre(client["host"], vsid, inner), "forwarded",
                    expect=alts)
        # A host that does not hold this CA speaks for it: refused, whatever the tenant.
        other = next(h for h in lab.hosts if h != client["host"])
        inner = (Ether(src=client["mac"], dst=lab.subnets[vsid]["lb_mac"])
                 / lab.ip(client["ca"], pool["address"]) / tcp(42000, pool["port"]))
        lab.add(f"ca-vip {pool['name']} from wrong host", lab.nvgre(other, vsid, inner), "dropped", "spoofed_pa")

    # ARP / ND / echo answered by the data plane itself.
    b = lab.b
    for addr in [p["address"] for p in public if not is6(p["address"])][:1] + [a for a in [lab.lb_pa(False)] if a]:
        mac = lab.pa_mac() if addr == lab.lb_pa(False) else lab.ext_mac()
        pkt = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT4, pdst=addr)
        lab.add(f"arp {addr}", pkt, "replied",
                expect=[{"arp.opcode": "2", "arp.src.hw_mac": mac, "arp.src.proto_ipv4": addr}])
    pkt = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=CLIENT_MAC, psrc=CLIENT4, pdst="198.51.100.254")
    lab.add("arp for someone else", pkt, "dropped", "arp_not_for_us")
    v6vip = next(p["address"] for p in public if is6(p["address"]))
    ns = (Ether(src=CLIENT_MAC, dst="33:33:ff:00:00:01") / IPv6(src=CLIENT6, dst="ff02::1:ff00:1", hlim=255)
          / ICMPv6ND_NS(tgt=v6vip) / ICMPv6NDOptSrcLLAddr(lladdr=CLIENT_MAC))
    lab.add("nd for v6 vip", ns, "replied",
            expect=[{"icmpv6.type": "136", "icmpv6.nd.na.target_address": v6vip, "ipv6.dst": CLIENT6,
                     "icmpv6.checksum.status": "1"}])
    v4vip = next(p["address"] for p in public if not is6(p["address"]))
    ping = Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IP(src=CLIENT4, dst=v4vip) / ICMP(type=8, id=7, seq=1) / Raw(b"nvlb")
    lab.add("echo to vip", ping, "replied",
            expect=[{"icmp.type": "0", "ip.src": v4vip, "ip.dst": CLIENT4, "icmp.checksum.status": "1"}])
    ping6 = Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IPv6(src=CLIENT6, dst=v6vip) / ICMPv6EchoRequest(id=7, seq=1)
    lab.add("echo6 to vip", ping6, "replied",
            expect=[{"icmpv6.type": "129", "ipv6.src": v6vip, "icmpv6.checksum.status": "1"}])

    # Plain IP that matches nothing.
    pool = public[0]
    client = CLIENT6 if is6(pool["address"]) else CLIENT4
    lab.add("udp to a tcp vip", Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / lab.ip(client, pool["address"])
            / UDP(sport=5000, dport=pool["port"]), "dropped", "unknown_vip")
    lab.add("tcp to a non-vip", Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IP(src=CLIENT4, dst="203.0.113.250")
            / tcp(5000, 80), "dropped", "not_for_us")
    lab.add("ttl 1", Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IP(src=CLIENT4, dst=v4vip, ttl=1)
            / tcp(5001, pool["port"]), "dropped", "ttl_expired")
    lab.add("vlan tagged", Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / Dot1Q(vlan=5) / IP(src=CLIENT4, dst=v4vip)
            / tcp(5002, 80), "dropped", "vlan_tagged")
    lab.add("someone else's mac", Ether(src=CLIENT_MAC, dst="02:99:99:99:99:99") / IP(src=CLIENT4, dst=v4vip)
            / tcp(5003, 80), "dropped", "not_our_mac")
    bad = Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IP(src=CLIENT4, dst=v4vip, chksum=0x1234) / tcp(5004, 80)
    lab.add("bad ip checksum", bad, "dropped", "bad_ip_checksum")
    frag = Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / IP(src=CLIENT4, dst=v4vip, flags="MF") / tcp(5005, 80)
    lab.add("fragment", frag, "dropped", "fragment")

    # Hostile NVGRE.
    ca_pool = ca_vips[0]
    vsid = ca_pool["frontend"]
    client = next(r for r in lab.lookups if r["vsid"] == vsid and not is6(r["ca"]))
    inner = (Ether(src=client["mac"], dst=lab.subnets[vsid]["lb_mac"])
             / IP(src=client["ca"], dst=ca_pool["address"]) / tcp(43000, ca_pool["port"]))
    host = client["host"]
    lab.add("reserved vsid", lab.nvgre(host, 0xFFF, inner), "dropped", "reserved_vsid")
    lab.add("reserved vsid ffffff", lab.nvgre(host, 0xFFFFFF, inner), "dropped", "reserved_vsid")
    lab.add("unknown vsid", lab.nvgre(host, 0x777777, inner), "dropped", "unknown_vsid")
    lab.add("gre routing bit", lab.nvgre(host, vsid, inner, gre=GRE(routing_present=1, key_present=1, proto=0x6558,
                                                                   key=vsid << 8)), "dropped", "gre_flags")
    lab.add("gre checksum bit", lab.nvgre(host, vsid, inner, gre=GRE(chksum_present=1, key_present=1, proto=0x6558,
                                                                    key=vsid << 8)), "dropped", "gre_flags")
    lab.add("gre seq bit", lab.nvgre(host, vsid, inner, gre=GRE(seqnum_present=1, key_present=1, proto=0x6558,
                                                               key=vsid << 8, seqence_number=1)), "dropped", "gre_flags")
    lab.add("gre without key", lab.nvgre(host, vsid, inner, gre=GRE(proto=0x6558)), "dropped", "gre_flags")
    lab.add("gre not teb", lab.nvgre(host, vsid, inner[IP], gre=GRE(key_present=1, proto=0x0800, key=vsid << 8)),
            "dropped", "gre_protocol")
    stranger = "fd00:6::199" if lab.outer_of(host)[1] else "192.168.6.199"
    lab.add("unknown pa", lab.nvgre(host, vsid, inner, outer_src=stranger), "dropped", "unknown_pa")
    tagged = Ether(src=client["mac"], dst=lab.subnets[vsid]["lb_mac"]) / Dot1Q(vlan=7) / inner[IP]
    lab.add("inner vlan", lab.nvgre(host, vsid, tagged), "dropped", "inner_vlan")
    # A return that matches no binding, from a port no public VIP's DIP serves.
    lab.add("return without flow", lab.nvgre(host, vsid, Ether(src=client["mac"], dst=lab.subnets[vsid]["lb_mac"])
                                              / IP(src=client["ca"], dst="10.250.250.250") / tcp(8181, 1234, "SA")),
            "dropped", "no_flow")
    # A public DIP's reply with no binding (the LB restarted, or ECMP sent the flow's
    # other packets to another instance): translated from policy, DIP -> VIP.
    pub = next(p for p in lab.pools if p["frontend"] == 0 and not is6(p["address"]))
    d = pub["dips"][0]
    rec = next(r for r in lab.lookups if r["vsid"] == d["vsid"] and r["ca"] == d["ca"])
    stray = "198.18.7.7"
    e = {"eth.dst": lab.b["external"]["gateway_mac"], "tcp.srcport": str(pub["port"]), "tcp.dstport": "1234"}
    e.update(plain_fields(pub["address"], stray))
    lab.add("public return without binding",
            lab.nvgre(rec["host"], d["vsid"], Ether(src=rec["mac"], dst=lab.subnets[d["vsid"]]["lb_mac"])
                      / IP(src=d["ca"], dst=stray) / tcp(d["port"], 1234, "SA")),
            "forwarded", expect=[e])
    # Truncations of a valid frame: every one is dropped, none crashes.
    whole = bytes(lab.nvgre(host, vsid, inner))
    for cut in (0, 6, 13, 20, 33, 37, 41, 50, 60, 70, 80):
        lab.add(f"truncated at {cut}", Raw(whole[:cut]), "dropped")


def reflect(lab, fwd_in, fwd_out, fwd_cases):
    """The DIPs answer: every forwarded SYN gets its SYN-ACK back through the LB."""
    for pkt, case in zip(rdpcap(fwd_in), fwd_cases):
        lab.add(case["name"], pkt, case["verdict"], case["reason"], case["expect"])
    outs = rdpcap(fwd_out)
    forwarded = [c for c in fwd_cases if c["verdict"] in ("forwarded", "replied")]
    assert len(outs) == len(forwarded), f"{len(outs)} frames out for {len(forwarded)} expected"
    pools = {p["name"]: p for p in lab.pools}
    spoofed_once = False
    for out, case in zip(outs, forwarded):
        if not case["name"].startswith(("public", "ca-vip")) or GRE not in out:
            continue
        pool = pools[case["name"].split()[1]]
        vsid = out[GRE].key >> 8
        inner = out[GRE].payload
        inner_ip = inner[IPv6] if IPv6 in inner else inner[IP]
        t = inner[TCP]
        host_name = next(n for n, h in lab.hosts.items() if h["mac"] == out[Ether].dst)
        reply_inner = (Ether(src=inner[Ether].dst, dst=inner[Ether].src)
                       / lab.ip(inner_ip.dst, inner_ip.src) / tcp(t.dport, t.sport, "SA", seq=5000, ack=t.seq + 1))
        client = CLIENT6 if is6(pool["address"]) else CLIENT4
        if pool["frontend"] == 0:
            e = {"eth.dst": lab.b["external"]["gateway_mac"], "tcp.srcport": str(pool["port"]),
                 "tcp.dstport": str(t.sport), "tcp.flags.syn": "1", "tcp.flags.ack": "1"}
            e.update(plain_fields(pool["address"], client))
        else:
            fam6 = is6(pool["address"])
            rec = next(r for r in lab.lookups if r["vsid"] == pool["frontend"] and is6(r["ca"]) == fam6
                       and r["ca"] != pool["address"] and r["ca"] not in {d["ca"] for d in pool["dips"]})
            pa, v6 = lab.outer_of(rec["host"])
            e = {"vsid": str(pool["frontend"]), "tcp.srcport": str(pool["port"])}
            e.update(addr_fields(lab.lb_pa(v6), pa, pool["address"], rec["ca"]))
        reply = lab.nvgre(host_name, vsid, reply_inner)
        if not spoofed_once:
            # The same reply from a host that does not hold that DIP: refused.
            other = next(n for n in lab.hosts if n != host_name)
            lab.add(f"spoofed return for {case['name']}", lab.nvgre(other, vsid, reply_inner), "dropped",
                    "spoofed_pa")
            spoofed_once = True
        lab.add(f"return for {case['name']}", reply, "forwarded", expect=[e])
        if case["name"].endswith("SYN 0"):
            # The DIP's host says the client's packet was too big: the error reaches the
            # client from the VIP, quoting client -> VIP as the client sent it.
            err_inner = Ether(src=inner[Ether].dst, dst=inner[Ether].src) / lab.ip(inner_ip.dst, inner_ip.src)
            if is6(pool["address"]):
                from scapy.all import ICMPv6PacketTooBig
                err_inner = err_inner / ICMPv6PacketTooBig(mtu=1400) / bytes(inner_ip)[:200]
                ee = {"icmpv6.type": "2", "icmpv6.mtu": "1400"}
            else:
                err_inner = err_inner / ICMP(type=3, code=4, nexthopmtu=1400) / bytes(inner_ip)[:28]
                ee = {"icmp.type": "3", "icmp.code": "4", "icmp.mtu": "1400"}
            if pool["frontend"] == 0:
                cport, cli, outer = 40000, client, []
            else:
                cport, cli = 41000, rec["ca"]
                pa, v6 = lab.outer_of(rec["host"])
                outer = [(lab.lb_pa(v6), pa)]
                ee["vsid"] = str(pool["frontend"])
            fields = {"ip.src": [], "ip.dst": [], "ipv6.src": [], "ipv6.dst": []}
            for src, dst in outer + [(pool["address"], cli), (cli, pool["address"])]:
                fam = "ipv6" if is6(src) else "ip"
                fields[f"{fam}.src"].append(src)
                fields[f"{fam}.dst"].append(dst)
            ee.update({k: ",".join(v) for k, v in fields.items()})
            ee["tcp.srcport"] = str(cport)
            ee["tcp.dstport"] = str(pool["port"])
            lab.add(f"icmp error for {case['name']}", lab.nvgre(host_name, vsid, err_inner), "forwarded", expect=[ee])


def toobig(lab):
    """With a PA MTU of 1500, a full-size client packet cannot be encapsulated."""
    for pool in (p for p in lab.pools if p["frontend"] == 0):
        v6 = is6(pool["address"])
        client = CLIENT6 if v6 else CLIENT4
        size = 1500 - (40 if v6 else 20) - 20
        pkt = (Ether(src=CLIENT_MAC, dst=lab.ext_mac()) / lab.ip(client, pool["address"])
               / tcp(44000, pool["port"], "A", payload=b"x" * size))
        outer = 20 if lab.lb_pa(False) else 40
        mtu = lab.b["provider"]["mtu"] - outer - 22
        if v6:
            e = {"icmpv6.type": "2", "icmpv6.mtu": str(mtu), "icmpv6.checksum.status": "1",
                 "ipv6.src": f"{pool['address']},{client}", "ipv6.dst": f"{client},{pool['address']}"}
        else:
            e = {"icmp.type": "3", "icmp.code": "4", "icmp.mtu": str(mtu), "icmp.checksum.status": "1"}
            e.update({"ip.src": f"{pool['address']},{client}", "ip.dst": f"{client},{pool['address']}"})
        lab.add(f"too big {pool['name']}", pkt, "replied", expect=[e])


def main():
    mode, facts = sys.argv[1], json.load(open(sys.argv[2]))
    lab = Lab(facts)
    if mode == "forward":
        forward(lab)
        out, cases = sys.argv[3], sys.argv[4]
    elif mode == "reflect":
        fwd_cases = json.load(open(sys.argv[5]))
        reflect(lab, sys.argv[3], sys.argv[4], fwd_cases)
        out, cases = sys.argv[6], sys.argv[7]
    elif mode == "toobig":
        toobig(lab)
        out, cases = sys.argv[3], sys.argv[4]
    else:
        sys.exit(f"unknown mode {mode}")
    wrpcap(out, lab.frames, linktype=1)
    with open(cases, "w") as f:
        json.dump(lab.cases, f, indent=1)


if __name__ == "__main__":
    main()
