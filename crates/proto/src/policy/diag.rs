//! Diagnostics: where in which file a policy problem is, and the error that carries them.
//!
//! Positions are computed from byte offsets (what `toml::Spanned` records) into 1-based
//! line and character columns, the form editors jump to. This module must never decide
//! what is valid; it only places and prints findings.

use core::fmt;
use core::ops::Range;

/// One finding, printed as `file:line:column: field: message`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Diagnostic {
    /// The policy file as named to the compiler (the `origin` given to it).
    pub file: String,
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column, in characters rather than bytes.
    pub column: usize,
    /// Dotted path of the offending field, e.g. `tenant[0].vip[1].dips[2].ca`; empty
    /// when the problem is not tied to one field (a syntax error).
    pub field: String,
    /// What is wrong, in a sentence for the operator.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a policy file, in file order; the file was not accepted.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub struct ConfigError {
    /// At least one finding, in file order.
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of one text to line and column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset at which each line starts.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// 1-based line and character column; offsets past the end (or inside a UTF-8
    /// sequence) are clamped rather than trusted.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..)
            .unwrap_or("")
            .char_indices()
            .take_while(|&(i, _)| start + i < offset)
            .count();
        (line, column + 1)
    }

    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    pub(crate) fn diagnostic(
        &self,
        file: &str,
        span: Range<usize>,
        field: String,
        message: String,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            field,
            message,
        }
    }
}

/// Best-effort field path for an error the TOML deserializer raised (syntax, unknown
/// key, wrong type), which carries a span but no path. Tracks `[table]` and
/// `[[array.of.tables]]` headers up to the offset, numbering array entries the way the
/// validator does, then appends the key written on the offending line.
pub(crate) fn path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    // Count of entries seen so far for each resolved array-of-tables path.
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut current = String::new();
    let mut line_start = 0;
    let mut key = None;
    // The key of the last `key = value` line: names the array a continuation line of a
    // multi-line array (`dips = [` ... `]`) belongs to.
    let mut last_key = None;
    for line in text.split_inclusive('\n') {
        if line_start > offset {
            break;
        }
        let trimmed = line.trim_start();
        let on_error_line =
            offset < line_start + line.len() || line_start + line.len() == text.len();
        if let Some(rest) = trimmed.strip_prefix("[[") {
            let inner = rest.split("]]").next().unwrap_or("");
            let segments: Vec<&str> = inner.split('.').map(str::trim).collect();
            if let Some((last, parents)) = segments.split_last() {
                let full = join(&resolve(parents, &counts), last);
                let index = match counts.iter_mut().find(|(p, _)| *p == full) {
                    Some((_, n)) => {
                        *n += 1;
                        *n - 1
                    }
                    None => {
                        counts.push((full.clone(), 1));
                        0
                    }
                };
                current = format!("{full}[{index}]");
            }
            last_key = None;
        } else if let Some(rest) = trimmed.strip_prefix('[') {
            let inner = rest.split(']').next().unwrap_or("");
            let segments: Vec<&str> = inner.split('.').map(str::trim).collect();
            current = resolve(&segments, &counts);
            last_key = None;
        } else if on_error_line {
            key = leading_key(trimmed).or(last_key);
        } else if let Some(k) = leading_key(trimmed) {
            last_key = Some(k);
        }
        line_start += line.len();
    }
    let token = token_at(text, offset);
    let mut path = current;
    if let Some(k) = key {
        path = join(&path, k);
        if let Some(t) = token.filter(|t| *t != k) {
            path = join(&path, t);
        }
    } else if let Some(t) = token {
        path = join(&path, t);
    }
    path
}

/// Resolves a dotted table path, inserting the current index of every array of tables.
fn resolve(segments: &[&str], counts: &[(String, usize)]) -> String {
    let mut path = String::new();
    for seg in segments {
        path = join(&path, seg);
        if let Some((_, n)) = counts.iter().find(|(p, _)| *p == path) {
            path = format!("{path}[{}]", n.saturating_sub(1));
        }
    }
    path
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}.{b}")
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The bare key a `key = value` line starts with.
fn leading_key(line: &str) -> Option<&str> {
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && k.chars().all(is_key_char)).then_some(k)
}

/// The bare key starting at `offset`, if one does (unknown-key errors point at it).
fn token_at(text: &str, offset: usize) -> Option<&str> {
    let rest = text.get(offset..)?;
    let end = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
    let token = rest.get(..end)?;
    let after = rest
        .get(end..)
        .unwrap_or("")
        .trim_start_matches([' ', '\t']);
    (!token.is_empty() && after.starts_with('=')).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let idx = LineIndex::new(text);
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(4), (1, 5));
        assert_eq!(idx.position(6), (2, 1));
        // 'é' is two bytes but one column.
        let quote = text.find('"').unwrap();
        assert_eq!(idx.position(quote), (2, 6));
        assert_eq!(idx.position(10_000).0, 3);
    }

    #[test]
    fn display_is_one_line_per_error() {
        let d = |line| Diagnostic {
            file: "x.toml".into(),
            line,
            column: 3,
            field: "tenant[0].name".into(),
            message: "bad".into(),
        };
        let e = ConfigError {
            errors: vec![d(1), d(2)],
        };
        assert_eq!(
            e.to_string(),
            "x.toml:1:3: tenant[0].name: bad\nx.toml:2:3: tenant[0].name: bad"
        );
    }

    #[test]
    fn path_follows_arrays_of_tables() {
        let text = "[balancer]\nname = \"x\"\n[[tenant]]\nname = \"a\"\n[[tenant.vip]]\nport = 1\n\
                    [[tenant]]\nname = \"b\"\n[[tenant.vip]]\nport = 1\n[[tenant.vip]]\ncolour = 2\n";
        let at = text.find("colour").unwrap();
        assert_eq!(path_at(text, at), "tenant[1].vip[1].colour");
        let at = text.find("\"x\"").unwrap();
        assert_eq!(path_at(text, at), "balancer.name");
        let at = text.rfind("[[tenant]]").unwrap();
        assert_eq!(path_at(text, at), "tenant[1]");
    }

    #[test]
    fn path_names_keys_inside_inline_tables() {
        let text = "[[tenant]]\n[[tenant.vip]]\ndips = [ { ca = \"1\", zz = 3 } ]\n";
        let at = text.find("zz").unwrap();
        assert_eq!(path_at(text, at), "tenant[0].vip[0].dips.zz");
        let text =
            "[[tenant]]\n[[tenant.vip]]\nport = 1\ndips = [\n  { ca = \"1\" },\n  { zz = 3 },\n]\n";
        let at = text.find("zz").unwrap();
        assert_eq!(path_at(text, at), "tenant[0].vip[0].dips.zz");
    }
}
