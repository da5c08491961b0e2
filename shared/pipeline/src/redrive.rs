//! Redriving a dead-letter file locally (`sfsync redrive FILE`): once the cause is fixed, its
//! calls are delivered again through the same deliver stage as `sfsync sync` — a fresh
//! attempt count, the same retries — and the file is left holding exactly the calls that
//! are still dead (with their new reasons), or removed when none is. The AWS counterpart is
//! a message move from the delivery dead-letter queue to the delivery queue
//! (docs/operate.md): both read the one dead-letter format (crate::dead_letter).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sfsync_mapping::Config;

use crate::dead_letter::{self, DeadLetterError, DeadLetterFile};
use crate::deliver::{DeliverPolicy, DeliverSetupError, Deliverer};
use crate::local::{LocalDeliverError, LocalDelivery, ProgressFn};
use crate::message::{CallsMessage, DeadLetter, MESSAGE_VERSION};
use crate::report::RunCounts;

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    Setup(#[from] DeliverSetupError),
    /// Delivery stopped (a destination refused our credentials, or the new dead letters
    /// could not be written): the file is left as it was, so nothing is lost.
    #[error("{source}. {} is unchanged", path.display())]
    Stopped {
        path: PathBuf,
        source: LocalDeliverError,
    },
    #[error("cannot replace {path}: {source}")]
    Replace {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RedriveOutcome {
    /// Dead letters read from the file.
    pub read: u64,
    /// Delivered, dead again, retried, requests: over every call.
    pub counts: RunCounts,
}

/// Delivers the calls of a dead-letter file again; see the module doc.
pub async fn redrive_file(
    config: &Config,
    path: &Path,
    budget: Duration,
    progress: ProgressFn,
) -> Result<RedriveOutcome, RedriveError> {
    let letters = dead_letter::read_file(path)?;
    let read = letters.len() as u64;
    let deliverer = Deliverer::from_config(config, DeliverPolicy::local(budget))?;
    let mut pending = path.as_os_str().to_owned();
    pending.push(".redrive");
    let pending = PathBuf::from(pending);
    // A leftover of an interrupted redrive: its letters are still in the file itself.
    let _ = std::fs::remove_file(&pending);
    let delivery = LocalDelivery::new(deliverer, DeadLetterFile::new(&pending), progress);
    let counts = match delivery.deliver_all(messages(letters), "redrive").await {
        Ok(counts) => counts,
        Err(source) => {
            let _ = std::fs::remove_file(&pending);
            return Err(RedriveError::Stopped {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let replaced = if pending.exists() {
        std::fs::rename(&pending, path)
    } else {
        std::fs::remove_file(path)
    };
    replaced.map_err(|source| RedriveError::Replace {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(RedriveOutcome { read, counts })
}

/// Dead letters as calls messages, one per run and destination in file order, each with a
/// fresh attempt count (the same as a redriven dead letter on SQS).
fn messages(letters: Vec<DeadLetter>) -> Vec<CallsMessage> {
    let mut out: Vec<CallsMessage> = Vec::new();
    for letter in letters {
        match out
            .iter_mut()
            .find(|m| m.run_id == letter.run_id && m.destination == letter.destination)
        {
            Some(message) => message.calls.push(letter.call),
            None => out.push(CallsMessage {
                v: MESSAGE_VERSION,
                run_id: letter.run_id,
                destination: letter.destination,
                attempt: 0,
                paused_since: None,
                calls: vec![letter.call],
            }),
        }
    }
    out
}
