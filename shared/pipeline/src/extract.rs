//! The extract stage: one sync's changes since its checkpoint, packed into records messages
//! and enqueued; the checkpoint advanced only after the enqueue succeeded.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sfsync_mapping::SyncConfig;
use sfsync_salesforce::{Client, Cursor, Window};
use tracing::Instrument;

use crate::message::{MESSAGE_VERSION, Packer, RecordsMessage};
use crate::queue::Queue;
use crate::report::{RunReport, RunStatus};
use crate::state::{Checkpoint, StateError, StateStore};

#[derive(Debug, Clone)]
pub struct ExtractSettings {
    /// Who holds the lease (a Lambda request id, or host + pid locally).
    pub owner: String,
    /// Ignore the checkpoint and extract everything (a replay or backfill).
    pub full: bool,
    /// Re-read this far before the checkpoint, for late-committed records.
    pub lookback: Duration,
    /// Stop cleanly when less than `margin` is left before this instant.
    pub deadline: Option<Instant>,
    pub margin: Duration,
    pub max_body_bytes: usize,
    pub compress: bool,
    /// The most records of a page handed to the queue in one send. Unlimited by default: a
    /// whole page packs into the fewest, fullest SQS messages (the packer's compression
    /// estimate carries across it). `sfsync sync` sets a REST page's worth, because its
    /// queue maps and delivers each send before returning: a Bulk results page (10,000
    /// rows) would otherwise be held five times over (docs/benchmarks.md, memory).
    pub max_records_per_send: usize,
    /// How long the lease lasts if this run dies without releasing it.
    pub lease_ttl: Duration,
}

impl ExtractSettings {
    pub fn new(owner: impl Into<String>) -> ExtractSettings {
        ExtractSettings {
            owner: owner.into(),
            full: false,
            lookback: Duration::from_secs(300),
            deadline: None,
            margin: Duration::from_secs(30),
            max_body_bytes: crate::message::DEFAULT_MAX_BODY_BYTES,
            compress: true,
            max_records_per_send: usize::MAX,
            lease_ttl: Duration::from_secs(16 * 60),
        }
    }

