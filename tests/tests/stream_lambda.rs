//! The stream function end to end: its handler against moto server (SQS, DynamoDB, Secrets
//! Manager) and the Salesforce simulator's Pub/Sub API (gRPC) and REST API. A change
//! committed in the simulator becomes a records message on the records queue, which the map
//! and deliver handlers take to a destination server; the replay id is stored and the next
//! invocation — invoked by the tick the first one sent — resumes after it, so a change made
//! between two invocations is delivered; a second concurrent invocation finds the lease held
//! and does nothing. Invocations stop on an injected signal, never on a timer.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use sfsync_e2e::aws_harness::AwsStack;
use sfsync_e2e::fixtures::{Fixture, secrets};
use sfsync_e2e::*;
use sfsync_pipeline::ledger::{HandedOnBy, RecordVersion};
use sfsync_pipeline::message::{RecordsMessage, decode};
use sfsync_pipeline::report::RunStatus;
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_simulator::SimulatorHandle;
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, PubSubHandle, PubSubOptions, Simulator};
use sfsync_stream::{DynamoReplayStore, ReplayStore};
use sfsync_stream_function::lease::{LeaseError, SubscriberLease};
use sfsync_stream_function::{
    Invocation, StreamEnv, StreamFailure, StreamOutput, StreamState, Trigger, handle,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The shared fixture's Contacts, streamed (selecting `Title`, which the tests edit) and
/// without deletes, to the Segment receiver.
fn streamed_contacts() -> Fixture {
    Fixture::syncs(&["contacts"])
        .fields("contacts", &["Email", "Title", "LastName", "Account.Name"])
        .without("contacts", "deletes")
        .sync("contacts", "stream", true)
}

static CONFIG: LazyLock<String> = LazyLock::new(|| streamed_contacts().text());

/// The longest any awaited condition may take before the test fails (a bound, not a wait).
const PATIENCE: Duration = Duration::from_secs(30);

struct World {
    aws: AwsStack,
    stream_env: StreamEnv,
    store: DynamoStore,
    replays: DynamoReplayStore,
    lease: SubscriberLease,
    sim: SimulatorHandle,
    _pubsub: PubSubHandle,
    receiver: Receiver,
}

async fn world(config: &str, pubsub: PubSubOptions) -> World {
    let sim = Simulator::start(
        Org::generate(&OrgSpec::tiny()),
        Credentials::demo(),
        Faults::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("simulator: {e}"));
    let pubsub = sim
        .start_pubsub(pubsub)
        .await
        .unwrap_or_else(|e| panic!("pubsub: {e}"));
    let receiver = Receiver::start().await;
    let mut secret = secrets(&sim.url(), &receiver.url);
    secret["sfsync_config"] = json!(config);
    let aws = AwsStack::create("sfsync-stream", 5, &secret).await;
    let tick_q = plain_queue(&aws.sqs, &format!("{}-tick", aws.env.secret_id)).await;
    let (dynamo, table) = (aws.dynamo.clone(), aws.env.state_table.clone());
    World {
        stream_env: StreamEnv {
            tick_queue_url: tick_q,
            pubsub_endpoint: pubsub.url(),
        },
        store: aws.store(),
        replays: DynamoReplayStore::new(dynamo.clone(), &table),
        lease: SubscriberLease::new(dynamo, &table),
        aws,
        sim,
        _pubsub: pubsub,
        receiver,
    }
}

/// Keepalives every 20 ms: a subscription at the tip stores the tip's replay id at once,
/// which tells the test the subscription is open.
fn quick_keepalives() -> PubSubOptions {
    PubSubOptions {
        keepalive: Duration::from_millis(20),
        ..PubSubOptions::default()
    }
}

/// One running invocation of the handler, stopped by [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<StreamOutput, StreamFailure>>,
}

impl Running {
    async fn stop(self) -> Result<StreamOutput, StreamFailure> {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap_or_else(|_| panic!("the invocation stops within {PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("invocation task: {e}"))
    }
}

impl World {
    fn tick_q(&self) -> String {
        self.stream_env.tick_queue_url.clone()
    }

    async fn state(&self) -> Arc<StreamState> {
        let mut state = StreamState::new(&self.aws.sdk, &self.aws.env, &self.stream_env)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state.reconnect_after = Duration::from_millis(10);
        Arc::new(state)
    }

    /// Starts an invocation whose lease lasts 15 minutes and which streams until stopped.
    fn invoke(&self, state: &Arc<StreamState>, request_id: &str) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let state = state.clone();
        let invocation = Invocation {
            request_id: request_id.to_string(),
            deadline: chrono::Utc::now() + chrono::Duration::minutes(15),
            stop: async move {
                let _ = stopped.await;
            },
        };
        let task = tokio::spawn(async move { handle(&state, invocation).await });
        Running { stop, task }
    }

    /// Waits until the sync has a stored replay id different from `before`: its
    /// subscription is open (a keepalive's id) or a batch was handed on.
    async fn replay_stored(&self, before: Option<String>) -> String {
        eventually("a stored replay id", async || {
            self.replays
                .get("contacts")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|r| r.replay_id)
                .filter(|id| Some(id) != before.as_ref())
        })
        .await
    }

