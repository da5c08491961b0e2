//! The map stage, end to end: a records message → calls, routed to the destinations whose
//! `syncs` include the sync, sent as one calls message per destination through the
//! delivery queue, and counted. How the calls travel is the queue's business (SQS packs and
//! compresses them, `crate::queue`; locally they are delivered in the same process); the
//! hosts — the map Lambda and `sfsync sync` (`crate::local`) — only translate.
//!
//! - [`run_map_stage`]: one SQS message body, as the map Lambda receives it: decoded,
//!   mapped, sent, counted in the run's report (best effort) and in the metrics;
//! - [`map_and_send`]: mapping and sending only, for a host that counts the run its own way
//!   (the local run adds the delivery's counts before it stores them);
//! - [`map_calls`]: mapping only.

use std::collections::{BTreeMap, HashSet};

use sfsync_mapping::{Call, Config, map_raw};

use crate::message::{CallsMessage, MESSAGE_VERSION, MessageError, RecordsMessage, decode};
use crate::queue::{Queue, QueueError, SendError};
use crate::report::RunCounts;
use crate::state::StateStore;

/// Why a records message was not mapped and sent; the message is retried (and reaches the
/// dead-letter queue after `maxReceiveCount`).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("message has no body")]
    NoBody,
    /// The body is not a records message this build reads.
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error("message names sync {sync:?}, which the config does not have")]
    UnknownSync { sync: String },
    /// The delivery queue did not take the calls of destination `destination`.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one records message became.
#[derive(Debug, Default)]
pub struct MapOutcome {
    pub run_id: String,
    pub sync: String,
    pub counts: RunCounts,
    /// One line per skipped record: its Id and reason (for logs and the CLI).
    pub skipped: Vec<String>,
    /// Wire messages sent per destination (destinations without calls are absent).
    pub sent: BTreeMap<String, usize>,
}

/// One records message as calls, before any packing.
#[derive(Debug, Default)]
pub struct MappedCalls {
    /// The mapped calls, in record order.
    pub calls: Vec<sfsync_mapping::Call>,
    /// The destinations that take this sync, in config order.
    pub destinations: Vec<String>,
    pub counts: RunCounts,
    /// One line per skipped record: its Id and reason (for logs and the CLI).
    pub skipped: Vec<String>,
}

/// Maps every record of a message and names the destinations its calls go to.
pub fn map_calls(config: &Config, message: &mut RecordsMessage) -> Result<MappedCalls, MapError> {
    let sync = config
        .sync(&message.sync)
        .ok_or_else(|| MapError::UnknownSync {
            sync: message.sync.clone(),
        })?;
    let mut out = MappedCalls::default();
    out.calls.reserve(message.records.len());
    for record in std::mem::take(&mut message.records) {
        match map_raw(sync, &record) {
            Ok(call) => {
                match call.merge_cause {
                    Some(sfsync_mapping::MergeCause::Conversion) => out.counts.conversions += 1,
                    Some(sfsync_mapping::MergeCause::Merge) => out.counts.merges += 1,
                    None => {}
                }
                out.calls.push(call)
            }
            Err(skip) => {
                if skip.reason.is_deliberate() {
                    out.counts.skipped_deliberate += 1;
                } else {
                    out.counts.mapped = out.counts.mapped.saturating_sub(1);
                    out.counts.skipped += 1;
                }
                *out.counts
                    .skip_reasons
                    .entry(skip.reason.code().to_string())
                    .or_default() += 1;
                out.skipped.push(skip.to_string());
            }
        }
    }
    out.destinations = config
        .destinations
        .iter()
        .filter(|d| d.routes(&sync.name))
        .map(|d| d.name.clone())
        .collect();
    out.counts.mapped = out.calls.len() as u64;
    Ok(out)
}

/// The map Lambda's work on one SQS message body: decoded, mapped, sent to the delivery
/// queue, logged, counted in the run's report and emitted as metrics. Counters are best
/// effort: a lost increment must not send the records again.
pub async fn run_map_stage<Q, S>(
    config: &Config,
    body: Option<&str>,
    delivery: &Q,
    store: &S,
) -> Result<MapOutcome, MapError>
where
    Q: Queue<CallsMessage>,
    S: StateStore,
{
    let records: RecordsMessage = decode(body.ok_or(MapError::NoBody)?)?;
    let outcome = map_and_send(config, records, delivery).await?;
    for line in &outcome.skipped {
        tracing::warn!(run_id = %outcome.run_id, sync = %outcome.sync, "skipped {line}");
    }
    if let Err(e) = store
        .add_counts(&outcome.run_id, &outcome.sync, &outcome.counts)
        .await
    {
        tracing::warn!(error = %e, "run counters not updated");
    }
    tracing::info!(
        run_id = %outcome.run_id,
        sync = %outcome.sync,
        mapped = outcome.counts.mapped,
        skipped = outcome.counts.skipped,
        "mapped"
    );
    crate::metrics::emit("map", &outcome.sync, &outcome.counts, 0);
    Ok(outcome)
}

