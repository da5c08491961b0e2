//! Test servers that answer as each vendor documents, not as our code expects: they check
//! the credentials, validate every call the way the vendor says it does, and refuse or
//! silently drop exactly where the vendor's documents say it would. A `Ledger` keeps what
//! the "vendor" accepted and what it dropped without telling anyone, so a test can prove
//! that nothing was lost.
//!
//! Each server takes `refuse`: the test's own extra rule for which calls the vendor
//! refuses (standing for any validation the vendor documents but sfsync cannot check before
//! sending), returning the vendor's message for that call.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sfsync_test_vendors::People;

use super::{Recorded, Server, basic, reply, serve};

/// What a vendor kept and what it dropped.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Calls (in the vendor's wire form) the vendor accepted.
    pub accepted: Vec<Value>,
    /// Calls the vendor dropped while answering success, with why.
    pub dropped: Vec<(Value, String)>,
    /// Requests the vendor refused as a whole.
    pub refused: usize,
}

pub type SharedLedger = Arc<Mutex<Ledger>>;

/// The test's extra validation rule: `Some(message)` for a call the vendor refuses.
pub type Refuse = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;

pub fn refuse_none() -> Refuse {
    Arc::new(|_| None)
}

/// Refuses calls whose JSON contains `marker` anywhere, with `message`.
pub fn refuse_marked(marker: &'static str, message: &'static str) -> Refuse {
    Arc::new(move |call| {
        call.to_string()
            .contains(marker)
            .then(|| message.to_string())
    })
}

fn authorized(r: &Recorded, expected: &str) -> bool {
    r.header("authorization").as_deref() == Some(expected)
}

fn non_empty_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// Why a Segment-spec call fails the checks the Segment spec and Customer.io's batch schema
/// document: a userId or an anonymousId on every call; `event` on track; `groupId` on group;
/// an ISO-8601 `timestamp` when one is given.
fn segment_spec_problem(call: &Value) -> Option<String> {
    if !non_empty_string(&call["userId"]) && !non_empty_string(&call["anonymousId"]) {
        return Some("userId or anonymousId is required".into());
    }
    match call["type"].as_str() {
        Some("track") if !non_empty_string(&call["event"]) => {
            return Some("event is required".into());
        }
        Some("group") if !non_empty_string(&call["groupId"]) => {
            return Some("groupId is required".into());
        }
        // Segment Spec "Alias" (twilio.com/docs/segment/connections/spec/alias) and
        // Customer.io's alias schema: `previousId` and `userId` are both required.
        Some("alias")
            if !non_empty_string(&call["previousId"]) || !non_empty_string(&call["userId"]) =>
        {
            return Some("alias needs previousId and userId".into());
        }
        Some("identify" | "track" | "group" | "alias") => {}
        other => return Some(format!("unknown type {other:?}")),
    }
    if let Some(ts) = call.get("timestamp") {
        let parses = ts
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
        if !parses {
            return Some(format!("timestamp {ts} is not an ISO-8601 date-time"));
        }
    }
    None
}

/// Customer.io Data Pipelines `POST /v1/batch` (docs.customer.io/integrations/api/cdp/,
/// "batch": header `X-Strict-Mode`). Basic `API_KEY:`, else 401. Without `X-Strict-Mode: 1`
/// the API is permissive: an invalid call is logged and dropped and the request still gets
/// 200. With it, one invalid call makes the whole batch answer 400.
pub async fn customerio_pipelines(api_key: &'static str, refuse: Refuse) -> (Server, SharedLedger) {
    let ledger = SharedLedger::default();
    let book = ledger.clone();
    let server = serve(move |_, r| {
        if !authorized(r, &basic(api_key, "")) {
            return reply(
                401,
                r#"{"errors":[{"message":"Unauthorized: invalid API key"}]}"#,
            );
        }
        let strict = r.header("x-strict-mode").as_deref() == Some("1");
        let body = r.json();
        let calls = body["batch"].as_array().cloned().unwrap_or_default();
        let verdicts: Vec<Option<String>> = calls
            .iter()
            .map(|c| segment_spec_problem(c).or_else(|| refuse(c)))
            .collect();
        let mut book = book.lock().expect("ledger");
        if strict && let Some(problem) = verdicts.iter().flatten().next() {
            book.refused += 1;
            return reply(
                400,
                &json!({ "errors": [{ "message": problem }] }).to_string(),
            );
        }
        for (call, verdict) in calls.into_iter().zip(verdicts) {
            match verdict {
                None => book.accepted.push(call),
                Some(why) => book.dropped.push((call, why)),
            }
        }
        reply(200, "{}")
    })
    .await;
    (server, ledger)
}

