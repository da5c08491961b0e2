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
            .map_err(|e| ReplayStoreError(format!("stored replay id is not base64: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("replay store: {0}")]
pub struct ReplayStoreError(pub String);

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
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ReplayStoreError(format!("{} is corrupt: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReplayStoreError(format!("{}: {e}", path.display()))),
        }
    }

    async fn put(&self, sync: &str, replay: &StoredReplay) -> Result<(), ReplayStoreError> {
        let err = |e: std::io::Error| ReplayStoreError(format!("{}: {e}", self.dir.display()));
        tokio::fs::create_dir_all(&self.dir).await.map_err(err)?;
        let path = self.path(sync);
        let tmp = path.with_extension("json.tmp");
        let body =
            serde_json::to_vec_pretty(replay).map_err(|e| ReplayStoreError(e.to_string()))?;
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

    fn err<E: std::error::Error + 'static>(
        &self,
        what: &str,
        e: aws_sdk_dynamodb::error::SdkError<E>,
    ) -> ReplayStoreError {
        ReplayStoreError(format!(
            "{what} on table {}: {}",
            self.table,
            aws_sdk_dynamodb::error::DisplayErrorContext(&e)
        ))
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
            .ok_or_else(|| ReplayStoreError(format!("replay item of {sync} has no body")))?;
        serde_json::from_str(body)
            .map(Some)
            .map_err(|e| ReplayStoreError(format!("replay item of {sync} is corrupt: {e}")))
    }

    async fn put(&self, sync: &str, replay: &StoredReplay) -> Result<(), ReplayStoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let body = serde_json::to_string(replay).map_err(|e| ReplayStoreError(e.to_string()))?;
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
    }
}
