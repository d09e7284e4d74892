//! The rules of issue 10 on the real lab (`nvlb lab --keep` over a policy that adds
//! Blue rules to the example: namespaces, the real LB, host simulators, kernel TCP/UDP
//! in the VMs), with real clients:
//!
//! - distribution: 100 curl connections to an affinity (`source_ip`) all-ports rule all
//!   reach one VM, on two different ports; 100 to five-tuple blue-web reach every DIP;
//! - an all-ports rule serves TCP ports 80 and 22 and a UDP echo on 7001;
//! - inbound NAT: 203.0.113.10:2222 reaches blue-5's port 22 and nothing else; the
//!   range 2300-2302 reaches blue-6, blue-7, blue-8 in order;
//! - idle reset: a Python client (client namespace) and a Python server (blue-5) both
//!   see ECONNRESET once their connection idles past the rule's 2 s;
//! - ICMP echo: answered by the LB, forwarded to a DIP (its reply has one more hop), or
//!   dropped, per VIP address.
//!
//! One lab for all of it (prefix `nvr<pid>-`), removed also when an assertion fails.
//! Skips (and passes) when not root or without `ip netns`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nvlb::lab::topology::Topology;
use nvlb::policy::Snapshot;

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");

/// Blue's rules, placed before Red's tenant table so that they are Blue's.
const RULES: &str = r#"
# All ports, client IP affinity, pings forwarded to a DIP.
[[tenant.vip]]
name = "blue-ha"
frontend = "public"
address = "203.0.113.30"
protocol = "all"
port = 0
backend_vsid = 5001
distribution = "source_ip"
icmp_echo = "forward"
dips = [{ ca = "10.0.0.5" }, { ca = "10.0.0.6" }, { ca = "10.0.0.7" }, { ca = "10.0.0.8" }]

# One appliance on every port; idle TCP reset after 2 s; pings dropped.
[[tenant.vip]]
name = "blue-appliance"
frontend = "public"
address = "203.0.113.31"
protocol = "all"
port = 0
backend_vsid = 5001
idle_timeout = "2s"
tcp_reset = true
icmp_echo = "drop"
dips = [{ ca = "10.0.0.5" }]

[[tenant.inbound_nat]]
name = "blue-ssh"
frontend = "public"
address = "203.0.113.10"
protocol = "tcp"
port = 2222
backend_vsid = 5001
targets = [{ ca = "10.0.0.5", port = 22 }]

[[tenant.inbound_nat]]
name = "blue-ssh-range"
frontend = "public"
address = "203.0.113.10"
protocol = "tcp"
port = "2300-2302"
backend_vsid = 5001
targets = [{ ca = "10.0.0.6", port = 22 }, { ca = "10.0.0.7", port = 22 }, { ca = "10.0.0.8", port = 22 }]
"#;

fn policy_text() -> String {
    let example = std::fs::read_to_string(common::EXAMPLE).unwrap();
    let red = "[[tenant]]\nname = \"red\"";
    assert_eq!(example.matches(red).count(), 1);
    example.replacen(red, &format!("{RULES}\n{red}"), 1)
}

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Python script running in the background: its stdout line by line as it prints
/// them (read on a thread), and what has been taken from that so far.
struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: String,
}

/// A kept lab; removed when dropped (also after a failed assertion).
struct Lab {
    prefix: String,
    topo: Topology,
    children: Vec<Script>,
}

impl Lab {
    fn up() -> Lab {
        let prefix = format!("nvr{}-", std::process::id() % 100_000);
        let policy_toml = policy_text();
        let policy =
            Snapshot::from_toml(&policy_toml, "rules.toml").unwrap_or_else(|e| panic!("{e}"));
        let file = std::env::temp_dir().join(format!("{prefix}rules.toml"));
        std::fs::write(&file, &policy_toml).unwrap();
        let lab = Lab {
            topo: Topology::from_snapshot(&policy, &prefix),
            prefix,
            children: Vec::new(),
        };
        let out = nvlb(&[
            "lab",
            "--keep",
            "--config",
            file.to_str().unwrap(),
            "--prefix",
            &lab.prefix,
            "--requests",
            "40",
        ]);
        // The lab keeps its own copy of the policy (in its run directory).
        let _ = std::fs::remove_file(&file);
        let stdout = text(&out.stdout);
        println!("nvlb lab --keep:\n{stdout}");
        assert!(
            out.status.success(),
            "nvlb lab exited {}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
        lab
    }

    fn vm_ns(&self, name: &str) -> String {
        self.topo
            .vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
            .netns
            .clone()
    }

    /// `curl URL` from the client namespace: the VM that answered.
    fn curl(&self, url: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.topo.client,
                "curl",
                "--silent",
                "--show-error",
                "--max-time",
                "5",
                url,
            ])
            .output()
            .expect("curl");
        // curl's own words on a failure (a timeout, a reset) say where to look.
        assert!(
            out.status.success(),
            "curl {url}: {}: {}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_string()
    }

