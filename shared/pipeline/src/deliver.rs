//! The deliver stage: a calls message → its destination. Delivered calls are done; dead
//! ones go to the dead-letter queue with their reason; retryable ones are handed back.

use std::collections::BTreeMap;
use std::time::Duration;

use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::Call;

use crate::message::{CallsMessage, DeadLetter, MESSAGE_VERSION, MessageError, decode};

/// After this many hand-backs a call is dead ("gave up"), so nothing loops forever.
pub const MAX_ATTEMPTS: u32 = 8;

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
    let mut spans = Vec::with_capacity(messages.len());
    let mut all_calls = Vec::with_capacity(messages.iter().map(|m| m.calls.len()).sum());
    for message in messages {
        spans.push((message.run_id, message.attempt, message.calls.len()));
        all_calls.extend(message.calls);
    }
    let report = destination.deliver(all_calls, budget).await;
    let mut outcomes = report.outcomes.into_iter();
    let mut outputs = Vec::with_capacity(spans.len());
    for (index, (run_id, attempt, len)) in spans.into_iter().enumerate() {
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
            }
        }
        outputs.push(out);
    }
    outputs
}
