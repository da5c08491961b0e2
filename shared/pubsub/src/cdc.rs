//! Change Data Capture payloads: the `ChangeEventHeader` every change event starts with, the
//! bitmap encoding of its field lists, and decoding an Avro payload into header + fields.
//!
//! Sources: Change Data Capture Developer Guide, "Change Event Header Fields" (the header's
//! fields and `changeType` values, gap and overflow events), and Pub/Sub API developer guide,
//! "Event Deserialization Considerations" (through the Pub/Sub API, `changedFields`,
//! `nulledFields` and `diffFields` arrive as bitmaps: `"0x…"` whose bit *i* marks the field at
//! position *i* of the event schema, and `"P-0x…"` for the fields nested in the compound field
//! at position *P*; `python/util/ChangeEventHeaderUtility.py` of forcedotcom/pub-sub-api
//! decodes them the same way).

use std::io::Cursor;

use apache_avro::Schema;
use apache_avro::schema::RecordSchema;
use apache_avro::types::Value as Avro;
use serde_json::{Map, Value};

/// `changeType` of a change event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeType {
    Create,
    Update,
    Delete,
    Undelete,
    GapCreate,
    GapUpdate,
    GapDelete,
    GapUndelete,
    /// A transaction beyond 100,000 changes: no record ids, only `entityName`.
    GapOverflow,
}

impl ChangeType {
    /// Every symbol, in the order of the `ChangeType` Avro enum.
    pub const ALL: [ChangeType; 9] = [
        ChangeType::Create,
        ChangeType::Update,
        ChangeType::Delete,
        ChangeType::Undelete,
        ChangeType::GapCreate,
        ChangeType::GapUpdate,
        ChangeType::GapDelete,
        ChangeType::GapUndelete,
        ChangeType::GapOverflow,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            ChangeType::Create => "CREATE",
            ChangeType::Update => "UPDATE",
            ChangeType::Delete => "DELETE",
            ChangeType::Undelete => "UNDELETE",
            ChangeType::GapCreate => "GAP_CREATE",
            ChangeType::GapUpdate => "GAP_UPDATE",
            ChangeType::GapDelete => "GAP_DELETE",
            ChangeType::GapUndelete => "GAP_UNDELETE",
            ChangeType::GapOverflow => "GAP_OVERFLOW",
        }
    }

    pub fn from_symbol(s: &str) -> Option<ChangeType> {
        ChangeType::ALL.into_iter().find(|c| c.symbol() == s)
    }

    /// A gap or overflow event: the change happened but its details are not in the stream.
    pub fn is_gap(self) -> bool {
        !matches!(
            self,
            ChangeType::Create | ChangeType::Update | ChangeType::Delete | ChangeType::Undelete
        )
    }

    /// The record is gone from the live table after this change (delete, or its gap twin).
    pub fn is_delete(self) -> bool {
        matches!(self, ChangeType::Delete | ChangeType::GapDelete)
    }
}

/// The decoded `ChangeEventHeader`, field lists as field names.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEventHeader {
    pub entity_name: String,
    pub record_ids: Vec<String>,
    pub change_type: ChangeType,
    pub change_origin: String,
    pub transaction_key: String,
    pub sequence_number: i32,
    /// Milliseconds since the epoch at which the transaction committed.
    pub commit_timestamp: i64,
    pub commit_number: i64,
    pub commit_user: String,
    pub nulled_fields: Vec<String>,
    pub diff_fields: Vec<String>,
    pub changed_fields: Vec<String>,
}

/// One decoded change event: its header and the non-null record fields it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    pub header: ChangeEventHeader,
    pub fields: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    #[error("schema {schema_id}: not a usable Avro schema: {reason}")]
    Schema { schema_id: String, reason: String },
    #[error("event payload does not decode with its schema: {0}")]
    Payload(String),
    #[error("change event header: {0}")]
    Header(String),
    #[error("cannot encode a change event: {0}")]
    Encode(String),
}

