//! The subscriber loop: subscribe, decode, re-read, enqueue, store the replay id, ask for more.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sfsync_mapping::config::ExtractApi;
use sfsync_mapping::{Record, SyncConfig};
use sfsync_pipeline::ledger::{HandedOnBy, RecordVersion, StreamLedger};
use sfsync_pipeline::message::{MESSAGE_VERSION, RecordsMessage};
use sfsync_pipeline::queue::Queue;
use sfsync_pipeline::report::{RunReport, RunStatus};
use sfsync_pubsub::cdc::{CdcError, decode_event, parse_schema};
use sfsync_pubsub::{
    Auth, ChangeEvent, FetchRequest, PubSubClient, ReplayPreset, change_event_topic, error_code,
};
use sfsync_salesforce::{Client, Cursor, SyncPlan, Window};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::{info, warn};

use crate::changes::{self, Work};
use crate::replay::{ReplayStore, ReplayStoreError, StoredReplay};

/// Records re-read by Id per query (the IN list of one SOQL query).
pub const REREAD_IDS_PER_QUERY: usize = 200;

#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// `https://api.pubsub.salesforce.com:7443`, or the simulator's `http://…`.
    pub endpoint: String,
    /// Events asked for at a time (`num_requested`; Salesforce serves at most 100).
    pub batch: i32,
    /// Run id of the messages this invocation enqueues (their run report).
    pub run_id: String,
    /// How far before a stored replay id's time an expired-replay fallback re-reads.
    pub lookback: chrono::Duration,
    /// Wait before re-subscribing after the stream broke.
    pub reconnect_after: Duration,
    /// The sync's polling checkpoint (its SystemModstamp), if any: the latest start of an
    /// expired-replay re-read.
    pub polling_checkpoint: Option<DateTime<Utc>>,
    /// Where every record version handed on is noted, so that polling can count what the
    /// stream missed (`sfsync_pipeline::ledger`). A failed note is logged and counted
    /// (`StreamReport::ledger_unnoted`), never a reason to stop: the records are enqueued.
    pub ledger: Option<StreamLedger>,
    /// Stop once this many change events have been handed on and their replay id stored
    /// (`sfsync stream --max-events`); `None`: until `stop`.
    pub max_events: Option<u64>,
}

impl StreamSettings {
    pub fn new(endpoint: impl Into<String>, run_id: impl Into<String>) -> StreamSettings {
        StreamSettings {
            endpoint: endpoint.into(),
            batch: 100,
            run_id: run_id.into(),
            lookback: chrono::Duration::minutes(10),
            reconnect_after: Duration::from_secs(2),
            polling_checkpoint: None,
            ledger: None,
            max_events: None,
        }
    }
}

/// Where the subscription started.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Resume {
    /// No stored replay id: from the tip of the stream.
    #[default]
    Tip,
    /// After the stored replay id.
    Stored,
    /// The stored replay id had expired: from the tip, after re-reading the window since
    /// `window_start` (`None`: every record) through the extractor.
    Expired { window_start: Option<DateTime<Utc>> },
}

/// What one run of the stage did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    pub resumed: Resume,
    pub events: u64,
    pub gap_events: u64,
    pub overflow_events: u64,
    /// Records handed to the queue (re-read records, purged deletes, window re-reads).
    pub records: u64,
    /// Of `records`, deleted ones.
    pub deleted: u64,
    /// Records the events named that the re-read did not return (outside the sync's `where`,
    /// or deleted in a sync without `deletes`): deliberately not delivered.
    pub not_found: u64,
    pub messages: u64,
    /// Extractor pages read to re-read records.
    pub reread_pages: u64,
    /// The replay id last stored (base64).
    pub last_replay_id: Option<String>,
    pub reconnects: u64,
    /// Records handed on whose version could not be noted in the stream ledger (polling
    /// will count them as missed).
    pub ledger_unnoted: u64,
}

