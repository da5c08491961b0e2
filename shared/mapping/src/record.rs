//! A Salesforce record as the JSON text it came in, and a flat view of its fields.
//!
//! Why text and not a `serde_json::Value`: building a tree of `String` keys and `Value`s
//! for every record, then moving its fields into another tree (the call's traits) and
//! writing that out again, was most of sfsync's CPU per record (issue 16: parsing 26 %,
//! mapping 34 % of a sync's samples). A record is read once here, without a tree: its
//! top-level fields are (name, JSON text) pairs borrowed from the record's own text, and
//! the mapping copies the selected fields' text into the call
//! ([`crate::call::JsonObject`]). Only what must be interpreted (ids, dates, booleans) is
//! decoded, and only a string with an escape in it is decoded into a new `String`.
//!
//! A record's text may come from Salesforce (REST pages, kept as they were sent), or be
//! written by sfsync itself from a `Value` (Bulk CSV rows, getDeleted, Change Data Capture
//! events): [`Record::from_value`].

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// One record's JSON text (normally an object; the mapping skips anything else as
/// `not_an_object`), on one line. Serializes as that text, unchanged.
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Record(Box<RawValue>);

/// Read as the JSON text it is (with serde_json, which keeps a value's text; records only
/// ever come from JSON text: pages, message bodies, JSON lines), and checked by
/// [`Record::from_raw`].
impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Record::from_raw(raw).map_err(|e| de::Error::custom(format_args!("a record's text: {e}")))
    }
}

impl Record {
    /// The record written from a `Value` (compact, keys in `Value`'s sorted order).
    pub fn from_value(value: &Value) -> Record {
        // Writing a `Value` cannot fail: its keys are strings and its numbers finite.
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => Record(raw),
            Err(_) => Record(RawValue::NULL.to_owned()),
        }
    }

    /// A record from JSON text the parser has kept (a REST page's record).
    ///
    /// Keeping a value's text checks its syntax only: a number too large for a float
    /// (`1e400`), nesting deeper than serde_json's limit of 128, or a `\u` escape no string
    /// can hold (a lone surrogate, `\ud800`) would pass, where a parser building a `Value`
    /// refuses them. So the text is read once more by the same parser with the same rules,
    /// building nothing ([`Checked`]), and refused with the parser's error if it breaks
    /// them: such a record never reaches the mapping, the wire or the records message, as
    /// it never did. Text spread over lines (a pretty-printed page) is written again on one
    /// line, so that a record is always one line of JSON lines output and of a message body.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Record, serde_json::Error> {
        serde_json::from_str::<Checked>(raw.get())?;
        if memchr::memchr2(b'\n', b'\r', raw.get().as_bytes()).is_some() {
            let value: Value = serde_json::from_str(raw.get())?;
            return Ok(Record::from_value(&value));
        }
        Ok(Record(raw))
    }

    /// The record's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The record as a `Value` (for the few paths that edit or inspect a whole record).
    pub fn to_value(&self) -> Value {
        // The text was checked as JSON when the record was made.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The record's top-level fields, or `None` when the record is not a JSON object.
    pub fn fields(&self) -> Option<Fields<'_>> {
        Fields::of(&self.0)
    }

    /// True when the record's `IsDeleted` is `true`. Most records lack the field or say
    /// `false`: a record whose text holds neither the name nor an escape is not parsed.
    pub fn is_deleted(&self) -> bool {
        let text = self.json().as_bytes();
        // A name written with an escape (`Is\u0044eleted`) is the same name.
        (memchr::memmem::find(text, b"IsDeleted").is_some()
            || memchr::memmem::find(text, b"\\u").is_some())
            && self.bool_field("IsDeleted") == Some(true)
    }

    /// A top-level boolean field (exact name), e.g. `IsDeleted`.
    pub fn bool_field(&self, name: &str) -> Option<bool> {
        match self.fields()?.get_exact(name)?.get() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// A top-level string field (exact name), e.g. `Id` or `SystemModstamp`.
    pub fn string_field(&self, name: &str) -> Option<String> {
        let fields = self.fields()?;
        fields.get_exact(name).and_then(as_str).map(Cow::into_owned)
    }
}

impl From<Value> for Record {
    fn from(value: Value) -> Record {
        Record::from_value(&value)
    }
}

