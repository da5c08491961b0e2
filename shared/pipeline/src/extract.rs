//! The extract stage: one sync's changes since its checkpoint, packed into records messages
//! and enqueued; the checkpoint advanced only after the enqueue succeeded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sfsync_mapping::{Record, SyncConfig};
use sfsync_salesforce::{BulkJobState, Client, Cursor, Window};
use tracing::Instrument;

use crate::message::{MESSAGE_VERSION, MessageError, RecordsMessage};
use crate::queue::{Queue, QueueError, SendError};
use crate::report::{RunReport, RunStatus};
use crate::state::{Checkpoint, StateError, StateStore};

/// Where a run reads the time it measures its deadline against. The system's monotonic
/// clock in production; tests inject a [`ManualClock`] so that "the deadline falls after N
/// records" is a fact of the test, not of the machine's speed.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]), and by a fixed step
/// each time it is read if made with [`ManualClock::ticking`] (so that a loop that only
/// polls, like waiting for a Bulk job, also uses up a run's time, deterministically).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed_nanos: AtomicU64,
    tick_nanos: u64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::ticking(Duration::ZERO)
    }

    /// A clock that advances by `per_read` every time it is read.
    pub fn ticking(per_read: Duration) -> ManualClock {
        ManualClock {
            start: Instant::now(),
            elapsed_nanos: AtomicU64::new(0),
            tick_nanos: u64::try_from(per_read.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// The instant the clock started at (time zero).
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        let elapsed = self
            .elapsed_nanos
            .fetch_add(self.tick_nanos, Ordering::SeqCst);
        self.start + Duration::from_nanos(elapsed)
    }
}

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
    /// What `deadline` is measured against ([`SystemClock`] unless a test injects one).
    pub clock: Arc<dyn Clock>,
    /// The most records of a page handed to the queue in one send. Unlimited by default: a
    /// whole page packs into the fewest, fullest SQS messages (the packer's compression
    /// estimate carries across it). `sfsync sync` sets a REST page's worth, because its
    /// queue maps and delivers each send before returning: a Bulk results page (10,000
    /// rows) would otherwise be held five times over (docs/benchmarks.md, memory).
    pub max_records_per_send: usize,
    /// How long the lease lasts if this run dies without releasing it.
    pub lease_ttl: Duration,
    /// Where the stream stage notes what it handed on: set, syncs with `stream = true`
    /// compare every version they extract with it and count what the stream missed
    /// (`crate::ledger`). Records are enqueued whatever the ledger says.
    pub stream_ledger: Option<crate::ledger::StreamLedger>,
    /// Versions this close to the window's end are compared by the next run's look-back
    /// (the stream may be handing them on right now); capped at `lookback`.
    pub stream_grace: Duration,
}

impl ExtractSettings {
    pub fn new(owner: impl Into<String>) -> ExtractSettings {
        ExtractSettings {
            owner: owner.into(),
            full: false,
            lookback: Duration::from_secs(300),
            deadline: None,
            margin: Duration::from_secs(30),
            clock: Arc::new(SystemClock),
            max_records_per_send: usize::MAX,
            lease_ttl: Duration::from_secs(16 * 60),
            stream_ledger: None,
            stream_grace: crate::ledger::DEFAULT_COMPARE_GRACE,
        }
    }