/// The Avro schema (JSON) of `ChangeEventHeader`, in the field order of Salesforce's change
/// event schemas. Event schemas put it first, under the field name `ChangeEventHeader`.
pub fn header_schema_json() -> Value {
    let symbols: Vec<&str> = ChangeType::ALL.iter().map(|c| c.symbol()).collect();
    let strings = serde_json::json!({"type": "array", "items": "string"});
    serde_json::json!({
        "type": "record",
        "name": "ChangeEventHeader",
        "namespace": "com.sforce.eventbus",
        "fields": [
            {"name": "entityName", "type": "string"},
            {"name": "recordIds", "type": strings},
            {"name": "changeType", "type": {"type": "enum", "name": "ChangeType", "namespace": "com.sforce.eventbus", "symbols": symbols}},
            {"name": "changeOrigin", "type": "string"},
            {"name": "transactionKey", "type": "string"},
            {"name": "sequenceNumber", "type": "int"},
            {"name": "commitTimestamp", "type": "long"},
            {"name": "commitNumber", "type": "long"},
            {"name": "commitUser", "type": "string"},
            {"name": "nulledFields", "type": strings},
            {"name": "diffFields", "type": strings},
            {"name": "changedFields", "type": strings},
        ]
    })
}

/// Parses an event schema fetched with `GetSchema`.
pub fn parse_schema(schema_id: &str, json: &str) -> Result<Schema, CdcError> {
    let schema = Schema::parse_str(json).map_err(|e| CdcError::Schema {
        schema_id: schema_id.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(schema, Schema::Record(_)) {
        return Err(CdcError::Schema {
            schema_id: schema_id.to_string(),
            reason: "the top level is not a record".into(),
        });
    }
    Ok(schema)
}

/// The bitmap of a set of field positions: bit *i* set for position *i*, as a `0x` hex string
/// (most significant digit first, an even number of digits).
pub fn encode_bitmap(positions: &[usize]) -> String {
    let width = positions.iter().max().map_or(1, |m| m / 8 + 1);
    let mut bytes = vec![0u8; width];
    for p in positions {
        if let Some(b) = bytes.get_mut(p / 8) {
            *b |= 1 << (p % 8);
        }
    }
    let mut out = String::from("0x");
    for b in bytes.iter().rev() {
        out.push_str(&format!("{b:02X}"));
    }
    out
}

/// The positions a `0x…` bitmap marks.
pub fn decode_bitmap(bitmap: &str) -> Result<Vec<usize>, CdcError> {
    let hex = bitmap
        .strip_prefix("0x")
        .ok_or_else(|| CdcError::Header(format!("bitmap {bitmap:?} does not start with 0x")))?;
    let mut positions = Vec::new();
    for (k, c) in hex.chars().rev().enumerate() {
        let digit = c
            .to_digit(16)
            .ok_or_else(|| CdcError::Header(format!("bitmap {bitmap:?} is not hexadecimal")))?;
        for bit in 0..4 {
            if digit & (1 << bit) != 0 {
                positions.push(k * 4 + bit);
            }
        }
    }
    Ok(positions)
}

/// Field names from a header field list: bitmaps resolved against the schema, anything else
/// (a plain name, as the Streaming API sends) kept as it is.
fn field_names(record: &RecordSchema, list: &[String]) -> Result<Vec<String>, CdcError> {
    let mut names = Vec::new();
    for entry in list {
        if entry.starts_with("0x") {
            for p in decode_bitmap(entry)? {
                let field = record.fields.get(p).ok_or_else(|| {
                    CdcError::Header(format!(
                        "bitmap {entry} marks position {p}, beyond the schema"
                    ))
                })?;
                names.push(field.name.clone());
            }
        } else if let Some((parent, bitmap)) = entry.split_once('-')
            && let Ok(parent) = parent.parse::<usize>()
        {
            let field = record.fields.get(parent).ok_or_else(|| {
                CdcError::Header(format!(
                    "{entry:?} names position {parent}, beyond the schema"
                ))
            })?;
            let Some(nested) = nested_record(&field.schema) else {
                return Err(CdcError::Header(format!(
                    "{entry:?}: field {} is not a compound field",
                    field.name
                )));
            };
            for p in decode_bitmap(bitmap)? {
                let child = nested.fields.get(p).ok_or_else(|| {
                    CdcError::Header(format!(
                        "{entry:?} marks nested position {p}, beyond {}",
                        field.name
                    ))
                })?;
                names.push(format!("{}.{}", field.name, child.name));
            }
        } else {
            names.push(entry.clone());
        }
    }
    Ok(names)
}

/// The record inside an optional (`["null", record]`) field, if it is one.
fn nested_record(schema: &Schema) -> Option<&RecordSchema> {
    match schema {
        Schema::Record(r) => Some(r),
        Schema::Union(u) => u.variants().iter().find_map(|v| match v {
            Schema::Record(r) => Some(r),
            _ => None,
        }),
        _ => None,
    }
}

/// Decodes one event payload (a bare Avro datum, as `ProducerEvent.payload` carries it).
pub fn decode_event(schema: &Schema, payload: &[u8]) -> Result<ChangeEvent, CdcError> {
    let Schema::Record(record) = schema else {
        return Err(CdcError::Payload(
            "the schema's top level is not a record".into(),
        ));
    };
    let value = apache_avro::from_avro_datum(schema, &mut Cursor::new(payload), None)
        .map_err(|e| CdcError::Payload(e.to_string()))?;
    let Avro::Record(values) = value else {
        return Err(CdcError::Payload("the payload is not a record".into()));
    };
    let mut header = None;
    let mut fields = Map::new();
    for (name, v) in values {
        if name == "ChangeEventHeader" {
            header = Some(v);
        } else {
            let json = to_json(v);
            if !json.is_null() {
                fields.insert(name, json);
            }
        }
    }
    let header =
        header.ok_or_else(|| CdcError::Header("the event has no ChangeEventHeader".into()))?;
    Ok(ChangeEvent {
        header: read_header(record, header)?,
        fields,
    })
}

fn read_header(record: &RecordSchema, header: Avro) -> Result<ChangeEventHeader, CdcError> {
    let Avro::Record(parts) = unwrap_union(header) else {
        return Err(CdcError::Header("ChangeEventHeader is not a record".into()));
    };
    let get = |name: &str| {
        parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let string = |name: &str| -> Result<String, CdcError> {
        match get(name).map(unwrap_union) {
            Some(Avro::String(s)) => Ok(s),
            Some(Avro::Null) | None => Ok(String::new()),
            Some(other) => Err(CdcError::Header(format!(
                "{name} is {other:?}, not a string"
            ))),
        }
    };
    let long = |name: &str| -> Result<i64, CdcError> {
        match get(name).map(unwrap_union) {
            Some(Avro::Long(n)) => Ok(n),
            Some(Avro::Int(n)) => Ok(n.into()),
            Some(Avro::TimestampMillis(n)) => Ok(n),
            Some(Avro::Null) | None => Ok(0),
            Some(other) => Err(CdcError::Header(format!(
                "{name} is {other:?}, not a number"
            ))),
        }
    };
    let strings = |name: &str| -> Result<Vec<String>, CdcError> {
        match get(name).map(unwrap_union) {
            Some(Avro::Array(items)) => items
                .into_iter()
                .map(|i| match unwrap_union(i) {
                    Avro::String(s) => Ok(s),
                    other => Err(CdcError::Header(format!("{name} holds {other:?}"))),
                })
                .collect(),
            Some(Avro::Null) | None => Ok(Vec::new()),
            Some(other) => Err(CdcError::Header(format!("{name} is {other:?}, not a list"))),
        }
    };
    let change_type = match get("changeType").map(unwrap_union) {
        Some(Avro::Enum(_, s)) | Some(Avro::String(s)) => ChangeType::from_symbol(&s)
            .ok_or_else(|| CdcError::Header(format!("unknown changeType {s:?}")))?,
        other => return Err(CdcError::Header(format!("changeType is {other:?}"))),
    };
    Ok(ChangeEventHeader {
        entity_name: string("entityName")?,
        record_ids: strings("recordIds")?,
        change_type,
        change_origin: string("changeOrigin")?,
        transaction_key: string("transactionKey")?,
        sequence_number: i32::try_from(long("sequenceNumber")?).unwrap_or(i32::MAX),
        commit_timestamp: long("commitTimestamp")?,
        commit_number: long("commitNumber")?,
        commit_user: string("commitUser")?,
        nulled_fields: field_names(record, &strings("nulledFields")?)?,
        diff_fields: field_names(record, &strings("diffFields")?)?,
        changed_fields: field_names(record, &strings("changedFields")?)?,
    })
}

fn unwrap_union(v: Avro) -> Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

/// An Avro value as JSON the way the REST API shows the same field (dates as `YYYY-MM-DD`,
/// datetimes as ISO 8601 UTC).
fn to_json(v: Avro) -> Value {
    match unwrap_union(v) {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(n) => n.into(),
        Avro::Long(n) => n.into(),
        Avro::Float(x) => serde_json::Number::from_f64(x.into()).map_or(Value::Null, Value::Number),
        Avro::Double(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Date(days) => chrono_date(days),
        Avro::TimestampMillis(ms) => chrono_datetime(ms),
        Avro::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Avro::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .filter(|(_, v)| !v.is_null())
                .collect(),
        ),
        other => Value::String(format!("{other:?}")),
    }
}

fn chrono_date(days: i32) -> Value {
    // Civil-from-days (Howard Hinnant's algorithm), to stay free of a date crate here.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Value::String(format!("{y:04}-{m:02}-{d:02}"))
}

fn chrono_datetime(ms: i64) -> Value {
    let days = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let date = match chrono_date(i32::try_from(days).unwrap_or(0)) {
        Value::String(s) => s,
        _ => String::new(),
    };
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    Value::String(format!("{date}T{h:02}:{m:02}:{s:02}.{milli:03}Z"))
}

/// Encodes a change event (used by the simulator; here so that encoder and decoder share one
/// definition of the header). `fields` are the event's non-header fields in schema order,
/// `None` for null.
pub fn encode_event(
    schema: &Schema,
    header: &ChangeEventHeader,
    header_bitmaps: [&[String]; 3],
    fields: Vec<(String, Avro)>,
) -> Result<Vec<u8>, CdcError> {
    let strings = |v: &[String]| Avro::Array(v.iter().cloned().map(Avro::String).collect());
    let [nulled, diff, changed] = header_bitmaps;
    let position = ChangeType::ALL
        .iter()
        .position(|c| *c == header.change_type)
        .unwrap_or(0) as u32;
    let header_value = Avro::Record(vec![
        (
            "entityName".into(),
            Avro::String(header.entity_name.clone()),
        ),
        ("recordIds".into(), strings(&header.record_ids)),
        (
            "changeType".into(),
            Avro::Enum(position, header.change_type.symbol().into()),
        ),
        (
            "changeOrigin".into(),
            Avro::String(header.change_origin.clone()),
        ),
        (
            "transactionKey".into(),
            Avro::String(header.transaction_key.clone()),
        ),
        ("sequenceNumber".into(), Avro::Int(header.sequence_number)),
        (
            "commitTimestamp".into(),
            Avro::Long(header.commit_timestamp),
        ),
        ("commitNumber".into(), Avro::Long(header.commit_number)),
        (
            "commitUser".into(),
            Avro::String(header.commit_user.clone()),
        ),
        ("nulledFields".into(), strings(nulled)),
        ("diffFields".into(), strings(diff)),
        ("changedFields".into(), strings(changed)),
    ]);
    let mut record = Vec::with_capacity(fields.len() + 1);
    record.push(("ChangeEventHeader".to_string(), header_value));
    record.extend(fields);
    apache_avro::to_avro_datum(schema, Avro::Record(record))
        .map_err(|e| CdcError::Encode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        let json = serde_json::json!({
            "type": "record", "name": "ContactChangeEvent", "namespace": "com.sforce.eventbus",
            "fields": [
                {"name": "ChangeEventHeader", "type": header_schema_json()},
                {"name": "FirstName", "type": ["null", "string"], "default": null},
                {"name": "Email", "type": ["null", "string"], "default": null},
                {"name": "Birthdate", "type": ["null", {"type": "int", "logicalType": "date"}], "default": null},
                {"name": "LastModifiedDate", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null},
                {"name": "MailingAddress", "type": ["null", {"type": "record", "name": "Address", "fields": [
                    {"name": "Street", "type": ["null", "string"], "default": null},
                    {"name": "City", "type": ["null", "string"], "default": null}]}], "default": null}
            ]
        });
        parse_schema("s1", &json.to_string()).expect("test schema parses")
    }

    #[test]
    fn bitmaps_mark_positions_from_the_least_significant_bit() {
        assert_eq!(encode_bitmap(&[0]), "0x01");
        assert_eq!(encode_bitmap(&[1, 2]), "0x06");
        assert_eq!(encode_bitmap(&[9]), "0x0200");
        assert_eq!(decode_bitmap("0x0200").ok(), Some(vec![9]));
        // The example in forcedotcom/pub-sub-api's python/util/README.md.
        assert_eq!(
            decode_bitmap("0x650004E0").ok(),
            Some(vec![5, 6, 7, 10, 24, 26, 29, 30])
        );
        assert!(decode_bitmap("650004E0").is_err());
        assert!(decode_bitmap("0xZZ").is_err());
    }

    #[test]
    fn an_encoded_update_decodes_to_its_header_fields_and_field_names() {
        let schema = schema();
        let header = ChangeEventHeader {
            entity_name: "Contact".into(),
            record_ids: vec!["003A".into(), "003B".into()],
            change_type: ChangeType::Update,
            change_origin: "com/salesforce/api/rest/62.0".into(),
            transaction_key: "tx1".into(),
            sequence_number: 2,
            commit_timestamp: 1_717_200_001_000,
            commit_number: 42,
            commit_user: "005A".into(),
            nulled_fields: vec![],
            diff_fields: vec![],
            changed_fields: vec![],
        };
        let changed = vec![encode_bitmap(&[1, 4]), "5-0x02".to_string()];
        let nulled = vec![encode_bitmap(&[2])];
        let payload = encode_event(
            &schema,
            &header,
            [&nulled, &[], &changed],
            vec![
                (
                    "FirstName".into(),
                    Avro::Union(1, Box::new(Avro::String("Ada".into()))),
                ),
                ("Email".into(), Avro::Union(0, Box::new(Avro::Null))),
                (
                    "Birthdate".into(),
                    Avro::Union(1, Box::new(Avro::Date(19_875))),
                ),
                (
                    "LastModifiedDate".into(),
                    Avro::Union(1, Box::new(Avro::TimestampMillis(1_717_200_001_000))),
                ),
                (
                    "MailingAddress".into(),
                    Avro::Union(0, Box::new(Avro::Null)),
                ),
            ],
        )
        .expect("encodes");
        let event = decode_event(&schema, &payload).expect("decodes");
        assert_eq!(event.header.record_ids, vec!["003A", "003B"]);
        assert_eq!(event.header.change_type, ChangeType::Update);
        assert_eq!(
            event.header.changed_fields,
            vec!["FirstName", "LastModifiedDate", "MailingAddress.City"]
        );
        assert_eq!(event.header.nulled_fields, vec!["Email"]);
        assert_eq!(event.fields.get("FirstName"), Some(&Value::from("Ada")));
        assert_eq!(
            event.fields.get("Birthdate"),
            Some(&Value::from("2024-06-01"))
        );
        assert_eq!(
            event.fields.get("LastModifiedDate"),
            Some(&Value::from("2024-06-01T00:00:01.000Z"))
        );
        assert!(!event.fields.contains_key("Email"));
    }

    #[test]
    fn a_payload_that_does_not_match_its_schema_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_event(&schema(), &[0xff, 0xff, 0xff]),
            Err(CdcError::Payload(_))
        ));
        assert!(parse_schema("bad", "{\"type\":\"string\"}").is_err());
        assert!(parse_schema("bad", "not json").is_err());
    }
}
