//! The map stage: a records message → calls, routed to the destinations whose `syncs`
//! include the sync, packed into one calls message stream per destination.

use std::collections::BTreeMap;

use sfsync_mapping::{Config, map_record};

use crate::message::{MessageError, Packer, RecordsMessage};
use crate::report::RunCounts;

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("message names sync {0:?}, which the config does not have")]
    UnknownSync(String),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// What one records message became.
#[derive(Debug, Default)]
pub struct MapOutput {
    /// Calls-message bodies per destination name.
    pub bodies: BTreeMap<String, Vec<String>>,
    pub counts: RunCounts,
    /// One line per skipped record: its Id and reason (for logs and the CLI).
    pub skipped: Vec<String>,
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

/// Maps every record of a message and names the destinations its calls go to. Used as is
/// by `sfsync sync`, whose next stage runs in the same process; the Lambda packs the calls
/// into messages with [`map_message`].
pub fn map_calls(config: &Config, message: &mut RecordsMessage) -> Result<MappedCalls, MapError> {
    let sync = config
        .sync(&message.sync)
        .ok_or_else(|| MapError::UnknownSync(message.sync.clone()))?;
    let mut out = MappedCalls::default();
    out.calls.reserve(message.records.len());
    for record in std::mem::take(&mut message.records) {
        match map_record(sync, record) {
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

pub fn map_message(
    config: &Config,
    mut message: RecordsMessage,
    max_body_bytes: usize,
    compress: bool,
) -> Result<MapOutput, MapError> {
    let MappedCalls {
        mut calls,
        destinations,
        counts,
        skipped,
    } = map_calls(config, &mut message)?;
    let mut out = MapOutput {
        counts,
        skipped,
        ..Default::default()
    };
    // A call that cannot fit a queue message on its own cannot fit any destination's batch
    // either: it is reported (counted, and named in `skipped`) instead of failing the whole
    // message and, after retries, sending its good neighbours to the dead-letter queue.
    let fits = |call: &sfsync_mapping::Call| {
        let mut alone = Packer::new(
            Packer::calls_prefix(&message.run_id, "x", 0),
            max_body_bytes,
            compress,
        );
        alone.push(call).and_then(|()| alone.finish()).is_ok()
    };
    let mut checked = false;
    for name in &destinations {
        let bodies = match pack(&message.run_id, name, &calls, max_body_bytes, compress) {
            Ok(bodies) => bodies,
            Err(_) if !checked => {
                checked = true;
                calls.retain(|call| {
                    let ok = fits(call);
                    if !ok {
                        out.counts.skipped += 1;
                        *out.counts
                            .skip_reasons
                            .entry("too_large".into())
                            .or_default() += 1;
                        out.skipped.push(format!(
                            "record {}: its call is too large for a queue message",
                            call.source().record_id
                        ));
                    }
                    ok
                });
                pack(&message.run_id, name, &calls, max_body_bytes, compress)?
            }
            Err(e) => return Err(e.into()),
        };
        if !bodies.is_empty() {
            out.bodies.insert(name.clone(), bodies);
        }
    }
    out.counts.mapped = calls.len() as u64;
    Ok(out)
}

fn pack(
    run_id: &str,
    destination: &str,
    calls: &[sfsync_mapping::Call],
    max_body_bytes: usize,
    compress: bool,
) -> Result<Vec<String>, MessageError> {
    let mut packer = Packer::new(
        Packer::calls_prefix(run_id, destination, 0),
        max_body_bytes,
        compress,
    );
    for call in calls {
        packer.push(call)?;
    }
    Ok(packer.finish()?.into_iter().map(|b| b.body).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{CallsMessage, MESSAGE_VERSION, decode};
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

    fn record(i: usize, notes: &str) -> serde_json::Value {
        json!({"Id": format!("003{i:015}"), "SystemModstamp": "2024-05-01T00:00:00.000+0000", "Email": format!("p{i}@x.io"), "Notes__c": notes})
    }

    fn message(records: Vec<serde_json::Value>) -> RecordsMessage {
        RecordsMessage {
            v: MESSAGE_VERSION,
            run_id: "r".into(),
            sync: "contacts".into(),
            records,
        }
    }

    #[test]
    fn calls_are_routed_only_to_destinations_that_take_the_sync() {
        let config = Config::parse(CONFIG).unwrap();
        let out = map_message(
            &config,
            message((0..50).map(|i| record(i, "n")).collect()),
            64 * 1024,
            true,
        )
        .unwrap();
        assert_eq!(out.counts.mapped, 50);
        assert_eq!(out.bodies.keys().collect::<Vec<_>>(), vec!["all"]);
        let calls: usize = out.bodies["all"]
            .iter()
            .map(|b| decode::<CallsMessage>(b).unwrap().calls.len())
            .sum();
        assert_eq!(calls, 50);
    }

    #[test]
    fn skips_are_counted_by_reason_and_named() {
        let config = Config::parse(CONFIG).unwrap();
        let mut records: Vec<_> = (0..3).map(|i| record(i, "n")).collect();
        records.push(json!({"Id": "003X", "SystemModstamp": "garbage"}));
        let out = map_message(&config, message(records), 64 * 1024, false).unwrap();
        assert_eq!((out.counts.mapped, out.counts.skipped), (3, 1));
        assert_eq!(out.counts.skip_reasons.get("invalid_date"), Some(&1));
        assert!(out.skipped[0].contains("003X"));
    }

    #[test]
    fn a_call_too_large_for_any_message_is_skipped_and_its_neighbours_go_on() {
        let config = Config::parse(CONFIG).unwrap();
        // Random text does not compress: 40,000 characters cannot fit a 16 KiB message.
        let noise: String = (0..40_000)
            .map(|_| char::from(b'!' + rand::random::<u8>() % 90))
            .collect();
        let records = vec![record(1, "ok"), record(2, &noise), record(3, "ok")];
        let out = map_message(&config, message(records), 16 * 1024, true).unwrap();
        assert_eq!(out.counts.mapped, 2);
        assert_eq!(out.counts.skip_reasons.get("too_large"), Some(&1));
        assert!(
            out.skipped.iter().any(|s| s.contains("003000000000000002")),
            "{:?}",
            out.skipped
        );
        let calls: usize = out.bodies["all"]
            .iter()
            .map(|b| decode::<CallsMessage>(b).unwrap().calls.len())
            .sum();
        assert_eq!(calls, 2);
    }

    #[test]
    fn an_unknown_sync_is_an_error() {
        let config = Config::parse(CONFIG).unwrap();
        let mut m = message(vec![]);
        m.sync = "nope".into();
        assert!(matches!(
            map_message(&config, m, 64 * 1024, true),
            Err(MapError::UnknownSync(_))
        ));
    }
}
