//! The Segment-spec wire form shared by Customer.io Data Pipelines, Segment and RudderStack:
//! `POST …/v1/batch` with `{"batch":[call, …]}` and Basic auth `KEY:`.
//!
//! Field names follow the Segment Spec (segment.com/docs/connections/spec: common fields,
//! identify, track, group) and the HTTP Tracking API's `/v1/batch`
//! (segment.com/docs/connections/sources/catalog/libraries/server/http-api).
//!
//! - identify/track/group pass through with `type`, `messageId` (the dedupe key),
//!   `timestamp`, `userId`/`anonymousId`, `traits`/`properties`, `event`, `groupId`, and
//!   `context` (our `context.sfsync`).
//! - Relationships are `group` calls with both `userId` and `groupId`; the relationship's
//!   own attributes stay in `traits.relationshipAttributes` and the object type in
//!   `traits.object_type_id` (Customer.io's convention; harmless elsewhere).
//! - `delete` calls become the semantic track events Customer.io defines: "User Deleted"
//!   (userId), "Object Deleted" (the mapping's anonymousId for the object) and
//!   "Relationship Deleted" (userId), with `properties: {objectId, objectTypeId}` for the
//!   last two. What sits downstream of Segment or RudderStack reads the object id elsewhere:
//!   Segment's own Customer.io destination (segmentio/action-destinations, customerio
//!   `deleteObject` / `deleteRelationship`) takes it from `groupId` and from
//!   `context.groupId`. So "Object Deleted" also carries `groupId` and `context.groupId`,
//!   and "Relationship Deleted" carries `context.groupId`.
//! - `merge` calls about people become the spec's `alias` call, `{previousId, userId}`
//!   (Segment Spec "Alias", twilio.com/docs/segment/connections/spec/alias; RudderStack's
//!   event spec "Alias", rudderstack.com/docs/event-spec/standard-events/alias; Customer.io
//!   Data Pipelines "Alias", docs.customer.io/integrations/data-in/source-spec/alias-spec:
//!   "the `userId` inherits the traits and activity of the `previousId`"). The spec has no
//!   merge of groups: an object merge is sent as the "Object Deleted" of the loser (see
//!   `wire::object_merge_as_delete`).
//! - Every call needs a userId or an anonymousId (Customer.io's batch schema requires one;
//!   Segment and RudderStack drop a call with neither). The mapping gives calls about an
//!   object without a user a stable anonymousId (`sfsync_mapping::anonymous_object_id`);
//!   this module sends what the call carries and invents nothing.
//! - A 400 refuses the whole request (Customer.io in strict mode for one invalid call;
//!   Segment and RudderStack for invalid JSON or an oversize call): the engine bisects it
//!   so only the culprit is dead.

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use sfsync_mapping::{Call, CallType, Entity};

use crate::engine::{
    Encoded, Protocol, Request, Response, Route, RouteSpec, Verdict, describe, join_body,
    json_headers, standard_verdict,
};
use crate::wire;

mod direct;

pub(crate) struct SegmentSpec {
    pub url: String,
    pub auth: HeaderValue,
    pub route: [RouteSpec; 1],
    /// Sent with every request (Customer.io's `X-Strict-Mode: 1`).
    pub extra_headers: HeaderMap,
}

impl Protocol for SegmentSpec {
    fn routes(&self) -> &[RouteSpec] {
        &self.route
    }

    fn encode(&self, call: &Call) -> Result<Encoded, String> {
        // identify, track and group (nearly every call) are written straight from the call;
        // the rest through `render` (the same bytes either way: see `direct`).
        let bytes = match direct::encode(call) {
            Some(bytes) => bytes,
            None => wire::to_json(&render(call)?),
        };
        Ok(Encoded {
            route: 0,
            bytes,
            units: 0,
        })
    }

