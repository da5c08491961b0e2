//! Checkpoints, leases and run reports: DynamoDB in AWS, files in a state directory locally.
//!
//! Both implementations give the same guarantees: a checkpoint write is conditional on the
//! version read (so two writers cannot silently overwrite each other), a lease is held by one
//! owner until it expires or is released, and run counters add up atomically.

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sfsync_salesforce::{BulkJobState, Cursor};

use crate::report::{RunCounts, RunReport};

/// How far a sync's extraction has durably got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Everything up to and including this (SystemModstamp, Id) is enqueued.
    pub cursor: Cursor,
    pub run_id: String,
    pub updated_at: DateTime<Utc>,
    /// Incremented on every write; writes are conditional on it.
    pub version: u64,
    /// The run that wrote this stopped inside its window (deadline, API limit, failure):
    /// the next run resumes right after `cursor`, with no look-back. Re-reading the
    /// look-back (and every record tied at `cursor`'s SystemModstamp) on each resume would
    /// never get through a mass update larger than one run can read. Checkpoints written
    /// before this field existed read as `false` (complete: look-back applies).
    #[serde(default)]
    pub partial: bool,
    /// Where the next getDeleted starts (the last one's `latestDateCovered`). `None` in
    /// checkpoints written before it existed: the look-back before `cursor` is used.
    #[serde(default)]
    pub deletes_from: Option<DateTime<Utc>>,
    /// A Bulk API 2.0 job this sync is part-way through (its window, results locator and
    /// rows already enqueued): the next run resumes it instead of choosing an API, and
    /// `cursor` moves only once all of its results are enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk: Option<BulkJobState>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sync {sync} is being extracted by another run ({owner}) until {until}")]
    LeaseHeld {
        sync: String,
        owner: String,
        until: DateTime<Utc>,
    },
    #[error(
        "the checkpoint of sync {sync} was changed by someone else (expected version {expected})"
    )]
    Conflict { sync: String, expected: u64 },
    /// A file of the local state could not be created, read, written, listed or removed.
    #[error("state store: cannot {action} {}: {source}", path.display())]
    Io {
        /// "create", "read", "write", "list" or "remove".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of the local state is not the JSON it should be.
    #[error("state store: {} is corrupt: {source}", path.display())]
    CorruptFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A DynamoDB call failed. The message keeps the SDK's whole context (service code and
    /// message, request id) for the logs and the run report.
    #[error(
        "state store: {operation} on table {table}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(source.as_ref())
    )]
    Dynamo {
        /// The call and what it was for: "PutItem checkpoint", "Query runs", …
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The checkpoint item of a sync has no `body`.
    #[error("state store: checkpoint of {sync} has no body")]
    CheckpointWithoutBody { sync: String },
    /// The checkpoint item's `body` is not a checkpoint.
    #[error("state store: checkpoint of {sync} is corrupt: {source}")]
    CorruptCheckpoint {
        sync: String,
        #[source]
        source: serde_json::Error,
    },
    /// A run report item's `body` is not a run report (`key` is its sort key).
    #[error("state store: run {key} is corrupt: {source}")]
    CorruptRun {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint, lease or run report could not be serialised.
    #[error("state store: cannot encode the {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    }

    fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| StateError::Encode { what, source }
    }
}

pub trait StateStore: Send + Sync {
    fn checkpoint(
        &self,
        sync: &str,
    ) -> impl Future<Output = Result<Option<Checkpoint>, StateError>> + Send;

