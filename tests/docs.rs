//! The documentation against the code: docs/config.md against the policy schema and
//! `nvlb check`, and README.md's commands against the binary.
//!
//! docs/config.md: every ```toml block must be a complete policy that `nvlb check`
//! accepts; every key of `crates/proto/src/policy/config.rs` must have a row in its tables (and every
//! row must be a key), the blocks together must use every key, and every default a row
//! states as a TOML value must load exactly like the key left out. A key added to the
//! schema without documentation fails here: that is the point.
//!
//! README.md: every command in a ```sh block is either run here (the safe ones: check,
//! replay, completions, man, --help, --version) or named in [`ELSEWHERE`] with the test
//! or script that runs it; a command in neither fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use nvlb::craft::{self, Transport};
use nvlb::policy::Snapshot;
use nvlb::wire::{MacAddr, tcp};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The key paths of the schema, walked from `RawConfig` through the `Raw*` structs of
/// crates/proto/src/policy/config.rs: `balancer.flows.udp_timeout`, `tenant.vip.dips.drain`, … The
/// bool says whether the key holds a table (or a list of them) rather than a value.
fn schema_keys() -> BTreeMap<String, bool> {
    let src = read("crates/proto/src/policy/config.rs");
    let mut structs: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in src.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub(crate) struct ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            structs.insert(name.clone(), Vec::new());
            current = Some(name);
        } else if t == "}" {
            current = None;
        } else if let (Some(s), Some(rest)) = (&current, t.strip_prefix("pub ")) {
            let (field, ty) = rest.split_once(':').expect("a field `pub name: Type,`");
            let fields = structs.get_mut(s).expect("struct seen");
            fields.push((field.trim().to_string(), ty.trim().to_string()));
        }
    }
    fn raw_type(ty: &str) -> Option<String> {
        let at = ty.find("Raw")?;
        let name: String = ty[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        Some(name)
    }
    fn walk(
        structs: &BTreeMap<String, Vec<(String, String)>>,
        name: &str,
        prefix: &str,
        out: &mut BTreeMap<String, bool>,
    ) {
        let fields = structs
            .get(name)
            .unwrap_or_else(|| panic!("config.rs has no struct {name}"));
        for (field, ty) in fields {
            let path = format!("{prefix}{field}");
            match raw_type(ty) {
                Some(inner) => {
                    out.insert(path.clone(), true);
                    walk(structs, &inner, &format!("{path}."), out);
                }
                None => {
                    out.insert(path, false);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&structs, "RawConfig", "", &mut out);
    // A parser that found nothing would make every check below pass vacuously.
    assert!(
        out.len() >= 40,
        "only {} keys parsed from crates/proto/src/policy/config.rs: has its layout changed?",
        out.len()
    );
    out
}

/// Fenced blocks of `lang` in a markdown text.
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unclosed ```{lang} block");
    blocks
}

/// One row of a key table: `| `path` | type | default | meaning | example |`.
struct Row {
    path: String,
    default: String,
    example: String,
}

fn cells(line: &str) -> Vec<String> {
    line.replace("\\|", "\u{1}")
        .split('|')
        .map(|c| c.trim().replace('\u{1}', "|"))
        .collect()
}

fn unquote(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

fn config_rows() -> Vec<Row> {
    read("docs/config.md")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), 7, "a key row has 5 columns: {l}");
            Row {
                path: unquote(&c[1]).expect("the key in backticks").to_string(),
                default: c[3].clone(),
                example: c[5].clone(),
            }
        })
        .collect()
}

/// Every key path a TOML document uses (tables, arrays of tables, inline tables).
fn used_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = format!("{prefix}{k}");
        out.insert(path.clone());
        let next = format!("{path}.");
        match v {
            toml::Value::Table(t) => used_keys(t, &next, out),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        used_keys(t, &next, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn nvlb() -> &'static str {
    env!("CARGO_BIN_EXE_nvlb")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nvlb-docs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn every_config_example_passes_nvlb_check() {
    let blocks = fenced(&read("docs/config.md"), "toml");
    assert!(
        blocks.len() >= 2,
        "docs/config.md has {} toml blocks",
        blocks.len()
    );
    let dir = temp_dir("check");
    for (i, b) in blocks.iter().enumerate() {
        let file = dir.join(format!("example{i}.toml"));
        std::fs::write(&file, b).expect("write example");
        let out = Command::new(nvlb())
            .arg("check")
            .arg(&file)
            .output()
            .expect("run nvlb check");
        assert!(
            out.status.success(),
            "toml block {} of docs/config.md is refused by nvlb check:\n{}{}",
            i + 1,
            String::from_utf8_lossy(&out.stderr),
            b
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_schema_key_has_a_row_and_every_row_is_a_key() {
    let schema = schema_keys();
    let rows: BTreeSet<String> = config_rows().into_iter().map(|r| r.path).collect();
    let missing: Vec<&String> = schema.keys().filter(|k| !rows.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "keys of crates/proto/src/policy/config.rs with no row in docs/config.md: {missing:?}"
    );
    let stale: Vec<&String> = rows.iter().filter(|r| !schema.contains_key(*r)).collect();
    assert!(
        stale.is_empty(),
        "rows of docs/config.md that are not keys of the schema: {stale:?}"
    );
}

#[test]
fn the_examples_together_use_every_key() {
    let mut used = BTreeSet::new();
    for b in fenced(&read("docs/config.md"), "toml") {
        let t: toml::Table = b.parse().expect("toml block parses");
        used_keys(&t, "", &mut used);
    }
    let unused: Vec<String> = schema_keys()
        .into_keys()
        .filter(|k| !used.contains(k))
        .collect();
    assert!(
        unused.is_empty(),
        "keys no ```toml block of docs/config.md uses: {unused:?}"
    );
}

#[test]
fn every_row_example_sets_its_key() {
    for row in config_rows() {
        let example = unquote(&row.example)
            .unwrap_or_else(|| panic!("{}: the example is not in backticks", row.path));
        let last = row.path.rsplit('.').next().expect("a key");
        if let Some(header) = example.strip_prefix("[[").or(example.strip_prefix('[')) {
            assert_eq!(
                header.trim_end_matches(']'),
                row.path,
                "{}: example {example}",
                row.path
            );
            continue;
        }
        let t: toml::Table = example
            .parse()
            .unwrap_or_else(|e| panic!("{}: example `{example}` is not TOML: {e}", row.path));
        assert!(
            t.contains_key(last),
            "{}: example `{example}` does not set `{last}`",
            row.path
        );
    }
}

/// Everything a snapshot holds that a policy declares, in declaration order (Debug of
/// the whole snapshot would include its hash maps, whose order is not stable).
fn canonical(s: &Snapshot) -> String {
    let mut out = String::new();
    write!(
        out,
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        s.balancer(),
        s.tenants(),
        s.routing_domains(),
        s.hosts(),
        s.subnets(),
        s.lookups(),
        s.pools(),
        s.warnings(),
        s.outbound_rules()
    )
    .expect("write to a String");
    out
}

/// The `(path, line index)` of every `key = value` line of a TOML text, by the table
/// header it is under.
fn key_lines(text: &str) -> Vec<(String, usize)> {
    let mut header = String::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix("[[") {
            header = h.trim_end_matches("]]").trim().to_string();
        } else if let Some(h) = t.strip_prefix('[') {
            header = h.trim_end_matches(']').trim().to_string();
        } else if let Some((k, _)) = t.split_once('=')
            && !t.starts_with('#')
        {
            out.push((format!("{header}.{}", k.trim()), i));
        }
    }
    out
}

