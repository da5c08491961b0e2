//! REST endpoints: versions, limits, describe, query/queryAll with cursors, deleted/updated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Cursor, MAX_CURSORS, Shared, json_text, not_found, sf_error};
use crate::org::Org;
use crate::plan::Plan;
use crate::schema::ObjectDef;
use crate::value::{format_rest_datetime, parse_datetime};

fn release_label(version: &str) -> String {
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<i64>().ok())
        .unwrap_or(50);
    let idx = (major - 50).max(0);
    let season = ["Winter", "Spring", "Summer"][(idx % 3) as usize];
    format!("{season} '{}", 21 + idx / 3)
}

pub(crate) async fn versions() -> Response {
    let list: Vec<Value> = super::API_VERSIONS
        .iter()
        .map(|v| {
            json!({
                "label": release_label(v),
                "url": format!("/services/data/v{v}"),
                "version": v,
            })
        })
        .collect();
    axum::Json(list).into_response()
}

fn bare(version: &str) -> &str {
    version.strip_prefix('v').unwrap_or(version)
}

pub(crate) async fn resources(Path(version): Path<String>) -> Response {
    let base = format!("/services/data/v{}", bare(&version));
    axum::Json(json!({
        "sobjects": format!("{base}/sobjects"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "limits": format!("{base}/limits"),
        "jobs": format!("{base}/jobs"),
    }))
    .into_response()
}

pub(crate) async fn limits(State(shared): State<Arc<Shared>>) -> Response {
    let max = shared.daily_max();
    let (used, jobs) = {
        let rt = shared.rt();
        (rt.stats.api_calls, rt.stats.bulk_jobs)
    };
    axum::Json(json!({
        "DailyApiRequests": { "Max": max, "Remaining": max.saturating_sub(used) },
        "DailyBulkV2QueryJobs": { "Max": 10000, "Remaining": 10000u64.saturating_sub(jobs) },
        "DailyBulkV2QueryFileStorageMB": { "Max": 976562, "Remaining": 976562 },
        "ConcurrentSyncReportRuns": { "Max": 20, "Remaining": 20 },
    }))
    .into_response()
}

pub(crate) async fn global_describe(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
) -> Response {
    let org = shared.org();
    let objects: Vec<Value> = org
        .schema
        .objects
        .iter()
        .map(|o| o.global_entry(bare(&version)))
        .collect();
    axum::Json(json!({ "encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objects }))
        .into_response()
}

pub(crate) async fn describe(
    State(shared): State<Arc<Shared>>,
    Path((version, object)): Path<(String, String)>,
) -> Response {
    let org = shared.org();
    match org.schema.object(&object) {
        Some(def) => axum::Json(def.describe(bare(&version), &org.schema)).into_response(),
        None => not_found(),
    }
}

pub(crate) async fn retrieve(
    State(shared): State<Arc<Shared>>,
    Path((version, object, id)): Path<(String, String, String)>,
) -> Response {
    let org = shared.org();
    let Some((obj, def)) = org.object(&object) else {
        return not_found();
    };
    let row = org
        .tables
        .get(obj)
        .and_then(|t| t.find(&id).and_then(|i| t.row(i)));
    match row {
        Some(r) if !r.purged && def.col_is_deleted.is_none_or(|c| !r.get(c).as_bool()) => {
            json_text(
                StatusCode::OK,
                crate::org::record_text(def, r, bare(&version)),
            )
        }
        _ => not_found(),
    }
}

/// `Sforce-Query-Options: batchSize=N`, clamped to Salesforce's 200..=2000.
fn batch_size(headers: &HeaderMap) -> usize {
    let requested = headers
        .get("sforce-query-options")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|kv| {
                let (k, val) = kv.split_once('=')?;
                if k.trim().eq_ignore_ascii_case("batchSize") {
                    val.trim().parse::<usize>().ok()
                } else {
                    None
                }
            })
        });
    requested.unwrap_or(2000).clamp(200, 2000)
}

pub(crate) async fn query(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    answer(run_query(&shared, bare(&version), &headers, params, false)).await
}

pub(crate) async fn query_all(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    answer(run_query(&shared, bare(&version), &headers, params, true)).await
}

/// What a query produced: an answer now, or QUERY_TIMEOUT once the server has spent its
/// time limit on it.
enum QueryOutcome {
    Now(Response),
    TimedOut(Response, std::time::Duration),
}

/// Sends the answer; a timed-out query first runs out its time on the server (outside the
/// org lock, as a real query does not block other requests).
async fn answer(outcome: QueryOutcome) -> Response {
    match outcome {
        QueryOutcome::Now(r) => r,
        QueryOutcome::TimedOut(r, after) => {
            tokio::time::sleep(after).await;
            r
        }
    }
}

fn run_query(
    shared: &Shared,
    version: &str,
    headers: &HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    include_deleted: bool,
) -> QueryOutcome {
    let now = |r: Response| QueryOutcome::Now(r);
    let Some(text) = params.ok().and_then(|Query(mut p)| p.remove("q")) else {
        return now(sf_error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        ));
    };
    let parsed = match crate::soql::parse(&text) {
        Ok(q) => q,
        Err(e) => return now(sf_error(StatusCode::BAD_REQUEST, e.code, &e.message)),
    };
    let batch = batch_size(headers);
    let (timeout, timeout_after) = {
        let rt = shared.rt();
        (
            rt.faults.query_timeout_over_rows,
            rt.faults.query_timeout_after,
        )
    };
    let org = shared.org();
    let plan = match Plan::build(&org.schema, &parsed) {
        Ok(p) => p,
        Err(e) => return now(sf_error(StatusCode::BAD_REQUEST, e.code, &e.message)),
    };
    let rows = match plan.execute(&org, include_deleted, timeout) {
        Ok(r) => r,
        Err(e) if e.code == "QUERY_TIMEOUT" => {
            return QueryOutcome::TimedOut(
                sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
                timeout_after,
            );
        }
        Err(e) => return now(sf_error(StatusCode::BAD_REQUEST, e.code, &e.message)),
    };
    if plan.count_only {
        return now(json_text(
            StatusCode::OK,
            format!(
                "{{\"totalSize\":{},\"done\":true,\"records\":[]}}",
                rows.len()
            ),
        ));
    }
    let instance = org.instance;
    let rows: Arc<[u32]> = rows.into();
    let plan = Arc::new(plan);
    let next = if rows.len() > batch {
        let seq = shared.next_seq();
        let locator = crate::ids::make_id("01g", seq);
        let mut rt = shared.rt();
        rt.cursors.insert(
            locator.clone(),
            Cursor {
                org_instance: instance,
                plan: plan.clone(),
                rows: rows.clone(),
                batch,
                last_used: Instant::now(),
            },
        );
        rt.cursor_order.push_back(locator.clone());
        // An 11th open cursor releases the oldest (see `MAX_CURSORS`).
        while rt.cursor_order.len() > MAX_CURSORS {
            if let Some(old) = rt.cursor_order.pop_front() {
                rt.cursors.remove(&old);
            }
        }
        Some(locator)
    } else {
        None
    };
    let body = page(&org, &plan, &rows, 0, batch, version, next.as_deref());
    now(json_text(StatusCode::OK, body))
}

