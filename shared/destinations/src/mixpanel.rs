//! Mixpanel Ingestion API: `/import` for events, `/engage` for user profiles, `/groups` for
//! group profiles; hosts `api.mixpanel.com`, `api-eu.mixpanel.com`, `api-in.mixpanel.com`.
//!
//! Field names from Mixpanel's "Ingestion API" reference (developer.mixpanel.com/reference:
//! "Import Events" — `event`, `properties.time`, `distinct_id`, `$insert_id`, `strict`,
//! `project_id`, `failed_records[{index, $insert_id, field, message}]`; "User Profiles" —
//! `$token`, `$distinct_id`, `$set`, `$union`, `$remove`, `$delete`; "Group Profiles" —
//! `$group_key`, `$group_id`; the `verbose=1` answer `{status, error}`).
//!
//! - track → `/import?strict=1` (`&project_id=` with a service account, which authenticates
//!   as Basic `username:secret`; otherwise the project token is the Basic user). Events are
//!   `{event, properties:{…, time (ms), distinct_id = userId, $insert_id}}`; `$insert_id` is
//!   the messageId (a UUID: 36 chars of `[A-Za-z0-9-]`), hashed when it does not fit.
//! - identify → `/engage` `$set` of the traits (email, name, firstName, lastName and phone
//!   become Mixpanel's `$email`, `$name`, `$first_name`, `$last_name`, `$phone`).
//! - object → `/groups` `$set` under the group key: the config's `group_key`, default
//!   `company_id` (Mixpanel's B2B company key; the key must exist in the project's
//!   settings). One destination has one group key: to sync several object types, configure
//!   one Mixpanel destination per object type, each with its `syncs` and `group_key`.
//! - relationship → `/engage` `$union` of `{group_key: [groupId]}` on the user's profile
//!   (Mixpanel has no relationship attributes; they are not sent).
//! - deletes → person: `/engage` `$delete`; object: `/groups` `$delete`; relationship:
//!   `/engage` `$remove` of `{group_key: groupId}`.
//! - person merge, with `id_merge = "original"` → a `$merge` event through `/import`
//!   (`properties.$distinct_ids: [userId, previousId]`, Mixpanel reference "Merge
//!   Identities", docs.mixpanel.com/reference/identity-merge: only for projects on the
//!   Original ID Merge system, only through `/import`). With `id_merge = "simplified"` (the
//!   default, and Mixpanel's default for new projects) two identified users cannot be
//!   merged: `$merge`, `$identify` and `$create_alias` "have no functionality" there, so the
//!   merge is dead with a reason rather than sent to be ignored. An object merge is the
//!   `/groups` `$delete` of the losing group (`wire::object_merge_as_delete`).
//! - `/engage` and `/groups` answer 200 even when they reject an update: they are called with
//!   `verbose=1` and the body is read; a rejected batch is split until the culprit is alone
//!   (the other updates are idempotent), and that one is dead. An error about the `$token`
//!   (the same in every update) is the credentials: the destination pauses instead.
//! - A strict `/import` 400 listing `failed_records` is a partial success: the listed events
//!   are dead, the rest were ingested and are never resent.
//! - Limits: ≤ 2000 events and 10 MB uncompressed per request, < 1 MB per event or update.
//!   `/import` takes gzip (on by default). Backoff starts at 2 s as Mixpanel recommends.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::{self, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sfsync_mapping::config::{MixpanelRegion, MixpanelSettings};
use sfsync_mapping::{Call, CallType, Entity, MixpanelIdMerge};

use crate::engine::{
    Encoded, ItemVerdict, Protocol, Request, Response, Route, RouteSpec, Verdict, join_body,
    json_headers, standard_verdict,
};
use crate::wire::{self, BuildContext, Secret};
use crate::{BuildError, Limits};

const IMPORT: Route = 0;
const ENGAGE: Route = 1;
const GROUPS: Route = 2;

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 2000,
    max_batch_bytes: 10_000_000,
    max_call_bytes: 1_000_000,
};

