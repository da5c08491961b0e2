//! Amplitude: HTTP V2 API `POST https://api2.amplitude.com/2/httpapi` for events, Identify
//! API `POST /identify` for user properties and group membership, Group Identify API
//! `POST /groupidentify` for group properties (EU: `https://api.eu.amplitude.com`).
//!
//! Field names from Amplitude's "HTTP V2 API" reference (amplitude.com/docs/apis/analytics/http-v2:
//! `api_key`, `events[{user_id, device_id, event_type, time, insert_id, event_properties}]`,
//! the 400 body `events_with_invalid_fields` / `events_with_missing_fields` /
//! `silenced_events`), "Identify API" (amplitude.com/docs/apis/analytics/identify: form
//! fields `api_key`, `identification=[{user_id, user_properties, groups}]`) and "Group
//! Identify API" (amplitude.com/docs/apis/analytics/group-identify: `identification=[{group_type,
//! group_value, group_properties}]`).
//!
//! - track → an event with `insert_id` = the messageId (Amplitude dedupes on it for 7 days)
//!   and `time` in ms.
//! - identify → `/identify` with `user_properties: {"$set": traits}`.
//! - object → `/groupidentify` with `group_properties: {"$set": traits}`. The group type is
//!   the Salesforce object name of the call's `object_type_id` when the destination was
//!   built with object names (`Destination::with_object_names`), else `object_type_<id>`.
//! - relationship → `/identify` with `groups: {group_type: groupId}`. Amplitude keeps one value
//!   per group type set this way (the latest relationship wins) and has no relationship
//!   attributes: they are not sent.
//! - A delete is not an event (an event named "User Deleted" would create the very user it
//!   means to remove). Person deletes go through the User Privacy API
//!   (amplitude.com/docs/apis/analytics/user-privacy: `POST https://amplitude.com/api/2/deletions/users`,
//!   EU `https://analytics.eu.amplitude.com`, Basic `API_KEY:SECRET_KEY`, `{user_ids, requester,
//!   ignore_invalid_id}`, ≤ 100 ids per request, one request per second) when the
//!   destination has the project's `secret_key`; without it they are dead with a reason that
//!   says to add it. Amplitude has no API to delete a group or a user's membership: object
//!   and relationship deletes are dead with a reason, never sent as events.
//! - A merge is dead with a reason: Amplitude has no API that merges two users of a project.
//!   Its User Mapping (Aliasing) API (amplitude.com/docs/apis/analytics/user-mapping,
//!   `POST /usermap`) maps user ids into a global id for the cross-project Portfolio view and
//!   "user properties aren't merged"; sending an event or identify instead would only create
//!   the other user again.
//! - A 400 from `/2/httpapi` that lists event indices rejected the whole request: the listed
//!   events are dead, the others are resent. A 400 from `/identify` or `/groupidentify`
//!   refuses the whole request for any invalid identification (their status codes are those
//!   of HTTP V2, amplitude.com/docs/apis/analytics/identify "Considerations"): the engine
//!   bisects it. A 400 "Invalid API key" is the credentials, not a call: the destination
//!   pauses. A 429 without `Retry-After` waits 30 s (HTTP V2 reference, "429": pause 30 s).
//! - Limits: ≤ 2000 events and 1 MB per `/2/httpapi` and `/identify` request; ≤ 1024
//!   identifications, ≤ 1024 group properties in all, and 1 MB per `/groupidentify` request
//!   (Group Identify reference, "Considerations"). gzip is not documented: never used.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};
use sfsync_mapping::config::{AmplitudeSettings, UsEuRegion};
use sfsync_mapping::{Call, CallType, Entity};

use crate::engine::{
    Encoded, ItemVerdict, Protocol, Request, Response, Route, RouteSpec, Verdict, join_body,
    json_headers, standard_verdict,
};
use crate::wire::{self, BuildContext, Secret};
use crate::{BuildError, Limits};

const EVENTS: Route = 0;
const IDENTIFY: Route = 1;
const GROUP_IDENTIFY: Route = 2;
const DELETIONS: Route = 3;

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 2000,
    max_batch_bytes: 1_000_000,
    max_call_bytes: 1_000_000,
};

const GROUP_LIMITS: Limits = Limits {
    max_calls: 1024,
    max_batch_bytes: 1_000_000,
    max_call_bytes: 1_000_000,
};

/// Group properties in one `/groupidentify` request.
const MAX_GROUP_PROPERTIES: usize = 1024;

/// User Privacy API: user ids per deletion request.
const DELETION_LIMITS: Limits = Limits {
    max_calls: 100,
    max_batch_bytes: 1_000_000,
    max_call_bytes: 10_000,
};

