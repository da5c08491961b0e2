//! The map function: records messages from the records queue → calls messages on the
//! delivery queue, one stream per destination. Each SQS message is handled on its own: a
//! malformed one fails alone (and reaches the dead-letter queue after maxReceiveCount).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::map::map_message;
use sfsync_pipeline::message::{RecordsMessage, decode};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use tracing::Instrument;

pub struct MapState {
    pub config: Arc<Config>,
    pub delivery_queue: SqsQueue,
    pub store: DynamoStore,
}

impl MapState {
    /// Needs the secret, `DELIVERY_QUEUE_URL` and `STATE_TABLE`.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        env: &FunctionEnv,
    ) -> Result<MapState, SetupError> {
        let secrets =
            aws::load_secret(&aws_sdk_secretsmanager::Client::new(sdk), &env.secret_id).await?;
        let config = aws::function_config(&secrets)?;
        Ok(MapState {
            delivery_queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL")?,
            )
            .with_max_batch_bytes(config.pipeline.max_message_bytes),
            config: Arc::new(config),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MapFailure {
    #[error("an SQS record has no messageId: the whole batch is retried")]
    NoMessageId,
}

/// One invocation: every message mapped and forwarded, or reported as a batch item failure.
pub async fn handle(state: &MapState, event: SqsEvent) -> Result<SqsBatchResponse, MapFailure> {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let Some(id) = message.message_id.clone().filter(|id| !id.is_empty()) else {
            // Reporting an empty identifier would fail the batch anyway; say why.
            return Err(MapFailure::NoMessageId);
        };
        // Instrumented, not entered: a span entered across an await would be attributed to
        // whatever else the runtime polls on this thread meanwhile.
        let span = tracing::info_span!("map", message_id = %id);
        if let Err(e) = handle_one(state, &message).instrument(span.clone()).await {
            span.in_scope(|| tracing::error!(error = %e, "message not mapped; it will be retried"));
            response.add_failure(id);
        }
    }
    Ok(response)
}

async fn handle_one(state: &MapState, message: &SqsMessage) -> Result<(), String> {
    let body = message.body.as_deref().ok_or("message has no body")?;
    let records: RecordsMessage = decode(body).map_err(|e| e.to_string())?;
    let (run_id, sync) = (records.run_id.clone(), records.sync.clone());
    let pipeline = &state.config.pipeline;
    let output = map_message(
        &state.config,
        records,
        pipeline.max_message_bytes,
        pipeline.compress,
    )
    .map_err(|e| e.to_string())?;
    for line in &output.skipped {
        tracing::warn!(run_id = %run_id, sync = %sync, "skipped {line}");
    }
    for bodies in output.bodies.into_values() {
        state
            .delivery_queue
            .send_bodies(bodies, None)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Counters are best effort: a lost increment must not re-send the records.
    if let Err(e) = state.store.add_counts(&run_id, &sync, &output.counts).await {
        tracing::warn!(error = %e, "run counters not updated");
    }
    tracing::info!(run_id = %run_id, sync = %sync, mapped = output.counts.mapped, skipped = output.counts.skipped, "mapped");
    sfsync_pipeline::metrics::emit("map", &sync, &output.counts, 0);
    Ok(())
}
