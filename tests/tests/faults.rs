//! The fault matrix: every failure sfsync must survive, injected into the whole pipeline.
//! Each test asserts the same three things:
//! - nothing is lost: every live record's current version arrives as
//!   `sfsync_e2e::expected` writes down (not as the mapper computes it), delivered or
//!   dead-lettered with its reason;
//! - duplicates are bounded (none where nothing was retried past a checkpoint);
//! - the state is consistent: the checkpoint never passes a record that did not arrive.
//!
//! Salesforce faults come from the simulator, destination faults from the recording
//! receiver's scripts, SQS partial batch failures from a small SQS-speaking server (moto
//! cannot inject them), DynamoDB conditional conflicts from moto itself.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};
use sfsync_e2e::fixtures::list;
use sfsync_e2e::local::{CONFIG, KeptRecords, Local, fixture, org, repeats};
use sfsync_e2e::*;
use sfsync_pipeline::extract::ExtractSettings;
use sfsync_pipeline::local::{Progress, ProgressFn};
use sfsync_pipeline::message::{Compression, RecordsMessage, decode};
use sfsync_pipeline::queue::{Queue, QueueError, SendError, SqsQueue};
use sfsync_pipeline::report::{RunCounts, RunReport, RunStatus};
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_pipeline::state::{Checkpoint, StateError, StateStore};
use sfsync_salesforce::Cursor;
use sfsync_simulator::Faults;

const FAST: Duration = Duration::from_millis(2);

fn quiet() -> ProgressFn {
    Arc::new(|_| {})
}

fn status_of<'a>(reports: &'a [RunReport], sync: &str) -> &'a RunReport {
    reports
        .iter()
        .find(|r| r.sync == sync)
        .unwrap_or_else(|| panic!("no report for {sync}: {reports:?}"))
}

/// After a run that completed: exactly the expected calls arrived, each once, and the
/// checkpoints cover every record.
async fn assert_all_delivered_once(w: &Local) {
    let want = w.expected_all();
    let ids = w.delivered_ids();
    let got: HashSet<String> = ids.iter().cloned().collect();
    assert!(want.len() > 600, "expected {}", want.len());
    assert_eq!(
        want.difference(&got).count(),
        0,
        "{} calls lost",
        want.difference(&got).count()
    );
    assert_eq!(got, want, "calls nobody expected");
    assert_eq!(repeats(&ids), 0, "calls delivered twice");
    for sync in ["contacts", "accounts"] {
        let covered = w.assert_checkpoint_covered(sync).await;
        assert!(covered > 0, "{sync}: no checkpoint");
    }
}

// ---------------------------------------------------------------------------------------
// Salesforce faults

