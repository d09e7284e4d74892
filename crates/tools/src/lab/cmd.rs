//! Running the system tools the lab is built with (`ip`, `sysctl`, `ethtool`, `curl`,
//! `sha256sum`), with errors that name the whole command line and what it printed on
//! stderr, so that a failed step can be repeated by hand.
//!
//! It must never run a tool through a shell (no quoting surprises) and never hide a
//! failure: every non-zero exit is an error unless the caller asks for the output.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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

/// Where the administrator's tools live on Debian (`ip`, `sysctl`, `ovs-vswitchd`,
/// `bird`, `tcpdump`): searched after PATH, because a non-login shell or a service
/// manager often runs without them on PATH while tests/install.sh finds them there.
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The file that `program` names: itself when it holds a `/`, else the first
/// executable of that name on PATH, then in the sbin folders. A name found nowhere is
/// returned as it is, so that spawning it fails with the usual "not found".
pub fn locate(program: &str) -> OsString {
    if program.contains('/') {
        return program.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(SBIN.iter().map(PathBuf::from));
    for dir in dirs {
        let file = dir.join(program);
        if is_executable(&file) {
            return file.into_os_string();
        }
    }
    program.into()
}

fn is_executable(file: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A `Command` for `program` as [`locate`] finds it.
pub fn command(program: &str) -> Command {
    Command::new(locate(program))
}

/// Runs `program args` and returns its output whatever its exit status.
pub fn output<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output, Error> {
    command(program)
        .args(args)
        .output()
        .map_err(|cause| Error::Spawn {
            command: display(program, args),
            cause,
        })
}

/// Like [`output`], but kills the program and returns [`Error::Interrupted`] as soon as
/// a stop is requested (Ctrl-C): for the long steps (curl).
pub fn output_until_stopped<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<Output, Error> {
    let spawn_err = |cause| Error::Spawn {
        command: display(program, args),
        cause,
    };
    let mut child = command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break status;
        }
        if super::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
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
    // `ip netns exec` searches its own PATH: hand it the file found here.
    let file = locate(program);
    let file = file.to_string_lossy();
    let mut all = vec!["netns", "exec", ns, &file];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// `sysctl -qw KEY=VALUE...` inside `ns`.
pub fn sysctl_in(ns: &str, settings: &[&str]) -> Result<(), Error> {
    let mut args = vec!["-qw"];
    args.extend_from_slice(settings);
    exec_in(ns, "sysctl", &args).map(drop)
}

/// Whether `program` can be started at all (found by [`locate`] and executable).
pub fn available(program: &str) -> bool {
    command(program)
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
        let out = output_until_stopped("sh", &["-c", "echo out; echo err >&2; exit 4"]).unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(4));
        let err = run("nvlb-no-such-program", &["x"]).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
        assert!(!available("nvlb-no-such-program"));
        assert_eq!(run("sh", &["-c", "printf hi"]).unwrap(), "hi");
    }
}
