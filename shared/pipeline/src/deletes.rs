//! Hard deletes of one sync's object since the last run, read with getDeleted: where to
//! start, what to do with Salesforce's window rules, and the gap when deletions are gone.
//!
//! Hard deletes (and rows purged from the Recycle Bin) are invisible to queryAll; getDeleted
//! lists them for 15 days (less when Salesforce purges its delete log early). Its answer's
//! `latestDateCovered` — not the requested end — is where the next call starts: deletions
//! after it may not be listed yet (GetDeletedResult, SOAP API guide). A start before
//! `earliestDateAvailable` means some deletions can no longer be read; that is reported as a
//! [`DeletesGap`] (run status, metric, alarm), never only logged.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sfsync_salesforce::{Client, DELETED_MIN_WINDOW, Error};

use crate::report::DeletesGap;

/// What one run's getDeleted produced.
#[derive(Debug, Clone, PartialEq)]
pub struct HardDeletes {
    /// The deletions, shaped like records (`IsDeleted: true`), for the queue.
    pub records: Vec<Value>,
    /// Where the next run's getDeleted starts, once `records` are enqueued.
    pub next_start: DateTime<Utc>,
    /// Deletions that could not be read, if any.
    pub gap: Option<DeletesGap>,
}

/// Gives the merge losers among getDeleted's `records` their `MasterRecordId` (read with
/// queryAll while they are in the Recycle Bin), so that the mapping sends their merge — the
/// same call, with the same messageId, as when queryAll brought the loser — instead of a
/// delete that would remove the merged person downstream (issue 14).
pub async fn mark_merged(
    client: &Client,
    object: &str,
    records: &mut [Value],
) -> Result<usize, Error> {
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.get("Id").and_then(Value::as_str).map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let masters = client.merged_into(object, &ids).await?;
    let mut marked = 0;
    for record in records.iter_mut() {
        let master = record
            .get("Id")
            .and_then(Value::as_str)
            .and_then(|id| masters.get(id))
            .cloned();
        if let (Some(master), Value::Object(map)) = (master, record) {
            map.insert("MasterRecordId".into(), Value::String(master));
            marked += 1;
        }
    }
    Ok(marked)
}

/// Reads the deletions of `object` from `start` to `until`.
///
/// A window of a minute or less is not asked (Salesforce refuses it): nothing is read and
/// the next run starts at the same `start`. A start beyond the org's reach is refused by
/// Salesforce; the deletions still listed are then read from just after the org's earliest
/// available date, and the span before it is the gap.
pub async fn read_hard_deletes(
    client: &Client,
    object: &str,
    start: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<HardDeletes, Error> {
    if until - start <= DELETED_MIN_WINDOW {
        return Ok(HardDeletes {
            records: Vec::new(),
            next_start: start,
            gap: None,
        });
    }
    let (from, refused_gap) = match client.deleted_detailed(object, start, until).await {
        Ok(result) => {
            let gap = result.gap_after(start).map(|earliest| DeletesGap {
                from: start,
                to: earliest,
            });
            return Ok(HardDeletes {
                records: result.records_json(object),
                next_start: result.next_start(start, until),
                gap,
            });
        }
        // The org's reach ends at `earliest`, floored to its minute; a minute later is
        // safely inside it even if the org's clock turns a minute before the next call.
        Err(Error::DeletedTooOld { earliest, .. }) => {
            let from = earliest + chrono::Duration::minutes(1);
            (
                from,
                DeletesGap {
                    from: start,
                    to: from,
                },
            )
        }
        Err(e) => return Err(e),
    };
    tracing::warn!(object, gap_from = %refused_gap.from, gap_to = %refused_gap.to, "hard deletes before the org's getDeleted reach cannot be read");
    if until - from <= DELETED_MIN_WINDOW {
        return Ok(HardDeletes {
            records: Vec::new(),
            next_start: from,
            gap: Some(refused_gap),
        });
    }
    let result = client.deleted_detailed(object, from, until).await?;
    let gap = DeletesGap {
        from: start,
        to: result.gap_after(from).unwrap_or(from),
    };
    Ok(HardDeletes {
        records: result.records_json(object),
        next_start: result.next_start(from, until),
        gap: Some(gap),
    })
}
