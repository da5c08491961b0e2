//! The stream ledger: which record versions the stream stage handed on, kept with the state,
//! so that the scheduled extraction of a sync with `stream = true` can count the versions it
//! found that the stream had **not** delivered — the number that proves the stream complete
//! (issue 15, "polling stays the proof"; docs/operate.md says what to do when it is not 0).
//!
//! A version is (sync, Id, version stamp in ms): exactly what makes the deterministic
//! `messageId` (`sfsync_mapping::message_id`), so the stream and polling agree on it whichever
//! API read the record (REST and Bulk write SystemModstamp differently; the instant is the
//! same).
//!
//! Polling never drops a record because the ledger has it: every extracted record is still
//! enqueued, and the destination deduplicates the second copy by its `messageId`. The ledger
//! only feeds counters, so a ledger that cannot be read counts versions as *unknown*; it never
//! loses, holds back or fails a run.
//!
//! Cost: one small item (or line) per version the stream hands on, written in batches
//! (DynamoDB `BatchWriteItem`, 25 items a request) and expiring after [`LEDGER_TTL_DAYS`];
//! polling reads each version it extracts once (`BatchGetItem`, 100 keys a request) and writes
//! only the versions it found missing (so that the next run's look-back does not count them a
//! second time).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sfsync_mapping::Record;
use sfsync_mapping::record::as_str;

use crate::report::RunCounts;

/// How long a ledger entry is kept: longer than any sensible polling interval (a version the
/// stream handed on must still be there when polling reads it) plus a failed week.
pub const LEDGER_TTL_DAYS: i64 = 30;

/// DynamoDB's limits per request: `BatchWriteItem` takes 25 put requests, `BatchGetItem` 100
/// keys (Amazon DynamoDB API Reference, BatchWriteItem / BatchGetItem).
pub const BATCH_WRITE_ITEMS: usize = 25;
pub const BATCH_GET_KEYS: usize = 100;

/// Versions committed this close to a polling run's end are not compared in that run (the
/// stream may be handing them on right now); the next run's look-back reads and compares
/// them. Never more than the look-back, or they would never be compared.
pub const DEFAULT_COMPARE_GRACE: Duration = Duration::from_secs(30);

/// One record version: its Id and the instant of its version field (SystemModstamp, else
/// LastModifiedDate, as the mapping chooses), in ms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordVersion {
    pub id: String,
    pub ms: i64,
}

impl RecordVersion {
    /// The version of a record as extracted (`None` when it has no Id or no readable
    /// version: the mapping skips such a record, with its reason).
    pub fn of(record: &Record) -> Option<RecordVersion> {
        let fields = record.fields()?;
        let id = fields
            .get_exact("Id")
            .and_then(as_str)
            .filter(|id| !id.is_empty())?;
        let field = sfsync_mapping::version::version_field(&fields)?;
        let stamp = fields.get_exact(field.name()).and_then(as_str)?;
        let at = sfsync_mapping::time::parse_salesforce_datetime(&stamp).ok()?;
        Some(RecordVersion {
            id: id.into_owned(),
            ms: at.timestamp_millis(),
        })
    }

    pub fn of_records(records: &[Record]) -> Vec<RecordVersion> {
        records.iter().filter_map(RecordVersion::of).collect()
    }
}

/// Who put a version in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandedOnBy {
    /// The stream stage enqueued it.
    Stream,
    /// Polling found it missing (and counted it) in an earlier run.
    Polling,
}

