//! The deliver function: calls messages from the delivery queue → their destinations. The
//! pipeline delivers the batch and carries out what becomes of each message on SQS
//! (sfsync_pipeline::deliver_sqs); this handler translates the SQS event and the messages
//! left on the queue into Lambda's batch response.

use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use sfsync_pipeline::aws::{FunctionEnv, SetupError};
use sfsync_pipeline::deliver::{DeliverPolicy, Deliverer};
use sfsync_pipeline::deliver_sqs::{Received, SqsDelivery};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::state::dynamo::DynamoStore;

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
        let config = sfsync_pipeline::lambda::load_config(sdk, env).await?;
        let deliverer = Deliverer::from_config(&config, DeliverPolicy::lambda())?;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let queue = |url| SqsQueue::new(sqs.clone(), url).with_pipeline(&config.pipeline);
        let delivery = FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL")?;
        let dead = FunctionEnv::need(&env.dead_letter_queue_url, "DEAD_LETTER_QUEUE_URL")?;
        Ok(DeliverState {
            deliverer,
            delivery_queue: queue(delivery),
            dead_letter_queue: queue(dead),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
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
    // Every record needs an id before anything is sent: without one, no partial failure can
    // be reported, and the whole batch must come back.
    if event
        .records
        .iter()
        .any(|m| m.message_id.as_deref().is_none_or(str::is_empty))
    {
        return Err(DeliverFailure::NoMessageId);
    }
    let batch = event.records.into_iter().map(|record| Received {
        message_id: record.message_id.unwrap_or_default(),
        receipt_handle: record.receipt_handle,
        body: record.body,
    });
    let delivery = SqsDelivery {
        deliverer: &state.deliverer,
        delivery_queue: &state.delivery_queue,
        dead_letter_queue: &state.dead_letter_queue,
        store: &state.store,
    };
    let mut response = SqsBatchResponse::default();
    for id in delivery.deliver_batch(batch.collect(), deadline).await {
        response.add_failure(id);
    }
    Ok(response)
}