    /// Writes `next` if the stored version is still `expected` (0 = none stored yet).
    fn put_checkpoint(
        &self,
        sync: &str,
        expected: u64,
        next: &Checkpoint,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Takes the sync's lease for `owner` until `until`, unless another owner holds an
    /// unexpired one.
    fn acquire_lease(
        &self,
        sync: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    fn release_lease(
        &self,
        sync: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Creates or replaces the extract side of a run report (counts added by later stages
    /// are kept).
    fn put_run(&self, report: &RunReport) -> impl Future<Output = Result<(), StateError>> + Send;

    /// Adds to a run's counters (map and deliver stages report here).
    fn add_counts(
        &self,
        run_id: &str,
        sync: &str,
        counts: &RunCounts,
    ) -> impl Future<Output = Result<(), StateError>> + Send;

    /// The newest run reports first.
    fn runs(&self, limit: usize)
    -> impl Future<Output = Result<Vec<RunReport>, StateError>> + Send;
}

pub mod file {
    //! Files under a state directory (`.sfsync/` by default), each written atomically
    //! (temporary file + rename), so a crash leaves the old or the new version, never half.

    use std::path::{Path, PathBuf};

    use super::*;

    #[derive(Debug, Clone)]
    pub struct FileStore {
        dir: PathBuf,
        lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    }

    #[derive(Serialize, Deserialize)]
    struct LeaseFile {
        owner: String,
        until: DateTime<Utc>,
    }

    impl FileStore {
        pub fn new(dir: impl Into<PathBuf>) -> Result<FileStore, StateError> {
            let dir = dir.into();
            for sub in ["checkpoints", "leases", "runs"] {
                std::fs::create_dir_all(dir.join(sub))
                    .map_err(StateError::io("create", &dir.join(sub)))?;
            }
            Ok(FileStore {
                dir,
                lock: Default::default(),
            })
        }

        pub fn dir(&self) -> &Path {
            &self.dir
        }

        /// The stream ledger kept with this state (`<dir>/stream-ledger/`).
        pub fn stream_ledger(&self) -> crate::ledger::StreamLedger {
            crate::ledger::StreamLedger::file(&self.dir)
        }

        fn path(&self, sub: &str, name: &str) -> PathBuf {
            self.dir.join(sub).join(format!("{name}.json"))
        }

        fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<Option<T>, StateError> {
            match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                    StateError::CorruptFile {
                        path: path.to_path_buf(),
                        source,
                    }
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StateError::io("read", path)(e)),
            }
        }

        fn write<T: Serialize>(
            &self,
            path: &Path,
            what: &'static str,
            value: &T,
        ) -> Result<(), StateError> {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let bytes = serde_json::to_vec_pretty(value).map_err(StateError::encode(what))?;
            let io = |e: std::io::Error| StateError::io("write", path)(e);
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).map_err(io)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            std::fs::rename(&tmp, path).map_err(io)
        }
    }

    /// A local lease names its holder `host:pid`. On this host, a holder whose process is
    /// gone (killed, crashed) cannot be extracting any more: its lease is stale, and waiting
    /// for it to expire would only delay the rerun that recovers.
    fn holder_is_gone(owner: &str) -> bool {
        let Some((host, pid)) = owner.rsplit_once(':') else {
            return false;
        };
        let this_host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        match pid.parse::<u32>() {
            Ok(pid) if host == this_host && Path::new("/proc/self").exists() => {
                !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }

    impl StateStore for FileStore {
        async fn checkpoint(&self, sync: &str) -> Result<Option<Checkpoint>, StateError> {
            self.read(&self.path("checkpoints", sync))
        }

        async fn put_checkpoint(
            &self,
            sync: &str,
            expected: u64,
            next: &Checkpoint,
        ) -> Result<(), StateError> {
            let _guard = self.lock.lock().await;
            let path = self.path("checkpoints", sync);
            let current: Option<Checkpoint> = self.read(&path)?;
            if current.map_or(0, |c| c.version) != expected {
                return Err(StateError::Conflict {
                    sync: sync.to_string(),
                    expected,
                });
            }
            self.write(&path, "checkpoint", next)
        }

        async fn acquire_lease(
            &self,
            sync: &str,
            owner: &str,
            until: DateTime<Utc>,
        ) -> Result<(), StateError> {
            let _guard = self.lock.lock().await;
            let path = self.path("leases", sync);
            if let Some(held) = self.read::<LeaseFile>(&path)?
                && held.owner != owner
                && held.until > Utc::now()
                && !holder_is_gone(&held.owner)
            {
                return Err(StateError::LeaseHeld {
                    sync: sync.to_string(),
                    owner: held.owner,
                    until: held.until,
                });
            }
            self.write(
                &path,
                "lease",
                &LeaseFile {
                    owner: owner.to_string(),
                    until,
                },
            )
        }

        async fn release_lease(&self, sync: &str, owner: &str) -> Result<(), StateError> {
            let _guard = self.lock.lock().await;
            let path = self.path("leases", sync);
            if let Some(held) = self.read::<LeaseFile>(&path)?
                && held.owner == owner
            {
                std::fs::remove_file(&path).map_err(StateError::io("remove", &path))?;
            }
            Ok(())
        }

        async fn put_run(&self, report: &RunReport) -> Result<(), StateError> {
            let _guard = self.lock.lock().await;
            let path = self.path("runs", &report.key());
            let mut next = report.clone();
            if let Some(existing) = self.read::<RunReport>(&path)? {
                next.counts.keep_downstream(&existing.counts);
            }
            self.write(&path, "run report", &next)
        }

        async fn add_counts(
            &self,
            run_id: &str,
            sync: &str,
            counts: &RunCounts,
        ) -> Result<(), StateError> {
            let _guard = self.lock.lock().await;
            let path = self.path("runs", &RunReport::key_of(run_id, sync));
            let mut report = self
                .read::<RunReport>(&path)?
                .unwrap_or_else(|| RunReport::placeholder(run_id, sync));
            report.counts.add(counts);
            self.write(&path, "run report", &report)
        }

        async fn runs(&self, limit: usize) -> Result<Vec<RunReport>, StateError> {
            let dir = self.dir.join("runs");
            let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(StateError::io("list", &dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            // Run ids start with their UTC start time, so names sort by time.
            names.sort();
            names.reverse();
            let mut out = Vec::new();
            for path in names.into_iter().take(limit) {
                if let Some(r) = self.read(&path)? {
                    out.push(r);
                }
            }
            Ok(out)
        }
    }
}

pub mod dynamo {
    //! One DynamoDB table, keys `pk` and `sk` (strings):
    //! - `sync#NAME` / `checkpoint`: the checkpoint, written with a condition on `version`;
    //! - `sync#NAME` / `lease`: owner and expiry, taken with a condition, `ttl` for cleanup;
    //! - `runs` / `RUN_ID#SYNC`: run reports; counters added with `ADD`; `ttl` after 30 days.

    use std::collections::HashMap;

    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    #[derive(Clone, Debug)]
    pub struct DynamoStore {
        client: aws_sdk_dynamodb::Client,
        table: String,
    }

    const RUN_TTL_DAYS: i64 = 30;

    impl DynamoStore {
        pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoStore {
            DynamoStore {
                client,
                table: table.into(),
            }
        }

        /// The stream ledger kept in this table (`crate::ledger::DynamoLedger`).
        pub fn stream_ledger(&self) -> crate::ledger::StreamLedger {
            crate::ledger::StreamLedger::dynamo(self.client.clone(), self.table.clone())
        }

        fn err<E: std::error::Error + Send + Sync + 'static>(
            &self,
            operation: &'static str,
            e: aws_sdk_dynamodb::error::SdkError<E>,
        ) -> StateError {
            StateError::Dynamo {
                operation,
                table: self.table.clone(),
                source: e.into(),
            }
        }

        /// The item `sync#<sync>` / `sk` (the sync's checkpoint or lease), read consistently:
        /// a write that just succeeded must be seen.
        async fn sync_item(
            &self,
            sync: &str,
            sk: &str,
        ) -> Result<Option<HashMap<String, AttributeValue>>, StateError> {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", sync_pk(sync))
                .key("sk", s(sk))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.err("GetItem", e))?;
            Ok(out.item)
        }
    }

    /// The partition of one sync's checkpoint and lease.
    fn sync_pk(sync: &str) -> AttributeValue {
        s(format!("sync#{sync}"))
    }

    fn s(v: impl Into<String>) -> AttributeValue {
        AttributeValue::S(v.into())
    }
    fn n(v: impl ToString) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }
    fn get_s(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
        item.get(k).and_then(|v| v.as_s().ok()).cloned()
    }
    fn get_n(item: &HashMap<String, AttributeValue>, k: &str) -> Option<u64> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    }

    fn is_conditional<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
    {
        e.as_service_error()
            .and_then(|se| se.code())
            .is_some_and(|c| c == "ConditionalCheckFailedException")
    }

    impl StateStore for DynamoStore {
        async fn checkpoint(&self, sync: &str) -> Result<Option<Checkpoint>, StateError> {
            let Some(item) = self.sync_item(sync, "checkpoint").await? else {
                return Ok(None);
            };
            let body = get_s(&item, "body").ok_or_else(|| StateError::CheckpointWithoutBody {
                sync: sync.to_string(),
            })?;
            serde_json::from_str(&body)
                .map(Some)
                .map_err(|source| StateError::CorruptCheckpoint {
                    sync: sync.to_string(),
                    source,
                })
        }

        async fn put_checkpoint(
            &self,
            sync: &str,
            expected: u64,
            next: &Checkpoint,
        ) -> Result<(), StateError> {
            let body = serde_json::to_string(next).map_err(StateError::encode("checkpoint"))?;
            let mut req = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", sync_pk(sync))
                .item("sk", s("checkpoint"))
                .item("version", n(next.version))
                .item("body", s(body));
            req = if expected == 0 {
                req.condition_expression("attribute_not_exists(pk)")
            } else {
                req.condition_expression("version = :expected")
                    .expression_attribute_values(":expected", n(expected))
            };
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) if is_conditional(&e) => Err(StateError::Conflict {
                    sync: sync.to_string(),
                    expected,
                }),
                Err(e) => Err(self.err("PutItem checkpoint", e)),
            }
        }

