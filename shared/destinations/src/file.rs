//! The file destination: every call appended to `path` as one JSON line (the form `sfsync
//! map` prints), then flushed. For local exports and the demo.
//!
//! The format is our own (JSON Lines, jsonlines.org: UTF-8, one JSON value per line, `\n`
//! separated); the call's field names are those of `sfsync_mapping::Call`.
//!
//! Each `deliver` opens the file in append mode (creating it), writes the whole chunk with
//! one write and flushes. An I/O error makes every call of the chunk dead with the reason
//! (a partial write cannot be attributed to calls). `gzip` does not apply.

use std::io::Write;
use std::path::PathBuf;

use sfsync_mapping::Call;
use sfsync_mapping::config::FileSettings;

use crate::wire::BuildContext;
use crate::{BuildError, CallOutcome, DeliveryReport, Limits, Outcome, Plan, PlannedRequest};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 10_000,
    max_batch_bytes: 64 << 20,
    max_call_bytes: 16 << 20,
};

pub(crate) struct FileSink {
    path: PathBuf,
    limits: Limits,
    /// Serializes writes from concurrent deliveries, so lines never interleave.
    lock: tokio::sync::Mutex<()>,
}

impl FileSink {
    pub(crate) fn new(
        ctx: &BuildContext<'_>,
        settings: &FileSettings,
    ) -> Result<FileSink, BuildError> {
        let path = ctx.non_empty("path", &settings.path)?;
        let config = ctx.config;
        Ok(FileSink {
            path: PathBuf::from(path),
            limits: Limits {
                max_calls: LIMITS
                    .max_calls
                    .min(config.max_batch_calls.unwrap_or(usize::MAX)),
                max_batch_bytes: LIMITS
                    .max_batch_bytes
                    .min(config.max_batch_bytes.unwrap_or(usize::MAX)),
                max_call_bytes: LIMITS
                    .max_call_bytes
                    .min(config.max_batch_bytes.unwrap_or(usize::MAX)),
            },
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }

    fn lines(&self, calls: &[Call]) -> (Vec<u8>, Vec<Option<String>>) {
        let mut buffer = Vec::new();
        let mut errors = Vec::with_capacity(calls.len());
        for call in calls {
            match serde_json::to_vec(call) {
                Ok(line) if line.len() > self.limits.max_call_bytes => errors.push(Some(format!(
                    "too large: {} bytes, the file destination takes at most {} per call",
                    line.len(),
                    self.limits.max_call_bytes
                ))),
                Ok(line) => {
                    buffer.extend_from_slice(&line);
                    buffer.push(b'\n');
                    errors.push(None);
                }
                Err(e) => errors.push(Some(format!("cannot serialize the call: {e}"))),
            }
        }
        (buffer, errors)
    }

    pub(crate) async fn deliver(&self, calls: Vec<Call>) -> DeliveryReport {
        let (buffer, errors) = self.lines(&calls);
        let written = if buffer.is_empty() {
            Ok(())
        } else {
            let _guard = self.lock.lock().await;
            let path = self.path.clone();
            match tokio::task::spawn_blocking(move || append(&path, &buffer)).await {
                Ok(result) => result,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        };
        let io_error = written
            .err()
            .map(|e| format!("cannot append to {}: {e}", self.path.display()));
        let requests = u64::from(errors.iter().any(Option::is_none));
        let outcomes = calls
            .into_iter()
            .zip(errors)
            .map(|(call, error)| {
                let outcome = match (error, &io_error) {
                    (Some(reason), _) => Outcome::Dead { reason },
                    (None, Some(reason)) => Outcome::Dead {
                        reason: reason.clone(),
                    },
                    (None, None) => Outcome::Delivered,
                };
                CallOutcome {
                    message_id: call.message_id.clone(),
                    call,
                    outcome,
                }
            })
            .collect();
        DeliveryReport { outcomes, requests }
    }

    pub(crate) fn plan(&self, calls: &[Call]) -> Plan {
        let (buffer, errors) = self.lines(calls);
        let mut plan = Plan::default();
        let mut carried = Vec::new();
        for (i, e) in errors.into_iter().enumerate() {
            match e {
                Some(reason) => plan.rejected.push((i, reason)),
                None => carried.push(i),
            }
        }
        if !carried.is_empty() {
            plan.requests.push(PlannedRequest {
                url: self.path.display().to_string(),
                calls: carried,
                body_bytes: buffer.len(),
            });
        }
        plan
    }
}

fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.flush()?;
    file.sync_data()
}