impl From<&Value> for Record {
    fn from(value: &Value) -> Record {
        Record::from_value(value)
    }
}

/// Two records are equal when they hold the same JSON (whatever the key order or spacing).
impl PartialEq for Record {
    fn eq(&self, other: &Record) -> bool {
        self.json() == other.json() || self.to_value() == other.to_value()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// Accepts exactly the JSON a parser building a `Value` accepts, building nothing: every
/// number is read as a number (so one out of a float's range is an error), every string
/// with an escape is decoded (so a lone surrogate is an error), and nesting counts against
/// serde_json's recursion limit, as when a `Value` is built.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// A record's top-level fields in the order of its text, each name with its value's JSON
/// text. A name that appears twice keeps its last value, as a parser building a map would.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    /// The fields of `raw`, or `None` when it is not a JSON object.
    pub fn of(raw: &'a RawValue) -> Option<Fields<'a>> {
        if !raw.get().starts_with('{') {
            return None;
        }
        serde_json::from_str::<Fields<'a>>(raw.get()).ok()
    }

    /// The value of exactly `name` (its last occurrence).
    pub fn get_exact(&self, name: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// The value of `name`: its exact spelling, else the key that matches it ignoring ASCII
    /// case (Salesforce answers in canonical casing whatever the query said); of several
    /// such keys the least in byte order, as a sorted map would find first.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.get_exact(name)
            .or_else(|| self.recased_key(name).and_then(|k| self.get_exact(k)))
    }

    /// The record key that matches `name` ignoring ASCII case when `name` itself is not a
    /// key (the least in byte order of several).
    pub fn recased_key(&self, name: &str) -> Option<&str> {
        if self.get_exact(name).is_some() {
            return None;
        }
        self.entries
            .iter()
            .map(|(k, _)| k.as_ref())
            .filter(|k| k.eq_ignore_ascii_case(name))
            .min()
    }

    /// A field or a parent path (`Account.Name`). A null parent gives null for the path; an
    /// absent field, or a parent that is not an object, gives `None`.
    pub fn lookup(&self, path: &str) -> Option<&'a RawValue> {
        let Some((parent, rest)) = path.split_once('.') else {
            return self.get(path);
        };
        let value = self.get(parent)?;
        match kind(value) {
            Kind::Null => Some(RawValue::NULL),
            Kind::Object => Fields::of(value)?.lookup(rest),
            _ => None,
        }
    }

    /// Every (name, value) in the order of the text, repeated names included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// [`Fields::iter`] with names that outlive the `Fields` (borrowed from the record's
    /// text, unless a name had an escape in it).
    pub fn iter_named(&self) -> impl Iterator<Item = (Cow<'a, str>, &'a RawValue)> + '_ {
        self.entries.iter().map(|(k, v)| (k.clone(), *v))
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((name, value));
                }
                Ok(Fields { entries })
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A field name, borrowed from the text unless it had an escape in it.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What a JSON value's text holds, told by its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// "a string", "an object", … for skip reasons.
    pub fn described(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "a boolean",
            Kind::Number => "a number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// The kind of a value's text (checked JSON, so its first character decides).
pub fn kind(raw: &RawValue) -> Kind {
    match raw.get().as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b't' | b'f') => Kind::Bool,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Number,
    }
}

/// The string a value holds: borrowed from the text when it has no escape, decoded
/// otherwise; `None` for any other kind.
pub fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if kind(raw) != Kind::String {
        return None;
    }
    let inner = &text[1..text.len() - 1];
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// True for the JSON literal `true`.
pub fn is_true(raw: &RawValue) -> bool {
    raw.get() == "true"
}

/// A record value that serializes exactly as serde_json writes the same value from a
/// `Value` (keys sorted, compact, its escaping and number formatting), so that a call is
/// the same on the wire whether its traits came from a `Value` or from Salesforce's text.
///
/// A string without a backslash is already in that form (JSON forbids raw control
/// characters and quotes in strings, and serde_json escapes nothing else), and so are
/// `true`, `false` and `null`: their text is written as it is (serde_json writes a
/// `RawValue` verbatim). A string with escapes (Salesforce may write `\/` or `\u00e9`) is
/// decoded and written again; a number is read as serde_json reads it (`1.50` → `1.5`); an
/// object is written with its keys sorted (the last of a repeated key kept, as a parser
/// building a map keeps it) and its values in this form, without building a `Value` tree.
/// `without_attributes` leaves out an object's `attributes` key (Salesforce's type and URL
/// of a nested record or compound field), at its top level only.
pub struct Canonical<'a> {
    pub raw: &'a RawValue,
    pub without_attributes: bool,
}