    /// Takes records messages off the records queue until one holds `id`; returns the SQS
    /// events they came in (for the map handler) and the record.
    async fn records_until(
        &self,
        id: &str,
    ) -> (Vec<aws_lambda_events::event::sqs::SqsEvent>, Value) {
        let mut events = Vec::new();
        let found = eventually(&format!("record {id} on the records queue"), async || {
            let event = receive_event(&self.aws.sqs, &self.aws.records_q(), 10).await;
            let mut found = None;
            for message in &event.records {
                let body = message.body.as_deref().unwrap_or_default();
                let records: RecordsMessage =
                    decode(body).unwrap_or_else(|e| panic!("a records message: {e}"));
                assert_eq!(records.sync, "contacts");
                found = found.or(records
                    .records
                    .into_iter()
                    .map(|r| r.to_value())
                    .find(|r| r["Id"] == id));
            }
            if !event.records.is_empty() {
                events.push(event);
            }
            found
        })
        .await;
        (events, found)
    }

    /// The map then the deliver handler over `events` and what map enqueued, as the event
    /// source mappings would run them.
    async fn map_and_deliver(&self, events: Vec<aws_lambda_events::event::sqs::SqsEvent>) {
        let map = self.aws.map_state().await;
        for event in events {
            let failed = self.aws.map_event(&map, event).await;
            assert!(failed.is_empty(), "map failed {failed:?}");
        }
        let deliver = self.aws.deliver_state().await;
        let failed = self.aws.deliver_all(&deliver).await;
        assert!(failed.is_empty(), "deliver failed {failed:?}");
    }

    /// The calls the destination accepted for a user id.
    fn delivered_to(&self, user_id: &str) -> Vec<Value> {
        self.receiver
            .received()
            .iter()
            .filter(|r| r.path.ends_with("/batch") && r.status < 300)
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .filter(|call| call["userId"] == user_id)
            .collect()
    }

    fn contact_id(&self, n: usize) -> String {
        let org = self.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        org.records("Contact")[n]["Id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn set_title(&self, id: &str, title: &str) {
        let org = self.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let mut fields = Map::new();
        fields.insert("Title".into(), json!(title));
        assert!(org.update("Contact", id, fields), "contact {id} updated");
    }

    async fn tick_depth(&self) -> u64 {
        let (visible, in_flight) = queue_depth(&self.aws.sqs, &self.tick_q()).await;
        visible + in_flight
    }
}

/// An invocation whose stop never comes, so only its own ending returns it: a refused lease,
/// failed syncs, nothing to stream. Fails the test with `what` if it does not return.
async fn invoke_unstopped(
    state: &StreamState,
    request_id: &str,
    what: &str,
) -> Result<StreamOutput, StreamFailure> {
    let invocation = Invocation {
        request_id: request_id.to_string(),
        deadline: chrono::Utc::now() + chrono::Duration::minutes(15),
        stop: std::future::pending::<()>(),
    };
    tokio::time::timeout(PATIENCE, handle(state, invocation))
        .await
        .unwrap_or_else(|_| panic!("{what} within {PATIENCE:?}"))
}

/// Re-evaluates `check` until it yields a value, failing after [`PATIENCE`]. Each try is a
/// real request (DynamoDB or SQS on moto): this waits for a condition, not for time.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let attempt = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(PATIENCE, attempt)
        .await
        .unwrap_or_else(|_| panic!("{what} within {PATIENCE:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_streams_to_the_destination_and_the_next_invocation_resumes_after_the_stored_replay_id()
 {
    let w = world(&CONFIG, quick_keepalives()).await;
    let state = w.state().await;
    let (first, second) = (w.contact_id(0), w.contact_id(1));

    // Invocation 1: no stored replay id, so it subscribes at the tip.
    let running = w.invoke(&state, "req-1");
    let tip = w.replay_stored(None).await;
    assert_eq!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|h| h.owner),
        Some("req-1".to_string()),
        "the streaming invocation holds the lease"
    );
    w.set_title(&first, "Streamed Live");
    let (mut events, record) = w.records_until(&first).await;
    assert_eq!(record["Title"], "Streamed Live");
    let after_first = w.replay_stored(Some(tip)).await;
    let output = running.stop().await.unwrap_or_else(|e| panic!("{e}"));

    // The version handed on is noted in the ledger polling compares with.
    let version =
        RecordVersion::of(&record.clone().into()).unwrap_or_else(|| panic!("a version: {record}"));
    let noted = w
        .store
        .stream_ledger()
        .lookup("contacts", std::slice::from_ref(&version))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(noted.get(&version), Some(&HandedOnBy::Stream));

    assert!(output.tick_sent, "{output:?}");
    assert_eq!(
        w.tick_depth().await,
        1,
        "exactly one tick chains the next invocation"
    );
    assert!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "the lease is given back"
    );
    let report = &output.reports[0];
    assert_eq!(
        (report.sync.as_str(), report.status),
        ("contacts", RunStatus::Complete)
    );
    assert_eq!(report.api.as_deref(), Some("stream"));
    assert!(report.counts.extracted >= 1, "{report:?}");
    let run_id = output.run_id.clone().unwrap_or_default();
    assert!(
        w.store
            .runs(10)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .any(|r| r.run_id == run_id && r.sync == "contacts"),
        "the run report is in the state table"
    );

