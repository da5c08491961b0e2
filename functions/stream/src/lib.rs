//! The stream function: the Change Data Capture events of every sync with `stream = true`,
//! read through the Pub/Sub API by the stream stage (`sfsync_stream::stream_sync`: flow
//! control, Avro decoding, re-read by Id), enqueued on the records queue as records messages
//! — the extract function's format, so the map function handles them like any other.
//!
//! A Lambda invocation lasts at most 15 minutes, a subscription for as long as it is kept
//! open. So one invocation streams until [`STOP_MARGIN`] before its deadline, and hands over
//! to the next:
//! - **Where to resume**: each batch of events is enqueued before its replay id is stored in
//!   the state table (`sfsync_stream::DynamoReplayStore`); the next invocation subscribes
//!   after it, so what committed between two invocations is delivered by the second. With
//!   no stored id a sync starts at the tip; an expired one re-reads a window by polling
//!   (the stream stage's rules).
//! - **One subscriber at a time**: the invocation takes the state table's stream lease
//!   ([`lease::SubscriberLease`]) until its own deadline before it subscribes; an invocation
//!   that finds it held returns at once, without chaining.
//! - **The chain**: after its subscribers stopped and the lease is given back, the
//!   invocation sends one message to the tick queue, whose SQS event source invokes the
//!   function again within about a second. Giving the lease back first means the tick's
//!   invocation always finds it free.
//! - **The safety net**: a schedule (every 5 minutes in infra/template.yaml) invokes the
//!   function too. While the chain runs it finds the lease held and returns; when the chain
//!   broke (a failed invocation sends no tick, a crash holds the lease only until its
//!   deadline) it starts a new one. Duplicate ticks cannot make two chains: whichever
//!   invocation finds the lease held ends without a tick.
//!
//! An invocation whose every sync failed (credentials, Change Data Capture not enabled)
//! sends no tick, so a broken configuration costs one short invocation per schedule period
//! instead of a loop; the failure is the invocation's error (the Errors alarm) and each
//! sync's run report.

pub mod lease;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sfsync_mapping::{Config, SyncConfig};
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::report::{RunReport, new_run_id};
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_stream::{
    DynamoReplayStore, StreamError, StreamSettings, failed_run_report, stream_syncs,
};
use tracing::{error, info, warn};

use crate::lease::{Holder, LeaseError, SubscriberLease};

/// How long before the invocation's deadline the subscribers stop: enough to finish the
/// batch in hand (at most 100 events: one re-read of up to 200 records and their messages),
/// store the replay ids, write the run reports, give the lease back and send the tick.
pub const STOP_MARGIN: Duration = Duration::from_secs(45);

/// The longest an invocation streams when Lambda gives no deadline (a local invoke).
pub const MAX_RUN: Duration = Duration::from_secs(900);

/// What the stream function needs beyond [`FunctionEnv`].
#[derive(Debug, Clone)]
pub struct StreamEnv {
    /// `TICK_QUEUE_URL`: the queue whose event source invokes the next invocation.
    pub tick_queue_url: String,
    /// `SFSYNC_PUBSUB_ENDPOINT`, default Salesforce's `https://api.pubsub.salesforce.com:7443`.
    pub pubsub_endpoint: String,
}

impl StreamEnv {
    pub fn from_env() -> Result<StreamEnv, SetupError> {
        Ok(StreamEnv {
            tick_queue_url: aws::env("TICK_QUEUE_URL")?,
            pubsub_endpoint: std::env::var("SFSYNC_PUBSUB_ENDPOINT")
                .unwrap_or_else(|_| sfsync_pubsub::SALESFORCE_ENDPOINT.to_string()),
        })
    }
}

