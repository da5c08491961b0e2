//! Salesforce record in, Segment-spec call out.
//!
//! The rules, in the order a record meets them:
//! 1. It needs an `Id` and a version, `SystemModstamp` (or, in records exported by another
//!    tool without it, `LastModifiedDate`: see [`crate::version`]): together with the sync
//!    name and the call type they make the deterministic `messageId`, so a retried or
//!    re-extracted record version is deduplicated downstream, and a new version gets a new id.
//! 2. A deleted record (`IsDeleted: true`) becomes a `delete` call when the sync has
//!    `deletes = true`, and is skipped otherwise.
//!    A deleted record whose `MasterRecordId` is set lost a merge: in a people or object
//!    sync with `deletes = true` it becomes a `merge` of its id into the winner's
//!    ([`crate::SyncConfig::follows_merges`]), never a delete, which would erase the
//!    person's history downstream.
//! 3. A converted Lead (`IsConverted` and `ConvertedContactId`) in a Lead people sync with
//!    conversions on ([`crate::SyncConfig::converts_leads`]) becomes a `merge` of the Lead's
//!    id into the Contact's, and nothing else: the person lives on as the Contact, and an
//!    `identify` of the Lead after the merge would bring its old profile back.
//!    A merge's `messageId` depends on the two ids only ([`merge_message_id`]), so a later
//!    version of the same converted Lead re-sends a duplicate that destinations drop.
//! 4. Otherwise the sync's kind decides the call: people → `identify`, events → `track`,
//!    objects → `group`, relationships → `group` with both ids and the selected fields in
//!    `traits.relationshipAttributes`.
//! 5. Selected fields pass through under their own names, except the reserved traits of
//!    Customer.io's Salesforce mapping (see `PEOPLE_RESERVED` and `OBJECT_RESERVED`).
//!    Parent fields (`Account.Name`) appear flattened under their dotted path, without
//!    Salesforce's `attributes` noise; a null parent gives null for each of its fields, so a
//!    cleared lookup clears downstream.
//! 6. Every call names a person: the Segment spec (and Customer.io's batch schema) wants a
//!    `userId` or an `anonymousId`. An object call (`group`, or an object `delete`) without
//!    a related user gets the stable `anonymousId` of [`anonymous_object_id`]:
//!    `sfsync-object-<object_type_id>-<groupId>`, the same for every destination and every
//!    run. A relationship or event without its person id is skipped (`missing_identifier`).
//!
//! A record that cannot be mapped is skipped with a typed reason; mapping never panics.

use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::call::{Call, CallType, Context, Entity, MergeCause, Source};
use crate::config::{SyncConfig, SyncKind};
use crate::object::ObjectBuilder;
use crate::record::{Fields, Kind, Record, as_str, is_true, kind};
use crate::time::{format_rfc3339, parse_date_or_datetime, parse_salesforce_datetime};
use crate::version::version_field;

/// Reserved traits for people: Salesforce field → trait. `CreatedDate` is handled apart: it
/// stays as it is and adds `created_at` (epoch seconds). `Name` falls back to the
/// concatenation of the name parts when it was not selected.
pub const PEOPLE_RESERVED: &[(&str, &str)] = &[
    ("Description", "description"),
    ("Email", "email"),
    ("FirstName", "firstName"),
    ("LastName", "lastName"),
    ("Name", "name"),
    ("Phone", "phone"),
    ("Title", "title"),
    ("Website", "website"),
];

/// Reserved traits for objects (and nothing else is renamed for them).
pub const OBJECT_RESERVED: &[(&str, &str)] = &[
    ("Description", "description"),
    ("Email", "email"),
    ("Name", "name"),
    ("Phone", "phone"),
];

/// The parts of a person's name, in the order Salesforce composes `Name`.
const NAME_PARTS: &[&str] = &["FirstName", "MiddleName", "LastName", "Suffix"];

