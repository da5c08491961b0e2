//! `bench-aws-economy`: what a sync costs in AWS, from an end-to-end run of the three Lambda
//! handlers against moto server (SQS, DynamoDB, Secrets Manager), the Salesforce simulator
//! and a recording Segment-shaped destination — as `tests/tests/aws.rs` drives them.
//!
//! Every AWS request goes through a recording proxy in front of moto, so SQS requests are
//! counted as they were made, with their payloads (message bodies sent, or received).
//! SQS bills every 64 KiB chunk of a request's payload as one request; the event source
//! mapping's work is modelled as it runs in AWS: one ReceiveMessage of ≤ 10 messages per
//! invocation and one DeleteMessageBatch for what the invocation acknowledged (the empty
//! receives that find a queue drained are left out: an idle poller costs the same for any
//! design).
//!
//! Two runs of the same handlers over the same org: messages as shipped (gzip+base64
//! bodies, the default) and with `[pipeline] compress = false`. The naive design
//! (one record or call per message, batches of 10 for send, receive and delete) is computed
//! from the sizes of the very records and calls that flowed.
//!
//! ```text
//! bench-aws-economy [--contacts N] [--accounts N] [--relations N]
//! ```
//! Needs moto server: `SFSYNC_MOTO_URL`, or `.venv/bin/moto_server` (started for the run).
//! Prints a JSON line per run (prefixed `bench-aws-economy `) and a summary on stderr.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use aws_lambda_events::event::sqs::SqsEvent;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sfsync_deliver::DeliverState;
use sfsync_e2e::{REGION, Receiver, moto_url, queue_with_dlq, state_table, unique};
use sfsync_extract::{ExtractInput, ExtractState};
use sfsync_map::MapState;
use sfsync_pipeline::aws::FunctionEnv;
use sfsync_pipeline::message::{CallsMessage, RecordsMessage, decode};
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};

/// SQS bills each 64 KiB chunk of a payload as one request.
const CHUNK: usize = 64 * 1024;
/// Segment's batch limits (shared/destinations/src/segment.rs).
const SEGMENT_MAX_BATCH_BYTES: usize = 500_000;
const SEGMENT_MAX_CALLS: usize = 2500;
/// `{"batch":[` … `]}`
const SEGMENT_ENVELOPE: usize = 12;

const CONFIG: &str = r#"
[salesforce]
login_url = "${secret:sf_url}"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"
page_size = 2000

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "MiddleName", "LastName", "Suffix", "Title", "Phone", "CreatedDate", "MailingAddress", "Account.Name"]
deletes = true

