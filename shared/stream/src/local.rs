//! `sfsync stream` locally: every sync with `stream = true`, each record mapped and
//! delivered in this process (the same in-process queue as `sfsync sync`), replay ids and run
//! reports in the state directory.

use std::path::PathBuf;
use std::sync::Arc;

use sfsync_mapping::{Config, SyncConfig};
use sfsync_pipeline::local::{InlineQueue, ProgressFn, local_client_config};
use sfsync_pipeline::report::{RunReport, new_run_id};
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::file::FileStore;

use crate::replay::FileReplayStore;
use crate::stage::{StreamError, StreamSettings};
use crate::syncs::stream_syncs;

#[derive(Debug, Clone)]
pub struct LocalStream {
    pub state_dir: PathBuf,
    /// The Pub/Sub API endpoint (Salesforce's, or a simulator's).
    pub endpoint: String,
    /// Only these syncs (each must have `stream = true`); empty: every streaming sync.
    pub syncs: Vec<String>,
    /// Each sync's stream stops once this many change events are handed on (and their
    /// replay id stored); `None`: only `stop` ends the streams.
    pub max_events: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalStreamError {
    #[error(
        "no sync has stream = true (add it to a sync whose object has Change Data Capture enabled)"
    )]
    NothingToStream,
    #[error("sync {0:?} does not exist or does not have stream = true")]
    NotStreaming(String),
    #[error("salesforce: {0}")]
    Salesforce(#[from] sfsync_salesforce::Error),
    #[error("destination {name}: {message}")]
    Destination { name: String, message: String },
    #[error(transparent)]
    State(#[from] sfsync_pipeline::state::StateError),
    #[error("sync {sync}: {source}")]
    Stream {
        sync: String,
        #[source]
        source: StreamError,
    },
}

/// Streams until `stop` resolves; returns each sync's run report (with what map and deliver
/// added).
pub async fn stream_local(
    config: Config,
    options: LocalStream,
    progress: ProgressFn,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<Vec<RunReport>, LocalStreamError> {
    let syncs: Vec<_> = if options.syncs.is_empty() {
        config.syncs.iter().filter(|s| s.stream).cloned().collect()
    } else {
        let mut out = Vec::new();
        for name in &options.syncs {
            let sync = config
                .sync(name)
                .filter(|s| s.stream)
                .ok_or_else(|| LocalStreamError::NotStreaming(name.clone()))?;
            out.push(sync.clone());
        }
        out
    };
    if syncs.is_empty() {
        return Err(LocalStreamError::NothingToStream);
    }
    // The same refresh-token store as `sfsync sync`: a rotated token stays one chain.
    let client = sfsync_salesforce::Client::with_refresh_token_store(
        local_client_config(&config.salesforce)?,
        Arc::new(sfsync_pipeline::token_store::FileTokenStore::new(
            &options.state_dir,
        )),
    )?;
    let http = sfsync_destinations::http_client().map_err(|e| LocalStreamError::Destination {
        name: "(http client)".into(),
        message: e.to_string(),
    })?;
    let names = sfsync_destinations::object_names(&config);
    let mut destinations = Vec::new();
    for d in &config.destinations {
        let built = sfsync_destinations::Destination::with_object_names(d, http.clone(), &names)
            .map_err(|e| LocalStreamError::Destination {
                name: d.name.clone(),
                message: e.to_string(),
            })?;
        destinations.push(Arc::new(built));
    }
    let store = FileStore::new(&options.state_dir)?;
    let replays = FileReplayStore::new(&options.state_dir);
    let queue = InlineQueue::new(
        Arc::new(config.clone()),
        destinations,
        store.clone(),
        options.state_dir.join("dead-letters.jsonl"),
        progress,
    );
    let started_at = chrono::Utc::now();
    let run_id = format!("{}-stream", new_run_id(started_at));
    let mut settings = StreamSettings::new(options.endpoint.clone(), run_id.clone());
    // What `sfsync sync` compares with: the versions handed on, in the state directory.
    settings.ledger = Some(store.stream_ledger());
    settings.max_events = options.max_events;
    let syncs: Vec<&SyncConfig> = syncs.iter().collect();
    let results = stream_syncs(&client, &syncs, &queue, &replays, &store, &settings, stop).await;
    let mut reports = Vec::new();
    for (sync, result) in results {
        let sync = sync.name.clone();
        let report = result.map_err(|source| LocalStreamError::Stream {
            sync: sync.clone(),
            source,
        })?;
        store
            .put_run(&report.run_report(&run_id, &sync, started_at))
            .await?;
        if let Some(stored) = store
            .runs(usize::MAX)
            .await?
            .into_iter()
            .find(|r| r.run_id == run_id && r.sync == sync)
        {
            reports.push(stored);
        }
    }
    Ok(reports)
}
