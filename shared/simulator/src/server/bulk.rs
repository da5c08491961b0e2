//! Bulk API 2.0 query jobs: create, poll, page CSV results, abort, delete.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};

use super::{Shared, empty, not_found, sf_error};
use crate::plan::Plan;
use crate::value::format_rest_datetime;

/// Page size when the caller gives no `maxRecords`.
const DEFAULT_MAX_RECORDS: usize = 100_000;

/// How long a job and its results are kept. Bulk API 2.0 Developer Guide, "Bulk API 2.0
/// Limits and Allocations": query results are retained for 7 days (also "How Bulk Queries
/// Are Processed": "the results are returned and stored for 7 days"). The
/// simulator measures it on the org's clock (`Org::advance_clock`), after which the job is
/// gone (404 NOT_FOUND), as a deleted one is.
const JOB_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

pub(crate) struct Job {
    id: String,
    operation: String,
    object: String,
    version: String,
    created_ms: i64,
    polls: u32,
    polls_needed: u32,
    /// The state the job reaches after `polls_needed` polls.
    final_state: String,
    error: Option<String>,
    /// Set once the job is terminal (or was aborted).
    state: Option<String>,
    plan: Option<Arc<Plan>>,
    rows: Arc<[u32]>,
    org_instance: u64,
}

impl Job {
    fn current_state(&self) -> &str {
        match &self.state {
            Some(s) => s,
            None if self.polls == 0 => "UploadComplete",
            None => "InProgress",
        }
    }

    /// One status poll: the job advances toward its final state.
    fn poll(&mut self) {
        if self.state.is_some() {
            return;
        }
        self.polls = self.polls.saturating_add(1);
        if self.polls > self.polls_needed {
            self.state = Some(self.final_state.clone());
        }
    }

    fn info(&self) -> Value {
        let state = self.current_state();
        let complete = state == "JobComplete";
        let mut v = json!({
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": crate::ids::make_id("005", 1),
            "createdDate": format_rest_datetime(self.created_ms),
            "systemModstamp": format_rest_datetime(self.created_ms),
            "state": state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": self.version.parse::<f64>().unwrap_or(62.0),
            "jobType": "V2Query",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": if complete { self.rows.len() } else { 0 },
            "retries": 0,
            "totalProcessingTime": if complete { 120 } else { 0 },
            "isPkChunkingSupported": true,
        });
        if state == "Failed"
            && let (Value::Object(map), Some(err)) = (&mut v, &self.error)
        {
            map.insert("errorMessage".to_string(), Value::String(err.clone()));
        }
        v
    }
}

fn bad_job(message: &str) -> Response {
    sf_error(StatusCode::BAD_REQUEST, "INVALIDJOB", message)
}

fn bare(version: &str) -> String {
    version.strip_prefix('v').unwrap_or(version).to_string()
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object with operation and query",
        );
    };
    let operation = body.get("operation").and_then(Value::as_str).unwrap_or("");
    if operation != "query" && operation != "queryAll" {
        return bad_job(&format!(
            "Invalid operation '{operation}': a query job's operation is query or queryAll"
        ));
    }
    let Some(text) = body.get("query").and_then(Value::as_str) else {
        return bad_job("A query job needs a query");
    };
    let parsed = match crate::soql::parse(text) {
        Ok(q) => q,
        Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
    };
    let (polls_needed, forced) = {
        let rt = shared.rt();
        (
            rt.faults.bulk_polls_before_complete,
            rt.faults.bulk_final_state.clone(),
        )
    };
    let (plan, rows, instance, created_ms, object) = {
        let org = shared.org();
        let plan = match Plan::build(&org.schema, &parsed) {
            Ok(p) => p,
            Err(e) => return sf_error(StatusCode::BAD_REQUEST, e.code, &e.message),
        };
        // The rows are read when the job is accepted: later changes are not in it.
        let rows = plan
            .execute(&org, operation == "queryAll", None)
            .unwrap_or_default();
        let object = plan.object_name.clone();
        (
            plan,
            rows,
            org.instance,
            org.now().timestamp_millis(),
            object,
        )
    };
    // A compound field is refused when the job is created: HTTP 400 with the message
    // "Selecting compound data not supported in Bulk Query" (the answer Airbyte's Salesforce
    // source matches on, airbytehq/airbyte#8206). No job exists afterwards.
    if let Some(field) = &plan.compound_field {
        tracing::debug!(%field, "bulk job refused: compound field");
        return sf_error(
            StatusCode::BAD_REQUEST,
            "API_ERROR",
            "Selecting compound data not supported in Bulk Query",
        );
    }
    // Other unsupported shapes are found while processing: the job fails.
    let unsupported = if plan.count_only {
        Some(
            "Failed to process query: FUNCTIONALITY_NOT_ENABLED: Aggregate queries are not supported in Bulk Query"
                .to_string(),
        )
    } else {
        None
    };
    let (final_state, error) = match (unsupported, forced.as_deref()) {
        (Some(err), _) => ("Failed".to_string(), Some(err)),
        (None, Some("Failed")) => (
            "Failed".to_string(),
            Some("InternalServerError: the query job failed (simulated fault)".to_string()),
        ),
        (None, Some("Aborted")) => ("Aborted".to_string(), None),
        _ => ("JobComplete".to_string(), None),
    };
    let seq = shared.next_seq();
    let id = crate::ids::make_id("750", seq);
    let job = Job {
        id: id.clone(),
        operation: operation.to_string(),
        object,
        version: bare(&version),
        created_ms,
        polls: 0,
        polls_needed,
        final_state,
        error,
        state: None,
        plan: Some(Arc::new(plan)),
        rows: rows.into(),
        org_instance: instance,
    };
    let info = job.info();
    let mut rt = shared.rt();
    rt.stats.bulk_jobs += 1;
    rt.jobs.insert(id, job);
    (StatusCode::OK, Json(info)).into_response()
}

