//! Where a stage hands messages to the next one: SQS in AWS, the next stage itself locally.
//! The queue is typed: a stage sends records or calls messages, and how they travel is the
//! queue's business — [`SqsQueue`] packs them into as few bodies as the size limit allows
//! (gzip-compressed by default, crate::message); the local queues hand the values over.
//!
//! `send` returns only once the message is durably accepted (SQS answered success for each
//! entry; locally, the next stage finished with it). The extract stage relies on that: its
//! checkpoint moves only after `send` returned.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::message::{Compression, MessageError, Packable, Packer, pack_message};

/// Why a queue did not take a message. The causes are kept as they came (the SDK's error,
/// the next stage's); the messages read the same as they did when they were strings.
/// Causes are part of the message rather than `source()`, so that a chain printer
/// (`{:#}`) does not repeat them.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: {error}")]
    Send { queue: String, error: SqsSendError },
    /// Locally the next stage runs inside `send`: its failure, whatever its type.
    #[error("the next stage failed: {0}")]
    Downstream(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot pack the message: {0}")]
    Pack(MessageError),
}

impl QueueError {
    /// The next stage's failure, kept with its type (callers may downcast it).
    pub fn downstream(error: impl std::error::Error + Send + Sync + 'static) -> QueueError {
        QueueError::Downstream(Box::new(error))
    }
}

/// How a `SendMessageBatch` failed.
#[derive(Debug, thiserror::Error)]
pub enum SqsSendError {
    /// The request itself failed (network, throttling, credentials) on every attempt.
    #[error("{}", DisplayErrorContext(.0))]
    Request(Box<SdkError<SendMessageBatchError>>),
    /// SQS refused an entry as our fault (too large, invalid characters): retrying cannot
    /// help.
    #[error("entry rejected: {code} {message}")]
    EntryRejected { code: String, message: String },
    /// Entries SQS failed on its side were retried, and some still failed.
    #[error("{entries} entr{} still failing after {attempts} attempts", if *.entries == 1 { "y" } else { "ies" })]
    EntriesStillFailing { entries: usize, attempts: u32 },
    /// An entry could not be built (a missing required field: a bug, not bad data).
    #[error("{0}")]
    Entry(#[from] aws_sdk_sqs::error::BuildError),
}

/// Why a send failed.
pub enum SendError<M> {
    /// Some items cannot fit a queue message even alone (their indices, in order). Nothing
    /// was sent, and the message is handed back so that the sender can drop or name them.
    TooLarge {
        message: M,
        items: Vec<usize>,
        source: MessageError,
    },
    Queue(QueueError),
}

impl<M> From<QueueError> for SendError<M> {
    fn from(e: QueueError) -> Self {
        SendError::Queue(e)
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { items, source, .. } => write!(
                f,
                "{} item(s) cannot fit a queue message: {source}",
                items.len()
            ),
            SendError::Queue(e) => e.fmt(f),
        }
    }
}

/// Without the message: it carries records (personal data) and may be large.
impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::TooLarge { items, source, .. } => f
                .debug_struct("TooLarge")
                .field("items", items)
                .field("source", source)
                .finish_non_exhaustive(),
            SendError::Queue(e) => f.debug_tuple("Queue").field(e).finish(),
        }
    }
}

impl<M> std::error::Error for SendError<M> {}

pub trait Queue<M>: Send + Sync {
    /// Sends `message`, released to the next stage after `delay` (at once when `None`), and
    /// returns how many wire messages it took. On failure some of it may have been sent
    /// (at-least-once: the caller's retry sends it again, which deterministic ids make
    /// harmless), except for [`SendError::TooLarge`], which sends nothing.
    fn send(
        &self,
        message: M,
        delay: Option<Duration>,
    ) -> impl Future<Output = Result<usize, SendError<M>>> + Send;
}