#[tokio::test(flavor = "multi_thread")]
async fn token_expiry_mid_pagination_refreshes_once_per_expiry_and_loses_nothing() {
    let faults = Faults {
        expire_token_after_calls: Some(2),
        ..Faults::default()
    };
    let w = Local::start(&CONFIG, org(600), faults).await;
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.all_delivered(), "{:?}", outcome.reports);
    for r in &outcome.reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
    }
    let stats = w.sim.stats();
    // A session lasts two calls: every other call of the run needed a new token.
    assert!(
        stats.token_requests * 2 >= stats.api_calls,
        "{} tokens for {} calls",
        stats.token_requests,
        stats.api_calls
    );
    assert!(stats.api_calls >= 6, "{stats:?}");
    assert_all_delivered_once(&w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn salesforce_5xx_on_every_other_call_is_retried_without_loss_or_repeats() {
    let faults = Faults {
        fail_every_nth: Some(2),
        ..Faults::default()
    };
    let w = Local::start(&CONFIG, org(600), faults).await;
    let reports = w.run_with_backoff(FAST, quiet()).await;
    for r in &reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
    }
    // Half of the calls answered 503: the run made twice the calls it needed.
    assert!(w.sim.stats().api_calls >= 12, "{:?}", w.sim.stats());
    assert_all_delivered_once(&w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_burst_longer_than_the_retries_fails_the_run_at_a_safe_checkpoint() {
    let w = Local::start(&CONFIG, org(600), Faults::default()).await;
    // Once the first page of contacts is handed on, Salesforce answers nothing but 503.
    let progress: ProgressFn = {
        let sim = w.sim.clone();
        Arc::new(move |p| {
            if let Progress::Extracted { sync, .. } = p
                && sync == "contacts"
            {
                sim.set_faults(Faults {
                    fail_every_nth: Some(1),
                    ..Faults::default()
                });
            }
        })
    };
    let reports = w.run_with_backoff(FAST, progress).await;
    let contacts = status_of(&reports, "contacts");
    assert_eq!(contacts.status, RunStatus::Failed, "{contacts}");
    let error = contacts.error.clone().unwrap_or_default();
    assert!(
        error.contains("503") || error.contains("SERVER_UNAVAILABLE"),
        "{error}"
    );
    assert_eq!(contacts.counts.extracted, 200, "{contacts}");
    // The checkpoint covers the first page, which arrived, and nothing more.
    let covered = w.assert_checkpoint_covered("contacts").await;
    assert_eq!(covered, 200);
    let first = w.delivered_ids().len();

    // Salesforce recovers: the next run sends the rest, repeating at most the look-back.
    w.sim.set_faults(Faults::default());
    let reports = w.run_with_backoff(FAST, quiet()).await;
    for r in &reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
    }
    let ids = w.delivered_ids();
    let got: HashSet<String> = ids.iter().cloned().collect();
    let want = w.expected_all();
    assert!(
        want.is_subset(&got),
        "{} lost",
        want.difference(&got).count()
    );
    assert!(repeats(&ids) <= first, "{} repeats", repeats(&ids));
    w.assert_checkpoint_covered("contacts").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn query_timeout_splits_the_window_over_rest_or_moves_to_bulk_losing_nothing() {
    // A forced REST sync: the window is halved until each part answers in time.
    let rest = fixture().sync("contacts", "api", "rest").text();
    // Salesforce answers QUERY_TIMEOUT after 2 minutes; here after 50 ms, well inside the
    // client's query timeout (180 s by default), as on a real org.
    let faults = Faults {
        query_timeout_over_rows: Some(250),
        query_timeout_after: Duration::from_millis(50),
        ..Faults::default()
    };
    let w = Local::start(&rest, org(600), faults.clone()).await;
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.all_delivered(), "{:?}", outcome.reports);
    let first_pages = w
        .sim
        .stats()
        .by_path
        .get("GET /services/data/v62.0/query")
        .copied()
        .unwrap_or(0);
    // Unsplit: one query per sync. Each timeout adds two halves.
    assert!(first_pages >= 4, "no split happened: {:?}", w.sim.stats());
    assert_eq!(
        status_of(&outcome.reports, "contacts").api.as_deref(),
        Some("rest")
    );
    assert_all_delivered_once(&w).await;

    // api = auto: even the COUNT() times out, which is what Bulk API 2.0 is for.
    let w = Local::start(&CONFIG, org(600), faults).await;
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.all_delivered(), "{:?}", outcome.reports);
    assert_eq!(
        status_of(&outcome.reports, "contacts").api.as_deref(),
        Some("bulk")
    );
    assert_all_delivered_once(&w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_limit_reached_mid_run_stops_cleanly_and_a_later_run_completes() {
    let faults = Faults {
        // Three describes, a COUNT() and the first page use five; sfsync stops at 80 %.
        daily_limit: Some(6),
        ..Faults::default()
    };
    let w = Local::start(&CONFIG, org(600), faults).await;
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    let contacts = status_of(&outcome.reports, "contacts");
    assert_eq!(contacts.status, RunStatus::ApiLimit, "{contacts}");
    assert!(
        contacts.counts.extracted > 0 && contacts.counts.extracted < 600,
        "stopped mid-run: {contacts}"
    );
    assert!(!outcome.all_delivered());
    let covered = w.assert_checkpoint_covered("contacts").await;
    assert_eq!(covered as u64, contacts.counts.extracted);
    assert!(w.sim.stats().api_calls <= 6, "{:?}", w.sim.stats());
    let checkpoint = w
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|| panic!("no checkpoint"));
    let first = w.delivered_ids();

    // A new day: the limit is lifted and the next run finishes.
    w.sim.set_faults(Faults::default());
    w.sim.reset_stats();
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.all_delivered(), "{:?}", outcome.reports);
    let ids = w.delivered_ids();
    let got: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(got, w.expected_all());
    // Repeats come only from the look-back window before the checkpoint.
    let lookback = chrono::Duration::seconds(w.config.salesforce.lookback_seconds as i64);
    let overlap = {
        let org = w.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")
            .iter()
            .filter_map(|r| Cursor::of_value(r).ok())
            .filter(|c| {
                *c <= checkpoint.cursor && c.modstamp >= checkpoint.cursor.modstamp - lookback
            })
            .count()
    };
    assert!(
        repeats(&ids) <= overlap && repeats(&ids) <= first.len(),
        "{} repeats, look-back overlap {overlap}",
        repeats(&ids)
    );
    for sync in ["contacts", "accounts"] {
        w.assert_checkpoint_covered(sync).await;
    }
}