/// The group key when the config has none.
pub const DEFAULT_GROUP_KEY: &str = "company_id";

/// distinct_id values Mixpanel rejects as placeholders.
const INVALID_DISTINCT_IDS: &[&str] = &[
    "null",
    "0",
    "-1",
    "undefined",
    "anon",
    "anonymous",
    "nil",
    "none",
    "n/a",
    "lmy47d",
    "[]",
    "{}",
    "00000000-0000-0000-0000-000000000000",
];

pub(crate) struct Mixpanel {
    token: Secret,
    group_key: String,
    id_merge: MixpanelIdMerge,
    urls: [String; 3],
    import_auth: HeaderValue,
    routes: [RouteSpec; 3],
}

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &MixpanelSettings,
) -> Result<Mixpanel, BuildError> {
    let token = ctx.non_empty("project_token", &settings.project_token)?;
    let base = ctx.base_url(match settings.region {
        MixpanelRegion::Us => "https://api.mixpanel.com",
        MixpanelRegion::Eu => "https://api-eu.mixpanel.com",
        MixpanelRegion::In => "https://api-in.mixpanel.com",
    })?;
    let project_id = ctx.non_empty_optional("project_id", settings.project_id.as_ref())?;
    let username = ctx.non_empty_optional("username", settings.username.as_ref())?;
    let secret = ctx.non_empty_optional("secret", settings.secret.as_ref())?;
    let (import_url, import_auth) = match (project_id, username, secret) {
        (Some(project_id), Some(username), Some(secret)) => {
            if !project_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ctx.invalid("project_id", "must be the project's numeric id"));
            }
            (
                format!(
                    "{}?strict=1&project_id={project_id}",
                    wire::join_url(&base, "/import")
                ),
                wire::basic_auth(username, secret),
            )
        }
        (None, None, None) => (
            format!("{}?strict=1", wire::join_url(&base, "/import")),
            wire::basic_auth(token, ""),
        ),
        _ => {
            return Err(ctx.invalid(
                "project_id",
                "a Mixpanel service account needs project_id, username and secret together",
            ));
        }
    };
    let group_key = ctx
        .non_empty_optional("group_key", settings.group_key.as_ref())?
        .unwrap_or(DEFAULT_GROUP_KEY)
        .to_string();
    let route = |name, gzip| RouteSpec {
        name,
        limits: LIMITS,
        separator: b",",
        gzip,
        max_units: None,
        min_interval: None,
    };
    Ok(Mixpanel {
        id_merge: settings.id_merge,
        token: Secret::new(token),
        group_key,
        urls: [
            import_url,
            format!("{}?verbose=1&ip=0", wire::join_url(&base, "/engage")),
            format!("{}?verbose=1", wire::join_url(&base, "/groups")),
        ],
        import_auth,
        routes: [
            route("Mixpanel /import", true),
            route("Mixpanel /engage", false),
            route("Mixpanel /groups", false),
        ],
    })
}

fn distinct_id(call: &Call) -> Result<&str, String> {
    let id = wire::user_id(call)?;
    if INVALID_DISTINCT_IDS
        .iter()
        .any(|bad| id.trim().eq_ignore_ascii_case(bad))
    {
        return Err(format!(
            "userId {id:?} is a placeholder Mixpanel rejects as a distinct_id"
        ));
    }
    Ok(id)
}

/// Traits with Mixpanel's reserved profile property names.
fn profile_properties(traits: Map<String, Value>) -> Map<String, Value> {
    const RESERVED: &[(&str, &str)] = &[
        ("email", "$email"),
        ("name", "$name"),
        ("firstName", "$first_name"),
        ("lastName", "$last_name"),
        ("phone", "$phone"),
    ];
    traits
        .into_iter()
        .map(|(k, v)| {
            let key = RESERVED
                .iter()
                .find(|(from, _)| *from == k)
                .map(|(_, to)| (*to).to_string())
                .unwrap_or(k);
            (key, v)
        })
        .collect()
}

