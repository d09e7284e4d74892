//! Policy changes made at run time (through the management API), written into the
//! policy file so that a restart keeps them, and journaled.
//!
//! The file stays the one source of truth: a change edits its TOML document (keeping
//! the operator's comments and layout), validates the edited text exactly as
//! `nvlb check` would, writes it beside the original, fsyncs and renames it over the
//! original, and only then installs the new snapshot. Every attempt, applied or
//! refused, is one JSON line in the journal. This module must never leave a file that
//! fails validation in place, never install a policy that is not the file's, and never
//! let two changes interleave (they hold [`Control::edit_lock`] throughout).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use toml_edit::DocumentMut;

use super::{Applied, ChangeError, Control};
use crate::policy::{ConfigError, Snapshot};

/// Who asked for a change: a token's name and its scope, as the journal records them.
#[derive(Clone, Debug)]
pub struct Actor {
    pub token: String,
    /// `operator` or a tenant's name.
    pub scope: String,
}

/// What an edit did to the document, for the caller and the journal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Edited {
    pub before: Value,
    pub after: Value,
}

/// Why an edit could not even be tried: what the request named is not in the policy.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    NotFound(String),
    /// The request is ambiguous or collides with what is there.
    #[error("{0}")]
    Conflict(String),
    /// A request field that cannot go into the policy file at all.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// Why a change was refused. In every case the file, the running policy and the journal
/// (but for one "refused" line) are as they were.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The edited policy does not validate; positions are in the edited text.
    #[error("the changed policy does not validate:\n{0}")]
    Invalid(ConfigError),
    /// The file on disk (edited by hand since the last reload?) does not validate, so
    /// no change is made on top of it.
    #[error("the policy file does not validate as it is on disk; fix it first:\n{0}")]
    Disk(ConfigError),
    #[error("the change validated but could not be installed: {0}")]
    Install(ChangeError),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A change that was applied.
#[derive(Clone, Debug)]
pub struct Done {
    pub applied: Applied,
    pub edited: Edited,
}

/// Applies and records changes to one [`Control`]'s policy file.
pub struct Persist {
    control: Arc<Control>,
    journal: PathBuf,
}

impl Persist {
    /// Journals into `<policy file>.journal`.
    pub fn new(control: Arc<Control>) -> Persist {
        let mut journal = control.path().into_os_string();
        journal.push(".journal");
        Persist {
            control,
            journal: PathBuf::from(journal),
        }
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub fn journal_path(&self) -> &Path {
        &self.journal
    }

    /// Edits the policy file with `edit` (given the document and the policy it holds
    /// now), then validates, writes, installs and journals it. `call` names the request
    /// in the journal.
    pub fn change(
        &self,
        actor: &Actor,
        call: &str,
        now: Instant,
        edit: impl FnOnce(&mut DocumentMut, &Snapshot) -> Result<Edited, EditError>,
    ) -> Result<Done, PersistError> {
        let result = {
            let _edit = self.control.edit_lock();
            self.change_locked(edit, now)
        };
        let entry = match &result {
            Ok(done) => json!({
                "result": "applied",
                "generation": done.applied.generation,
                "before": done.edited.before,
                "after": done.edited.after,
            }),
            Err(e) => json!({ "result": "refused", "error": e.to_string() }),
        };
        self.journal(actor, call, entry);
        result
    }

    fn change_locked(
        &self,
        edit: impl FnOnce(&mut DocumentMut, &Snapshot) -> Result<Edited, EditError>,
        now: Instant,
    ) -> Result<Done, PersistError> {
        let path = self.control.path();
        let origin = path.display().to_string();
        let io = |source| PersistError::Io {
            path: path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(io)?;
        // The validator reports syntax errors with their position; toml_edit would too,
        // but one format of message is enough.
        let options = self.control.options();
        let current = Snapshot::compile(&text, &origin, options).map_err(PersistError::Disk)?;
        let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            PersistError::Disk(ConfigError {
                errors: vec![crate::policy::Diagnostic {
                    file: origin.clone(),
                    line: 0,
                    column: 0,
                    field: String::new(),
                    message: e.to_string(),
                }],
            })
        })?;
        let edited = edit(&mut doc, &current)?;
        let next_text = doc.to_string();
        let next =
            Snapshot::compile(&next_text, &origin, options).map_err(PersistError::Invalid)?;
        write_atomically(&path, &next_text).map_err(io)?;
        match self.control.install(next, now) {
            Ok(applied) => Ok(Done { applied, edited }),
            Err(e) => {
                // The running policy is the old one: so must the file be.
                if let Err(w) = write_atomically(&path, &text) {
                    eprintln!(
                        "nvlb: could not restore {} after a refused change: {w}",
                        path.display()
                    );
                }
                Err(PersistError::Install(e))
            }
        }
    }

    /// Re-reads the policy file (as SIGHUP does) and journals the outcome.
    pub fn reload(&self, actor: &Actor, now: Instant) -> Result<Applied, ChangeError> {
        let result = self.control.reload(now);
        let entry = match &result {
            Ok(a) => json!({
                "result": "applied",
                "generation": a.generation,
                "after": { "added": a.added, "removed": a.removed, "draining": a.draining },
            }),
            Err(e) => json!({ "result": "refused", "error": e.to_string() }),
        };
        self.journal(actor, "reload", entry);
        result
    }