/// One page of a result: rows `offset..offset+batch`, with nextRecordsUrl while more remain.
fn page(
    org: &crate::org::Org,
    plan: &Plan,
    rows: &[u32],
    offset: usize,
    batch: usize,
    version: &str,
    locator: Option<&str>,
) -> String {
    let end = (offset + batch).min(rows.len());
    let done = end >= rows.len();
    let mut out = String::with_capacity(256 + (end - offset.min(end)) * 400);
    out.push_str(&format!("{{\"totalSize\":{},\"done\":{}", rows.len(), done));
    if !done && let Some(loc) = locator {
        out.push_str(&format!(
            ",\"nextRecordsUrl\":\"/services/data/v{version}/query/{loc}-{end}\""
        ));
    }
    out.push_str(",\"records\":[");
    for (n, idx) in rows.get(offset..end).unwrap_or(&[]).iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        plan.write_record(org, *idx, version, &mut out);
    }
    out.push_str("]}");
    out
}

pub(crate) async fn query_more(
    State(shared): State<Arc<Shared>>,
    Path((version, locator)): Path<(String, String)>,
) -> Response {
    let invalid = || {
        sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY_LOCATOR",
            "invalid query locator",
        )
    };
    let Some((id, offset)) = locator.rsplit_once('-') else {
        return invalid();
    };
    let Ok(offset) = offset.parse::<usize>() else {
        return invalid();
    };
    let (plan, rows, batch, instance) = {
        let mut rt = shared.rt();
        let idle = rt.faults.query_locator_idle;
        let Some(c) = rt.cursors.get_mut(id) else {
            return invalid();
        };
        // Expired after `query_locator_idle` without use (see `QUERY_LOCATOR_IDLE`).
        if c.last_used.elapsed() >= idle {
            rt.cursors.remove(id);
            rt.cursor_order.retain(|l| l != id);
            return invalid();
        }
        c.last_used = Instant::now();
        (c.plan.clone(), c.rows.clone(), c.batch, c.org_instance)
    };
    if offset > rows.len() {
        return invalid();
    }
    let org = shared.org();
    if org.instance != instance {
        return invalid();
    }
    json_text(
        StatusCode::OK,
        page(&org, &plan, &rows, offset, batch, bare(&version), Some(id)),
    )
}

