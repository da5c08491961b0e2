//! Dead letters: calls that cannot be delivered, each with its reason, in one format wherever
//! they go — the delivery dead-letter queue in AWS, a JSON-lines file locally (`sfsync sync`'s
//! `dead-letters.jsonl`, `sfsync deliver --dead-letter FILE`). One SQS message, or one line,
//! per call:
//!
//! `{"v":1,"run_id":"…","destination":"seg","reason":"HTTP 400: …","call":{…}}`
//!
//! The deliver stage reads that shape as a calls message of one call with a fresh attempt
//! count ([`crate::deliver::decode_delivery`]), which is what a redrive of the queue relies on;
//! [`read_file`] reads a file of them for `sfsync redrive`. docs/operate.md documents it.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::message::{DeadLetter, MESSAGE_VERSION};
use crate::queue::{QueueError, SqsQueue};

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("cannot write dead letters to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read dead letters from {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a dead letter: {source}")]
    Line {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error(
        "{path} line {line}: dead-letter version {version} is not supported (this build reads version {MESSAGE_VERSION})"
    )]
    Version {
        path: PathBuf,
        line: usize,
        version: u32,
    },
    #[error("cannot dead-letter {calls} call(s): {source}")]
    Queue { calls: usize, source: QueueError },
    #[error("cannot encode a dead letter: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where dead letters go. `write` returns once every letter is durably kept (the SQS queue
/// accepted it, or the file is synced): only then may the message they came from be
/// acknowledged.
pub trait DeadLetterSink: Send + Sync {
    fn write(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<(), DeadLetterError>> + Send;
}

/// The delivery dead-letter queue: one uncompressed message per call, so that a person can
/// read them with `aws sqs receive-message` and a redrive needs no tool.
impl DeadLetterSink for SqsQueue {
    async fn write(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        for letter in letters {
            tracing::error!(
                destination = %letter.destination,
                record_id = %letter.call.source().record_id,
                message_id = %letter.call.message_id,
                reason = %letter.reason,
                "call dead-lettered"
            );
        }
        let bodies = letters
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        self.send_bodies(bodies, None)
            .await
            .map_err(|source| DeadLetterError::Queue {
                calls: letters.len(),
                source,
            })
    }
}

/// A JSON-lines file of dead letters, appended to and synced after every write.
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    /// Opened at the first letter: a run without dead letters leaves no file.
    file: Mutex<Option<std::fs::File>>,
}

impl DeadLetterFile {
    pub fn new(path: impl Into<PathBuf>) -> DeadLetterFile {
        DeadLetterFile {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`DeadLetterSink::write`] for callers that are not async.
    pub fn append(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let io = |source| DeadLetterError::Write {
            path: self.path.clone(),
            source,
        };
        let mut text = Vec::new();
        for letter in letters {
            serde_json::to_writer(&mut text, letter)?;
            text.push(b'\n');
        }
        // A poisoned lock only means another writer panicked mid-write; the file is still
        // the file (appends are whole lines or nothing we rely on).
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            *guard = Some(file);
        }
        if let Some(file) = guard.as_mut() {
            file.write_all(&text).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }
}

impl DeadLetterSink for DeadLetterFile {
    async fn write(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        for letter in letters {
            // Debug only: the run's summary names the file, and a rejected batch must not
            // flood a terminal with one line per call.
            tracing::debug!(
                destination = %letter.destination,
                record_id = %letter.call.source().record_id,
                message_id = %letter.call.message_id,
                reason = %letter.reason,
                "call dead-lettered"
            );
        }
        self.append(letters)
    }
}

/// Every dead letter of a file written by [`DeadLetterFile`] (blank lines skipped); a line
/// that is not one is an error naming it.
pub fn read_file(path: &Path) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let text = std::fs::read_to_string(path).map_err(|source| DeadLetterError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut letters = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let letter: DeadLetter =
            serde_json::from_str(line).map_err(|source| DeadLetterError::Line {
                path: path.to_path_buf(),
                line: index + 1,
                source,
            })?;
        if letter.v != MESSAGE_VERSION {
            return Err(DeadLetterError::Version {
                path: path.to_path_buf(),
                line: index + 1,
                version: letter.v,
            });
        }
        letters.push(letter);
    }
    Ok(letters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str) -> DeadLetter {
        let call = serde_json::from_value(serde_json::json!({
            "type": "identify", "messageId": id, "timestamp": "2024-05-01T12:34:56.000Z",
            "userId": "003A", "traits": {"email": "a@example.com"},
            "context": {"sfsync": {"sync": "contacts", "object": "Contact", "kind": "people", "recordId": "003A"}}
        }))
        .expect("a call");
        DeadLetter {
            v: MESSAGE_VERSION,
            run_id: "20260101T000000Z-x".into(),
            destination: "seg".into(),
            reason: "HTTP 400: bad".into(),
            call,
        }
    }

    #[tokio::test]
    async fn a_file_of_dead_letters_reads_back_as_written_and_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/dead.jsonl");
        let sink = DeadLetterFile::new(&path);
        sink.write(&[letter("m1")]).await.expect("write");
        sink.write(&[]).await.expect("nothing");
        DeadLetterFile::new(&path)
            .write(&[letter("m2")])
            .await
            .expect("append");
        assert_eq!(
            read_file(&path).expect("read"),
            vec![letter("m1"), letter("m2")]
        );
    }

    #[test]
    fn a_line_that_is_not_a_dead_letter_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dead.jsonl");
        let good = serde_json::to_string(&letter("m1")).expect("json");
        std::fs::write(&path, format!("{good}\n\n{{\"reason\":\"x\"}}\n")).expect("write");
        let err = read_file(&path).expect_err("line 3");
        assert!(
            matches!(err, DeadLetterError::Line { line: 3, .. }),
            "{err}"
        );
        std::fs::write(&path, good.replacen("\"v\":1", "\"v\":9", 1)).expect("write");
        assert!(matches!(
            read_file(&path),
            Err(DeadLetterError::Version {
                line: 1,
                version: 9,
                ..
            })
        ));
    }
}