    fn time_is_short(&self) -> bool {
        self.deadline
            .is_some_and(|d| d.saturating_duration_since(Instant::now()) < self.margin)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Another run holds the lease: this run did nothing and that is fine.
    #[error(transparent)]
    LeaseHeld(StateError),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The oldest start the getDeleted endpoint serves.
const DELETED_REACH: chrono::Duration = chrono::Duration::days(15);

/// Extracts one sync. The returned report says how it ended; `Err` only when the run could
/// not start (lease held, state store unreachable). Everything it logs (the Salesforce
/// client's lines included) carries `run_id` and `sync` from its span.
pub async fn extract_sync<Q: Queue, S: StateStore>(
    client: &Client,
    sync: &SyncConfig,
    queue: &Q,
    store: &S,
    run_id: &str,
    started_at: DateTime<Utc>,
    settings: &ExtractSettings,
) -> Result<RunReport, ExtractError> {
    let span = tracing::info_span!("extract_sync", run_id = %run_id, sync = %sync.name);
    extract_sync_in_span(client, sync, queue, store, run_id, started_at, settings)
        .instrument(span)
        .await
}

async fn extract_sync_in_span<Q: Queue, S: StateStore>(
    client: &Client,
    sync: &SyncConfig,
    queue: &Q,
    store: &S,
    run_id: &str,
    started_at: DateTime<Utc>,
    settings: &ExtractSettings,
) -> Result<RunReport, ExtractError> {
    let lease_until = Utc::now()
        + chrono::Duration::from_std(settings.lease_ttl).unwrap_or(chrono::Duration::minutes(16));
    match store
        .acquire_lease(&sync.name, &settings.owner, lease_until)
        .await
    {
        Ok(()) => {}
        Err(e @ StateError::LeaseHeld { .. }) => return Err(ExtractError::LeaseHeld(e)),
        Err(e) => return Err(e.into()),
    }
    let mut report = RunReport::new(run_id, &sync.name, started_at);
    let result = run(client, sync, queue, store, settings, &mut report).await;
    if let Err(e) = result {
        tracing::error!(error = %e, "run failed; the checkpoint stays after the last enqueued page");
        report.status = RunStatus::Failed;
        report.error = Some(e);
    }
    report.finished_at = Some(Utc::now());
    let saved = store.put_run(&report).await;
    let released = store.release_lease(&sync.name, &settings.owner).await;
    saved?;
    released?;
    Ok(report)
}

/// The body of a run; an `Err` is the run's failure message (the checkpoint is wherever the
/// last successful enqueue left it).
async fn run<Q: Queue, S: StateStore>(
    client: &Client,
    sync: &SyncConfig,
    queue: &Q,
    store: &S,
    settings: &ExtractSettings,
    report: &mut RunReport,
) -> Result<(), String> {
    let calls_before = client.usage().calls;
    store.put_run(report).await.map_err(|e| e.to_string())?;
    let previous = store
        .checkpoint(&sync.name)
        .await
        .map_err(|e| e.to_string())?;
    let mut version = previous.as_ref().map_or(0, |c| c.version);
    let until = report.started_at;
    let lookback = chrono::Duration::from_std(settings.lookback).unwrap_or_default();
    let after = match (&previous, settings.full) {
        (Some(cp), false) => Some(Cursor {
            modstamp: cp.cursor.modstamp - lookback,
            id: String::new(),
        }),
        _ => None,
    };
    report.window_start = after.as_ref().map(|c| c.modstamp);
    report.window_end = Some(until);

    let plan = client.plan(sync).await.map_err(|e| e.to_string())?;
    let mut extraction = client.extract(
        &plan,
        Window {
            after: after.clone(),
            until,
            include_deleted: sync.deletes,
            api: sync.api,
            where_clause: sync.where_clause.clone(),
        },
    );
    // A replay (`full`) records its own progress from the start, moving the checkpoint back:
    // if it stops at the deadline, the next scheduled run continues the replay instead of
    // silently returning to the old position.
    let mut cursor = match settings.full {
        true => None,
        false => previous.as_ref().map(|c| c.cursor.clone()),
    };
    let mut finished = false;
    // The next page is fetched while the current one is enqueued: Salesforce's time to
    // serve a page overlaps the queue's (or, locally, mapping and delivery's). The
    // checkpoint still moves only after the current page's enqueue succeeded; a prefetched
    // page that is never enqueued (deadline, failure) is simply read again by the next run.
    let mut prefetched = None;
    let outcome: Result<(), String> = loop {
        if settings.time_is_short() {
            report.status = RunStatus::Partial;
            break Ok(());
        }
        let fetched = match prefetched.take() {
            Some(fetched) => fetched,
            None => extraction.next_page().await,
        };
        let page = match fetched {
            Ok(Some(page)) => page,
            Ok(None) => {
                finished = true;
                break Ok(());
            }
            Err(e @ sfsync_salesforce::Error::ApiLimit { .. }) => {
                report.status = RunStatus::ApiLimit;
                report.error = Some(e.to_string());
                break Ok(());
            }
            Err(e) => break Err(e.to_string()),
        };
        report.api = Some(format!("{:?}", extraction.api_used()).to_lowercase());
        let n = page.records.len() as u64;
        let deleted = page
            .records
            .iter()
            .filter(|r| r.get("IsDeleted").and_then(|v| v.as_bool()) == Some(true))
            .count() as u64;
        let last = page.last;
        // Fetching ahead holds two pages at once. A page larger than one send is not worth
        // that: it is delivered in several sends anyway, and memory must stay flat. (Under
        // `sfsync sync` the client already hands Bulk pages on in REST-page-sized slices.)
        let fetch_ahead = page.records.len() <= settings.max_records_per_send;
        let send = enqueue_pieces(queue, report, &sync.name, settings, page.records);
        let sent = if settings.time_is_short() || !fetch_ahead {
            send.await
        } else {
            let (sent, next) = tokio::join!(send, extraction.next_page());
            prefetched = Some(next);
            sent
        };
        if let Err(e) = sent {
            break Err(e);
        }
        report.counts.extracted += n;
        report.counts.deleted_found += deleted;
        if let Some(last) = last
            && cursor.as_ref().is_none_or(|c| &last > c)
        {
            if let Err(e) = save(store, sync, &mut version, &last, &report.run_id).await {
                break Err(e);
            }
            cursor = Some(last);
        }
    };
    outcome?;

    if finished {
        // Hard deletes (and anything purged from the Recycle Bin) are only visible through
        // getDeleted, which reaches 15 days back.
        if sync.deletes
            && let Some(start) = after.as_ref().map(|c| c.modstamp)
        {
            if until - start < DELETED_REACH {
                let deleted = client
                    .deleted(&sync.object, start, until)
                    .await
                    .map_err(|e| e.to_string())?;
                report.counts.deleted_found += deleted.len() as u64;
                report.counts.extracted += deleted.len() as u64;
                enqueue(queue, report, &sync.name, settings, deleted).await?;
            } else {
                tracing::warn!(sync = %sync.name, "the last run is more than 15 days old: hard deletes since then cannot be detected");
            }
        }
        // Everything up to `until` is enqueued: the next run starts there (minus look-back).
        let end = Cursor {
            modstamp: until,
            id: String::new(),
        };
        if cursor.as_ref().is_none_or(|c| &end > c) {
            save(store, sync, &mut version, &end, &report.run_id).await?;
        }
        report.status = RunStatus::Complete;
    }
    report.salesforce_api_calls = client.usage().calls - calls_before;
    Ok(())
}

/// Enqueues a page in pieces of at most `max_records_per_send` records.
async fn enqueue_pieces<Q: Queue>(
    queue: &Q,
    report: &mut RunReport,
    sync: &str,
    settings: &ExtractSettings,
    mut records: Vec<serde_json::Value>,
) -> Result<(), String> {
    let size = settings.max_records_per_send.max(1);
    while !records.is_empty() {
        let piece = if records.len() > size {
            let rest = records.split_off(size);
            std::mem::replace(&mut records, rest)
        } else {
            std::mem::take(&mut records)
        };
        enqueue(queue, report, sync, settings, piece).await?;
    }
    Ok(())
}

async fn enqueue<Q: Queue>(
    queue: &Q,
    report: &mut RunReport,
    sync: &str,
    settings: &ExtractSettings,
    records: Vec<serde_json::Value>,
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    if queue.takes_values() {
        report.counts.messages += 1;
        return queue
            .send_records(RecordsMessage {
                v: MESSAGE_VERSION,
                run_id: report.run_id.clone(),
                sync: sync.to_string(),
                records,
            })
            .await
            .map_err(|e| e.to_string());
    }
    let prefix = Packer::records_prefix(&report.run_id, sync);
    let mut packer = Packer::new(prefix.clone(), settings.max_body_bytes, settings.compress);
    let packed = records
        .iter()
        .try_for_each(|record| packer.push(record))
        .and_then(|()| packer.finish());
    let bodies = match packed {
        Ok(bodies) => bodies,
        Err(e) => {
            // A record that cannot fit any message is reported, never silently dropped: the
            // run fails and the checkpoint stays before it. When compressing, the packer only
            // notices while closing a body (at a later record, or at the end), so the record
            // is found by packing each one alone.
            return Err(match too_large(&records, &prefix, settings) {
                Some((record, e)) => {
                    let id = record
                        .get("Id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("(no Id)");
                    format!("record {id} cannot be enqueued: {e}")
                }
                None => format!("records cannot be enqueued: {e}"),
            });
        }
    };
    report.counts.messages += bodies.len() as u64;
    queue
        .send(bodies.into_iter().map(|b| b.body).collect(), None)
        .await
        .map_err(|e| e.to_string())
}

/// The first record that cannot fit a message even alone, and why.
fn too_large<'r>(
    records: &'r [serde_json::Value],
    prefix: &str,
    settings: &ExtractSettings,
) -> Option<(&'r serde_json::Value, crate::message::MessageError)> {
    records.iter().find_map(|record| {
        let mut alone = Packer::new(
            prefix.to_string(),
            settings.max_body_bytes,
            settings.compress,
        );
        alone
            .push(record)
            .and_then(|()| alone.finish())
            .err()
            .map(|e| (record, e))
    })
}

async fn save<S: StateStore>(
    store: &S,
    sync: &SyncConfig,
    version: &mut u64,
    cursor: &Cursor,
    run_id: &str,
) -> Result<(), String> {
    let next = Checkpoint {
        cursor: cursor.clone(),
        run_id: run_id.to_string(),
        updated_at: Utc::now(),
        version: *version + 1,
    };
    store
        .put_checkpoint(&sync.name, *version, &next)
        .await
        .map_err(|e| e.to_string())?;
    *version += 1;
    Ok(())
}
