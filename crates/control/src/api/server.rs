//! The API on a TCP listener: one OS thread with a single-threaded tokio runtime, one
//! task per connection, HTTP/1.1 through hyper.
//!
//! Requests are answered by [`Api::handle`] on this thread; a change may take a few
//! milliseconds (a Maglev table, an fsync), which delays only other API calls. This
//! module must never run on, or block, a data-plane thread, never read a body larger
//! than [`MAX_BODY`], never wait more than [`HEADER_TIMEOUT`] for a request head, and
//! never serve more than [`MAX_CONNECTIONS`] connections at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response as HttpResponse, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::{Api, MAX_BODY, Response};

/// A client that sends no complete request head within this long is dropped (a
/// slowloris client trickling header bytes holds a connection at most this long).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once. One more is answered 503 and closed at once, so that a
/// client opening connections without end cannot exhaust the LB's file descriptors or
/// memory; operators' tools use one connection per call.
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` now (so that a bad or busy address is an error before the LB says it is
/// ready) and serves `api` on it from a thread of its own, for the life of the process.
pub fn spawn(api: Arc<Api>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("nvlb-api".into())
        .spawn(move || runtime.block_on(serve(api, listener)))?;
    Ok(local)
}

async fn serve(api: Arc<Api>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nvlb: api: cannot listen: {e}");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                eprintln!("nvlb: api: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            api.record(503);
            tokio::spawn(refuse_busy(stream));
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| answer(api.clone(), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Answers a connection over [`MAX_CONNECTIONS`] with 503 without reading it, and
/// closes it; the write is bounded by a timeout so a client that reads nothing cannot
/// keep even this task.
async fn refuse_busy(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let refusal = super::replies::Refusal {
        error: format!("too many connections: at most {MAX_CONNECTIONS} at once"),
        errors: None,
    };
    let mut body = serde_json::to_string_pretty(&refusal).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

async fn answer(
    api: Arc<Api>,
    req: Request<Incoming>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let auth = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_string());
    let response = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => api.handle(
            &method,
            &target,
            auth.as_deref(),
            &body.to_bytes(),
            Instant::now(),
        ),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Response::error(413, format!("request body larger than {MAX_BODY} bytes"))
        }
        Err(e) => Response::error(400, format!("cannot read the request body: {e}")),
    };
    api.record(response.status);
    Ok(to_http(&response))
}

fn to_http(r: &Response) -> HttpResponse<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(&r.body).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut out = HttpResponse::new(Full::new(Bytes::from(text)));
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if r.status == 401 {
        out.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"nvlb\""),
        );
    }
    out
}
