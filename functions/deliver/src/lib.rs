//! The deliver function: calls messages from the delivery queue → their destinations. The
//! deliver stage (sfsync_pipeline::deliver) decides what becomes of each message; this
//! handler carries its settlement out on SQS: counts to the state table and metrics, dead
//! letters to the dead-letter queue, paused and retried calls back on the delivery queue
//! (delayed), and a message nothing of which went through left on the queue, visible again
//! after the wait it asked for.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::dead_letter::{DeadLetterError, DeadLetterSink};
use sfsync_pipeline::deliver::{DeliverPolicy, Deliverer, Settlement, decode_delivery};
use sfsync_pipeline::message::CallsMessage;
use sfsync_pipeline::message::MessageError;
use sfsync_pipeline::queue::{Queue, SendError, SqsQueue};
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use tracing::Instrument;

pub struct DeliverState {
    pub deliverer: Deliverer,
    pub delivery_queue: SqsQueue,
    pub dead_letter_queue: SqsQueue,
    pub store: DynamoStore,
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
        let deliverer = Deliverer::from_config(&config, DeliverPolicy::lambda()).map_err(|e| {
            SetupError::Config {
                source_name: "destinations".into(),
                message: e.to_string(),
            }
        })?;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let (bytes, compress) = (
            config.pipeline.max_message_bytes,
            sfsync_pipeline::message::Compression::of(&config.pipeline),
        );
        let delivery = FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL")?;
        let dead = FunctionEnv::need(&env.dead_letter_queue_url, "DEAD_LETTER_QUEUE_URL")?;
        Ok(DeliverState {
            deliverer,
            delivery_queue: SqsQueue::new(sqs.clone(), delivery)
                .with_message_limits(bytes, compress),
            dead_letter_queue: SqsQueue::new(sqs, dead).with_message_limits(bytes, compress),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverFailure {
    #[error("an SQS record has no messageId: the whole batch is retried")]
    NoMessageId,
}

/// Why a message stays on the queue (it is reported as a batch item failure).
#[derive(Debug, thiserror::Error)]
enum Left {
    #[error("message has no body")]
    NoBody,
    #[error(transparent)]
    Undecodable(#[from] MessageError),
    #[error("nothing went through ({reason}); visible again in {} s", after.as_secs())]
    Unavailable { reason: String, after: Duration },
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("cannot put {calls} call(s) back on the queue: {source}")]
    Requeue {
        calls: usize,
        source: Box<SendError<CallsMessage>>,
    },
}

pub async fn handle(
    state: &DeliverState,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> Result<SqsBatchResponse, DeliverFailure> {
    // Every record needs an id before anything is sent: without one, no partial failure can
    // be reported, and the whole batch must come back.
    if event
        .records
        .iter()
        .any(|m| m.message_id.as_deref().is_none_or(str::is_empty))
    {
        return Err(DeliverFailure::NoMessageId);
    }
    let mut response = SqsBatchResponse::default();
    let mut received = Vec::with_capacity(event.records.len());
    let mut messages = Vec::with_capacity(event.records.len());
    for record in event.records {
        let id = record.message_id.unwrap_or_default();
        let span = tracing::info_span!("deliver", message_id = %id);
        let decoded = record
            .body
            .as_deref()
            .ok_or(Left::NoBody)
            .and_then(|b| Ok(decode_delivery(b)?));
        match decoded {
            Ok(message) => {
                messages.push(message);
                received.push((id, record.receipt_handle, span));
            }
            Err(left) => {
                span.in_scope(|| tracing::warn!(reason = %left, "message left on the queue"));
                response.add_failure(id);
            }
        }
    }
    let settlements = state.deliverer.deliver(messages, deadline).await;
    for ((id, receipt, span), settlement) in received.into_iter().zip(settlements) {
        if let Err(left) = carry_out(state, settlement).instrument(span.clone()).await {
            span.in_scope(|| tracing::warn!(reason = %left, "message left on the queue"));
            if let (Left::Unavailable { after, .. }, Some(receipt)) = (&left, receipt.as_deref()) {
                state.delivery_queue.set_visibility(receipt, *after).await;
            }
            response.add_failure(id);
        }
    }
    Ok(response)
}

/// One settlement on SQS; an `Err` leaves the message on the queue.
async fn carry_out(state: &DeliverState, settlement: Settlement) -> Result<(), Left> {
    for (sync, counts) in &settlement.counts {
        sfsync_pipeline::metrics::emit("deliver", sync, counts, 0);
        // Counters are best effort: a lost increment must not re-send the calls.
        if let Err(e) = state
            .store
            .add_counts(&settlement.run_id, sync, counts)
            .await
        {
            tracing::warn!(error = %e, "run counters not updated");
        }
    }
    state.dead_letter_queue.write(&settlement.dead).await?;
    if let Some(paused) = settlement.paused {
        let calls = paused.message.calls.len();
        tracing::error!(destination = %settlement.destination, calls, reason = %paused.reason,
            "destination paused: credentials rejected; calls kept on the queue");
        for line in sfsync_pipeline::metrics::paused_lines(&settlement.destination, calls as u64) {
            println!("{line}");
        }
        state
            .delivery_queue
            .send(paused.message, Some(paused.recheck))
            .await
            .map_err(|source| Left::Requeue {
                calls,
                source: Box::new(source),
            })?;
    }
    match settlement.retry {
        Some(retry) if retry.whole => Err(Left::Unavailable {
            reason: retry.reason,
            after: retry.after,
        }),
        Some(retry) => {
            let calls = retry.message.calls.len();
            state
                .delivery_queue
                .send(retry.message, Some(retry.after))
                .await
                .map(|_| ())
                .map_err(|source| Left::Requeue {
                    calls,
                    source: Box::new(source),
                })
        }
        None => Ok(()),
    }
}
