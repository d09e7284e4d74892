//! Running the system tools the lab is built with (`ip`, `sysctl`, `ethtool`, `curl`,
//! `sha256sum`), with errors that name the whole command line and what it printed on
//! stderr, so that a failed step can be repeated by hand.
//!
//! It must never run a tool through a shell (no quoting surprises) and never hide a
//! failure: every non-zero exit is an error unless the caller asks for the output.

use std::ffi::OsStr;
use std::process::{Command, Output};

use super::Error;

/// The command line as a user would type it (for messages only).
pub fn display<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// Runs `program args` and returns its output whatever its exit status.
pub fn output<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output, Error> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|cause| Error::Spawn {
            command: display(program, args),
            cause,
        })
}

/// Runs `program args`; a non-zero exit is an error carrying its stderr. Returns stdout.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, Error> {
    let out = output(program, args)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: display(program, args),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String, Error> {
    run("ip", args)
}

/// `ip -n NS ARGS`: an iproute2 command acting inside namespace `ns`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `ip netns exec NS PROGRAM ARGS`: any tool run inside namespace `ns`.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> Result<String, Error> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `sysctl -qw KEY=VALUE...` inside `ns`.
pub fn sysctl_in(ns: &str, settings: &[&str]) -> Result<(), Error> {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    exec_in(ns, "sysctl", &args).map(drop)
}

/// Whether `program` can be started at all (found on PATH and executable).
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|_| true)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c echo boom >&2; exit 3"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains('3'), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run("nvlb-no-such-program", &["x"]).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
        assert!(!available("nvlb-no-such-program"));
        assert_eq!(run("sh", &["-c", "printf hi"]).unwrap(), "hi");
    }
}