/// SQS through `SendMessageBatch`: up to 10 entries and at most `max_batch_bytes` per
/// request; entries that failed for a reason on SQS's side are retried with backoff.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    max_batch_bytes: usize,
    /// Messages are packed into bodies of at most this many bytes, compressed as
    /// `compression` says (crate::message).
    max_body_bytes: usize,
    compression: Compression,
    max_attempts: u32,
    retry_base: Duration,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
            max_batch_bytes: crate::message::DEFAULT_MAX_BODY_BYTES,
            max_body_bytes: crate::message::DEFAULT_MAX_BODY_BYTES,
            compression: Compression::from(true),
            max_attempts: 5,
            retry_base: Duration::from_millis(100),
        }
    }

    pub fn with_retry(mut self, max_attempts: u32, base: Duration) -> SqsQueue {
        self.max_attempts = max_attempts.max(1);
        self.retry_base = base;
        self
    }

    /// The most bytes of bodies one SendMessageBatch may carry (SQS: the message size limit).
    pub fn with_max_batch_bytes(mut self, bytes: usize) -> SqsQueue {
        self.max_batch_bytes = bytes;
        self
    }

    /// How messages are packed: bodies (and SendMessageBatch requests) of at most
    /// `max_bytes`, compressed as `compression` says (a [`Compression`] level, or `true` /
    /// `false` for gzip at the default level / none).
    pub fn with_message_limits(
        mut self,
        max_bytes: usize,
        compression: impl Into<Compression>,
    ) -> SqsQueue {
        self.max_batch_bytes = max_bytes;
        self.max_body_bytes = max_bytes;
        self.compression = compression.into();
        self
    }

    /// The message limits and compression level of the config's `[pipeline]` section.
    pub fn with_pipeline(self, pipeline: &sfsync_mapping::config::PipelineConfig) -> SqsQueue {
        self.with_message_limits(pipeline.max_message_bytes, Compression::of(pipeline))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Packs a message into as few bodies as its size allows and sends them; returns how
    /// many bodies it took. Items that cannot fit any body are refused with their indices
    /// before anything is sent ([`SendError::TooLarge`]).
    async fn send_packed<M: Packable + Sync>(
        &self,
        message: M,
        delay: Option<Duration>,
    ) -> Result<usize, SendError<M>> {
        let bodies = pack_bodies(message, self.max_body_bytes, self.compression)?;
        let count = bodies.len();
        self.send_bodies(bodies, delay).await?;
        Ok(count)
    }

    /// Sends bodies as they are (already packed, or dead letters).
    pub async fn send_bodies(
        &self,
        bodies: Vec<String>,
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        for batch in self.batches(bodies) {
            self.send_batch(batch, delay).await?;
        }
        Ok(())
    }

    /// Makes a received message visible again after `after` (SQS's visibility timeout, at
    /// most 12 hours): how a message left on the queue honours the wait it asked for.
    pub async fn set_visibility(&self, receipt_handle: &str, after: Duration) {
        let seconds = after.as_secs().clamp(1, 12 * 3600) as i32;
        if let Err(e) = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
        {
            tracing::warn!(error = %DisplayErrorContext(&e), "cannot extend the visibility timeout");
        }
    }

    /// Groups bodies into SendMessageBatch requests: ≤ 10 entries, ≤ max_batch_bytes.
    fn batches(&self, bodies: Vec<String>) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        let mut size = 0;
        for body in bodies {
            let fits = out
                .last()
                .is_some_and(|b| b.len() < 10 && size + body.len() <= self.max_batch_bytes);
            if !fits {
                out.push(Vec::new());
                size = 0;
            }
            size += body.len();
            if let Some(last) = out.last_mut() {
                last.push(body);
            }
        }
        out
    }

    async fn send_batch(
        &self,
        batch: Vec<String>,
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        let mut pending: Vec<(String, String)> = batch
            .into_iter()
            .enumerate()
            .map(|(i, body)| (i.to_string(), body))
            .collect();
        let delay_seconds = delay.map(|d| d.as_secs().min(900) as i32);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .set_delay_seconds(delay_seconds)
                        .build()
                        .map_err(|e| self.error(e.into()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let result = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await;
            let retry_ids: Vec<String> = match result {
                Ok(output) => {
                    let failed = output.failed();
                    if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                        // Our fault (too large, invalid characters): retrying cannot help.
                        return Err(self.error(SqsSendError::EntryRejected {
                            code: f.code().to_string(),
                            message: f.message().unwrap_or_default().to_string(),
                        }));
                    }
                    failed.iter().map(|f| f.id().to_string()).collect()
                }
                Err(e) => {
                    if attempt >= self.max_attempts {
                        return Err(self.error(SqsSendError::Request(Box::new(e))));
                    }
                    tracing::warn!(queue = %self.url, attempt, error = %DisplayErrorContext(&e), "SendMessageBatch failed; retrying");
                    pending.iter().map(|(id, _)| id.clone()).collect()
                }
            };
            if retry_ids.is_empty() {
                return Ok(());
            }
            pending.retain(|(id, _)| retry_ids.contains(id));
            if attempt >= self.max_attempts {
                return Err(self.error(SqsSendError::EntriesStillFailing {
                    entries: pending.len(),
                    attempts: attempt,
                }));
            }
            tracing::warn!(queue = %self.url, attempt, failed = pending.len(), "retrying failed SendMessageBatch entries");
            // SendMessageBatch retries spread out (full jitter) and wait at most 20 s each.
            let wait =
                crate::backoff::full_jitter(self.retry_base, attempt, Duration::from_secs(20));
            tokio::time::sleep(wait).await;
        }
    }

    fn error(&self, error: SqsSendError) -> QueueError {
        QueueError::Send {
            queue: self.url.clone(),
            error,
        }
    }
}

