//! The deliver function: calls messages from the delivery queue → their destination.
//! - delivered calls are done;
//! - dead calls (permanent errors, oversize, too many attempts) go to the dead-letter queue
//!   with their reason, and the message is acknowledged;
//! - the calls of all messages of one event for the same destination are delivered
//!   together, so batches fill across message boundaries; outcomes are then judged per
//!   message, as if each had been delivered alone;
//! - retryable calls: when nothing of a message went through, the message itself is reported
//!   failed and its visibility timeout set to honour Retry-After (SQS redrives it to the
//!   dead-letter queue after maxReceiveCount); when some went through, only the rest is
//!   enqueued again, delayed, so delivered calls are not sent twice.
//! - paused calls (the destination refused our credentials, 401/403): a `DestinationPaused`
//!   metric (the template alarms on it) and an error log line, and the calls go back on the
//!   delivery queue with `paused_since` and the longest delay SQS allows, so the destination
//!   is tried again every 15 minutes and delivery resumes by itself once the key works. They
//!   are put back rather than left in flight with a longer visibility timeout because a left
//!   message counts a receive each time: after `DeliveryMaxReceiveCount` receives (10, a
//!   few hours) SQS would move it to the dead-letter queue without a reason, long before
//!   `AUTH_PAUSE_LIMIT` (24 h), and its body could not record when the pause began. Auth
//!   pauses do not count as attempts; after 24 h the calls are dead-lettered with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use sfsync_destinations::Destination;
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::deliver::{DeliverOutput, decode_delivery, deliver_messages};

/// How long paused calls wait on the queue before the destination is tried again: SQS's
/// longest message delay (15 minutes).
pub const PAUSE_RECHECK: Duration = Duration::from_secs(900);
use sfsync_pipeline::message::{CallsMessage, DeadLetter, MESSAGE_VERSION, Packer};
use sfsync_pipeline::queue::{Queue, SqsQueue};
use sfsync_pipeline::report::RunCounts;
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use tracing::Instrument;

pub struct DeliverState {
    pub config: Arc<Config>,
    pub destinations: HashMap<String, Destination>,
    pub sqs: aws_sdk_sqs::Client,
    pub delivery_queue: SqsQueue,
    pub dead_letter_queue: SqsQueue,
    pub store: DynamoStore,
    /// Longest a single message may spend retrying inside one invocation.
    pub max_budget: Duration,
    /// How long paused calls wait on the queue before the next try ([`PAUSE_RECHECK`]).
    pub pause_recheck: Duration,
}

