//! Bearer tokens of the management API: who may call it, and for which tenant.
//!
//! The tokens file holds only SHA-256 digests (`nvlb ctl hash-token` makes them), so a
//! leaked file grants nothing. A presented token is hashed and compared with every
//! stored digest in constant time, without stopping at the first match, so neither
//! timing nor order tells how close a guess was. This module must never keep or log a
//! token in clear text.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a token may see and change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything, and the only scope for lookup records, subnets and reloads.
    Operator,
    /// The pools (VIPs, DIPs) of one tenant.
    Tenant(String),
}

impl Scope {
    pub fn name(&self) -> &str {
        match self {
            Scope::Operator => "operator",
            Scope::Tenant(t) => t,
        }
    }

    /// Whether this scope may see and change what belongs to `tenant`.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            Scope::Operator => true,
            Scope::Tenant(t) => t == tenant,
        }
    }
}

/// A caller the tokens file knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

struct Entry {
    caller: Caller,
    digest: [u8; 32],
}

/// The known tokens, by digest.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    token: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    scope: String,
    sha256: String,
}

impl Tokens {
    pub fn from_file(path: &Path) -> Result<Tokens, TokensError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            file: file.clone(),
            source,
        })?;
        Tokens::from_toml(&text, &file)
    }

    /// Parses a tokens file: `[[token]]` tables of `name`, `scope` (`"operator"` or a
    /// tenant's name) and `sha256` (64 hex digits).
    pub fn from_toml(text: &str, file: &str) -> Result<Tokens, TokensError> {
        let parse = |message: String| TokensError::Parse {
            file: file.to_string(),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        let mut entries: Vec<Entry> = Vec::new();
        for (i, t) in raw.token.into_iter().enumerate() {
            let digest = parse_digest(&t.sha256).ok_or_else(|| {
                parse(format!(
                    "token[{i}].sha256: expected 64 hex digits (nvlb ctl hash-token prints them)"
                ))
            })?;
            if t.name.is_empty() {
                return Err(parse(format!("token[{i}].name: must not be empty")));
            }
            if entries.iter().any(|e| e.caller.name == t.name) {
                return Err(parse(format!(
                    "token[{i}].name: {:?} is listed twice",
                    t.name
                )));
            }
            if entries.iter().any(|e| e.digest == digest) {
                return Err(parse(format!(
                    "token[{i}].sha256: the same token is listed twice"
                )));
            }
            let scope = match t.scope.as_str() {
                "" => return Err(parse(format!("token[{i}].scope: must not be empty"))),
                "operator" => Scope::Operator,
                tenant => Scope::Tenant(tenant.to_string()),
            };
            entries.push(Entry {
                caller: Caller {
                    name: t.name,
                    scope,
                },
                digest,
            });
        }
        Ok(Tokens { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn callers(&self) -> impl Iterator<Item = &Caller> {
        self.entries.iter().map(|e| &e.caller)
    }

    /// The caller whose token this is, if any.
    /// The caller an `Authorization` header's value names, or why there is none (the
    /// message of the 401 answer).
    pub fn caller(&self, authorization: Option<&str>) -> Result<&Caller, &'static str> {
        let Some(header) = authorization else {
            return Err("missing bearer token (Authorization: Bearer ...)");
        };
        header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .and_then(|t| self.check(t))
            .ok_or("unknown bearer token")
    }

    pub fn check(&self, token: &str) -> Option<&Caller> {
        let digest = hash_token(token);
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&e.digest, &digest) {
                found = Some(&e.caller);
            }
        }
        found
    }
}

/// The SHA-256 of a token, as the tokens file stores it.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal-length comparison whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> String {
        entries
            .iter()
            .map(|(n, s, t)| {
                format!(
                    "[[token]]\nname = \"{n}\"\nscope = \"{s}\"\nsha256 = \"{}\"\n",
                    hex(&hash_token(t))
                )
            })
            .collect()
    }

    #[test]
    fn a_known_token_maps_to_its_scope_and_nothing_else_does() {
        let text = file(&[("ops", "operator", "s3cret"), ("b", "blue", "blue-token")]);
        let t = Tokens::from_toml(&text, "tokens.toml").unwrap();
        assert_eq!(t.check("s3cret").unwrap().scope, Scope::Operator);
        let blue = t.check("blue-token").unwrap();
        assert_eq!(blue.name, "b");
        assert!(blue.scope.covers("blue") && !blue.scope.covers("red"));
        assert!(t.check("s3cret ").is_none());
        assert!(t.check("").is_none());
    }

    #[test]
    fn the_example_tokens_file_holds_the_tokens_it_documents() {
        let text = include_str!("../../../../lb-config/tokens.example.toml");
        let t = Tokens::from_toml(text, "tokens.example.toml").unwrap();
        assert_eq!(
            t.check("example-operator-token").unwrap().scope,
            Scope::Operator
        );
        assert_eq!(
            t.check("example-blue-token").unwrap().scope,
            Scope::Tenant("blue".into())
        );
        assert_eq!(
            t.check("example-red-token").unwrap().scope,
            Scope::Tenant("red".into())
        );
    }

    #[test]
    fn the_digest_is_sha256() {
        assert_eq!(
            hex(&hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_files_name_the_field() {
        let bad = "[[token]]\nname = \"x\"\nscope = \"operator\"\nsha256 = \"12\"\n";
        let e = Tokens::from_toml(bad, "t.toml").err().unwrap().to_string();
        assert!(e.contains("t.toml") && e.contains("token[0].sha256"), "{e}");
        let twice = file(&[("a", "operator", "x"), ("a", "blue", "y")]);
        let e = Tokens::from_toml(&twice, "t.toml")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("token[1].name"), "{e}");
        let unknown = "[[token]]\nname = \"x\"\nscope = \"operator\"\nsha = \"12\"\n";
        assert!(Tokens::from_toml(unknown, "t.toml").is_err());
    }

    #[test]
    fn constant_time_eq_compares_every_byte() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!constant_time_eq(&a, &b));
    }
}
