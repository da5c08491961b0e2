//! The deliver stage's settlement, carried out by both hosts (issue 13): a partly delivered
//! message sends only the rest again with the next attempt; real retries end in a dead
//! letter after `MAX_ATTEMPTS`; an invocation's deadline bounds the delivery (an injected
//! clock, not the machine's speed); and dead letters — a file locally, the dead-letter
//! queue on moto — are delivered again by a redrive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{Value, json};
use sfsync_e2e::aws_harness::{AwsStack, quick_destinations};
use sfsync_e2e::local::{CONFIG, Local, org};
use sfsync_e2e::*;
use sfsync_mapping::{Call, Config};
use sfsync_pipeline::backoff::Backoff;
use sfsync_pipeline::deliver::{DeliverPolicy, MAX_ATTEMPTS, decode_delivery};
use sfsync_pipeline::extract::ManualClock;
use sfsync_pipeline::local::{InlineQueue, Progress};
use sfsync_pipeline::message::{CallsMessage, DeadLetter, MESSAGE_VERSION, RecordsMessage};
use sfsync_pipeline::queue::{Queue, SqsQueue};
use sfsync_simulator::Faults;

const RUN_ID: &str = "20260101T000000Z-settle";

/// The queues and state table on moto for one test (the deliver state is built here).
async fn moto() -> AwsStack {
    AwsStack::without_secret("sfsync-settle", 10).await
}

/// The Lambda policy, without its waits: a retried message is visible again at once.
fn quick_lambda_policy() -> DeliverPolicy {
    DeliverPolicy {
        retry_wait: Backoff::fixed(Duration::ZERO),
        ..DeliverPolicy::lambda()
    }
}

/// Contact `i`'s call; `pad` bytes of Description make it that much larger (repetitive
/// text: a queue message compresses it, a Segment batch counts every byte).
fn call(config: &Config, i: usize, pad: usize) -> Call {
    let sync = config
        .sync("contacts")
        .cloned()
        .unwrap_or_else(|| panic!("no sync"));
    sfsync_mapping::map_record(&sync, contact(i, pad)).unwrap_or_else(|e| panic!("{e}"))
}

fn contact(i: usize, pad: usize) -> Value {
    json!({
        "attributes": {"type": "Contact"},
        "Id": format!("003{i:015}"),
        "SystemModstamp": "2026-01-01T00:00:00.000+0000",
        "IsDeleted": false,
        "Email": format!("person{i}@example.com"),
        "LastName": "Settle",
        "Description": "d".repeat(pad),
    })
}

fn calls_message(calls: Vec<Call>, attempt: u32) -> CallsMessage {
    CallsMessage {
        v: MESSAGE_VERSION,
        run_id: RUN_ID.into(),
        destination: "seg".into(),
        attempt,
        paused_since: None,
        calls,
    }
}

