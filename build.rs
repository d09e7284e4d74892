//! Stamps the binary with the git revision it was built from, for `nvlb --version`.
//!
//! Outside a git checkout (a source tarball, a container build without `.git`) or
//! without git installed, the revision is "unknown": the build must never fail for it.

use std::process::Command;

fn main() {
    let rev = std::env::var("NVLB_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=NVLB_GIT_REVISION={}", rev.trim());
    println!("cargo:rerun-if-env-changed=NVLB_GIT_REVISION");
    // Rebuild when HEAD moves (a commit, a checkout). In a worktree `.git` is a file, so
    // ask git where HEAD, the branch's ref and the index live; all may be absent.
    for what in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", what]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={p}");
    }
}

/// The short revision of HEAD; no "-dirty" mark, since edits that do not touch the
/// index would not rebuild this script and the mark would go stale.
fn git_revision() -> Option<String> {
    git(&["rev-parse", "--short", "HEAD"])
}

/// One line of git's output, or None when git is missing, fails or says nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}
