//! Properties of the mapping that must hold for any input at all: `map_record` never panics,
//! answers a call or a typed skip, and a call always serializes with a 36-character
//! deterministic `messageId`. Also: `Config::parse` never panics, and huge values map whole.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};
use sfsync_mapping::config::ExtractApi;
use sfsync_mapping::time::parse_salesforce_datetime;
use sfsync_mapping::{
    Call, CallType, Config, SkipReason, SyncConfig, SyncKind, map_record, message_id,
};

/// Strings that look like what Salesforce sends, and the near misses.
fn plausible_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   ".to_string()),
        // Datetimes in every form Salesforce writes, anywhere from 1970 to 2100.
        (0i64..4_102_444_800_000, 0usize..4).prop_map(|(ms, form)| {
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            match form {
                0 => t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
                1 => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                2 => t.format("%Y-%m-%d").to_string(),
                _ => t.format("%Y-%m-%dT%H:%M:%S+02:00").to_string(),
            }
        }),
        // Dates that are not dates.
        "[0-9]{4}-[0-9]{2}-[0-9]{2}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([+-][0-9]{4}|Z)?",
        Just("9999-12-31T23:59:59.999+0000".to_string()),
        Just("0000-01-01T00:00:00.000+0000".to_string()),
        Just("+275760-09-13T00:00:00.000Z".to_string()),
        Just("2024-02-30".to_string()),
        // Ids, and arbitrary text (any Unicode, controls included).
        "00[0-9A-Za-z]{13,16}",
        ".{0,40}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        plausible_string().prop_map(Value::String),
    ]
}

/// Keys nested objects are made of: the ones the mapping looks for, and any others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Name".to_string()),
        Just("name".to_string()),
        Just("attributes".to_string()),
        Just("Id".to_string()),
        Just("Email".to_string()),
        Just("Owner".to_string()),
        ".{0,8}",
    ]
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A parent relationship as Salesforce nests it, or anything else in its place.
fn parent() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (leaf(), option::of(leaf()), option::of(any_json())).prop_map(|(name, email, owner)| {
            let mut m = Map::new();
            m.insert("attributes".into(), json!({"type": "Account", "url": "/x"}));
            m.insert("Name".into(), name);
            if let Some(e) = email {
                m.insert("Email".into(), e);
            }
            if let Some(o) = owner {
                m.insert("Owner".into(), o);
            }
            Value::Object(m)
        }),
        any_json(),
    ]
}

/// The fields a record may carry: every one the syncs below read, plus noise.
const FIELDS: &[&str] = &[
    "Id",
    "SystemModstamp",
    "IsDeleted",
    "WhoId",
    "ContactId",
    "AccountId",
    "OwnerId",
    "Subject",
    "CreatedDate",
    "ActivityDate",
    "Email",
    "email",
    "FirstName",
    "MiddleName",
    "LastName",
    "Suffix",
    "Name",
    "Description",
    "Phone",
    "MailingAddress",
    "attributes",
];

/// A value for a field: mostly plausible, sometimes anything.
fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => plausible_string().prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => any_json(),
    ]
}

/// A record: each known field present (with any value) or absent, a parent, extra keys.
fn record() -> impl Strategy<Value = Value> {
    (
        vec(option::weighted(0.75, field_value()), FIELDS.len()),
        option::weighted(0.6, parent()),
        btree_map(".{0,12}", any_json(), 0..3),
    )
        .prop_map(|(values, account, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (name, value) in FIELDS.iter().zip(values) {
                if let Some(v) = value {
                    m.insert((*name).to_string(), v);
                }
            }
            if let Some(a) = account {
                m.insert("Account".into(), a);
            }
            Value::Object(m)
        })
}

const SELECTABLE: &[&str] = &[
    "Email",
    "FirstName",
    "MiddleName",
    "LastName",
    "Suffix",
    "Name",
    "CreatedDate",
    "Description",
    "Phone",
    "MailingAddress",
    "Subject",
    "Account.Name",
    "Account.Owner.Email",
    "Account.Owner.Name",
];

fn base(name: &str, object: &str, kind: SyncKind, fields: &[&str], deletes: bool) -> SyncConfig {
    SyncConfig {
        name: name.to_string(),
        object: object.to_string(),
        kind,
        user_id: None,
        group_id: None,
        object_type_id: None,
        event: None,
        event_field: None,
        timestamp_field: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        where_clause: None,
        deletes,
        api: ExtractApi::Auto,
        stream: false,
        conversions: None,
    }
}