    /// How many of `n` new connections to `url` each VM answered.
    fn answers(&self, url: &str, n: usize) -> BTreeMap<String, usize> {
        let mut got = BTreeMap::new();
        for _ in 0..n {
            *got.entry(self.curl(url)).or_insert(0) += 1;
        }
        got
    }

    /// Runs a Python script in `ns` in the background; its stdout is collected as it
    /// comes (see `wait_for`), its stderr at the end.
    fn python(&mut self, ns: &str, script: &str) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-u", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        self.children.push(Script {
            child,
            lines,
            seen: String::new(),
        });
        self.children.len() - 1
    }

    /// Waits until background script `i` prints a line equal to `line` (at most
    /// `limit`); fails with everything it printed if it does not.
    fn wait_for(&mut self, i: usize, line: &str, limit: Duration) {
        let script = &mut self.children[i];
        let t = Instant::now();
        let why = loop {
            let Some(left) = limit.checked_sub(t.elapsed()) else {
                break format!("not within {limit:?}");
            };
            match script.lines.recv_timeout(left) {
                Ok(got) => {
                    script.seen.push_str(&got);
                    script.seen.push('\n');
                    if got == line {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break format!("not within {limit:?}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break format!("the script ended after {:?}", t.elapsed());
                }
            }
        };
        let out = self.finish(i, Duration::ZERO);
        panic!("no {line:?} line from the script ({why}); it printed:\n{out}");
    }

    /// Waits for background script `i` to end (at most `limit`, then kills it); all
    /// its stdout, then its stderr.
    fn finish(&mut self, i: usize, limit: Duration) -> String {
        let script = &mut self.children[i];
        let child = &mut script.child;
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > limit {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
        // The reader ends at the pipe's end, after the last line.
        while let Ok(line) = script.lines.recv() {
            script.seen.push_str(&line);
            script.seen.push('\n');
        }
        let mut err = String::new();
        if let Some(s) = child.stderr.as_mut() {
            let _ = s.read_to_string(&mut err);
        }
        format!("{}{err}", std::mem::take(&mut script.seen))
    }

    /// Runs a Python script in `ns` to its end.
    fn python_now(&mut self, ns: &str, script: &str) -> String {
        let i = self.python(ns, script);
        self.finish(i, Duration::from_secs(30))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for s in &mut self.children {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        let _ = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
    }
}

const TCP_SERVER: &str = r#"
import socket, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 7000)); l.listen(1); print("listening")
c, a = l.accept(); c.settimeout(20)
c.recv(5); c.sendall(b"ok"); t = time.time()
try:
    r = c.recv(10); print("server: got %r after %.1f s" % (r, time.time() - t))
except ConnectionResetError:
    print("server: reset after %.1f s" % (time.time() - t))
except socket.timeout:
    print("server: timeout")
"#;

const TCP_CLIENT: &str = r#"
import socket, time
c = socket.create_connection(("203.0.113.31", 7000), timeout=5)
c.sendall(b"hello"); print("client: answer %r" % c.recv(2)); c.settimeout(20); t = time.time()
try:
    r = c.recv(10); print("client: got %r after %.1f s" % (r, time.time() - t))
except ConnectionResetError:
    print("client: reset after %.1f s" % (time.time() - t))
except socket.timeout:
    print("client: timeout")
"#;

const UDP_ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7001)); s.settimeout(30)
print("listening")
for _ in range(5):
    d, a = s.recvfrom(100); s.sendto(b"echo " + d, a)
"#;

const UDP_CLIENT: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
for i in range(5):
    s.sendto(b"ping-%d" % i, ("203.0.113.31", 7001))
    print(s.recvfrom(100)[0].decode())
"#;

/// Pings each address once with a raw socket; prints `ADDR ttl=N` or `ADDR none`.
const PING: &str = r#"
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
for n, addr in enumerate(sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)
    ident = 4242 + n; body = b"nvlb-rules"
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, 1) + body
    s.sendto(pkt, (addr, 0)); ttl = None; end = time.time() + 2
    try:
        while time.time() < end:
            d, a = s.recvfrom(2000); ihl = (d[0] & 15) * 4
            if a[0] == addr and d[ihl] == 0 and struct.unpack("!H", d[ihl + 4:ihl + 6])[0] == ident:
                ttl = d[8]; break
    except socket.timeout:
        pass
    print(addr, "none" if ttl is None else "ttl=%d" % ttl)
