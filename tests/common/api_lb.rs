//! `nvlb run` with its management API, alone in a namespace of its own: the LB's two
//! ports `ext0` and `pa0` are veths whose peers `extp` and `pap` stay in the same
//! namespace for the test to send and capture on (the MACs are the example
//! policy's). Shared by tests/api.rs and tests/api_routes.rs. Dropping it stops the LB
//! and removes its files and the namespace, also when the test failed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::{Namespaces, lines_of, must, sigterm, wait_for_line};

/// The API tests' three tokens: (name, scope, token).
pub type Token<'a> = (&'a str, &'a str, &'a str);

pub struct ApiLb {
    pub ns: String,
    /// Holds `policy.toml` (and its journal) and `tokens.toml`.
    pub dir: PathBuf,
    /// The API's address, on the namespace's loopback.
    api: &'static str,
    child: Option<Child>,
    stderr: Option<Receiver<String>>,
    _namespaces: Namespaces,
}

impl ApiLb {
    /// Namespace `{prefix}-{pid}-{tag}`, `policy` as its policy file and `tokens`
    /// hashed into its tokens file (`made_by` names the test in that file). Not
    /// started.
    pub fn build(
        prefix: &str,
        tag: &str,
        made_by: &str,
        policy: &str,
        tokens: &[Token],
        api: &'static str,
    ) -> ApiLb {
        let pid = std::process::id();
        let ns = format!("{prefix}-{pid}-{tag}");
        let namespaces = Namespaces::create(&[(&ns, true)]);
        let dir = std::env::temp_dir().join(format!("nvlb-{prefix}-{pid}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        super::write_tokens(&dir.join("tokens.toml"), made_by, tokens);
        for (lb_if, lb_mac, peer, peer_mac) in [
            ("ext0", "02:00:00:00:01:0a", "extp", "02:00:00:00:01:01"),
            ("pa0", "02:00:00:00:06:0a", "pap", "02:00:00:00:06:11"),
        ] {
            must(
                "ip",
                &[
                    "-n", &ns, "link", "add", lb_if, "address", lb_mac, "type", "veth", "peer",
                    "name", peer, "address", peer_mac,
                ],
            );
        }
        for ifname in ["lo", "ext0", "pa0", "extp", "pap"] {
            must("ip", &["-n", &ns, "link", "set", ifname, "up"]);
        }
        ApiLb {
            ns,
            dir,
            api,
            child: None,
            stderr: None,
            _namespaces: namespaces,
        }
    }

    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy.toml")
    }

    /// Starts `nvlb run` and returns once it said "ready".
    pub fn start(&mut self) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_nvlb"), "run"])
            .args(["--external", "ext0", "--provider", "pa0", "--api", self.api])
            .arg("--config")
            .arg(self.policy())
            .arg("--api-tokens")
            .arg(self.dir.join("tokens.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nvlb run");
        let stderr = lines_of(child.stderr.take().unwrap());
        self.child = Some(child);
        wait_for_line(&stderr, "ready", Duration::from_secs(10));
        self.stderr = Some(stderr);
    }

    /// Stops it with SIGTERM; it must exit 0.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let (status, _) = sigterm(&mut c, Duration::from_secs(5));
            assert!(status.success(), "nvlb run exited with {status}");
        }
    }
}

impl Drop for ApiLb {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