/// Every kind, with and without deletes, both ways of naming an event, and the optional
/// identifiers set and unset. (Deletes on events is refused by validation; a hand-built
/// config with it still must not panic.)
fn syncs(fields: &[&str]) -> Vec<SyncConfig> {
    let mut out = Vec::new();
    for deletes in [false, true] {
        out.push(SyncConfig {
            user_id: Some("Id".into()),
            ..base("people", "Contact", SyncKind::People, fields, deletes)
        });
        out.push(SyncConfig {
            user_id: Some("Account.Owner.Email".into()),
            ..base(
                "people-by-owner",
                "Contact",
                SyncKind::People,
                fields,
                deletes,
            )
        });
        out.push(SyncConfig {
            user_id: Some("WhoId".into()),
            event: Some("Task Logged".into()),
            ..base("tasks", "Task", SyncKind::Events, fields, deletes)
        });
        out.push(SyncConfig {
            user_id: Some("WhoId".into()),
            event_field: Some("Subject".into()),
            timestamp_field: Some("ActivityDate".into()),
            ..base(
                "tasks-by-subject",
                "Task",
                SyncKind::Events,
                fields,
                deletes,
            )
        });
        out.push(SyncConfig {
            group_id: Some("Id".into()),
            object_type_id: Some("1".into()),
            ..base("accounts", "Account", SyncKind::Objects, fields, deletes)
        });
        out.push(SyncConfig {
            group_id: Some("Id".into()),
            object_type_id: Some("1".into()),
            user_id: Some("OwnerId".into()),
            ..base(
                "accounts-owned",
                "Account",
                SyncKind::Objects,
                fields,
                deletes,
            )
        });
        out.push(SyncConfig {
            user_id: Some("ContactId".into()),
            group_id: Some("AccountId".into()),
            object_type_id: Some("2".into()),
            ..base(
                "relations",
                "AccountContactRelation",
                SyncKind::Relationships,
                fields,
                deletes,
            )
        });
    }
    out
}

/// What every answer of `map_record` must satisfy, whatever the input.
fn check(sync: &SyncConfig, input: &Value) -> Result<(), TestCaseError> {
    let first = map_record(sync, input.clone());
    // Pure: the same input gives the same answer.
    prop_assert_eq!(&first, &map_record(sync, input.clone()));
    let id = match input.get("Id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match first {
        Ok(call) => {
            let id = id.ok_or_else(|| TestCaseError::fail("a call from a record without Id"))?;
            let text = serde_json::to_string(&call)
                .map_err(|e| TestCaseError::fail(format!("call does not serialize: {e}")))?;
            let back: Call = serde_json::from_str(&text)
                .map_err(|e| TestCaseError::fail(format!("call does not read back: {e}")))?;
            // Equal but for floats: serde_json parses some (1e72 and the like) one ULP off.
            prop_assert_eq!(
                (
                    &back.call_type,
                    &back.message_id,
                    &back.timestamp,
                    &back.user_id,
                    &back.group_id
                ),
                (
                    &call.call_type,
                    &call.message_id,
                    &call.timestamp,
                    &call.user_id,
                    &call.group_id
                )
            );
            prop_assert_eq!((&back.event, &back.context), (&call.event, &call.context));
            let keys = |m: &Option<sfsync_mapping::JsonObject>| {
                m.as_ref()
                    .map(|m| m.to_map().keys().cloned().collect::<Vec<_>>())
            };
            prop_assert_eq!(keys(&back.traits), keys(&call.traits));
            prop_assert_eq!(keys(&back.properties), keys(&call.properties));
            prop_assert_eq!(call.message_id.len(), 36);
            prop_assert_eq!(
                call.message_id
                    .char_indices()
                    .filter(|(_, c)| *c == '-')
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>(),
                vec![8, 13, 18, 23]
            );
            // Deterministic from (sync, Id, SystemModstamp, type).
            let modstamp = input
                .get("SystemModstamp")
                .and_then(Value::as_str)
                .and_then(|s| parse_salesforce_datetime(s).ok())
                .ok_or_else(|| TestCaseError::fail("a call without a valid SystemModstamp"))?;
            prop_assert_eq!(
                &call.message_id,
                &message_id(&sync.name, &id, modstamp.timestamp_millis(), call.call_type)
            );
            prop_assert_eq!(&call.context.sfsync.record_id, &id);
            prop_assert_eq!(&call.context.sfsync.sync, &sync.name);
            prop_assert!(call.timestamp.ends_with('Z'), "{}", call.timestamp);
            let deleted = input.get("IsDeleted") == Some(&Value::Bool(true));
            prop_assert_eq!(call.call_type == CallType::Delete, deleted);
            if deleted {
                prop_assert!(sync.deletes);
            }
            match (call.call_type, sync.kind) {
                (CallType::Identify, SyncKind::People) => {
                    prop_assert!(
                        call.user_id
                            .as_deref()
                            .is_some_and(|u| !u.trim().is_empty())
                    );
                    prop_assert!(call.traits.is_some());
                }
                (CallType::Track, SyncKind::Events) => {
                    prop_assert!(call.user_id.is_some());
                    prop_assert!(call.event.as_deref().is_some_and(|e| !e.trim().is_empty()));
                    prop_assert!(call.properties.is_some());
                }
                (CallType::Group, SyncKind::Objects | SyncKind::Relationships) => {
                    prop_assert!(
                        call.group_id
                            .as_deref()
                            .is_some_and(|g| !g.trim().is_empty())
                    );
                    prop_assert!(call.object_type().is_some());
                }
                (CallType::Delete, _) => prop_assert!(call.entity.is_some()),
                (t, k) => prop_assert!(false, "{t:?} call from a {k:?} sync"),
            }
            // Salesforce's `attributes` never leave, at the top level of what is sent.
            for map in [&call.traits, &call.properties].into_iter().flatten() {
                prop_assert!(!map.to_map().contains_key("attributes"));
            }
        }
        Err(skip) => {
            prop_assert!(!skip.reason.code().is_empty());
            prop_assert!(!skip.to_string().is_empty());
            match id {
                Some(id) => prop_assert_eq!(skip.record_id.as_deref(), Some(id.as_str())),
                None => {
                    prop_assert!(skip.record_id.is_none());
                    prop_assert!(matches!(
                        skip.reason,
                        SkipReason::MissingRecordId | SkipReason::NotAnObject
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Where failing cases are saved, next to this file, and replayed first on every run
/// (checked in: a failure found once is tried again forever).
const REGRESSIONS: &str = "proptest-regressions";

#[test]
fn the_saved_regressions_are_where_proptest_reads_them() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/properties")
        .with_extension(REGRESSIONS);
    assert!(path.is_file(), "{} is missing", path.display());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(REGRESSIONS))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_record_maps_to_a_call_or_a_typed_skip(
        input in record(),
        fields in subsequence(SELECTABLE, 0..=SELECTABLE.len()),
    ) {
        for sync in syncs(SELECTABLE).iter().chain(syncs(&fields).iter()) {
            check(sync, &input)?;
        }
    }

    #[test]
    fn any_json_value_at_all_is_skipped_or_mapped_never_a_panic(input in any_json()) {
        for sync in syncs(SELECTABLE) {
            check(&sync, &input)?;
        }
    }

    #[test]
    fn config_parse_never_panics_on_any_text(text in ".{0,400}") {
        let _ = Config::parse(&text);
    }

    #[test]
    fn config_parse_never_panics_on_a_damaged_config(
        at in 0usize..CONFIG.len(),
        cut in 0usize..40,
        insert in prop_oneof![".{0,20}", Just("\"".to_string()), Just("[[".to_string()), Just("${".to_string()), Just("\n[[syncs]]\n".to_string())],
    ) {
        let mut text = CONFIG.to_string();
        let end = (at + cut).min(text.len());
        text.replace_range(at..end, &insert);
        match Config::parse(&text) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(!p.message.is_empty());
                    if let Some(line) = p.line {
                        prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}");
                    }
                }
            }
        }
    }
}

const CONFIG: &str = r#"[salesforce]
login_url = "https://acme.my.salesforce.com"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "Account.Name"]
deletes = true

