//! The hot calls — `identify`, `track` and `group` — written straight from the `Call` into
//! JSON, without building a `serde_json::Value` of the message first (issue 16: `render`
//! cloned every trait into a new map, then serialized that copy).
//!
//! The bytes are exactly `render`'s: `render` builds a `serde_json::Map`, which sorts its
//! keys (serde_json without `preserve_order`), so the fields below are declared in that
//! sorted order, and `context.sfsync` is the call's `Source` with its keys sorted the same
//! way. The unit test below compares the two on every call kind, and
//! `tests/golden.rs` pins the bytes on the wire.
//!
//! Anything else — merges, deletes, and a call `render` refuses (no event name, no
//! groupId, no user) — returns `None` and goes through `render`, which knows those forms
//! and their error messages.

use serde::Serialize;
use sfsync_mapping::{Call, CallType, JsonObject, SyncKind};

/// A Segment-spec message of an identify, track or group call, keys in sorted order.
#[derive(Serialize)]
struct Message<'a> {
    #[serde(rename = "anonymousId", skip_serializing_if = "Option::is_none")]
    anonymous_id: Option<&'a str>,
    context: Context<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(rename = "groupId", skip_serializing_if = "Option::is_none")]
    group_id: Option<&'a str>,
    #[serde(rename = "messageId")]
    message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a JsonObject>,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<&'a JsonObject>,
    #[serde(rename = "type")]
    call_type: &'static str,
    #[serde(rename = "userId", skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Context<'a> {
    sfsync: Source<'a>,
}

/// `sfsync_mapping::Source` with its keys sorted (`render` goes through a `Map`).
#[derive(Serialize)]
struct Source<'a> {
    kind: SyncKind,
    object: &'a str,
    #[serde(rename = "recordId")]
    record_id: &'a str,
    sync: &'a str,
}

static EMPTY: std::sync::LazyLock<JsonObject> = std::sync::LazyLock::new(JsonObject::empty);

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// The message of an identify, track or group call as `render` would write it, or `None`
/// when `render` must handle the call.
pub(crate) fn encode(call: &Call) -> Option<Vec<u8>> {
    let user_id = non_empty(call.user_id.as_deref());
    let anonymous_id = non_empty(call.anonymous_id.as_deref());
    if user_id.is_none() && anonymous_id.is_none() {
        return None;
    }
    let traits = || Some(call.traits.as_ref().unwrap_or(&EMPTY));
    let (call_type, event, group_id, properties, traits) = match call.call_type {
        CallType::Identify => ("identify", None, None, None, traits()),
        CallType::Track => (
            "track",
            Some(non_empty(call.event.as_deref())?),
            None,
            Some(call.properties.as_ref().unwrap_or(&EMPTY)),
            None,
        ),
        CallType::Group => (
            "group",
            None,
            Some(non_empty(call.group_id.as_deref())?),
            None,
            traits(),
        ),
        CallType::Delete | CallType::Merge => return None,
    };
    let source = call.source();
    let message = Message {
        anonymous_id,
        context: Context {
            sfsync: Source {
                kind: source.kind,
                object: &source.object,
                record_id: &source.record_id,
                sync: &source.sync,
            },
        },
        event,
        group_id,
        message_id: &call.message_id,
        properties,
        timestamp: &call.timestamp,
        traits,
        call_type,
        user_id,
    };
    // Room for a typical call at once (a contact's identify is about 700 bytes), where
    // `to_vec` starts at 128 bytes and copies the message on every doubling.
    let mut out = Vec::with_capacity(1024);
    // Serializing borrowed strings and `Value`s cannot fail.
    serde_json::to_writer(&mut out, &message).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn call(value: Value) -> Call {
        serde_json::from_value(value).expect("a valid call")
    }

    fn context(kind: &str) -> Value {
        json!({ "sfsync": { "sync": "s\u{e9}\"q", "object": "Contact", "kind": kind, "recordId": "003\\x" } })
    }

    #[test]
    fn writes_what_render_writes_for_every_call_kind() {
        let traits = json!({ "email": "a\"b@example.com", "z": null, "n": 1.5, "nested": { "b": [1, "\u{1}"], "a": true }, "Account.Name": "Zoë 🚀" });
        let cases = [
            json!({ "type": "identify", "messageId": "m1", "timestamp": "2024-01-01T00:00:00.000Z", "userId": "u", "traits": traits, "context": context("people") }),
            json!({ "type": "identify", "messageId": "m2", "timestamp": "2024-01-01T00:00:00.000Z", "userId": "u", "anonymousId": "a", "context": context("people") }),
            json!({ "type": "identify", "messageId": "m3", "timestamp": "t", "userId": "", "anonymousId": "a", "traits": {}, "context": context("people") }),
            json!({ "type": "track", "messageId": "m4", "timestamp": "t", "userId": "u", "event": "Call \"Logged\"", "properties": traits, "context": context("events") }),
            json!({ "type": "track", "messageId": "m5", "timestamp": "t", "userId": "u", "event": "E", "context": context("events") }),
            json!({ "type": "group", "messageId": "m6", "timestamp": "t", "groupId": "g", "anonymousId": "sfsync-object-1-g", "traits": traits, "context": context("objects") }),
            json!({ "type": "group", "messageId": "m7", "timestamp": "t", "userId": "u", "groupId": "g", "traits": { "object_type_id": "1", "relationshipAttributes": { "Roles": "x" } }, "context": context("relationships") }),
        ];
        for case in cases {
            let call = call(case);
            let direct = encode(&call).expect("a hot call");
            let rendered = crate::wire::to_json(&super::super::render(&call).expect("renders"));
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&rendered),
                "{call:?}"
            );
        }
    }

    #[test]
    fn leaves_other_calls_and_refusals_to_render() {
        let cases = [
            // No event name, no groupId, no user: render says why.
            json!({ "type": "track", "messageId": "m", "timestamp": "t", "userId": "u", "event": "", "context": context("events") }),
            json!({ "type": "group", "messageId": "m", "timestamp": "t", "userId": "u", "context": context("objects") }),
            json!({ "type": "identify", "messageId": "m", "timestamp": "t", "userId": "", "context": context("people") }),
            json!({ "type": "delete", "messageId": "m", "timestamp": "t", "userId": "u", "entity": "person", "context": context("people") }),
            json!({ "type": "merge", "messageId": "m", "timestamp": "t", "userId": "u", "previousId": "p", "entity": "person", "context": context("people") }),
        ];
        for case in cases {
            assert!(encode(&call(case)).is_none());
        }
    }
}