/// Segment's HTTP Tracking API `POST /v1/batch` (segment.com/docs/connections/sources/catalog/
/// libraries/server/http-api, "Errors" and "Max request size"): Basic `WRITE_KEY:`, else
/// 401; 400 for the whole request when it holds something Segment cannot take (an oversize
/// call, invalid JSON); otherwise 200, and a call with neither userId nor anonymousId is
/// dropped behind that 200. RudderStack's HTTP API answers the same way.
pub async fn segment_like(write_key: &'static str, refuse: Refuse) -> (Server, SharedLedger) {
    let ledger = SharedLedger::default();
    let book = ledger.clone();
    let server = serve(move |_, r| {
        if !authorized(r, &basic(write_key, "")) {
            return reply(401, r#"{"error":"Invalid write key"}"#);
        }
        let body = r.json();
        let calls = body["batch"].as_array().cloned().unwrap_or_default();
        let mut book = book.lock().expect("ledger");
        if let Some(problem) = calls.iter().find_map(|c| refuse(c)) {
            book.refused += 1;
            return reply(400, &json!({ "error": problem }).to_string());
        }
        for call in calls {
            match segment_spec_problem(&call) {
                None => book.accepted.push(call),
                Some(why) => book.dropped.push((call, why)),
            }
        }
        reply(200, r#"{"success":true}"#)
    })
    .await;
    (server, ledger)
}

/// Mixpanel's Ingestion API (developer.mixpanel.com/reference: "Import Events", "User
/// Profiles", "Group Profiles"): `/engage` and `/groups` answer 200 even when they reject
/// an update; with `verbose=1` the body is `{"status":0,"error":…}` and the whole batch was
/// rejected. `/import` accepts every event here.
pub async fn mixpanel(refuse: Refuse) -> (Server, SharedLedger) {
    let ledger = SharedLedger::default();
    let book = ledger.clone();
    let server = serve(move |_, r| {
        let updates = r.json().as_array().cloned().unwrap_or_default();
        let mut book = book.lock().expect("ledger");
        if r.path == "/import" {
            let n = updates.len();
            book.accepted.extend(updates);
            return reply(
                200,
                &json!({"code":200,"num_records_imported":n,"status":"OK"}).to_string(),
            );
        }
        let verbose = r.query.as_deref().is_some_and(|q| q.contains("verbose=1"));
        if let Some(problem) = updates.iter().find_map(|u| refuse(u)) {
            book.refused += 1;
            return if verbose {
                reply(200, &json!({ "status": 0, "error": problem }).to_string())
            } else {
                reply(200, "0")
            };
        }
        book.accepted.extend(updates);
        if verbose {
            reply(200, r#"{"status":1,"error":null}"#)
        } else {
            reply(200, "1")
        }
    })
    .await;
    (server, ledger)
}

/// Amplitude (amplitude.com/docs/apis/analytics): `/2/httpapi` accepts events; `/identify`
/// and `/groupidentify` take a form with `api_key` and `identification` and refuse the whole
/// request with 400 when an identification is invalid (a `user_id` shorter than 5
/// characters: HTTP V2 reference, `min_id_length`; status codes shared with HTTP V2 per the
/// Identify reference), and `/groupidentify` when the request holds more than 1024
/// identifications or 1024 group properties in all (Group Identify reference,
/// "Considerations"). A wrong key gets 400 "Invalid API key". The User Privacy API
/// `/api/2/deletions/users` wants Basic `API_KEY:SECRET_KEY` and ≤ 100 `user_ids`, and
/// answers 429 to a second request within a second.
pub async fn amplitude(
    api_key: &'static str,
    secret_key: &'static str,
    refuse: Refuse,
) -> (Server, SharedLedger) {
    let ledger = SharedLedger::default();
    let book = ledger.clone();
    let last_deletion: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
    let server = serve(move |_, r| {
        let mut book = book.lock().expect("ledger");
        match r.path.as_str() {
            "/api/2/deletions/users" => {
                if !authorized(r, &basic(api_key, secret_key)) {
                    return reply(401, r#"{"error":"Unauthorized"}"#);
                }
                let mut last = last_deletion.lock().expect("clock");
                if last.is_some_and(|t| r.arrived.duration_since(t).as_millis() < 1000) {
                    return reply(429, r#"{"error":"one deletion request per second"}"#);
                }
                *last = Some(r.arrived);
                let body = r.json();
                let ids = body["user_ids"].as_array().cloned().unwrap_or_default();
                if ids.len() > 100 {
                    book.refused += 1;
                    return reply(400, r#"{"error":"at most 100 user_ids per request"}"#);
                }
                book.accepted.extend(ids);
                reply(200, r#"{"day":"2024-05-01","status":"staging"}"#)
            }
            "/2/httpapi" => {
                let body = r.json();
                if body["api_key"] != json!(api_key) {
                    return reply(400, r#"{"code":400,"error":"Invalid API key: ***"}"#);
                }
                let events = body["events"].as_array().cloned().unwrap_or_default();
                let n = events.len();
                book.accepted.extend(events);
                reply(200, &json!({"code":200,"events_ingested":n}).to_string())
            }
            "/identify" | "/groupidentify" => {
                if r.form_field("api_key") != api_key {
                    return reply(400, r#"{"code":400,"error":"Invalid API key: ***"}"#);
                }
                let items: Vec<Value> =
                    serde_json::from_str(&r.form_field("identification")).expect("json");
                let group = r.path == "/groupidentify";
                let properties: usize = items
                    .iter()
                    .map(|i| {
                        i["group_properties"]["$set"]
                            .as_object()
                            .map_or(0, |s| s.len())
                    })
                    .sum();
                let problem = if group && items.len() > 1024 {
                    Some(format!("{} identifications; at most 1024", items.len()))
                } else if group && properties > 1024 {
                    Some(format!("{properties} group properties; at most 1024"))
                } else {
                    items.iter().find_map(|i| {
                        let short = i["user_id"].as_str().is_some_and(|u| u.len() < 5);
                        if short {
                            Some(format!("Invalid user_id {}: shorter than 5", i["user_id"]))
                        } else {
                            refuse(i)
                        }
                    })
                };
                if let Some(problem) = problem {
                    book.refused += 1;
                    return reply(400, &json!({"code":400,"error":problem}).to_string());
                }
                book.accepted.extend(items);
                reply(200, "success")
            }
            other => reply(404, &format!("no route {other}")),
        }
    })
    .await;
    (server, ledger)
}

/// A webhook receiver that validates each call and refuses the whole batch with 422 when
/// one fails (what receivers built on Standard Webhooks commonly do: the spec leaves the
/// body to the receiver and treats any non-2xx as a failed delivery).
pub async fn webhook_receiver(refuse: Refuse) -> (Server, SharedLedger) {
    let ledger = SharedLedger::default();
    let book = ledger.clone();
    let server = serve(move |_, r| {
        let calls = r.json()["calls"].as_array().cloned().unwrap_or_default();
        let mut book = book.lock().expect("ledger");
        if let Some(problem) = calls.iter().find_map(|c| refuse(c)) {
            book.refused += 1;
            return reply(422, &json!({ "error": problem }).to_string());
        }
        book.accepted.extend(calls);
        reply(204, "")
    })
    .await;
    (server, ledger)
}

/// Customer.io's Track API v2 `POST /api/v2/batch` as a store of people
/// (docs.customer.io/integrations/api/track/, v2 `person` operations, applied as
/// `sfsync_test_vendors::People` documents them).
/// Basic `SITE_ID:API_KEY`, else 401. Every operation is answered 200: the API does not say
/// when a merge did nothing.
pub async fn customerio_track_people(
    site_id: &'static str,
    api_key: &'static str,
) -> (Server, SharedPeople) {
    let people = SharedPeople::default();
    let store = people.clone();
    let server = serve(move |_, r| {
        if !authorized(r, &basic(site_id, api_key)) {
            return reply(401, r#"{"errors":[{"message":"unauthorized"}]}"#);
        }
        store
            .lock()
            .expect("people")
            .apply_batch(&r.json(), r.arrived);
        reply(200, "{}")
    })
    .await;
    (server, people)
}

pub type SharedPeople = Arc<Mutex<People>>;
