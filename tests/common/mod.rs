//! Helpers shared by the tests that build network namespaces.

#![allow(dead_code)]

use std::process::Command;

/// Why namespace tests cannot run here (not root, no `ip netns`), if they cannot.
pub fn skip_reason() -> Option<String> {
    match Command::new("id").arg("-u").output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => {}
        Ok(_) => return Some("not root".into()),
        Err(e) => return Some(format!("cannot run id: {e}")),
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` unavailable: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` unavailable: {e}")),
    }
}