fn with_line(text: &str, index: usize, replacement: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| if i == index { replacement } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn stated_defaults_load_like_the_key_left_out() {
    let blocks = fenced(&read("docs/config.md"), "toml");
    // The block that sets the most keys: "Every key at once".
    let full = blocks
        .iter()
        .max_by_key(|b| key_lines(b).len())
        .expect("a toml block");
    let lines = key_lines(full);
    let schema = schema_keys();
    let mut checked = 0;
    let mut differed = 0;
    for row in config_rows() {
        let Some(default) = unquote(&row.default) else {
            continue; // "required", or a default that depends on other keys
        };
        if schema.get(&row.path) != Some(&false) {
            continue; // a table: its own keys carry the defaults
        }
        let Some(&(_, index)) = lines.iter().find(|(p, _)| *p == row.path) else {
            panic!(
                "{} has a stated default but the \"every key\" example does not set it",
                row.path
            );
        };
        let key = row.path.rsplit('.').next().expect("a key");
        let load = |text: &str, what: &str| {
            Snapshot::from_toml(text, "docs/config.md")
                .unwrap_or_else(|e| panic!("{} {what}: refused: {:?}", row.path, e.errors))
        };
        // Blank lines keep every other line where it was (warnings carry line numbers).
        let left_out = canonical(&load(&with_line(full, index, ""), "left out"));
        let stated = canonical(&load(
            &with_line(full, index, &format!("{key} = {default}")),
            "set to its stated default",
        ));
        assert!(
            left_out == stated,
            "{}: docs/config.md says the default is {default}, but leaving the key out \
             loads differently",
            row.path
        );
        // The example's own value differs from the default: the comparison sees it.
        if canonical(&load(full, "as in the example")) != stated {
            differed += 1;
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} defaults checked");
    assert!(
        differed >= 5,
        "only {differed} example values differ from their defaults"
    );
}

/// README commands that this test does not run, each with what does.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        "bash tests/install.sh && nvlb lab",
        ".ci/run (tests/run.sh installs the same packages) and tests/lab.rs (the lab)",
    ),
    ("bash tests/run.sh", ".ci/run"),
    (
        "bash tests/container.sh",
        "tests/run.sh (the container test, run by .ci/run)",
    ),
    (
        "nvlb lab --instances",
        "tests/lab_scaleout.rs (runs `nvlb lab --instances 3` as a user would)",
    ),
    (
        "nvlb lab",
        "tests/lab.rs, tests/lab_ovs.rs, tests/lab_paths.rs",
    ),
    (
        "bash benches/soak.sh",
        "benches/soak.sh itself: a bench, not CI (docs/reliability.md records its runs; tests/lab_faults.rs covers the same faults)",
    ),
    (
        "ip netns exec",
        "tests/lab.rs (the lab's own curl), tests/container.sh",
    ),
    ("nvlb run", "tests/dataplane.rs"),
    (
        "nvlb ctl ",
        "tests/api.rs (every ctl command against a running nvlb) and src/control/api/tests.rs",
    ),
    ("nvlb reload", "tests/api.rs"),
    (
        "nvlb gen",
        "tests/gen.rs (generator, reflector and the LB in namespaces)",
    ),
    ("podman", "tests/container.sh"),
];