impl HandedOnBy {
    fn as_str(self) -> &'static str {
        match self {
            HandedOnBy::Stream => "stream",
            HandedOnBy::Polling => "polling",
        }
    }

    fn parse(s: &str) -> Option<HandedOnBy> {
        match s {
            "stream" => Some(HandedOnBy::Stream),
            "polling" => Some(HandedOnBy::Polling),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// A file of the local ledger could not be created, read or written.
    #[error("stream ledger: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local `<sync>.since` file is not an RFC 3339 time.
    #[error("stream ledger: {} is corrupt: {source}", path.display())]
    CorruptSinceFile {
        path: PathBuf,
        #[source]
        source: chrono::ParseError,
    },
    /// A line of a local `<sync>.<by>.jsonl` file is not an entry (`line` counts from 1).
    #[error("stream ledger: {} line {line}: {source}", path.display())]
    CorruptLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// An entry could not be serialised.
    #[error("stream ledger: cannot encode an entry: {0}")]
    Encode(#[source] serde_json::Error),
    /// A DynamoDB call failed. The message keeps the SDK's whole context (service code and
    /// message, request id) for the logs.
    #[error(
        "stream ledger: {operation} on table {table}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(source.as_ref())
    )]
    Dynamo {
        /// The call and what it was for: "GetItem stream-since", "BatchWriteItem", …
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A DynamoDB request could not be built (a required member missing).
    #[error("stream ledger: {0}")]
    Build(#[source] aws_sdk_dynamodb::error::BuildError),
    /// The `stream-since` item of a sync has no `at`.
    #[error("stream ledger: stream-since item of {sync} has no at")]
    SinceWithoutAt { sync: String },
    /// The `stream-since` item's `at` is not an RFC 3339 time.
    #[error("stream ledger: stream-since item of {sync} is corrupt: {source}")]
    CorruptSinceItem {
        sync: String,
        #[source]
        source: chrono::ParseError,
    },
    /// DynamoDB kept handing back part of a batch (throttling) until every attempt was spent.
    #[error(
        "stream ledger: {operation} on table {table}: {left} {noun} still unprocessed after {attempts} attempts"
    )]
    Unprocessed {
        operation: &'static str,
        table: String,
        left: usize,
        /// What the call sends: "items" or "keys".
        noun: &'static str,
        attempts: u32,
    },
}

/// The ledger of every sync, in the state directory or the state table.
#[derive(Debug, Clone)]
pub enum StreamLedger {
    File(FileLedger),
    Dynamo(DynamoLedger),
}

impl StreamLedger {
    /// `<state dir>/stream-ledger/`.
    pub fn file(state_dir: impl AsRef<Path>) -> StreamLedger {
        StreamLedger::File(FileLedger {
            dir: state_dir.as_ref().join("stream-ledger"),
        })
    }

    /// Items of the state table (the table the extract stage keeps checkpoints in).
    pub fn dynamo(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> StreamLedger {
        StreamLedger::Dynamo(DynamoLedger {
            client,
            table: table.into(),
        })
    }

    /// Notes, once, the commit time from which the stream is responsible for `sync`'s changes
    /// (the first event it ever handled). Later calls leave the first time alone: a stream
    /// that stopped and lost its place must still be held to everything after it.
    pub async fn started(&self, sync: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        match self {
            StreamLedger::File(f) => f.started(sync, at),
            StreamLedger::Dynamo(d) => d.started(sync, at).await,
        }
    }

    /// The time [`StreamLedger::started`] noted, if the stream ever handled an event.
    pub async fn since(&self, sync: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        match self {
            StreamLedger::File(f) => f.since(sync),
            StreamLedger::Dynamo(d) => d.since(sync).await,
        }
    }

    pub async fn record(
        &self,
        sync: &str,
        versions: &[RecordVersion],
        by: HandedOnBy,
    ) -> Result<(), LedgerError> {
        if versions.is_empty() {
            return Ok(());
        }
        match self {
            StreamLedger::File(f) => f.record(sync, versions, by),
            StreamLedger::Dynamo(d) => d.record(sync, versions, by).await,
        }
    }

    /// Which of `versions` the ledger holds, and who put them there.
    pub async fn lookup(
        &self,
        sync: &str,
        versions: &[RecordVersion],
    ) -> Result<HashMap<RecordVersion, HandedOnBy>, LedgerError> {
        if versions.is_empty() {
            return Ok(HashMap::new());
        }
        match self {
            StreamLedger::File(f) => f.lookup(sync, versions),
            StreamLedger::Dynamo(d) => d.lookup(sync, versions).await,
        }
    }
}

/// Polling's side: compares the versions of one run, page by page, and adds the outcome to
/// the run's counters (`stream_compared`, `stream_missed`, `stream_unchecked`,
/// `stream_unknown`).
#[derive(Debug)]
pub struct StreamProof {
    ledger: StreamLedger,
    sync: String,
    /// `None`: the stream never handled an event of this sync (nothing it can be held to).
    since: Option<DateTime<Utc>>,
    /// Versions after this are left to the next run's look-back.
    compare_until: DateTime<Utc>,
    /// The ledger could not be read when the run started.
    unreadable: Option<String>,
}

impl StreamProof {
    /// The proof of one run whose window ends at `until`.
    pub async fn start(
        ledger: &StreamLedger,
        sync: &str,
        until: DateTime<Utc>,
        grace: Duration,
    ) -> StreamProof {
        let (since, unreadable) = match ledger.since(sync).await {
            Ok(since) => (since, None),
            Err(e) => (None, Some(e.to_string())),
        };
        StreamProof {
            ledger: ledger.clone(),
            sync: sync.to_string(),
            since,
            compare_until: until - chrono::Duration::from_std(grace).unwrap_or_default(),
            unreadable,
        }
    }