    // Between the invocations: a change nobody is subscribed to.
    w.set_title(&second, "Changed Between Invocations");

    // Invocation 2, invoked by the tick's SQS event: it resumes after the stored replay id.
    let tick = receive_event(&w.aws.sqs, &w.tick_q(), 10).await;
    assert_eq!(tick.records.len(), 1);
    let payload = serde_json::to_value(&tick).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Trigger::of(payload).ok(), Some(Trigger::Tick));
    ack(&w.aws.sqs, &w.tick_q(), &tick, &[]).await;
    let running = w.invoke(&state, "req-2");
    let (more, record) = w.records_until(&second).await;
    assert_eq!(record["Title"], "Changed Between Invocations");
    events.extend(more);
    let after_second = w.replay_stored(Some(after_first)).await;
    let output = running.stop().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(output.tick_sent);
    assert_ne!(output.run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(
        w.replays
            .get("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|r| r.replay_id),
        Some(after_second)
    );

    // Through the map and deliver handlers to the destination.
    w.map_and_deliver(events).await;
    let calls = w.delivered_to(&first);
    assert!(
        calls
            .iter()
            .any(|c| c["type"] == "identify" && c["traits"]["title"] == "Streamed Live"),
        "{calls:#?}"
    );
    let calls = w.delivered_to(&second);
    assert!(
        calls
            .iter()
            .any(|c| c["type"] == "identify"
                && c["traits"]["title"] == "Changed Between Invocations"),
        "{calls:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_invocation_finds_the_lease_held_and_neither_subscribes_nor_chains() {
    let w = world(&CONFIG, quick_keepalives()).await;
    let state = w.state().await;
    let running = w.invoke(&state, "req-a");
    w.replay_stored(None).await;

    // Its stop never comes: only returning at once, without subscribing, ends it.
    let output = invoke_unstopped(&state, "req-b", "a second invocation returns at once")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = output
        .busy
        .clone()
        .unwrap_or_else(|| panic!("busy: {output:?}"));
    assert_eq!(holder.owner, "req-a");
    assert!(!output.tick_sent && output.reports.is_empty() && output.run_id.is_none());
    assert_eq!(
        w.tick_depth().await,
        0,
        "a refused invocation does not chain"
    );

    let output = running.stop().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(output.tick_sent);
    assert_eq!(w.tick_depth().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_is_taken_over_only_once_its_holder_deadline_has_passed() {
    let w = world(&CONFIG, PubSubOptions::default()).await;
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::minutes(15);
    w.lease
        .acquire("crashed", now, until)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match w.lease.acquire("next", now, until).await {
        Err(LeaseError::Held(holder)) => assert_eq!(holder.owner, "crashed"),
        other => panic!("held by crashed, got {other:?}"),
    }
    // Another owner's release leaves it alone.
    w.lease
        .release("next")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(w.lease.acquire("next", now, until).await.is_err());
    // Past the holder's deadline (Lambda has ended it by then) it is free.
    let later = until + chrono::Duration::seconds(1);
    w.lease
        .acquire("next", later, later + chrono::Duration::minutes(15))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|h| h.owner),
        Some("next".to_string())
    );
    w.lease
        .release("crashed")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    w.lease
        .release("next")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_that_cannot_subscribe_fails_the_invocation_without_chaining() {
    // Change Data Capture enabled for Account only: the Contact channel does not exist.
    let w = world(
        &CONFIG,
        PubSubOptions {
            objects: Some(vec!["Account".into()]),
            ..quick_keepalives()
        },
    )
    .await;
    let state = w.state().await;
    // Its stop never comes: the invocation ends because its only sync failed.
    let failure = invoke_unstopped(&state, "req-x", "a failed invocation returns")
        .await
        .expect_err("the sync cannot subscribe");
    let message = failure.to_string();
    assert!(
        message.contains("contacts") && message.contains("ContactChangeEvent"),
        "{message}"
    );
    assert_eq!(w.tick_depth().await, 0, "no tick: the schedule retries");
    assert!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    let runs = w.store.runs(10).await.unwrap_or_else(|e| panic!("{e}"));
    let run = runs
        .iter()
        .find(|r| r.sync == "contacts")
        .unwrap_or_else(|| panic!("a run report: {runs:?}"));
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("ContactChangeEvent"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_streaming_syncs_an_invocation_does_nothing_and_does_not_chain() {
    let w = world(
        &streamed_contacts().without("contacts", "stream").text(),
        PubSubOptions::default(),
    )
    .await;
    let state = w.state().await;
    let output = invoke_unstopped(&state, "req-idle", "an idle invocation returns at once")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.run_id.is_none() && !output.tick_sent && output.busy.is_none());
    assert_eq!(w.tick_depth().await, 0);
    assert!(
        w.lease
            .holder()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}
