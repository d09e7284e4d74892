//! `nvlb lab --capture FILE`: dumpcap (Wireshark's capture engine, as `tshark -w`
//! runs it) on the PA bridge's port to the LB (`pa-lb` in the
//! PA namespace) while the lab's traffic runs, so every NVGRE frame between the LB and
//! the hosts can be read afterwards (VSID in the GRE key, outer PAs, inner CAs).
//!
//! Not on `br-pa` itself: a Linux bridge's own interface sees only frames for the
//! bridge and floods (before MAC learning), not unicast it forwards between ports.
//!
//! Started after the LB and hosts are ready and before any traffic, stopped with SIGINT
//! (on SIGTERM dumpcap loses what it has buffered) before the LB, so the file is
//! complete when the report is printed; a kept lab's capture is stopped the same way by
//! `--down`, before the namespaces go. Frames are cut to [`SNAPLEN`] bytes: every header of an NVGRE
//! frame fits, the bulk payloads do not need to. It must never capture outside the
//! lab's PA namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use super::procs::Daemon;
use super::topology::Topology;

/// The capture's label among the lab's processes.
pub const LABEL: &str = "capture";
/// Bytes kept per frame: outer Ethernet + IPv6 + GRE + inner Ethernet + IPv6 + TCP
/// with options is 176.
pub const SNAPLEN: u32 = 256;
/// The bridge port every frame to or from the LB's provider port crosses.
pub const PORT: &str = "pa-lb";

/// The capture file as an absolute path (tshark runs with the same working directory,
/// but the message should name the file unambiguously).
pub fn absolute(file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(file))
            .unwrap_or_else(|_| file.to_path_buf())
    }
}

/// The capture program (from the Wireshark packages, like tshark).
pub const PROGRAM: &str = "dumpcap";
/// Waited after dumpcap says it captures and before it is stopped: libpcap hands
/// frames over a ring block at a time, retiring a partly filled block only after a
/// timeout (1 s here), and a block not yet retired when dumpcap stops is lost.
const SETTLE: Duration = Duration::from_millis(300);
const DRAIN: Duration = Duration::from_millis(1300);
/// Where a kept lab's capture leaves its pid for `--down`.
const PID_FILE: &str = "capture.pid";

/// Starts dumpcap on the LB's bridge port writing pcap to `file`; returns once it
/// captures. The caller has checked that dumpcap is installed.
pub fn start(t: &Topology, file: &Path, dir: &Path) -> Result<Daemon, Error> {
    let file = absolute(file);
    let _ = std::fs::remove_file(&file);
    let args: Vec<String> = [
        "-i",
        PORT,
        "-s",
        &SNAPLEN.to_string(),
        // A large kernel buffer (MiB): bulk transfers come in bursts.
        "-B",
        "64",
        // libpcap format, not pcapng.
        "-P",
        "-q",
        "-w",
        &file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut d = Daemon::spawn(LABEL, &t.pa, Path::new(PROGRAM), &args, dir)?;
    d.wait_ready("Capturing on", Duration::from_secs(20))?;
    std::thread::sleep(SETTLE);
    let pid = dir.join(PID_FILE);
    std::fs::write(&pid, d.pid().to_string()).map_err(|cause| Error::Io { path: pid, cause })?;
    Ok(d)
}

/// Stops the capture and says what it wrote.
pub fn stop(d: Daemon, file: &Path) -> String {
    std::thread::sleep(DRAIN);
    let (status, _) = d.interrupt(Duration::from_secs(10));
    let file = absolute(file);
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let how = match status {
        Some(s) => s.to_string(),
        None => "killed after 10 s".to_string(),
    };
    format!(
        "Capture: {bytes} bytes of pcap on {PORT} written to {} ({PROGRAM} {how})\n",
        file.display()
    )
}

/// `--down` of a kept lab: SIGINT to its capture (named in the run directory, and only
/// if that pid still runs dumpcap), waiting until it has finished the file.
pub fn finish_kept(dir: &Path) {
    let Some(pid) = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 1)
    else {
        return;
    };
    let comm = format!("/proc/{pid}/comm");
    let is_capture = || std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == PROGRAM);
    if !is_capture() {
        return;
    }
    std::thread::sleep(DRAIN);
    // SAFETY: kill(2) on a pid that runs dumpcap, recorded by the lab that started it.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let start = std::time::Instant::now();
    while is_capture() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