impl Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.raw.get();
        match kind(self.raw) {
            Kind::Null | Kind::Bool => self.raw.serialize(serializer),
            Kind::String if !text.contains('\\') => self.raw.serialize(serializer),
            Kind::String => match serde_json::from_str::<String>(text) {
                Ok(decoded) => serializer.serialize_str(&decoded),
                Err(_) => self.raw.serialize(serializer),
            },
            Kind::Number => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(number) => number.serialize(serializer),
                Err(_) => self.raw.serialize(serializer),
            },
            Kind::Object => match Fields::of(self.raw) {
                Some(fields) => SortedFields {
                    fields: &fields,
                    without_attributes: self.without_attributes,
                }
                .serialize(serializer),
                None => self.raw.serialize(serializer),
            },
            Kind::Array => match serde_json::from_str::<Vec<&RawValue>>(text) {
                Ok(items) => serializer.collect_seq(items.into_iter().map(|raw| Canonical {
                    raw,
                    without_attributes: false,
                })),
                Err(_) => self.raw.serialize(serializer),
            },
        }
    }
}

/// An object's fields, keys sorted, the last of a repeated key kept.
struct SortedFields<'f, 'a> {
    fields: &'f Fields<'a>,
    without_attributes: bool,
}

impl Serialize for SortedFields<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&str, &RawValue)> = self
            .fields
            .iter()
            .filter(|(name, _)| !(self.without_attributes && *name == "attributes"))
            .collect();
        // Stable: of a repeated key the later stays later, and is the one kept.
        entries.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        let kept = entries
            .iter()
            .enumerate()
            .filter(|(i, (name, _))| entries.get(i + 1).is_none_or(|(next, _)| next != name))
            .map(|(_, (name, raw))| {
                (
                    *name,
                    Canonical {
                        raw,
                        without_attributes: false,
                    },
                )
            });
        serializer.collect_map(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).expect("valid JSON in the test")
    }

    #[test]
    fn fields_keep_the_last_of_a_repeated_name_and_find_other_casings() {
        let text = raw(r#"{"b":1,"Email":"x","email":"y","b":2,"EMAIL":"z"}"#);
        let fields = Fields::of(&text).expect("an object");
        assert_eq!(fields.get("b").map(RawValue::get), Some("2"));
        assert_eq!(fields.get("Email").map(RawValue::get), Some("\"x\""));
        // "eMail" is no key: of the three casings the least in byte order ("EMAIL").
        assert_eq!(fields.get("eMail").map(RawValue::get), Some("\"z\""));
        assert_eq!(fields.recased_key("eMail"), Some("EMAIL"));
        assert_eq!(fields.recased_key("Email"), None);
    }

    #[test]
    fn a_path_through_a_null_parent_is_null_and_through_a_string_is_absent() {
        let text = raw(r#"{"Account":null,"Owner":{"Name":"A\u00e9"},"Title":"t"}"#);
        let fields = Fields::of(&text).expect("an object");
        assert_eq!(
            fields.lookup("Account.Name").map(RawValue::get),
            Some("null")
        );
        let owner = fields
            .lookup("owner.name")
            .expect("recased parent and field");
        assert_eq!(as_str(owner).as_deref(), Some("Aé"));
        assert!(fields.lookup("Title.Name").is_none());
        assert!(fields.lookup("Missing").is_none());
    }

    #[test]
    fn not_an_object_has_no_fields() {
        for text in ["[1]", "\"x\"", "null", "1"] {
            assert!(Fields::of(&raw(text)).is_none(), "{text}");
        }
    }

    #[test]
    fn canonical_text_is_what_serde_json_writes_from_a_value() {
        let cases = [
            r#""plain é 🚀""#,
            r#""a\/b \u00e9 \"q\" \n""#,
            "1.50",
            "1e3",
            "-0",
            "12345678901234567890",
            "true",
            "null",
            r#"{ "b" : [1, "\u0001", {"d":1,"c":"\/"}], "a" : {"z":1,"y":2,"z":3} }"#,
        ];
        for text in cases {
            let value: Value = serde_json::from_str(text).expect("valid");
            let raw = raw(text);
            let canonical = Canonical {
                raw: &raw,
                without_attributes: false,
            };
            assert_eq!(
                serde_json::to_string(&canonical).expect("writes"),
                serde_json::to_string(&value).expect("writes"),
                "{text}"
            );
        }
    }

    #[test]
    fn canonical_text_of_a_compound_field_leaves_out_its_attributes() {
        let text =
            raw(r#"{"attributes":{"type":"Address"},"City":"Paris","Geo":{"attributes":1}}"#);
        let canonical = Canonical {
            raw: &text,
            without_attributes: true,
        };
        let written = serde_json::to_string(&canonical).expect("writes");
        assert_eq!(written, r#"{"City":"Paris","Geo":{"attributes":1}}"#);
    }

    #[test]
    fn a_record_from_a_value_equals_the_same_json_in_another_order() {
        let a = Record::from_value(&json!({"Id": "1", "Name": "n"}));
        let b = Record::from_raw(raw(r#"{ "Name": "n", "Id": "1" }"#)).expect("valid");
        assert_eq!(a, b);
        assert_eq!(b.string_field("Id").as_deref(), Some("1"));
        assert!(!b.is_deleted());
        assert!(Record::from_value(&json!({"Id": "1", "IsDeleted": true})).is_deleted());
        assert!(!Record::from_value(&json!({"Id": "1", "IsDeleted": false})).is_deleted());
        let nested = Record::from_value(&json!({"Id": "1", "Account": {"IsDeleted": true}}));
        assert!(!nested.is_deleted(), "only the record's own field counts");
        assert_ne!(a, Record::from_value(&json!({"Id": "2"})));
    }

    #[test]
    fn a_record_a_value_parser_refuses_is_refused() {
        let deep = format!(
            "{{\"Id\":\"1\",\"X\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        for (text, why) in [
            (r#"{"Id":"\ud800"}"#.to_string(), "escape"),
            (r#"{"Id":"1","Score__c":1e400}"#.to_string(), "out of range"),
            (
                format!(r#"{{"Id":"1","N":{}}}"#, "9".repeat(400)),
                "out of range",
            ),
            (deep, "recursion limit"),
            (
                "{\n\"Id\":\"1\",\n\"N\":-1e400}".to_string(),
                "out of range",
            ),
        ] {
            let page = format!(r#"{{"records":[{text}]}}"#);
            let err = serde_json::from_str::<serde_json::Map<String, Value>>(&page)
                .expect_err("a Value parser refuses it");
            assert!(err.to_string().contains(why), "{err}");
            #[derive(Debug, Deserialize)]
            struct Page {
                #[allow(dead_code)]
                records: Vec<Record>,
            }
            let err = serde_json::from_str::<Page>(&page).expect_err("refused");
            assert!(err.to_string().contains("a record's text"), "{err}");
            assert!(err.to_string().contains(why), "{err}");
        }
        let fine: Record =
            serde_json::from_str(r#"{"Id":"\u00e9\ud83d\ude80","N":1e300}"#).expect("valid");
        assert_eq!(fine.string_field("Id").as_deref(), Some("é🚀"));
        let escaped = Record::from_value(&json!({"Id": "1", "IsDeleted": true}));
        let escaped_name: Record =
            serde_json::from_str(&escaped.json().replace("IsDeleted", "Is\\u0044eleted"))
                .expect("valid");
        assert!(escaped_name.is_deleted(), "{escaped_name:?}");
    }

    #[test]
    fn a_record_spread_over_lines_is_kept_on_one() {
        let page = "{\"records\": [\n  {\n    \"Id\": \"1\",\n    \"Note\": \"a\\nb\"\n  }\n]}";
        #[derive(Deserialize)]
        struct Page {
            records: Vec<Record>,
        }
        let page: Page = serde_json::from_str(page).expect("valid");
        assert_eq!(page.records[0].json(), r#"{"Id":"1","Note":"a\nb"}"#);
        let compact = Record::from_raw(raw(r#"{"Id" : "1"}"#)).expect("valid");
        assert_eq!(compact.json(), r#"{"Id" : "1"}"#, "kept as sent");
    }
}
