//! Test support: a local axum server that records every request (gunzipping bodies) and
//! answers from a script, calls of every kind, and the behaviour every HTTP destination
//! must show (retries, Retry-After, dead 4xx, oversize, budget).
#![allow(dead_code)]

pub mod vendors;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{Call, DestinationConfig, DestinationKind};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    pub gzipped: bool,
    pub raw_len: usize,
    pub arrived: Instant,
    pub answered: Instant,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }

    /// Form fields of an x-www-form-urlencoded body.
    pub fn form(&self) -> Vec<(String, String)> {
        let text = String::from_utf8(self.body.clone()).expect("utf-8 form");
        text.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("key=value");
                (decode(k), decode(v))
            })
            .collect()
    }

    pub fn form_field(&self, name: &str) -> String {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no form field {name}"))
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

/// What the server answers: status, headers, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: vec![],
        body: body.to_string(),
    }
}

pub fn reply_with(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
    Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
    }
}

type Script = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

#[derive(Clone)]
struct ServerState {
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Recorded>>>,
}

pub struct Server {
    pub url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }
}

/// Starts a server on 127.0.0.1 answering request `n` (from 0) with `script(n, request)`.
pub async fn serve(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Server {
    let state = ServerState {
        script: Arc::new(script),
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let log = state.log.clone();
    let app = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Server {
        url: format!("http://{addr}"),
        log,
    }
}

async fn handle(
    State(state): State<ServerState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let gzipped = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let raw_len = body.len();
    let body = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("a gzip body that decodes");
        out
    } else {
        body.to_vec()
    };
    let mut recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
        gzipped,
        raw_len,
        arrived,
        answered: arrived,
    };
    let reply = {
        let mut log = state.log.lock().expect("log");
        let n = log.len();
        let reply = (state.script)(n, &recorded);
        recorded.answered = Instant::now();
        log.push(recorded);
        reply
    };
    let mut response = (
        StatusCode::from_u16(reply.status).expect("status"),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    response
}

// ---------------------------------------------------------------------------------------
// Calls

pub fn message_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn source(kind: &str, object: &str, i: usize) -> Value {
    json!({ "sfsync": { "sync": format!("{kind}-sync"), "object": object, "kind": kind, "recordId": format!("REC{i:015}") } })
}

fn call(value: Value) -> Call {
    serde_json::from_value(value).expect("a valid call")
}

pub fn identify(i: usize) -> Call {
    call(json!({
        "type": "identify", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"),
        "traits": { "email": format!("p{i}@example.com"), "firstName": "Ada", "Title": "CTO" },
        "context": source("people", "Contact", i),
    }))
}

pub fn track(i: usize) -> Call {
    call(json!({
        "type": "track", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"), "event": "Call Logged",
        "properties": { "Subject": "Intro call", "n": i },
        "context": source("events", "Task", i),
    }))
}

/// An object without a related user: the mapping names it with its stable anonymousId.
pub fn object(i: usize) -> Call {
    call(json!({
        "type": "group", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "groupId": format!("001A{i:014}"), "anonymousId": format!("sfsync-object-1-001A{i:014}"),
        "traits": { "name": "Acme", "Industry": "Tools", "object_type_id": "1" },
        "context": source("objects", "Account", i),
    }))
}

pub fn object_with_owner(i: usize) -> Call {
    let mut c = object(i);
    c.user_id = Some(format!("005U{i:014}"));
    c.anonymous_id = None;
    c
}

pub fn relationship(i: usize) -> Call {
    call(json!({
        "type": "group", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"), "groupId": format!("001A{i:014}"),
        "traits": { "object_type_id": "1", "relationshipAttributes": { "Roles": "Buyer" } },
        "context": source("relationships", "AccountContactRelation", i),
    }))
}

pub fn delete_person(i: usize) -> Call {
    call(json!({
        "type": "delete", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"), "entity": "person",
        "context": source("people", "Contact", i),
    }))
}

pub fn delete_object(i: usize) -> Call {
    call(json!({
        "type": "delete", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "groupId": format!("001A{i:014}"), "entity": "object", "objectTypeId": "1",
        "anonymousId": format!("sfsync-object-1-001A{i:014}"),
        "context": source("objects", "Account", i),
    }))
}

pub fn delete_relationship(i: usize) -> Call {
    call(json!({
        "type": "delete", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"), "groupId": format!("001A{i:014}"),
        "entity": "relationship", "objectTypeId": "1",
        "context": source("relationships", "AccountContactRelation", i),
    }))
}

/// A Contact `i + 100` merged into Contact `i` (the loser deleted with its MasterRecordId).
pub fn merge_person(i: usize) -> Call {
    call(json!({
        "type": "merge", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "userId": format!("003U{i:014}"), "previousId": format!("003U{:014}", i + 100),
        "entity": "person", "mergeCause": "merge",
        "context": source("people", "Contact", i + 100),
    }))
}

/// Account `i + 100` merged into Account `i`.
pub fn merge_object(i: usize) -> Call {
    call(json!({
        "type": "merge", "messageId": message_id(i), "timestamp": "2024-05-01T12:34:56.789Z",
        "groupId": format!("001A{i:014}"), "previousId": format!("001A{:014}", i + 100),
        "anonymousId": format!("sfsync-object-1-001A{i:014}"),
        "entity": "object", "objectTypeId": "1", "mergeCause": "merge",
        "context": source("objects", "Account", i + 100),
    }))
}

/// A track call whose `blob` property makes its JSON at least `bytes` long.
pub fn big_track(i: usize, bytes: usize) -> Call {
    let mut c = track(i);
    let mut properties = c.properties_map();
    properties.insert("blob".into(), Value::String("x".repeat(bytes)));
    c.properties = Some(properties.into());
    c
}

pub fn tracks(n: usize) -> Vec<Call> {
    (0..n).map(track).collect()
}

/// One call of every kind, numbered 0 to 7 in this order: identify, track, object,
/// relationship, person delete, object delete, relationship delete, object with an owner.
pub fn every_kind() -> Vec<Call> {
    vec![
        identify(0),
        track(1),
        object(2),
        relationship(3),
        delete_person(4),
        delete_object(5),
        delete_relationship(6),
        object_with_owner(7),
    ]
}

/// Delivers `calls` in one `deliver` through the destination `config(url)` describes, `url`
/// being a server that answers every request 200 `answer`; asserts that every call was
/// delivered and returns the requests the server got.
pub async fn deliver_all(
    answer: &'static str,
    config: impl FnOnce(&str) -> DestinationConfig,
    calls: Vec<Call>,
) -> Vec<Recorded> {
    let server = serve(move |_, _| reply(200, answer)).await;
    let n = calls.len();
    let report = destination(&config(&server.url))
        .deliver(calls, Duration::from_secs(10))
        .await;
    assert_eq!(report.delivered(), n, "{report:?}");
    server.requests()
}

// ---------------------------------------------------------------------------------------
// Configs and destinations

pub fn config(kind: DestinationKind) -> DestinationConfig {
    // From JSON, as a config file would give it: the keys the type requires hold
    // placeholders (a test sets the ones it checks with `set`), every other key stays unset.
    let required: &[&str] = match kind {
        DestinationKind::Customerio | DestinationKind::Amplitude => &["api_key"],
        DestinationKind::CustomerioTrack => &["site_id", "api_key"],
        DestinationKind::Segment | DestinationKind::Rudderstack => &["write_key"],
        DestinationKind::Mixpanel => &["project_token"],
        DestinationKind::Webhook => &["url", "secret"],
        DestinationKind::File => &["path"],
    };
    let mut value = json!({
        "name": format!("test-{kind}"),
        "type": kind.as_str(),
        "timeout_seconds": 5,
    });
    for key in required {
        value[*key] = json!(match *key {
            "url" => "https://placeholder.invalid/hook".to_string(),
            "path" => "/dev/null".to_string(),
            key => format!("placeholder-{key}"),
        });
    }
    serde_json::from_value(value).expect("a valid destination config")
}

/// Sets one key of `config` as a config file would (through serde, so a key of the type's
/// settings is set the same way as a common one).
pub fn set(config: &mut DestinationConfig, key: &str, value: impl serde::Serialize) {
    let mut json = serde_json::to_value(&*config).expect("a config serializes");
    json[key] = serde_json::to_value(value).expect("a value serializes");
    *config = serde_json::from_value(json)
        .unwrap_or_else(|e| panic!("`{key}` is not a valid value for this destination: {e}"));
}

/// A destination with fast backoff (10 ms doubling to 200 ms).
pub fn destination(config: &DestinationConfig) -> Destination {
    let http = sfsync_destinations::http_client().expect("client");
    let mut d = Destination::new(config, http).expect("destination builds");
    d.set_backoff(Duration::from_millis(10), Duration::from_millis(200));
    d
}

pub fn outcomes(report: &sfsync_destinations::DeliveryReport) -> Vec<Outcome> {
    report.outcomes.iter().map(|o| o.outcome.clone()).collect()
}

pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---------------------------------------------------------------------------------------
// The behaviour every HTTP destination shares

/// How to point a destination at a server and what success looks like.
pub struct Fixture {
    /// The destination's config pointed at `url`.
    pub config: fn(&str) -> DestinationConfig,
    /// The API's success answer.
    pub ok: fn() -> Reply,
    /// Whether bodies are gzipped with the default config.
    pub gzip_by_default: bool,
    /// Secrets of `config` that must never appear in reasons.
    pub secrets: &'static [&'static str],
}