"#;

#[test]
fn rules_on_the_lab() {
    if common::skip_without_netns() {
        return;
    }
    if common::skip_without_program("python3", "apt package python3") {
        return;
    }
    let mut lab = Lab::up();
    let started = Instant::now();

    // Distribution: affinity keeps a client on one DIP, across ports of an all-ports
    // rule; five-tuple spreads the same client's connections over every DIP.
    let sticky80 = lab.answers("http://203.0.113.30:80/", 100);
    println!("blue-ha :80 (source_ip), 100 connections: {sticky80:?}");
    assert_eq!(
        sticky80.len(),
        1,
        "affinity: one VM for every connection: {sticky80:?}"
    );
    let vm = sticky80.keys().next().unwrap().clone();
    assert!(vm.starts_with("blue-"), "{vm}");
    let sticky22 = lab.answers("http://203.0.113.30:22/", 20);
    println!("blue-ha :22, 20 connections: {sticky22:?}");
    assert_eq!(
        sticky22.keys().collect::<Vec<_>>(),
        vec![&vm],
        "the same VM on another port"
    );
    let spread = lab.answers("http://203.0.113.10:80/", 100);
    println!("blue-web (five_tuple), 100 connections: {spread:?}");
    assert_eq!(
        spread.keys().map(String::as_str).collect::<Vec<_>>(),
        ["blue-5", "blue-6", "blue-7", "blue-8"],
        "{spread:?}"
    );

    // Inbound NAT: exactly one VM per frontend port.
    let ssh = lab.answers("http://203.0.113.10:2222/", 20);
    println!("blue-ssh :2222, 20 connections: {ssh:?}");
    assert_eq!(ssh, BTreeMap::from([("blue-5".to_string(), 20)]));
    for (port, want) in [(2300, "blue-6"), (2301, "blue-7"), (2302, "blue-8")] {
        let got = lab.answers(&format!("http://203.0.113.10:{port}/"), 5);
        assert_eq!(got, BTreeMap::from([(want.to_string(), 5)]), "port {port}");
    }

    // UDP through an all-ports rule.
    let blue5 = lab.vm_ns("blue-5");
    let echo = lab.python(&blue5, UDP_ECHO);
    lab.wait_for(echo, "listening", Duration::from_secs(10));
    let client = lab.topo.client.clone();
    let udp = lab.python_now(&client, UDP_CLIENT);
    println!("UDP via 203.0.113.31:7001:\n{udp}");
    for i in 0..5 {
        assert!(udp.contains(&format!("echo ping-{i}")), "{udp}");
    }
    let _ = lab.finish(echo, Duration::from_secs(5));

    // Idle reset: both ends see the RST after the rule's 2 s.
    let server = lab.python(&blue5, TCP_SERVER);
    lab.wait_for(server, "listening", Duration::from_secs(10));
    let client_out = lab.python_now(&client, TCP_CLIENT);
    let server_out = lab.finish(server, Duration::from_secs(10));
    println!("idle reset:\n{client_out}{server_out}");
    assert!(client_out.contains("client: answer b'ok'"), "{client_out}");
    let secs = |out: &str, who: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{who}: reset after ")))
            .unwrap_or_else(|| panic!("{who} saw no reset:\n{out}"));
        line.split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    for (out, who) in [(&client_out, "client"), (&server_out, "server")] {
        let s = secs(out, who);
        assert!(
            (1.9..6.0).contains(&s),
            "{who} reset after {s} s, the rule says 2 s"
        );
    }

    // ICMP echo per address: answered (the LB is one hop nearer than a VM), forwarded
    // to a VM, dropped.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client,
            "python3",
            "-c",
            PING,
            "203.0.113.10",
            "203.0.113.30",
            "203.0.113.31",
        ])
        .output()
        .unwrap();
    let ping = text(&out.stdout);
    println!("ping:\n{ping}{}", text(&out.stderr));
    let ttl = |addr: &str| -> Option<u8> {
        let line = ping.lines().find(|l| l.starts_with(&format!("{addr} ")))?;
        line.split("ttl=").nth(1)?.trim().parse().ok()
    };
    let answered = ttl("203.0.113.10").expect("the LB answers blue-web's address");
    let forwarded = ttl("203.0.113.30").expect("a VM answers blue-ha's address");
    assert_eq!(
        forwarded + 1,
        answered,
        "a forwarded echo's reply crosses the LB as one more hop"
    );
    assert!(ping.contains("203.0.113.31 none"), "{ping}");
    println!("checks took {:?}", started.elapsed());

    drop(lab);
    let prefix = format!("nvr{}-", std::process::id() % 100_000);
    let left = common::namespaces_with(&prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
