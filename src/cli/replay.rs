//! `nvlb replay`: "what would the LB do with these packets?"
//!
//! One engine (one worker, so no handoffs) sees the input frames in order with the
//! pcap timestamps as its clock, exactly as the data plane would hand them in.
//! The output capture appears only once the whole input was read: a bad record stops the
//! replay with its index and offset, and must never leave a half-written OUT behind.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use nvlb::engine::{Egress, Engine, Verdict, output_len};
use nvlb::pcap;
use nvlb::policy::Snapshot;

pub fn run(config: &Path, input: &Path, output: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let policy = match nvlb::control::policy_file::read(config, &Default::default()) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    if same_file(input, output) {
        bail!(
            "output {} is the input file; write the output somewhere else",
            output.display()
        );
    }
    let mut reader =
        pcap::Reader::new(BufReader::new(file)).with_context(|| format!("{}", input.display()))?;
    let mut out = Partial::create(output)?;
    let mut engine = Engine::new(policy.clone(), 0, 1);
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut buf = Vec::new();
    let mut index = 0u64;
    while let Some(record) = reader.next_record() {
        let record = match record {
            Ok(r) => r,
            Err(e) => bail!(
                "{}: {e}; stopped there, {} not written",
                input.display(),
                output.display()
            ),
        };
        buf.resize(output_len(record.data.len()), 0);
        let verdict = engine.process(record.ts_nanos, &record.data, &mut buf);
        let line = describe(&policy, index, &verdict);
        if json {
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(stdout, "{}", line.text())?;
        }
        if let Verdict::Forward { len, .. } | Verdict::Reply { len, .. } = verdict {
            let frame = buf.get(..len).unwrap_or(&buf);
            out.write(record.ts_nanos, frame)?;
        }
        index += 1;
    }
    stdout.flush()?;
    out.commit()?;
    Ok(ExitCode::SUCCESS)
}

/// Both paths name one existing file (so creating the output would destroy the input).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The output capture while it is being written: a sibling `OUT.partial` that becomes
/// OUT only when every input record was read. A replay that fails half-way must not
/// leave a capture that looks complete (or clobber the one already there), so dropping
/// an uncommitted `Partial` removes the file.
struct Partial {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<pcap::Writer<BufWriter<File>>>,
}

impl Partial {
    fn create(target: &Path) -> anyhow::Result<Partial> {
        let cannot = || format!("cannot create {}", target.display());
        if target.is_dir() {
            bail!("{}: it is a directory", cannot());
        }
        let mut temp = target.as_os_str().to_owned();
        temp.push(".partial");
        let temp = PathBuf::from(temp);
        let file = File::create(&temp).with_context(cannot)?;
        // From here on the guard owns the temporary file and removes it on any failure.
        let mut partial = Partial {
            target: target.to_owned(),
            temp,
            writer: None,
        };
        partial.writer = Some(pcap::Writer::new(BufWriter::new(file), 65535).with_context(cannot)?);
        Ok(partial)
    }

    fn write(&mut self, ts_nanos: u64, frame: &[u8]) -> anyhow::Result<()> {
        let target = &self.target;
        match self.writer.as_mut() {
            Some(w) => w
                .write(ts_nanos, frame)
                .with_context(|| format!("cannot write {}", target.display())),
            None => bail!("cannot write {}: already closed", target.display()),
        }
    }

    fn commit(mut self) -> anyhow::Result<()> {
        let cannot = |p: &Path| format!("cannot write {}", p.display());
        if let Some(w) = self.writer.take() {
            w.finish()
                .and_then(|mut inner| inner.flush())
                .with_context(|| cannot(&self.target))?;
        }
        fs::rename(&self.temp, &self.target).with_context(|| cannot(&self.target))?;
        // Renamed: nothing left for Drop to remove.
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        self.writer = None;
        if !self.temp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[derive(serde::Serialize)]
struct Line {
    index: u64,
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dip: Option<String>,
}

impl Line {
    fn text(&self) -> String {
        let mut s = format!("{:>6} {:<9}", self.index, self.verdict);
        if let Some(e) = self.egress {
            s += &format!(" egress={e}");
        }
        if let Some(r) = self.reason {
            s += &format!(" reason={r}");
        }
        for (k, v) in [
            ("tenant", &self.tenant),
            ("vip", &self.vip),
            ("dip", &self.dip),
        ] {
            if let Some(v) = v {
                s += &format!(" {k}={v}");
            }
        }
        s
    }
}

fn egress_name(e: Egress) -> &'static str {
    match e {
        Egress::External => "external",
        Egress::Provider => "provider",
    }
}

fn describe(policy: &Snapshot, index: u64, verdict: &Verdict) -> Line {
    let mut line = Line {
        index,
        verdict: "",
        egress: None,
        len: None,
        reason: None,
        tenant: None,
        vip: None,
        dip: None,
    };
    match verdict {
        Verdict::Forward {
            egress,
            len,
            matched,
        } => {
            line.verdict = "forwarded";
            line.egress = Some(egress_name(*egress));
            line.len = Some(*len);
            if let Some(pool) = policy.pools().get(matched.pool as usize) {
                line.tenant = policy
                    .tenants()
                    .get(usize::from(pool.tenant))
                    .map(|t| t.name.clone());
                line.vip = Some(format!("{}({}:{})", pool.name, pool.address, pool.port));
                line.dip = pool
                    .dips
                    .get(usize::from(matched.dip))
                    .map(|d| format!("{}:{}@vsid{}", d.ca, d.port, d.vsid));
            }
        }
        Verdict::Reply { egress, len } => {
            line.verdict = "replied";
            line.egress = Some(egress_name(*egress));
            line.len = Some(*len);
        }
        Verdict::Handoff { .. } => line.verdict = "handoff",
        Verdict::Local => line.verdict = "local",
        Verdict::Drop(reason) => {
            line.verdict = "dropped";
            line.reason = Some(reason.name());
        }
    }
    line
}