pub(crate) struct Amplitude {
    api_key: Secret,
    /// Basic `API_KEY:SECRET_KEY` for the User Privacy API, when the secret key is set.
    privacy_auth: Option<HeaderValue>,
    urls: [String; 4],
    object_names: HashMap<String, String>,
    routes: [RouteSpec; 4],
}

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &AmplitudeSettings,
    object_names: &HashMap<String, String>,
) -> Result<Amplitude, BuildError> {
    let api_key = ctx.non_empty("api_key", &settings.api_key)?;
    let base = ctx.base_url(match settings.region {
        UsEuRegion::Us => "https://api2.amplitude.com",
        UsEuRegion::Eu => "https://api.eu.amplitude.com",
    })?;
    let privacy_base = ctx.base_url(match settings.region {
        UsEuRegion::Us => "https://amplitude.com",
        UsEuRegion::Eu => "https://analytics.eu.amplitude.com",
    })?;
    let privacy_auth = ctx
        .non_empty_optional("secret_key", settings.secret_key.as_ref())?
        .map(|secret_key| wire::basic_auth(api_key, secret_key));
    let route = |name, limits| RouteSpec {
        name,
        limits,
        separator: b"",
        gzip: false,
        max_units: None,
        min_interval: None,
    };
    Ok(Amplitude {
        api_key: Secret::new(api_key),
        privacy_auth,
        urls: [
            wire::join_url(&base, "/2/httpapi"),
            wire::join_url(&base, "/identify"),
            wire::join_url(&base, "/groupidentify"),
            wire::join_url(&privacy_base, "/api/2/deletions/users"),
        ],
        object_names: object_names.clone(),
        routes: [
            RouteSpec {
                separator: b",",
                ..route("Amplitude /2/httpapi", LIMITS)
            },
            RouteSpec {
                separator: b"%2C",
                ..route("Amplitude /identify", LIMITS)
            },
            RouteSpec {
                separator: b"%2C",
                max_units: Some((MAX_GROUP_PROPERTIES, "group properties")),
                ..route("Amplitude /groupidentify", GROUP_LIMITS)
            },
            RouteSpec {
                separator: b",",
                min_interval: Some(Duration::from_secs(1)),
                ..route("Amplitude User Privacy API", DELETION_LIMITS)
            },
        ],
    })
}

impl Amplitude {
    fn group_type(&self, call: &Call) -> Result<String, String> {
        let id = wire::object_type(call)?;
        Ok(self
            .object_names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("object_type_{id}")))
    }

    /// One call as (route, Amplitude JSON).
    pub(crate) fn render(&self, call: &Call) -> Result<(Route, Value), String> {
        let event = |event_type: &str,
                     user_id: Option<&str>,
                     device_id: Option<String>,
                     properties: Map<String, Value>|
         -> Result<Value, String> {
            let mut e = Map::new();
            if let Some(u) = user_id {
                e.insert("user_id".into(), json!(u));
            }
            if let Some(d) = device_id {
                e.insert("device_id".into(), json!(d));
            }
            e.insert("event_type".into(), json!(event_type));
            e.insert("time".into(), json!(wire::timestamp_millis(call)?));
            e.insert(
                "insert_id".into(),
                json!(wire::dedupe_insert_id(&call.message_id)),
            );
            e.insert("event_properties".into(), Value::Object(properties));
            e.insert(
                "library".into(),
                json!(concat!("sfsync/", env!("CARGO_PKG_VERSION"))),
            );
            Ok(Value::Object(e))
        };
        Ok(match call.call_type {
            CallType::Track => {
                let name = call
                    .event
                    .as_deref()
                    .filter(|e| !e.is_empty())
                    .ok_or_else(|| "track call has no event name".to_string())?;
                (
                    EVENTS,
                    event(
                        name,
                        Some(wire::user_id(call)?),
                        None,
                        call.properties_map(),
                    )?,
                )
            }
            CallType::Identify => (
                IDENTIFY,
                json!({
                    "user_id": wire::user_id(call)?,
                    "user_properties": { "$set": call.traits_map() },
                }),
            ),
            CallType::Group if call.is_relationship() => {
                let mut groups = Map::new();
                groups.insert(self.group_type(call)?, json!(wire::group_id(call)?));
                (
                    IDENTIFY,
                    json!({ "user_id": wire::user_id(call)?, "groups": groups }),
                )
            }
            CallType::Group => (
                GROUP_IDENTIFY,
                json!({
                    "group_type": self.group_type(call)?,
                    "group_value": wire::group_id(call)?,
                    "group_properties": { "$set": wire::object_traits(call) },
                }),
            ),
            CallType::Merge => {
                return Err(format!(
                    "Amplitude has no API to merge two users or groups of a project (its User Mapping API maps ids for the cross-project Portfolio view only and does not merge user properties), so the {} of {} into {} is not sent; merge them in Amplitude by hand, or stop sending merges to Amplitude (the destination's `syncs`)",
                    wire::kind_name(call),
                    call.previous_id.as_deref().unwrap_or("?"),
                    call.user_id
                        .as_deref()
                        .or(call.group_id.as_deref())
                        .unwrap_or("?"),
                ));
            }
            CallType::Delete => match call.entity {
                Some(Entity::Person) if self.privacy_auth.is_some() => {
                    (DELETIONS, json!(wire::user_id(call)?))
                }
                Some(Entity::Person) => {
                    return Err("Amplitude deletes users only through its User Privacy API: add the project's `secret_key` to this destination to send person deletes".into());
                }
                Some(Entity::Object | Entity::Relationship) => {
                    return Err(format!(
                        "Amplitude has no API to delete a group or a user's group membership, so the {} is not sent; stop sending these deletes to Amplitude (the sync's `deletes`, or the destination's `syncs`)",
                        wire::kind_name(call)
                    ));
                }
                None => {
                    return Err("delete call has no entity (person, object or relationship)".into());
                }
            },
        })
    }
}

