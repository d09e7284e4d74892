//! The management API's request bodies: PLACEHOLDER until the API (src/control/api,
//! branch `api`) is merged.
//!
//! Today it checks what every body of that API goes through first and what the policy
//! path does with text carried in a body: JSON parsing of arbitrary bytes (and that
//! whatever parses prints and parses back to the same value), then every string found
//! in the document compiled as a policy (a policy upload or edit ends in
//! `Snapshot::from_toml`). Once the API is on main, `run` should call `Api::handle`
//! with each route's method and path and the fuzzed body, over a policy file in a
//! temporary directory, and require a 2xx or 4xx answer with a JSON body, and an
//! unchanged file on every 4xx. Must never: touch a file outside its temporary directory.

use serde_json::Value;

/// Strings found anywhere in `v`, depth first, at most `max`.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>, max: usize) {
    if out.len() >= max {
        return;
    }
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out, max)),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            out.push(k);
            strings(x, out, max)
        }),
        _ => {}
    }
}

/// Runs one fuzz input (a request body); `Err` names the broken promise.
pub fn run(body: &[u8]) -> Result<(), String> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Ok(());
    };
    let printed = serde_json::to_vec(&v).map_err(|e| format!("cannot print: {e}"))?;
    let back: Value = serde_json::from_slice(&printed)
        .map_err(|e| format!("printed JSON does not parse: {e}"))?;
    // Numbers may lose precision through f64; compare only when none is a float.
    if !has_float(&v) && back != v {
        return Err(format!("round trip changed the value: {v} -> {back}"));
    }
    let mut found = Vec::new();
    strings(&v, &mut found, 4);
    for s in found {
        let mut data = vec![0u8];
        data.extend_from_slice(s.as_bytes());
        crate::config::run(&data)?;
    }
    Ok(())
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}
