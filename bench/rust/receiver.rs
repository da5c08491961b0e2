//! `bench-receiver`: a Segment-shaped HTTP endpoint for benchmarks. It answers every POST
//! with 200 `{}`, gunzips `Content-Encoding: gzip` bodies, and counts requests, calls (the
//! length of `batch`, or 1 for a single call) and bytes. Nothing is stored.
//!
//! Usage: `bench-receiver [PORT]` (0 or nothing: a free port). The first stdout line is the
//! base URL. `GET /__bench/stats` answers the counters as JSON; `GET /__bench/reset` zeroes
//! them.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    calls: AtomicU64,
    /// Bytes as received (compressed when gzip).
    wire_bytes: AtomicU64,
    /// Bytes after gunzip: what the destination's batch limits apply to.
    body_bytes: AtomicU64,
    max_body_bytes: AtomicU64,
    max_calls_per_request: AtomicU64,
    gzip_requests: AtomicU64,
    bad_requests: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "calls": get(&self.calls),
            "wire_bytes": get(&self.wire_bytes),
            "body_bytes": get(&self.body_bytes),
            "max_body_bytes": get(&self.max_body_bytes),
            "max_calls_per_request": get(&self.max_calls_per_request),
            "gzip_requests": get(&self.gzip_requests),
            "bad_requests": get(&self.bad_requests),
        })
    }

    fn reset(&self) {
        for a in [
            &self.requests,
            &self.calls,
            &self.wire_bytes,
            &self.body_bytes,
            &self.max_body_bytes,
            &self.max_calls_per_request,
            &self.gzip_requests,
            &self.bad_requests,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// Only the length of the batch matters; the calls themselves are skipped over.
#[derive(Deserialize)]
struct Batch {
    batch: Option<Vec<serde::de::IgnoredAny>>,
}

async fn handle(
    State(counters): State<Arc<Counters>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match (method.as_str(), uri.path()) {
        ("GET", "/__bench/stats") => return axum::Json(counters.snapshot()).into_response(),
        ("GET", "/__bench/reset") => {
            counters.reset();
            return axum::Json(counters.snapshot()).into_response();
        }
        _ => {}
    }
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let plain = if gzip {
        let mut out = Vec::with_capacity(body.len() * 6);
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let calls = match serde_json::from_slice::<Batch>(&plain) {
        Ok(Batch { batch: Some(items) }) => items.len() as u64,
        Ok(Batch { batch: None }) => 1,
        Err(_) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, "bad JSON").into_response();
        }
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters.calls.fetch_add(calls, Ordering::Relaxed);
    counters
        .wire_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    counters
        .body_bytes
        .fetch_add(plain.len() as u64, Ordering::Relaxed);
    counters
        .max_body_bytes
        .fetch_max(plain.len() as u64, Ordering::Relaxed);
    counters
        .max_calls_per_request
        .fetch_max(calls, Ordering::Relaxed);
    if gzip {
        counters.gzip_requests.fetch_add(1, Ordering::Relaxed);
    }
    (StatusCode::OK, "{}").into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => 0,
    };
    let counters = Arc::new(Counters::default());
    let app = axum::Router::new().fallback(handle).with_state(counters);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    // The URL alone on the first line, for scripts.
    let mut out = std::io::stdout();
    writeln!(out, "http://{addr}")?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
