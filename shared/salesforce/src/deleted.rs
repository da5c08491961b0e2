//! Hard deletes: `GET /sobjects/{Object}/deleted/?start=&end=` (getDeleted).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::client::{Client, query_string};
use crate::error::Error;
use crate::soql::rest_datetime;

/// How far back Salesforce keeps deletions.
pub const DELETED_RETENTION_DAYS: i64 = 15;

/// getDeleted's `start` must precede `end` by more than this (SOAP API guide, getDeleted()
/// rules: "by more than one minute", else INVALID_REPLICATION_DATE).
pub const DELETED_MIN_WINDOW: chrono::Duration = chrono::Duration::minutes(1);

/// One deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedRecord {
    pub id: String,
    pub deleted_date: DateTime<Utc>,
}

/// getDeleted's full answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedResult {
    pub records: Vec<DeletedRecord>,
    pub earliest_date_available: Option<DateTime<Utc>>,
    /// Use this as the next start: deletions after it may not be complete yet.
    pub latest_date_covered: Option<DateTime<Utc>>,
}

impl DeletedResult {
    /// `earliestDateAvailable` when it is later than `start`: deletions between the two
    /// were purged and can no longer be read (GetDeletedResult, SOAP API guide: "the
    /// timestamp ... of the last physically deleted object").
    pub fn gap_after(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.earliest_date_available.filter(|e| *e > start)
    }

    /// Where the next getDeleted must start: `latestDateCovered` ("for safety, you should
    /// use this value for the startDate of your next call", GetDeletedResult), never
    /// before this call's `start`; `end` when the answer has none.
    pub fn next_start(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> DateTime<Utc> {
        self.latest_date_covered.unwrap_or(end).max(start)
    }

    /// The deletions shaped like records:
    /// `{"attributes":{"type":…},"Id":…,"IsDeleted":true,"SystemModstamp":deletedDate}`.
    pub fn records_json(&self, object: &str) -> Vec<Value> {
        self.records
            .iter()
            .map(|r| {
                json!({
                    "attributes": {"type": object},
                    "Id": r.id,
                    "IsDeleted": true,
                    "SystemModstamp": rest_datetime(r.deleted_date),
                })
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default, rename = "deletedRecords")]
    deleted_records: Vec<RawRecord>,
    #[serde(default, rename = "earliestDateAvailable")]
    earliest_date_available: Option<String>,
    #[serde(default, rename = "latestDateCovered")]
    latest_date_covered: Option<String>,
}

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    #[serde(rename = "deletedDate")]
    deleted_date: String,
}

fn parse_time(what: &str, value: &str) -> Result<DateTime<Utc>, Error> {
    sfsync_mapping::time::parse_salesforce_datetime(value)
        .map_err(|e| Error::decode(format!("getDeleted {what} {value:?}: {e}")))
}

/// The getDeleted datetime parameter form (`2024-01-01T00:00:00+00:00`, encoded).
fn param(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

impl Client {
    /// Hard (and soft) deletions of `object` between `start` and `end`, shaped like
    /// records: `{"attributes":{"type":…},"Id":…,"IsDeleted":true,"SystemModstamp":…}`.
    pub async fn deleted(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<Value>, Error> {
        let result = self.deleted_detailed(object, start, end).await?;
        if let Some(earliest) = result.gap_after(start) {
            return Err(Error::DeletedTooOld { start, earliest });
        }
        Ok(result.records_json(object))
    }

    /// The org's `earliestDateAvailable`, asked with the shortest window Salesforce accepts
    /// ending at `end` (the org's clock decides what "15 days ago" is, not ours).
    async fn earliest_deleted(&self, path: &str, end: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = end - DELETED_MIN_WINDOW * 2;
        let query = query_string(&[("start", &param(start)), ("end", &param(end))]);
        let raw: Raw = self
            .get(path, Some(&query))
            .await
            .ok()?
            .json("getDeleted")
            .ok()?;
        parse_time(
            "earliestDateAvailable",
            raw.earliest_date_available.as_deref()?,
        )
        .ok()
    }

    /// getDeleted with `earliestDateAvailable` and `latestDateCovered`. A start beyond the
    /// org's 15-day reach is [`Error::DeletedTooOld`] (Salesforce refuses it); a start before
    /// a purge of the delete log is answered, with the purge in `earliest_date_available`.
    pub async fn deleted_detailed(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DeletedResult, Error> {
        if !sfsync_mapping::config::is_api_name(object) {
            return Err(Error::config(format!(
                "{object:?} is not an sObject API name"
            )));
        }
        if end - start <= DELETED_MIN_WINDOW {
            return Err(Error::config(format!(
                "getDeleted needs start more than one minute before end (got {start} .. {end})"
            )));
        }
        let path = self.data_path(&format!("/sobjects/{object}/deleted/"));
        let query = query_string(&[("start", &param(start)), ("end", &param(end))]);
        let response = match self.get(&path, Some(&query)).await {
            Ok(r) => r,
            Err(Error::Api { code, message, .. })
                if code == "INVALID_REPLICATION_DATE" && message.contains("days ago") =>
            {
                let earliest = match self.earliest_deleted(&path, end).await {
                    Some(t) => t,
                    None => Utc::now() - chrono::Duration::days(DELETED_RETENTION_DAYS),
                };
                return Err(Error::DeletedTooOld { start, earliest });
            }
            Err(e) => return Err(e),
        };
        let raw: Raw = response.json("getDeleted")?;
        // An earliestDateAvailable after `start` is not an error: what follows it is still
        // listed, and the caller decides how to report the gap (`DeletedResult::gap_after`).
        let earliest = raw
            .earliest_date_available
            .as_deref()
            .map(|v| parse_time("earliestDateAvailable", v))
            .transpose()?;
        let latest = raw
            .latest_date_covered
            .as_deref()
            .map(|v| parse_time("latestDateCovered", v))
            .transpose()?;
        let mut records = Vec::with_capacity(raw.deleted_records.len());
        for r in raw.deleted_records {
            records.push(DeletedRecord {
                deleted_date: parse_time("deletedDate", &r.deleted_date)?,
                id: r.id,
            });
        }
        info!(object, deleted = records.len(), "getDeleted");
        Ok(DeletedResult {
            records,
            earliest_date_available: earliest,
            latest_date_covered: latest,
        })
    }
}