    /// Appends one line; a journal that cannot be written does not undo the change
    /// (the file already holds it), it is reported on stderr.
    fn journal(&self, actor: &Actor, call: &str, mut entry: Value) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Value::Object(m) = &mut entry {
            m.insert("time".into(), json!((time * 1000.0).round() / 1000.0));
            m.insert("token".into(), json!(actor.token));
            m.insert("scope".into(), json!(actor.scope));
            m.insert("call".into(), json!(call));
        }
        let mut line = entry.to_string();
        line.push('\n');
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.journal)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = written {
            eprintln!(
                "nvlb: cannot append to the journal {}: {e}",
                self.journal.display()
            );
        }
    }
}

/// Replaces `path` with `text` so that a crash leaves either the old or the new file:
/// a temporary file in the same directory, fsynced, renamed over it, the directory
/// fsynced. The original's permissions are kept.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".into());
    let tmp = dir.join(format!(".{name}.nvlb-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DipState;

    const EXAMPLE: &str = include_str!("../../../lb-config/example.toml");

    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("nvlb-persist-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn setup(tag: &str) -> (Dir, Persist) {
        let d = Dir::new(tag);
        let path = d.0.join("policy.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let c = Arc::new(Control::open(&path).unwrap());
        (d, Persist::new(c))
    }

    fn actor() -> Actor {
        Actor {
            token: "t".into(),
            scope: "operator".into(),
        }
    }

    /// Sets `drain = true` on the first DIP of blue-web.
    fn drain_first(doc: &mut DocumentMut, _: &Snapshot) -> Result<Edited, EditError> {
        let t = doc["tenant"][0]["vip"][0]["dips"]
            .as_array_mut()
            .and_then(|a| a.get_mut(0))
            .and_then(|v| v.as_inline_table_mut())
            .ok_or_else(|| EditError::NotFound("no dip".into()))?;
        t.insert("drain", true.into());
        Ok(Edited::default())
    }

    #[test]
    fn an_applied_change_is_in_the_file_the_running_policy_and_the_journal() {
        let (_d, p) = setup("applied");
        let done = p
            .change(&actor(), "test", Instant::now(), drain_first)
            .unwrap();
        assert_eq!(done.applied.generation, 2);
        let text = std::fs::read_to_string(p.control().path()).unwrap();
        assert!(
            text.lines()
                .any(|l| l.contains("\"10.0.0.5\", port = 80") && l.contains("drain = true")),
            "{text}"
        );
        // Comments survive.
        assert!(text.contains("# Figure 6: Blue VIP1"));
        let web = p.control().policy();
        assert_eq!(
            web.pool_named("blue-web").unwrap().1.dips[0].state,
            DipState::Draining
        );
        let journal = std::fs::read_to_string(p.journal_path()).unwrap();
        let line: Value = serde_json::from_str(journal.trim()).unwrap();
        assert_eq!(line["result"], "applied");
        assert_eq!(line["call"], "test");
        assert_eq!(line["generation"], 2);
    }

    #[test]
    fn a_change_that_does_not_validate_changes_nothing() {
        let (_d, p) = setup("refused");
        let before = p.control().policy();
        let err = p
            .change(&actor(), "bad", Instant::now(), |doc, _| {
                doc["tenant"][0]["vip"][0]["dips"]
                    .as_array_mut()
                    .unwrap()
                    .get_mut(0)
                    .unwrap()
                    .as_inline_table_mut()
                    .unwrap()
                    .insert("weight", (-3).into());
                Ok(Edited::default())
            })
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("policy.toml:") && text.contains("dips[0].weight"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(p.control().path()).unwrap(),
            EXAMPLE
        );
        assert!(Arc::ptr_eq(&before, &p.control().policy()));
        let journal = std::fs::read_to_string(p.journal_path()).unwrap();
        assert!(journal.contains("\"refused\""), "{journal}");
        // No temporary file is left behind.
        let dir = p.control().path().parent().unwrap().to_path_buf();
        let names: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn concurrent_changes_are_all_kept() {
        let (_d, p) = setup("concurrent");
        let p = Arc::new(p);
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    p.change(&actor(), "w", Instant::now(), move |doc, _| {
                        let t = doc["tenant"][0]["vip"][0]["dips"]
                            .as_array_mut()
                            .and_then(|a| a.get_mut(i))
                            .and_then(|v| v.as_inline_table_mut())
                            .unwrap();
                        t.insert("weight", 10_i64.into());
                        Ok(Edited::default())
                    })
                    .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = crate::policy_file::read(&p.control().path(), &Default::default()).unwrap();
        let w: Vec<u32> = s
            .pool_named("blue-web")
            .unwrap()
            .1
            .dips
            .iter()
            .map(|d| d.weight)
            .collect();
        assert_eq!(w, [10, 10, 10, 10]);
        assert_eq!(p.control().generation(), 5);
    }
}
