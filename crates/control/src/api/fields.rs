//! Reading a request's JSON body: every field checked for its type, unknown fields
//! refused, and each complaint naming the field (`records[2].ca: missing`), so that a
//! caller can fix the request from the message alone.
//!
//! It must never guess: a field of the wrong type is an error, never a default.

use serde_json::{Map, Value};

use super::Response;

/// A request that is wrong in itself (not in what it would do to the policy): 400.
pub(super) struct Bad(pub(super) String);

impl From<Bad> for Response {
    fn from(b: Bad) -> Response {
        Response::error(400, b.0)
    }
}

/// The fields of one JSON object, each read with a message naming it when it is not
/// what the call needs.
pub(super) struct Fields<'a> {
    pub(super) map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Fields<'a> {
    pub(super) fn of(v: &'a Value, prefix: &str, allowed: &[&str]) -> Result<Fields<'a>, Bad> {
        let what = if prefix.is_empty() {
            "the body".to_string()
        } else {
            prefix.trim_end_matches('.').to_string()
        };
        let map = v
            .as_object()
            .ok_or_else(|| Bad(format!("{what}: expected a JSON object")))?;
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Bad(format!(
                "{prefix}{k}: unknown field (expected one of: {})",
                allowed.join(", ")
            )));
        }
        Ok(Fields {
            map,
            prefix: prefix.to_string(),
        })
    }

    pub(super) fn bad(&self, k: &str, what: &str) -> Bad {
        Bad(format!("{}{k}: expected {what}", self.prefix))
    }

    pub(super) fn get(&self, k: &str) -> Option<&'a Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    pub(super) fn str(&self, k: &str) -> Result<Option<String>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.bad(k, "a string")),
        }
    }

    pub(super) fn need_str(&self, k: &str) -> Result<String, Bad> {
        self.str(k)?
            .ok_or_else(|| Bad(format!("{}{k}: missing", self.prefix)))
    }

    pub(super) fn int(&self, k: &str) -> Result<Option<i64>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.bad(k, "an integer")),
        }
    }

    pub(super) fn need_int(&self, k: &str) -> Result<i64, Bad> {
        self.int(k)?
            .ok_or_else(|| Bad(format!("{}{k}: missing", self.prefix)))
    }

    pub(super) fn bool(&self, k: &str) -> Result<Option<bool>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(k, "true or false")),
        }
    }

    pub(super) fn list(&self, k: &str) -> Result<Option<&'a Vec<Value>>, Bad> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.bad(k, "a list")),
        }
    }

    pub(super) fn strings(&self, k: &str) -> Result<Option<Vec<String>>, Bad> {
        let Some(list) = self.list(k)? else {
            return Ok(None);
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Bad(format!("{}{k}[{i}]: expected a string", self.prefix)))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The body as JSON; an empty body is an empty object (calls without a body).
pub(super) fn parse_body(body: &[u8]) -> Result<Value, Bad> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| Bad(format!("malformed JSON: {e}")))
}