    fn request(&self, _route: Route, items: &[&[u8]], _calls: &[&Call]) -> Request {
        let mut headers = json_headers();
        headers.insert(header::AUTHORIZATION, self.auth.clone());
        headers.extend(self.extra_headers.clone());
        Request {
            url: self.url.clone(),
            headers,
            body: join_body(b"{\"batch\":[", items, b",", b"]}"),
        }
    }

    fn classify(&self, _route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        if response.status == 400 && calls.len() > 1 {
            return Verdict::Split {
                reason: describe(response),
            };
        }
        standard_verdict(response, calls.len(), self.throttle_wait())
    }
}

/// One call as a Segment-spec message.
pub(crate) fn render(call: &Call) -> Result<Value, String> {
    let mut m = Map::new();
    m.insert("messageId".into(), Value::String(call.message_id.clone()));
    m.insert("timestamp".into(), Value::String(call.timestamp.clone()));
    let mut context = Map::new();
    context.insert(
        "sfsync".into(),
        serde_json::to_value(&call.context.sfsync).unwrap_or(Value::Null),
    );
    m.insert("context".into(), Value::Object(context));

    let set_user = |m: &mut Map<String, Value>, user: Option<&str>, anon: Option<&str>| {
        if let Some(u) = user.filter(|u| !u.is_empty()) {
            m.insert("userId".into(), Value::String(u.to_string()));
        }
        if let Some(a) = anon.filter(|a| !a.is_empty()) {
            m.insert("anonymousId".into(), Value::String(a.to_string()));
        }
    };
    let has_user =
        |m: &Map<String, Value>| m.contains_key("userId") || m.contains_key("anonymousId");
    let kind = wire::kind_name(call);

    match call.call_type {
        CallType::Identify => {
            m.insert("type".into(), Value::String("identify".into()));
            set_user(
                &mut m,
                call.user_id.as_deref(),
                call.anonymous_id.as_deref(),
            );
            m.insert("traits".into(), Value::Object(call.traits_map()));
        }
        CallType::Track => {
            m.insert("type".into(), Value::String("track".into()));
            let event = call
                .event
                .as_deref()
                .filter(|e| !e.is_empty())
                .ok_or_else(|| "track call has no event name".to_string())?;
            m.insert("event".into(), Value::String(event.to_string()));
            set_user(
                &mut m,
                call.user_id.as_deref(),
                call.anonymous_id.as_deref(),
            );
            m.insert("properties".into(), Value::Object(call.properties_map()));
        }
        CallType::Group => {
            m.insert("type".into(), Value::String("group".into()));
            let group_id = wire::group_id(call)?;
            m.insert("groupId".into(), Value::String(group_id.to_string()));
            set_user(
                &mut m,
                call.user_id.as_deref(),
                call.anonymous_id.as_deref(),
            );
            m.insert("traits".into(), Value::Object(call.traits_map()));
        }
        CallType::Merge if call.entity == Some(Entity::Object) => {
            return render(&wire::object_merge_as_delete(call)?);
        }
        CallType::Merge => {
            let (surviving, previous) = wire::person_merge_ids(call)?;
            m.insert("type".into(), Value::String("alias".into()));
            m.insert("previousId".into(), Value::String(previous.to_string()));
            set_user(&mut m, Some(surviving), None);
        }
        CallType::Delete => {
            let delete = wire::delete_event(call)?;
            m.insert("type".into(), Value::String("track".into()));
            m.insert("event".into(), Value::String(delete.event.into()));
            set_user(&mut m, delete.user_id, delete.anonymous_id);
            if let Some(object_id) = delete.properties.get("objectId").cloned() {
                // Where Segment's Customer.io destination looks for the object (module doc).
                if call.entity == Some(Entity::Object) {
                    m.insert("groupId".into(), object_id.clone());
                }
                if let Some(Value::Object(context)) = m.get_mut("context") {
                    context.insert("groupId".into(), object_id);
                }
            }
            m.insert("properties".into(), Value::Object(delete.properties));
        }
    }
    if !has_user(&m) {
        return Err(format!("{kind} call has neither userId nor anonymousId"));
    }
    Ok(Value::Object(m))
}
