//! The `/metrics` endpoint: HTTP/1.1 (hyper) on a thread of its own with a
//! single-threaded tokio runtime, so that a slow or hostile scraper costs that thread
//! only. The data plane never waits on it: rendering reads the workers' published
//! copies (see `publish`), never their live counters.
//!
//! It must never serve anything but the rendered page (no files, no other state), and
//! it binds before returning so that a bad address fails `nvlb run` at once.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::text::CONTENT_TYPE;

/// What a scrape renders.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running endpoint. The thread runs until the process exits.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
}

impl Server {
    /// The bound address (the port is the kernel's choice when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds `addr` and serves `GET /metrics` with `render()` from a new thread.
pub fn serve(addr: SocketAddr, render: Render) -> io::Result<Server> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("nvlb-metrics".into())
        .spawn(move || rt.block_on(accept_loop(listener, render)))?;
    Ok(Server { addr: local })
}

async fn accept_loop(listener: std::net::TcpListener, render: Render) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("nvlb: metrics endpoint stopped: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors or a reset before accept: try again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(respond(&req, &render)) }
            });
            // A client that goes away mid-request is its own problem.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn respond(req: &Request<Incoming>, render: &Render) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = plain(StatusCode::OK, render());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            r
        }
        "/" => plain(StatusCode::OK, "nvlb: metrics at /metrics\n".into()),
        _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_the_rendered_page_and_nothing_else() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = n.clone();
        let render: Render = Arc::new(move || {
            let v = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("nvlb_test {v}\n")
        });
        let server = serve("127.0.0.1:0".parse().unwrap(), render).unwrap();
        let a = get(server.local_addr(), "/metrics");
        assert!(a.starts_with("HTTP/1.1 200"), "{a}");
        assert!(a.contains("text/plain; version=0.0.4"), "{a}");
        assert!(a.ends_with("nvlb_test 0\n"), "{a}");
        let b = get(server.local_addr(), "/metrics");
        assert!(b.ends_with("nvlb_test 1\n"), "rendered per scrape: {b}");
        let c = get(server.local_addr(), "/etc/passwd");
        assert!(c.starts_with("HTTP/1.1 404"), "{c}");
    }

    #[test]
    fn a_taken_address_fails_at_once() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let render: Render = Arc::new(String::new);
        assert!(serve(held.local_addr().unwrap(), render).is_err());
    }
}
