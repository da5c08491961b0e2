//! Customer.io Track API v2: `POST https://track.customer.io/api/v2/batch` (EU
//! `https://track-eu.customer.io/api/v2/batch`), Basic auth `SITE_ID:API_KEY`.
//!
//! Field names from Customer.io's "Journeys Track API" reference (docs.customer.io/api/track/,
//! v2 `batch` operation and its `person` / `object` entity schemas: `type`, `identifiers`,
//! `action`, `attributes`, `cio_relationships`, `relationship_attributes`, `name`, `id`,
//! `timestamp`) and its 207 response (`errors[{batch_index, reason, field, message}]`).
//!
//! Each call is one entity operation in `{"batch":[…]}`:
//! - identify → `{"type":"person","identifiers":{"id":userId},"action":"identify","attributes":traits}`
//! - object → `{"type":"object","identifiers":{"object_type_id","object_id"},"action":"identify","attributes":…}`;
//!   when the object call names a user (e.g. its owner), the person is related through
//!   `cio_relationships:[{"identifiers":{"id":userId}}]`, as a Data Pipelines group call would.
//! - relationship → the person with `"action":"add_relationships"` and
//!   `cio_relationships:[{"identifiers":{object_type_id, object_id},"relationship_attributes":{…}}]`
//! - track → `"action":"event"`, `name`, `attributes` = properties and `id` = a ULID derived
//!   from the call (timestamp ms + 80 bits of SHA-256(messageId)), so a resent event dedupes.
//! - deletes → `"action":"delete"` on the person or the object; a relationship delete is
//!   `"action":"delete_relationships"` on the person.
//! - person merge → `{"type":"person","action":"merge","primary":{"id":userId},"secondary":{"id":previousId}}`
//!   (Track API v2 `person` operation "merge": "Merges `secondary` into `primary`, then
//!   deletes `secondary` … `primary` must already exist"; docs.customer.io "Merge duplicate
//!   people"). It carries no timestamp (the operation has none). Customer.io has no merge
//!   of objects: an object merge is the `delete` of the losing object
//!   (`wire::object_merge_as_delete`).
//! - `timestamp` is unix seconds.
//!
//! Merges and the order of calls. A `merge` whose `primary` does not exist "won't do
//! anything" (answered 200 all the same), and "if you identify a person and send a request
//! to this endpoint immediately, the primary profile might not exist when we process your
//! merge request" (Track API reference, "Merge duplicate people", `merge_customers`; the v2
//! `person_merge` schema: "`primary` must already exist"). In AWS the survivor's own
//! identify may arrive in another SQS message, later, or in a delivery running at the same
//! time. So every person merge has a prerequisite (see `crate::prerequisite`): an identify
//! of the survivor carrying only its id ([`survivor_identify`]), which creates the person if
//! missing and changes nothing if present (`identify` "adds or updates a person" and
//! `attributes` holds only "attributes that you want to add or update": schema
//! `identify_person`, where `attributes` is optional). The merges follow in requests of
//! their own, [`MERGE_SETTLE`] after that identify was accepted. The survivor's full
//! identify, whenever it comes, sets its attributes over what the merge brought (a merge
//! fills only attributes "not set, or empty, on the primary"). A merge sent again once the
//! secondary is gone finds nothing to merge and changes nothing.
//!
//! 200: all accepted. 207: partial success; the listed `batch_index`es failed validation and
//! are dead (the rest were accepted and are never resent). 400: the whole request is invalid.
//! Limits: ≤ 500 KB per request, ≤ 32 KB per entity; no count limit is documented (sfsync caps
//! batches at 10,000). gzip is not documented for this API: off unless `gzip = true`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sfsync_mapping::config::{CustomerioTrackSettings, UsEuRegion};
use sfsync_mapping::{Call, CallType, Entity};

use crate::engine::{
    Encoded, ItemVerdict, Protocol, Request, Response, Route, RouteSpec, Verdict, describe,
    join_body, json_headers, standard_verdict,
};
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 10_000,
    max_batch_bytes: 500_000,
    max_call_bytes: 32 * 1024,
};

pub(crate) struct CustomerioTrack {
    url: String,
    auth: reqwest::header::HeaderValue,
    route: [RouteSpec; 1],
}

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &CustomerioTrackSettings,
) -> Result<CustomerioTrack, BuildError> {
    let site_id = ctx.non_empty("site_id", &settings.site_id)?;
    let api_key = ctx.non_empty("api_key", &settings.api_key)?;
    let base = ctx.base_url(match settings.region {
        UsEuRegion::Us => "https://track.customer.io",
        UsEuRegion::Eu => "https://track-eu.customer.io",
    })?;
    Ok(CustomerioTrack {
        url: wire::join_url(&base, "/api/v2/batch"),
        auth: wire::basic_auth(site_id, api_key),
        route: [RouteSpec {
            name: "Customer.io /api/v2/batch",
            limits: LIMITS,
            separator: b",",
            gzip: ctx.config.gzip == Some(true),
            max_units: None,
            min_interval: None,
        }],
    })
}

