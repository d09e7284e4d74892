//! Outbound source NAT and direct server return on the real lab (`nvlb lab --keep`
//! with a policy of its own: the example plus an outbound rule for blue-web's VMs, a
//! floating-IP VIP on Red's 10.0.0.5 and a PA-side gateway for its host):
//!
//! - outbound: Blue VMs fetch with curl from an HTTP server in the Internet client's
//!   namespace, which answers with the address it sees: the outbound address, with a
//!   port of that VM's block; a VM in no outbound rule gets nothing through;
//! - DSR: the same bulk download through the floating-IP VIP and through an ordinary
//!   VIP of the same tenant; with DSR the LB's PA interface receives (almost) nothing
//!   while the data flows and its external interface sends nothing, and its CPU time
//!   is printed next to the ordinary VIP's (docs/performance.md has the figures).
//!
//! Skips (and passes) when not root or without `ip netns`. One lab, unique prefix,
//! removed also after a failed assertion.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const OUT_ADDR: &str = "203.0.113.30";
const DSR_VIP: &str = "203.0.113.21";
const PLAIN_VIP: &str = "203.0.113.20";
const SERVER: &str = "192.0.2.100:8000";
const BULK: usize = 20_000_000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn policy_text() -> String {
    let example = std::fs::read_to_string(common::EXAMPLE).unwrap();
    let with_gateway = example.replace(
        "mac = \"02:00:00:00:06:12\"\n",
        "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
    );
    assert_ne!(
        with_gateway, example,
        "host2's mac line moved in example.toml"
    );
    // Blue's outbound rule goes before Red's [[tenant]], so that it is Blue's.
    let with_rule = with_gateway.replace(
        "# ----------------------------------------------------------------------------- Red",
        &format!(
            "[[tenant.outbound]]\nname = \"blue-out\"\naddress = \"{OUT_ADDR}\"\npools = [\"blue-web\"]\nports = \"20000-29999\"\nports_per_dip = 1000\nidle_timeout = \"2m\"\n\n# ------------------------------------------------------------------------- Red"
        ),
    );
    assert_ne!(
        with_rule, with_gateway,
        "the Red separator moved in example.toml"
    );
    format!(
        "{with_rule}\n[[tenant.vip]]\nname = \"red-dsr\"\nfrontend = \"public\"\naddress = \"{DSR_VIP}\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001\nfloating_ip = true\ndips = [{{ ca = \"10.0.0.5\" }}]\n"
    )
}

struct Lab {
    prefix: String,
    file: PathBuf,
    gone: bool,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn dir(&self) -> PathBuf {
        nvlb::lab::run_dir(&self.prefix)
    }

