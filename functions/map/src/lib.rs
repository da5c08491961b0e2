//! The map function: records messages from the records queue → calls messages on the
//! delivery queue. The stage is `sfsync_pipeline::map::run_map_stage`; this is its wiring.
//! Each SQS message is handled on its own: a malformed one fails alone (and reaches the
//! dead-letter queue after maxReceiveCount).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::map::run_map_stage;
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::state::dynamo::DynamoStore;
use tracing::Instrument;

pub struct MapState {
    pub config: Arc<Config>,
    pub delivery_queue: SqsQueue,
    pub store: DynamoStore,
}

impl MapState {
    /// Needs the secret, `DELIVERY_QUEUE_URL` and `STATE_TABLE`.
    pub async fn new(sdk: &aws_config::SdkConfig, env: &FunctionEnv) -> Result<Self, SetupError> {
        let secrets =
            aws::load_secret(&aws_sdk_secretsmanager::Client::new(sdk), &env.secret_id).await?;
        let config = aws::function_config(&secrets)?;
        let url = FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL")?;
        Ok(MapState {
            delivery_queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url)
                .with_pipeline(&config.pipeline),
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
        let Some(id) = message.message_id.filter(|id| !id.is_empty()) else {
            // Reporting an empty identifier would fail the batch anyway; say why.
            return Err(MapFailure::NoMessageId);
        };
        // Instrumented, not entered: a span entered across an await would be attributed to
        // whatever else the runtime polls on this thread meanwhile.
        let span = tracing::info_span!("map", message_id = %id);
        let body = message.body.as_deref();
        let stage = run_map_stage(&state.config, body, &state.delivery_queue, &state.store);
        if let Err(e) = stage.instrument(span.clone()).await {
            span.in_scope(|| tracing::error!(error = %e, "message not mapped; it will be retried"));
            response.add_failure(id);
        }
    }
    Ok(response)
}