impl StreamReport {
    /// The run report of this invocation, in the shape every stage reports: `api` is
    /// `"stream"`, and the window is set only when an expired replay id made it poll one.
    pub fn run_report(&self, run_id: &str, sync: &str, started_at: DateTime<Utc>) -> RunReport {
        let mut report = RunReport::new(run_id, sync, started_at);
        report.api = Some("stream".into());
        report.status = RunStatus::Complete;
        report.finished_at = Some(Utc::now());
        report.counts.extracted = self.records;
        report.counts.deleted_found = self.deleted;
        report.counts.messages = self.messages;
        if let Resume::Expired { window_start } = &self.resumed {
            report.window_start = *window_start;
            report.window_end = Some(started_at);
            report.replay_expired = true;
        }
        report
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Salesforce(#[from] sfsync_salesforce::Error),
    #[error(transparent)]
    Connect(#[from] sfsync_pubsub::ClientError),
    #[error("Pub/Sub {call} failed: {code:?} {message}{}", error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Rpc {
        call: &'static str,
        code: tonic::Code,
        message: String,
        error_code: Option<String>,
    },
    #[error(
        "topic {0}: this session may not subscribe (is Change Data Capture enabled for the object, and may the integration user read it?)"
    )]
    NotSubscribable(String),
    #[error("event {replay_id} cannot be read: {source}")]
    Event {
        replay_id: String,
        #[source]
        source: CdcError,
    },
    #[error("a change event names {0:?}, which is not a Salesforce record id")]
    BadRecordId(String),
    #[error(transparent)]
    Replay(#[from] ReplayStoreError),
    #[error("could not enqueue: {0}")]
    Queue(String),
}

fn rpc(call: &'static str) -> impl Fn(Status) -> StreamError {
    move |s: Status| StreamError::Rpc {
        call,
        code: s.code(),
        message: s.message().to_string(),
        error_code: error_code(&s).map(str::to_string),
    }
}

fn is_expired_replay(status: &Status) -> bool {
    matches!(
        error_code(status),
        Some(
            sfsync_pubsub::ERROR_REPLAY_ID_VALIDATION_FAILED
                | sfsync_pubsub::ERROR_REPLAY_ID_CORRUPTED
        )
    )
}

/// Schemas by id, fetched once each.
#[derive(Default)]
struct SchemaCache {
    by_id: HashMap<String, apache_avro::Schema>,
}

impl SchemaCache {
    async fn get(
        &mut self,
        client: &mut PubSubClient,
        schema_id: &str,
    ) -> Result<&apache_avro::Schema, StreamError> {
        if !self.by_id.contains_key(schema_id) {
            let info = client
                .get_schema(schema_id)
                .await
                .map_err(rpc("GetSchema"))?;
            let schema = parse_schema(schema_id, &info.schema_json).map_err(|source| {
                StreamError::Event {
                    replay_id: format!("(schema {schema_id})"),
                    source,
                }
            })?;
            self.by_id.insert(schema_id.to_string(), schema);
        }
        self.by_id
            .get(schema_id)
            .ok_or_else(|| StreamError::Queue("schema cache lost an entry".into()))
    }
}

/// Runs the stream of one sync until `stop` resolves: subscribes after the stored replay id
/// (or at the tip), and for every batch of events re-reads the records they name, enqueues
/// them, stores the last replay id, and only then asks for as many more events. A broken
/// stream is re-subscribed after `reconnect_after`.
pub async fn stream_sync<Q: Queue<RecordsMessage>, R: ReplayStore>(
    client: &Client,
    sync: &SyncConfig,
    queue: &Q,
    replays: &R,
    settings: &StreamSettings,
    stop: impl Future<Output = ()>,
) -> Result<StreamReport, StreamError> {
    let mut stage = Stage {
        client,
        sync,
        queue,
        replays,
        settings,
        plan: client.plan(sync).await?,
        topic: change_event_topic(&sync.object),
        report: StreamReport::default(),
        schemas: SchemaCache::default(),
        last_commit: None,
        noted_start: false,
    };
    let stored = replays.get(&sync.name).await?;
    stage.last_commit = stored.as_ref().and_then(|s| s.last_commit);
    let mut resume = match &stored {
        Some(s) if s.topic == stage.topic => {
            stage.report.resumed = Resume::Stored;
            Some(s.bytes()?)
        }
        _ => None,
    };
    // Some(start) once an expired replay id asks for a re-read (start None: everything).
    let mut fallback_from: Option<Option<DateTime<Utc>>> = None;
    let mut stop = std::pin::pin!(stop);
    'subscription: loop {
        let headers = client.session_headers().await?;
        let mut pubsub = PubSubClient::connect(
            &settings.endpoint,
            Auth {
                access_token: headers.access_token,
                instance_url: headers.instance_url,
                tenant_id: headers.org_id,
            },
        )
        .await?;
        let topic = pubsub
            .get_topic(&stage.topic)
            .await
            .map_err(rpc("GetTopic"))?;
        if !topic.can_subscribe {
            return Err(StreamError::NotSubscribable(stage.topic.clone()));
        }
        let (requests, rx) = mpsc::channel(8);
        let first = FetchRequest {
            topic_name: stage.topic.clone(),
            replay_preset: if resume.is_some() {
                ReplayPreset::Custom
            } else {
                ReplayPreset::Latest
            } as i32,
            replay_id: resume.clone().unwrap_or_default(),
            num_requested: settings.batch.clamp(1, 100),
            auth_refresh: String::new(),
        };
        // The receiver is alive (it is moved into the call below), so this cannot fail.
        let _ = requests.send(first).await;
        let subscribed = pubsub.subscribe(ReceiverStream::new(rx)).await;
        let mut responses = match subscribed {
            Ok(r) => r,
            Err(status) if is_expired_replay(&status) && resume.is_some() => {
                fallback_from = Some(expired_window_start(stored.as_ref(), settings));
                resume = None;
                continue 'subscription;
            }
            Err(status) => return Err(rpc("Subscribe")(status)),
        };
        // Subscribed at the tip after an expired id: now re-read what the bus forgot. The
        // overlap with the new subscription is harmless (same record versions, same ids).
        if let Some(from) = fallback_from.take() {
            warn!(sync = %sync.name, from = ?from, "stored replay id expired: re-reading the window by polling");
            stage.report.resumed = Resume::Expired { window_start: from };
            stage.reread_window(from, sync.api).await?;
        }
        loop {
            let next = tokio::select! {
                () = &mut stop => break 'subscription,
                next = responses.message() => next,
            };
            match next {
                Ok(Some(response)) => {
                    let consumed = response.events.len();
                    let latest = stage.handle(&mut pubsub, response).await?;
                    if let Some(latest) = latest {
                        resume = Some(latest);
                    }
                    if settings
                        .max_events
                        .is_some_and(|max| stage.report.events >= max)
                    {
                        break 'subscription;
                    }
                    if consumed > 0 {
                        // Flow control: ask for as many as were handed on.
                        let more = FetchRequest {
                            num_requested: i32::try_from(consumed).unwrap_or(i32::MAX),
                            ..Default::default()
                        };
                        if requests.send(more).await.is_err() {
                            continue 'subscription;
                        }
                    }
                }
                Ok(None) => {
                    info!(sync = %sync.name, "the server ended the subscription; re-subscribing");
                    break;
                }
                Err(status) if is_expired_replay(&status) && resume.is_some() => {
                    fallback_from = Some(expired_window_start(stored.as_ref(), settings));
                    resume = None;
                    continue 'subscription;
                }
                Err(status) => {
                    warn!(sync = %sync.name, code = ?status.code(), message = status.message(), "the subscription broke; re-subscribing");
                    if status.code() == tonic::Code::Unauthenticated {
                        // A REST call renews an expired session (the client refreshes on 401).
                        let _ = client.limits().await;
                    }
                    break;
                }
            }
        }
        stage.report.reconnects += 1;
        tokio::select! {
            () = &mut stop => break 'subscription,
            () = tokio::time::sleep(settings.reconnect_after) => {}
        }
    }
    Ok(stage.report)
}