// ---------------------------------------------------------------------------------------
// Destination faults

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_with_retry_after_is_waited_out_and_nothing_is_sent_twice() {
    let w = Local::start(&CONFIG, org(600), Faults::default()).await;
    for _ in 0..2 {
        w.receiver
            .script(429, &[("retry-after", "1")], r#"{"error":"slow down"}"#);
    }
    let reports = w.run_with_backoff(FAST, quiet()).await;
    for r in &reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
        assert_eq!(r.counts.dead, 0, "{r}");
    }
    let received = w.receiver.received();
    for pair in received.windows(2) {
        if pair[0].status == 429 {
            let waited = pair[1].at.duration_since(pair[0].at);
            assert!(
                waited >= Duration::from_millis(950),
                "Retry-After: 1 not honoured: the next request came after {waited:?}"
            );
        }
    }
    assert_eq!(received.iter().filter(|r| r.status == 429).count(), 2);
    let contacts = status_of(&reports, "contacts");
    assert!(contacts.counts.destination_requests >= 5, "{contacts}");
    assert_all_delivered_once(&w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_5xx_and_timeouts_are_retried_without_loss() {
    let config = fixture().destination("timeout_seconds", 1).text();
    let w = Local::start(&config, org(600), Faults::default()).await;
    w.receiver.script(500, &[], "boom");
    w.receiver.script(502, &[], "<html>bad gateway</html>");
    w.receiver.hang();
    w.receiver.script(503, &[], "");
    w.receiver.script(504, &[], "");
    w.receiver.hang();
    let reports = w.run_with_backoff(FAST, quiet()).await;
    for r in &reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
        assert_eq!(r.counts.dead, 0, "{r}");
    }
    let received = w.receiver.received();
    assert_eq!(
        received.iter().filter(|r| r.status == 0).count(),
        2,
        "two requests timed out"
    );
    assert_eq!(received.iter().filter(|r| r.status >= 500).count(), 4);
    // A timed-out request may have been processed: its calls are the only ones the
    // destination can have seen twice, and each was answered 2xx exactly once.
    assert_all_delivered_once(&w).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_207_partial_success_dead_letters_only_the_rejected_calls() {
    // The fixture's Customer.io Track destination, at the receiver (`cio_url`).
    let config = fixture()
        .to("cio")
        .destination("syncs", list(&["contacts"]))
        .text();
    assert!(config.contains("customerio_track"));
    let w = Local::start(&config, org(600), Faults::default()).await;
    w.receiver.script(
        207,
        &[],
        r#"{"errors":[{"batch_index":0,"reason":"invalid","field":"identifiers","message":"bad id"},{"batch_index":2,"reason":"too_long","field":"attributes","message":"too long"}]}"#,
    );
    let reports = w.run_with_backoff(FAST, quiet()).await;
    let contacts = status_of(&reports, "contacts");
    assert_eq!(contacts.status, RunStatus::Complete, "{contacts}");
    assert_eq!(contacts.counts.dead, 2, "{contacts}");

    // What Customer.io accepted: every entity of a 2xx answer but the two it rejected.
    let received = w.receiver.received();
    let mut accepted: Vec<String> = Vec::new();
    for (i, r) in received.iter().enumerate() {
        assert!((200..300).contains(&r.status), "{}", r.status);
        let batch = r.json()["batch"].as_array().cloned().unwrap_or_default();
        for (j, entity) in batch.iter().enumerate() {
            if i == 0 && (j == 0 || j == 2) {
                continue;
            }
            accepted.push(
                entity["identifiers"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    let rejected: Vec<String> = received[0].json()["batch"]
        .as_array()
        .map(|b| {
            [0, 2]
                .iter()
                .map(|&j| {
                    b[j]["identifiers"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default();
    let dead = w.dead_letters();
    assert_eq!(dead.len(), 2);
    let dead_ids: HashSet<String> = dead
        .iter()
        .map(|d| d.call.source().record_id.clone())
        .collect();
    assert_eq!(dead_ids, rejected.iter().cloned().collect::<HashSet<_>>());
    for d in &dead {
        assert!(d.reason.contains("207"), "{}", d.reason);
        assert_eq!(d.destination, "cio");
    }
    // Nothing lost, and nothing the API accepted or rejected is sent again.
    let want: HashSet<String> = {
        let org = w.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .collect()
    };
    let mut handled: Vec<String> = accepted.clone();
    handled.extend(dead_ids.iter().cloned());
    let handled_set: HashSet<String> = handled.iter().cloned().collect();
    assert_eq!(handled_set, want);
    assert_eq!(repeats(&handled), 0, "a call was sent again");
    // The checkpoint covers every contact: each was delivered or dead-lettered.
    let store = w.store();
    let cp = store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cp.is_some_and(|c| c.cursor.modstamp >= contacts.started_at));
}

// ---------------------------------------------------------------------------------------
// SQS: partial SendMessageBatch failures, from a server that speaks SQS's JSON protocol

/// What the fake SQS does with one entry, given its body and how many times it was offered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Entry {
    Accept,
    /// A failure on SQS's side (`SenderFault: false`): worth retrying.
    Fail,
    /// The entry itself is wrong (`SenderFault: true`): retrying cannot help.
    Reject,
}

type Policy = Arc<dyn Fn(&str, u32) -> Entry + Send + Sync>;

#[derive(Default)]
struct SqsLog {
    /// Each SendMessageBatch request: (QueueUrl, [(Id, body)]).
    requests: Vec<(String, Vec<(String, String)>)>,
    accepted: Vec<String>,
    offered: HashMap<String, u32>,
}

struct FakeSqs {
    url: String,
    log: Arc<Mutex<SqsLog>>,
}

impl FakeSqs {
    async fn start(policy: Policy) -> FakeSqs {
        let log = Arc::new(Mutex::new(SqsLog::default()));
        let app = axum::Router::new()
            .fallback(sqs_json)
            .with_state((log.clone(), policy));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSqs {
            url: format!("http://{addr}"),
            log,
        }
    }

    fn client(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_sdk_sqs::config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    fn queue_url(&self) -> String {
        format!("{}/000000000000/records", self.url)
    }

    fn log<T>(&self, f: impl FnOnce(&SqsLog) -> T) -> T {
        f(&self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `POST /` with `x-amz-target: AmazonSQS.SendMessageBatch` and a JSON body
/// `{QueueUrl, Entries:[{Id, MessageBody, DelaySeconds?}]}`, answered as SQS does.
async fn sqs_json(
    State((log, policy)): State<(Arc<Mutex<SqsLog>>, Policy)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_response = |status: u16, body: Value| {
        let mut r = (
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
            body.to_string(),
        )
            .into_response();
        r.headers_mut().insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        r
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target != "AmazonSQS.SendMessageBatch" {
        return json_response(
            400,
            json!({"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": target}),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            400,
            json!({"__type": "com.amazonaws.sqs#InvalidParameterValue"}),
        );
    };
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    let queue = request["QueueUrl"].as_str().unwrap_or_default().to_string();
    let entries: Vec<(String, String)> = request["Entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["Id"].as_str().unwrap_or_default().to_string(),
                e["MessageBody"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    log.requests.push((queue, entries.clone()));
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for (id, body) in entries {
        let n = {
            let n = log.offered.entry(body.clone()).or_default();
            *n += 1;
            *n
        };
        match policy(&body, n) {
            Entry::Accept => {
                log.accepted.push(body);
                successful.push(json!({
                    "Id": id,
                    "MessageId": format!("m-{}-{}", log.accepted.len(), n),
                    "MD5OfMessageBody": "d41d8cd98f00b204e9800998ecf8427e",
                }));
            }
            Entry::Fail => failed.push(json!({
                "Id": id, "SenderFault": false, "Code": "InternalError",
                "Message": "We encountered an internal error. Please try again.",
            })),
            Entry::Reject => failed.push(json!({
                "Id": id, "SenderFault": true, "Code": "InvalidParameterValue",
                "Message": "One or more parameters are invalid.",
            })),
        }
    }
    json_response(200, json!({"Successful": successful, "Failed": failed}))
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_partial_batch_failures_retry_only_the_failed_entries() {
    let flaky: HashSet<String> = [3, 7, 12, 20].iter().map(|i| format!("body-{i}")).collect();
    let policy: Policy = Arc::new(move |body, n| {
        if n == 1 && flaky.contains(body) {
            Entry::Fail
        } else {
            Entry::Accept
        }
    });
    let sqs = FakeSqs::start(policy).await;
    let queue = SqsQueue::new(sqs.client(), sqs.queue_url()).with_retry(5, FAST);
    let bodies: Vec<String> = (0..25).map(|i| format!("body-{i}")).collect();
    queue
        .send_bodies(bodies.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    sqs.log(|log| {
        // Every body arrived, exactly once.
        let mut accepted = log.accepted.clone();
        accepted.sort();
        let mut want = bodies.clone();
        want.sort();
        assert_eq!(accepted, want);
        // Three batches of ≤ 10, each followed by one retry carrying only its failures.
        let sizes: Vec<Vec<&str>> = log
            .requests
            .iter()
            .map(|(_, entries)| entries.iter().map(|(_, b)| b.as_str()).collect())
            .collect();
        assert_eq!(
            sizes,
            vec![
                (0..10).map(|i| bodies[i].as_str()).collect::<Vec<_>>(),
                vec!["body-3", "body-7"],
                (10..20).map(|i| bodies[i].as_str()).collect::<Vec<_>>(),
                vec!["body-12"],
                (20..25).map(|i| bodies[i].as_str()).collect::<Vec<_>>(),
                vec!["body-20"],
            ]
        );
        assert!(log.requests.iter().all(|(q, _)| q == &sqs.queue_url()));
        // Entry ids are distinct within each request (SQS refuses repeats).
        for (_, entries) in &log.requests {
            let ids: HashSet<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids.len(), entries.len());
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sqs_sender_fault_is_an_error_not_a_retry_loop() {
    let policy: Policy = Arc::new(|body, _| {
        if body == "bad" {
            Entry::Reject
        } else {
            Entry::Accept
        }
    });
    let sqs = FakeSqs::start(policy).await;
    let queue = SqsQueue::new(sqs.client(), sqs.queue_url()).with_retry(5, FAST);
    let err = queue
        .send_bodies(vec!["a".into(), "bad".into(), "c".into()], None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("InvalidParameterValue"), "{err}");
    assert_eq!(
        sqs.log(|l| l.requests.len()),
        1,
        "a sender fault was retried"
    );

    // A failure on SQS's side that never heals ends too, after the configured attempts.
    let policy: Policy = Arc::new(|body, _| {
        if body == "stuck" {
            Entry::Fail
        } else {
            Entry::Accept
        }
    });
    let sqs = FakeSqs::start(policy).await;
    let queue = SqsQueue::new(sqs.client(), sqs.queue_url()).with_retry(4, FAST);
    let err = queue
        .send_bodies(vec!["x".into(), "stuck".into()], None)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("after 4 attempts"), "{err}");
    sqs.log(|l| {
        assert_eq!(l.requests.len(), 4);
        assert_eq!(l.accepted, vec!["x".to_string()], "x was sent once");
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn extract_through_a_flaky_sqs_enqueues_every_record_exactly_once() {
    // A third of the bodies fail the first time they are offered.
    let counter = Arc::new(AtomicU64::new(0));
    let policy: Policy = {
        let counter = counter.clone();
        Arc::new(move |_, n| {
            if n == 1 && counter.fetch_add(1, Ordering::Relaxed) % 3 == 1 {
                Entry::Fail
            } else {
                Entry::Accept
            }
        })
    };
    let sqs = FakeSqs::start(policy).await;
    let w = Local::start(&CONFIG, org(600), Faults::default()).await;
    // Bodies of 2 KiB at gzip level 1 (pinned, not the config default, so the count of
    // bodies does not move with it): many per page, so batches of ten.
    let queue = SqsQueue::new(sqs.client(), sqs.queue_url())
        .with_retry(5, FAST)
        .with_message_limits(2 * 1024, Compression::Gzip(1))
        .with_max_batch_bytes(256 * 1024);
    let store = w.store();
    let settings = ExtractSettings::new("lambda:req-1");
    let report = w.extract_once("contacts", &queue, &store, &settings).await;
    assert_eq!(report.status, RunStatus::Complete, "{report}");

    let (offered, accepted) = sqs.log(|l| {
        let offered: usize = l.requests.iter().map(|(_, e)| e.len()).sum();
        (offered, l.accepted.clone())
    });
    assert!(accepted.len() > 30, "{} bodies", accepted.len());
    assert!(offered > accepted.len(), "no entry failed");
    let mut ids: Vec<String> = Vec::new();
    for body in &accepted {
        let message: RecordsMessage = decode(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message.sync, "contacts");
        ids.extend(message.records.iter().filter_map(|r| r.string_field("Id")));
    }
    let want: HashSet<String> = {
        let org = w.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), want);
    assert_eq!(repeats(&ids), 0, "records enqueued twice");
    assert_eq!(report.counts.messages as usize, accepted.len());
    let cp = store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cp.is_some_and(|c| c.cursor.modstamp == report.started_at));
}

// ---------------------------------------------------------------------------------------
// DynamoDB: conditional checkpoint writes (moto)

fn checkpoint(by: &str, version: u64, seconds: i64) -> Checkpoint {
    let base = chrono::DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    Checkpoint {
        cursor: Cursor {
            modstamp: base + chrono::Duration::seconds(seconds),
            id: format!("003{by}"),
        },
        run_id: format!("run-{by}"),
        updated_at: base,
        version,
        partial: false,
        deletes_from: None,
        bulk: None,
    }
}

async fn moto_store() -> (DynamoStore, DynamoStore) {
    let sdk = aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("sfsync-state");
    state_table(&dynamo, &table).await;
    (
        DynamoStore::new(dynamo.clone(), table.clone()),
        DynamoStore::new(dynamo, table),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_writers_of_one_checkpoint_the_second_conflicts_and_the_first_stays() {
    let (a, b) = moto_store().await;
    assert!(
        a.checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        b.checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    // Both read "no checkpoint" and write version 1.
    let first = checkpoint("a", 1, 10);
    a.put_checkpoint("contacts", 0, &first)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match b
        .put_checkpoint("contacts", 0, &checkpoint("b", 1, 99))
        .await
    {
        Err(StateError::Conflict { sync, expected }) => {
            assert_eq!((sync.as_str(), expected), ("contacts", 0));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        b.checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(first)
    );

    // Racing writers from the same version: exactly one wins, and its checkpoint is stored.
    for version in 1..6u64 {
        let (ca, cb) = (
            checkpoint("a", version + 1, 100),
            checkpoint("b", version + 1, 200),
        );
        let (ra, rb) = tokio::join!(
            a.put_checkpoint("contacts", version, &ca),
            b.put_checkpoint("contacts", version, &cb)
        );
        let stored = a
            .checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        match (ra, rb) {
            (Ok(()), Err(StateError::Conflict { .. })) => assert_eq!(stored, Some(ca)),
            (Err(StateError::Conflict { .. }), Ok(())) => assert_eq!(stored, Some(cb)),
            other => panic!("round {version}: exactly one writer must win: {other:?}"),
        }
    }
    // A stale writer (version 3 long gone) cannot go back in time.
    assert!(matches!(
        b.put_checkpoint("contacts", 3, &checkpoint("b", 4, 1))
            .await,
        Err(StateError::Conflict { expected: 3, .. })
    ));
    assert_eq!(
        a.checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|c| c.version),
        Some(6)
    );
}

/// A state store in which another writer moves the checkpoint just before this run's
/// first checkpoint write.
struct Raced {
    inner: DynamoStore,
    fired: AtomicBool,
    theirs: Checkpoint,
}

impl StateStore for Raced {
    async fn checkpoint(&self, sync: &str) -> Result<Option<Checkpoint>, StateError> {
        self.inner.checkpoint(sync).await
    }
    async fn put_checkpoint(
        &self,
        sync: &str,
        expected: u64,
        next: &Checkpoint,
    ) -> Result<(), StateError> {
        if !self.fired.swap(true, Ordering::SeqCst) {
            let mut theirs = self.theirs.clone();
            theirs.version = expected + 1;
            self.inner.put_checkpoint(sync, expected, &theirs).await?;
        }
        self.inner.put_checkpoint(sync, expected, next).await
    }
    async fn acquire_lease(
        &self,
        sync: &str,
        owner: &str,
        until: chrono::DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.inner.acquire_lease(sync, owner, until).await
    }
    async fn release_lease(&self, sync: &str, owner: &str) -> Result<(), StateError> {
        self.inner.release_lease(sync, owner).await
    }
    async fn put_run(&self, report: &RunReport) -> Result<(), StateError> {
        self.inner.put_run(report).await
    }
    async fn add_counts(
        &self,
        run_id: &str,
        sync: &str,
        counts: &RunCounts,
    ) -> Result<(), StateError> {
        self.inner.add_counts(run_id, sync, counts).await
    }
    async fn runs(&self, limit: usize) -> Result<Vec<RunReport>, StateError> {
        self.inner.runs(limit).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_checkpoint_another_writer_moved_stops_without_overwriting_it() {
    let (store, _) = moto_store().await;
    let theirs = checkpoint("other", 1, 5);
    let raced = Raced {
        inner: store.clone(),
        fired: AtomicBool::new(false),
        theirs: theirs.clone(),
    };
    let w = Local::start(&CONFIG, org(300), Faults::default()).await;
    let queue = KeptRecords::default();
    let report = w
        .extract_once(
            "contacts",
            &queue,
            &raced,
            &ExtractSettings::new("lambda:req-9"),
        )
        .await;
    assert_eq!(report.status, RunStatus::Failed, "{report}");
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("changed by someone else"), "{error}");
    assert_eq!(
        report.counts.extracted, 200,
        "the run stopped at its first checkpoint"
    );
    let stored = store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored.map(|c| (c.run_id, c.cursor)),
        Some((theirs.run_id, theirs.cursor))
    );
    // The lease is released for the next run, and the report is stored.
    store
        .acquire_lease(
            "contacts",
            "next",
            Utc::now() + chrono::Duration::minutes(1),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let runs = store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        runs.iter()
            .any(|r| r.status == RunStatus::Failed && r.sync == "contacts")
    );
    assert!(!queue.messages().is_empty());
}

/// A queue that accepts `allowed` sends, keeping them, then fails every send.
struct FailsAfter {
    kept: KeptRecords,
    allowed: AtomicU64,
}

impl Queue<RecordsMessage> for FailsAfter {
    async fn send(
        &self,
        message: RecordsMessage,
        delay: Option<Duration>,
    ) -> Result<usize, SendError<RecordsMessage>> {
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(QueueError::Downstream("the queue is down".into()).into());
        }
        self.kept.send(message, delay).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_fetched_ahead_never_moves_the_checkpoint_past_what_was_enqueued() {
    let (store, _) = moto_store().await;
    let w = Local::start(&CONFIG, org(700), Faults::default()).await;
    // Two pages go through; the third send fails while the fourth page is being fetched.
    let queue = FailsAfter {
        kept: KeptRecords::default(),
        allowed: AtomicU64::new(2),
    };
    let report = w
        .extract_once(
            "contacts",
            &queue,
            &store,
            &ExtractSettings::new("lambda:req-10"),
        )
        .await;
    assert_eq!(report.status, RunStatus::Failed, "{report}");
    assert!(
        report
            .error
            .clone()
            .unwrap_or_default()
            .contains("the queue is down"),
        "{report}"
    );
    let enqueued: Vec<Value> = queue
        .kept
        .messages()
        .into_iter()
        .flat_map(|message| message.records)
        .map(|r| r.to_value())
        .collect();
    assert_eq!(report.counts.extracted, enqueued.len() as u64);
    assert!(enqueued.len() >= 2, "{}", enqueued.len());
    let last_enqueued = enqueued
        .iter()
        .map(|r| Cursor::of_value(r).unwrap_or_else(|e| panic!("{e}")))
        .max()
        .unwrap_or_else(|| panic!("nothing enqueued"));
    let stored = store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert_eq!(
        stored.cursor, last_enqueued,
        "the checkpoint is the last record enqueued, not the page fetched ahead"
    );
}