/// Commands run here: with `nvlb` on PATH, in a directory holding `lb-config` and a
/// small pcap `in.pcap`.
const SAFE: &[&str] = &[
    "nvlb check ",
    "nvlb replay ",
    "nvlb completions ",
    "nvlb man",
    "nvlb --version",
    "nvlb --help",
    "source <(nvlb completions ",
];

/// The commands of README.md's ```sh blocks, continuation lines joined and comments
/// dropped; `cargo run --release --` is the binary itself.
fn readme_commands() -> Vec<String> {
    let mut out = Vec::new();
    for block in fenced(&read("README.md"), "sh") {
        let mut pending = String::new();
        for line in block.lines() {
            let line = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(line);
            out.push(pending.replace("cargo run --release -- ", "nvlb "));
            pending.clear();
        }
    }
    out
}

/// A SYN from an Internet client to Blue's public VIP in lb-config/example.toml.
fn write_small_pcap(path: &Path) {
    let ip = craft::ip_packet(
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)),
        64,
        Transport::Tcp {
            src_port: 40000,
            dst_port: 80,
            flags: tcp::flags::SYN,
            seq: 1,
            ack: 0,
        },
        &[],
    );
    let frame = craft::ip_frame(
        MacAddr([2, 0, 0, 0, 1, 1]),
        MacAddr([2, 0, 0, 0, 1, 0x0a]),
        &ip,
    );
    let file = std::fs::File::create(path).expect("create pcap");
    let mut w = nvlb::pcap::Writer::new(std::io::BufWriter::new(file), 65535).expect("pcap");
    w.write(1_000_000_000, &frame).expect("write frame");
    w.finish().expect("finish pcap");
}

