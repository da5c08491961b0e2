//! The extract function: on a schedule, each sync's changes since its checkpoint go to the
//! records queue. Input (EventBridge Scheduler passes it as-is):
//! `{"scheduledTime": "…", "syncs": ["contacts"], "full": false}`, every key optional.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::extract::{ExtractError, ExtractSettings, extract_sync};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::report::{RunReport, RunStatus, new_run_id};
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_salesforce::{Client, ClientConfig};
use tracing::Instrument;

/// Clients and config, built once per cold start and borrowed by every invocation.
pub struct ExtractState {
    pub config: Arc<Config>,
    pub client: Client,
    pub queue: SqsQueue,
    pub store: DynamoStore,
}

impl ExtractState {
    /// Reads the secret and the sync config (`SFSYNC_SECRET_ID`), and builds the clients for
    /// `RECORDS_QUEUE_URL` and `STATE_TABLE`; fails with every problem listed.
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        env: &FunctionEnv,
    ) -> Result<ExtractState, SetupError> {
        let secrets =
            aws::load_secret(&aws_sdk_secretsmanager::Client::new(sdk), &env.secret_id).await?;
        let config = aws::function_config(&secrets)?;
        let max_message_bytes = config.pipeline.max_message_bytes;
        let client_config =
            ClientConfig::from_config(&config.salesforce).map_err(|e| SetupError::Config {
                source_name: "salesforce".into(),
                message: e.to_string(),
            })?;
        let client = Client::new(client_config).map_err(|e| SetupError::Config {
            source_name: "salesforce".into(),
            message: e.to_string(),
        })?;
        Ok(ExtractState {
            config: Arc::new(config),
            client,
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                FunctionEnv::need(&env.records_queue_url, "RECORDS_QUEUE_URL")?,
            )
            .with_max_batch_bytes(max_message_bytes),
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &env.state_table),
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

#[derive(Debug, Serialize)]
pub struct ExtractOutput {
    pub run_id: String,
    pub reports: Vec<RunReport>,
    /// Syncs another run was already extracting.
    pub busy: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractFailure {
    #[error("unknown sync(s) in the input: {0}")]
    UnknownSyncs(String),
    #[error("sync(s) failed: {0}")]
    Failed(String),
    #[error(transparent)]
    State(#[from] sfsync_pipeline::state::StateError),
}

/// One invocation: every selected sync in turn, each stopping safely before the deadline.
pub async fn handle(
    state: &ExtractState,
    input: ExtractInput,
    request_id: &str,
    deadline: Option<Instant>,
) -> Result<ExtractOutput, ExtractFailure> {
    let syncs: Vec<_> = match &input.syncs {
        None => state.config.syncs.iter().collect(),
        Some(names) => {
            let unknown: Vec<&str> = names
                .iter()
                .filter(|n| state.config.sync(n).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(ExtractFailure::UnknownSyncs(unknown.join(", ")));
            }
            state
                .config
                .syncs
                .iter()
                .filter(|s| names.contains(&s.name))
                .collect()
        }
    };
    let started_at: DateTime<Utc> = Utc::now();
    let run_id = new_run_id(started_at);
    let mut settings = ExtractSettings::new(format!("lambda:{request_id}"));
    settings.full = input.full;
    settings.lookback = Duration::from_secs(state.config.salesforce.lookback_seconds);
    settings.deadline = deadline;
    settings.max_body_bytes = state.config.pipeline.max_message_bytes;
    settings.compress = state.config.pipeline.compress;
    let mut output = ExtractOutput {
        run_id: run_id.clone(),
        reports: Vec::new(),
        busy: Vec::new(),
    };
    let mut failed = Vec::new();
    for sync in syncs {
        let span = tracing::info_span!("extract", run_id = %run_id, sync = %sync.name);
        // Instrumented while it awaits; entered only for the synchronous rest of the turn.
        let result = extract_sync(
            &state.client,
            sync,
            &state.queue,
            &state.store,
            &run_id,
            started_at,
            &settings,
        )
        .instrument(span.clone())
        .await;
        let _enter = span.enter();
        match result {
            Ok(report) => {
                tracing::info!(
                    status = %report.status,
                    extracted = report.counts.extracted,
                    messages = report.counts.messages,
                    api_calls = report.salesforce_api_calls,
                    "sync extracted"
                );
                sfsync_pipeline::metrics::emit(
                    "extract",
                    &sync.name,
                    &report.counts,
                    report.salesforce_api_calls,
                );
                let stop = matches!(report.status, RunStatus::ApiLimit | RunStatus::Partial);
                if report.status == RunStatus::Failed {
                    failed.push(format!(
                        "{}: {}",
                        sync.name,
                        report.error.clone().unwrap_or_default()
                    ));
                }
                output.reports.push(report);
                // The API limit is org-wide and the deadline is ours: the other syncs wait
                // for the next invocation.
                if stop {
                    break;
                }
            }
            Err(ExtractError::LeaseHeld(e)) => {
                tracing::warn!(error = %e, "sync skipped: another run holds its lease");
                output.busy.push(sync.name.clone());
            }
            Err(ExtractError::State(e)) => return Err(e.into()),
        }
    }
    if failed.is_empty() {
        Ok(output)
    } else {
        Err(ExtractFailure::Failed(failed.join("; ")))
    }
}
