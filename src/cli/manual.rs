//! `nvlb completions SHELL` and `nvlb man`: shell completions and manual pages generated
//! from the same clap definition that parses the command line, so they can never
//! describe flags the binary does not have. Writes only to stdout or the directory it
//! is given; never installs anything itself.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "nvlb", &mut script);
    to_stdout(&script).context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn to_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Prints nvlb(1) on stdout, or with `dir` writes nvlb.1 and one nvlb-SUBCOMMAND.1 per
/// visible subcommand into it (the directory must exist, as for `install -d`).
pub fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            if !dir.is_dir() {
                anyhow::bail!("{}: not a directory (create it first)", dir.display());
            }
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the manual page")?;
            to_stdout(&page).context("writing the manual page")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
