//! Several syncs streamed at once, the way both hosts run them (the stream Lambda,
//! `sfsync stream`): one subscriber per sync, all stopped by one signal, each starting from
//! its own polling checkpoint.

use std::future::Future;

use chrono::{DateTime, Utc};
use sfsync_mapping::SyncConfig;
use sfsync_pipeline::message::RecordsMessage;
use sfsync_pipeline::queue::Queue;
use sfsync_pipeline::report::{RunReport, RunStatus};
use sfsync_pipeline::state::StateStore;
use sfsync_salesforce::Client;
use tracing::Instrument;

use crate::replay::ReplayStore;
use crate::stage::{StreamError, StreamReport, StreamSettings, stream_sync};

/// Every sync's stream, concurrently, until `stop` — or until every one of them has ended
/// on its own (failed, or `max_events` reached): then there is nothing left to wait for.
/// Each sync gets `settings` with its polling checkpoint read from `store` (the latest start
/// of an expired replay id's re-read; unreadable, it is logged and the re-read starts from
/// the replay id's time alone). Results in the order of `syncs`.
pub async fn stream_syncs<'a, Q, R, S>(
    client: &Client,
    syncs: &[&'a SyncConfig],
    queue: &Q,
    replays: &R,
    store: &S,
    settings: &StreamSettings,
    stop: impl Future<Output = ()> + Send,
) -> Vec<(&'a SyncConfig, Result<StreamReport, StreamError>)>
where
    Q: Queue<RecordsMessage>,
    R: ReplayStore,
    S: StateStore,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let streams = syncs.iter().map(|&sync| {
        let mut stopped = stop_rx.clone();
        let span = tracing::info_span!("stream", run_id = %settings.run_id, sync = %sync.name);
        async move {
            let mut settings = settings.clone();
            settings.polling_checkpoint = match store.checkpoint(&sync.name).await {
                Ok(checkpoint) => checkpoint.map(|c| c.cursor.modstamp),
                Err(e) => {
                    tracing::warn!(error = %e, "polling checkpoint not read");
                    None
                }
            };
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            let result = stream_sync(client, sync, queue, replays, &settings, stop).await;
            (sync, result)
        }
        .instrument(span)
    });
    let mut all = std::pin::pin!(futures::future::join_all(streams));
    let stop = std::pin::pin!(stop);
    tokio::select! {
        results = &mut all => results,
        () = stop => {
            let _ = stop_tx.send(true);
            all.await
        }
    }
}

/// The run report of a sync whose stream failed, with the error.
pub fn failed_run_report(
    run_id: &str,
    sync: &str,
    started_at: DateTime<Utc>,
    error: &StreamError,
) -> RunReport {
    let mut report = StreamReport::default().run_report(run_id, sync, started_at);
    report.status = RunStatus::Failed;
    report.error = Some(error.to_string());
    report
}
