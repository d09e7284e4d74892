//! The management API: arbitrary requests (route, token, body) through `Api::handle`
//! over a policy file of its own in a temporary directory.
//!
//! Promises checked: every answer is 2xx or 4xx (a 5xx means the API failed on input it
//! should have judged), and a refused request (4xx) changes neither the policy file nor
//! the running policy's generation. After an accepted change the file and the policy are
//! put back, so inputs do not depend on each other: the policy by installing the
//! example's snapshot compiled once at start, which is what a reload of the restored
//! file would install, without compiling it again for every accepted input (a fifth of
//! the target's time, by perf). Must never: touch a file outside its temporary
//! directory.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use nvlb::control::Control;
use nvlb::control::api::Api;
use nvlb::control::api::auth::{Tokens, hash_token, hex};
use nvlb::control::persist::Persist;
use nvlb::policy::Snapshot;

const EXAMPLE: &str = include_str!("../../lb-config/example.toml");

/// Routes the first input byte picks; past the end, the path comes from the input.
/// They are the API's own route table (`api::calls`), each pattern filled with names
/// the example policy has, and `/healthz`: a call added to the API is fuzzed without
/// a second list to keep up (one once lacked `pick`).
pub fn routes() -> &'static [(&'static str, String)] {
    static ROUTES: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let mut v: Vec<(&'static str, String)> = nvlb::control::api::calls()
            .map(|(method, pattern)| {
                let path = pattern
                    .replace("{pool}", "blue-web")
                    .replace("{ca}", "10.0.0.6")
                    .replace("{port*}", "80")
                    .replace("{vsid}", "5001");
                (method, path)
            })
            .collect();
        v.push(("GET", "/healthz".to_string()));
        v
    })
}

pub(crate) const METHODS: &[&str] = &["GET", "POST", "PATCH", "PUT", "DELETE"];

/// Bearer tokens the second input byte picks (none, an unknown one, each scope).
pub(crate) const TOKENS: &[Option<&str>] =
    &[None, Some("nope"), Some("OPS"), Some("BLUE"), Some("RED")];

struct World {
    path: PathBuf,
    api: Api,
    /// The example as `Control::open` compiled it, installed again after an accepted
    /// change.
    pristine: Arc<Snapshot>,
}

fn world() -> &'static Mutex<World> {
    static WORLD: OnceLock<Mutex<World>> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nvlb-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("policy.toml");
        std::fs::write(&path, EXAMPLE).expect("policy file");
        let control =
            Arc::new(Control::open_with(&path, crate::options()).expect("example policy"));
        let pristine = control.declared();
        let tokens: String = [
            ("ops", "operator", "OPS"),
            ("b", "blue", "BLUE"),
            ("r", "red", "RED"),
        ]
        .iter()
        .map(|(n, s, t)| {
            format!(
                "[[token]]\nname = \"{n}\"\nscope = \"{s}\"\nsha256 = \"{}\"\n",
                hex(&hash_token(t))
            )
        })
        .collect();
        let tokens = Tokens::from_toml(&tokens, "tokens.toml").expect("tokens");
        let api = Api::new(Persist::new(control), tokens, None);
        Mutex::new(World {
            path,
            api,
            pristine,
        })
    })
}

/// The input that asks `method path` with `token` and `body`, in the form `run`
/// decodes past the fixed routes: a route byte that picks the method, then the path, a
/// newline and the body. `None` for a method or token the harness does not know. The
/// route byte is the highest that names the method, so that saved inputs keep their
/// meaning when the API gains calls (and the fixed routes grow).
pub fn request(method: &str, path: &str, token: Option<&str>, body: &str) -> Option<Vec<u8>> {
    let m = METHODS.iter().position(|x| *x == method)?;
    let route = (routes().len()..=255)
        .rev()
        .find(|r| r % METHODS.len() == m)?;
    let token = TOKENS.iter().position(|t| *t == token)?;
    let mut v = vec![u8::try_from(route).ok()?, u8::try_from(token).ok()?];
    v.extend_from_slice(path.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body.as_bytes());
    Some(v)
}

/// Runs one fuzz input: `[route, token, body...]`; `Err` names the broken promise.
pub fn run(data: &[u8]) -> Result<(), String> {
    status(data).map(|_| ())
}

/// As [`run`], and the status the API answered (`None`: too short to be a request).
pub fn status(data: &[u8]) -> Result<Option<u16>, String> {
    let (Some(&route), Some(&token)) = (data.first(), data.get(1)) else {
        return Ok(None);
    };
    let rest = data.get(2..).unwrap_or(&[]);
    let (method, path, body): (&str, String, &[u8]) = match routes().get(usize::from(route)) {
        Some((m, p)) => (m, p.clone(), rest),
        None => {
            // A path of the input's own, up to the first newline, then the body.
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let path = String::from_utf8_lossy(rest.get(..cut).unwrap_or(&[])).into_owned();
            let method = METHODS[usize::from(route) % METHODS.len()];
            (method, path, rest.get(cut + 1..).unwrap_or(&[]))
        }
    };
    let auth = TOKENS[usize::from(token) % TOKENS.len()].map(|t| format!("Bearer {t}"));
    let w = world().lock().unwrap_or_else(|p| p.into_inner());
    let control = w.api.persist().control();
    let before = std::fs::read(&w.path).map_err(|e| e.to_string())?;
    let generation = control.generation();
    let answer = w
        .api
        .handle(method, &path, auth.as_deref(), body, Instant::now());
    let after = std::fs::read(&w.path).map_err(|e| e.to_string())?;
    match answer.status {
        200..=299 => {
            if after != before || control.generation() != generation {
                std::fs::write(&w.path, EXAMPLE).map_err(|e| e.to_string())?;
                control
                    .install(Snapshot::clone(&w.pristine), Instant::now())
                    .map_err(|e| format!("cannot restore the example: {e}"))?;
            }
            Ok(Some(answer.status))
        }
        400..=499 => {
            if after != before {
                return Err(format!(
                    "{method} {path}: refused ({}) but the file changed",
                    answer.status
                ));
            }
            if control.generation() != generation {
                return Err(format!(
                    "{method} {path}: refused ({}) but the policy changed",
                    answer.status
                ));
            }
            Ok(Some(answer.status))
        }
        s => Err(format!("{method} {path}: status {s}: {}", answer.body)),
    }
}