    /// Compares the versions of records already enqueued. Never fails: what cannot be
    /// compared is counted as unknown.
    pub async fn check(&self, versions: Vec<RecordVersion>, counts: &mut RunCounts) {
        let due: Vec<RecordVersion> = versions
            .into_iter()
            .filter(|v| v.ms <= self.compare_until.timestamp_millis())
            .collect();
        if due.is_empty() {
            return;
        }
        if let Some(error) = &self.unreadable {
            tracing::warn!(sync = %self.sync, %error, "stream ledger unreadable: versions counted as unknown");
            counts.stream_unknown += due.len() as u64;
            return;
        }
        let since_ms = self.since.map(|s| s.timestamp_millis());
        let (compare, before): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|v| since_ms.is_some_and(|s| v.ms >= s));
        counts.stream_unchecked += before.len() as u64;
        if compare.is_empty() {
            return;
        }
        let found = match self.ledger.lookup(&self.sync, &compare).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(sync = %self.sync, %error, "stream ledger unreadable: versions counted as unknown");
                counts.stream_unknown += compare.len() as u64;
                return;
            }
        };
        let mut missed = Vec::new();
        for version in compare {
            match found.get(&version) {
                Some(HandedOnBy::Stream) => counts.stream_compared += 1,
                // Counted by the run that first found it missing (the look-back reads again).
                Some(HandedOnBy::Polling) => {}
                None => {
                    counts.stream_compared += 1;
                    counts.stream_missed += 1;
                    missed.push(version);
                }
            }
        }
        if missed.is_empty() {
            return;
        }
        tracing::warn!(sync = %self.sync, missed = missed.len(), first = %missed[0].id, "polling found changes the stream had not delivered (delivered now)");
        if let Err(error) = self
            .ledger
            .record(&self.sync, &missed, HandedOnBy::Polling)
            .await
        {
            // Only the next run's look-back may count them again.
            tracing::warn!(sync = %self.sync, %error, "could not note the missed versions in the stream ledger");
        }
    }
}

/// Files under `<state dir>/stream-ledger/`: `<sync>.since` (written once), and one JSON line
/// per version in `<sync>.stream.jsonl` (written only by the stream) and
/// `<sync>.polling.jsonl` (written only by polling). One writer per file, so an append never
/// races a rewrite; a file past [`FILE_PRUNE_BYTES`] is rewritten without expired lines.
#[derive(Debug, Clone)]
pub struct FileLedger {
    dir: PathBuf,
}