/// 429 with `Retry-After: 1`: the retry arrives no earlier than 1 s after the 429 was sent,
/// and the calls are delivered.
pub async fn retry_after_is_honoured(f: &Fixture) {
    let ok = f.ok;
    let server = serve(move |n, _| {
        if n == 0 {
            reply_with(429, &[("retry-after", "1")], r#"{"error":"slow down"}"#)
        } else {
            ok()
        }
    })
    .await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(3), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 3, "{report:?}");
    assert_eq!(report.requests, 2);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].arrived.duration_since(requests[0].answered);
    assert!(
        waited >= Duration::from_secs(1),
        "the retry came {waited:?} after the 429"
    );
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same batch is retried"
    );
}

/// X-RateLimit-Reset (seconds) is honoured like Retry-After.
pub async fn rate_limit_reset_is_honoured(f: &Fixture) {
    let ok = f.ok;
    let server = serve(move |n, _| {
        if n == 0 {
            reply_with(429, &[("x-ratelimit-reset", "1")], "")
        } else {
            ok()
        }
    })
    .await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(1), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 1, "{report:?}");
    let requests = server.requests();
    assert!(requests[1].arrived.duration_since(requests[0].answered) >= Duration::from_secs(1));
}

/// 500 and 503 are retried until they pass; 501 is not retried.
pub async fn server_errors_are_retried(f: &Fixture) {
    let ok = f.ok;
    let server = serve(move |n, _| match n {
        0 => reply(500, "boom"),
        1 => reply(503, "unavailable"),
        _ => ok(),
    })
    .await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(2), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 2, "{report:?}");
    assert_eq!(server.requests().len(), 3);

    let server = serve(|_, _| reply(501, "not implemented")).await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(2), Duration::from_secs(20)).await;
    assert_eq!(report.dead().count(), 2);
    assert_eq!(server.requests().len(), 1, "501 is not retried");
}