impl Protocol for Amplitude {
    fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    fn encode(&self, call: &Call) -> Result<Encoded, String> {
        let (route, value) = self.render(call)?;
        let json = wire::to_json(&value);
        // Group Identify counts the group properties of a request (`max_units`).
        let units = if route == GROUP_IDENTIFY {
            value["group_properties"]["$set"]
                .as_object()
                .map_or(0, |set| set.len())
        } else {
            0
        };
        let bytes = if route == EVENTS || route == DELETIONS {
            json
        } else {
            // Form routes: items are stored percent-encoded, so sizes are what is sent.
            let mut encoded = Vec::with_capacity(json.len() * 2);
            wire::form_encode(&json, &mut encoded);
            encoded
        };
        Ok(Encoded {
            route,
            bytes,
            units,
        })
    }

    fn request(&self, route: Route, items: &[&[u8]], _calls: &[&Call]) -> Request {
        let url = self.urls.get(route).cloned().unwrap_or_default();
        if route == DELETIONS {
            let mut headers = json_headers();
            if let Some(auth) = &self.privacy_auth {
                headers.insert(header::AUTHORIZATION, auth.clone());
            }
            // `ignore_invalid_id`: a user Amplitude never saw must not fail the others
            // (a string, as the reference's examples send it).
            return Request {
                url,
                headers,
                body: join_body(
                    b"{\"user_ids\":[",
                    items,
                    b",",
                    b"],\"requester\":\"sfsync\",\"ignore_invalid_id\":\"True\"}",
                ),
            };
        }
        if route == EVENTS {
            let mut prefix = b"{\"api_key\":".to_vec();
            prefix.extend_from_slice(&wire::to_json(&json!(self.api_key.expose())));
            prefix.extend_from_slice(b",\"events\":[");
            return Request {
                url,
                headers: json_headers(),
                body: join_body(&prefix, items, b",", b"]}"),
            };
        }
        let mut prefix = b"api_key=".to_vec();
        wire::form_encode(self.api_key.expose().as_bytes(), &mut prefix);
        prefix.extend_from_slice(b"&identification=%5B");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Request {
            url,
            headers,
            body: join_body(&prefix, items, b"%2C", b"%5D"),
        }
    }

    fn classify(&self, route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        if response.status == 400
            && crate::engine::api_message(&response.body).contains("Invalid API key")
        {
            // HTTP V2 answers a bad key with 400 "Invalid API key": the key, not a call.
            return Verdict::Unauthorized {
                reason: crate::engine::describe(response),
            };
        }
        if (route == IDENTIFY || route == GROUP_IDENTIFY)
            && response.status == 400
            && calls.len() > 1
        {
            return Verdict::Split {
                reason: crate::engine::describe(response),
            };
        }
        if route == EVENTS && response.status == 400 {
            let rejected = rejected_events(&response.body, calls.len());
            if !rejected.is_empty() {
                let reason = crate::engine::describe(response);
                return Verdict::PerItem(
                    (0..calls.len())
                        .map(|i| match rejected.get(&i) {
                            Some(why) => ItemVerdict::Dead(format!("HTTP 400: {why}")),
                            None => ItemVerdict::Resend(format!(
                                "resent after other events of its request were rejected ({reason})"
                            )),
                        })
                        .collect(),
                );
            }
        }
        standard_verdict(response, calls.len(), self.throttle_wait())
    }

    fn throttle_wait(&self) -> Option<Duration> {
        Some(Duration::from_secs(30))
    }
}

/// The events a 400 names: index → why.
fn rejected_events(body: &[u8], n: usize) -> HashMap<usize, String> {
    let mut out: HashMap<usize, String> = HashMap::new();
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return out;
    };
    let mut add = |index: &Value, why: String| {
        if let Some(i) = index.as_u64().and_then(|i| usize::try_from(i).ok())
            && i < n
        {
            out.entry(i)
                .and_modify(|r| {
                    r.push_str("; ");
                    r.push_str(&why);
                })
                .or_insert(why);
        }
    };
    for (key, what) in [
        ("events_with_invalid_fields", "invalid"),
        ("events_with_missing_fields", "missing"),
    ] {
        if let Some(Value::Object(fields)) = map.get(key) {
            for (field, indices) in fields {
                for index in indices.as_array().into_iter().flatten() {
                    add(index, format!("{what} field {field}"));
                }
            }
        }
    }
    if let Some(Value::Array(indices)) = map.get("silenced_events") {
        let mut seen = HashSet::new();
        for index in indices {
            if seen.insert(index.to_string()) {
                add(index, "device silenced by Amplitude".into());
            }
        }
    }
    out
}
