//! The three Lambda handlers against moto server (SQS, DynamoDB, Secrets Manager) and the
//! Salesforce simulator, with real Lambda event shapes built from what moto's SQS returned.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use sfsync_deliver::DeliverState;
use sfsync_e2e::aws_harness::AwsStack;
use sfsync_e2e::fixtures::{Fixture, secrets};
use sfsync_e2e::local::org;
use sfsync_e2e::*;
use sfsync_extract::ExtractInput;
use sfsync_mapping::{Config, map_record};
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_simulator::{Credentials, Faults, Simulator, SimulatorHandle};

/// The shared end-to-end config (`tests/fixtures/sfsync.toml`): Contacts (with deletes) and
/// Accounts to the receiver.
static CONFIG: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sfsync_e2e::fixtures::config(&["contacts", "accounts"]));

struct World {
    aws: AwsStack,
    store: DynamoStore,
    sim: SimulatorHandle,
    receiver: Receiver,
    config: Config,
}

async fn world(contacts: usize, max_receive: u32) -> World {
    world_with(contacts, max_receive, &CONFIG, Faults::default()).await
}

/// A world whose functions run `config` (the fixture's references, see
/// `sfsync_e2e::fixtures::secrets`) against a simulator with `faults`.
async fn world_with(contacts: usize, max_receive: u32, config: &str, faults: Faults) -> World {
    let sim = Simulator::start(org(contacts), Credentials::demo(), faults)
        .await
        .unwrap_or_else(|e| panic!("simulator: {e}"));
    let receiver = Receiver::start().await;
    let mut secret = secrets(&sim.url(), &receiver.url);
    secret["sfsync_config"] = json!(config);
    let aws = AwsStack::create("sfsync", max_receive, &secret).await;
    World {
        store: aws.store(),
        aws,
        sim,
        receiver,
        config: Config::parse(config).unwrap_or_else(|e| panic!("{e}")),
    }
}

impl World {
    async fn extract(
        &self,
        input: Value,
    ) -> Result<sfsync_extract::ExtractOutput, sfsync_extract::ExtractFailure> {
        let state = self.aws.extract_state().await;
        let input: ExtractInput = serde_json::from_value(input).unwrap_or_else(|e| panic!("{e}"));
        sfsync_extract::handle(&state, input, "req-1", None).await
    }