[[syncs]]
name = "tasks"
object = "Task"
kind = "events"
user_id = "WhoId"
event_field = "Subject"

[[destinations]]
name = "seg"
type = "segment"
write_key = "${secret:seg}"
syncs = ["contacts"]
"#;

/// A valid contact record with one more field.
fn with_field(field: &str, value: Value) -> Value {
    json!({
        "attributes": {"type": "Contact"},
        "Id": "003000000000001AAA",
        "SystemModstamp": "2024-05-01T12:34:56.000+0000",
        "IsDeleted": false,
        "Email": "ada@example.com",
        field: value,
    })
}

#[test]
fn a_one_megabyte_field_value_maps_whole_and_serializes() {
    let huge: String = "é🦀x".repeat(150_000); // 1.05 MB of multi-byte text
    assert!(huge.len() > 1 << 20);
    for sync in syncs(&["Email", "Description", "Subject", "Account.Name"])
        .iter()
        .filter(|s| !s.deletes)
    {
        for field in ["Description", "Subject"] {
            let out = map_record(sync, with_field(field, Value::String(huge.clone())));
            let Ok(call) = out else { continue };
            let text = serde_json::to_string(&call).unwrap();
            assert!(text.len() > huge.len(), "{}: the value was cut", sync.name);
            let back: Call = serde_json::from_str(&text).unwrap();
            assert_eq!(back, call);
            if call.call_type != CallType::Delete {
                assert!(
                    text.contains(huge.as_str()),
                    "{}: {field} was not carried whole",
                    sync.name
                );
            }
        }
    }
    // A 1 MB Id or identifier is still one 36-character messageId.
    let long_id = "0".repeat(1 << 20);
    let sync = &syncs(&["Email"])[0];
    let call = map_record(sync, with_field("Id", Value::String(long_id.clone()))).unwrap();
    assert_eq!(call.message_id.len(), 36);
    assert_eq!(call.user_id.as_deref(), Some(long_id.as_str()));
    // A 1 MB field name passes through like any other unselected field: not at all.
    let key = "K".repeat(1 << 20);
    let call = map_record(sync, with_field(&key, json!("v"))).unwrap();
    assert!(!serde_json::to_string(&call).unwrap().contains(&key));
}