/// Maps a records message and sends one calls message per destination that takes its sync.
///
/// A call too large for a queue message even alone (the queue says which, and sends
/// nothing of that message) cannot fit any destination's batch either: it is counted as
/// skipped (`too_large`) and named in `skipped`, and its neighbours go on — instead of
/// failing the whole message and, after retries, sending them all to the dead-letter queue.
/// Such a call is left out for every later destination too.
pub async fn map_and_send<Q: Queue<CallsMessage>>(
    config: &Config,
    mut records: RecordsMessage,
    delivery: &Q,
) -> Result<MapOutcome, MapError> {
    let MappedCalls {
        calls,
        destinations,
        counts,
        skipped,
    } = map_calls(config, &mut records)?;
    let mut out = MapOutcome {
        run_id: records.run_id,
        sync: records.sync,
        counts,
        skipped,
        sent: BTreeMap::new(),
    };
    let mut pool = calls;
    let last = destinations.len().saturating_sub(1);
    for (i, destination) in destinations.into_iter().enumerate() {
        if pool.is_empty() {
            break;
        }
        // The last destination takes the calls; the others a copy.
        let calls = if i == last {
            std::mem::take(&mut pool)
        } else {
            pool.clone()
        };
        let message = CallsMessage {
            v: MESSAGE_VERSION,
            run_id: out.run_id.clone(),
            destination: destination.clone(),
            attempt: 0,
            paused_since: None,
            calls,
        };
        let sent = send_fitting(delivery, message, &mut out).await?;
        if let Some(dropped) = &sent.dropped {
            pool.retain(|call| !dropped.contains(&call.message_id));
        }
        if sent.messages > 0 {
            out.sent.insert(destination, sent.messages);
        }
    }
    Ok(out)
}

/// What one destination's calls message became.
struct Sent {
    messages: usize,
    /// Message ids of the calls left out as too large, when some were.
    dropped: Option<HashSet<String>>,
}

/// Sends a calls message; when the queue refuses some calls as too large for any message,
/// sends the rest and counts those as skipped (once per record, whichever destination
/// found them).
async fn send_fitting<Q: Queue<CallsMessage>>(
    delivery: &Q,
    message: CallsMessage,
    out: &mut MapOutcome,
) -> Result<Sent, MapError> {
    let (mut message, items) = match delivery.send(message, None).await {
        Ok(messages) => {
            return Ok(Sent {
                messages,
                dropped: None,
            });
        }
        Err(SendError::Queue(e)) => return Err(e.into()),
        Err(SendError::TooLarge { message, items, .. }) => (message, items),
    };
    let mut dropped = HashSet::new();
    for index in items.into_iter().rev() {
        if index >= message.calls.len() {
            continue;
        }
        let call = message.calls.remove(index);
        if !out
            .skipped
            .iter()
            .any(|line| line == &too_large_line(&call))
        {
            out.counts.mapped = out.counts.mapped.saturating_sub(1);
            out.counts.skipped += 1;
            *out.counts
                .skip_reasons
                .entry("too_large".into())
                .or_default() += 1;
            out.skipped.push(too_large_line(&call));
        }
        dropped.insert(call.message_id);
    }
    if message.calls.is_empty() {
        return Ok(Sent {
            messages: 0,
            dropped: Some(dropped),
        });
    }
    // The culprits were found by packing each call alone: the rest fits.
    match delivery.send(message, None).await {
        Ok(messages) => Ok(Sent {
            messages,
            dropped: Some(dropped),
        }),
        Err(SendError::Queue(e)) => Err(e.into()),
        Err(SendError::TooLarge { source, .. }) => Err(source.into()),
    }
}

