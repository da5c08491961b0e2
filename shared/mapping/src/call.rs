//! The calls the mapping produces: Segment-spec `identify`, `track` and `group`, plus a
//! `delete` and a `merge` call of our own that every destination renders in its own form.
//!
//! `merge` says "the identity `previousId` is now `userId`" (people) or "`previousId` is now
//! `groupId`" (objects): the shape of the Segment spec's `alias` call, extended to objects.
//! It comes from a Lead conversion or a record merge in Salesforce (`crate::mapper`).
//!
//! The JSON shape is what `sfsync map` prints and what travels between the map and deliver
//! stages, so field names follow the Segment spec (camelCase) and optional fields are omitted
//! rather than written as `null`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::SyncKind;
use crate::object::JsonObject;

/// The Segment call type, plus `delete` and `merge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallType {
    Identify,
    Track,
    Group,
    Delete,
    Merge,
}

impl CallType {
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Identify => "identify",
            CallType::Track => "track",
            CallType::Group => "group",
            CallType::Delete => "delete",
            CallType::Merge => "merge",
        }
    }
}

/// What a `delete` call removes, or a `merge` call merges, downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Entity {
    Person,
    Object,
    Relationship,
}

/// Why a `merge` call was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeCause {
    /// A Lead was converted into a Contact.
    Conversion,
    /// Duplicate records were merged; the loser was deleted with `MasterRecordId` set.
    Merge,
}

/// Where a call came from. Destinations read `kind` to tell a relationship from an object
/// that merely has a related user (both are `group` calls with `userId` and `groupId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub sync: String,
    pub object: String,
    pub kind: SyncKind,
    pub record_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub sfsync: Source,
}

/// One Segment-spec call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    #[serde(rename = "type")]
    pub call_type: CallType,
    /// Deterministic: the same record version always yields the same id (see `message_id`).
    pub message_id: String,
    /// RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `merge` calls: the identity that goes away (a converted Lead's or a merged loser's
    /// id); `userId` (people) or `groupId` (objects) is the one that remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// Set by the mapping on object calls without a user ([`crate::anonymous_object_id`]), so
    /// that every call names a person as the Segment spec requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The selected fields' text, as the mapping wrote it ([`JsonObject`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<JsonObject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JsonObject>,
    /// `delete` calls: what is deleted; `merge` calls: what is merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    /// `merge` calls: what Salesforce did (for run reports and metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_cause: Option<MergeCause>,
    /// `delete` calls of objects and relationships: the object type. `group` calls carry it
    /// as `traits.object_type_id`, as Customer.io expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type_id: Option<String>,
    pub context: Context,
}

impl Call {
    pub fn source(&self) -> &Source {
        &self.context.sfsync
    }

    /// True for a `group` call made by a relationship sync.
    pub fn is_relationship(&self) -> bool {
        self.context.sfsync.kind == SyncKind::Relationships
    }

    /// The object type of an object or relationship call, wherever the call carries it.
    pub fn object_type(&self) -> Option<String> {
        if let Some(id) = &self.object_type_id {
            return Some(id.clone());
        }
        match self.traits.as_ref()?.get("object_type_id")? {
            Value::String(id) => Some(id),
            _ => None,
        }
    }

    /// The relationship's own attributes (relationship calls only).
    pub fn relationship_attributes(&self) -> Option<Map<String, Value>> {
        match self.traits.as_ref()?.get("relationshipAttributes")? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The traits as a map (empty when the call has none).
    pub fn traits_map(&self) -> Map<String, Value> {
        self.traits
            .as_ref()
            .map(JsonObject::to_map)
            .unwrap_or_default()
    }

    /// The properties as a map (empty when the call has none).
    pub fn properties_map(&self) -> Map<String, Value> {
        self.properties
            .as_ref()
            .map(JsonObject::to_map)
            .unwrap_or_default()
    }

    /// Milliseconds since the epoch of `timestamp`, for APIs that want numbers.
    pub fn timestamp_millis(&self) -> Option<i64> {
        crate::time::parse_salesforce_datetime(&self.timestamp)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}
