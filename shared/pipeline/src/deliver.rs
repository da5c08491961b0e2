//! The deliver stage: a calls message → its destination. Delivered calls are done; dead
//! ones go to the dead-letter queue with their reason; retryable ones are handed back.

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
    pub requests: u64,
    pub dead: Vec<DeadLetter>,
    /// Calls to try again later, and how long to wait first.
    pub retry: Vec<Call>,
    pub retry_after: Option<Duration>,
    pub retry_reason: Option<String>,
}

pub async fn deliver_message(
    destination: &Destination,
    message: CallsMessage,
    budget: Duration,
) -> DeliverOutput {
    let attempt = message.attempt;
    let run_id = message.run_id.clone();
    let report = destination.deliver(message.calls, budget).await;
    let mut out = DeliverOutput {
        requests: report.requests,
        retry_after: report.max_retry_after(),
        ..Default::default()
    };
    for outcome in report.outcomes {
        match outcome.outcome {
            Outcome::Delivered => out.delivered += 1,
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
            Outcome::RetryLater { reason, .. } => {
                out.retry_reason.get_or_insert(reason);
                out.retry.push(outcome.call);
            }
        }
    }
    out
}