impl Mixpanel {
    /// One call as (route, Mixpanel JSON).
    pub(crate) fn render(&self, call: &Call) -> Result<(Route, Value), String> {
        let token = self.token.expose();
        let key = self.group_key.as_str();
        Ok(match call.call_type {
            CallType::Track => {
                let event = call
                    .event
                    .as_deref()
                    .filter(|e| !e.is_empty())
                    .ok_or_else(|| "track call has no event name".to_string())?;
                let mut properties = call.properties_map();
                properties.insert("time".into(), json!(wire::timestamp_millis(call)?));
                properties.insert("distinct_id".into(), json!(distinct_id(call)?));
                properties.insert(
                    "$insert_id".into(),
                    json!(wire::dedupe_insert_id(&call.message_id)),
                );
                (IMPORT, json!({ "event": event, "properties": properties }))
            }
            CallType::Identify => (
                ENGAGE,
                json!({
                    "$token": token,
                    "$distinct_id": distinct_id(call)?,
                    "$set": profile_properties(call.traits_map()),
                }),
            ),
            CallType::Group if call.is_relationship() => (
                ENGAGE,
                json!({
                    "$token": token,
                    "$distinct_id": distinct_id(call)?,
                    "$union": { key: [wire::group_id(call)?] },
                }),
            ),
            CallType::Group => (
                GROUPS,
                json!({
                    "$token": token,
                    "$group_key": key,
                    "$group_id": wire::group_id(call)?,
                    "$set": profile_properties(wire::object_traits(call)),
                }),
            ),
            CallType::Merge if call.entity == Some(Entity::Object) => {
                return self.render(&wire::object_merge_as_delete(call)?);
            }
            CallType::Merge => {
                let (surviving, previous) = wire::person_merge_ids(call)?;
                if self.id_merge == MixpanelIdMerge::Simplified {
                    return Err(format!(
                        "Mixpanel's Simplified ID Merge cannot merge two identified users, so the merge of {previous} into {surviving} is not sent; if the project uses Original ID Merge (Project Settings → Identity Merge), set id_merge = \"original\" on this destination and replay the dead letters"
                    ));
                }
                let mut properties = Map::new();
                properties.insert("$distinct_ids".into(), json!([surviving, previous]));
                // Strict `/import` validates `time`, `distinct_id` and `$insert_id` on every
                // event (Mixpanel "400 Bad Request": "$insert_id is required on every
                // event", "time is required"); the merge is the surviving user's.
                properties.insert("distinct_id".into(), json!(surviving));
                properties.insert("time".into(), json!(wire::timestamp_millis(call)?));
                properties.insert(
                    "$insert_id".into(),
                    json!(wire::dedupe_insert_id(&call.message_id)),
                );
                (
                    IMPORT,
                    json!({ "event": "$merge", "properties": properties }),
                )
            }
            CallType::Delete => match call.entity {
                Some(Entity::Person) => (
                    ENGAGE,
                    json!({ "$token": token, "$distinct_id": distinct_id(call)?, "$delete": "" }),
                ),
                Some(Entity::Object) => (
                    GROUPS,
                    json!({
                        "$token": token,
                        "$group_key": key,
                        "$group_id": wire::group_id(call)?,
                        "$delete": "",
                    }),
                ),
                Some(Entity::Relationship) => (
                    ENGAGE,
                    json!({
                        "$token": token,
                        "$distinct_id": distinct_id(call)?,
                        "$remove": { key: wire::group_id(call)? },
                    }),
                ),
                None => {
                    return Err("delete call has no entity (person, object or relationship)".into());
                }
            },
        })
    }
}

#[derive(Deserialize)]
struct ImportFailure {
    #[serde(default)]
    failed_records: Vec<FailedRecord>,
}