    /// Less than `margin` is left before the deadline.
    pub fn time_is_short(&self) -> bool {
        self.deadline
            .is_some_and(|d| d.saturating_duration_since(self.clock.now()) < self.margin)
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

/// Why one sync's run failed part-way. Its text goes into the run report's `error` and the
/// log; the checkpoint stays after the last page that was enqueued.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Salesforce(#[from] sfsync_salesforce::Error),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A record that cannot fit any queue message, even alone: reported, never dropped.
    #[error("record {id} cannot be enqueued: {source}")]
    RecordTooLarge { id: String, source: MessageError },
}

/// Extracts one sync. The returned report says how it ended; `Err` only when the run could
/// not start (lease held, state store unreachable). Everything it logs (the Salesforce
/// client's lines included) carries `run_id` and `sync` from its span.
pub async fn extract_sync<Q: Queue<RecordsMessage>, S: StateStore>(
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

async fn extract_sync_in_span<Q: Queue<RecordsMessage>, S: StateStore>(
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
        report.error = Some(e.to_string());
    }
    report.finished_at = Some(Utc::now());
    let saved = store.put_run(&report).await;
    let released = store.release_lease(&sync.name, &settings.owner).await;
    saved?;
    released?;
    Ok(report)
}

/// The body of a run; an `Err` is why the run failed (the checkpoint is wherever the
/// last successful enqueue left it).
async fn run<Q: Queue<RecordsMessage>, S: StateStore>(
    client: &Client,
    sync: &SyncConfig,
    queue: &Q,
    store: &S,
    settings: &ExtractSettings,
    report: &mut RunReport,
) -> Result<(), RunError> {
    let calls_before = client.usage().calls;
    store.put_run(report).await?;
    let previous = store.checkpoint(&sync.name).await?;
    let mut version = previous.as_ref().map_or(0, |c| c.version);
    let until = report.started_at;
    // Where getDeleted starts next, carried unchanged through this run's saves until a
    // completed run has read past it. A sync's first run tracks deletions from its start.
    let mut deletes_from = match &previous {
        None => Some(until),
        Some(cp) => cp.deletes_from,
    };
    let lookback = chrono::Duration::from_std(settings.lookback).unwrap_or_default();
    // A Bulk job an earlier run could not finish is resumed over its own window: a new job
    // would deliver the same rows again and spend the org's daily job allowance.
    let bulk_job = previous
        .as_ref()
        .filter(|_| !settings.full)
        .and_then(|cp| cp.bulk.clone());
    let (after, until) = match &bulk_job {
        Some(job) => (job.after.clone(), job.until),
        None => (
            resume_after(previous.as_ref(), settings.full, lookback),
            until,
        ),
    };
    report.window_start = after.as_ref().map(|c| c.modstamp);
    report.window_end = Some(until);
    // Polling stays the proof of the stream: its versions are compared with the ledger.
    let stream_proof = match (&settings.stream_ledger, sync.stream) {
        (Some(ledger), true) => Some(
            crate::ledger::StreamProof::start(
                ledger,
                &sync.name,
                until,
                settings.stream_grace.min(settings.lookback),
            )
            .await,
        ),
        _ => None,
    };

    let plan = match client.plan(sync).await {
        Ok(plan) => plan,
        // The org's API budget is spent before this sync could start: a clean stop, not a
        // failure (the caller stops the remaining syncs too).
        Err(e @ sfsync_salesforce::Error::ApiLimit { .. }) => {
            report.status = RunStatus::ApiLimit;
            report.error = Some(e.to_string());
            report.salesforce_api_calls = client.usage().calls - calls_before;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    // Polling a Bulk job stops in time too; the job is saved and resumed by the next run.
    let stop_settings = settings.clone();
    let mut extraction = client
        .extract(
            &plan,
            Window {
                after: after.clone(),
                until,
                include_deleted: sync.deletes,
                api: sync.api,
                where_clause: sync.where_clause.clone(),
            },
        )
        .stop_when(Arc::new(move || stop_settings.time_is_short()));
    if let Some(job) = bulk_job.clone() {
        tracing::info!(job_id = %job.job_id, "resuming the Bulk job of an earlier run");
        extraction = extraction.resume_bulk(job);
    }
    // The Bulk position the checkpoint holds, and whether its cursor is mid-window.
    let mut saved_bulk = bulk_job;
    let mut cursor_partial = previous.as_ref().is_none_or(|c| c.partial);
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
    let outcome: Result<(), RunError> = loop {
        // Out of time, unless everything was read already (then finishing costs no more
        // reading, and the next run need not start another window, or another Bulk job).
        let nothing_left = match &prefetched {
            Some(Ok(None)) => true,
            Some(_) => false,
            None => extraction.is_exhausted(),
        };
        if settings.time_is_short() && !nothing_left {
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
                if let Some(position) = extraction.suspended().cloned() {
                    // Stopped while the Bulk job was still running: keep it for later.
                    report.status = RunStatus::Partial;
                    if saved_bulk.as_ref() != Some(&position) {
                        let at = cursor.clone().unwrap_or_else(before_everything);
                        if let Err(e) = save(
                            store,
                            sync,
                            &mut version,
                            (&at, deletes_from),
                            cursor_partial,
                            Some(&position),
                            &report.run_id,
                        )
                        .await
                        {
                            break Err(e);
                        }
                    }
                    break Ok(());
                }
                finished = true;
                break Ok(());
            }
            Err(e @ sfsync_salesforce::Error::ApiLimit { .. }) => {
                report.status = RunStatus::ApiLimit;
                report.error = Some(e.to_string());
                break Ok(());
            }
            Err(e) => break Err(e.into()),
        };
        report.api = Some(format!("{:?}", extraction.api_used()).to_lowercase());
        let n = page.records.len() as u64;
        // Only a sync with deletes reads deleted records (queryAll): without, Salesforce's
        // `query` leaves them out, and the records are not even looked at here.
        let deleted = if sync.deletes {
            page.records.iter().filter(|r| r.is_deleted()).count() as u64
        } else {
            0
        };
        let last = page.last;
        let bulk_position = page.bulk;
        // Fetching ahead holds two pages at once. A page larger than one send is not worth
        // that: it is delivered in several sends anyway, and memory must stay flat. (Under
        // `sfsync sync` the client already hands Bulk pages on in REST-page-sized slices.)
        let fetch_ahead = page.records.len() <= settings.max_records_per_send;
        let versions = stream_proof
            .as_ref()
            .map(|_| crate::ledger::RecordVersion::of_records(&page.records));
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
        if let (Some(proof), Some(versions)) = (&stream_proof, versions) {
            proof.check(versions, &mut report.counts).await;
        }
        if let Some(last) = last
            && (cursor.as_ref().is_none_or(|c| &last > c) || saved_bulk.is_some())
        {
            // Mid-window: the next run resumes exactly here if this one stops.
            let last = match cursor.take() {
                Some(c) if c > last => c,
                _ => last,
            };
            if let Err(e) = save(
                store,
                sync,
                &mut version,
                (&last, deletes_from),
                true,
                None,
                &report.run_id,
            )
            .await
            {
                break Err(e);
            }
            cursor = Some(last);
            cursor_partial = true;
            saved_bulk = None;
        } else if let Some(position) = bulk_position {
            // A Bulk page before the last: the cursor cannot move yet (results come in no
            // order), but the job's position does, so a stop here loses nothing and
            // repeats nothing.
            let at = cursor.clone().unwrap_or_else(before_everything);
            if let Err(e) = save(
                store,
                sync,
                &mut version,
                (&at, deletes_from),
                cursor_partial,
                Some(&position),
                &report.run_id,
            )
            .await
            {
                break Err(e);
            }
            saved_bulk = Some(position);
        }
    };
    outcome?;

    if finished {
        // Hard deletes (and anything purged from the Recycle Bin) are only visible through
        // getDeleted (crate::deletes). Checkpoints from before `deletes_from` existed start
        // at the look-back before their cursor, as runs did then.
        let mut gap = None;
        if sync.deletes
            && let Some(cp) = &previous
        {
            let start = cp.deletes_from.unwrap_or(cp.cursor.modstamp - lookback);
            let mut deletes =
                crate::deletes::read_hard_deletes(client, &sync.object, start, until).await?;
            if sync.follows_merges() {
                crate::deletes::mark_merged(client, &sync.object, &mut deletes.records).await?;
            }
            let n = deletes.records.len() as u64;
            report.counts.deleted_found += n;
            report.counts.extracted += n;
            let records = deletes.records.iter().map(Record::from_value).collect();
            enqueue(queue, report, &sync.name, records).await?;
            deletes_from = Some(deletes.next_start);
            gap = deletes.gap;
        } else {
            deletes_from = Some(until);
        }
        // Everything up to `until` is enqueued: the next run starts there (minus look-back).
        // Saved even when the cursor does not move, to mark the window complete.
        let end = Cursor {
            modstamp: until,
            id: String::new(),
        };
        let end = match cursor {
            Some(c) if c > end => c,
            _ => end,
        };
        save(
            store,
            sync,
            &mut version,
            (&end, deletes_from),
            false,
            None,
            &report.run_id,
        )
        .await?;
        // Its results are all enqueued: the Bulk job is no longer needed.
        if let Err(e) = extraction.delete_finished_bulk_job().await {
            tracing::warn!(error = %e, "could not delete the finished Bulk job (Salesforce removes it after 7 days)");
        }
        report.status = RunStatus::Complete;
        if let Some(gap) = gap {
            tracing::error!(sync = %sync.name, %gap, "hard deletes missed");
            report.status = RunStatus::DeletesMissed;
            report.deletes_gap = Some(gap);
            report.counts.delete_gaps += 1;
        }
    }
    report.salesforce_api_calls = client.usage().calls - calls_before;
    Ok(())
}

/// Enqueues a page in pieces of at most `max_records_per_send` records.
async fn enqueue_pieces<Q: Queue<RecordsMessage>>(
    queue: &Q,
    report: &mut RunReport,
    sync: &str,
    settings: &ExtractSettings,
    mut records: Vec<Record>,
) -> Result<(), RunError> {
    let size = settings.max_records_per_send.max(1);
    while !records.is_empty() {
        let piece = if records.len() > size {
            let rest = records.split_off(size);
            std::mem::replace(&mut records, rest)
        } else {
            std::mem::take(&mut records)
        };
        enqueue(queue, report, sync, piece).await?;
    }
    Ok(())
}

async fn enqueue<Q: Queue<RecordsMessage>>(
    queue: &Q,
    report: &mut RunReport,
    sync: &str,
    records: Vec<Record>,
) -> Result<(), RunError> {
    if records.is_empty() {
        return Ok(());
    }
    let message = RecordsMessage {
        v: MESSAGE_VERSION,
        run_id: report.run_id.clone(),
        sync: sync.to_string(),
        records,
    };
    match queue.send(message, None).await {
        Ok(sent) => {
            report.counts.messages += sent as u64;
            Ok(())
        }
        // A record that cannot fit any message is reported, never silently dropped: the run
        // fails and the checkpoint stays before it.
        Err(SendError::TooLarge {
            message,
            items,
            source,
        }) => {
            let id = items
                .first()
                .and_then(|&i| message.records.get(i))
                .and_then(|record| record.string_field("Id"))
                .unwrap_or_else(|| "(no Id)".to_string());
            Err(RunError::RecordTooLarge { id, source })
        }
        Err(SendError::Queue(e)) => Err(e.into()),
    }
}

/// Where a run starts reading. After a completed run: the look-back before its end, every
/// record at that SystemModstamp included (late-committed transactions land there). After
/// a run that stopped inside its window: exactly after the last record it enqueued — the
/// look-back was already read by the run that began the window, and re-reading it (and every
/// record tied at the cursor's SystemModstamp) on each resume would never get through a
/// mass update larger than one run can read.
fn resume_after(
    previous: Option<&Checkpoint>,
    full: bool,
    lookback: chrono::Duration,
) -> Option<Cursor> {
    match previous {
        None => None,
        Some(_) if full => None,
        Some(cp) if cp.partial => Some(cp.cursor.clone()),
        Some(cp) => Some(Cursor {
            modstamp: cp.cursor.modstamp - lookback,
            id: String::new(),
        }),
    }
}

/// The cursor of a checkpoint that covers nothing yet (a first run part-way through its first
/// Bulk job): marked partial, it resumes from the beginning.
fn before_everything() -> Cursor {
    Cursor {
        modstamp: DateTime::<Utc>::UNIX_EPOCH,
        id: String::new(),
    }
}

async fn save<S: StateStore>(
    store: &S,
    sync: &SyncConfig,
    version: &mut u64,
    (cursor, deletes_from): (&Cursor, Option<DateTime<Utc>>),
    partial: bool,
    bulk: Option<&BulkJobState>,
    run_id: &str,
) -> Result<(), RunError> {
    let next = Checkpoint {
        cursor: cursor.clone(),
        run_id: run_id.to_string(),
        updated_at: Utc::now(),
        version: *version + 1,
        partial,
        deletes_from,
        bulk: bulk.cloned(),
    };
    store.put_checkpoint(&sync.name, *version, &next).await?;
    *version += 1;
    Ok(())
}
