//! Writes the seed corpora: `seeds CORPUS_DIR [--bad DIR] [PCAP...]` fills
//! CORPUS_DIR/engine (frames of the golden pcaps, or built frames without any),
//! CORPUS_DIR/config (the example policy, the bad policies, one seed per line) and
//! CORPUS_DIR/api. Build it without libFuzzer: `cargo run --no-default-features
//! --example seeds -- ...`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nvlb_fuzz::seeds;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: seeds CORPUS_DIR [--bad DIR] [PCAP...]");
        return ExitCode::from(2);
    };
    let mut bad = None;
    let mut pcaps = Vec::new();
    while let Some(a) = args.next() {
        if a == "--bad" {
            bad = args.next().map(PathBuf::from);
        } else {
            pcaps.push(PathBuf::from(a));
        }
    }
    let pcaps: Vec<&Path> = pcaps.iter().map(PathBuf::as_path).collect();
    let result = (|| -> Result<(), String> {
        let n = seeds::write(&dir.join("engine"), &seeds::engine_seeds(&pcaps)?)?;
        println!("engine: {n} seeds");
        let n = seeds::write(&dir.join("config"), &seeds::config_seeds(bad.as_deref())?)?;
        println!("config: {n} seeds");
        let n = seeds::write(&dir.join("api"), &seeds::api_seeds())?;
        println!("api: {n} seeds");
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seeds: {e}");
            ExitCode::FAILURE
        }
    }
}
