//! Entering a named network namespace from one thread, so that one process can open
//! sockets in several namespaces (tests, the lab's tools).
//!
//! Only the calling thread moves; sockets it opens stay in that namespace after it
//! returns. Never call it on a thread that is shared with other work.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use super::error::Error;
use super::sys;

/// Moves the calling thread into the namespace `ip netns` calls `name`.
pub fn enter(name: &str) -> Result<(), Error> {
    let path = Path::new("/run/netns").join(name);
    let file = File::open(&path).map_err(|cause| Error::Setup {
        op: "open network namespace",
        cause,
    })?;
    sys::setns_net(file.as_fd()).map_err(|cause| Error::Setup {
        op: "setns(CLONE_NEWNET)",
        cause,
    })
}
