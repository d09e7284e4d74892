//! The PNG of a run: pps over time and the per-DIP distribution, drawn by Debian's
//! python3-matplotlib from the summary's JSON (the script is built into the binary).
//!
//! Never part of the measurement: it runs after the summary is final.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::Error;
use super::stats::Summary;

const SCRIPT: &str = include_str!("plot.py");
/// The interpreter that has python3-matplotlib on Debian.
const PYTHON: &str = "/usr/bin/python3";

/// Writes `png` from `summary`.
pub fn plot(summary: &Summary, png: &Path) -> Result<(), Error> {
    let plot_err = |m: String| Error::Plot(m);
    let json = serde_json::to_vec(summary).map_err(|e| plot_err(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("nvlb-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| plot_err(format!("{}: {e}", dir.display())))?;
    let data = dir.join("summary.json");
    let script = dir.join("plot.py");
    let result = (|| {
        std::fs::write(&data, &json).map_err(|e| plot_err(format!("{}: {e}", data.display())))?;
        let mut f = std::fs::File::create(&script)
            .map_err(|e| plot_err(format!("{}: {e}", script.display())))?;
        f.write_all(SCRIPT.as_bytes())
            .map_err(|e| plot_err(e.to_string()))?;
        let out = Command::new(PYTHON)
            .arg(&script)
            .arg(&data)
            .arg(png)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                plot_err(format!(
                    "cannot run {PYTHON}: {e} (install python3-matplotlib)"
                ))
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(plot_err(format!(
                "{PYTHON} failed (is python3-matplotlib installed?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