/// UUID namespace for message ids (a random v4, fixed forever: changing it would re-send
/// every record as new).
const MESSAGE_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_3c2a_9b7e_4c5d_8a41_2f0e_d3b6_9c17);

/// Why a record was not mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("the record is not a JSON object")]
    NotAnObject,
    #[error("the record has no Id")]
    MissingRecordId,
    #[error("identifier field {field} is missing, null or empty")]
    MissingIdentifier { field: String },
    #[error("field {field} is missing or null")]
    MissingField { field: String },
    #[error("field {field} should be {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field {field} is not a valid date or datetime: {value:?}")]
    InvalidDate { field: String, value: String },
    #[error("event name field {field} is missing, null or empty")]
    MissingEventName { field: String },
    #[error("deleted record, and the sync does not propagate deletes")]
    DeletedWithoutDeletes,
    #[error(
        "neither SystemModstamp nor LastModifiedDate has a value, so the record version \
         (timestamp and messageId) is unknown: include SystemModstamp (or LastModifiedDate) \
         in the records"
    )]
    MissingRecordVersion,
    #[error(
        "record merged into {master} in Salesforce, but the sync identifies records by \
         {field}, not Id, so the surviving identity is unknown: not deleted, not merged"
    )]
    MergeNeedsRecordIds { field: String, master: String },
}

impl SkipReason {
    /// A short stable code, for counting and for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotAnObject => "not_an_object",
            SkipReason::MissingRecordId => "missing_record_id",
            SkipReason::MissingIdentifier { .. } => "missing_identifier",
            SkipReason::MissingField { .. } => "missing_field",
            SkipReason::WrongType { .. } => "wrong_type",
            SkipReason::InvalidDate { .. } => "invalid_date",
            SkipReason::MissingEventName { .. } => "missing_event_name",
            SkipReason::DeletedWithoutDeletes => "deleted_without_deletes",
            SkipReason::MissingRecordVersion => "missing_record_version",
            SkipReason::MergeNeedsRecordIds { .. } => "merge_needs_record_ids",
        }
    }

    /// True when the sync's own rules leave the record out (a deleted record in a sync
    /// without `deletes`; a record without the identifier the sync keys on, such as a Task
    /// on an account only), as opposed to a data problem (bad date, wrong type, no Id).
    pub fn is_deliberate(&self) -> bool {
        matches!(
            self,
            SkipReason::DeletedWithoutDeletes | SkipReason::MissingIdentifier { .. }
        )
    }
}

/// A record that was not mapped, with its Id when it had one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {}: {reason}", record_id.as_deref().unwrap_or("(no Id)"))]
pub struct Skip {
    pub record_id: Option<String>,
    pub reason: SkipReason,
}

/// The deterministic message id of one record version's call: a UUID v5 (36 characters,
/// so it also serves as Mixpanel's `$insert_id` and Amplitude's `insert_id`).
pub fn message_id(sync: &str, record_id: &str, modstamp_millis: i64, call: CallType) -> String {
    use std::io::Write as _;
    let mut name = Vec::with_capacity(sync.len() + record_id.len() + 40);
    for part in [sync.as_bytes(), record_id.as_bytes()] {
        name.extend_from_slice(part);
        name.push(0x1f);
    }
    // Written in place (no String for the number); a Vec never refuses a write.
    let _ = write!(name, "{modstamp_millis}");
    name.push(0x1f);
    name.extend_from_slice(call.as_str().as_bytes());
    name.push(0x1f);
    hyphenated(Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &name))
}

/// The deterministic message id of a `merge` of `previous_id` into `surviving_id`: the same
/// conversion or merge always gets the same id, whatever version of the record carried it,
/// so re-sending it is harmless.
pub fn merge_message_id(sync: &str, previous_id: &str, surviving_id: &str) -> String {
    let mut name = Vec::with_capacity(sync.len() + previous_id.len() + surviving_id.len() + 8);
    for part in [
        sync.as_bytes(),
        CallType::Merge.as_str().as_bytes(),
        previous_id.as_bytes(),
        surviving_id.as_bytes(),
    ] {
        name.extend_from_slice(part);
        name.push(0x1f);
    }
    hyphenated(Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &name))
}