/// The wait between an accepted survivor identify and the merges into that survivor.
/// Customer.io documents the race (a merge right after the identify creating its primary
/// may find no primary) but gives no figure; this is ours, sized for its processing lag
/// under normal load. A Lambda delivery with merges spends it once, whatever the number
/// of merges.
pub(crate) const MERGE_SETTLE: Duration = Duration::from_secs(2);

/// The identify that makes a person merge's survivor exist before the merge is sent: only
/// the survivor's id, no attributes and no timestamp (a timestamp orders attribute
/// updates, and this one updates none). Its messageId is derived from the survivor's id,
/// so the same survivor always gets the same call (two merges into one Contact share it).
/// `None` for anything but a person merge, or a merge too malformed to render (it is
/// dead-lettered on its own with the reason).
pub(crate) fn survivor_identify(call: &Call) -> Option<Call> {
    if call.call_type != CallType::Merge || call.entity == Some(Entity::Object) {
        return None;
    }
    let (surviving, _) = wire::person_merge_ids(call).ok()?;
    let name = format!("sfsync survivor identify\u{1f}{surviving}");
    Some(Call {
        call_type: CallType::Identify,
        message_id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string(),
        user_id: Some(surviving.to_string()),
        previous_id: None,
        anonymous_id: None,
        group_id: None,
        event: None,
        traits: None,
        properties: None,
        entity: None,
        merge_cause: None,
        object_type_id: None,
        ..call.clone()
    })
}

fn person(user_id: &str) -> Value {
    json!({ "id": user_id })
}

fn object_identifiers(call: &Call) -> Result<Value, String> {
    Ok(json!({
        "object_type_id": wire::object_type(call)?,
        "object_id": wire::group_id(call)?,
    }))
}

/// One call as a Track API v2 entity operation.
pub(crate) fn render(call: &Call) -> Result<Value, String> {
    let seconds = wire::timestamp_millis(call)?.div_euclid(1000);
    let value = match call.call_type {
        // No traits: an identify that only makes sure the person exists (see
        // `survivor_identify`); it sets nothing, so it carries neither attributes nor time.
        CallType::Identify if call.traits.is_none() => json!({
            "type": "person",
            "identifiers": person(wire::user_id(call)?),
            "action": "identify",
        }),
        CallType::Identify => json!({
            "type": "person",
            "identifiers": person(wire::user_id(call)?),
            "action": "identify",
            "attributes": call.traits_map(),
            "timestamp": seconds,
        }),
        CallType::Track => {
            let name = call
                .event
                .as_deref()
                .filter(|e| !e.is_empty())
                .ok_or_else(|| "track call has no event name".to_string())?;
            json!({
                "type": "person",
                "identifiers": person(wire::user_id(call)?),
                "action": "event",
                "name": name,
                "id": wire::event_ulid(call)?,
                "attributes": call.properties_map(),
                "timestamp": seconds,
            })
        }
        CallType::Group if call.is_relationship() => {
            let mut relationship = Map::new();
            relationship.insert("identifiers".into(), object_identifiers(call)?);
            if let Some(attributes) = call.relationship_attributes() {
                relationship.insert(
                    "relationship_attributes".into(),
                    Value::Object(attributes.clone()),
                );
            }
            json!({
                "type": "person",
                "identifiers": person(wire::user_id(call)?),
                "action": "add_relationships",
                "cio_relationships": [relationship],
                "timestamp": seconds,
            })
        }
        CallType::Group => {
            let mut op = json!({
                "type": "object",
                "identifiers": object_identifiers(call)?,
                "action": "identify",
                "attributes": wire::object_traits(call),
                "timestamp": seconds,
            });
            if let (Some(user), Value::Object(map)) =
                (call.user_id.as_deref().filter(|u| !u.is_empty()), &mut op)
            {
                map.insert(
                    "cio_relationships".into(),
                    json!([{ "identifiers": person(user) }]),
                );
            }
            op
        }
        CallType::Merge if call.entity == Some(Entity::Object) => {
            return render(&wire::object_merge_as_delete(call)?);
        }
        CallType::Merge => {
            let (surviving, previous) = wire::person_merge_ids(call)?;
            json!({
                "type": "person",
                "action": "merge",
                "primary": person(surviving),
                "secondary": person(previous),
            })
        }
        CallType::Delete => match call.entity {
            Some(Entity::Person) => json!({
                "type": "person",
                "identifiers": person(wire::user_id(call)?),
                "action": "delete",
                "timestamp": seconds,
            }),
            Some(Entity::Object) => json!({
                "type": "object",
                "identifiers": object_identifiers(call)?,
                "action": "delete",
                "timestamp": seconds,
            }),
            Some(Entity::Relationship) => json!({
                "type": "person",
                "identifiers": person(wire::user_id(call)?),
                "action": "delete_relationships",
                "cio_relationships": [{ "identifiers": object_identifiers(call)? }],
                "timestamp": seconds,
            }),
            None => return Err("delete call has no entity (person, object or relationship)".into()),
        },
    };
    Ok(value)
}