/// Where to re-read from when the stored replay id has expired: the earlier of the last
/// commit the stream handed on and the polling checkpoint, minus the look-back (both are
/// Salesforce times); with neither, from the beginning.
fn expired_window_start(
    stored: Option<&StoredReplay>,
    settings: &StreamSettings,
) -> Option<DateTime<Utc>> {
    let last_commit = stored.and_then(|s| s.last_commit);
    let start = match (last_commit, settings.polling_checkpoint) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    start.map(|s| s - settings.lookback)
}

struct Stage<'a, Q, R> {
    client: &'a Client,
    sync: &'a SyncConfig,
    queue: &'a Q,
    replays: &'a R,
    settings: &'a StreamSettings,
    plan: SyncPlan,
    topic: String,
    report: StreamReport,
    schemas: SchemaCache,
    /// Newest commit time handed on (Salesforce's clock).
    last_commit: Option<DateTime<Utc>>,
    /// The ledger knows when this sync's stream started (noted at the first event).
    noted_start: bool,
}

impl<Q: Queue<RecordsMessage>, R: ReplayStore> Stage<'_, Q, R> {
    /// One `FetchResponse`: its events' records enqueued, then its replay id stored. Returns
    /// the replay id stored, if any.
    async fn handle(
        &mut self,
        pubsub: &mut PubSubClient,
        response: sfsync_pubsub::FetchResponse,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        let last = response
            .events
            .last()
            .map(|e| e.replay_id.clone())
            .or_else(|| {
                (!response.latest_replay_id.is_empty()).then(|| response.latest_replay_id.clone())
            });
        let mut events: Vec<ChangeEvent> = Vec::with_capacity(response.events.len());
        for consumer in &response.events {
            let replay_id = base64_of(&consumer.replay_id);
            let event = consumer.event.as_ref().ok_or_else(|| StreamError::Event {
                replay_id: replay_id.clone(),
                source: CdcError::Payload("the response holds no event".into()),
            })?;
            let schema = self.schemas.get(pubsub, &event.schema_id).await?;
            let decoded = decode_event(schema, &event.payload)
                .map_err(|source| StreamError::Event { replay_id, source })?;
            let commit = DateTime::<Utc>::from_timestamp_millis(decoded.header.commit_timestamp);
            self.last_commit = self.last_commit.max(commit);
            events.push(decoded);
        }
        if !events.is_empty() {
            self.note_start(&events).await;
            let work = changes::plan(&events, self.sync.deletes);
            self.report.events += work.counts.events;
            self.report.gap_events += work.counts.gaps;
            self.report.overflow_events += work.counts.overflows;
            self.deliver(work).await?;
        }
        if let Some(last) = &last {
            // Only now is everything up to `last` durably handed on.
            let stored = StoredReplay::new(last, &self.topic, Utc::now(), self.last_commit);
            self.replays.put(&self.sync.name, &stored).await?;
            self.report.last_replay_id = Some(stored.replay_id);
        }
        Ok(last)
    }

    async fn deliver(&mut self, work: Work) -> Result<(), StreamError> {
        let mut found: HashSet<String> = HashSet::new();
        for ids in work.reread.chunks(REREAD_IDS_PER_QUERY) {
            let window = self.ids_window(ids)?;
            let mut extraction = self.client.extract(&self.plan, window);
            while let Some(page) = extraction.next_page().await? {
                self.report.reread_pages += 1;
                for record in &page.records {
                    if let Some(id) = record.string_field("Id") {
                        found.insert(id.to_ascii_lowercase());
                    }
                }
                self.enqueue(page.records).await?;
            }
        }
        let purged: Vec<Record> = work
            .deleted
            .iter()
            .filter(|(id, _)| !found.contains(&id.to_ascii_lowercase()))
            .map(|(id, at)| {
                let at = DateTime::<Utc>::from_timestamp_millis(*at).unwrap_or_default();
                Record::from_value(&json!({
                    "attributes": {"type": self.plan.object},
                    "Id": id,
                    "IsDeleted": true,
                    "SystemModstamp": sfsync_salesforce::soql::rest_datetime(at),
                }))
            })
            .collect();
        let named = work.reread.len() as u64;
        let accounted = found.len() as u64 + purged.len() as u64;
        self.report.not_found += named.saturating_sub(accounted);
        self.enqueue(purged).await?;
        if let Some(from) = work.window_from_ms {
            let from = DateTime::<Utc>::from_timestamp_millis(from).unwrap_or_default();
            self.reread_window(Some(from), self.sync.api).await?;
        }
        Ok(())
    }

    /// `(the sync's where) AND Id IN (…)`, over REST, deleted rows too when the sync has
    /// `deletes` (as its polling does).
    fn ids_window(&self, ids: &[String]) -> Result<Window, StreamError> {
        for id in ids {
            let ok =
                (id.len() == 15 || id.len() == 18) && id.bytes().all(|b| b.is_ascii_alphanumeric());
            if !ok {
                return Err(StreamError::BadRecordId(id.clone()));
            }
        }
        let list: Vec<String> = ids
            .iter()
            .map(|id| sfsync_salesforce::soql::quote(id))
            .collect();
        let by_id = format!("Id IN ({})", list.join(", "));
        let condition = match &self.sync.where_clause {
            Some(w) => format!("({w}) AND {by_id}"),
            None => by_id,
        };
        Ok(Window {
            after: None,
            until: far_until(),
            include_deleted: self.sync.deletes,
            api: ExtractApi::Rest,
            where_clause: Some(condition),
        })
    }

    /// Every record of the sync changed since `from`, through the extractor (overflow
    /// events, expired replay ids).
    async fn reread_window(
        &mut self,
        from: Option<DateTime<Utc>>,
        api: ExtractApi,
    ) -> Result<(), StreamError> {
        let window = Window {
            after: from.map(|modstamp| Cursor {
                modstamp,
                id: String::new(),
            }),
            until: far_until(),
            include_deleted: self.sync.deletes,
            api,
            where_clause: self.sync.where_clause.clone(),
        };
        let mut extraction = self.client.extract(&self.plan, window);
        while let Some(page) = extraction.next_page().await? {
            self.report.reread_pages += 1;
            self.enqueue(page.records).await?;
        }
        Ok(())
    }

    /// Tells the ledger, once, from which commit the stream answers for this sync's
    /// changes: polling compares only versions from then on (the ledger keeps the first).
    async fn note_start(&mut self, events: &[ChangeEvent]) {
        let Some(ledger) = &self.settings.ledger else {
            return;
        };
        if self.noted_start {
            return;
        }
        let first = events
            .iter()
            .map(|e| e.header.commit_timestamp)
            .min()
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        if let Some(first) = first {
            match ledger.started(&self.sync.name, first).await {
                Ok(()) => self.noted_start = true,
                Err(e) => {
                    warn!(sync = %self.sync.name, error = %e, "could not note the stream's start in the ledger")
                }
            }
        }
    }

    async fn enqueue(&mut self, records: Vec<Record>) -> Result<(), StreamError> {
        if records.is_empty() {
            return Ok(());
        }
        let versions = self
            .settings
            .ledger
            .as_ref()
            .map(|_| RecordVersion::of_records(&records));
        let n = records.len() as u64;
        let deleted = records.iter().filter(|r| r.is_deleted()).count() as u64;
        let message = RecordsMessage {
            v: MESSAGE_VERSION,
            run_id: self.settings.run_id.clone(),
            sync: self.sync.name.clone(),
            records,
        };
        // The queue packs the records by size (SQS) or hands them over (locally).
        let sent = self
            .queue
            .send(message, None)
            .await
            .map_err(|e| StreamError::Queue(e.to_string()))?;
        self.report.messages += sent as u64;
        self.report.records += n;
        self.report.deleted += deleted;
        // Only after the enqueue: the ledger never names a version that was not handed on.
        if let (Some(ledger), Some(versions)) = (&self.settings.ledger, versions)
            && let Err(e) = ledger
                .record(&self.sync.name, &versions, HandedOnBy::Stream)
                .await
        {
            warn!(sync = %self.sync.name, error = %e, "could not note handed-on versions in the stream ledger; polling will count them as missed");
            self.report.ledger_unnoted += versions.len() as u64;
        }
        Ok(())
    }
}

/// The upper bound of a re-read: SystemModstamp is never later than the commit we were told
/// about, so any bound past now includes it; an hour covers clock skew.
fn far_until() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
