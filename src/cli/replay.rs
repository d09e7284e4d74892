//! `nvlb replay`: "what would the LB do with these packets?"
//!
//! One engine (one worker, so no handoffs) sees the input frames in order with the
//! pcap timestamps as its clock, exactly as the data plane would hand them in.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use nvlb::engine::{Egress, Engine, Verdict, output_len};
use nvlb::pcap;
use nvlb::policy::Snapshot;

pub fn run(config: &Path, input: &Path, output: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let policy = match Snapshot::from_file(config) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut reader =
        pcap::Reader::new(BufReader::new(file)).with_context(|| format!("{}", input.display()))?;
    let out_file =
        File::create(output).with_context(|| format!("cannot create {}", output.display()))?;
    let mut writer = pcap::Writer::new(BufWriter::new(out_file), 65535)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let mut engine = Engine::new(policy.clone(), 0, 1);
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let mut buf = Vec::new();
    let mut index = 0u64;
    while let Some(record) = reader.next_record() {
        let record = record.with_context(|| format!("{}", input.display()))?;
        buf.resize(output_len(record.data.len()), 0);
        let verdict = engine.process(record.ts_nanos, &record.data, &mut buf);
        let line = describe(&policy, index, &verdict);
        if json {
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(stdout, "{}", line.text())?;
        }
        if let Verdict::Forward { len, .. } | Verdict::Reply { len, .. } = verdict {
            writer.write(record.ts_nanos, &buf[..len])?;
        }
        index += 1;
    }
    writer.finish()?.flush()?;
    Ok(ExitCode::SUCCESS)
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
        Verdict::Drop(reason) => {
            line.verdict = "dropped";
            line.reason = Some(reason.name());
        }
    }
    line
}
