//! Reading a policy file: the one place a policy comes from disk (the packet-logic
//! crate compiles text and never opens a file).

use std::path::Path;

use crate::policy::{CompileOptions, ConfigError, Diagnostic, Snapshot};

/// Reads and compiles the policy file at `path`; messages name it as given, and a file
/// that cannot be read is reported as a diagnostic of that file.
pub fn read(path: &Path, options: &CompileOptions) -> Result<Snapshot, ConfigError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Snapshot::compile(&text, &origin, options),
        Err(e) => Err(ConfigError {
            errors: vec![Diagnostic {
                file: origin,
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_file_reads_the_shipped_example() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lb-config/example.toml");
        assert_eq!(
            read(&path, &CompileOptions::default())
                .unwrap()
                .pools()
                .len(),
            7
        );
        let missing = path.with_file_name("no-such-file.toml");
        let err = read(&missing, &CompileOptions::default()).unwrap_err();
        assert!(err.errors[0].file.ends_with("no-such-file.toml"));
        assert!(err.errors[0].message.starts_with("cannot read"));
    }

    /// Every fixture in `lb-config/bad/` is refused with exactly the errors its
    /// `# expect: LINE FIELD: MESSAGE-PART` comments list.
    #[test]
    fn bad_fixtures_report_what_they_expect() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lb-config/bad");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "fixtures missing in {}", dir.display());
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let expected: Vec<(usize, &str, &str)> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# expect: "))
                .map(|e| {
                    let (line, rest) = e.split_once(' ').unwrap();
                    let (field, says) = rest.split_once(": ").unwrap();
                    (line.parse().unwrap(), field, says)
                })
                .collect();
            assert!(
                !expected.is_empty(),
                "{} has no # expect: lines",
                path.display()
            );
            let err =
                read(&path, &CompileOptions::default()).expect_err("a bad fixture was accepted");
            let got: Vec<(usize, &str, &str)> = err
                .errors
                .iter()
                .map(|d| (d.line, d.field.as_str(), d.message.as_str()))
                .collect();
            assert_eq!(got.len(), expected.len(), "{}: {err}", path.display());
            for ((gl, gf, gm), (el, ef, em)) in got.iter().zip(&expected) {
                assert_eq!((gl, gf), (el, ef), "{}: {err}", path.display());
                assert!(gm.contains(em), "{}: {gm:?} lacks {em:?}", path.display());
            }
            assert!(
                err.errors
                    .iter()
                    .all(|d| d.file == path.display().to_string())
            );
        }
    }
}
