//! The extract function: on a schedule, each sync's changes since its checkpoint go to the
//! records queue. Input (EventBridge Scheduler passes it as-is):
//! `{"scheduledTime": "…", "syncs": ["contacts"], "full": false}`, every key optional.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sfsync_mapping::Config;
use sfsync_pipeline::aws::{self, FunctionEnv, SetupError};
use sfsync_pipeline::extract::{Clock, ExtractError, ExtractSettings, SystemClock, extract_sync};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::report::{RunReport, RunStatus, new_run_id};
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_pipeline::token_store::SecretTokenStore;
use sfsync_salesforce::{Client, ClientConfig};
use tracing::Instrument;

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
        let secrets_manager = aws_sdk_secretsmanager::Client::new(sdk);
        let secrets = aws::load_secret(&secrets_manager, &env.secret_id).await?;
        let config = aws::function_config(&secrets)?;
        let (max_message_bytes, compress) =
            (config.pipeline.max_message_bytes, config.pipeline.compress);
        let client_config =
            ClientConfig::from_config(&config.salesforce).map_err(|e| SetupError::Config {
                source_name: "salesforce".into(),
                message: e.to_string(),
            })?;
        // A rotated refresh token is kept in the function's own secret, for the next cold
        // start and for concurrent invocations (infra/template.yaml grants PutSecretValue
        // on that secret only).
        let token_store = Arc::new(SecretTokenStore::new(secrets_manager, &env.secret_id));
        let client = Client::with_refresh_token_store(client_config, token_store).map_err(|e| {
            SetupError::Config {
                source_name: "salesforce".into(),
                message: e.to_string(),
            }
        })?;
        Ok(ExtractState {
            config: Arc::new(config),
            client,
            queue: SqsQueue::new(
                aws_sdk_sqs::Client::new(sdk),
                FunctionEnv::need(&env.records_queue_url, "RECORDS_QUEUE_URL")?,
            )
            .with_message_limits(max_message_bytes, compress),
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

#[derive(Debug, Serialize)]
pub struct ExtractOutput {
    pub run_id: String,
    pub reports: Vec<RunReport>,
    /// Syncs another run was already extracting.
    pub busy: Vec<String>,
    /// Selected syncs this invocation did not start, and why: the org's API budget was
    /// spent, or the deadline came, during an earlier sync. They run on the next
    /// invocation, first (see [`least_recently_extracted_first`]).
    pub not_run: Vec<NotRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    pub sync: String,
    pub reason: StopReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The configured share of the org's daily API requests is used up.
    ApiLimit,
    /// Too little of the invocation's time is left.
    Deadline,
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
    settings.clock = state.clock.clone();
    // Syncs with stream = true count what the stream function had not delivered.
    settings.stream_ledger = Some(state.store.stream_ledger());
    let mut output = ExtractOutput {
        run_id: run_id.clone(),
        reports: Vec::new(),
        busy: Vec::new(),
        not_run: Vec::new(),
    };
    let syncs = least_recently_extracted_first(&state.store, syncs).await?;
    let mut failed = Vec::new();
    let mut stopped: Option<StopReason> = None;
    for sync in syncs {
        if stopped.is_none() && settings.time_is_short() {
            stopped = Some(StopReason::Deadline);
        }
        if let Some(reason) = stopped {
            tracing::warn!(sync = %sync.name, ?reason, "sync not started in this invocation");
            output.not_run.push(NotRun {
                sync: sync.name.clone(),
                reason,
            });
            continue;
        }
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
                let stop = match report.status {
                    RunStatus::ApiLimit => Some(StopReason::ApiLimit),
                    RunStatus::Partial => Some(StopReason::Deadline),
                    _ => None,
                };
                if report.status == RunStatus::Failed {
                    failed.push(format!(
                        "{}: {}",
                        sync.name,
                        report.error.clone().unwrap_or_default()
                    ));
                }
                output.reports.push(report);
                // The API limit is org-wide and the deadline is ours: the other syncs wait
                // for the next invocation, and are named in the output.
                stopped = stop;
            }
            Err(ExtractError::LeaseHeld(e)) => {
                tracing::warn!(error = %e, "sync skipped: another run holds its lease");
                output.busy.push(sync.name.clone());
            }
            Err(ExtractError::State(e)) => return Err(e.into()),
        }
    }
    if !output.not_run.is_empty() {
        tracing::warn!(
            not_run = %output.not_run.iter().map(|n| n.sync.as_str()).collect::<Vec<_>>().join(", "),
            "the invocation stopped early; these syncs run first next time"
        );
    }
    if failed.is_empty() {
        Ok(output)
    } else {
        Err(ExtractFailure::Failed(failed.join("; ")))
    }
}

/// The selected syncs, the one whose checkpoint moved longest ago first (never-run syncs
/// before all). A sync that keeps an invocation busy until its deadline (a large backfill)
/// or spends the API budget then goes last next time, so every sync gets its turn instead
/// of the first in the config starving the rest.
pub async fn least_recently_extracted_first<'a, S: StateStore>(
    store: &S,
    syncs: Vec<&'a sfsync_mapping::SyncConfig>,
) -> Result<Vec<&'a sfsync_mapping::SyncConfig>, sfsync_pipeline::state::StateError> {
    let mut keyed = Vec::with_capacity(syncs.len());
    for (position, sync) in syncs.into_iter().enumerate() {
        let moved = store
            .checkpoint(&sync.name)
            .await?
            .map(|c| c.updated_at)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        keyed.push((moved, position, sync));
    }
    keyed.sort_by_key(|(moved, position, _)| (*moved, *position));
    Ok(keyed.into_iter().map(|(_, _, sync)| sync).collect())
}
