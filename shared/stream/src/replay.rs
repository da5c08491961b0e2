//! Where a sync's stream resumes: the replay id of the last event whose records were durably
//! handed on. Files locally, an item of the state table in DynamoDB.
//!
//! Replay ids are opaque bytes (`pubsub_api.proto`: "store them as bytes"); they are kept
//! base64-encoded, with the time they were stored, which bounds the window to re-read by
//! polling when the id has expired from the event bus.

use std::future::Future;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReplay {
    /// The replay id, base64.
    pub replay_id: String,
    /// The channel it belongs to.
    pub topic: String,
    /// When it was stored (our clock).
    pub stored_at: DateTime<Utc>,
    /// The commit time (Salesforce's clock) of the newest event handed on so far: where a
    /// re-read starts when this replay id has expired.
    #[serde(default)]
    pub last_commit: Option<DateTime<Utc>>,
}

impl StoredReplay {
    pub fn new(
        replay_id: &[u8],
        topic: &str,
        stored_at: DateTime<Utc>,
        last_commit: Option<DateTime<Utc>>,
    ) -> StoredReplay {
        StoredReplay {
            replay_id: STANDARD.encode(replay_id),
            topic: topic.to_string(),
            stored_at,
            last_commit,
        }
    }

    pub fn bytes(&self) -> Result<Vec<u8>, ReplayStoreError> {
        STANDARD
            .decode(&self.replay_id)
            .map_err(ReplayStoreError::NotBase64)
    }
}

/// Why a replay id could not be read or kept. Each variant keeps its cause as `source()`
/// and names it in its message too (the logs and run reports show the message alone).
#[derive(Debug, thiserror::Error)]
pub enum ReplayStoreError {
    #[error("replay store: stored replay id is not base64: {0}")]
    NotBase64(#[source] base64::DecodeError),
    #[error("replay store: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored replay (file or item) that is not the JSON this crate writes.
    #[error("replay store: {what} is corrupt: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("replay store: replay item of {sync} has no body")]
    NoBody { sync: String },
    #[error("replay store: cannot encode the replay: {0}")]
    Encode(#[source] serde_json::Error),
    /// A DynamoDB call failed; the message keeps the SDK's whole context (service code and
    /// message, request id) for the logs.
    #[error(
        "replay store: {operation} on table {table}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(source.as_ref())
    )]
    Dynamo {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub trait ReplayStore: Send + Sync {
    fn get(
        &self,
        sync: &str,
    ) -> impl Future<Output = Result<Option<StoredReplay>, ReplayStoreError>> + Send;

    fn put(
        &self,
        sync: &str,
        replay: &StoredReplay,
    ) -> impl Future<Output = Result<(), ReplayStoreError>> + Send;
}

/// `<state dir>/stream/<sync>.json`, written atomically (temporary file + rename).
#[derive(Debug, Clone)]
pub struct FileReplayStore {
    dir: PathBuf,
}

impl FileReplayStore {
    pub fn new(state_dir: impl Into<PathBuf>) -> FileReplayStore {
        FileReplayStore {
            dir: state_dir.into().join("stream"),
        }
    }

    fn path(&self, sync: &str) -> PathBuf {
        self.dir.join(format!("{sync}.json"))
    }
}

impl ReplayStore for FileReplayStore {
    async fn get(&self, sync: &str) -> Result<Option<StoredReplay>, ReplayStoreError> {
        let path = self.path(sync);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => {
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|source| ReplayStoreError::Corrupt {
                        what: path.display().to_string(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ReplayStoreError::Io { path, source }),
        }
    }

    async fn put(&self, sync: &str, replay: &StoredReplay) -> Result<(), ReplayStoreError> {
        let err = |source: std::io::Error| ReplayStoreError::Io {
            path: self.dir.clone(),
            source,
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(err)?;
        let path = self.path(sync);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(replay).map_err(ReplayStoreError::Encode)?;
        tokio::fs::write(&tmp, body).await.map_err(err)?;
        tokio::fs::rename(&tmp, &path).await.map_err(err)
    }
}

/// The item `pk = "sync#<sync>", sk = "replay"` of the state table (the table the extract
/// stage keeps checkpoints in).
#[derive(Debug, Clone)]
pub struct DynamoReplayStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoReplayStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoReplayStore {
        DynamoReplayStore {
            client,
            table: table.into(),
        }
    }

    fn err<E: std::error::Error + Send + Sync + 'static>(
        &self,
        operation: &'static str,
        e: aws_sdk_dynamodb::error::SdkError<E>,
    ) -> ReplayStoreError {
        ReplayStoreError::Dynamo {
            operation,
            table: self.table.clone(),
            source: Box::new(e),
        }
    }
}

impl ReplayStore for DynamoReplayStore {
    async fn get(&self, sync: &str) -> Result<Option<StoredReplay>, ReplayStoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("sync#{sync}")))
            .key("sk", AttributeValue::S("replay".into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let body = item
            .get("body")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| ReplayStoreError::NoBody { sync: sync.into() })?;
        serde_json::from_str(body)
            .map(Some)
            .map_err(|source| ReplayStoreError::Corrupt {
                what: format!("replay item of {sync}"),
                source,
            })
    }

    async fn put(&self, sync: &str, replay: &StoredReplay) -> Result<(), ReplayStoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let body = serde_json::to_string(replay).map_err(ReplayStoreError::Encode)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("sync#{sync}")))
            .item("sk", AttributeValue::S("replay".into()))
            .item("body", AttributeValue::S(body))
            .send()
            .await
            .map_err(|e| self.err("PutItem replay", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stored_replay_id_comes_back_byte_for_byte() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileReplayStore::new(dir.path());
        assert_eq!(store.get("contacts").await.ok(), Some(None));
        let replay = StoredReplay::new(
            &[0, 0, 1, 255],
            "/data/ContactChangeEvent",
            Utc::now(),
            None,
        );
        store.put("contacts", &replay).await.expect("put");
        let back = store.get("contacts").await.expect("get").expect("stored");
        assert_eq!(back.bytes().ok(), Some(vec![0, 0, 1, 255]));
        assert_eq!(back, replay);
    }

    #[tokio::test]
    async fn a_corrupt_replay_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileReplayStore::new(dir.path());
        std::fs::create_dir_all(dir.path().join("stream")).expect("dir");
        std::fs::write(dir.path().join("stream/contacts.json"), "{").expect("write");
        let err = store.get("contacts").await.expect_err("corrupt");
        assert!(err.to_string().contains("contacts.json"), "{err}");
        // The parser's error is kept as the cause, not only as text.
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.is::<serde_json::Error>(), "{source:?}");
    }

    #[test]
    fn a_replay_id_that_is_not_base64_keeps_the_decoder_error() {
        let mut replay = StoredReplay::new(&[1], "/data/ContactChangeEvent", Utc::now(), None);
        replay.replay_id = "!!".into();
        let err = replay.bytes().expect_err("not base64");
        assert!(err.to_string().contains("not base64"), "{err}");
        let source = std::error::Error::source(&err).expect("a source");
        assert!(source.is::<base64::DecodeError>(), "{source:?}");
    }
}