#[test]
fn readme_commands_run_or_are_run_elsewhere() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 5,
        "README.md has {} commands",
        commands.len()
    );
    let dir = temp_dir("readme");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::os::unix::fs::symlink(nvlb(), bin.join("nvlb")).expect("symlink nvlb");
    std::os::unix::fs::symlink(repo().join("lb-config"), dir.join("lb-config"))
        .expect("symlink lb-config");
    write_small_pcap(&dir.join("in.pcap"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut unknown = Vec::new();
    for c in &commands {
        if SAFE.iter().any(|p| c.starts_with(p) || c == p.trim_end()) {
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("set -eo pipefail; {c}"))
                .current_dir(&dir)
                .env("PATH", &path)
                .output()
                .expect("run sh");
            assert!(
                out.status.success(),
                "README command `{c}` failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        } else if let Some((_, by)) = ELSEWHERE.iter().find(|(p, _)| c.starts_with(p)) {
            // Named with what runs it; make sure that still exists.
            let file = by.split([' ', ',', '(']).next().unwrap_or("");
            assert!(
                repo().join(file).exists(),
                "README command `{c}` is said to be run by {by}, which does not exist"
            );
        } else {
            unknown.push(c.clone());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        unknown.is_empty(),
        "README commands neither run by tests/docs.rs nor listed in its ELSEWHERE: \
         {unknown:?}"
    );
    assert!(ran >= 4, "only {ran} README commands ran");
}

#[test]
fn version_names_the_git_revision() {
    let out = Command::new(nvlb())
        .arg("--version")
        .output()
        .expect("run nvlb --version");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let expected_rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let rev = text
        .strip_prefix(&format!("nvlb {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("`{text}` is not `nvlb VERSION (REVISION)`"));
    match expected_rev {
        // A clean clone: the revision of HEAD. (A binary built before the last commit
        // would carry the older one; build.rs reruns when HEAD moves.)
        Some(r) if std::env::var("NVLB_GIT_REVISION").is_err() => assert_eq!(rev, r),
        _ => assert!(!rev.is_empty()),
    }
}

#[test]
fn completions_and_man_page_cover_every_subcommand() {
    let help = Command::new(nvlb()).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    // The visible subcommands, from the help text's "Commands:" section.
    let subs: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|s| s != "help")
        .collect();
    assert!(subs.len() >= 6, "subcommands parsed from --help: {subs:?}");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(nvlb())
            .args(["completions", shell])
            .output()
            .expect("completions");
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for s in &subs {
            assert!(script.contains(s.as_str()), "{shell} completions lack {s}");
        }
    }
    let page = Command::new(nvlb()).arg("man").output().expect("man");
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH nvlb 1"),
        "{page}"
    );
    for s in &subs {
        assert!(page.contains(s.as_str()), "nvlb(1) lacks {s}");
    }
    let dir = temp_dir("man");
    let st = Command::new(nvlb())
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .status()
        .expect("man --dir");
    assert!(st.success());
    for s in &subs {
        assert!(
            dir.join(format!("nvlb-{s}.1")).exists(),
            "no nvlb-{s}.1 written"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