impl DeliverState {
    /// Needs the secret, `DELIVERY_QUEUE_URL`, `DEAD_LETTER_QUEUE_URL` and `STATE_TABLE`;
    /// builds every destination once.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        env: &FunctionEnv,
    ) -> Result<DeliverState, SetupError> {
        let secrets =
            aws::load_secret(&aws_sdk_secretsmanager::Client::new(sdk), &env.secret_id).await?;
        let config = aws::function_config(&secrets)?;
        // No redirects (a redirected POST would become a GET); each request's timeout is the
        // destination engine's.
        let http = sfsync_destinations::http_client().map_err(|e| SetupError::Config {
            source_name: "http".into(),
            message: e.to_string(),
        })?;
        let names = sfsync_destinations::object_names(&config);
        let mut destinations = HashMap::new();
        for d in &config.destinations {
            let built = Destination::with_object_names(d, http.clone(), &names).map_err(|e| {
                SetupError::Config {
                    source_name: format!("destination {}", d.name),
                    message: e.to_string(),
                }
            })?;
            destinations.insert(d.name.clone(), built);
        }
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let bytes = config.pipeline.max_message_bytes;
        Ok(DeliverState {
            config: Arc::new(config),
            destinations,
            delivery_queue: SqsQueue::new(
                sqs.clone(),
                FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL")?,
            )
            .with_max_batch_bytes(bytes),
            dead_letter_queue: SqsQueue::new(
                sqs.clone(),
                FunctionEnv::need(&env.dead_letter_queue_url, "DEAD_LETTER_QUEUE_URL")?,
            )
            .with_max_batch_bytes(bytes),
            sqs,
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
            max_budget: Duration::from_secs(120),
            pause_recheck: PAUSE_RECHECK,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverFailure {
    #[error("an SQS record has no messageId: the whole batch is retried")]
    NoMessageId,
}

pub async fn handle(
    state: &DeliverState,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> Result<SqsBatchResponse, DeliverFailure> {
    let mut response = SqsBatchResponse::default();
    // Every record needs an id before anything is sent: without one, no partial failure can
    // be reported, and the whole batch must come back.
    let mut ids = Vec::with_capacity(event.records.len());
    for message in &event.records {
        match message.message_id.clone().filter(|id| !id.is_empty()) {
            Some(id) => ids.push(id),
            None => return Err(DeliverFailure::NoMessageId),
        }
    }
    // Decode every message, then deliver the calls of all messages for one destination
    // together: their batches fill across message boundaries, so an event of ten messages
    // costs what its calls need, not at least one request per message.
    let mut groups: Vec<(String, Vec<(Head<'_>, CallsMessage)>)> = Vec::new();
    for (message, id) in event.records.iter().zip(ids) {
        let span = tracing::info_span!("deliver", message_id = %id);
        let decoded = match message.body.as_deref() {
            None => Err(failed("message has no body")),
            Some(body) => decode_delivery(body).map_err(|e| failed(e.to_string())),
        };
        let calls = match decoded {
            Ok(calls) => calls,
            Err(failure) => {
                conclude(state, &mut response, id, message, span, Err(failure)).await;
                continue;
            }
        };
        if !state.destinations.contains_key(&calls.destination) {
            // The destination was removed from the config: these calls can never go.
            let result = dead_letter_unknown(state, calls)
                .instrument(span.clone())
                .await;
            conclude(state, &mut response, id, message, span, result).await;
            continue;
        }
        let head = Head {
            id,
            message,
            span,
            run_id: calls.run_id.clone(),
            attempt: calls.attempt,
            first_sync: calls.calls.first().map(|c| c.source().sync.clone()),
        };
        match groups.iter_mut().find(|(d, _)| *d == calls.destination) {
            Some((_, group)) => group.push((head, calls)),
            None => groups.push((calls.destination.clone(), vec![(head, calls)])),
        }
    }
    for (name, group) in groups {
        let destination = &state.destinations[&name];
        let budget = aws::budget_until(deadline, Duration::from_secs(10), state.max_budget);
        let (heads, messages): (Vec<Head<'_>>, Vec<CallsMessage>) = group.into_iter().unzip();
        let group_span =
            tracing::info_span!("deliver_batch", destination = %name, messages = messages.len());
        let outputs = deliver_messages(destination, messages, budget)
            .instrument(group_span)
            .await;
        for (head, out) in heads.into_iter().zip(outputs) {
            let result = settle(state, &name, &head, out)
                .instrument(head.span.clone())
                .await;
            conclude(
                state,
                &mut response,
                head.id,
                head.message,
                head.span,
                result,
            )
            .await;
        }
    }
    Ok(response)
}

/// What settling a message needs once its calls went out with the others'.
struct Head<'a> {
    id: String,
    message: &'a SqsMessage,
    span: tracing::Span,
    run_id: String,
    attempt: u32,
    /// The sync the message's share of the destination requests is counted under.
    first_sync: Option<String>,
}

/// A failed message stays on the queue: its id goes into the batch response, and the wait
/// it asked for (Retry-After) is set as its visibility timeout.
async fn conclude(
    state: &DeliverState,
    response: &mut SqsBatchResponse,
    id: String,
    message: &SqsMessage,
    span: tracing::Span,
    result: Result<(), Failed>,
) {
    if let Err(failure) = result {
        report_failure(state, message, failure)
            .instrument(span)
            .await;
        response.add_failure(id);
    }
}

struct Failed {
    reason: String,
    /// Make the message visible again after this long (Retry-After).
    visibility: Option<Duration>,
}

fn failed(reason: impl Into<String>) -> Failed {
    Failed {
        reason: reason.into(),
        visibility: None,
    }
}

/// Logs why a message stays on the queue and honours the wait it asked for.
async fn report_failure(state: &DeliverState, message: &SqsMessage, failure: Failed) {
    tracing::warn!(reason = %failure.reason, "message left on the queue");
    if let (Some(after), Some(receipt)) = (failure.visibility, message.receipt_handle.as_deref()) {
        set_visibility(state, receipt, after).await;
    }
}

async fn dead_letter_unknown(state: &DeliverState, calls: CallsMessage) -> Result<(), Failed> {
    let dead: Vec<DeadLetter> = calls
        .calls
        .into_iter()
        .map(|call| DeadLetter {
            v: MESSAGE_VERSION,
            run_id: calls.run_id.clone(),
            destination: calls.destination.clone(),
            reason: format!("destination {:?} is not in the config", calls.destination),
            call,
        })
        .collect();
    send_dead(state, &dead).await
}

/// What becomes of one message once its calls were delivered (with others): counts, dead
/// letters, and for retryable calls either the message left on the queue (nothing of it
/// went through) or only the rest enqueued again, delayed, so delivered calls are not
/// repeated.
async fn settle(
    state: &DeliverState,
    dest_name: &str,
    head: &Head<'_>,
    out: DeliverOutput,
) -> Result<(), Failed> {
    let (run_id, attempt) = (head.run_id.as_str(), head.attempt);
    record_counts(state, run_id, head.first_sync.as_deref(), &out).await;
    send_dead(state, &out.dead).await?;
    hold_paused(state, dest_name, head, &out).await?;
    if out.retry.is_empty() {
        return Ok(());
    }
    let wait = out.retry_after.unwrap_or(Duration::from_secs(30));
    if out.delivered == 0 && out.dead.is_empty() && out.paused.is_empty() {
        // Nothing went through: leave the message where it is, visible again after the wait.
        return Err(Failed {
            reason: out
                .retry_reason
                .unwrap_or_else(|| "destination unavailable".into()),
            visibility: Some(wait),
        });
    }
    let mut packer = Packer::new(
        Packer::calls_prefix(run_id, dest_name, attempt + 1),
        state.config.pipeline.max_message_bytes,
        state.config.pipeline.compress,
    );
    for call in &out.retry {
        packer.push(call).map_err(|e| failed(e.to_string()))?;
    }
    let bodies: Vec<String> = packer
        .finish()
        .map_err(|e| failed(e.to_string()))?
        .into_iter()
        .map(|b| b.body)
        .collect();
    state
        .delivery_queue
        .send(bodies, Some(wait))
        .await
        .map_err(|e| failed(format!("cannot re-enqueue {} calls: {e}", out.retry.len())))
}

/// Paused calls (credentials refused) go back on the queue with `paused_since`, delayed by
/// [`PAUSE_RECHECK`], keeping their attempt count; the pause is counted as a metric.
async fn hold_paused(
    state: &DeliverState,
    dest_name: &str,
    head: &Head<'_>,
    out: &DeliverOutput,
) -> Result<(), Failed> {
    let (Some(since), false) = (out.paused_since, out.paused.is_empty()) else {
        return Ok(());
    };
    tracing::error!(
        destination = %dest_name,
        calls = out.paused.len(),
        reason = %out.pause_reason.as_deref().unwrap_or_default(),
        "destination paused: credentials rejected; calls kept on the queue"
    );
    for line in sfsync_pipeline::metrics::paused_lines(dest_name, out.paused.len() as u64) {
        println!("{line}");
    }
    let mut packer = Packer::new(
        Packer::paused_calls_prefix(&head.run_id, dest_name, head.attempt, since),
        state.config.pipeline.max_message_bytes,
        state.config.pipeline.compress,
    );
    for call in &out.paused {
        packer.push(call).map_err(|e| failed(e.to_string()))?;
    }
    let bodies: Vec<String> = packer
        .finish()
        .map_err(|e| failed(e.to_string()))?
        .into_iter()
        .map(|b| b.body)
        .collect();
    state
        .delivery_queue
        .send(bodies, Some(state.pause_recheck))
        .await
        .map_err(|e| {
            failed(format!(
                "cannot hold {} paused calls: {e}",
                out.paused.len()
            ))
        })
}

async fn record_counts(
    state: &DeliverState,
    run_id: &str,
    first_sync: Option<&str>,
    out: &DeliverOutput,
) {
    // Attribute per sync from the calls themselves; the requests, shared by the calls of a
    // batch, go to the sync of the message's first call.
    let mut by_sync: HashMap<&str, RunCounts> = HashMap::new();
    for (sync, delivered) in &out.delivered_by_sync {
        by_sync.entry(sync.as_str()).or_default().delivered += delivered;
    }
    for dead in &out.dead {
        by_sync
            .entry(dead.call.source().sync.as_str())
            .or_default()
            .dead += 1;
    }
    for call in &out.retry {
        by_sync
            .entry(call.source().sync.as_str())
            .or_default()
            .retried += 1;
    }
    if let Some(first) = first_sync
        && out.requests > 0
    {
        by_sync.entry(first).or_default().destination_requests += out.requests;
    }
    for (sync, counts) in by_sync {
        sfsync_pipeline::metrics::emit("deliver", sync, &counts, 0);
        if let Err(e) = state.store.add_counts(run_id, sync, &counts).await {
            tracing::warn!(error = %e, "run counters not updated");
        }
    }
}

async fn send_dead(state: &DeliverState, dead: &[DeadLetter]) -> Result<(), Failed> {
    if dead.is_empty() {
        return Ok(());
    }
    for letter in dead {
        tracing::error!(
            destination = %letter.destination,
            record_id = %letter.call.source().record_id,
            message_id = %letter.call.message_id,
            reason = %letter.reason,
            "call dead-lettered"
        );
    }
    let bodies = dead
        .iter()
        .map(|d| serde_json::to_string(d).map_err(|e| failed(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .dead_letter_queue
        .send(bodies, None)
        .await
        .map_err(|e| failed(format!("cannot dead-letter {} calls: {e}", dead.len())))
}

async fn set_visibility(state: &DeliverState, receipt: &str, after: Duration) {
    let seconds = after.as_secs().clamp(1, 12 * 3600) as i32;
    if let Err(e) = state
        .sqs
        .change_message_visibility()
        .queue_url(state.delivery_queue.url())
        .receipt_handle(receipt)
        .visibility_timeout(seconds)
        .send()
        .await
    {
        tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot extend the visibility timeout");
    }
}