/// Clients and config, built once per cold start and borrowed by every invocation.
pub struct StreamState {
    pub config: Arc<Config>,
    pub client: sfsync_salesforce::Client,
    pub records_queue: SqsQueue,
    /// The tick goes out as one plain SendMessage (its body is no records or calls message).
    pub sqs: aws_sdk_sqs::Client,
    pub tick_queue_url: String,
    pub store: DynamoStore,
    pub replays: DynamoReplayStore,
    pub lease: SubscriberLease,
    pub pubsub_endpoint: String,
    /// Wait before re-subscribing after a broken stream.
    pub reconnect_after: Duration,
}

impl StreamState {
    /// Reads the secret and the sync config (`SFSYNC_SECRET_ID`), and builds the clients for
    /// `RECORDS_QUEUE_URL`, `TICK_QUEUE_URL` and `STATE_TABLE`.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        env: &FunctionEnv,
        stream_env: &StreamEnv,
    ) -> Result<StreamState, SetupError> {
        let config = sfsync_pipeline::lambda::load_config(sdk, env).await?;
        let client = sfsync_pipeline::lambda::salesforce_client(sdk, env, &config.salesforce)?;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(sdk);
        Ok(StreamState {
            records_queue: SqsQueue::new(
                sqs.clone(),
                FunctionEnv::need(&env.records_queue_url, "RECORDS_QUEUE_URL")?,
            )
            .with_pipeline(&config.pipeline),
            sqs,
            tick_queue_url: stream_env.tick_queue_url.clone(),
            config: Arc::new(config),
            client,
            store: DynamoStore::new(dynamo.clone(), &env.state_table),
            replays: DynamoReplayStore::new(dynamo.clone(), &env.state_table),
            lease: SubscriberLease::new(dynamo, &env.state_table),
            pubsub_endpoint: stream_env.pubsub_endpoint.clone(),
            reconnect_after: Duration::from_secs(2),
        })
    }
}

/// What invoked the function. Both streams the same way; they differ in what Lambda expects
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A message of the tick queue (the chain).
    Tick,
    /// The schedule (EventBridge Scheduler passes [`ScheduledInput`] as-is).
    Schedule,
}

/// The schedule's input: `{"scheduledTime": "<aws.scheduler.scheduled-time>"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledInput {
    #[serde(default, rename = "scheduledTime")]
    pub scheduled_time: Option<String>,
}

impl Trigger {
    /// An SQS event (it has `Records`) is a tick; anything else must be the schedule's input.
    pub fn of(payload: Value) -> Result<Trigger, StreamFailure> {
        if payload.get("Records").is_some() {
            serde_json::from_value::<SqsEvent>(payload)
                .map(|_| Trigger::Tick)
                .map_err(StreamFailure::NotAnSqsEvent)
        } else {
            serde_json::from_value::<ScheduledInput>(payload)
                .map(|_| Trigger::Schedule)
                .map_err(StreamFailure::Input)
        }
    }

    /// What the invocation answers. The tick queue's event source reports batch item
    /// failures, so it reads the answer as a batch response: an empty one deletes the tick.
    /// (A failed invocation is an error instead, and the tick stays on its queue.)
    pub fn response(self, output: &StreamOutput) -> Value {
        match self {
            Trigger::Tick => json!(SqsBatchResponse::default()),
            Trigger::Schedule => json!(output),
        }
    }
}

/// One invocation: its id (the lease owner), the deadline its lease lasts until, and the
/// signal that stops its subscribers.
pub struct Invocation<S> {
    pub request_id: String,
    pub deadline: DateTime<Utc>,
    pub stop: S,
}