    fn down(&mut self) {
        let out = Command::new(NVLB)
            .args(["lab", "--down", "--prefix", &self.prefix])
            .output()
            .expect("nvlb lab --down");
        self.gone = true;
        println!("nvlb lab --down:\n{}", text(&out.stdout));
        assert!(out.status.success());
        let left = common::namespaces_with(&self.prefix);
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.gone || !common::namespaces_with(&self.prefix).is_empty() {
            let _ = Command::new(NVLB)
                .args(["lab", "--down", "--prefix", &self.prefix])
                .output();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `curl` inside namespace `ns`; (exit success, body).
fn curl(ns: &str, url: &str, max_secs: u32) -> (bool, String) {
    let out: Output = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "--silent",
            "--max-time",
            &max_secs.to_string(),
            url,
        ])
        .output()
        .expect("curl");
    (out.status.success(), text(&out.stdout))
}

/// An Internet server in the client's namespace: answers each request with the
/// address and port it came from, until `limit` passes.
fn internet_server(ns: &str, limit: Duration) -> mpsc::Receiver<()> {
    let (ready, is_ready) = mpsc::channel();
    common::in_netns(ns, move || {
        let addr: SocketAddr = SERVER.parse().unwrap();
        let l = TcpListener::bind(addr).expect("bind the Internet server");
        l.set_nonblocking(true).unwrap();
        ready.send(()).unwrap();
        let end = Instant::now() + limit;
        while Instant::now() < end {
            match l.accept() {
                Ok((mut c, peer)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!("from {} {}\n", peer.ip(), peer.port());
                    let _ = write!(
                        c,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    is_ready
}

/// Packet counters of the LB's two interfaces: (ext rx, ext tx, pa rx, pa tx).
fn lb_packets(lab: &Lab) -> [u64; 4] {
    let read = |dev: &str, dir: &str| -> u64 {
        let out = common::run(
            "ip",
            &[
                "netns",
                "exec",
                &lab.ns("lb"),
                "cat",
                &format!("/sys/class/net/{dev}/statistics/{dir}_packets"),
            ],
        );
        text(&out.stdout).trim().parse().expect("a packet count")
    };
    [
        read("lb-ext", "rx"),
        read("lb-ext", "tx"),
        read("lb-pa", "rx"),
        read("lb-pa", "tx"),
    ]
}

/// CPU time (user + system, clock ticks) of the LB process.
fn lb_cpu_ticks(lab: &Lab) -> u64 {
    let out = common::run("ip", &["netns", "pids", &lab.ns("lb")]);
    let pid = text(&out.stdout)
        .split_whitespace()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|a| a == b"run"))
                .unwrap_or(false)
        })
        .expect("the LB process")
        .to_string();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// One bulk download from the client through `vip`: (LB packet deltas, CPU ticks, bytes).
fn bulk_through(lab: &Lab, vip: &str) -> ([u64; 4], u64, usize) {
    let before = lb_packets(lab);
    let cpu = lb_cpu_ticks(lab);
    let file = lab.dir().join("dl.bin");
    let out = common::run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.ns("client"),
            "curl",
            "--silent",
            "--max-time",
            "60",
            "--output",
            &file.display().to_string(),
            &format!("http://{vip}/bulk"),
        ],
    );
    assert!(
        out.status.success(),
        "bulk through {vip}: {}",
        text(&out.stderr)
    );
    let cpu = lb_cpu_ticks(lab) - cpu;
    let after = lb_packets(lab);
    let len = std::fs::metadata(&file)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let d = [0, 1, 2, 3].map(|i| after[i] - before[i]);
    (d, cpu, len)
}

#[test]
fn outbound_snat_and_direct_server_return() {
    if common::skip_without_netns() {
        return;
    }
    let prefix = format!("nvo{}-", std::process::id() % 10_000);
    let file = std::env::temp_dir().join(format!("nvlb-outbound-{}.toml", std::process::id()));
    std::fs::write(&file, policy_text()).unwrap();
    let policy = nvlb::control::policy_file::read(&file, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab {
        prefix: prefix.clone(),
        file: file.clone(),
        gone: false,
    };
    let out = Command::new(NVLB)
        .args([
            "lab",
            "--keep",
            "--config",
            &file.display().to_string(),
            "--prefix",
            &prefix,
            "--requests",
            "40",
            "--bulk-bytes",
            &BULK.to_string(),
        ])
        .output()
        .expect("nvlb lab");
    let stdout = text(&out.stdout);
    println!("nvlb lab --keep:\n{stdout}");
    assert!(out.status.success(), "nvlb lab: {}", text(&out.stderr));
    // Includes red-dsr: the client is served through the floating-IP VIP.
    assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
    assert!(stdout.contains("red-dsr"), "{stdout}");

    // Outbound: each Blue web VM reaches the Internet server as the outbound address,
    // with a port of its own block.
    let server = internet_server(&lab.ns("client"), Duration::from_secs(60));
    server
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let rule = &policy.outbound_rules()[0];
    for (vm, ca) in [
        ("blue-5", "10.0.0.5"),
        ("blue-7", "10.0.0.7"),
        ("blue-8", "10.0.0.8"),
    ] {
        let ca: IpAddr = ca.parse().unwrap();
        let src = rule.sources.iter().find(|s| s.ca == ca).unwrap();
        for _ in 0..3 {
            let (ok, body) = curl(&lab.ns(vm), &format!("http://{SERVER}/"), 5);
            assert!(ok, "{vm}: curl through outbound SNAT failed: {body}");
            let mut words = body.split_whitespace().skip(1);
            let seen: IpAddr = words.next().unwrap().parse().unwrap();
            let port: u16 = words.next().unwrap().parse().unwrap();
            assert_eq!(
                seen.to_string(),
                OUT_ADDR,
                "{vm}: the server sees the outbound address"
            );
            assert!(
                (src.first_port..=src.last_port).contains(&port),
                "{vm}: port {port} outside its block {}-{}",
                src.first_port,
                src.last_port
            );
        }
    }
    // Red's VMs are in no outbound rule.
    let (ok, body) = curl(&lab.ns("red-5"), &format!("http://{SERVER}/"), 3);
    assert!(!ok && body.is_empty(), "red-5 got through: {body}");

    // DSR: the same download through the ordinary VIP and the floating-IP one.
    let (plain, plain_cpu, plain_len) = bulk_through(&lab, PLAIN_VIP);
    let (dsr, dsr_cpu, dsr_len) = bulk_through(&lab, DSR_VIP);
    assert_eq!(plain_len, BULK);
    assert_eq!(dsr_len, BULK, "the floating-IP download is complete");
    println!(
        "LB packets for a {BULK}-byte download [ext rx, ext tx, pa rx, pa tx]: via LB {plain:?}, \
         {plain_cpu} CPU ticks; DSR {dsr:?}, {dsr_cpu} CPU ticks"
    );
    // The data segments (server to client) pass the LB only without DSR.
    let segments = (BULK / 1500) as u64;
    assert!(plain[2] > segments && plain[1] > segments, "{plain:?}");
    // With DSR only the client's ACKs (and health probes) pass: ext tx and pa rx stay
    // near zero (probes every second of the example's pools), far below the data.
    assert!(
        dsr[1] < segments / 20,
        "replies left the LB's external port: {dsr:?}"
    );
    assert!(
        dsr[2] < segments / 20,
        "replies reached the LB's PA port: {dsr:?}"
    );
    assert!(
        dsr[0] > 100 && dsr[3] > 100,
        "the client's ACKs still pass: {dsr:?}"
    );
    lab.down();
}