/// A permanent 4xx no call can cause (404: wrong endpoint): every call dead with the status
/// and the API's message, sent once, and no secret in the reason.
pub async fn permanent_4xx_is_dead(f: &Fixture) {
    let server = serve(|_, _| reply(404, r#"{"error":"no such project endpoint"}"#)).await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(3), Duration::from_secs(20)).await;
    assert_eq!(server.requests().len(), 1, "a 4xx is not retried");
    assert_eq!(report.dead().count(), 3);
    for o in report.dead() {
        let Outcome::Dead { reason } = &o.outcome else {
            unreachable!()
        };
        assert!(reason.contains("404"), "{reason}");
        assert!(reason.contains("no such project endpoint"), "{reason}");
        for secret in f.secrets {
            assert!(!reason.contains(secret), "a secret leaked into {reason}");
        }
    }
}

/// 401 and 403 are the credentials, not the calls: nothing is dead-lettered, every call is
/// paused with the API's message, no further request is made, and no secret shows.
pub async fn auth_failures_pause_instead_of_dead_lettering(f: &Fixture) {
    for status in [401, 403] {
        let server = serve(move |_, _| {
            reply(
                status,
                r#"{"error":"invalid credentials for this project"}"#,
            )
        })
        .await;
        let d = destination(&(f.config)(&server.url));
        let mut calls = tracks(3);
        calls.extend((3..6).map(identify));
        let report = d.deliver(calls, Duration::from_secs(20)).await;
        assert_eq!(
            server.requests().len(),
            1,
            "{status}: one refusal is enough"
        );
        assert_eq!(report.dead().count(), 0, "{status}: {report:?}");
        assert_eq!(report.delivered(), 0);
        assert_eq!(report.paused().count(), 6, "{status}: {report:?}");
        for o in report.paused() {
            let Outcome::Paused { reason } = &o.outcome else {
                unreachable!()
            };
            assert!(reason.contains(&status.to_string()), "{reason}");
            assert!(reason.contains("invalid credentials"), "{reason}");
            for secret in f.secrets {
                assert!(!reason.contains(secret), "a secret leaked into {reason}");
            }
        }
    }
}

/// A call larger than the per-call limit is dead and never sent; the others go.
pub async fn oversize_call_is_not_sent(f: &Fixture) {
    let ok = f.ok;
    let server = serve(move |_, _| ok()).await;
    let d = destination(&(f.config)(&server.url));
    let limit = d.limits().max_call_bytes;
    let calls = vec![track(0), big_track(1, limit + 1), track(2)];
    let report = d.deliver(calls, Duration::from_secs(20)).await;
    let o = outcomes(&report);
    assert_eq!(o[0], Outcome::Delivered);
    assert_eq!(o[2], Outcome::Delivered);
    match &o[1] {
        Outcome::Dead { reason } => assert!(reason.contains("too large"), "{reason}"),
        other => panic!("oversize call: {other:?}"),
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let body = String::from_utf8_lossy(&requests[0].body).to_string();
    assert!(!body.contains(&message_id(1)), "the oversize call was sent");
    assert!(
        !body.contains("xxxxxxxx"),
        "no part of the oversize call was sent"
    );
}

/// The server keeps failing: when the budget runs out every call is RetryLater.
pub async fn budget_exhaustion_gives_retry_later(f: &Fixture) {
    let server = serve(|_, _| reply(503, "down")).await;
    let d = destination(&(f.config)(&server.url));
    let started = Instant::now();
    let report = d.deliver(tracks(4), Duration::from_millis(1200)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "deliver overran its budget"
    );
    assert_eq!(report.retry_later().count(), 4, "{report:?}");
    assert!(report.requests >= 2, "it retried within the budget");
    for o in report.retry_later() {
        let Outcome::RetryLater { reason, .. } = &o.outcome else {
            unreachable!()
        };
        assert!(reason.contains("503"), "{reason}");
    }
}

/// A Retry-After beyond the budget: no second request; RetryLater with the wait in `after`.
pub async fn long_retry_after_is_handed_back(f: &Fixture) {
    let server = serve(|_, _| reply_with(429, &[("retry-after", "30")], "")).await;
    let d = destination(&(f.config)(&server.url));
    let started = Instant::now();
    let report = d.deliver(tracks(2), Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it waited instead of handing back"
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(report.retry_later().count(), 2);
    let after = report.max_retry_after().expect("a wait");
    assert!(
        after > Duration::from_secs(28) && after <= Duration::from_secs(30),
        "{after:?}"
    );
    // The gate holds for the next delivery too: nothing is sent before the wait is over.
    let report = d.deliver(tracks(1), Duration::from_secs(3)).await;
    assert_eq!(server.requests().len(), 1);
    assert_eq!(report.retry_later().count(), 1);
}

/// Bodies are gzipped when the API takes it (the server decompresses them), and never when
/// the config says `gzip = false`.
pub async fn gzip_follows_the_api_and_config(f: &Fixture) {
    let ok = f.ok;
    let server = serve(move |_, _| ok()).await;
    let d = destination(&(f.config)(&server.url));
    let report = d.deliver(tracks(50), Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), 50);
    let r = &server.requests()[0];
    assert_eq!(r.gzipped, f.gzip_by_default);
    assert!(!r.body.is_empty());
    if r.gzipped {
        assert!(r.raw_len < r.body.len(), "compressed body is smaller");
    }
    // Whatever the encoding, the decoded body is the API's form (JSON or a form).
    assert!(r.body[0] == b'{' || r.body[0] == b'[' || r.body.starts_with(b"api_key="));

    let server = serve(move |_, _| ok()).await;
    let mut config = (f.config)(&server.url);
    config.gzip = Some(false);
    let d = destination(&config);
    d.deliver(tracks(5), Duration::from_secs(20)).await;
    assert!(!server.requests()[0].gzipped);
}

/// Connection refused is retryable: RetryLater once the budget is spent.
pub async fn connection_errors_are_retryable(f: &Fixture) {
    // A port nothing listens on: bind, read the port, drop the listener.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let d = destination(&(f.config)(&url));
    let report = d.deliver(tracks(2), Duration::from_millis(800)).await;
    assert_eq!(report.retry_later().count(), 2, "{report:?}");
    assert!(report.requests >= 2);
}

/// Runs every shared behaviour.
pub async fn shared_behaviour(f: &Fixture) {
    tokio::join!(
        retry_after_is_honoured(f),
        rate_limit_reset_is_honoured(f),
        server_errors_are_retried(f),
        permanent_4xx_is_dead(f),
        auth_failures_pause_instead_of_dead_lettering(f),
        oversize_call_is_not_sent(f),
        budget_exhaustion_gives_retry_later(f),
        long_retry_after_is_handed_back(f),
        gzip_follows_the_api_and_config(f),
        connection_errors_are_retryable(f),
    );
}