impl Invocation<tokio::time::Sleep> {
    /// Stops [`STOP_MARGIN`] before Lambda's deadline (epoch milliseconds, 0 for none).
    pub fn until_deadline(request_id: String, deadline_epoch_ms: u64) -> Self {
        let budget = aws::budget_until(
            aws::deadline_instant(deadline_epoch_ms),
            STOP_MARGIN,
            MAX_RUN,
        );
        // The lease lasts exactly as long as Lambda lets this invocation live.
        let deadline = i64::try_from(deadline_epoch_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(|| {
                Utc::now()
                    + chrono::Duration::from_std(budget + STOP_MARGIN)
                        .unwrap_or(chrono::Duration::MAX)
            });
        Invocation {
            request_id,
            deadline,
            stop: tokio::time::sleep(budget),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct StreamOutput {
    /// The run id of everything this invocation enqueued (`None`: it did not stream).
    pub run_id: Option<String>,
    /// One per streaming sync.
    pub reports: Vec<RunReport>,
    /// Set when another invocation holds the lease: this one did nothing.
    pub busy: Option<Holder>,
    /// The next invocation was chained.
    pub tick_sent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamFailure {
    #[error(
        "the input is neither a tick (SQS event) nor the schedule's input: not an SQS event: {0}"
    )]
    NotAnSqsEvent(#[source] serde_json::Error),
    #[error("the input is neither a tick (SQS event) nor the schedule's input: {0}")]
    Input(#[source] serde_json::Error),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Sync failures, or what went wrong handing over; each sync's run report has its own.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invocation(Vec<Problem>),
}

/// One thing that went wrong in an invocation that streamed.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("sync {sync}: {source}")]
    Sync { sync: String, source: StreamError },
    /// It expires at this invocation's deadline anyway; the schedule then takes over.
    #[error("the lease was not given back: {0}")]
    LeaseNotReturned(LeaseError),
    #[error("the next invocation was not chained ({0}); the schedule starts one")]
    NotChained(TickError),
}

/// One invocation: take the lease, stream every `stream = true` sync until `stop`, report,
/// give the lease back, chain the next invocation.
pub async fn handle<S: Future<Output = ()> + Send>(
    state: &StreamState,
    invocation: Invocation<S>,
) -> Result<StreamOutput, StreamFailure> {
    let syncs: Vec<&SyncConfig> = state.config.syncs.iter().filter(|s| s.stream).collect();
    if syncs.is_empty() {
        // Nothing to subscribe to, so nothing to chain: the schedule keeps checking cheaply.
        info!("no sync has stream = true: nothing to stream");
        return Ok(StreamOutput::default());
    }
    let owner = invocation.request_id.as_str();
    match state
        .lease
        .acquire(owner, Utc::now(), invocation.deadline)
        .await
    {
        Ok(()) => {}
        Err(LeaseError::Held(holder)) => {
            info!(holder = %holder.owner, until = %holder.until, "another invocation streams: nothing to do");
            return Ok(StreamOutput {
                busy: Some(holder),
                ..StreamOutput::default()
            });
        }
        Err(e) => return Err(e.into()),
    }
    let started_at = Utc::now();
    let run_id = format!("{}-stream", new_run_id(started_at));
    let calls_before = state.client.usage().calls;
    let mut settings = StreamSettings::new(state.pubsub_endpoint.clone(), run_id.clone());
    settings.reconnect_after = state.reconnect_after;
    // Every version handed on is noted, so that polling counts what the stream missed.
    settings.ledger = Some(state.store.stream_ledger());
    let results = stream_syncs(
        &state.client,
        &syncs,
        &state.records_queue,
        &state.replays,
        &state.store,
        &settings,
        invocation.stop,
    )
    .await;

    let mut output = StreamOutput {
        run_id: Some(run_id.clone()),
        ..StreamOutput::default()
    };
    let mut problems = Vec::new();
    let mut ran_to_the_end = false;
    for (sync, result) in results {
        let report = match result {
            Ok(streamed) => {
                ran_to_the_end = true;
                info!(sync = %sync.name, events = streamed.events, records = streamed.records, messages = streamed.messages, ledger_unnoted = streamed.ledger_unnoted, "streamed");
                streamed.run_report(&run_id, &sync.name, started_at)
            }
            Err(e) => {
                error!(sync = %sync.name, error = %e, "the stream of this sync failed");
                let report = failed_run_report(&run_id, &sync.name, started_at, &e);
                problems.push(Problem::Sync {
                    sync: sync.name.clone(),
                    source: e,
                });
                report
            }
        };
        sfsync_pipeline::metrics::emit("stream", &sync.name, &report.counts, 0);
        // The replay ids are what the next invocation needs; a lost run report is not.
        if let Err(e) = state.store.put_run(&report).await {
            warn!(sync = %sync.name, error = %e, "run report not written");
        }
        output.reports.push(report);
    }
    // The syncs share one Salesforce client, so the calls are counted stage-wide.
    let calls = state.client.usage().calls.saturating_sub(calls_before);
    sfsync_pipeline::metrics::emit_stage_salesforce_calls("stream", calls);

    // Give the lease back before chaining, so the tick's invocation finds it free.
    if let Err(e) = state.lease.release(owner).await {
        // It expires at this invocation's deadline anyway; the schedule then takes over.
        problems.push(Problem::LeaseNotReturned(e));
    }
    if ran_to_the_end {
        match send_tick(state, owner).await {
            Ok(()) => output.tick_sent = true,
            Err(e) => problems.push(Problem::NotChained(e)),
        }
    }
    if problems.is_empty() {
        Ok(output)
    } else {
        Err(StreamFailure::Invocation(problems))
    }
}

/// The body of a tick: only its arrival matters; it names the invocation that sent it.
pub fn tick_body(sent_by: &str) -> String {
    json!({"v": 1, "tick": sent_by}).to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("queue {queue}: {message}")]
pub struct TickError {
    pub queue: String,
    /// The SDK's error with its causes.
    pub message: String,
}

async fn send_tick(state: &StreamState, sent_by: &str) -> Result<(), TickError> {
    state
        .sqs
        .send_message()
        .queue_url(&state.tick_queue_url)
        .message_body(tick_body(sent_by))
        .send()
        .await
        .map(drop)
        .map_err(|e| TickError {
            queue: state.tick_queue_url.clone(),
            message: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_event_is_a_tick_and_the_schedule_input_is_the_schedule() {
        let tick = json!({"Records": [{"messageId": "m1", "body": tick_body("req-0"), "eventSource": "aws:sqs"}]});
        assert_eq!(Trigger::of(tick).ok(), Some(Trigger::Tick));
        let scheduled = json!({"scheduledTime": "2026-12-02T22:00:00Z"});
        assert_eq!(Trigger::of(scheduled).ok(), Some(Trigger::Schedule));
        assert_eq!(Trigger::of(json!({})).ok(), Some(Trigger::Schedule));
    }

    #[test]
    fn an_unknown_input_is_an_error_naming_the_key() {
        let err = Trigger::of(json!({"syncs": ["contacts"]})).expect_err("unknown key");
        assert!(err.to_string().contains("syncs"), "{err}");
    }

    #[test]
    fn a_tick_is_answered_with_an_empty_batch_response() {
        let answer = Trigger::Tick.response(&StreamOutput {
            tick_sent: true,
            ..StreamOutput::default()
        });
        assert_eq!(answer, json!({"batchItemFailures": []}));
        let answer = Trigger::Schedule.response(&StreamOutput {
            tick_sent: true,
            ..StreamOutput::default()
        });
        assert_eq!(answer["tick_sent"], json!(true));
    }

    #[tokio::test]
    async fn an_invocation_stops_the_margin_before_its_deadline() {
        let deadline_ms = (Utc::now().timestamp_millis() + 600_000) as u64;
        let invocation = Invocation::until_deadline("req".into(), deadline_ms);
        let lease_ends = invocation.deadline.timestamp_millis() as u64;
        // The lease lasts until Lambda's deadline (give or take the clock's reading).
        assert!(
            lease_ends.abs_diff(deadline_ms) < 1_000,
            "{lease_ends} vs {deadline_ms}"
        );
        let stops_in = invocation.stop.deadline() - tokio::time::Instant::now();
        let expected = Duration::from_secs(600) - STOP_MARGIN;
        assert!(
            stops_in <= expected && stops_in + Duration::from_secs(1) > expected,
            "{stops_in:?}"
        );
    }
}
