//! The deliver stage: a calls message → its destination. Delivered calls are done; dead
//! ones go to the dead-letter queue with their reason; retryable ones are handed back.
//!
//! Auth pauses: a destination that refuses our credentials (401/403) refuses every call,
//! through no fault of theirs. Those calls are `paused`, never dead: the host keeps them
//! (AWS: back on the queue with `paused_since`; locally: the run stops and the checkpoint
//! stays before them) until the key works again. Only when a message's pause has lasted
//! longer than [`AUTH_PAUSE_LIMIT`] are its calls dead-lettered, with the reason, so a key
//! nobody fixes does not keep them forever.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::Call;

use crate::message::{CallsMessage, DeadLetter, MESSAGE_VERSION, MessageError, decode};

/// After this many hand-backs a call is dead ("gave up"), so nothing loops forever.
pub const MAX_ATTEMPTS: u32 = 8;

/// How long a destination may refuse our credentials before the calls waiting for it are
/// dead-lettered: long enough to notice the alarm and rotate a key, short of SQS's
/// four-day retention.
pub const AUTH_PAUSE_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// What the deliver stage reads: a calls message, or a dead letter redriven from the
/// dead-letter queue after the cause was fixed (it is delivered again like a message of one).
pub fn decode_delivery(body: &str) -> Result<CallsMessage, MessageError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        reason: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_str(body)?;
    if probe.reason.is_some() {
        let dead: DeadLetter = decode(body)?;
        return Ok(CallsMessage {
            v: MESSAGE_VERSION,
            run_id: dead.run_id,
            destination: dead.destination,
            attempt: 0,
            paused_since: None,
            calls: vec![dead.call],
        });
    }
    decode(body)
}

#[derive(Debug, Default)]
pub struct DeliverOutput {
    pub delivered: u64,
    /// Delivered calls per sync, for the run reports (a message may mix syncs).
    pub delivered_by_sync: BTreeMap<String, u64>,
    /// Destination requests made. When several messages were delivered together, the
    /// shared requests are counted on the first message's output only, so sums stay right.
    pub requests: u64,
    pub dead: Vec<DeadLetter>,
    /// Calls to try again later, and how long to wait first.
    pub retry: Vec<Call>,
    pub retry_after: Option<Duration>,
    pub retry_reason: Option<String>,
    /// Calls held back because the destination refused our credentials: keep them queued
    /// (they are not retries: they keep their attempt count).
    pub paused: Vec<Call>,
    /// The destination's answer, "credentials rejected by <destination>: HTTP 401: …".
    pub pause_reason: Option<String>,
    /// Since when (unix ms) this message's calls have been paused: the message's own
    /// `paused_since`, or now for a first pause.
    pub paused_since: Option<i64>,
}

/// Delivers one calls message; see [`deliver_messages`].
pub async fn deliver_message(
    destination: &Destination,
    message: CallsMessage,
    budget: Duration,
) -> DeliverOutput {
    deliver_messages(destination, vec![message], budget)
        .await
        .pop()
        .unwrap_or_default()
}

/// Delivers the calls of several messages for one destination as one stream, so batches
/// fill across message boundaries (ten half-full messages cost the requests of five full
/// ones, not ten), then splits the outcomes back: one output per message, in order, each
/// judged by its own calls and its own attempt count, so a message's failure handling is
/// the same as if it had been delivered alone.
pub async fn deliver_messages(
    destination: &Destination,
    messages: Vec<CallsMessage>,
    budget: Duration,
) -> Vec<DeliverOutput> {
    deliver_messages_at(destination, messages, budget, Utc::now()).await
}

/// [`deliver_messages`] with the clock given (`now` judges how long auth pauses lasted).
pub async fn deliver_messages_at(
    destination: &Destination,
    messages: Vec<CallsMessage>,
    budget: Duration,
    now: DateTime<Utc>,
) -> Vec<DeliverOutput> {
    let mut spans = Vec::with_capacity(messages.len());
    let mut all_calls = Vec::with_capacity(messages.iter().map(|m| m.calls.len()).sum());
    for message in messages {
        spans.push((
            message.run_id,
            message.attempt,
            message.paused_since,
            message.calls.len(),
        ));
        all_calls.extend(message.calls);
    }
    let report = destination.deliver(all_calls, budget).await;
    let mut outcomes = report.outcomes.into_iter();
    let mut outputs = Vec::with_capacity(spans.len());
    let now_ms = now.timestamp_millis();
    let limit_ms = i64::try_from(AUTH_PAUSE_LIMIT.as_millis()).unwrap_or(i64::MAX);
    for (index, (run_id, attempt, paused_since, len)) in spans.into_iter().enumerate() {
        let mut out = DeliverOutput {
            requests: if index == 0 { report.requests } else { 0 },
            ..Default::default()
        };
        for outcome in outcomes.by_ref().take(len) {
            match outcome.outcome {
                Outcome::Delivered => {
                    out.delivered += 1;
                    *out.delivered_by_sync
                        .entry(outcome.call.source().sync.clone())
                        .or_default() += 1;
                }
                Outcome::Dead { reason } => out.dead.push(DeadLetter {
                    v: MESSAGE_VERSION,
                    run_id: run_id.clone(),
                    destination: destination.name().to_string(),
                    reason,
                    call: outcome.call,
                }),
                Outcome::RetryLater { reason, .. } if attempt + 1 >= MAX_ATTEMPTS => {
                    out.dead.push(DeadLetter {
                        v: MESSAGE_VERSION,
                        run_id: run_id.clone(),
                        destination: destination.name().to_string(),
                        reason: format!("gave up after {MAX_ATTEMPTS} attempts: {reason}"),
                        call: outcome.call,
                    })
                }
                Outcome::RetryLater { reason, after } => {
                    out.retry_reason.get_or_insert(reason);
                    if let Some(after) = after {
                        out.retry_after = Some(out.retry_after.map_or(after, |a| a.max(after)));
                    }
                    out.retry.push(outcome.call);
                }
                Outcome::Paused { reason } => {
                    let since = paused_since.unwrap_or(now_ms);
                    let reason =
                        format!("credentials rejected by {}: {reason}", destination.name());
                    if now_ms.saturating_sub(since) > limit_ms {
                        out.dead.push(DeadLetter {
                            v: MESSAGE_VERSION,
                            run_id: run_id.clone(),
                            destination: destination.name().to_string(),
                            reason: format!(
                                "{reason} (for longer than {} h, since {})",
                                AUTH_PAUSE_LIMIT.as_secs() / 3600,
                                DateTime::from_timestamp_millis(since)
                                    .map(|t| t.to_rfc3339())
                                    .unwrap_or_else(|| since.to_string())
                            ),
                            call: outcome.call,
                        });
                    } else {
                        out.pause_reason.get_or_insert(reason);
                        out.paused_since = Some(since);
                        out.paused.push(outcome.call);
                    }
                }
            }
        }
        outputs.push(out);
    }
    outputs
}
