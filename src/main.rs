//! The `nvlb` command: subcommands over the library. Errors get context here (anyhow)
//! and become exit codes: 0 success, 1 the input was refused (bad config, bad pcap),
//! 2 usage errors (clap).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nvlb: {e:#}");
            ExitCode::from(1)
        }
    }
}
