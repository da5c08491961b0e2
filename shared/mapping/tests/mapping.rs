//! The mapping, rule by rule: every reserved trait, every kind, every skip reason.

use serde_json::{Value, json};
use sfsync_mapping::config::ExtractApi;
use sfsync_mapping::mapper::{OBJECT_RESERVED, PEOPLE_RESERVED};
use sfsync_mapping::{
    CallType, Entity, MergeCause, SkipReason, SyncConfig, SyncKind, map_record, merge_message_id,
    message_id,
};

fn sync(kind: SyncKind, fields: &[&str]) -> SyncConfig {
    SyncConfig {
        name: "s".into(),
        object: "Contact".into(),
        kind,
        user_id: None,
        group_id: None,
        object_type_id: None,
        event: None,
        event_field: None,
        timestamp_field: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        where_clause: None,
        deletes: false,
        api: ExtractApi::Auto,
        stream: false,
        conversions: None,
    }
}

fn people(fields: &[&str]) -> SyncConfig {
    SyncConfig {
        user_id: Some("Id".into()),
        ..sync(SyncKind::People, fields)
    }
}

fn objects(fields: &[&str]) -> SyncConfig {
    SyncConfig {
        object: "Account".into(),
        group_id: Some("Id".into()),
        object_type_id: Some("1".into()),
        ..sync(SyncKind::Objects, fields)
    }
}

fn relationships(fields: &[&str]) -> SyncConfig {
    SyncConfig {
        object: "AccountContactRelation".into(),
        user_id: Some("ContactId".into()),
        group_id: Some("AccountId".into()),
        object_type_id: Some("2".into()),
        ..sync(SyncKind::Relationships, fields)
    }
}

fn events() -> SyncConfig {
    SyncConfig {
        object: "Task".into(),
        user_id: Some("WhoId".into()),
        event: Some("Task Logged".into()),
        ..sync(SyncKind::Events, &["Subject", "Status"])
    }
}

