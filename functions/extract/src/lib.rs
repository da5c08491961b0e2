//! The extract function: on a schedule, each sync's changes since its checkpoint go to the
//! records queue. Input (EventBridge Scheduler passes it as-is):
//! `{"scheduledTime": "…", "syncs": ["contacts"], "full": false}`, every key optional.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde::Deserialize;
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{FunctionEnv, SetupError};
use sfsync_pipeline::extract::{Clock, SystemClock};
use sfsync_pipeline::extract_syncs::{extract_syncs, invocation_settings, select_syncs};
use sfsync_pipeline::lambda;
// The invocation's output and failures, as the Lambda returns them.
pub use sfsync_pipeline::extract_syncs::{ExtractFailure, ExtractOutput, NotRun, StopReason};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::report::new_run_id;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_salesforce::Client;

/// Clients and config, built once per cold start and borrowed by every invocation.
pub struct ExtractState {
    pub config: Arc<Config>,
    pub client: Client,
    pub queue: SqsQueue,
    pub store: DynamoStore,
    /// What the invocation's deadline is measured against: the system clock; tests put a
    /// `ManualClock` here to run out of time deterministically.
    pub clock: Arc<dyn Clock>,
}

impl ExtractState {
    /// Reads the secret and the sync config (`SFSYNC_SECRET_ID`), and builds the clients for
    /// `RECORDS_QUEUE_URL` and `STATE_TABLE`; fails with every problem listed.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        env: &FunctionEnv,
    ) -> Result<ExtractState, SetupError> {
        let config = lambda::load_config(sdk, env).await?;
        let client = lambda::salesforce_client(sdk, env, &config.salesforce)?;
        Ok(ExtractState {
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                FunctionEnv::need(&env.records_queue_url, "RECORDS_QUEUE_URL")?,
            )
            .with_pipeline(&config.pipeline),
            config: Arc::new(config),
            client,
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
            clock: Arc::new(SystemClock),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractInput {
    #[serde(default, rename = "scheduledTime")]
    pub scheduled_time: Option<String>,
    /// Only these syncs (default: all).
    #[serde(default)]
    pub syncs: Option<Vec<String>>,
    /// Ignore checkpoints: extract everything again (a replay).
    #[serde(default)]
    pub full: bool,
}

/// One invocation: every selected sync in turn, each stopping safely before the deadline
/// (`sfsync_pipeline::extract_syncs` holds the order and the stop-the-others rule).
pub async fn handle(
    state: &ExtractState,
    input: ExtractInput,
    request_id: &str,
    deadline: Option<Instant>,
) -> Result<ExtractOutput, ExtractFailure> {
    let syncs = select_syncs(&state.config, input.syncs.as_deref())?;
    let started_at = Utc::now();
    let settings = invocation_settings(
        &state.config,
        format!("lambda:{request_id}"),
        input.full,
        deadline,
        state.clock.clone(),
        state.store.stream_ledger(),
    );
    extract_syncs(
        &state.client,
        syncs,
        &state.queue,
        &state.store,
        &new_run_id(started_at),
        started_at,
        &settings,
    )
    .await
}