/// A ledger file past this size is pruned of entries older than [`LEDGER_TTL_DAYS`].
pub const FILE_PRUNE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct FileEntry {
    id: String,
    ms: i64,
    /// When it was written (unix seconds): entries older than the TTL are pruned.
    at: i64,
}

impl FileLedger {
    fn path(&self, sync: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{sync}.{suffix}"))
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
        let path = path.to_path_buf();
        move |source| LedgerError::Io {
            path: path.clone(),
            source,
        }
    }

    fn started(&self, sync: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        use std::io::Write;
        let path = self.path(sync, "since");
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        // create_new: the first start wins, atomically.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => f
                .write_all(at.to_rfc3339().as_bytes())
                .map_err(self.io(&path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    fn since(&self, sync: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        let path = self.path(sync, "since");
        match std::fs::read_to_string(&path) {
            Ok(text) => DateTime::parse_from_rfc3339(text.trim())
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|source| LedgerError::CorruptSinceFile {
                    path: path.clone(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    fn file_of(&self, sync: &str, by: HandedOnBy) -> PathBuf {
        self.path(sync, &format!("{}.jsonl", by.as_str()))
    }

    fn record(
        &self,
        sync: &str,
        versions: &[RecordVersion],
        by: HandedOnBy,
    ) -> Result<(), LedgerError> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        let path = self.file_of(sync, by);
        let now = Utc::now().timestamp();
        let mut text = String::new();
        for v in versions {
            let line = serde_json::to_string(&FileEntry {
                id: v.id.clone(),
                ms: v.ms,
                at: now,
            })
            .map_err(LedgerError::Encode)?;
            text.push_str(&line);
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(self.io(&path))?;
        // One write of whole lines: a reader sees a line whole or not at all.
        f.write_all(text.as_bytes()).map_err(self.io(&path))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        drop(f);
        if size > FILE_PRUNE_BYTES {
            self.prune(&path, now)?;
        }
        Ok(())
    }

    fn prune(&self, path: &Path, now: i64) -> Result<(), LedgerError> {
        let oldest = now - LEDGER_TTL_DAYS * 86_400;
        let text = std::fs::read_to_string(path).map_err(self.io(path))?;
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<FileEntry>(line).is_ok_and(|entry| entry.at >= oldest)
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, kept).map_err(self.io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(self.io(path))
    }

    fn lookup(
        &self,
        sync: &str,
        versions: &[RecordVersion],
    ) -> Result<HashMap<RecordVersion, HandedOnBy>, LedgerError> {
        let wanted: HashSet<&RecordVersion> = versions.iter().collect();
        let mut found = HashMap::new();
        // Polling's marks first: the stream's entry wins when both exist.
        for by in [HandedOnBy::Polling, HandedOnBy::Stream] {
            let path = self.file_of(sync, by);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&path)(e)),
            };
            for (n, line) in text.lines().enumerate() {
                let entry: FileEntry =
                    serde_json::from_str(line).map_err(|source| LedgerError::CorruptLine {
                        path: path.clone(),
                        line: n + 1,
                        source,
                    })?;
                let version = RecordVersion {
                    id: entry.id,
                    ms: entry.ms,
                };
                if wanted.contains(&version) {
                    found.insert(version, by);
                }
            }
        }
        Ok(found)
    }
}

/// Items of the state table:
/// - `pk = "ledger#<sync>#<Id>"`, `sk = "<ms>"`, `via` (stream or polling), `ttl`: one per
///   version. The record's Id in the partition key spreads a busy stream's writes over many
///   partitions instead of one hot `sync#<sync>` partition.
/// - `pk = "sync#<sync>"`, `sk = "stream-since"`, `at`: written once (conditional put).
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// Attempts at a batch whose unprocessed part DynamoDB hands back (throttling).
const BATCH_ATTEMPTS: u32 = 8;

impl DynamoLedger {
    fn err<E: std::error::Error + Send + Sync + 'static>(
        &self,
        operation: &'static str,
        e: aws_sdk_dynamodb::error::SdkError<E>,
    ) -> LedgerError {
        LedgerError::Dynamo {
            operation,
            table: self.table.clone(),
            source: e.into(),
        }
    }

    fn key(
        sync: &str,
        v: &RecordVersion,
    ) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        use aws_sdk_dynamodb::types::AttributeValue;
        HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S(format!("ledger#{sync}#{}", v.id)),
            ),
            ("sk".to_string(), AttributeValue::S(v.ms.to_string())),
        ])
    }

    async fn started(&self, sync: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("sync#{sync}")))
            .item("sk", AttributeValue::S("stream-since".into()))
            .item("at", AttributeValue::S(at.to_rfc3339()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.err("PutItem stream-since", e)),
        }
    }

    async fn since(&self, sync: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("sync#{sync}")))
            .key("sk", AttributeValue::S("stream-since".into()))
            .send()
            .await
            .map_err(|e| self.err("GetItem stream-since", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let at = item.get("at").and_then(|v| v.as_s().ok()).ok_or_else(|| {
            LedgerError::SinceWithoutAt {
                sync: sync.to_string(),
            }
        })?;
        DateTime::parse_from_rfc3339(at)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|source| LedgerError::CorruptSinceItem {
                sync: sync.to_string(),
                source,
            })
    }

    async fn record(
        &self,
        sync: &str,
        versions: &[RecordVersion],
        by: HandedOnBy,
    ) -> Result<(), LedgerError> {
        use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
        // A batch may not name one key twice.
        let unique: HashSet<&RecordVersion> = versions.iter().collect();
        let ttl = (Utc::now().timestamp() + LEDGER_TTL_DAYS * 86_400).to_string();
        let requests: Vec<WriteRequest> = unique
            .into_iter()
            .map(|v| {
                let mut item = DynamoLedger::key(sync, v);
                item.insert("via".into(), AttributeValue::S(by.as_str().into()));
                item.insert("ttl".into(), AttributeValue::N(ttl.clone()));
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(LedgerError::Build)
            })
            .collect::<Result<_, _>>()?;
        for chunk in requests.chunks(BATCH_WRITE_ITEMS) {
            let mut pending = chunk.to_vec();
            let mut attempts = BatchAttempts::new("BatchWriteItem", "items", &self.table);
            while !pending.is_empty() {
                attempts.next(pending.len()).await?;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn lookup(
        &self,
        sync: &str,
        versions: &[RecordVersion],
    ) -> Result<HashMap<RecordVersion, HandedOnBy>, LedgerError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let unique: Vec<&RecordVersion> = versions
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let prefix = format!("ledger#{sync}#");
        let mut found = HashMap::new();
        for chunk in unique.chunks(BATCH_GET_KEYS) {
            let mut keys: Vec<_> = chunk.iter().map(|v| DynamoLedger::key(sync, v)).collect();
            let mut attempts = BatchAttempts::new("BatchGetItem", "keys", &self.table);
            while !keys.is_empty() {
                attempts.next(keys.len()).await?;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    // Names, not words: DynamoDB reserves hundreds of attribute names.
                    .projection_expression("#pk, #sk, #via")
                    .expression_attribute_names("#pk", "pk")
                    .expression_attribute_names("#sk", "sk")
                    .expression_attribute_names("#via", "via")
                    .build()
                    .map_err(LedgerError::Build)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchGetItem", e))?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
                    let id = text("pk").and_then(|pk| pk.strip_prefix(&prefix));
                    let ms = text("sk").and_then(|sk| sk.parse::<i64>().ok());
                    let by = text("via").and_then(|v| HandedOnBy::parse(v));
                    if let (Some(id), Some(ms), Some(by)) = (id, ms, by) {
                        found.insert(
                            RecordVersion {
                                id: id.to_string(),
                                ms,
                            },
                            by,
                        );
                    }
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut m| m.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
    }
}

/// The attempts at one batch call whose unprocessed part DynamoDB hands back (throttling):
/// each retry waits a jittered while, and `BATCH_ATTEMPTS` attempts in all is the end.
struct BatchAttempts<'a> {
    /// The call and what it sends ("items", "keys"), for the error.
    what: &'static str,
    noun: &'static str,
    table: &'a str,
    made: u32,
}

impl<'a> BatchAttempts<'a> {
    fn new(what: &'static str, noun: &'static str, table: &'a str) -> BatchAttempts<'a> {
        BatchAttempts {
            what,
            noun,
            table,
            made: 0,
        }
    }

    /// Clears the way for the next attempt with `left` still unprocessed: at once the first
    /// time, after a wait on a retry, an error once every attempt is spent.
    async fn next(&mut self, left: usize) -> Result<(), LedgerError> {
        if self.made >= BATCH_ATTEMPTS {
            return Err(LedgerError::Unprocessed {
                operation: self.what,
                table: self.table.to_string(),
                left,
                noun: self.noun,
                attempts: BATCH_ATTEMPTS,
            });
        }
        if self.made > 0 {
            tokio::time::sleep(retry_wait(self.made)).await;
        }
        self.made += 1;
        Ok(())
    }
}

fn retry_wait(attempt: u32) -> Duration {
    sfsync_backoff::full_jitter(Duration::from_millis(50), attempt, Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn v(id: &str, ms: i64) -> RecordVersion {
        RecordVersion { id: id.into(), ms }
    }

    #[test]
    fn a_version_is_the_same_instant_whichever_api_wrote_it() {
        let rest =
            Record::from(json!({"Id": "003A", "SystemModstamp": "2026-01-02T03:04:05.678+0000"}));
        let bulk =
            Record::from(json!({"Id": "003A", "SystemModstamp": "2026-01-02T03:04:05.678Z"}));
        assert_eq!(RecordVersion::of(&rest), RecordVersion::of(&bulk));
        assert!(RecordVersion::of(&rest).is_some());
        let exported =
            Record::from(json!({"Id": "003A", "LastModifiedDate": "2026-01-02T03:04:05.678Z"}));
        assert_eq!(RecordVersion::of(&exported), RecordVersion::of(&bulk));
        assert_eq!(RecordVersion::of(&json!({"Id": "003A"}).into()), None);
        assert_eq!(
            RecordVersion::of(&json!({"SystemModstamp": "2026-01-02T03:04:05Z"}).into()),
            None
        );
    }

    /// The first attempt goes at once; once every attempt is spent, the error names the call,
    /// the table and what is still unprocessed.
    #[tokio::test]
    async fn a_batch_gives_up_after_its_attempts_naming_what_is_left() {
        let mut fresh = BatchAttempts::new("BatchWriteItem", "items", "state");
        fresh.next(25).await.expect("the first attempt");
        let mut spent = BatchAttempts {
            made: BATCH_ATTEMPTS,
            ..BatchAttempts::new("BatchGetItem", "keys", "state")
        };
        let error = spent.next(3).await.expect_err("no attempt left");
        assert_eq!(
            error.to_string(),
            format!(
                "stream ledger: BatchGetItem on table state: 3 keys still unprocessed after {BATCH_ATTEMPTS} attempts"
            )
        );
    }

    #[tokio::test]
    async fn polling_counts_what_the_stream_did_not_hand_on_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = StreamLedger::file(dir.path());
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        ledger.started("c", t(100)).await.expect("started");
        // A later start does not move the first.
        ledger.started("c", t(500)).await.expect("started again");
        assert_eq!(ledger.since("c").await.expect("since"), Some(t(100)));
        ledger
            .record("c", &[v("a", 150_000), v("b", 160_000)], HandedOnBy::Stream)
            .await
            .expect("record");

        let versions = vec![
            v("old", 50_000),  // before the stream started: not compared
            v("a", 150_000),   // streamed
            v("b", 160_000),   // streamed
            v("x", 170_000),   // missed
            v("y", 180_000),   // missed
            v("new", 995_000), // within the grace: the next run compares it
        ];
        let proof = StreamProof::start(&ledger, "c", t(1000), Duration::from_secs(30)).await;
        let mut counts = RunCounts::default();
        proof.check(versions.clone(), &mut counts).await;
        assert_eq!(
            (
                counts.stream_compared,
                counts.stream_missed,
                counts.stream_unchecked,
                counts.stream_unknown
            ),
            (4, 2, 1, 0)
        );
        // The next run's look-back reads the same versions: the misses are not counted again.
        let mut again = RunCounts::default();
        proof.check(versions, &mut again).await;
        assert_eq!((again.stream_compared, again.stream_missed), (2, 0));
    }

    #[tokio::test]
    async fn an_unreadable_ledger_counts_unknown_and_a_stream_that_never_started_checks_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = StreamLedger::file(dir.path());
        let until = DateTime::<Utc>::from_timestamp(1000, 0).unwrap_or_default();
        let proof = StreamProof::start(&ledger, "c", until, Duration::ZERO).await;
        let mut counts = RunCounts::default();
        proof.check(vec![v("a", 1), v("b", 2)], &mut counts).await;
        assert_eq!((counts.stream_unchecked, counts.stream_missed), (2, 0));

        ledger
            .started("c", DateTime::<Utc>::UNIX_EPOCH)
            .await
            .expect("started");
        std::fs::write(
            dir.path().join("stream-ledger/c.stream.jsonl"),
            "{not json\n",
        )
        .expect("corrupt it");
        let proof = StreamProof::start(&ledger, "c", until, Duration::ZERO).await;
        let mut counts = RunCounts::default();
        proof.check(vec![v("a", 1), v("b", 2)], &mut counts).await;
        assert_eq!(
            (
                counts.stream_unknown,
                counts.stream_missed,
                counts.stream_compared
            ),
            (2, 0, 0)
        );
    }

    #[test]
    fn the_missed_count_is_a_metric_and_a_line_of_the_run_report() {
        let counts = RunCounts {
            extracted: 10,
            stream_compared: 8,
            stream_missed: 3,
            stream_unchecked: 2,
            ..Default::default()
        };
        let line = crate::metrics::counts_line("extract", "contacts", &counts, 1);
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["StreamMissed"], json!(3));
        assert!(v.get("StreamUnknown").is_none(), "0 is not emitted: {line}");
        let report = crate::report::RunReport {
            counts,
            ..crate::report::RunReport::new("20260101T000000Z-abc", "contacts", Utc::now())
        };
        let text = report.to_string();
        assert!(
            text.contains("unstreamed         3  (of 8 versions compared with the stream's ledger"),
            "{text}"
        );
        assert!(
            text.contains("2 from before the stream's first event"),
            "{text}"
        );
    }

    #[test]
    fn a_large_ledger_file_keeps_only_unexpired_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let StreamLedger::File(ledger) = StreamLedger::file(dir.path()) else {
            unreachable!("file ledger")
        };
        std::fs::create_dir_all(&ledger.dir).expect("dir");
        let path = ledger.file_of("c", HandedOnBy::Stream);
        let now = 10_000_000;
        let old = now - LEDGER_TTL_DAYS * 86_400 - 1;
        std::fs::write(
            &path,
            format!(
                "{{\"id\":\"a\",\"ms\":1,\"at\":{old}}}\n{{\"id\":\"b\",\"ms\":2,\"at\":{now}}}\n"
            ),
        )
        .expect("write");
        ledger.prune(&path, now).expect("prune");
        let found = ledger.lookup("c", &[v("a", 1), v("b", 2)]).expect("lookup");
        assert_eq!(found.len(), 1);
        assert_eq!(found.get(&v("b", 2)), Some(&HandedOnBy::Stream));
    }
}