/// Puts a message on the queue as the map function would, and receives it as Lambda would.
async fn enqueue_and_receive(aws: &AwsStack, message: &CallsMessage) -> SqsEvent {
    SqsQueue::new(aws.sqs.clone(), aws.delivery_q())
        .send(message.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    receive_event(&aws.sqs, &aws.delivery_q(), 10).await
}

fn message_ids(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| c["messageId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partly_delivered_message_sends_only_the_rest_again_with_the_next_attempt() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(0), Faults::default()).await;
    let mut policy = quick_lambda_policy();
    // The destination's first batch goes through; the second is refused until the budget
    // is spent.
    policy.max_budget = Duration::from_millis(400);
    let state = aws.deliver_state_for(&local.config, policy);
    // 40 calls of 20 KB: two Segment batches (500 KB each at most).
    let calls: Vec<Call> = (0..40).map(|i| call(&local.config, i, 20_000)).collect();
    let sent: HashSet<String> = calls.iter().map(|c| c.message_id.clone()).collect();
    let event = enqueue_and_receive(&aws, &calls_message(calls, 2)).await;
    assert_eq!(event.records.len(), 1);
    local.receiver.script(200, &[], "{}");
    for _ in 0..500 {
        local.receiver.script(503, &[], "unavailable");
    }
    let response = sfsync_deliver::handle(&state, event.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    local.receiver.clear_script();
    assert!(
        failed_ids(&response).is_empty(),
        "part went through: the message is acknowledged, not left"
    );
    ack(&aws.sqs, &aws.delivery_q(), &event, &[]).await;
    let first: Vec<String> = message_ids(&local.delivered());
    assert!(
        !first.is_empty() && first.len() < sent.len(),
        "one batch of two: {}",
        first.len()
    );

    // The rest is back on the queue, once, with the next attempt count.
    let again = receive_event(&aws.sqs, &aws.delivery_q(), 10).await;
    assert_eq!(again.records.len(), 1, "the rest fits one message");
    let message = decode_delivery(again.records[0].body.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(message.attempt, 3, "attempt + 1");
    let rest: HashSet<String> = message.calls.iter().map(|c| c.message_id.clone()).collect();
    let delivered: HashSet<String> = first.iter().cloned().collect();
    assert!(
        rest.is_disjoint(&delivered),
        "a delivered call is sent again"
    );
    assert_eq!(
        rest.union(&delivered).cloned().collect::<HashSet<_>>(),
        sent,
        "a call was lost"
    );
    assert_eq!(queue_depth(&aws.sqs, &aws.delivery_dlq).await.0, 0);

    // The destination is back: the rest is delivered, each call once.
    let response = sfsync_deliver::handle(&state, again.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed_ids(&response).is_empty());
    let all = message_ids(&local.delivered());
    assert_eq!(all.len(), sent.len(), "every call once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), sent);
    // The counters of the run say what happened.
    let runs = sfsync_pipeline::state::StateStore::runs(&aws.store(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = runs
        .iter()
        .find(|r| r.run_id == RUN_ID)
        .unwrap_or_else(|| panic!("no counters: {runs:?}"));
    assert_eq!(run.counts.delivered, 40, "{run}");
    assert_eq!(run.counts.retried, rest.len() as u64, "{run}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_calls_are_dead_lettered_after_the_maximum_attempts_reached_by_real_retries() {
    let local = Local::start(&CONFIG, org(0), Faults::default()).await;
    // Always unavailable.
    for _ in 0..5000 {
        local.receiver.script(503, &[], "unavailable");
    }
    let waits = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let waits = waits.clone();
        Arc::new(move |event| {
            if let Progress::Waiting { .. } = event
                && let Ok(mut w) = waits.lock()
            {
                w.push(());
            }
        })
    };
    let queue = InlineQueue::new(
        Arc::new(local.config.clone()),
        quick_destinations(&local.config),
        local.store(),
        local.dead_letter_path(),
        progress,
    )
    .with_policy(DeliverPolicy {
        max_budget: Duration::from_millis(250),
        retry_wait: Backoff::fixed(Duration::from_millis(1)),
        ..DeliverPolicy::local(Duration::ZERO)
    });
    let records = (0..3).map(|i| contact(i, 10).into()).collect();
    let sent = queue
        .send(
            RecordsMessage {
                v: MESSAGE_VERSION,
                run_id: RUN_ID.into(),
                sync: "contacts".into(),
                records,
            },
            None,
        )
        .await;
    assert!(sent.is_ok(), "dead calls are handled: {sent:?}");
    let dead = local.dead_letters();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for letter in &dead {
        assert!(
            letter
                .reason
                .starts_with(&format!("gave up after {MAX_ATTEMPTS} attempts")),
            "{}",
            letter.reason
        );
    }
    // Attempts 0 … MAX_ATTEMPTS − 2 were handed back; the last one is dead.
    assert_eq!(
        waits.lock().map(|w| w.len()).unwrap_or_default(),
        (MAX_ATTEMPTS - 1) as usize
    );
    let totals = queue.totals("contacts");
    assert_eq!((totals.dead, totals.delivered), (3, 0), "{totals:?}");
    assert_eq!(
        totals.retried,
        3 * u64::from(MAX_ATTEMPTS - 1),
        "{totals:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_invocations_deadline_bounds_the_delivery() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(0), Faults::default()).await;
    let clock = Arc::new(ManualClock::new());
    let policy = DeliverPolicy {
        clock: clock.clone(),
        ..quick_lambda_policy()
    };
    let margin = policy.margin;
    let state = aws.deliver_state_for(&local.config, policy);
    let calls: Vec<Call> = (0..3).map(|i| call(&local.config, i, 10)).collect();
    let event = enqueue_and_receive(&aws, &calls_message(calls, 0)).await;

    // 100 ms left after the margin: too little to start a request.
    let deadline = clock.start() + margin + Duration::from_millis(100);
    let response = sfsync_deliver::handle(&state, event.clone(), Some(deadline))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        local.receiver.received().is_empty(),
        "a request past the deadline"
    );
    assert_eq!(
        failed_ids(&response).len(),
        1,
        "nothing went through: the message stays on the queue"
    );
    assert_eq!(
        queue_depth(&aws.sqs, &aws.delivery_dlq).await.0,
        0,
        "not dead"
    );

    // The next invocation has time: everything goes.
    let deadline = clock.start() + margin + Duration::from_secs(60);
    let response = sfsync_deliver::handle(&state, event.clone(), Some(deadline))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed_ids(&response).is_empty());
    assert_eq!(local.delivered().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_file_is_redriven_and_keeps_only_what_is_still_dead() {
    let local = Local::start(&CONFIG, org(0), Faults::default()).await;
    let path = local.dir.path().join("dead-letters.jsonl");
    let letter = |i: usize, destination: &str| DeadLetter {
        v: MESSAGE_VERSION,
        run_id: RUN_ID.into(),
        destination: destination.into(),
        reason: "HTTP 503 last week".into(),
        call: call(&local.config, i, 10),
    };
    let letters = [letter(1, "seg"), letter(2, "seg"), letter(3, "removed")];
    let text: String = letters
        .iter()
        .map(|l| serde_json::to_string(l).unwrap_or_else(|e| panic!("{e}")) + "\n")
        .collect();
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));

    let outcome = sfsync_pipeline::redrive::redrive_file(
        &local.config,
        &path,
        Duration::from_secs(20),
        Arc::new(|_| {}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.read, 3);
    assert_eq!((outcome.counts.delivered, outcome.counts.dead), (2, 1));
    let delivered = message_ids(&local.delivered());
    assert_eq!(
        delivered,
        vec![
            letters[0].call.message_id.clone(),
            letters[1].call.message_id.clone()
        ]
    );
    // The file keeps the call that is still dead, with its new reason.
    let left = sfsync_pipeline::dead_letter::read_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].call, letters[2].call);
    assert!(
        left[0].reason.contains("not in the config"),
        "{}",
        left[0].reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_on_the_queue_is_delivered_again_once_moved_back() {
    let aws = moto().await;
    let local = Local::start(&CONFIG, org(0), Faults::default()).await;
    let state = aws.deliver_state_for(&local.config, quick_lambda_policy());
    let calls: Vec<Call> = (0..2).map(|i| call(&local.config, i, 10)).collect();
    let sent: HashSet<String> = calls.iter().map(|c| c.message_id.clone()).collect();
    let event = enqueue_and_receive(&aws, &calls_message(calls, 0)).await;
    // A refusal no call can cause, until someone fixes the source.
    local
        .receiver
        .script(404, &[], r#"{"error":"no such source"}"#);
    let response = sfsync_deliver::handle(&state, event.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed_ids(&response).is_empty());
    ack(&aws.sqs, &aws.delivery_q(), &event, &[]).await;
    assert!(local.delivered().is_empty());

    // The redrive of docs/operate.md: the dead-letter queue's bodies moved, as they are, to
    // the delivery queue.
    let dead = receive_event(&aws.sqs, &aws.delivery_dlq, 10).await;
    assert_eq!(dead.records.len(), 2, "one dead letter per call");
    for record in &dead.records {
        let body = record.body.clone().unwrap_or_default();
        let letter: DeadLetter = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
        assert!(letter.reason.contains("404"), "{}", letter.reason);
        send_body(&aws.sqs, &aws.delivery_q(), body).await;
    }
    ack(&aws.sqs, &aws.delivery_dlq, &dead, &[]).await;
    let redriven = receive_event(&aws.sqs, &aws.delivery_q(), 10).await;
    let response = sfsync_deliver::handle(&state, redriven, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(failed_ids(&response).is_empty());
    let delivered: HashSet<String> = message_ids(&local.delivered()).into_iter().collect();
    assert_eq!(delivered, sent);
    assert_eq!(queue_depth(&aws.sqs, &aws.delivery_dlq).await, (0, 0));
}