/// A message packed as [`SqsQueue`] sends it: bodies of at most `max_body_bytes`, compressed
/// as `compression` says. Items that cannot fit a body even alone are refused with their
/// indices ([`SendError::TooLarge`], the message handed back).
pub(crate) fn pack_bodies<M: Packable>(
    message: M,
    max_body_bytes: usize,
    compression: Compression,
) -> Result<Vec<String>, SendError<M>> {
    match pack_message(&message, max_body_bytes, compression) {
        Ok(bodies) => Ok(bodies.into_iter().map(|b| b.body).collect()),
        // When compressing, the packer only notices while closing a body (at a later item,
        // or at the end): the culprits are found by packing each item alone.
        Err(source @ MessageError::ItemTooLarge { .. }) => {
            let prefix = message.prefix();
            let items = message
                .items()
                .iter()
                .enumerate()
                .filter(|(_, item)| {
                    let mut alone = Packer::new(prefix.clone(), max_body_bytes, compression);
                    alone.push(item).and_then(|()| alone.finish()).is_err()
                })
                .map(|(i, _)| i)
                .collect();
            Err(SendError::TooLarge {
                message,
                items,
                source,
            })
        }
        Err(e) => Err(QueueError::Pack(e).into()),
    }
}

impl<M: Packable + Send + Sync> Queue<M> for SqsQueue {
    async fn send(&self, message: M, delay: Option<Duration>) -> Result<usize, SendError<M>> {
        self.send_packed(message, delay).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> SqsQueue {
        let conf = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        SqsQueue::new(aws_sdk_sqs::Client::from_conf(conf), "q")
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let q = queue();
        let bodies: Vec<String> = (0..25).map(|_| "x".repeat(1000)).collect();
        let batches = q.batches(bodies);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        let big: Vec<String> = (0..5).map(|_| "y".repeat(100 * 1024)).collect();
        let batches = q.batches(big);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert!(
            batches
                .iter()
                .all(|b| b.iter().map(String::len).sum::<usize>() <= 256 * 1024)
        );
    }
}