/// The usual 36-character lowercase form of `id`, written straight into its `String` (the
/// `Display` route through the formatter costs more, on every call).
fn hyphenated(id: Uuid) -> String {
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// The `anonymousId` of a call about an object with no related user:
/// `sfsync-object-<object_type_id>-<groupId>` (e.g. `sfsync-object-1-001A000000Abc`). Stable
/// (the same object always gets the same id, so downstream sees one anonymous profile per
/// object) and unique across object types (two types may share an id value).
pub fn anonymous_object_id(object_type_id: &str, group_id: &str) -> String {
    format!("sfsync-object-{object_type_id}-{group_id}")
}

/// Maps one record of `sync`, given as a `Value` (tests, and records built in memory).
pub fn map_record(sync: &SyncConfig, record: Value) -> Result<Call, Skip> {
    map_raw(sync, &Record::from_value(&record))
}

/// Maps one record of `sync` from its JSON text: the hot path. The selected fields' text
/// goes into the call as it is (see [`crate::record`]).
pub fn map_raw(sync: &SyncConfig, record: &Record) -> Result<Call, Skip> {
    let Some(record) = record.fields() else {
        return Err(Skip {
            record_id: None,
            reason: SkipReason::NotAnObject,
        });
    };
    let record_id = match record.get_exact("Id").and_then(as_str) {
        Some(id) if !id.is_empty() => id.into_owned(),
        _ => {
            return Err(Skip {
                record_id: None,
                reason: SkipReason::MissingRecordId,
            });
        }
    };
    let skip = |reason| Skip {
        record_id: Some(record_id.clone()),
        reason,
    };
    let Some(version) = version_field(&record) else {
        return Err(skip(SkipReason::MissingRecordVersion));
    };
    let modstamp = datetime(&record, version.name()).map_err(skip)?;
    let deleted = record.get_exact("IsDeleted").is_some_and(is_true);

    let call_type = match (deleted, sync.kind) {
        (true, _) => CallType::Delete,
        (false, SyncKind::People) => CallType::Identify,
        (false, SyncKind::Events) => CallType::Track,
        (false, SyncKind::Objects | SyncKind::Relationships) => CallType::Group,
    };
    let mut call = Call {
        call_type,
        message_id: message_id(
            &sync.name,
            &record_id,
            modstamp.timestamp_millis(),
            call_type,
        ),
        timestamp: format_rfc3339(modstamp),
        user_id: None,
        previous_id: None,
        anonymous_id: None,
        group_id: None,
        event: None,
        traits: None,
        properties: None,
        entity: None,
        merge_cause: None,
        object_type_id: None,
        context: Context {
            sfsync: Source {
                sync: sync.name.clone(),
                object: sync.object.clone(),
                kind: sync.kind,
                record_id: record_id.clone(),
            },
        },
    };

    let merged_into = if deleted && sync.follows_merges() {
        optional_id(&record, "MasterRecordId").map_err(skip)?
    } else {
        None
    };
    if let Some(master) = merged_into {
        if !sync.identified_by_record_id() {
            let field = match sync.kind {
                SyncKind::Objects => sync.group_id.clone(),
                _ => sync.user_id.clone(),
            };
            return Err(skip(SkipReason::MergeNeedsRecordIds {
                field: field.unwrap_or_default(),
                master,
            }));
        }
        into_merge(
            sync,
            &mut call,
            record_id.clone(),
            master,
            MergeCause::Merge,
        );
        name_anonymous_object(sync, &mut call);
        return Ok(call);
    }
    if !deleted
        && sync.converts_leads()
        && record.lookup("IsConverted").is_some_and(is_true)
        && let Some(contact) = optional_id(&record, "ConvertedContactId").map_err(skip)?
    {
        into_merge(
            sync,
            &mut call,
            record_id.clone(),
            contact,
            MergeCause::Conversion,
        );
        return Ok(call);
    }

    if deleted {
        if !sync.deletes {
            return Err(skip(SkipReason::DeletedWithoutDeletes));
        }
        fill_delete(sync, &record, &mut call).map_err(skip)?;
        name_anonymous_object(sync, &mut call);
        return Ok(call);
    }

    match sync.kind {
        SyncKind::People => {
            call.user_id = Some(required_id(&record, sync.user_id.as_deref()).map_err(skip)?);
            call.traits = Some(people_traits(sync, &record).map_err(skip)?.build());
        }
        SyncKind::Events => {
            call.user_id = Some(required_id(&record, sync.user_id.as_deref()).map_err(skip)?);
            call.event = Some(event_name(sync, &record).map_err(skip)?);
            let field = sync.timestamp_field();
            let at = match record.lookup(field) {
                Some(raw) if kind(raw) == Kind::String => {
                    let s = as_str(raw).unwrap_or_default();
                    parse_date_or_datetime(&s).map_err(|_| SkipReason::InvalidDate {
                        field: field.to_string(),
                        value: s.into_owned(),
                    })
                }
                Some(raw) if kind(raw) == Kind::Null => Err(SkipReason::MissingField {
                    field: field.to_string(),
                }),
                None => Err(SkipReason::MissingField {
                    field: field.to_string(),
                }),
                Some(other) => Err(wrong_type(field, "a date string", other)),
            }
            .map_err(skip)?;
            call.timestamp = format_rfc3339(at);
            call.properties = Some(selected_fields(sync, &record, &[]).build());
        }
        SyncKind::Objects => {
            call.group_id = Some(required_id(&record, sync.group_id.as_deref()).map_err(skip)?);
            if let Some(field) = sync.user_id.as_deref() {
                // The related record (e.g. OwnerId) is optional: a null one just leaves
                // the call without a user.
                call.user_id = optional_id(&record, field).map_err(skip)?;
            }
            let mut traits = selected_fields(sync, &record, OBJECT_RESERVED);
            traits.value(
                "object_type_id",
                Value::String(sync.object_type_id.clone().unwrap_or_default()),
            );
            call.traits = Some(traits.build());
        }
        SyncKind::Relationships => {
            call.user_id = Some(required_id(&record, sync.user_id.as_deref()).map_err(skip)?);
            call.group_id = Some(required_id(&record, sync.group_id.as_deref()).map_err(skip)?);
            let attributes = selected_fields(sync, &record, &[]).build();
            let mut traits = ObjectBuilder::with_capacity(2);
            traits.value(
                "object_type_id",
                Value::String(sync.object_type_id.clone().unwrap_or_default()),
            );
            traits.object("relationshipAttributes", attributes);
            call.traits = Some(traits.build());
        }
    }
    name_anonymous_object(sync, &mut call);
    Ok(call)
}

/// Turns `call` into a `merge` of `previous` into `surviving` (rules 2 and 3).
fn into_merge(
    sync: &SyncConfig,
    call: &mut Call,
    previous: String,
    surviving: String,
    cause: MergeCause,
) {
    call.call_type = CallType::Merge;
    call.message_id = merge_message_id(&sync.name, &previous, &surviving);
    call.merge_cause = Some(cause);
    if sync.kind == SyncKind::Objects {
        call.entity = Some(Entity::Object);
        call.group_id = Some(surviving);
        call.object_type_id = sync.object_type_id.clone();
    } else {
        call.entity = Some(Entity::Person);
        call.user_id = Some(surviving);
    }
    call.previous_id = Some(previous);
}

/// Rule 6: an object call without a user gets the object's stable anonymousId.
fn name_anonymous_object(sync: &SyncConfig, call: &mut Call) {
    if sync.kind == SyncKind::Objects
        && call.user_id.is_none()
        && let Some(group_id) = call.group_id.as_deref()
    {
        let object_type = sync.object_type_id.as_deref().unwrap_or_default();
        call.anonymous_id = Some(anonymous_object_id(object_type, group_id));
    }
}

fn fill_delete(sync: &SyncConfig, record: &Fields<'_>, call: &mut Call) -> Result<(), SkipReason> {
    match sync.kind {
        SyncKind::People => {
            call.entity = Some(Entity::Person);
            call.user_id = Some(required_id(record, sync.user_id.as_deref())?);
        }
        SyncKind::Objects => {
            call.entity = Some(Entity::Object);
            call.group_id = Some(required_id(record, sync.group_id.as_deref())?);
            call.object_type_id = sync.object_type_id.clone();
        }
        SyncKind::Relationships => {
            call.entity = Some(Entity::Relationship);
            call.user_id = Some(required_id(record, sync.user_id.as_deref())?);
            call.group_id = Some(required_id(record, sync.group_id.as_deref())?);
            call.object_type_id = sync.object_type_id.clone();
        }
        // Validation forbids `deletes` on events; a hand-built config still must not panic.
        SyncKind::Events => return Err(SkipReason::DeletedWithoutDeletes),
    }
    Ok(())
}

fn people_traits<'a>(
    sync: &SyncConfig,
    record: &Fields<'a>,
) -> Result<ObjectBuilder<'a>, SkipReason> {
    let created_at = if has_field(sync, "CreatedDate") {
        match record.lookup("CreatedDate") {
            Some(raw) if kind(raw) == Kind::String => {
                let s = as_str(raw).unwrap_or_default();
                Some(Value::from(
                    parse_salesforce_datetime(&s)
                        .map_err(|_| SkipReason::InvalidDate {
                            field: "CreatedDate".into(),
                            value: s.into_owned(),
                        })?
                        .timestamp(),
                ))
            }
            Some(raw) if kind(raw) == Kind::Null => Some(Value::Null),
            None => None,
            Some(other) => return Err(wrong_type("CreatedDate", "a datetime string", other)),
        }
    } else {
        None
    };
    let composed_name = if has_field(sync, "Name") {
        None
    } else {
        composed_name(sync, record)
    };
    let mut traits = selected_fields(sync, record, PEOPLE_RESERVED);
    if let Some(created_at) = created_at {
        traits.value("created_at", created_at);
    }
    if let Some(name) = composed_name {
        traits.value("name", Value::String(name));
    }
    Ok(traits)
}