fn too_large_line(call: &Call) -> String {
    format!(
        "record {}: its call is too large for a queue message",
        call.source().record_id
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::message::{Compression, Packer};
    use crate::queue::pack_bodies;
    use crate::state::file::FileStore;
    use serde_json::json;

    const CONFIG: &str = r#"
[salesforce]
login_url = "https://x.my.salesforce.com"
auth = "client_credentials"
client_id = "id"
client_secret = "s"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "Notes__c"]

[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name"]

[[destinations]]
name = "all"
type = "file"
path = "a.jsonl"

[[destinations]]
name = "accounts_only"
type = "file"
path = "b.jsonl"
syncs = ["accounts"]
"#;

    /// The delivery queue as SQS packs it (`queue::pack_bodies`, the very code of
    /// `SqsQueue`), keeping the bodies instead of sending them.
    struct Packing {
        max_body_bytes: usize,
        compression: Compression,
        bodies: Mutex<Vec<String>>,
    }

    impl Packing {
        fn new(max_body_bytes: usize, compression: Compression) -> Packing {
            Packing {
                max_body_bytes,
                compression,
                bodies: Mutex::new(Vec::new()),
            }
        }

        /// Every calls message sent, decoded.
        fn sent(&self) -> Vec<CallsMessage> {
            let bodies = self.bodies.lock().unwrap();
            bodies.iter().map(|b| decode(b).unwrap()).collect()
        }

        fn calls_for(&self, destination: &str) -> usize {
            self.sent()
                .iter()
                .filter(|m| m.destination == destination)
                .map(|m| m.calls.len())
                .sum()
        }
    }

    impl Queue<CallsMessage> for Packing {
        async fn send(
            &self,
            message: CallsMessage,
            _delay: Option<Duration>,
        ) -> Result<usize, SendError<CallsMessage>> {
            let bodies = pack_bodies(message, self.max_body_bytes, self.compression)?;
            let n = bodies.len();
            self.bodies.lock().unwrap().extend(bodies);
            Ok(n)
        }
    }

    /// A delivery queue that is down.
    struct Down;

    impl Queue<CallsMessage> for Down {
        async fn send(
            &self,
            _message: CallsMessage,
            _delay: Option<Duration>,
        ) -> Result<usize, SendError<CallsMessage>> {
            Err(QueueError::downstream(std::io::Error::other("the queue is down")).into())
        }
    }

    fn record(i: usize, notes: &str) -> serde_json::Value {
        json!({"Id": format!("003{i:015}"), "SystemModstamp": "2024-05-01T00:00:00.000+0000", "Email": format!("p{i}@x.io"), "Notes__c": notes})
    }

    fn message(records: Vec<serde_json::Value>) -> RecordsMessage {
        RecordsMessage {
            v: MESSAGE_VERSION,
            run_id: "r".into(),
            sync: "contacts".into(),
            records: records
                .into_iter()
                .map(sfsync_mapping::Record::from)
                .collect(),
        }
    }

    fn gzip() -> Compression {
        Compression::from(true)
    }

    #[tokio::test]
    async fn calls_are_routed_only_to_destinations_that_take_the_sync() {
        let config = Config::parse(CONFIG).unwrap();
        let queue = Packing::new(64 * 1024, gzip());
        let records = (0..50).map(|i| record(i, "n")).collect();
        let out = map_and_send(&config, message(records), &queue)
            .await
            .unwrap();
        assert_eq!(out.counts.mapped, 50);
        assert_eq!(out.sent.keys().collect::<Vec<_>>(), vec!["all"]);
        assert_eq!(queue.calls_for("all"), 50);
        assert_eq!(queue.calls_for("accounts_only"), 0);
        let first = &queue.sent()[0];
        assert_eq!((first.run_id.as_str(), first.attempt), ("r", 0));
    }

    #[tokio::test]
    async fn every_destination_of_the_sync_gets_every_call() {
        let config = Config::parse(CONFIG).unwrap();
        let queue = Packing::new(64 * 1024, Compression::Off);
        let mut m = message(vec![
            json!({"Id": "001000000000000001", "SystemModstamp": "2024-05-01T00:00:00.000+0000", "Name": "A"}),
            json!({"Id": "001000000000000002", "SystemModstamp": "2024-05-01T00:00:00.000+0000", "Name": "B"}),
        ]);
        m.sync = "accounts".into();
        let out = map_and_send(&config, m, &queue).await.unwrap();
        assert_eq!(out.counts.mapped, 2);
        assert_eq!(
            out.sent.keys().collect::<Vec<_>>(),
            vec!["accounts_only", "all"]
        );
        assert_eq!(
            (queue.calls_for("all"), queue.calls_for("accounts_only")),
            (2, 2)
        );
    }

    #[tokio::test]
    async fn skips_are_counted_by_reason_and_named() {
        let config = Config::parse(CONFIG).unwrap();
        let mut records: Vec<_> = (0..3).map(|i| record(i, "n")).collect();
        records.push(json!({"Id": "003X", "SystemModstamp": "garbage"}));
        let queue = Packing::new(64 * 1024, Compression::Off);
        let out = map_and_send(&config, message(records), &queue)
            .await
            .unwrap();
        assert_eq!((out.counts.mapped, out.counts.skipped), (3, 1));
        assert_eq!(out.counts.skip_reasons.get("invalid_date"), Some(&1));
        assert!(out.skipped[0].contains("003X"));
        assert_eq!(queue.calls_for("all"), 3);
    }

    #[tokio::test]
    async fn a_call_too_large_for_any_message_is_skipped_and_its_neighbours_go_on() {
        let config = Config::parse(CONFIG).unwrap();
        // Random text does not compress: 40,000 characters cannot fit a 16 KiB message.
        let noise: String = (0..40_000)
            .map(|_| char::from(b'!' + rand::random::<u8>() % 90))
            .collect();
        let records = vec![record(1, "ok"), record(2, &noise), record(3, "ok")];
        let queue = Packing::new(16 * 1024, gzip());
        let out = map_and_send(&config, message(records), &queue)
            .await
            .unwrap();
        assert_eq!(out.counts.mapped, 2);
        assert_eq!(out.counts.skipped, 1);
        assert_eq!(out.counts.skip_reasons.get("too_large"), Some(&1));
        assert!(
            out.skipped.iter().any(|s| s.contains("003000000000000002")),
            "{:?}",
            out.skipped
        );
        assert_eq!(queue.calls_for("all"), 2);
    }

    #[tokio::test]
    async fn an_unknown_sync_is_an_error() {
        let config = Config::parse(CONFIG).unwrap();
        let mut m = message(vec![]);
        m.sync = "nope".into();
        let queue = Packing::new(64 * 1024, gzip());
        let err = map_and_send(&config, m, &queue).await.unwrap_err();
        assert!(matches!(err, MapError::UnknownSync { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "message names sync \"nope\", which the config does not have"
        );
    }

    #[tokio::test]
    async fn a_queue_that_does_not_take_the_calls_is_a_typed_error_with_its_cause() {
        let config = Config::parse(CONFIG).unwrap();
        let err = map_and_send(&config, message(vec![record(1, "n")]), &Down)
            .await
            .unwrap_err();
        let MapError::Queue(QueueError::Downstream(cause)) = &err else {
            panic!("not a queue error: {err:?}");
        };
        assert!(cause.downcast_ref::<std::io::Error>().is_some());
        assert_eq!(err.to_string(), "the next stage failed: the queue is down");
    }

    #[tokio::test]
    async fn the_stage_decodes_a_body_sends_its_calls_and_counts_them_in_the_run() {
        let config = Config::parse(CONFIG).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let queue = Packing::new(64 * 1024, gzip());
        let mut records: Vec<_> = (0..5).map(|i| record(i, "n")).collect();
        records.push(json!({"Id": "003X", "SystemModstamp": "garbage"}));
        let mut packer = Packer::new(Packer::records_prefix("r", "contacts"), 1 << 20, true);
        for r in &records {
            packer.push(r).unwrap();
        }
        let body = packer.finish().unwrap().remove(0).body;

        let out = run_map_stage(&config, Some(&body), &queue, &store)
            .await
            .unwrap();
        assert_eq!((out.counts.mapped, out.counts.skipped), (5, 1));
        assert_eq!(queue.calls_for("all"), 5);
        let runs = store.runs(10).await.unwrap();
        let run = runs.iter().find(|r| r.run_id == "r").unwrap();
        assert_eq!((run.counts.mapped, run.counts.skipped), (5, 1));
    }

    #[tokio::test]
    async fn a_body_that_is_missing_or_not_a_records_message_is_named() {
        let config = Config::parse(CONFIG).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let queue = Packing::new(64 * 1024, gzip());
        let err = run_map_stage(&config, None, &queue, &store)
            .await
            .unwrap_err();
        assert!(matches!(err, MapError::NoBody));
        assert_eq!(err.to_string(), "message has no body");
        let err = run_map_stage(&config, Some("not json"), &queue, &store)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MapError::Message(MessageError::Json(_))),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("message body is not valid JSON"),
            "{err}"
        );
        assert!(queue.sent().is_empty());
    }
}
