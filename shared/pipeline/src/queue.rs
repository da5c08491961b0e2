//! Where a stage hands messages to the next one: SQS in AWS, the next stage itself locally.
//!
//! `send` returns only once every body is durably accepted (SQS answered success for each
//! entry). The extract stage relies on that: its checkpoint moves only after `send` returned.

use std::future::Future;
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::message::{MessageError, Packable, Packer, RecordsMessage};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue}: {message}")]
    Send { queue: String, message: String },
    #[error("the next stage failed: {0}")]
    Downstream(String),
    /// Some items cannot fit a queue message even alone (their indices in the message, in
    /// order). Nothing of the message was sent.
    #[error("{} item(s) cannot fit a queue message: {source}", items.len())]
    TooLarge {
        items: Vec<usize>,
        source: MessageError,
    },
    #[error("cannot pack the message: {0}")]
    Pack(MessageError),
}

pub trait Queue: Send + Sync {
    /// Sends every body, or fails; on failure some bodies may have been sent (at-least-once:
    /// the caller's retry sends them again, which deterministic ids make harmless).
    fn send(
        &self,
        bodies: Vec<String>,
        delay: Option<Duration>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// True for a queue that runs the next stage in this process: it takes records as
    /// values through [`Queue::send_records`], and the sender skips encoding them into
    /// bodies that the next stage would only parse again.
    fn takes_values(&self) -> bool {
        false
    }

    /// Hands records to the next stage as values; only called when `takes_values` is true.
    /// Same contract as `send`: returning `Ok` means they were durably accepted.
    fn send_records(
        &self,
        message: RecordsMessage,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        let sync = message.sync;
        async move {
            Err(QueueError::Downstream(format!(
                "this queue takes message bodies only (records of {sync})"
            )))
        }
    }
}

/// SQS through `SendMessageBatch`: up to 10 entries and at most `max_batch_bytes` per
/// request; entries that failed for a reason on SQS's side are retried with backoff.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    max_batch_bytes: usize,
    /// Messages are packed into bodies of at most this many bytes, gzip-compressed when
    /// `compress` (crate::message).
    max_body_bytes: usize,
    compress: bool,
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
            compress: true,
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
    /// `max_bytes`, gzip-compressed when `compress` (the config's `[pipeline]`).
    pub fn with_message_limits(mut self, max_bytes: usize, compress: bool) -> SqsQueue {
        self.max_batch_bytes = max_bytes;
        self.max_body_bytes = max_bytes;
        self.compress = compress;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Packs a message into as few bodies as its size allows and sends them; returns how
    /// many bodies it took. Items that cannot fit any body are refused with their indices
    /// before anything is sent ([`QueueError::TooLarge`]).
    pub async fn send_message<M: Packable + Sync>(
        &self,
        message: &M,
        delay: Option<Duration>,
    ) -> Result<usize, QueueError> {
        let bodies = self.pack(message)?;
        let count = bodies.len();
        self.send_bodies(bodies, delay).await?;
        Ok(count)
    }

    fn pack<M: Packable>(&self, message: &M) -> Result<Vec<String>, QueueError> {
        let prefix = message.prefix();
        let mut packer = Packer::new(prefix.clone(), self.max_body_bytes, self.compress);
        let packed = message
            .items()
            .iter()
            .try_for_each(|item| packer.push(item))
            .and_then(|()| packer.finish());
        match packed {
            Ok(bodies) => Ok(bodies.into_iter().map(|b| b.body).collect()),
            // When compressing, the packer only notices while closing a body (at a later
            // item, or at the end): the culprits are found by packing each item alone.
            Err(source @ MessageError::ItemTooLarge { .. }) => Err(QueueError::TooLarge {
                items: self.too_large(&prefix, message.items()),
                source,
            }),
            Err(e) => Err(QueueError::Pack(e)),
        }
    }

    /// The indices of the items that cannot fit a body even alone.
    fn too_large<T: serde::Serialize>(&self, prefix: &str, items: &[T]) -> Vec<usize> {
        items
            .iter()
            .enumerate()
            .filter(|(_, item)| {
                let mut alone = Packer::new(prefix.to_string(), self.max_body_bytes, self.compress);
                alone.push(item).and_then(|()| alone.finish()).is_err()
            })
            .map(|(i, _)| i)
            .collect()
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
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "cannot extend the visibility timeout");
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
                        .map_err(|e| self.error(e.to_string()))
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
                        return Err(self.error(format!(
                            "entry rejected: {} {}",
                            f.code(),
                            f.message().unwrap_or_default()
                        )));
                    }
                    failed.iter().map(|f| f.id().to_string()).collect()
                }
                Err(e) => {
                    let message = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                    if attempt >= self.max_attempts {
                        return Err(self.error(message));
                    }
                    tracing::warn!(queue = %self.url, attempt, error = %message, "SendMessageBatch failed; retrying");
                    pending.iter().map(|(id, _)| id.clone()).collect()
                }
            };
            if retry_ids.is_empty() {
                return Ok(());
            }
            pending.retain(|(id, _)| retry_ids.contains(id));
            if attempt >= self.max_attempts {
                return Err(self.error(format!(
                    "{} entr{} still failing after {attempt} attempts",
                    pending.len(),
                    if pending.len() == 1 { "y" } else { "ies" }
                )));
            }
            tracing::warn!(queue = %self.url, attempt, failed = pending.len(), "retrying failed SendMessageBatch entries");
            tokio::time::sleep(crate::backoff(self.retry_base, attempt)).await;
        }
    }

    fn error(&self, message: String) -> QueueError {
        QueueError::Send {
            queue: self.url.clone(),
            message,
        }
    }
}

impl Queue for SqsQueue {
    async fn send(&self, bodies: Vec<String>, delay: Option<Duration>) -> Result<(), QueueError> {
        self.send_bodies(bodies, delay).await
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