[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name", "Industry", "Phone", "Website", "Description"]
deletes = true

[[syncs]]
name = "account_contacts"
object = "AccountContactRelation"
kind = "relationships"
user_id = "ContactId"
group_id = "AccountId"
object_type_id = "1"
fields = ["IsDirect", "IsActive", "Roles", "StartDate"]
deletes = true

[[destinations]]
name = "seg"
type = "segment"
endpoint = "${secret:receiver_url}"
write_key = "${secret:seg_key}"
"#;

fn billed(payload: usize) -> u64 {
    payload.div_ceil(CHUNK).max(1) as u64
}

// ---------------------------------------------------------------------------------------
// The recording proxy in front of moto.

#[derive(Debug, Clone)]
enum SqsCall {
    SendBatch { payload: usize },
    Send { payload: usize },
    Receive { messages: usize, payload: usize },
    DeleteBatch,
    Delete,
    Other,
}

#[derive(Default)]
struct Log {
    sqs: Vec<SqsCall>,
    /// Every AWS request by `X-Amz-Target` (service.Operation).
    by_target: BTreeMap<String, u64>,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    log: Mutex<Log>,
}

impl Proxy {
    async fn start(upstream: String) -> Result<(Arc<Proxy>, String)> {
        let proxy = Arc::new(Proxy {
            upstream,
            client: reqwest::Client::builder().no_proxy().build()?,
            log: Mutex::new(Log::default()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((proxy, url))
    }

    fn take(&self) -> Log {
        self.log
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    fn record(&self, target: &str, request: &[u8], response: &[u8]) {
        let Ok(mut log) = self.log.lock() else { return };
        *log.by_target.entry(target.to_string()).or_default() += 1;
        let Some(op) = target.strip_prefix("AmazonSQS.") else {
            return;
        };
        let body_len = |v: &Value, key: &str| v[key].as_str().map_or(0, str::len);
        let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
        let call = match op {
            "SendMessageBatch" => {
                let v = parse(request);
                let payload = v["Entries"]
                    .as_array()
                    .map(|a| a.iter().map(|e| body_len(e, "MessageBody")).sum())
                    .unwrap_or(0);
                SqsCall::SendBatch { payload }
            }
            "SendMessage" => SqsCall::Send {
                payload: body_len(&parse(request), "MessageBody"),
            },
            "ReceiveMessage" => {
                let v = parse(response);
                let messages = v["Messages"].as_array().cloned().unwrap_or_default();
                SqsCall::Receive {
                    messages: messages.len(),
                    payload: messages.iter().map(|m| body_len(m, "Body")).sum(),
                }
            }
            "DeleteMessageBatch" => SqsCall::DeleteBatch,
            "DeleteMessage" => SqsCall::Delete,
            _ => SqsCall::Other,
        };
        log.sqs.push(call);
    }
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = proxy
        .client
        .request(method, format!("{}{path}", proxy.upstream));
    for (name, value) in &headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            request = request.header(name.clone(), value.clone());
        }
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(no X-Amz-Target)")
        .to_string();
    let upstream = match request.body(body.clone()).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = upstream.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        let skip = [
            axum::http::header::CONTENT_LENGTH,
            axum::http::header::TRANSFER_ENCODING,
            axum::http::header::CONNECTION,
        ];
        if !skip.contains(name) {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    proxy.record(&target, &body, &bytes);
    let mut response = (status, bytes).into_response();
    response.headers_mut().extend(out_headers);
    response
}

// ---------------------------------------------------------------------------------------
// One run of the pipeline.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The shipped handlers: gzip+base64 message bodies.
    Shipped,
    /// The same handlers with `[pipeline] compress = false`.
    Uncompressed,
}

/// Sizes of what flowed, for the naive design's bill.
#[derive(Default)]
struct Flow {
    record_sizes: Vec<usize>,
    call_sizes: Vec<usize>,
    records_messages: u64,
    calls_messages: u64,
}

struct Run {
    mode: Mode,
    records: u64,
    flow: Flow,
    log: Log,
    map_invocations: u64,
    deliver_invocations: u64,
    salesforce: Value,
    destination: Value,
    seconds: f64,
}

async fn sdk_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await
}

async fn run(
    mode: Mode,
    sim: &sfsync_simulator::SimulatorHandle,
    proxy: &Proxy,
    sdk: &aws_config::SdkConfig,
) -> Result<Run> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let name = unique("bench");
    let (records_q, _) = queue_with_dlq(&sqs, &format!("{name}-records"), 5, 300).await;
    let (delivery_q, delivery_dlq) =
        queue_with_dlq(&sqs, &format!("{name}-delivery"), 5, 300).await;
    let table = format!("{name}-state");
    state_table(&aws_sdk_dynamodb::Client::new(sdk), &table).await;
    let receiver = Receiver::start().await;
    let creds = Credentials::demo();
    let secret = json!({
        "sf_url": sim.url(),
        "sf_client_id": creds.client_id,
        "sf_client_secret": creds.client_secret,
        "receiver_url": receiver.url,
        "seg_key": "bench-write-key",
        "sfsync_config": match mode {
            Mode::Shipped => CONFIG.to_string(),
            Mode::Uncompressed => format!("{CONFIG}\n[pipeline]\ncompress = false\n"),
        },
    });
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(&name)
        .secret_string(secret.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)))?;
    let env = FunctionEnv {
        secret_id: name.clone(),
        state_table: table,
        records_queue_url: Some(records_q.clone()),
        delivery_queue_url: Some(delivery_q.clone()),
        dead_letter_queue_url: Some(delivery_dlq),
    };
    let stats_before = sim.stats();
    proxy.take();
    let started = Instant::now();

    // Extract: one scheduled invocation.
    let extract = ExtractState::new(sdk, &env).await?;
    let records: u64 = sfsync_extract::handle(&extract, ExtractInput::default(), "bench", None)
        .await
        .map_err(|e| anyhow!("extract: {e}"))?
        .reports
        .iter()
        .map(|r| r.counts.extracted)
        .sum();

    // Map: one invocation per receive of ≤ 10 messages, as the event source mapping does.
    let mut flow = Flow::default();
    let map = MapState::new(sdk, &env).await?;
    let mut map_invocations = 0;
    loop {
        let event = sfsync_e2e::receive_event(&sqs, &records_q, 10).await;
        if event.records.is_empty() {
            break;
        }
        map_invocations += 1;
        for m in &event.records {
            let message: RecordsMessage = decode(m.body.as_deref().unwrap_or_default())?;
            flow.records_messages += 1;
            for r in &message.records {
                flow.record_sizes.push(serde_json::to_vec(r)?.len());
            }
        }
        let failed: Vec<String> = sfsync_map::handle(&map, event.clone())
            .await?
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        if !failed.is_empty() {
            return Err(anyhow!("map failures: {failed:?}"));
        }
        delete_batch(&sqs, &records_q, &event).await?;
    }

    // Deliver.
    let deliver = DeliverState::new(sdk, &env).await?;
    let mut deliver_invocations = 0;
    loop {
        let event = sfsync_e2e::receive_event(&sqs, &delivery_q, 10).await;
        if event.records.is_empty() {
            break;
        }
        deliver_invocations += 1;
        for m in &event.records {
            let message: CallsMessage = decode(m.body.as_deref().unwrap_or_default())?;
            flow.calls_messages += 1;
            for c in &message.calls {
                flow.call_sizes.push(serde_json::to_vec(c)?.len());
            }
        }
        let response = sfsync_deliver::handle(&deliver, event.clone(), None).await?;
        if !response.batch_item_failures.is_empty() {
            return Err(anyhow!("deliver failures"));
        }
        delete_batch(&sqs, &delivery_q, &event).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let log = proxy.take();

    let stats = sim.stats();
    let by_path: BTreeMap<&String, u64> = stats
        .by_path
        .iter()
        .map(|(path, n)| {
            let before = stats_before.by_path.get(path).copied().unwrap_or(0);
            (path, n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let salesforce = json!({
        "api_calls": stats.api_calls - stats_before.api_calls,
        "query_calls": stats.query_calls - stats_before.query_calls,
        "token_requests": stats.token_requests - stats_before.token_requests,
        "bulk_jobs": stats.bulk_jobs - stats_before.bulk_jobs,
        "by_path": by_path,
    });
    let received = receiver.received();
    let ok: Vec<_> = received.iter().filter(|r| r.status < 300).collect();
    let calls: usize = ok
        .iter()
        .map(|r| r.json()["batch"].as_array().map_or(0, Vec::len))
        .sum();
    let body_bytes: usize = ok.iter().map(|r| r.body.len()).sum();
    let items_bytes = body_bytes.saturating_sub(SEGMENT_ENVELOPE * ok.len());
    let minimum = items_bytes
        .div_ceil(SEGMENT_MAX_BATCH_BYTES - SEGMENT_ENVELOPE)
        .max(calls.div_ceil(SEGMENT_MAX_CALLS));
    let destination = json!({
        "requests": received.len(),
        "ok_requests": ok.len(),
        "calls": calls,
        "uncompressed_body_bytes": body_bytes,
        "minimum_requests": minimum,
    });
    Ok(Run {
        mode,
        records,
        flow,
        log,
        map_invocations,
        deliver_invocations,
        salesforce,
        destination,
        seconds,
    })
}

/// The event source mapping's acknowledgement: one DeleteMessageBatch per invocation.
async fn delete_batch(sqs: &aws_sdk_sqs::Client, queue: &str, event: &SqsEvent) -> Result<()> {
    let entries = event
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(r.receipt_handle.clone().unwrap_or_default())
                .build()
                .map_err(|e| anyhow!("{e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = sqs
        .delete_message_batch()
        .queue_url(queue)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    if !out.failed().is_empty() {
        return Err(anyhow!("delete failed for {} entries", out.failed().len()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The bill.

/// SQS billed requests of the naive design for items of these sizes: one item per message,
/// sent, received and deleted in batches of 10.
fn naive_sqs(sizes: &[usize]) -> u64 {
    sizes
        .chunks(10)
        .map(|batch| 2 * billed(batch.iter().sum()) + 1)
        .sum()
}

fn summary(run: &Run) -> Value {
    // Per operation: (requests made, requests billed).
    let mut sqs = BTreeMap::<&str, (u64, u64)>::new();
    for call in &run.log.sqs {
        let (op, billed_requests) = match call {
            SqsCall::SendBatch { payload } => ("SendMessageBatch", billed(*payload)),
            SqsCall::Send { payload } => ("SendMessage", billed(*payload)),
            // Finding a queue drained: an idle poller's cost, the same for any design.
            SqsCall::Receive { messages: 0, .. } => ("ReceiveMessage (empty, not counted)", 0),
            SqsCall::Receive { payload, .. } => ("ReceiveMessage", billed(*payload)),
            SqsCall::DeleteBatch => ("DeleteMessageBatch", 1),
            SqsCall::Delete => ("DeleteMessage", 1),
            SqsCall::Other => ("other", 1),
        };
        let entry = sqs.entry(op).or_default();
        entry.0 += 1;
        entry.1 += billed_requests;
    }
    let ours: u64 = sqs.values().map(|(_, b)| *b).sum();
    let sqs: BTreeMap<&str, Value> = sqs
        .into_iter()
        .map(|(op, (requests, billed))| (op, json!({"requests": requests, "billed": billed})))
        .collect();
    let naive = naive_sqs(&run.flow.record_sizes) + naive_sqs(&run.flow.call_sizes);
    let records = run.records.max(1) as f64;
    let per_million = |x: u64| (x as f64 * 1_000_000.0 / records).round();
    let per_10k = |x: u64| (x as f64 * 10_000.0 / records * 100.0).round() / 100.0;
    let invocations = 1 + run.map_invocations + run.deliver_invocations;
    let naive_invocations =
        1 + run.flow.record_sizes.len().div_ceil(10) + run.flow.call_sizes.len().div_ceil(10);
    let sf_calls = run.salesforce["api_calls"].as_u64().unwrap_or(0);
    let sf_queries = run.salesforce["query_calls"].as_u64().unwrap_or(0);
    let dest_requests = run.destination["ok_requests"].as_u64().unwrap_or(0);
    let dest_min = run.destination["minimum_requests"].as_u64().unwrap_or(0);
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    json!({
        "mode": format!("{:?}", run.mode),
        "records": run.records,
        "seconds": (run.seconds * 100.0).round() / 100.0,
        "records_messages": run.flow.records_messages,
        "calls_messages": run.flow.calls_messages,
        "mean_record_bytes": mean(&run.flow.record_sizes).round(),
        "mean_call_bytes": mean(&run.flow.call_sizes).round(),
        "sqs_requests": sqs,
        "sqs_billed": ours,
        "sqs_billed_per_10k": per_10k(ours),
        "sqs_billed_per_million": per_million(ours),
        "naive_sqs_billed_per_million": per_million(naive),
        "naive_over_ours": (naive as f64 / ours.max(1) as f64 * 10.0).round() / 10.0,
        "lambda_invocations": {"extract": 1, "map": run.map_invocations, "deliver": run.deliver_invocations},
        "lambda_invocations_per_10k": per_10k(invocations),
        "naive_lambda_invocations_per_10k": per_10k(naive_invocations as u64),
        "salesforce": run.salesforce,
        "salesforce_api_calls_per_10k": per_10k(sf_calls),
        "salesforce_query_calls_per_10k": per_10k(sf_queries),
        "destination": run.destination,
        "destination_requests_per_10k": per_10k(dest_requests),
        "destination_over_minimum": (dest_requests as f64 / dest_min.max(1) as f64 * 1000.0).round() / 1000.0,
        "aws_requests_by_target": run.log.by_target,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let (mut contacts, mut accounts, mut relations) = (10_000usize, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value =
            || -> Result<usize> { Ok(args.next().context("a number")?.replace('_', "").parse()?) };
        match arg.as_str() {
            "--contacts" => contacts = value()?,
            "--accounts" => accounts = Some(value()?),
            "--relations" => relations = Some(value()?),
            other => return Err(anyhow!("unknown argument {other:?}")),
        }
    }
    let spec = OrgSpec {
        contacts,
        accounts: accounts.unwrap_or(contacts / 10),
        account_contact_relations: relations.unwrap_or(contacts / 2),
        anchor: chrono::Utc::now() - chrono::Duration::seconds(120),
        ..OrgSpec::with_contacts(contacts)
    };
    eprintln!(
        "org: {} contacts, {} accounts, {} account-contact relations",
        spec.contacts, spec.accounts, spec.account_contact_relations
    );
    let sim = Simulator::start(Org::generate(&spec), Credentials::demo(), Faults::default())
        .await
        .context("simulator")?;
    let moto = tokio::task::spawn_blocking(moto_url).await?;
    let (proxy, proxy_url) = Proxy::start(moto).await?;
    let sdk = sdk_for(&proxy_url).await;

    let mut summaries = Vec::new();
    for mode in [Mode::Shipped, Mode::Uncompressed] {
        let run = run(mode, &sim, &proxy, &sdk).await?;
        let s = summary(&run);
        // Prefixed: the handlers print CloudWatch metric lines (JSON) to stdout too.
        println!("bench-aws-economy {s}");
        summaries.push(s);
    }
    let (on, off) = (&summaries[0], &summaries[1]);
    eprintln!("\n== per 10,000 records (compression on | off)");
    for key in [
        "salesforce_api_calls_per_10k",
        "salesforce_query_calls_per_10k",
        "sqs_billed_per_10k",
        "lambda_invocations_per_10k",
        "naive_lambda_invocations_per_10k",
        "destination_requests_per_10k",
        "destination_over_minimum",
    ] {
        eprintln!("{key:<36} {:>10} | {:>10}", on[key], off[key]);
    }
    eprintln!("\n== SQS billed requests per million records");
    eprintln!(
        "ours: {} (compression on), {} (off); naive: {}; naive/ours: {}× (on), {}× (off)",
        on["sqs_billed_per_million"],
        off["sqs_billed_per_million"],
        on["naive_sqs_billed_per_million"],
        on["naive_over_ours"],
        off["naive_over_ours"]
    );
    sim.shutdown().await;
    Ok(())
}