        async fn acquire_lease(
            &self,
            sync: &str,
            owner: &str,
            until: DateTime<Utc>,
        ) -> Result<(), StateError> {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", sync_pk(sync))
                .item("sk", s("lease"))
                .item("owner", s(owner))
                .item("until", n(until.timestamp()))
                .item("ttl", n(until.timestamp() + 3600))
                .condition_expression("attribute_not_exists(pk) OR #until < :now OR #owner = :me")
                .expression_attribute_names("#until", "until")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":now", n(Utc::now().timestamp()))
                .expression_attribute_values(":me", s(owner))
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if is_conditional(&e) => {
                    // Who holds it, for the message; a failed read still reports the lease
                    // as held (the conditional put said so).
                    let held = self.sync_item(sync, "lease").await.ok().flatten();
                    let owner = held
                        .as_ref()
                        .and_then(|i| get_s(i, "owner"))
                        .unwrap_or_default();
                    let until = held
                        .as_ref()
                        .and_then(|i| get_n(i, "until"))
                        .and_then(|t| DateTime::from_timestamp(t as i64, 0))
                        .unwrap_or_else(Utc::now);
                    Err(StateError::LeaseHeld {
                        sync: sync.to_string(),
                        owner,
                        until,
                    })
                }
                Err(e) => Err(self.err("PutItem lease", e)),
            }
        }

        async fn release_lease(&self, sync: &str, owner: &str) -> Result<(), StateError> {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", sync_pk(sync))
                .key("sk", s("lease"))
                .condition_expression("#owner = :me")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":me", s(owner))
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                // Not ours any more (expired and taken): nothing to release.
                Err(e) if is_conditional(&e) => Ok(()),
                Err(e) => Err(self.err("DeleteItem lease", e)),
            }
        }

        async fn put_run(&self, report: &RunReport) -> Result<(), StateError> {
            // The extract side only; counters that map and deliver add live in their own
            // attributes and are left alone.
            let body = serde_json::to_string(report).map_err(StateError::encode("run report"))?;
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s("runs"))
                .key("sk", s(report.key()))
                .update_expression("SET body = :body, #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":body", s(body))
                .expression_attribute_values(
                    ":ttl",
                    n(report.started_at.timestamp() + RUN_TTL_DAYS * 86_400),
                )
                .send()
                .await
                .map_err(|e| self.err("UpdateItem run", e))?;
            Ok(())
        }

        async fn add_counts(
            &self,
            run_id: &str,
            sync: &str,
            counts: &RunCounts,
        ) -> Result<(), StateError> {
            let mut expr = Vec::new();
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s("runs"))
                .key("sk", s(RunReport::key_of(run_id, sync)));
            for (name, value) in counts.downstream_fields() {
                if value > 0 {
                    expr.push(format!("c_{name} :{name}"));
                    req = req.expression_attribute_values(format!(":{name}"), n(value));
                }
            }
            if expr.is_empty() {
                return Ok(());
            }
            req.update_expression(format!("ADD {}", expr.join(", ")))
                .send()
                .await
                .map_err(|e| self.err("UpdateItem counters", e))?;
            Ok(())
        }

        async fn runs(&self, limit: usize) -> Result<Vec<RunReport>, StateError> {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :runs")
                .expression_attribute_values(":runs", s("runs"))
                .scan_index_forward(false)
                .limit(limit.min(1000) as i32)
                .send()
                .await
                .map_err(|e| self.err("Query runs", e))?;
            let mut reports = Vec::new();
            for item in out.items() {
                let sk = get_s(item, "sk").unwrap_or_default();
                let mut report: RunReport = match get_s(item, "body") {
                    Some(body) => {
                        serde_json::from_str(&body).map_err(|source| StateError::CorruptRun {
                            key: sk.clone(),
                            source,
                        })?
                    }
                    None => {
                        let (run_id, sync) = sk.split_once('#').unwrap_or((sk.as_str(), ""));
                        RunReport::placeholder(run_id, sync)
                    }
                };
                let mut downstream = RunCounts::default();
                for (name, _) in RunCounts::default().downstream_fields() {
                    if let Some(v) = get_n(item, &format!("c_{name}")) {
                        downstream.set_downstream(name, v);
                    }
                }
                report.counts.add(&downstream);
                reports.push(report);
            }
            Ok(reports)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::file::FileStore;
    use super::*;

    fn checkpoint(version: u64) -> Checkpoint {
        Checkpoint {
            cursor: Cursor {
                modstamp: Utc::now(),
                id: "003A".into(),
            },
            run_id: "r".into(),
            updated_at: Utc::now(),
            version,
            partial: false,
            deletes_from: None,
            bulk: None,
        }
    }

    #[tokio::test]
    async fn checkpoint_writes_are_conditional_on_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        assert!(store.checkpoint("s").await.unwrap().is_none());
        store.put_checkpoint("s", 0, &checkpoint(1)).await.unwrap();
        assert!(matches!(
            store.put_checkpoint("s", 0, &checkpoint(1)).await,
            Err(StateError::Conflict { expected: 0, .. })
        ));
        store.put_checkpoint("s", 1, &checkpoint(2)).await.unwrap();
        assert_eq!(store.checkpoint("s").await.unwrap().unwrap().version, 2);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1);
    }

    /// A corrupt file is named in the message and its parse error kept as the cause.
    #[tokio::test]
    async fn a_corrupt_checkpoint_file_keeps_its_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let path = dir.path().join("checkpoints").join("s.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = store.checkpoint("s").await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("state store: {} is corrupt: ", path.display())),
            "{err}"
        );
        let source = std::error::Error::source(&err).expect("the parse error");
        assert!(source.is::<serde_json::Error>(), "{source:?}");
    }

    /// A DynamoDB failure reads as it did when it was a string (the SDK's whole context) and
    /// keeps the SDK error as its source.
    #[test]
    fn a_dynamodb_error_keeps_the_sdk_context_and_the_sdk_error() {
        use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        let sdk: SdkError<GetItemError> = SdkError::timeout_error("no answer in 3.1 s");
        let expected = format!(
            "state store: GetItem on table state: {}",
            DisplayErrorContext(&sdk)
        );
        let err = StateError::Dynamo {
            operation: "GetItem",
            table: "state".into(),
            source: sdk.into(),
        };
        assert_eq!(err.to_string(), expected);
        assert!(expected.contains("no answer in 3.1 s"), "{expected}");
        let source = std::error::Error::source(&err).expect("the SDK error");
        assert!(source.is::<SdkError<GetItemError>>(), "{source:?}");
    }

    #[tokio::test]
    async fn a_lease_blocks_other_owners_until_released_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let later = Utc::now() + chrono::Duration::minutes(5);
        store.acquire_lease("s", "a", later).await.unwrap();
        assert!(matches!(
            store.acquire_lease("s", "b", later).await,
            Err(StateError::LeaseHeld { .. })
        ));
        store.acquire_lease("s", "a", later).await.unwrap();
        store.release_lease("s", "b").await.unwrap();
        assert!(
            store.acquire_lease("s", "b", later).await.is_err(),
            "b cannot release a's lease"
        );
        store.release_lease("s", "a").await.unwrap();
        store.acquire_lease("s", "b", later).await.unwrap();
        // An expired lease is taken over.
        store.release_lease("s", "b").await.unwrap();
        store
            .acquire_lease("s", "c", Utc::now() - chrono::Duration::seconds(1))
            .await
            .unwrap();
        store.acquire_lease("s", "d", later).await.unwrap();
    }

    #[tokio::test]
    async fn a_lease_of_a_dead_local_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let later = Utc::now() + chrono::Duration::minutes(5);
        // A live process (this one) keeps its lease.
        store
            .acquire_lease("s", &format!("{host}:{}", std::process::id()), later)
            .await
            .unwrap();
        assert!(store.acquire_lease("s", "other", later).await.is_err());
        // A pid that cannot exist does not.
        store
            .release_lease("s", &format!("{host}:{}", std::process::id()))
            .await
            .unwrap();
        store
            .acquire_lease("s", &format!("{host}:4294967295"), later)
            .await
            .unwrap();
        store.acquire_lease("s", "other", later).await.unwrap();
    }

    #[tokio::test]
    async fn run_counters_add_up_and_survive_the_extract_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let mut report = RunReport::new("20260101T000000Z-abc", "s", Utc::now());
        store.put_run(&report).await.unwrap();
        let add = RunCounts {
            mapped: 5,
            delivered: 4,
            dead: 1,
            ..Default::default()
        };
        store.add_counts(&report.run_id, "s", &add).await.unwrap();
        store.add_counts(&report.run_id, "s", &add).await.unwrap();
        report.counts.extracted = 10;
        store.put_run(&report).await.unwrap();
        let runs = store.runs(10).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (
                runs[0].counts.extracted,
                runs[0].counts.mapped,
                runs[0].counts.delivered,
                runs[0].counts.dead
            ),
            (10, 10, 8, 2)
        );
    }
}
