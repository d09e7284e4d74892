//! The API's client side, for `nvlb ctl` and `nvlb reload`: one request, one answer.
//!
//! Blocking on a throw-away single-threaded runtime: a command-line call makes one
//! request, so nothing is gained by more. Must never print or store the token.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long a call may take in all (connect, send, answer).
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the API at {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("the API at {addr} did not answer within {TIMEOUT:?}")]
    Timeout { addr: String },
    #[error("bad request: {0}")]
    Request(String),
    #[error("the API's answer is not JSON: {0}")]
    Answer(String),
}

/// Sends `method path` with `body` (JSON) to the API at `addr` (host:port); returns the
/// HTTP status and the JSON answer.
pub fn call(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ClientError::Request(e.to_string()))?;
    runtime.block_on(async {
        match tokio::time::timeout(TIMEOUT, send(addr, token, method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                addr: addr.to_string(),
            }),
        }
    })
}

async fn send(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), ClientError> {
    let connect = |e: &dyn std::fmt::Display| ClientError::Connect {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| connect(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect(&e))?;
    tokio::spawn(conn);
    let text = body.map(Value::to_string).unwrap_or_default();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr)
        .header(CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(text)))
        .map_err(|e| ClientError::Request(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| connect(&e))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| connect(&e))?
        .to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Answer(e.to_string()))?
    };
    Ok((status, value))
}
