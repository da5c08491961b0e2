//! The deliver stage on SQS, for the deliver Lambda: a batch of received messages is
//! delivered together (crate::deliver) and each message's settlement carried out on the
//! delivery queue, the dead-letter queue and the state table (crate::carrier, with
//! [`HostRules::SQS`]). A message that is not done with stays on the queue: its id is
//! returned for the Lambda's batch response, and one nothing of which went through is made
//! visible again after the wait it asked for.

use std::time::Instant;

use tracing::Instrument;

use crate::carrier::{Carrier, CarryError, HostRules, StoreTally};
use crate::deliver::{Deliverer, decode_delivery};
use crate::message::MessageError;
use crate::queue::SqsQueue;
use crate::state::StateStore;

/// One message as SQS handed it over (no Debug: the body carries personal data).
#[derive(Clone, Default)]
pub struct Received {
    pub message_id: String,
    pub receipt_handle: Option<String>,
    pub body: Option<String>,
}

/// Why a received message cannot be read: it stays on the queue (logged; its id is a batch
/// item failure). A message read and delivered but not done with says why in a
/// [`CarryError`].
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("message has no body")]
    NoBody,
    #[error(transparent)]
    Undecodable(#[from] MessageError),
}

/// The deliver Lambda's edges: its destinations, its two queues and the state table.
pub struct SqsDelivery<'a, S> {
    pub deliverer: &'a Deliverer,
    pub delivery_queue: &'a SqsQueue,
    pub dead_letter_queue: &'a SqsQueue,
    pub store: &'a S,
}

impl<S: StateStore> SqsDelivery<'_, S> {
    /// Delivers the batch within the time left before `deadline`; returns the ids of the
    /// messages left on the queue (undecodable ones first, then in the batch's order).
    pub async fn deliver_batch(
        &self,
        batch: Vec<Received>,
        deadline: Option<Instant>,
    ) -> Vec<String> {
        let mut left_ids = Vec::new();
        let mut received = Vec::with_capacity(batch.len());
        let mut messages = Vec::with_capacity(batch.len());
        for message in batch {
            let span = tracing::info_span!("deliver", message_id = %message.message_id);
            let decoded = message
                .body
                .as_deref()
                .ok_or(Unreadable::NoBody)
                .and_then(|b| Ok(decode_delivery(b)?));
            match decoded {
                Ok(decoded) => {
                    messages.push(decoded);
                    received.push((message.message_id, message.receipt_handle, span));
                }
                Err(left) => {
                    span.in_scope(|| tracing::warn!(reason = %left, "message left on the queue"));
                    left_ids.push(message.message_id);
                }
            }
        }
        let carrier = Carrier {
            queue: self.delivery_queue,
            dead_letters: self.dead_letter_queue,
            tally: &StoreTally(self.store),
            rules: HostRules::SQS,
        };
        let settlements = self.deliverer.deliver(messages, deadline).await;
        for ((id, receipt, span), settlement) in received.into_iter().zip(settlements) {
            if let Err(left) = carrier.carry_out(settlement).instrument(span.clone()).await {
                span.in_scope(|| tracing::warn!(reason = %left, "message left on the queue"));
                if let (CarryError::Unavailable { after, .. }, Some(receipt)) =
                    (&left, receipt.as_deref())
                {
                    self.delivery_queue.set_visibility(receipt, *after).await;
                }
                left_ids.push(id);
            }
        }
        left_ids
    }
}