/// FirstName MiddleName LastName Suffix, of those selected and present, joined by spaces.
fn composed_name(sync: &SyncConfig, record: &Fields<'_>) -> Option<String> {
    let parts: Vec<String> = NAME_PARTS
        .iter()
        .filter(|part| has_field(sync, part))
        .filter_map(|part| {
            let s = as_str(record.lookup(part)?)?;
            let trimmed = s.trim();
            (!trimmed.is_empty()).then(|| trimmed.to_string())
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The selected fields, renamed where `reserved` says so, as the members of the traits or
/// properties the caller completes with its own (created_at, name, object_type_id) and
/// builds. This is the hot path: each selected field's JSON text goes into the call as it
/// came (in serde_json's form: see [`crate::record::write_canonical`]), nothing is built
/// into a tree, and a string value is not even decoded. Measured with the floor benchmark
/// (`tests/benches/floor.rs`, docs/benchmarks.md).
///
/// Which record key a field takes: its exact spelling, else the key that matches it
/// ignoring ASCII case (Salesforce answers in canonical casing whatever the SOQL said; of
/// several, the least in byte order); the trait keeps the record's own spelling unless
/// `reserved` renames it. Validation rejects a field listed twice in any casing, so a key
/// is taken by at most one field. A parent path (`Account.Name`) keeps its dotted name. A
/// selected nested object (a compound address) loses Salesforce's `attributes`. A field
/// the record does not have (`MiddleName` in an org without it) is left out rather than
/// sent as a null, which would clear it downstream.
fn selected_fields<'a>(
    sync: &SyncConfig,
    record: &Fields<'a>,
    reserved: &[(&str, &'static str)],
) -> ObjectBuilder<'a> {
    // Room for the caller's own members (created_at, name, object_type_id).
    let mut members = ObjectBuilder::with_capacity(sync.fields.len() + 2);
    // The record keys of fields whose own spelling is not a key but another casing is.
    let mut recased: Vec<&str> = Vec::new();
    for field in &sync.fields {
        if field.contains('.') {
            if let Some(value) = record.lookup(field) {
                members.raw(field.clone(), value, false);
            }
        } else if let Some(key) = record.recased_key(field) {
            recased.push(key);
        }
    }
    for (key, value) in record.iter_named() {
        let key_text: &str = &key;
        let selected = sync
            .fields
            .iter()
            .any(|f| f == key_text && !f.contains('.'))
            || recased.contains(&key_text);
        if !selected {
            continue;
        }
        let name = match reserved.iter().find(|(sf, _)| *sf == key_text) {
            Some((_, trait_name)) => std::borrow::Cow::Borrowed(*trait_name),
            None => key,
        };
        members.raw(name, value, true);
    }
    members
}

fn has_field(sync: &SyncConfig, name: &str) -> bool {
    sync.fields.iter().any(|f| f.eq_ignore_ascii_case(name))
}

fn datetime(record: &Fields<'_>, field: &str) -> Result<chrono::DateTime<chrono::Utc>, SkipReason> {
    match record.lookup(field) {
        Some(raw) if kind(raw) == Kind::String => {
            let s = as_str(raw).unwrap_or_default();
            parse_salesforce_datetime(&s).map_err(|_| SkipReason::InvalidDate {
                field: field.to_string(),
                value: s.into_owned(),
            })
        }
        Some(raw) if kind(raw) != Kind::Null => Err(wrong_type(field, "a datetime string", raw)),
        _ => Err(SkipReason::MissingField {
            field: field.to_string(),
        }),
    }
}

/// An identifier that must be there. Numbers are accepted (numeric external ids) and
/// written as strings.
fn required_id(record: &Fields<'_>, field: Option<&str>) -> Result<String, SkipReason> {
    let field = field.unwrap_or("Id");
    optional_id(record, field)?.ok_or_else(|| SkipReason::MissingIdentifier {
        field: field.to_string(),
    })
}

fn optional_id(record: &Fields<'_>, field: &str) -> Result<Option<String>, SkipReason> {
    let Some(raw) = record.lookup(field) else {
        return Ok(None);
    };
    match kind(raw) {
        Kind::String => Ok(as_str(raw)
            .filter(|s| !s.trim().is_empty())
            .map(std::borrow::Cow::into_owned)),
        // Written as serde_json writes the number it reads (`1.0` stays `1.0`).
        Kind::Number => Ok(serde_json::from_str::<serde_json::Number>(raw.get())
            .ok()
            .map(|n| n.to_string())),
        Kind::Null => Ok(None),
        _ => Err(wrong_type(field, "a string or number", raw)),
    }
}

fn event_name(sync: &SyncConfig, record: &Fields<'_>) -> Result<String, SkipReason> {
    if let Some(name) = &sync.event {
        return Ok(name.clone());
    }
    let field = sync.event_field.as_deref().unwrap_or("Subject");
    let missing = || SkipReason::MissingEventName {
        field: field.to_string(),
    };
    let Some(raw) = record.lookup(field) else {
        return Err(missing());
    };
    match kind(raw) {
        Kind::String => as_str(raw)
            .filter(|s| !s.trim().is_empty())
            .map(std::borrow::Cow::into_owned)
            .ok_or_else(missing),
        Kind::Null => Err(missing()),
        _ => Err(wrong_type(field, "a string", raw)),
    }
}

fn wrong_type(field: &str, expected: &'static str, found: &RawValue) -> SkipReason {
    SkipReason::WrongType {
        field: field.to_string(),
        expected,
        found: kind(found).described(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, json};

    static NULL: Value = Value::Null;

    /// How a field or parent path was looked up in a record parsed into a `Value`, before
    /// records were read as text.
    fn lookup<'r>(record: &'r Map<String, Value>, path: &str) -> Option<&'r Value> {
        let mut current = record;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let value = current.get(part).or_else(|| {
                current
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(part))
                    .map(|(_, v)| v)
            })?;
            if parts.peek().is_none() {
                return Some(value);
            }
            match value {
                Value::Object(map) => current = map,
                Value::Null => return Some(&NULL),
                _ => return None,
            }
        }
        None
    }

    /// How the selected fields were taken when records were `Value`s (each removed from the
    /// record and inserted into a new map, in the order of `fields`): the reference that
    /// taking them from the record's text must agree with.
    fn selected_fields_by_moving(
        sync: &SyncConfig,
        record: &mut Map<String, Value>,
        reserved: &[(&str, &str)],
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for field in &sync.fields {
            if field.contains('.') {
                if let Some(value) = lookup(record, field) {
                    out.insert(field.clone(), value.clone());
                }
                continue;
            }
            let taken = record.remove_entry(field.as_str()).or_else(|| {
                let key = record
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(field))?
                    .clone();
                record.remove(&key).map(|v| (key, v))
            });
            let Some((key, value)) = taken else { continue };
            let name = reserved
                .iter()
                .find(|(sf, _)| *sf == key)
                .map(|(_, t)| (*t).to_string())
                .unwrap_or(key);
            let value = match value {
                Value::Object(mut map) => {
                    map.remove("attributes");
                    Value::Object(map)
                }
                other => other,
            };
            out.insert(name, value);
        }
        out
    }

    fn sync_selecting(fields: &[&str]) -> SyncConfig {
        let text = format!(
            "[salesforce]\nlogin_url = \"https://acme.my.salesforce.com\"\n\
             auth = \"client_credentials\"\nclient_id = \"x\"\nclient_secret = \"y\"\n\
             [[syncs]]\nname = \"s\"\nobject = \"Contact\"\nkind = \"people\"\n\
             user_id = \"Id\"\nfields = {fields:?}\n"
        );
        let config = crate::Config::parse(&text).expect("a valid config");
        config.syncs.into_iter().next().expect("one sync")
    }

    /// Record keys: the fields' canonical spellings, other casings of them, Salesforce's
    /// `attributes`, the version fields, a parent object and noise.
    fn record_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Email".to_string()),
            Just("email".to_string()),
            Just("EMAIL".to_string()),
            Just("FirstName".to_string()),
            Just("firstname".to_string()),
            Just("Name".to_string()),
            Just("Title".to_string()),
            Just("MailingAddress".to_string()),
            Just("Custom__c".to_string()),
            Just("custom__C".to_string()),
            Just("attributes".to_string()),
            Just("Id".to_string()),
            Just("SystemModstamp".to_string()),
            "[A-Za-z]{1,6}",
        ]
    }

    fn record_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z ]{0,6}".prop_map(Value::String),
            Just(json!({"attributes": {"type": "Address"}, "city": "Paris"})),
            Just(json!({"city": "Lyon", "street": null})),
        ]
    }

    fn any_record() -> impl Strategy<Value = Map<String, Value>> {
        let parent = prop_oneof![
            Just(Value::Null),
            Just(json!({"attributes": {"type": "Account"}, "Name": "Acme"})),
            Just(json!({"name": "lower", "Owner": {"attributes": {}, "Email": "o@x"}})),
            Just(json!("not an object")),
        ];
        (
            proptest::collection::btree_map(record_key(), record_value(), 0..12),
            proptest::option::of(parent),
        )
            .prop_map(|(fields, parent)| {
                let mut record: Map<String, Value> = fields.into_iter().collect();
                if let Some(parent) = parent {
                    record.insert("Account".into(), parent);
                }
                record
            })
    }

    /// Field lists as a sync may select them (no field twice in any casing, as validation
    /// requires, and no parent object selected beside its own paths).
    const FIELD_LISTS: &[&[&str]] = &[
        &[
            "Email",
            "FirstName",
            "Name",
            "Title",
            "MailingAddress",
            "Account.Name",
        ],
        &[
            "email",
            "FIRSTNAME",
            "Custom__c",
            "Account.Owner.Email",
            "Account.name",
        ],
        &["Title", "Id", "attributes", "MiddleName", "Account.Owner"],
        &["Custom__C", "EMAIL", "Phone", "SystemModstamp"],
    ];

    /// `value` as another JSON writer might send it: keys in reverse order, spaces, and
    /// every letter `e` and every `/` of a string escaped (`\u0065`, `\/`), numbers with
    /// a trailing `.0` where they are whole, as Salesforce writes currency fields.
    fn written_otherwise(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let members: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(k, v)| {
                        format!(
                            "{} : {}",
                            written_otherwise(&json!(k)),
                            written_otherwise(v)
                        )
                    })
                    .collect();
                format!("{{ {} }}", members.join(" , "))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(written_otherwise).collect();
                format!("[ {} ]", items.join(", "))
            }
            Value::String(s) => {
                let plain = serde_json::to_string(s).expect("writes");
                plain.replace('e', "\\u0065").replace('/', "\\/")
            }
            Value::Number(n) if n.is_i64() => format!("{n}.0"),
            other => other.to_string(),
        }
    }

    proptest! {
        #[test]
        fn taking_the_fields_from_the_records_text_agrees_with_moving_each_field(
            record in any_record(),
            list in 0..FIELD_LISTS.len(),
            people in any::<bool>(),
            other_writer in any::<bool>(),
        ) {
            let sync = sync_selecting(FIELD_LISTS[list]);
            let reserved = if people { PEOPLE_RESERVED } else { OBJECT_RESERVED };
            let expected = selected_fields_by_moving(&sync, &mut record.clone(), reserved);
            // A number written `1.0` is the float 1.0 to a parser: the reference reads it so.
            let (text, expected) = if other_writer {
                let text = written_otherwise(&Value::Object(record.clone()));
                let reread: Map<String, Value> = serde_json::from_str(&text).expect("valid JSON");
                (text, selected_fields_by_moving(&sync, &mut reread.clone(), reserved))
            } else {
                (serde_json::to_string(&record).expect("writes"), expected)
            };
            let raw = RawValue::from_string(text).expect("valid JSON");
            let record = Record::from_raw(raw).expect("valid JSON");
            let fields = record.fields().expect("an object");
            let actual = selected_fields(&sync, &fields, reserved).build();
            let expected = crate::JsonObject::from_map(&expected);
            prop_assert_eq!(actual.json(), expected.json());
        }
    }

    /// The messageId algorithm is fixed forever (a change would re-send every record as new):
    /// these ids were computed independently (Python's `uuid.uuid5` over the same name bytes).
    #[test]
    fn message_ids_are_pinned_to_their_uuid_v5_over_sync_id_millis_and_type() {
        assert_eq!(
            message_id(
                "contacts",
                "003000000000001AAA",
                1_764_720_000_123,
                CallType::Identify
            ),
            "e9cdc779-3002-5ace-8e07-57c077dda097"
        );
        assert_eq!(
            message_id("contacts", "003000000000001AAA", -5, CallType::Delete),
            "acdb5d55-0761-569c-9262-6d069e8e6619"
        );
    }
}
