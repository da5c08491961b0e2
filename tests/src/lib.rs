//! Harness for sfsync's end-to-end tests: moto server (AWS), a recording destination server,
//! and Lambda event shapes built from what moto's SQS really returns.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub mod aws_harness;
pub mod expected;
pub mod fixtures;
pub mod lineage;
pub mod local;
pub mod profiles;

pub const REGION: &str = "us-east-1";

/// The workspace root (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

struct MotoProcess {
    url: String,
    _child: Option<ChildGuard>,
}

struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static MOTO: OnceLock<MotoProcess> = OnceLock::new();

/// The moto server for this test process: `SFSYNC_MOTO_URL` (set by `scripts/test`), or one
/// started from `.venv/bin/moto_server` on a free port.
pub fn moto_url() -> String {
    MOTO.get_or_init(|| {
        if let Ok(url) = std::env::var("SFSYNC_MOTO_URL") {
            return MotoProcess { url, _child: None };
        }
        let bin = workspace_root().join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "moto server is not installed at {}: run ./scripts/test, which installs it",
            bin.display()
        );
        let port = free_port();
        // The server is started by a small Python keeper that stops it when its stdin
        // closes, i.e. when this test process exits however it exits: a static is never
        // dropped, so a plain child would outlive every test run.
        let python = bin.with_file_name("python");
        let keeper = "import subprocess, sys\n\
p = subprocess.Popen([sys.argv[1], '-H', '127.0.0.1', '-p', sys.argv[2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
sys.stdin.read()\n\
p.kill()\n";
        let child = Command::new(&python)
            .args(["-c", keeper])
            .arg(&bin)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{port}");
        wait_for_tcp(port, Duration::from_secs(30));
        MotoProcess {
            url,
            _child: Some(ChildGuard(child)),
        }
    })
    .url
    .clone()
}

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test; returns its URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Waits until something accepts connections on the port (a readiness check, not a sleep
/// for synchronisation: it returns as soon as the server is up).
fn wait_for_tcp(port: u16, limit: Duration) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < limit,
            "nothing listens on port {port} after {limit:?}"
        );
        std::thread::yield_now();
    }
}

/// An SDK config pointing at moto, with dummy credentials.
pub async fn aws() -> aws_config::SdkConfig {
    let url = moto_url();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

/// A name no other test uses, for queues, tables and secrets on the shared moto server.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid_like()[..12])
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:04x}{:08x}", t, n, std::process::id())
        .chars()
        .rev()
        .collect()
}

/// A queue with its own dead-letter queue (redrive after `max_receive`), as the template
/// makes them. Returns (queue url, dlq url).
pub async fn queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    max_receive: u32,
    visibility: i32,
) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create dlq: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        });
    let dlq_url = dlq.queue_url().unwrap_or_default().to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        })
        .unwrap_or_default();
    let policy = json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive}).to_string();
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.to_string(),
        )
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create queue: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        });
    (q.queue_url().unwrap_or_default().to_string(), dlq_url)
}

pub async fn plain_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create queue: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })
        .queue_url()
        .unwrap_or_default()
        .to_string()
}

/// The state table as the template defines it (pk/sk strings, on demand).
pub async fn state_table(dynamo: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create table: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        });
}

/// Sends one message with `body` to the queue, as another producer (or a redrive) would.
pub async fn send_body(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: impl Into<String>) {
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("send: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)));
}

/// Receives up to `max` messages (one ReceiveMessage of ≤ 10, no long polling) and returns
/// them as the SQS event Lambda would deliver, built from the real receive result.
pub async fn receive_event(sqs: &aws_sdk_sqs::Client, queue_url: &str, max: i32) -> SqsEvent {
    let out = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max.clamp(1, 10))
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap_or_else(|e| panic!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)));
    let records: Vec<Value> = out
        .messages()
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{REGION}:123456789012:{}", queue_url.rsplit('/').next().unwrap_or("")),
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
        .unwrap_or_else(|e| panic!("not an SQS event: {e}"))
}

/// The message ids a handler reported as failed (to stay on the queue).
pub fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Deletes what a handler acknowledged (everything but the reported failures), as the
/// Lambda event source mapping does after the invocation.
pub async fn ack(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    event: &SqsEvent,
    failures: &[String],
) {
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if failures.contains(&id) {
            continue;
        }
        if let Some(receipt) = &record.receipt_handle {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(&e))
                });
        }
    }
}

pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "attributes: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        });
    let get = |a: A| {
        out.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        get(A::ApproximateNumberOfMessages),
        get(A::ApproximateNumberOfMessagesNotVisible),
    )
}

/// The fields of a record as the simulator's `update` takes them: `v`'s members (none when
/// `v` is not an object).
pub fn record_fields(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// One request a `Receiver` got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body, gunzipped when it was gzip-encoded.
    pub body: Vec<u8>,
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON: {e}"))
    }
}

/// The scripted status of a request that gets no answer.
const HANG: u16 = 0;

/// One scripted answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, String);

/// Says, from what was recorded so far, whether the next request must wait (see
/// [`Receiver::hold_when`]).
type HoldWhen = Arc<dyn Fn(&[Received]) -> bool + Send + Sync>;

/// What the receiver answers: scripted responses first, then 200 `{}`.
#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    script: std::collections::VecDeque<Answer>,
    hold_when: Option<HoldWhen>,
    /// Woken whenever a request is recorded and when held requests are released.
    changed: Arc<tokio::sync::Notify>,
}

impl ReceiverState {
    fn holds(&self) -> bool {
        self.hold_when.as_ref().is_some_and(|h| h(&self.received))
    }
}

/// A destination-shaped HTTP server that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        Receiver {
            url: serve(app).await,
            state,
        }
    }

    /// The next requests get these answers, in order.
    pub fn script(&self, status: u16, headers: &[(&str, &str)], body: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.script.push_back((
                status,
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body.to_string(),
            ));
        }
    }

    /// The next request gets no answer at all: the client times out. It is recorded with
    /// status 0.
    pub fn hang(&self) {
        self.script(HANG, &[], "");
    }

    /// Forgets the answers not yet used: 200 from now on.
    pub fn clear_script(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.script.clear();
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// From the moment `hold` is true of the requests recorded so far, every new request
    /// waits, unanswered and unrecorded, until [`Receiver::release`]: the sender makes no
    /// progress past that point, however fast the machine is.
    pub fn hold_when(&self, hold: impl Fn(&[Received]) -> bool + Send + Sync + 'static) {
        if let Ok(mut s) = self.state.lock() {
            s.hold_when = Some(Arc::new(hold));
            s.changed.notify_waiters();
        }
    }

    /// Ends the hold. The requests it held are dropped unrecorded (answered 503): their
    /// sender is expected to be gone (a test killed it) and sends them again.
    pub fn release(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.hold_when = None;
            s.changed.notify_waiters();
        }
    }

    /// Waits, without polling, until `done` is true of the requests recorded so far.
    pub async fn wait_until(&self, done: impl Fn(&[Received]) -> bool) {
        loop {
            let Ok(changed) = self.state.lock().map(|s| s.changed.clone()) else {
                return;
            };
            let notified = changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a request recorded in between still wakes us.
            notified.as_mut().enable();
            if self.state.lock().map(|s| done(&s.received)).unwrap_or(true) {
                return;
            }
            notified.await;
        }
    }
}

async fn record(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        if flate2_read(&body, &mut out).is_err() {
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let mut held = false;
    loop {
        let Ok(changed) = state.lock().map(|s| s.changed.clone()) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match state.lock().map(|s| s.holds()) {
            Ok(true) => held = true,
            Ok(false) if held => {
                // Released: the sender of a held request is gone (see `Receiver::release`).
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            Ok(false) => break,
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
        notified.await;
    }
    let scripted = {
        let Ok(mut s) = state.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let scripted = s.script.pop_front();
        s.received.push(Received {
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers,
            body,
            at: Instant::now(),
            status: scripted.as_ref().map_or(200, |(status, _, _)| *status),
        });
        s.changed.notify_waiters();
        scripted
    };
    if scripted
        .as_ref()
        .is_some_and(|(status, _, _)| *status == HANG)
    {
        // Never answers; the task ends when the client gives up and closes the connection.
        std::future::pending::<()>().await;
    }
    match scripted {
        Some((status, hdrs, body)) => {
            let mut response =
                (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
            for (k, v) in hdrs {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::try_from(k),
                    axum::http::HeaderValue::try_from(v),
                ) {
                    response.headers_mut().insert(k, v);
                }
            }
            response
        }
        None => (StatusCode::OK, "{}").into_response(),
    }
}

fn flate2_read(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    flate2::read::GzDecoder::new(input).read_to_end(out)
}