/// A record in Salesforce's REST shape, with the given fields added.
fn record(extra: Value) -> Value {
    let mut base = json!({
        "attributes": {"type": "Contact", "url": "/services/data/v62.0/sobjects/Contact/003000000000001AAA"},
        "Id": "003000000000001AAA",
        "SystemModstamp": "2024-05-01T12:34:56.000+0000",
        "IsDeleted": false,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

fn traits(sync: &SyncConfig, extra: Value) -> serde_json::Map<String, Value> {
    map_record(sync, record(extra))
        .unwrap()
        .traits
        .unwrap()
        .to_map()
}

fn skip_reason(sync: &SyncConfig, rec: Value) -> SkipReason {
    map_record(sync, rec).unwrap_err().reason
}

#[test]
fn every_people_reserved_trait_is_renamed_and_the_original_dropped() {
    for (field, trait_name) in PEOPLE_RESERVED {
        let t = traits(&people(&[field]), json!({ *field: "value" }));
        assert_eq!(t.get(*trait_name), Some(&json!("value")), "{field}");
        assert!(!t.contains_key(*field), "{field} should be renamed");
    }
}

#[test]
fn people_reserved_table_is_exactly_the_specification() {
    let names: Vec<(&str, &str)> = PEOPLE_RESERVED.to_vec();
    assert_eq!(
        names,
        vec![
            ("Description", "description"),
            ("Email", "email"),
            ("FirstName", "firstName"),
            ("LastName", "lastName"),
            ("Name", "name"),
            ("Phone", "phone"),
            ("Title", "title"),
            ("Website", "website"),
        ]
    );
}

#[test]
fn every_object_reserved_trait_is_lower_cased() {
    for (field, trait_name) in OBJECT_RESERVED {
        let t = traits(&objects(&[field]), json!({ *field: "value" }));
        assert_eq!(t.get(*trait_name), Some(&json!("value")), "{field}");
        assert!(!t.contains_key(*field));
    }
    assert_eq!(
        OBJECT_RESERVED.to_vec(),
        vec![
            ("Description", "description"),
            ("Email", "email"),
            ("Name", "name"),
            ("Phone", "phone"),
        ]
    );
}

#[test]
fn objects_do_not_rename_people_only_traits() {
    let t = traits(
        &objects(&["Website", "Title", "FirstName", "CreatedDate"]),
        json!({"Website": "https://a.example", "Title": "t", "FirstName": "f", "CreatedDate": "2020-01-01T00:00:00.000+0000"}),
    );
    assert_eq!(t["Website"], json!("https://a.example"));
    assert_eq!(t["Title"], json!("t"));
    assert_eq!(t["FirstName"], json!("f"));
    assert_eq!(t["CreatedDate"], json!("2020-01-01T00:00:00.000+0000"));
    assert!(!t.contains_key("created_at"));
}

#[test]
fn created_at_is_epoch_seconds_and_created_date_stays() {
    let t = traits(
        &people(&["CreatedDate"]),
        json!({"CreatedDate": "2024-01-02T03:04:05.000+0000"}),
    );
    assert_eq!(t["created_at"], json!(1704164645));
    assert_eq!(t["CreatedDate"], json!("2024-01-02T03:04:05.000+0000"));
}

#[test]
fn created_at_null_when_created_date_null_and_absent_when_not_selected() {
    let t = traits(&people(&["CreatedDate"]), json!({"CreatedDate": null}));
    assert_eq!(t["created_at"], Value::Null);
    let t = traits(
        &people(&["Email"]),
        json!({"CreatedDate": "2024-01-02T03:04:05.000+0000", "Email": "a@b.c"}),
    );
    assert!(!t.contains_key("created_at"));
    assert!(!t.contains_key("CreatedDate"));
}

#[test]
fn name_is_composed_from_the_parts_present_when_name_is_not_selected() {
    let s = people(&["FirstName", "MiddleName", "LastName", "Suffix"]);
    let t = traits(
        &s,
        json!({"FirstName": "Ada", "MiddleName": "King", "LastName": "Lovelace", "Suffix": "III"}),
    );
    assert_eq!(t["name"], json!("Ada King Lovelace III"));
    // Missing and null parts are left out, without double spaces.
    let t = traits(
        &s,
        json!({"FirstName": "Ada", "MiddleName": null, "LastName": "Lovelace"}),
    );
    assert_eq!(t["name"], json!("Ada Lovelace"));
    let t = traits(&s, json!({"LastName": "Lovelace"}));
    assert_eq!(t["name"], json!("Lovelace"));
    // No part at all: no name.
    let t = traits(&s, json!({"FirstName": null, "LastName": ""}));
    assert!(!t.contains_key("name"));
    // The parts are still sent under their reserved names.
    let t = traits(&s, json!({"FirstName": "Ada", "LastName": "Lovelace"}));
    assert_eq!(t["firstName"], json!("Ada"));
    assert_eq!(t["lastName"], json!("Lovelace"));
}

#[test]
fn selected_name_wins_over_composition() {
    let t = traits(
        &people(&["Name", "FirstName", "LastName"]),
        json!({"Name": "Dr. Ada Lovelace", "FirstName": "Ada", "LastName": "Lovelace"}),
    );
    assert_eq!(t["name"], json!("Dr. Ada Lovelace"));
}

#[test]
fn unselected_name_parts_do_not_leak_into_name() {
    let t = traits(
        &people(&["Email"]),
        json!({"Email": "a@b.c", "FirstName": "Ada", "LastName": "Lovelace"}),
    );
    assert!(!t.contains_key("name"));
    assert!(!t.contains_key("firstName"));
}

#[test]
fn other_fields_pass_through_unchanged_including_custom_fields() {
    let t = traits(
        &people(&["Department", "Score__c", "Tags__c", "HasOptedOutOfEmail"]),
        json!({"Department": "R&D", "Score__c": 12.5, "Tags__c": "a;b;c", "HasOptedOutOfEmail": true}),
    );
    assert_eq!(t["Department"], json!("R&D"));
    assert_eq!(t["Score__c"], json!(12.5));
    assert_eq!(t["Tags__c"], json!("a;b;c"));
    assert_eq!(t["HasOptedOutOfEmail"], json!(true));
}

#[test]
fn nulls_stay_null_so_cleared_fields_clear_downstream() {
    let t = traits(
        &people(&["Email", "Phone", "Custom__c"]),
        json!({"Email": null, "Phone": null, "Custom__c": null}),
    );
    assert_eq!(t["email"], Value::Null);
    assert_eq!(t["phone"], Value::Null);
    assert_eq!(t["Custom__c"], Value::Null);
}

#[test]
fn fields_absent_from_the_record_are_left_out() {
    let t = traits(&people(&["MiddleName", "Email"]), json!({"Email": "a@b.c"}));
    assert!(!t.contains_key("MiddleName"));
    assert_eq!(t.len(), 1);
}

#[test]
fn parent_fields_are_flattened_under_their_path_without_attributes() {
    let s = people(&["Account.Name", "Account.Owner.Email"]);
    let t = traits(
        &s,
        json!({"Account": {"attributes": {"type": "Account", "url": "/x"}, "Name": "Acme",
               "Owner": {"attributes": {"type": "User"}, "Email": "o@acme.test"}}}),
    );
    assert_eq!(t["Account.Name"], json!("Acme"));
    assert_eq!(t["Account.Owner.Email"], json!("o@acme.test"));
    assert!(!t.contains_key("Account"));
    assert!(!serde_json::to_string(&t).unwrap().contains("attributes"));
}

#[test]
fn a_null_parent_clears_each_of_its_fields() {
    let t = traits(
        &people(&["Account.Name", "Account.Owner.Email"]),
        json!({"Account": null}),
    );
    assert_eq!(t["Account.Name"], Value::Null);
    assert_eq!(t["Account.Owner.Email"], Value::Null);
}

#[test]
fn compound_address_passes_through_without_attributes() {
    let address = json!({"city": "Zürich", "country": "CH", "geocodeAccuracy": null, "latitude": null,
        "longitude": null, "postalCode": "8001", "state": null, "street": "Bahnhofstrasse 1"});
    let t = traits(
        &people(&["MailingAddress"]),
        json!({"MailingAddress": address.clone()}),
    );
    assert_eq!(t["MailingAddress"], address);
    let t = traits(
        &people(&["MailingAddress"]),
        json!({"MailingAddress": null}),
    );
    assert_eq!(t["MailingAddress"], Value::Null);
}

#[test]
fn non_ascii_values_survive_untouched() {
    let t = traits(
        &people(&["FirstName", "LastName"]),
        json!({"FirstName": "Zoë", "LastName": "山田 Łukasz 🚀"}),
    );
    assert_eq!(t["firstName"], json!("Zoë"));
    assert_eq!(t["name"], json!("Zoë 山田 Łukasz 🚀"));
    let line = serde_json::to_string(&t).unwrap();
    assert!(line.contains("山田"));
}

#[test]
fn field_names_match_case_insensitively_and_keep_salesforce_casing() {
    let t = traits(
        &people(&["email", "department"]),
        json!({"Email": "a@b.c", "Department": "X"}),
    );
    assert_eq!(t["email"], json!("a@b.c"));
    assert_eq!(t["Department"], json!("X"));
}

#[test]
fn people_become_identify_calls() {
    let call = map_record(&people(&["Email"]), record(json!({"Email": "a@b.c"}))).unwrap();
    assert_eq!(call.call_type, CallType::Identify);
    assert_eq!(call.user_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(call.timestamp, "2024-05-01T12:34:56.000Z");
    assert!(call.group_id.is_none() && call.event.is_none());
    let json = serde_json::to_value(&call).unwrap();
    assert_eq!(json["type"], json!("identify"));
    assert_eq!(json["userId"], json!("003000000000001AAA"));
    assert_eq!(json["context"]["sfsync"]["sync"], json!("s"));
    assert_eq!(
        json["context"]["sfsync"]["recordId"],
        json!("003000000000001AAA")
    );
    assert!(
        json.get("groupId").is_none(),
        "absent fields are omitted, not null"
    );
}

#[test]
fn identify_can_use_another_identifier_field() {
    let s = SyncConfig {
        user_id: Some("External_Id__c".into()),
        ..people(&["Email"])
    };
    let call = map_record(&s, record(json!({"External_Id__c": "ext-9"}))).unwrap();
    assert_eq!(call.user_id.as_deref(), Some("ext-9"));
    // Numeric external ids are written as strings.
    let call = map_record(&s, record(json!({"External_Id__c": 42}))).unwrap();
    assert_eq!(call.user_id.as_deref(), Some("42"));
}

#[test]
fn events_become_track_calls_tied_to_a_person() {
    let rec = json!({"attributes": {"type": "Task"}, "Id": "00T000000000001AAA", "WhoId": "003000000000001AAA",
        "SystemModstamp": "2024-05-02T00:00:00.000+0000", "CreatedDate": "2024-05-01T08:00:00.000+0000",
        "Subject": "Call", "Status": "Completed", "IsDeleted": false});
    let call = map_record(&events(), rec.clone()).unwrap();
    assert_eq!(call.call_type, CallType::Track);
    assert_eq!(call.event.as_deref(), Some("Task Logged"));
    assert_eq!(call.user_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(
        call.timestamp, "2024-05-01T08:00:00.000Z",
        "timestamp from CreatedDate"
    );
    let props = call.properties.unwrap().to_map();
    assert_eq!(props["Subject"], json!("Call"));
    assert_eq!(props["Status"], json!("Completed"));
    assert!(call.traits.is_none());

    let by_field = SyncConfig {
        event: None,
        event_field: Some("Subject".into()),
        timestamp_field: Some("ActivityDate".into()),
        ..events()
    };
    let mut rec2 = rec;
    rec2["ActivityDate"] = json!("2024-06-30");
    let call = map_record(&by_field, rec2).unwrap();
    assert_eq!(call.event.as_deref(), Some("Call"));
    assert_eq!(call.timestamp, "2024-06-30T00:00:00.000Z");
}

#[test]
fn objects_become_group_calls_with_object_type_id() {
    let s = SyncConfig {
        user_id: Some("OwnerId".into()),
        ..objects(&["Name", "Industry"])
    };
    let rec = json!({"Id": "001000000000001AAA", "SystemModstamp": "2024-05-01T00:00:00.000+0000",
        "OwnerId": "005000000000001AAA", "Name": "Acme", "Industry": "Energy"});
    let call = map_record(&s, rec.clone()).unwrap();
    assert_eq!(call.call_type, CallType::Group);
    assert_eq!(call.group_id.as_deref(), Some("001000000000001AAA"));
    assert_eq!(call.user_id.as_deref(), Some("005000000000001AAA"));
    let t = call.traits_map();
    assert_eq!(t["object_type_id"], json!("1"));
    assert_eq!(t["name"], json!("Acme"));
    assert_eq!(t["Industry"], json!("Energy"));
    assert_eq!(call.object_type().as_deref(), Some("1"));
    assert!(!call.is_relationship());

    // The related record is optional.
    let mut no_owner = rec;
    no_owner["OwnerId"] = Value::Null;
    let call = map_record(&s, no_owner).unwrap();
    assert!(call.user_id.is_none());
}

#[test]
fn custom_objects_map_like_standard_ones() {
    let s = SyncConfig {
        object: "Project__c".into(),
        ..objects(&["Name", "Budget__c", "Account__r.Name"])
    };
    let rec = json!({"attributes": {"type": "Project__c"}, "Id": "a0X000000000001AAA",
        "SystemModstamp": "2024-05-01T00:00:00.000+0000", "Name": "Apollo", "Budget__c": 1000000.0,
        "Account__r": {"attributes": {"type": "Account"}, "Name": "Acme"}});
    let call = map_record(&s, rec).unwrap();
    let t = call.traits.unwrap().to_map();
    assert_eq!(t["name"], json!("Apollo"));
    assert_eq!(t["Budget__c"], json!(1000000.0));
    assert_eq!(t["Account__r.Name"], json!("Acme"));
    assert_eq!(call.context.sfsync.object, "Project__c");
}

#[test]
fn relationships_carry_both_ids_and_their_own_attributes() {
    let s = relationships(&["IsDirect", "Roles", "StartDate"]);
    let rec = json!({"Id": "07k000000000001AAA", "SystemModstamp": "2024-05-01T00:00:00.000+0000",
        "ContactId": "003000000000001AAA", "AccountId": "001000000000001AAA",
        "IsDirect": true, "Roles": "Decision Maker;Evaluator", "StartDate": null});
    let call = map_record(&s, rec).unwrap();
    assert_eq!(call.call_type, CallType::Group);
    assert_eq!(call.user_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(call.group_id.as_deref(), Some("001000000000001AAA"));
    assert!(call.is_relationship());
    let t = call.traits_map();
    assert_eq!(t["object_type_id"], json!("2"));
    assert_eq!(
        t["relationshipAttributes"],
        json!({"IsDirect": true, "Roles": "Decision Maker;Evaluator", "StartDate": null})
    );
    assert_eq!(t.len(), 2, "nothing but the type and the attributes");
}

#[test]
fn deleted_records_become_deletes_when_the_sync_propagates_them() {
    let deleted = json!({"IsDeleted": true});
    let p = SyncConfig {
        deletes: true,
        ..people(&["Email"])
    };
    let call = map_record(&p, record(deleted.clone())).unwrap();
    assert_eq!(call.call_type, CallType::Delete);
    assert_eq!(call.entity, Some(Entity::Person));
    assert_eq!(call.user_id.as_deref(), Some("003000000000001AAA"));
    assert!(call.traits.is_none());

    let o = SyncConfig {
        deletes: true,
        ..objects(&["Name"])
    };
    let call = map_record(&o, record(deleted.clone())).unwrap();
    assert_eq!(call.entity, Some(Entity::Object));
    assert_eq!(call.group_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(call.object_type_id.as_deref(), Some("1"));

    let r = SyncConfig {
        deletes: true,
        ..relationships(&[])
    };
    let rec = record(json!({"IsDeleted": true, "ContactId": "003B", "AccountId": "001B"}));
    let call = map_record(&r, rec).unwrap();
    assert_eq!(call.entity, Some(Entity::Relationship));
    assert_eq!(
        (call.user_id.as_deref(), call.group_id.as_deref()),
        (Some("003B"), Some("001B"))
    );
    assert_eq!(call.object_type_id.as_deref(), Some("2"));

    let json = serde_json::to_value(&call).unwrap();
    assert_eq!(json["type"], json!("delete"));
    assert_eq!(json["entity"], json!("relationship"));
}

#[test]
fn deleted_records_are_skipped_deliberately_without_deletes() {
    let reason = skip_reason(&people(&["Email"]), record(json!({"IsDeleted": true})));
    assert_eq!(reason, SkipReason::DeletedWithoutDeletes);
    assert!(reason.is_deliberate());
}

#[test]
fn a_hard_deleted_relationship_without_its_ids_is_skipped_with_the_field_named() {
    let r = SyncConfig {
        deletes: true,
        ..relationships(&[])
    };
    let reason = skip_reason(&r, record(json!({"IsDeleted": true})));
    assert_eq!(
        reason,
        SkipReason::MissingIdentifier {
            field: "ContactId".into()
        }
    );
}

#[test]
fn every_skip_reason() {
    let p = people(&["CreatedDate"]);
    assert_eq!(skip_reason(&p, json!([1, 2])), SkipReason::NotAnObject);
    assert_eq!(
        skip_reason(&p, json!({"SystemModstamp": "2024-05-01T00:00:00Z"})),
        SkipReason::MissingRecordId
    );
    assert_eq!(
        skip_reason(
            &p,
            json!({"Id": "", "SystemModstamp": "2024-05-01T00:00:00Z"})
        ),
        SkipReason::MissingRecordId
    );
    assert_eq!(
        skip_reason(&p, json!({"Id": "003X"})),
        SkipReason::MissingRecordVersion
    );
    assert_eq!(
        skip_reason(&p, json!({"Id": "003X", "SystemModstamp": "last tuesday"})),
        SkipReason::InvalidDate {
            field: "SystemModstamp".into(),
            value: "last tuesday".into()
        }
    );
    assert_eq!(
        skip_reason(&p, record(json!({"CreatedDate": "2024-99-01"}))),
        SkipReason::InvalidDate {
            field: "CreatedDate".into(),
            value: "2024-99-01".into()
        }
    );
    assert_eq!(
        skip_reason(&p, record(json!({"CreatedDate": 17}))),
        SkipReason::WrongType {
            field: "CreatedDate".into(),
            expected: "a datetime string",
            found: "a number"
        }
    );
    let by_email = SyncConfig {
        user_id: Some("Email".into()),
        ..people(&[])
    };
    for bad in [json!(null), json!(""), json!("  ")] {
        assert_eq!(
            skip_reason(&by_email, record(json!({ "Email": bad }))),
            SkipReason::MissingIdentifier {
                field: "Email".into()
            }
        );
    }
    assert_eq!(
        skip_reason(&by_email, record(json!({}))),
        SkipReason::MissingIdentifier {
            field: "Email".into()
        }
    );
    assert_eq!(
        skip_reason(&by_email, record(json!({"Email": {"a": 1}}))),
        SkipReason::WrongType {
            field: "Email".into(),
            expected: "a string or number",
            found: "an object"
        }
    );
    let task = json!({"Id": "00TX", "SystemModstamp": "2024-05-01T00:00:00Z", "CreatedDate": "2024-05-01T00:00:00Z", "WhoId": null, "Subject": "x"});
    assert_eq!(
        skip_reason(&events(), task.clone()),
        SkipReason::MissingIdentifier {
            field: "WhoId".into()
        }
    );
    let by_subject = SyncConfig {
        event: None,
        event_field: Some("Subject".into()),
        ..events()
    };
    let mut no_subject = task.clone();
    no_subject["WhoId"] = json!("003X");
    no_subject["Subject"] = Value::Null;
    assert_eq!(
        skip_reason(&by_subject, no_subject.clone()),
        SkipReason::MissingEventName {
            field: "Subject".into()
        }
    );
    let mut no_created = no_subject;
    no_created["Subject"] = json!("x");
    no_created["CreatedDate"] = Value::Null;
    assert_eq!(
        skip_reason(&by_subject, no_created),
        SkipReason::MissingField {
            field: "CreatedDate".into()
        }
    );

    // Every reason has a distinct code for counting.
    let codes = [
        SkipReason::NotAnObject,
        SkipReason::MissingRecordId,
        SkipReason::MissingIdentifier {
            field: String::new(),
        },
        SkipReason::MissingField {
            field: String::new(),
        },
        SkipReason::WrongType {
            field: String::new(),
            expected: "",
            found: "",
        },
        SkipReason::InvalidDate {
            field: String::new(),
            value: String::new(),
        },
        SkipReason::MissingEventName {
            field: String::new(),
        },
        SkipReason::DeletedWithoutDeletes,
    ]
    .map(|r| r.code());
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
}

#[test]
fn skips_name_the_record() {
    let err = map_record(
        &people(&[]),
        json!({"Id": "003ABC", "SystemModstamp": "nope"}),
    )
    .unwrap_err();
    assert_eq!(err.record_id.as_deref(), Some("003ABC"));
    assert!(err.to_string().contains("003ABC"), "{err}");
    assert!(err.to_string().contains("SystemModstamp"), "{err}");
}

#[test]
fn message_id_is_stable_per_record_version_and_call_type() {
    let s = people(&["Email"]);
    let a = map_record(&s, record(json!({"Email": "a@b.c"}))).unwrap();
    let b = map_record(&s, record(json!({"Email": "changed@b.c"}))).unwrap();
    assert_eq!(a.message_id, b.message_id, "same version, same id");
    // The same instant in the Bulk API's form gives the same id.
    let mut bulk = record(json!({"Email": "a@b.c"}));
    bulk["SystemModstamp"] = json!("2024-05-01T12:34:56.000Z");
    assert_eq!(map_record(&s, bulk).unwrap().message_id, a.message_id);
    // A new version gets a new id.
    let mut newer = record(json!({}));
    newer["SystemModstamp"] = json!("2024-05-01T12:34:56.001+0000");
    assert_ne!(map_record(&s, newer).unwrap().message_id, a.message_id);
    // So does another sync, another record, another call type.
    let other_sync = SyncConfig {
        name: "t".into(),
        ..s.clone()
    };
    assert_ne!(
        map_record(&other_sync, record(json!({})))
            .unwrap()
            .message_id,
        a.message_id
    );
    let millis = 1714566896000;
    assert_eq!(
        a.message_id,
        message_id("s", "003000000000001AAA", millis, CallType::Identify)
    );
    assert_ne!(
        a.message_id,
        message_id("s", "003000000000001AAB", millis, CallType::Identify)
    );
    assert_ne!(
        a.message_id,
        message_id("s", "003000000000001AAA", millis, CallType::Delete)
    );
    // Usable as Mixpanel's $insert_id: at most 36 characters of [A-Za-z0-9-].
    assert_eq!(a.message_id.len(), 36);
    assert!(
        a.message_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    );
}

#[test]
fn message_id_is_pinned() {
    // Changing the derivation would re-send every record as new: pin it.
    assert_eq!(
        message_id(
            "contacts",
            "003000000000001AAA",
            1714566896000,
            CallType::Identify
        ),
        message_id(
            "contacts",
            "003000000000001AAA",
            1714566896000,
            CallType::Identify
        )
    );
    let pinned = message_id(
        "contacts",
        "003000000000001AAA",
        1714566896000,
        CallType::Identify,
    );
    assert_eq!(&pinned[14..15], "5", "a UUID version 5");
}

#[test]
fn calls_round_trip_through_json() {
    let call = map_record(
        &relationships(&["IsDirect"]),
        record(json!({"ContactId": "003", "AccountId": "001", "IsDirect": false})),
    )
    .unwrap();
    let line = serde_json::to_string(&call).unwrap();
    let back: sfsync_mapping::Call = serde_json::from_str(&line).unwrap();
    assert_eq!(back, call);
}

#[test]
fn last_modified_date_versions_a_record_without_system_modstamp() {
    // A record exported by another tool with the user's own field list.
    let p = people(&["Email"]);
    let exported = json!({"Id": "003X", "LastModifiedDate": "2024-05-03T10:00:00.000+0000",
                          "Email": "x@example.com"});
    let call = map_record(&p, exported.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call.timestamp, "2024-05-03T10:00:00.000Z");
    let millis = chrono::DateTime::parse_from_rfc3339("2024-05-03T10:00:00Z")
        .unwrap_or_else(|e| panic!("{e}"))
        .timestamp_millis();
    assert_eq!(
        call.message_id,
        message_id("s", "003X", millis, CallType::Identify)
    );
    // Deterministic: the same export maps to the same messageId.
    let again = map_record(&p, exported).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.message_id, call.message_id);

    // SystemModstamp wins when both are there; a null one lets LastModifiedDate serve.
    let both = json!({"Id": "003X", "SystemModstamp": "2024-05-04T00:00:00.000+0000",
                      "LastModifiedDate": "2024-05-03T10:00:00.000+0000"});
    let call = map_record(&p, both).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call.timestamp, "2024-05-04T00:00:00.000Z");
    let null_modstamp = json!({"Id": "003X", "SystemModstamp": null,
                               "LastModifiedDate": "2024-05-03T10:00:00.000+0000"});
    let call = map_record(&p, null_modstamp).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(call.timestamp, "2024-05-03T10:00:00.000Z");

    // An unparseable SystemModstamp is reported, not papered over with the other field.
    let bad = json!({"Id": "003X", "SystemModstamp": "last tuesday",
                     "LastModifiedDate": "2024-05-03T10:00:00.000+0000"});
    assert_eq!(
        skip_reason(&p, bad),
        SkipReason::InvalidDate {
            field: "SystemModstamp".into(),
            value: "last tuesday".into()
        }
    );

    // Neither: skipped, and the reason says how to fix the input.
    let reason = skip_reason(&p, json!({"Id": "003X", "Email": "x@example.com"}));
    assert_eq!(reason, SkipReason::MissingRecordVersion);
    let text = reason.to_string();
    assert!(
        text.contains("SystemModstamp")
            && text.contains("LastModifiedDate")
            && text.contains("include"),
        "{text}"
    );
}

#[test]
fn an_object_without_a_related_user_gets_a_stable_anonymous_id() {
    // Customer.io's batch schema (and the Segment spec) need a userId or an anonymousId.
    let s = SyncConfig {
        user_id: Some("OwnerId".into()),
        deletes: true,
        ..objects(&["Name"])
    };
    let rec = json!({"Id": "001000000000001AAA", "SystemModstamp": "2024-05-01T00:00:00.000+0000",
        "OwnerId": null, "Name": "Acme"});
    let call = map_record(&s, rec.clone()).unwrap();
    assert_eq!(call.user_id, None);
    assert_eq!(
        call.anonymous_id.as_deref(),
        Some("sfsync-object-1-001000000000001AAA")
    );
    assert_eq!(
        sfsync_mapping::anonymous_object_id("1", "001000000000001AAA"),
        "sfsync-object-1-001000000000001AAA"
    );
    // The same object in a later version, and its delete, keep the same anonymousId.
    let mut later = rec.clone();
    later["SystemModstamp"] = json!("2024-06-01T00:00:00.000+0000");
    assert_eq!(
        map_record(&s, later).unwrap().anonymous_id,
        call.anonymous_id
    );
    let mut deleted = rec.clone();
    deleted["IsDeleted"] = json!(true);
    let delete = map_record(&s, deleted).unwrap();
    assert_eq!(delete.call_type, CallType::Delete);
    assert_eq!(delete.anonymous_id, call.anonymous_id);
    // An object with its user needs none; relationships and people always have their user.
    let mut owned = rec;
    owned["OwnerId"] = json!("005000000000001AAA");
    assert_eq!(map_record(&s, owned).unwrap().anonymous_id, None);
    let r = relationships(&[]);
    let rel = map_record(
        &r,
        json!({"Id": "07k000000000001AAA", "SystemModstamp": "2024-05-01T00:00:00.000+0000",
            "ContactId": "003000000000001AAA", "AccountId": "001000000000001AAA"}),
    )
    .unwrap();
    assert_eq!(rel.anonymous_id, None);
}

#[test]
fn a_relationship_without_its_person_stays_a_typed_skip() {
    let reason = skip_reason(
        &relationships(&[]),
        json!({"Id": "07k000000000001AAA", "SystemModstamp": "2024-05-01T00:00:00.000+0000",
            "ContactId": null, "AccountId": "001000000000001AAA"}),
    );
    assert!(
        matches!(reason, SkipReason::MissingIdentifier { .. }),
        "{reason:?}"
    );
}

fn leads(fields: &[&str]) -> SyncConfig {
    SyncConfig {
        object: "Lead".into(),
        ..people(fields)
    }
}

fn converted_lead(modstamp: &str) -> Value {
    json!({
        "Id": "00Q000000000001AAA",
        "SystemModstamp": modstamp,
        "IsDeleted": false,
        "Email": "ada@example.com",
        "IsConverted": true,
        "ConvertedContactId": "003000000000009AAA",
    })
}

#[test]
fn a_converted_lead_becomes_one_merge_into_its_contact_and_no_identify() {
    let sync = leads(&["Email"]);
    let call = map_record(&sync, converted_lead("2024-05-01T12:34:56.000+0000")).unwrap();
    assert_eq!(call.call_type, CallType::Merge);
    assert_eq!(call.previous_id.as_deref(), Some("00Q000000000001AAA"));
    assert_eq!(call.user_id.as_deref(), Some("003000000000009AAA"));
    assert_eq!(call.entity, Some(Entity::Person));
    assert_eq!(call.merge_cause, Some(MergeCause::Conversion));
    assert_eq!(call.traits, None);
    assert_eq!(
        call.message_id,
        merge_message_id("s", "00Q000000000001AAA", "003000000000009AAA")
    );
    // The same conversion carried by a later version of the Lead: the same messageId, so
    // destinations drop the repeat.
    let later = map_record(&sync, converted_lead("2024-05-02T08:00:00.000+0000")).unwrap();
    assert_eq!(later.message_id, call.message_id);
    let json = serde_json::to_value(&call).unwrap();
    assert_eq!(json["type"], "merge");
    assert_eq!(json["previousId"], "00Q000000000001AAA");
    assert_eq!(json["mergeCause"], "conversion");
}

#[test]
fn an_unconverted_lead_is_identified_as_before() {
    let mut rec = converted_lead("2024-05-01T12:34:56.000+0000");
    rec["IsConverted"] = json!(false);
    rec["ConvertedContactId"] = Value::Null;
    let call = map_record(&leads(&["Email"]), rec).unwrap();
    assert_eq!(call.call_type, CallType::Identify);
}

#[test]
fn conversions_can_be_turned_off_and_are_off_for_other_identifiers() {
    let off = SyncConfig {
        conversions: Some(false),
        ..leads(&["Email"])
    };
    assert!(!off.converts_leads());
    let call = map_record(&off, converted_lead("2024-05-01T12:34:56.000+0000")).unwrap();
    assert_eq!(call.call_type, CallType::Identify);
    let by_email = SyncConfig {
        user_id: Some("Email".into()),
        ..leads(&[])
    };
    assert!(!by_email.converts_leads());
    assert!(
        !people(&[]).converts_leads(),
        "Contacts are never converted"
    );
}

#[test]
fn a_lead_sync_selects_the_conversion_fields_itself() {
    let select = leads(&["Email"]).select_fields();
    assert!(select.contains(&"IsConverted".to_string()));
    assert!(select.contains(&"ConvertedContactId".to_string()));
    let off = SyncConfig {
        conversions: Some(false),
        ..leads(&["Email"])
    };
    assert!(!off.select_fields().contains(&"IsConverted".to_string()));
    let deletes = SyncConfig {
        deletes: true,
        ..people(&[])
    };
    assert!(
        deletes
            .select_fields()
            .contains(&"MasterRecordId".to_string())
    );
    assert!(
        !people(&[])
            .select_fields()
            .contains(&"MasterRecordId".to_string())
    );
}

fn merged_loser(id: &str, master: &str) -> Value {
    record(json!({"Id": id, "IsDeleted": true, "MasterRecordId": master}))
}

#[test]
fn a_merged_loser_becomes_a_merge_into_the_winner_not_a_delete() {
    let sync = SyncConfig {
        deletes: true,
        ..people(&["Email"])
    };
    let call = map_record(
        &sync,
        merged_loser("003000000000002AAA", "003000000000001AAA"),
    )
    .unwrap();
    assert_eq!(call.call_type, CallType::Merge);
    assert_eq!(call.previous_id.as_deref(), Some("003000000000002AAA"));
    assert_eq!(call.user_id.as_deref(), Some("003000000000001AAA"));
    assert_eq!(call.merge_cause, Some(MergeCause::Merge));
    assert_eq!(
        call.message_id,
        merge_message_id("s", "003000000000002AAA", "003000000000001AAA")
    );
    // A plain delete (no MasterRecordId) stays a delete.
    let deleted = map_record(
        &sync,
        record(json!({"IsDeleted": true, "MasterRecordId": null})),
    )
    .unwrap();
    assert_eq!(deleted.call_type, CallType::Delete);
}

#[test]
fn a_merged_account_becomes_an_object_merge_by_group_id() {
    let sync = SyncConfig {
        deletes: true,
        ..objects(&["Name"])
    };
    let call = map_record(
        &sync,
        merged_loser("001000000000002AAA", "001000000000001AAA"),
    )
    .unwrap();
    assert_eq!(call.call_type, CallType::Merge);
    assert_eq!(call.entity, Some(Entity::Object));
    assert_eq!(call.previous_id.as_deref(), Some("001000000000002AAA"));
    assert_eq!(call.group_id.as_deref(), Some("001000000000001AAA"));
    assert_eq!(call.object_type_id.as_deref(), Some("1"));
    assert_eq!(call.user_id, None);
    assert_eq!(
        call.anonymous_id.as_deref(),
        Some("sfsync-object-1-001000000000001AAA")
    );
}

#[test]
fn a_merged_loser_of_a_sync_keyed_by_email_is_skipped_with_the_reason_not_deleted() {
    let sync = SyncConfig {
        deletes: true,
        user_id: Some("Email".into()),
        ..people(&[])
    };
    let reason = skip_reason(
        &sync,
        merged_loser("003000000000002AAA", "003000000000001AAA"),
    );
    assert_eq!(
        reason,
        SkipReason::MergeNeedsRecordIds {
            field: "Email".into(),
            master: "003000000000001AAA".into()
        }
    );
    assert!(!reason.is_deliberate());
}

#[test]
fn without_deletes_a_merged_loser_is_skipped_as_any_delete() {
    let reason = skip_reason(
        &people(&[]),
        merged_loser("003000000000002AAA", "003000000000001AAA"),
    );
    assert_eq!(reason, SkipReason::DeletedWithoutDeletes);
}