    /// Extracts the Accounts and maps them: their calls messages wait on the delivery queue.
    async fn extract_and_map_accounts(&self) {
        self.extract(json!({"syncs": ["accounts"]}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failed = self.aws.map_all().await;
        assert!(failed.is_empty(), "map failures: {failed:?}");
    }

    /// Runs map then deliver over everything visible in the queues, as the event source
    /// mappings would; returns the failures each reported.
    async fn pump(&self, deliver: &DeliverState) -> (Vec<String>, Vec<String>) {
        (
            self.aws.map_all().await,
            self.aws.deliver_all(deliver).await,
        )
    }

    /// Every call the destination accepted (2xx answers only), by messageId.
    fn delivered(&self) -> Vec<Value> {
        let received = self.receiver.received();
        received
            .iter()
            .filter(|r| r.path.ends_with("/batch") && r.status < 300)
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The message ids of the delivered calls that carry the current version of every
    /// live record of a sync, as `sfsync_e2e::expected` writes down they must arrive (not
    /// computed by the mapper); a record no call carries counts as `missing …`.
    fn expected_ids(&self, sync: &str, object: &str) -> HashSet<String> {
        let calls = self.delivered();
        sfsync_e2e::expected::expected_ids(&self.config, sync, object, &self.sim, &calls)
    }
}

fn ids(calls: &[Value]) -> HashSet<String> {
    calls
        .iter()
        .filter_map(|c| c["messageId"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_reaches_the_destination_full_then_incremental() {
    let w = world(700, 3).await;
    let out = w
        .extract(json!({"scheduledTime": "2026-11-28T12:00:00Z"}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.reports.len(), 2);
    for r in &out.reports {
        assert_eq!(
            r.status,
            sfsync_pipeline::report::RunStatus::Complete,
            "{r}"
        );
    }
    let contacts = out
        .reports
        .iter()
        .find(|r| r.sync == "contacts")
        .map(|r| r.counts.extracted);
    assert!(contacts >= Some(700), "{contacts:?}");

    let deliver = w.aws.deliver_state().await;
    let (mf, df) = w.pump(&deliver).await;
    assert!(mf.is_empty() && df.is_empty(), "failures: {mf:?} {df:?}");
    let delivered = ids(&w.delivered());
    let want_contacts = w.expected_ids("contacts", "Contact");
    let want_accounts = w.expected_ids("accounts", "Account");
    assert!(want_contacts.len() >= 690);
    assert!(
        want_contacts.is_subset(&delivered),
        "missing contacts: {}",
        want_contacts.difference(&delivered).count()
    );
    assert!(want_accounts.is_subset(&delivered), "missing accounts");

    // The checkpoint is in DynamoDB and at the run's start.
    let cp = w
        .store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cp.is_some_and(|c| c.cursor.modstamp <= chrono::Utc::now()));
    // Run reports carry what map and deliver added.
    let runs = w.store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    let contacts_run = runs
        .iter()
        .find(|r| r.sync == "contacts" && r.run_id == out.run_id)
        .unwrap_or_else(|| panic!("no run report"));
    assert!(contacts_run.counts.mapped >= 690, "{contacts_run}");
    assert!(contacts_run.counts.delivered >= 690, "{contacts_run}");

    // Someone edits 10 contacts and deletes 2: the next run sends exactly their new versions
    // (plus whatever falls inside the look-back overlap, harmlessly deduplicated).
    let (touched, deleted) = {
        let org = w.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let touched = org.touch_random("Contact", 10, 99);
        let victims: Vec<String> = org
            .records("Contact")
            .iter()
            .filter_map(|r| r["Id"].as_str().map(str::to_string))
            .take(2)
            .collect();
        for v in &victims {
            assert!(org.soft_delete("Contact", v));
        }
        (touched, victims)
    };
    let before = w.delivered().len();
    let out2 = w.extract(json!({})).await.unwrap_or_else(|e| panic!("{e}"));
    let second = out2
        .reports
        .iter()
        .find(|r| r.sync == "contacts")
        .unwrap_or_else(|| panic!("no report"));
    assert!(
        second.counts.extracted >= 12 && second.counts.extracted < 700,
        "incremental: {second}"
    );
    w.pump(&deliver).await;
    let new_calls: Vec<Value> = w.delivered().split_off(before);
    let new_users: HashSet<&str> = new_calls
        .iter()
        .filter_map(|c| c["userId"].as_str())
        .collect();
    for id in &touched {
        assert!(
            new_users.contains(id.as_str()),
            "edited contact {id} not re-sent"
        );
    }
    for id in &deleted {
        assert!(
            new_calls
                .iter()
                .any(|c| c["userId"] == json!(id) && c["event"] == json!("User Deleted")),
            "deletion of {id} not sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_delivery_failures_stay_on_the_queue_and_are_retried() {
    let w = world(30, 5).await;
    w.extract_and_map_accounts().await;

    let mut deliver = w.aws.deliver_state().await;
    deliver.deliverer.policy.max_budget = Duration::from_millis(300);
    // The destination is down, asking for longer than one invocation may wait.
    for _ in 0..5 {
        w.receiver
            .script(503, &[("retry-after", "2")], "unavailable");
    }
    let event = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    assert!(!event.records.is_empty());
    let failed = w.aws.deliver_event(&deliver, event.clone()).await;
    assert_eq!(
        failed.len(),
        event.records.len(),
        "nothing went through: every message is handed back"
    );
    assert!(failed.iter().all(|id| !id.is_empty()));
    let (visible, invisible) = queue_depth(&w.aws.sqs, &w.aws.delivery_q()).await;
    assert_eq!(visible, 0, "hidden until Retry-After has passed");
    assert_eq!(
        invisible,
        failed.len() as u64,
        "failed messages stay on the queue"
    );
    assert_eq!(
        queue_depth(&w.aws.sqs, &w.aws.delivery_dlq).await.0,
        0,
        "not dead-lettered"
    );
    assert!(w.delivered().len() <= w.receiver.received().len());

    // Time passes (the visibility timeout ends) and the destination is back.
    w.receiver.clear_script();
    for record in &event.records {
        w.aws
            .sqs
            .change_message_visibility()
            .queue_url(w.aws.delivery_q())
            .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e)));
    }
    // This instance still honours the destination's Retry-After for its remaining second;
    // another instance (or this one after the wait) delivers.
    let fresh = w.aws.deliver_state().await;
    let (_, failures) = w.pump(&fresh).await;
    assert!(failures.is_empty(), "{failures:?}");
    let want = w.expected_ids("accounts", "Account");
    assert!(!want.is_empty());
    assert!(want.is_subset(&ids(&w.delivered())));
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failures_are_dead_lettered_with_the_reason() {
    let w = world(30, 5).await;
    w.extract(json!({"syncs": ["accounts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A refusal no call can cause (a 400 is bisected: it may be one call's fault).
    w.receiver.script(404, &[], r#"{"error":"no such source"}"#);
    let deliver = w.aws.deliver_state().await;
    let (_, failures) = w.pump(&deliver).await;
    assert!(
        failures.is_empty(),
        "dead calls are acknowledged: {failures:?}"
    );
    let letters = w.aws.dead_letters().await;
    assert!(!letters.is_empty(), "dead letters expected");
    for letter in letters {
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("404"), "reason names the status: {reason}");
        assert!(
            reason.contains("no such source"),
            "and the API's message: {reason}"
        );
        assert!(letter["call"]["messageId"].is_string());
        assert_eq!(letter["destination"], json!("seg"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_message_fails_alone_and_reaches_the_dlq_after_max_receive_count() {
    let w = world(30, 2).await;
    w.extract(json!({"syncs": ["accounts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    send_body(
        &w.aws.sqs,
        &w.aws.records_q(),
        "{this is not a records message",
    )
    .await;
    let map = w.aws.map_state().await;
    let mut poison_failures = 0;
    let mut good = 0;
    for _ in 0..6 {
        let out = w
            .aws
            .sqs
            .receive_message()
            .queue_url(w.aws.records_q())
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e)));
        if out.messages().is_empty() {
            break;
        }
        let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({
            "Records": out.messages().iter().map(|m| json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": m.body(),
                "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": REGION
            })).collect::<Vec<_>>()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let response = sfsync_map::handle(&map, event.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let failed = failed_ids(&response);
        poison_failures += failed.len();
        good += event.records.len() - failed.len();
        ack(&w.aws.sqs, &w.aws.records_q(), &event, &failed).await;
    }
    assert!(good >= 1, "the good message in the batch was mapped");
    assert!(
        poison_failures >= 2,
        "the poison message failed on each receive"
    );
    let (in_dlq, _) = queue_depth(&w.aws.sqs, &w.aws.records_dlq).await;
    assert_eq!(in_dlq, 1, "the poison message is in the records DLQ");
    let (left, inflight) = queue_depth(&w.aws.sqs, &w.aws.records_q()).await;
    assert_eq!(left + inflight, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkpoint_does_not_move_when_enqueueing_fails() {
    let mut w = world(50, 3).await;
    let good_queue = w.aws.env.records_queue_url.clone();
    w.aws.env.records_queue_url = Some(format!("{}/000000000000/no-such-queue", moto_url()));
    let result = w.extract(json!({"syncs": ["contacts"]})).await;
    assert!(result.is_err(), "the run must fail");
    let cp = w
        .store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cp.is_none(),
        "checkpoint moved past records that were not enqueued: {cp:?}"
    );

    // With the queue back, the next run sends everything.
    w.aws.env.records_queue_url = good_queue;
    let out = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.reports[0].status,
        sfsync_pipeline::report::RunStatus::Complete
    );
    let deliver = w.aws.deliver_state().await;
    w.pump(&deliver).await;
    let want = w.expected_ids("contacts", "Contact");
    assert!(want.is_subset(&ids(&w.delivered())));
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_runs_are_blocked_by_the_lease() {
    let w = world(30, 3).await;
    w.store
        .acquire_lease(
            "contacts",
            "another-invocation",
            chrono::Utc::now() + chrono::Duration::minutes(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.busy, vec!["contacts".to_string()]);
    assert!(out.reports.is_empty());
    let (visible, invisible) = queue_depth(&w.aws.sqs, &w.aws.records_q()).await;
    assert_eq!(
        visible + invisible,
        0,
        "nothing extracted while another run holds the lease"
    );
    // Once released, the sync runs.
    w.store
        .release_lease("contacts", "another-invocation")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.reports.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_input_is_a_clear_error() {
    let w = world(5, 3).await;
    let err = w
        .extract(json!({"syncs": ["nope"]}))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("nope"), "{err}");
    let bad: Result<ExtractInput, _> = serde_json::from_value(json!({"sync": ["contacts"]}));
    assert!(
        bad.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("sync")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn extraction_stops_safely_before_the_deadline_and_the_next_invocation_continues() {
    let w = world(1500, 3).await;
    // The invocation's time is measured on a clock that every read advances by 1 ms, and it
    // has 4 ms beyond the handler's 30 s margin: the deadline falls after a few of the 8
    // pages of 200, whatever the machine's speed.
    let mut state = w.aws.extract_state().await;
    let clock = std::sync::Arc::new(sfsync_pipeline::extract::ManualClock::ticking(
        Duration::from_millis(1),
    ));
    state.clock = clock.clone();
    let deadline = clock.start() + Duration::from_secs(30) + Duration::from_millis(4);
    let input: ExtractInput =
        serde_json::from_value(json!({"syncs": ["contacts"]})).unwrap_or_else(|e| panic!("{e}"));
    let out = sfsync_extract::handle(&state, input, "req-deadline", Some(deadline))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = &out.reports[0];
    assert_eq!(
        first.status,
        sfsync_pipeline::report::RunStatus::Partial,
        "{first}"
    );
    assert!(
        first.counts.extracted > 0 && first.counts.extracted < 1500,
        "{first}"
    );
    let cp = w
        .store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    // The checkpoint covers exactly what was enqueued: the last enqueued record's cursor.
    let enqueued_max = {
        let mut max = None::<sfsync_salesforce::Cursor>;
        let mut handles = Vec::new();
        loop {
            let event = receive_event(&w.aws.sqs, &w.aws.records_q(), 10).await;
            if event.records.is_empty() {
                break;
            }
            for r in &event.records {
                let m: sfsync_pipeline::message::RecordsMessage =
                    sfsync_pipeline::message::decode(r.body.as_deref().unwrap_or_default())
                        .unwrap_or_else(|e| panic!("{e}"));
                for rec in &m.records {
                    let c =
                        sfsync_salesforce::Cursor::of_record(rec).unwrap_or_else(|e| panic!("{e}"));
                    if max.as_ref().is_none_or(|m| &c > m) {
                        max = Some(c);
                    }
                }
                handles.push(r.receipt_handle.clone().unwrap_or_default());
            }
        }
        // Put them back for the rest of the test.
        for handle in handles {
            w.aws
                .sqs
                .change_message_visibility()
                .queue_url(w.aws.records_q())
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}", aws_sdk_sqs::error::DisplayErrorContext(&e)));
        }
        max
    };
    if let Some(max) = enqueued_max {
        assert!(
            cp.cursor <= max,
            "checkpoint {:?} passed what was enqueued {:?}",
            cp.cursor,
            max
        );
    }

    // The next invocation continues from the checkpoint and completes.
    let out = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.reports[0].status,
        sfsync_pipeline::report::RunStatus::Complete
    );
    assert!(
        out.reports[0].counts.extracted < 1500,
        "continued, not restarted: {}",
        out.reports[0]
    );
    let deliver = w.aws.deliver_state().await;
    w.pump(&deliver).await;
    let want = w.expected_ids("contacts", "Contact");
    let got = ids(&w.delivered());
    assert!(
        want.is_subset(&got),
        "{} lost",
        want.difference(&got).count()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_replay_is_continued_by_the_next_run() {
    let w = world(1200, 3).await;
    let first = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.reports[0].status,
        sfsync_pipeline::report::RunStatus::Complete
    );
    let done = w
        .store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));

    // A replay (`full`) stopped by the deadline part-way (an injected clock that each read
    // advances by 1 ms; 4 ms beyond the margin: a few of the 6 pages)...
    let mut state = w.aws.extract_state().await;
    let clock = std::sync::Arc::new(sfsync_pipeline::extract::ManualClock::ticking(
        Duration::from_millis(1),
    ));
    state.clock = clock.clone();
    let input: ExtractInput = serde_json::from_value(json!({"syncs": ["contacts"], "full": true}))
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = clock.start() + Duration::from_secs(30) + Duration::from_millis(4);
    let replay = sfsync_extract::handle(&state, input, "req-replay", Some(deadline))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        replay.reports[0].status,
        sfsync_pipeline::report::RunStatus::Partial,
        "{}",
        replay.reports[0]
    );
    let replayed = replay.reports[0].counts.extracted;
    // ...leaves the checkpoint where the replay got to, not at the old position...
    let mid = w
        .store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert!(
        mid.cursor < done.cursor,
        "the replay's progress is recorded"
    );
    // ...so the next scheduled run carries on with the rest of the replay.
    let next = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        next.reports[0].status,
        sfsync_pipeline::report::RunStatus::Complete
    );
    assert!(
        replayed + next.reports[0].counts.extracted >= 1200,
        "replay {replayed} + continuation {} cover every record",
        next.reports[0].counts.extracted
    );
}

/// Sends calls messages of `per_message` calls each (made from the org's accounts) to the
/// delivery queue, the i-th with `attempts[i]`; returns their calls' messageIds per message.
async fn send_calls_messages(w: &World, attempts: &[u32], per_message: usize) -> Vec<Vec<String>> {
    use sfsync_pipeline::message::Packer;
    let sync = w
        .config
        .sync("accounts")
        .cloned()
        .unwrap_or_else(|| panic!("no accounts sync"));
    let calls: Vec<sfsync_mapping::Call> = {
        let org = w.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Account")
            .into_iter()
            .filter_map(|r| map_record(&sync, r).ok())
            .collect()
    };
    assert!(
        calls.len() >= attempts.len() * per_message,
        "{}",
        calls.len()
    );
    let mut sent = Vec::new();
    for (i, attempt) in attempts.iter().enumerate() {
        let mine = &calls[i * per_message..(i + 1) * per_message];
        let mut packer = Packer::new(
            Packer::calls_prefix("run-merge", "seg", *attempt),
            262_144,
            true,
        );
        for call in mine {
            packer.push(call).unwrap_or_else(|e| panic!("{e}"));
        }
        let bodies = packer.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies.len(), 1);
        send_body(&w.aws.sqs, &w.aws.delivery_q(), bodies[0].body.clone()).await;
        sent.push(mine.iter().map(|c| c.message_id.clone()).collect());
    }
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn the_messages_of_one_event_share_destination_batches() {
    let w = world(10, 5).await;
    let sent = send_calls_messages(&w, &[0, 0, 0, 0, 0, 0], 4).await;
    let event = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    assert_eq!(event.records.len(), 6, "moto returns every visible message");
    let deliver = w.aws.deliver_state().await;
    let response = sfsync_deliver::handle(&deliver, event.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(response.batch_item_failures.is_empty());
    let batches: Vec<_> = w
        .receiver
        .received()
        .into_iter()
        .filter(|r| r.path.ends_with("/batch"))
        .collect();
    assert_eq!(
        batches.len(),
        1,
        "six messages of 4 calls fit one Segment batch, so they take one request"
    );
    let want: HashSet<String> = sent.into_iter().flatten().collect();
    assert_eq!(ids(&w.delivered()), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_delivered_together_are_still_judged_one_by_one() {
    let w = world(10, 5).await;
    // The middle message has been handed back MAX_ATTEMPTS - 1 times already.
    let last = sfsync_pipeline::deliver::MAX_ATTEMPTS - 1;
    let sent = send_calls_messages(&w, &[0, last, 0], 4).await;
    let event = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    assert_eq!(event.records.len(), 3);
    let mut deliver = w.aws.deliver_state().await;
    deliver.deliverer.policy.max_budget = Duration::from_millis(300);
    for _ in 0..5 {
        w.receiver
            .script(503, &[("retry-after", "2")], "unavailable");
    }
    let response = sfsync_deliver::handle(&deliver, event.clone(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failed: HashSet<String> = failed_ids(&response).into_iter().collect();
    // Which SQS message carries which calls: decode each body.
    let mut fresh = HashSet::new();
    let mut exhausted = None;
    for record in &event.records {
        let body = record.body.as_deref().unwrap_or_default();
        let message =
            sfsync_pipeline::deliver::decode_delivery(body).unwrap_or_else(|e| panic!("{e}"));
        let id = record.message_id.clone().unwrap_or_default();
        if message.attempt == last {
            exhausted = Some((id, message));
        } else {
            fresh.insert(id);
        }
    }
    let (exhausted_id, exhausted) = exhausted.unwrap_or_else(|| panic!("no exhausted message"));
    assert_eq!(failed, fresh, "only the fresh messages are handed back");
    assert!(!failed.contains(&exhausted_id));
    ack(
        &w.aws.sqs,
        &w.aws.delivery_q(),
        &event,
        &failed.iter().cloned().collect::<Vec<_>>(),
    )
    .await;

    // The exhausted message's calls, and only those, are dead-lettered with the reason.
    let mut dead = HashSet::new();
    for letter in w.aws.dead_letters().await {
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("gave up after 8 attempts"), "{reason}");
        dead.insert(
            letter["call"]["messageId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let want: HashSet<String> = exhausted
        .calls
        .iter()
        .map(|c| c.message_id.clone())
        .collect();
    assert_eq!(dead, want);
    assert_eq!(sent[1].iter().cloned().collect::<HashSet<_>>(), want);
    let (visible, invisible) = queue_depth(&w.aws.sqs, &w.aws.delivery_q()).await;
    assert_eq!(
        (visible, invisible),
        (0, 2),
        "the fresh messages wait for Retry-After"
    );
}

// ---------------------------------------------------------------------------------------
// Refresh Token Rotation (issue 11, item 2)

/// The secret's stored rotated refresh token, as a JSON document.
async fn stored_refresh_token(w: &World) -> Option<Value> {
    let secrets = aws_sdk_secretsmanager::Client::new(&w.aws.sdk);
    let out = secrets
        .get_secret_value()
        .secret_id(&w.aws.env.secret_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)));
    let keys: Value =
        serde_json::from_str(out.secret_string().unwrap_or("{}")).unwrap_or_else(|e| panic!("{e}"));
    keys[sfsync_pipeline::token_store::REFRESH_TOKEN_SECRET_KEY]
        .as_str()
        .map(|doc| serde_json::from_str(doc).unwrap_or_else(|e| panic!("{e}")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_refresh_token_is_kept_in_the_secret_and_used_by_the_next_cold_start() {
    let config = Fixture::syncs(&["contacts", "accounts"])
        .salesforce("auth", "refresh_token")
        .salesforce("refresh_token", "${secret:sf_refresh_token}")
        .text();
    let w = world_with(
        300,
        3,
        &config,
        Faults {
            rotate_refresh_tokens: true,
            ..Faults::default()
        },
    )
    .await;
    let configured = Credentials::demo().refresh_token;

    // Cold start 1: the token request rotates the configured refresh token.
    let first = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first.reports[0].status,
        sfsync_pipeline::report::RunStatus::Complete,
        "{}",
        first.reports[0]
    );
    let stored = stored_refresh_token(&w)
        .await
        .unwrap_or_else(|| panic!("the rotated refresh token was not stored"));
    let first_token = stored["token"].as_str().unwrap_or_default().to_string();
    assert!(!first_token.is_empty() && first_token != configured);
    assert_eq!(stored["generation"], 1);
    // The rest of the secret is as it was.
    let config_back = secret_keys(&w).await;
    assert!(config_back.contains("sf_client_id"), "{config_back}");

    // Every session times out; cold start 2 must present the stored token — the configured
    // one is rotated out, and presenting it would revoke the chain.
    w.sim.expire_all_tokens();
    let second = w
        .extract(json!({"syncs": ["contacts", "accounts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for report in &second.reports {
        assert_eq!(
            report.status,
            sfsync_pipeline::report::RunStatus::Complete,
            "{report}"
        );
    }
    let stored = stored_refresh_token(&w)
        .await
        .unwrap_or_else(|| panic!("no stored refresh token"));
    assert_eq!(stored["generation"], 2, "{stored}");
    let second_token = stored["token"].as_str().unwrap_or_default().to_string();
    assert_ne!(second_token, first_token);

    // No token reaches a run report or the handler's output.
    for output in [&first, &second] {
        let shown = serde_json::to_string(output).unwrap_or_default()
            + &output
                .reports
                .iter()
                .map(|r| r.to_string())
                .collect::<String>();
        for token in [&configured, &first_token, &second_token] {
            assert!(
                !shown.contains(token.as_str()),
                "a refresh token leaked: {shown}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_never_goes_back_to_an_older_refresh_token() {
    use sfsync_salesforce::{RefreshTokenStore, RotatedRefreshToken};
    let w = world(5, 3).await;
    let store = sfsync_pipeline::token_store::SecretTokenStore::new(
        aws_sdk_secretsmanager::Client::new(&w.aws.sdk),
        &w.aws.env.secret_id,
    );
    let token = |generation: u64| RotatedRefreshToken {
        token: format!("5Aep861rotated{generation}"),
        generation,
        origin: sfsync_salesforce::origin_of(&Credentials::demo().refresh_token),
    };
    store
        .save(&token(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A concurrent function that refreshed earlier and writes late leaves the newer token.
    store
        .save(&token(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.load().await.unwrap_or_else(|e| panic!("{e}")),
        Some(token(2))
    );
    store
        .save(&token(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.load().await.unwrap_or_else(|e| panic!("{e}")),
        Some(token(3))
    );
    // The function's other keys are kept.
    let keys = secret_keys(&w).await;
    assert!(keys.contains("sfsync_config"), "{keys}");
}

/// The secret's key names (never its values).
async fn secret_keys(w: &World) -> String {
    let secrets = aws_sdk_secretsmanager::Client::new(&w.aws.sdk);
    let out = secrets
        .get_secret_value()
        .secret_id(&w.aws.env.secret_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)));
    let keys: serde_json::Map<String, Value> =
        serde_json::from_str(out.secret_string().unwrap_or("{}")).unwrap_or_default();
    keys.keys().cloned().collect::<Vec<_>>().join(",")
}

// ---------------------------------------------------------------------------------------
// One run never starves the others (issue 11, item 8)

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_api_budget_stops_the_remaining_syncs_cleanly_and_names_them() {
    let w = world(300, 3).await;
    // The org's daily requests are nearly used up by someone else: the client's share
    // (max_api_share 0.8 of 50) is spent by the first answers this invocation sees.
    w.sim.set_faults(Faults {
        daily_limit: Some(50),
        ..Faults::default()
    });
    let other = reqwest::Client::new();
    let token = {
        let creds = Credentials::demo();
        let answer: Value = other
            .post(format!("{}/services/oauth2/token", w.sim.url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", creds.client_id.as_str()),
                ("client_secret", creds.client_secret.as_str()),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        answer["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for _ in 0..40 {
        other
            .get(format!("{}/services/data/v62.0/limits", w.sim.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = w
        .extract(json!({"syncs": ["contacts", "accounts"]}))
        .await
        .unwrap_or_else(|e| panic!("a spent budget is a clean stop, not a failure: {e}"));
    assert_eq!(out.reports.len(), 1, "{:?}", out.reports);
    assert_eq!(
        out.reports[0].status,
        sfsync_pipeline::report::RunStatus::ApiLimit,
        "{}",
        out.reports[0]
    );
    let stopped = &out.reports[0].sync;
    let not_run: Vec<&str> = out.not_run.iter().map(|n| n.sync.as_str()).collect();
    assert_eq!(not_run.len(), 1, "{:?}", out.not_run);
    assert_ne!(not_run[0], stopped);
    assert_eq!(out.not_run[0].reason, sfsync_extract::StopReason::ApiLimit);
    let shown = serde_json::to_value(&out).unwrap_or_default();
    assert_eq!(shown["not_run"][0]["reason"], "api_limit", "{shown}");
    // Nothing moved for the sync that did not run.
    assert!(
        w.store
            .checkpoint(not_run[0])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sync_that_waited_goes_first_next_time() {
    let w = world(20, 3).await;
    let first = w
        .extract(json!({"syncs": ["contacts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.reports.len(), 1);
    // accounts has never run: it goes before contacts, whatever the config order.
    let next = w
        .extract(json!({"syncs": ["contacts", "accounts"]}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<&str> = next.reports.iter().map(|r| r.sync.as_str()).collect();
    assert_eq!(order, vec!["accounts", "contacts"]);
}

/// A 401 from the destination (a revoked key) holds the calls on the delivery queue with the
/// time the pause began, dead-letters nothing, and delivery resumes once the key works; a
/// pause older than `AUTH_PAUSE_LIMIT` is dead-lettered with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_holds_the_calls_on_the_queue_until_it_works() {
    let w = world(30, 5).await;
    w.extract_and_map_accounts().await;

    let mut deliver = w.aws.deliver_state().await;
    // The recheck delay is SQS's longest (15 min) in production; none here.
    deliver.deliverer.policy.pause_recheck = Duration::ZERO;
    for _ in 0..10 {
        w.receiver
            .script(401, &[], r#"{"error":"Invalid write key"}"#);
    }
    let event = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    let sent: HashSet<String> = event
        .records
        .iter()
        .flat_map(|r| {
            let body = r.body.clone().unwrap_or_default();
            let m: sfsync_pipeline::message::CallsMessage =
                sfsync_pipeline::message::decode(&body).unwrap_or_else(|e| panic!("{e}"));
            m.calls.into_iter().map(|c| c.message_id)
        })
        .collect();
    assert!(!sent.is_empty());
    w.aws.deliver_event(&deliver, event).await;
    assert_eq!(
        w.receiver.received().len(),
        1,
        "one refusal pauses the rest"
    );
    assert_eq!(
        queue_depth(&w.aws.sqs, &w.aws.delivery_dlq).await.0,
        0,
        "nothing dead-lettered"
    );
    // The calls are back on the queue, with when the pause began and their attempts kept.
    let held = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    let mut held_ids = HashSet::new();
    let mut since = None;
    for r in &held.records {
        let m: sfsync_pipeline::message::CallsMessage =
            sfsync_pipeline::message::decode(&r.body.clone().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.attempt, 0, "an auth pause is not an attempt");
        let paused_since = m.paused_since.unwrap_or_else(|| panic!("no paused_since"));
        assert!(paused_since <= chrono::Utc::now().timestamp_millis());
        since = Some(paused_since);
        held_ids.extend(m.calls.into_iter().map(|c| c.message_id));
    }
    assert_eq!(held_ids, sent, "every paused call is held, none lost");

    // The key works again: the held calls are delivered.
    w.receiver.clear_script();
    let failed = w.aws.deliver_event(&deliver, held.clone()).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert!(sent.is_subset(&ids(&w.delivered())));
    assert!(since.is_some());

    // A pause that has lasted longer than AUTH_PAUSE_LIMIT ends in the dead-letter queue,
    // with the reason.
    let long_ago = chrono::Utc::now().timestamp_millis()
        - i64::try_from(sfsync_pipeline::deliver::AUTH_PAUSE_LIMIT.as_millis()).unwrap_or(i64::MAX)
        - 60_000;
    let call = w.delivered()[0].clone();
    let call: sfsync_mapping::Call = serde_json::from_value(json!({
        "type": "group", "messageId": call["messageId"], "timestamp": call["timestamp"],
        "groupId": call["groupId"], "anonymousId": call["anonymousId"], "traits": call["traits"],
        "context": call["context"],
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::to_string(&sfsync_pipeline::message::CallsMessage {
        v: 1,
        run_id: "run-paused".into(),
        destination: "seg".into(),
        attempt: 0,
        paused_since: Some(long_ago),
        calls: vec![call],
    })
    .unwrap_or_else(|e| panic!("{e}"));
    send_body(&w.aws.sqs, &w.aws.delivery_q(), body).await;
    w.receiver
        .script(401, &[], r#"{"error":"Invalid write key"}"#);
    let event = receive_event(&w.aws.sqs, &w.aws.delivery_q(), 10).await;
    w.aws.deliver_event(&deliver, event).await;
    let dead = w.aws.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    let reason = letter["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("credentials rejected by seg") && reason.contains("longer than 24 h"),
        "{reason}"
    );
}

// ---------------------------------------------------------------------------------------
// The Lambda deadline budget of a Bulk run (issue 11, item 3)

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_job_longer_than_one_invocation_is_resumed_by_the_next_and_delivered_once() {
    let config = Fixture::syncs(&["contacts", "accounts"])
        .sync("contacts", "api", "bulk")
        .text();
    let w = world_with(
        1200,
        3,
        &config,
        Faults {
            // InProgress for 6 polls: longer than one invocation's budget below.
            bulk_polls_before_complete: 6,
            ..Faults::default()
        },
    )
    .await;
    let mut statuses = Vec::new();
    for attempt in 0..6 {
        let mut state = w.aws.extract_state().await;
        // Every read of the clock costs 1 ms and the invocation has 4 ms: enough for about
        // four status polls, never for six.
        let clock = std::sync::Arc::new(sfsync_pipeline::extract::ManualClock::ticking(
            Duration::from_millis(1),
        ));
        state.clock = clock.clone();
        let deadline = clock.start() + Duration::from_secs(30) + Duration::from_millis(4);
        let input: ExtractInput = serde_json::from_value(json!({"syncs": ["contacts"]}))
            .unwrap_or_else(|e| panic!("{e}"));
        let out = sfsync_extract::handle(
            &state,
            input,
            &format!("req-bulk-{attempt}"),
            Some(deadline),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let report = &out.reports[0];
        statuses.push(report.status);
        if report.status == sfsync_pipeline::report::RunStatus::Complete {
            break;
        }
        assert_eq!(
            report.status,
            sfsync_pipeline::report::RunStatus::Partial,
            "{report}"
        );
        let cp = w
            .store
            .checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the stopped run saves its Bulk job"));
        assert!(cp.bulk.is_some(), "{cp:?}");
    }
    assert_eq!(
        statuses.last(),
        Some(&sfsync_pipeline::report::RunStatus::Complete),
        "{statuses:?}"
    );
    assert!(
        statuses.len() >= 2,
        "the deadline never interrupted: {statuses:?}"
    );
    let stats = w.sim.stats();
    assert_eq!(
        stats.bulk_jobs, 1,
        "one job across the invocations: {statuses:?}"
    );
    let deleted: u64 = stats
        .by_path
        .iter()
        .filter(|(k, _)| k.starts_with("DELETE ") && k.contains("/jobs/query/"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(deleted, 1);
    let deliver = w.aws.deliver_state().await;
    w.pump(&deliver).await;
    let delivered: Vec<String> = w
        .delivered()
        .iter()
        .filter_map(|c| c["messageId"].as_str().map(str::to_string))
        .collect();
    let want = w.expected_ids("contacts", "Contact");
    let got: HashSet<String> = delivered.iter().cloned().collect();
    assert!(
        want.is_subset(&got),
        "{} lost",
        want.difference(&got).count()
    );
    assert_eq!(delivered.len(), got.len(), "delivered more than once");
}