/// Floors to the minute: replication windows have minute granularity.
fn floor_minute(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

struct Window {
    start: i64,
    latest: i64,
    earliest: i64,
}

/// A rejected window: errorCode and message.
type WindowError = (&'static str, String);

/// Validates `start`/`end` of getDeleted/getUpdated against the org clock and `reach_days`.
fn window(
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
    reach_days: i64,
    lag: std::time::Duration,
) -> Result<Window, WindowError> {
    let get = |k: &str| -> Result<i64, WindowError> {
        let Some(raw) = params.get(k) else {
            return Err(("MISSING_ARGUMENT", format!("Missing argument: {k}")));
        };
        parse_datetime(raw)
            .map(|d| d.timestamp_millis())
            .ok_or_else(|| {
                (
                    "INVALID_REPLICATION_DATE",
                    format!(
                        "{k} must be an ISO 8601 dateTime such as 2024-05-01T00:00:00+00:00 (got '{raw}')"
                    ),
                )
            })
    };
    let start = get("start")?;
    let end = get("end")?;
    let now_ms = now.timestamp_millis();
    let earliest = floor_minute(now_ms - reach_days * 24 * 3600 * 1000);
    if floor_minute(start) < earliest {
        return Err((
            "INVALID_REPLICATION_DATE",
            format!("startDate cannot be more than {reach_days} days ago"),
        ));
    }
    // SOAP API guide, getDeleted()/getUpdated() rules: "The specified startDate must
    // chronologically precede the specified endDate value by more than one minute",
    // otherwise INVALID_REPLICATION_DATE.
    if end - start <= 60_000 {
        return Err((
            "INVALID_REPLICATION_DATE",
            "endDate must chronologically follow startDate by more than one minute".to_string(),
        ));
    }
    Ok(Window {
        start: floor_minute(start),
        latest: floor_minute(end.min(now_ms - i64::try_from(lag.as_millis()).unwrap_or(i64::MAX))),
        earliest,
    })
}

/// What getDeleted and getUpdated share: the object (404 when unknown) and the window
/// checked against the org's clock, `reach_days` and the replication lag (400 when bad);
/// `answer` makes the response from the org, the object's index and definition and the
/// window.
fn replication_call(
    shared: &Shared,
    object: &str,
    params: &HashMap<String, String>,
    reach_days: i64,
    answer: impl FnOnce(&Org, usize, &ObjectDef, Window) -> Response,
) -> Response {
    let lag = shared.rt().faults.replication_lag;
    let org = shared.org();
    let Some((obj, def)) = org.object(object) else {
        return not_found();
    };
    match window(params, org.now(), reach_days, lag) {
        Ok(w) => answer(&org, obj, def, w),
        Err((code, message)) => sf_error(StatusCode::BAD_REQUEST, code, &message),
    }
}

pub(crate) async fn deleted(
    State(shared): State<Arc<Shared>>,
    Path((_version, object)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    replication_call(&shared, &object, &params, 15, deleted_records)
}

/// getDeleted's answer: the deletions of `obj` within `w`.
fn deleted_records(org: &Org, obj: usize, _def: &ObjectDef, w: Window) -> Response {
    // earliestDateAvailable is "the timestamp of the last physically deleted object"
    // (GetDeletedResult, SOAP API guide): the 15-day reach, or later when the delete log was
    // purged (Salesforce purges it early when it grows large; `Org::purge_delete_log`).
    // Deletions before it are gone; a start before it gets what is left and this date,
    // which the client must treat as a gap.
    let earliest = org
        .tables
        .get(obj)
        .map_or(w.earliest, |t| t.delete_log_purged_until.max(w.earliest));
    let mut hits: Vec<(i64, &str)> = org
        .tables
        .get(obj)
        .map(|t| {
            t.deleted
                .iter()
                .filter(|(_, when)| **when >= w.start && **when <= w.latest)
                .map(|(id, when)| (*when, id.as_ref()))
                .collect()
        })
        .unwrap_or_default();
    if hits.len() > 600_000 {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 600000 records in this operation",
        );
    }
    hits.sort_unstable();
    let records: Vec<Value> = hits
        .iter()
        .map(|(when, id)| json!({ "id": id, "deletedDate": format_rest_datetime(*when) }))
        .collect();
    axum::Json(json!({
        "deletedRecords": records,
        "earliestDateAvailable": format_rest_datetime(earliest),
        // "If there is a value, it is less than or equal to endDate ... use this value for
        // the startDate of your next call" (GetDeletedResult): the simulator covers whole
        // minutes up to min(end, now), so a deletion in the last, partial minute is only
        // listed by a call that starts at this value.
        "latestDateCovered": format_rest_datetime(w.latest),
    }))
    .into_response()
}

pub(crate) async fn updated(
    State(shared): State<Arc<Shared>>,
    Path((_version, object)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    replication_call(&shared, &object, &params, 30, updated_ids)
}

/// getUpdated's answer: the ids of `obj`'s live rows changed within `w`.
fn updated_ids(org: &Org, obj: usize, def: &ObjectDef, w: Window) -> Response {
    let ids: Vec<String> = org
        .tables
        .get(obj)
        .map(|t| {
            t.order
                .range((w.start, Arc::<str>::from(""))..)
                .take_while(|((stamp, _), _)| *stamp <= w.latest)
                .filter(|(_, idx)| {
                    t.row(**idx)
                        .is_some_and(|r| def.col_is_deleted.is_none_or(|c| !r.get(c).as_bool()))
                })
                .map(|((_, id), _)| id.to_string())
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({
        "ids": ids,
        "latestDateCovered": format_rest_datetime(w.latest),
    }))
    .into_response()
}