#[derive(Deserialize)]
struct FailedRecord {
    index: Option<usize>,
    #[serde(alias = "$insert_id")]
    insert_id: Option<String>,
    field: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct VerboseAnswer {
    status: Value,
    #[serde(default)]
    error: Option<String>,
}

impl Protocol for Mixpanel {
    fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    fn encode(&self, call: &Call) -> Result<Encoded, String> {
        let (route, value) = self.render(call)?;
        Ok(Encoded {
            route,
            bytes: wire::to_json(&value),
            units: 0,
        })
    }

    fn request(&self, route: Route, items: &[&[u8]], _calls: &[&Call]) -> Request {
        let mut headers = json_headers();
        if route == IMPORT {
            headers.insert(header::AUTHORIZATION, self.import_auth.clone());
        }
        Request {
            url: self.urls.get(route).cloned().unwrap_or_default(),
            headers,
            body: join_body(b"[", items, b",", b"]"),
        }
    }

    fn classify(&self, route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        if route == IMPORT && response.status == 400 {
            return classify_strict_400(response, calls);
        }
        if route != IMPORT && (200..300).contains(&response.status) {
            return classify_verbose(response);
        }
        standard_verdict(response, calls.len(), None)
    }

    fn backoff_base(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// A strict `/import` 400: the listed records failed, the others were ingested.
fn classify_strict_400(response: &Response, calls: &[&Call]) -> Verdict {
    let failures = serde_json::from_slice::<ImportFailure>(&response.body)
        .map(|f| f.failed_records)
        .unwrap_or_default();
    if failures.is_empty() {
        return standard_verdict(response, calls.len(), None);
    }
    let by_insert_id: HashMap<String, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (wire::dedupe_insert_id(&c.message_id), i))
        .collect();
    let mut failed: HashMap<usize, String> = HashMap::new();
    for record in failures {
        let index = record.index.filter(|i| *i < calls.len()).or_else(|| {
            record
                .insert_id
                .as_ref()
                .and_then(|id| by_insert_id.get(id).copied())
        });
        let Some(index) = index else { continue };
        let detail = match (record.field, record.message) {
            (Some(f), Some(m)) => format!("{f}: {m}"),
            (None, Some(m)) => m,
            (Some(f), None) => f,
            (None, None) => "failed validation".into(),
        };
        failed.insert(index, format!("HTTP 400: {}", wire::truncate(&detail, 500)));
    }
    if failed.is_empty() {
        return standard_verdict(response, calls.len(), None);
    }
    Verdict::PerItem(
        (0..calls.len())
            .map(|i| match failed.remove(&i) {
                Some(reason) => ItemVerdict::Dead(reason),
                None => ItemVerdict::Delivered,
            })
            .collect(),
    )
}

/// A 2xx from `/engage` or `/groups` with `verbose=1`: `{"status":1}` or `{"status":0,"error":…}`.
fn classify_verbose(response: &Response) -> Verdict {
    let text = String::from_utf8_lossy(&response.body);
    let text = text.trim();
    let (ok, error) = match serde_json::from_str::<VerboseAnswer>(text) {
        Ok(answer) => {
            let ok = match &answer.status {
                Value::Number(n) => n.as_i64() == Some(1),
                Value::String(s) => s == "1" || s.eq_ignore_ascii_case("ok"),
                _ => false,
            };
            (ok, answer.error)
        }
        // Without verbose Mixpanel answers a bare 1 or 0; an empty body tells nothing.
        Err(_) => (text != "0", None),
    };
    if ok {
        Verdict::Delivered
    } else if error
        .as_deref()
        .is_some_and(|e| e.to_ascii_lowercase().contains("token"))
    {
        // Every update of a request carries the same `$token`: an error about it is the
        // project's credentials, never one update's fault.
        Verdict::Unauthorized {
            reason: format!(
                "Mixpanel rejected the project token (HTTP {} with status 0): {}",
                response.status,
                wire::truncate(error.as_deref().unwrap_or_default(), 500)
            ),
        }
    } else {
        Verdict::Split {
            reason: format!(
                "Mixpanel rejected the update (HTTP {} with status 0): {}",
                response.status,
                wire::truncate(error.as_deref().unwrap_or("no detail given"), 500)
            ),
        }
    }
}
