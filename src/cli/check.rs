//! `nvlb check FILE`: the policy as the LB would load it, or every reason it would not.

use std::path::Path;
use std::process::ExitCode;

use nvlb::policy::{Snapshot, summary};

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match Snapshot::from_file(file) {
        Ok(snapshot) => {
            for w in snapshot.warnings() {
                eprintln!("warning: {w}");
            }
            print!("{}", summary(&snapshot));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}
