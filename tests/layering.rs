//! The workspace's layering, read from `cargo metadata` (docs/architecture.md,
//! "Crates"): which crate may depend on which, and that the packet logic
//! (nvlb-proto) pulls in nothing that can do I/O.
//!
//! A dependency list cannot see `std::fs` or `Instant::now()`: crates/proto/clippy.toml
//! denies those. This test covers what clippy cannot see: a new crate in the packet
//! logic's dependency closure must be added to `PURE` here, by someone who read it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every crate nvlb-proto may reach through normal and build dependencies: parsing,
/// hashing, hash tables and derive macros. Nothing here opens a file or a socket,
/// reads a clock or starts a thread.
const PURE: &[&str] = &[
    "allocator-api2",
    "equivalent",
    "foldhash",
    "hashbrown",
    "indexmap",
    "memchr",
    "proc-macro2",
    "quote",
    "serde",
    "serde_core",
    "serde_derive",
    "serde_spanned",
    "syn",
    "thiserror",
    "thiserror-impl",
    "toml",
    "toml_datetime",
    "toml_parser",
    "toml_writer",
    "unicode-ident",
    "winnow",
    "xxhash-rust",
];

/// Crates that exist to do I/O or run it: named in the message when one turns up.
const IO: &[&str] = &[
    "libc",
    "nix",
    "rustix",
    "mio",
    "tokio",
    "hyper",
    "hyper-util",
    "socket2",
    "arc-swap",
    "crossbeam",
    "parking_lot",
    "rayon",
    "pnet",
    "libbpf-rs",
    "aya",
    "reqwest",
];

/// Each workspace crate and the workspace crates it may depend on (normal, build and
/// dev dependencies alike): a layer sees only the layers under it.
const LAYERS: &[(&str, &[&str])] = &[
    ("nvlb-proto", &[]),
    ("nvlb-io", &["nvlb-proto"]),
    ("nvlb-control", &["nvlb-proto", "nvlb-io"]),
    ("nvlb-tools", &["nvlb-proto", "nvlb-io", "nvlb-control"]),
    (
        "nvlb",
        &["nvlb-proto", "nvlb-io", "nvlb-control", "nvlb-tools"],
    ),
];

/// A dependency edge: the package id it leads to, and its kinds (`None` is "normal").
type Edge = (String, Vec<Option<String>>);

struct Graph {
    /// Package id -> name.
    names: BTreeMap<String, String>,
    /// Package id -> (dependency package id, kinds: None is "normal").
    deps: BTreeMap<String, Vec<Edge>>,
}

fn metadata() -> Graph {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let names = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let deps = v["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let kinds = d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| k["kind"].as_str().map(str::to_string))
                        .collect();
                    (d["pkg"].as_str().unwrap().to_string(), kinds)
                })
                .collect();
            (n["id"].as_str().unwrap().to_string(), deps)
        })
        .collect();
    Graph { names, deps }
}

impl Graph {
    fn id(&self, name: &str) -> String {
        let ids: Vec<&String> = self
            .names
            .iter()
            .filter(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids.len(), 1, "{name}: {ids:?}");
        ids[0].clone()
    }

    /// Names of everything `name` reaches through dependencies that are built into
    /// it (normal and build; not dev), itself excluded.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![self.id(name)];
        while let Some(id) = todo.pop() {
            for (dep, kinds) in &self.deps[&id] {
                let built_in = kinds.iter().any(|k| k.as_deref() != Some("dev"));
                if built_in && seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen.into_iter().map(|id| self.names[&id].clone()).collect()
    }

    /// Names of the workspace crates `name` depends on directly, of any kind.
    fn workspace_deps(&self, name: &str) -> BTreeSet<String> {
        self.deps[&self.id(name)]
            .iter()
            .map(|(dep, _)| self.names[dep].clone())
            .filter(|n| LAYERS.iter().any(|(l, _)| l == n))
            .collect()
    }
}

#[test]
fn the_packet_logic_depends_on_nothing_that_does_io() {
    let g = metadata();
    let closure = g.closure("nvlb-proto");
    println!("nvlb-proto reaches: {closure:?}");
    let io: Vec<&String> = closure
        .iter()
        .filter(|c| IO.contains(&c.as_str()))
        .collect();
    assert!(
        io.is_empty(),
        "nvlb-proto must do no I/O, but now depends on {io:?} (docs/architecture.md, Crates)"
    );
    let unknown: Vec<&String> = closure
        .iter()
        .filter(|c| !PURE.contains(&c.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "nvlb-proto now depends on {unknown:?}, which no one has checked for I/O: read them, \
         then add them to PURE in tests/layering.rs, or keep them out of the packet logic"
    );
    // The check itself must see something: the packet logic does parse TOML.
    assert!(closure.contains("toml"), "{closure:?}");
}

#[test]
fn each_crate_depends_only_on_the_layers_under_it() {
    let g = metadata();
    for (name, allowed) in LAYERS {
        let got = g.workspace_deps(name);
        println!("{name} -> {got:?}");
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        let extra: Vec<&String> = got.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{name} depends on {extra:?}, which is not under it (docs/architecture.md, Crates)"
        );
    }
}

#[test]
fn the_layers_name_every_workspace_crate() {
    let g = metadata();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: BTreeSet<String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let layered: BTreeSet<String> = LAYERS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        members, layered,
        "a crate without a layer is a crate without rules"
    );
    assert!(g.names.len() > members.len());
}