pub(crate) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let rt = shared.rt();
    let mut jobs: Vec<&Job> = rt.jobs.values().collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    let records: Vec<Value> = jobs.iter().map(|j| j.info()).collect();
    Json(json!({ "done": true, "records": records, "nextRecordsUrl": null })).into_response()
}

pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    Path((_version, job)): Path<(String, String)>,
) -> Response {
    forget_if_expired(&shared, &job);
    let mut rt = shared.rt();
    let Some(j) = rt.jobs.get_mut(&job) else {
        return not_found();
    };
    j.poll();
    Json(j.info()).into_response()
}

/// Drops a job older than its retention, by the org's clock.
fn forget_if_expired(shared: &Shared, job: &str) {
    let now = shared.org().now().timestamp_millis();
    let mut rt = shared.rt();
    if rt
        .jobs
        .get(job)
        .is_some_and(|j| now - j.created_ms > JOB_RETENTION_MS)
    {
        tracing::debug!(job, "bulk job expired");
        rt.jobs.remove(job);
    }
}

pub(crate) async fn abort(
    State(shared): State<Arc<Shared>>,
    Path((_version, job)): Path<(String, String)>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "JSON_PARSER_ERROR",
            "The request body must be {\"state\":\"Aborted\"}",
        );
    };
    if body.get("state").and_then(Value::as_str) != Some("Aborted") {
        return bad_job("A query job can only be changed to state Aborted");
    }
    let mut rt = shared.rt();
    let Some(j) = rt.jobs.get_mut(&job) else {
        return not_found();
    };
    if j.state.is_some() {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALIDJOBSTATE",
            &format!("Job is already {}", j.current_state()),
        );
    }
    j.state = Some("Aborted".to_string());
    Json(j.info()).into_response()
}

pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    Path((_version, job)): Path<(String, String)>,
) -> Response {
    match shared.rt().jobs.remove(&job) {
        Some(_) => empty(StatusCode::NO_CONTENT),
        None => not_found(),
    }
}

fn encode_locator(offset: usize) -> String {
    // Salesforce's locators are unpadded base64 of the next offset ("MTAwMDA").
    STANDARD_NO_PAD.encode(offset.to_string())
}

fn decode_locator(locator: &str) -> Option<usize> {
    let bytes = STANDARD_NO_PAD.decode(locator.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()?.parse().ok()
}

pub(crate) async fn results(
    State(shared): State<Arc<Shared>>,
    Path((_version, job)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let max_records = match params.get("maxRecords") {
        None => DEFAULT_MAX_RECORDS,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                return sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALIDREQUEST",
                    &format!("maxRecords must be a positive integer (got '{raw}')"),
                );
            }
        },
    };
    let offset = match params.get("locator").map(String::as_str) {
        None | Some("") => 0,
        Some(l) => match decode_locator(l) {
            Some(o) => o,
            None => {
                return sf_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_LOCATOR",
                    &format!("Invalid locator: {l}"),
                );
            }
        },
    };
    forget_if_expired(&shared, &job);
    let (plan, rows, instance) = {
        let rt = shared.rt();
        let Some(j) = rt.jobs.get(&job) else {
            return not_found();
        };
        if j.current_state() != "JobComplete" {
            return sf_error(
                StatusCode::BAD_REQUEST,
                "INVALIDJOBSTATE",
                &format!(
                    "Results are only available once the job is JobComplete; it is {}",
                    j.current_state()
                ),
            );
        }
        let Some(plan) = j.plan.clone() else {
            return not_found();
        };
        (plan, j.rows.clone(), j.org_instance)
    };
    if offset > rows.len() {
        return sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_LOCATOR",
            "Invalid locator: past the end of the results",
        );
    }
    let end = offset.saturating_add(max_records).min(rows.len());
    let csv = {
        let org = shared.org();
        if org.instance != instance {
            return bad_job("The org this job read was replaced; its results are gone");
        }
        let mut w = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Always)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let mut ok = w.write_record(plan.csv_header()).is_ok();
        for idx in rows.get(offset..end).unwrap_or(&[]) {
            ok &= w.write_record(plan.csv_row(&org, *idx)).is_ok();
        }
        match (ok, w.into_inner()) {
            (true, Ok(bytes)) => bytes,
            _ => {
                return sf_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN_EXCEPTION",
                    "could not write the CSV results",
                );
            }
        }
    };
    let locator = if end < rows.len() {
        encode_locator(end)
    } else {
        "null".to_string()
    };
    let mut resp = (StatusCode::OK, csv).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=UTF-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&(end - offset).to_string()) {
        headers.insert("sforce-numberofrecords", v);
    }
    if let Ok(v) = HeaderValue::from_str(&locator) {
        headers.insert("sforce-locator", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_round_trip() {
        assert_eq!(encode_locator(10000), "MTAwMDA");
        assert_eq!(decode_locator("MTAwMDA="), Some(10000));
        assert_eq!(decode_locator(&encode_locator(123)), Some(123));
        assert_eq!(decode_locator("not base64!"), None);
    }
}