#[derive(Deserialize)]
struct PartialResponse {
    #[serde(default)]
    errors: Vec<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    batch_index: Option<usize>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Protocol for CustomerioTrack {
    fn routes(&self) -> &[RouteSpec] {
        &self.route
    }

    fn encode(&self, call: &Call) -> Result<Encoded, String> {
        Ok(Encoded {
            route: 0,
            bytes: wire::to_json(&render(call)?),
            units: 0,
        })
    }

    fn prerequisite(&self, call: &Call) -> Option<Call> {
        survivor_identify(call)
    }

    fn prerequisite_settle(&self) -> Duration {
        MERGE_SETTLE
    }

    fn request(&self, _route: Route, items: &[&[u8]], _calls: &[&Call]) -> Request {
        let mut headers = json_headers();
        headers.insert(header::AUTHORIZATION, self.auth.clone());
        Request {
            url: self.url.clone(),
            headers,
            body: join_body(b"{\"batch\":[", items, b",", b"]}"),
        }
    }

    fn classify(&self, _route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        if response.status != 207 {
            return standard_verdict(response, calls.len(), None);
        }
        let Ok(parsed) = serde_json::from_slice::<PartialResponse>(&response.body) else {
            // Some calls failed and we cannot tell which: dead-letter the batch (replaying
            // it is safe: identifies are idempotent and events dedupe on their id).
            return Verdict::Dead {
                reason: format!("{} (unreadable partial-success body)", describe(response)),
            };
        };
        let mut failed: HashMap<usize, String> = HashMap::new();
        let mut unattributed = Vec::new();
        for e in parsed.errors {
            let index = e.batch_index.filter(|i| *i < calls.len());
            let mut parts: Vec<String> = Vec::new();
            if let Some(f) = e.field.filter(|f| !f.is_empty()) {
                parts.push(f);
            }
            if let Some(r) = e.reason.filter(|r| !r.is_empty()) {
                parts.push(r);
            }
            if let Some(m) = e.message.filter(|m| !m.is_empty()) {
                parts.push(m);
            }
            let reason = format!("HTTP 207: rejected: {}", parts.join(": "));
            let Some(index) = index else {
                unattributed.push(reason);
                continue;
            };
            failed
                .entry(index)
                .and_modify(|r| {
                    r.push_str("; ");
                    r.push_str(&reason);
                })
                .or_insert(reason);
        }
        if failed.is_empty() && !unattributed.is_empty() {
            // Errors we cannot pin on a call: dead-letter the batch rather than lose them.
            return Verdict::Dead {
                reason: wire::truncate(&unattributed.join("; "), 1000),
            };
        }
        Verdict::PerItem(
            (0..calls.len())
                .map(|i| match failed.remove(&i) {
                    Some(reason) => ItemVerdict::Dead(wire::truncate(&reason, 1000)),
                    None => ItemVerdict::Delivered,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(value: Value) -> Call {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn person_merge(previous: &str, surviving: &str) -> Call {
        call(json!({
            "type": "merge", "messageId": format!("m-{previous}"), "timestamp": "2024-05-01T12:00:00.000Z",
            "userId": surviving, "previousId": previous, "entity": "person", "mergeCause": "conversion",
            "context": {"sfsync": {"sync": "leads", "object": "Lead", "kind": "people", "recordId": previous}},
        }))
    }

    #[test]
    fn a_person_merge_needs_its_survivor_identified_by_id_alone() {
        let merge = person_merge("00Q000000000001", "003000000000001");
        let Some(identify) = survivor_identify(&merge) else {
            panic!("no prerequisite")
        };
        assert_eq!(
            render(&identify),
            Ok(
                json!({"type": "person", "identifiers": {"id": "003000000000001"}, "action": "identify"})
            )
        );
        let same_survivor = survivor_identify(&person_merge("00Q000000000002", "003000000000001"));
        assert_eq!(
            same_survivor.map(|c| c.message_id),
            Some(identify.message_id.clone()),
            "one identify per survivor"
        );
        let other = survivor_identify(&person_merge("00Q000000000001", "003000000000002"));
        assert_ne!(other.map(|c| c.message_id), Some(identify.message_id));
    }

    #[test]
    fn only_person_merges_have_a_prerequisite() {
        let mut object_merge = person_merge("001000000000002", "001000000000001");
        object_merge.entity = Some(Entity::Object);
        assert_eq!(survivor_identify(&object_merge), None);
        let mut identify = person_merge("00Q000000000001", "003000000000001");
        identify.call_type = CallType::Identify;
        assert_eq!(survivor_identify(&identify), None);
        let into_itself = person_merge("003000000000001", "003000000000001");
        assert_eq!(survivor_identify(&into_itself), None, "dead on its own");
    }
}
