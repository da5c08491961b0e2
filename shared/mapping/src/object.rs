//! A call's `traits` or `properties`: a JSON object held as its text, written the way
//! serde_json writes a `Map<String, Value>` (keys in sorted order, compact).
//!
//! The mapping writes the selected fields' text straight into it ([`ObjectBuilder`]) and
//! the Segment-spec encoder copies it into the request body as it is, so a record's values
//! are never built into a tree on the hot path (issue 16). Because the text is always in
//! serde_json's own form, a call is byte for byte the same on the wire as when its traits
//! were a `Map`, and two objects are equal exactly when their texts are. Destinations that
//! read single values (Amplitude, Mixpanel, Customer.io's Track API) ask for the map.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::record::{write_canonical, write_str, write_value};

/// A JSON object's text, in serde_json's form.
#[derive(Clone)]
pub struct JsonObject(Box<RawValue>);

/// Equal texts: the form is serde_json's, so equal maps have equal texts.
impl PartialEq for JsonObject {
    fn eq(&self, other: &JsonObject) -> bool {
        self.json() == other.json()
    }
}

impl Eq for JsonObject {}

impl JsonObject {
    /// The object of `map`.
    pub fn from_map(map: &Map<String, Value>) -> JsonObject {
        let mut out = Vec::with_capacity(64);
        // Writing a map of `Value`s into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut out, map);
        JsonObject::from_written(out)
    }

    /// `{}`.
    pub fn empty() -> JsonObject {
        JsonObject::from_written(b"{}".to_vec())
    }

    /// Text this module wrote: valid UTF-8 JSON in serde_json's form.
    fn from_written(bytes: Vec<u8>) -> JsonObject {
        let text = String::from_utf8(bytes).unwrap_or_else(|_| "{}".to_string());
        JsonObject(RawValue::from_string(text).unwrap_or_else(|_| empty_raw()))
    }

    /// The object's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    pub fn is_empty(&self) -> bool {
        self.json() == "{}"
    }

    /// The object as a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text is always a JSON object written by serde_json.
        serde_json::from_str(self.json()).unwrap_or_default()
    }

    /// One member's value.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }
}

fn empty_raw() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl From<Map<String, Value>> for JsonObject {
    fn from(map: Map<String, Value>) -> JsonObject {
        JsonObject::from_map(&map)
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

/// Written as its text, unchanged.
impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Read as a map and written again in serde_json's form, so that an object from elsewhere
/// (a hand-written call, another tool's spacing or key order) is held like one sfsync
/// wrote; anything but an object is an error.
impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::<String, Value>::deserialize(deserializer).map(JsonObject::from)
    }
}

/// One member of an object being built.
enum Member<'a> {
    /// A record value's text, written in serde_json's form; `true`: without `attributes`.
    Raw(&'a RawValue, bool),
    Value(Value),
    /// An object this module already wrote.
    Object(JsonObject),
}

/// Builds a [`JsonObject`] from (name, value) members added in any order: they are
/// sorted by name, and of two with one name the later one is kept, as inserting them into
/// a map one by one would.
#[derive(Default)]
pub struct ObjectBuilder<'a> {
    members: Vec<(Cow<'a, str>, Member<'a>)>,
}

impl<'a> ObjectBuilder<'a> {
    pub fn with_capacity(n: usize) -> ObjectBuilder<'a> {
        ObjectBuilder {
            members: Vec::with_capacity(n),
        }
    }

    /// A record value, as its text (`without_attributes`: a nested record or compound field
    /// loses Salesforce's `attributes`).
    pub fn raw(&mut self, name: impl Into<Cow<'a, str>>, value: &'a RawValue, without_attributes: bool) {
        self.members
            .push((name.into(), Member::Raw(value, without_attributes)));
    }

    pub fn value(&mut self, name: impl Into<Cow<'a, str>>, value: Value) {
        self.members.push((name.into(), Member::Value(value)));
    }

    pub fn object(&mut self, name: impl Into<Cow<'a, str>>, value: JsonObject) {
        self.members.push((name.into(), Member::Object(value)));
    }

    pub fn build(mut self) -> JsonObject {
        // Stable: of equal names the later stays later, and is the one kept below.
        self.members.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        let mut out = Vec::with_capacity(32 * self.members.len() + 2);
        out.push(b'{');
        let mut first = true;
        for (i, (name, member)) in self.members.iter().enumerate() {
            if self.members.get(i + 1).is_some_and(|(next, _)| next == name) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(&mut out, name);
            out.push(b':');
            match member {
                Member::Raw(raw, without_attributes) => {
                    write_canonical(&mut out, raw, *without_attributes)
                }
                Member::Value(value) => write_value(&mut out, value),
                Member::Object(object) => out.extend_from_slice(object.json().as_bytes()),
            }
        }
        out.push(b'}');
        JsonObject::from_written(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_objects_are_what_serde_json_writes_for_the_same_map() {
        let city = RawValue::from_string(r#"{"attributes":{"type":"Address"},"City":"P\u00e9"}"#.into())
            .expect("valid");
        let name = RawValue::from_string(r#""Zo\u00eb""#.into()).expect("valid");
        let mut builder = ObjectBuilder::default();
        builder.raw("name", &name, false);
        builder.value("created_at", json!(1_700_000_000));
        builder.raw("MailingAddress", &city, true);
        builder.value("name", json!("later wins"));
        builder.object("nested", JsonObject::from_map(&Map::new()));
        let built = builder.build();
        let expected = json!({
            "name": "later wins",
            "created_at": 1_700_000_000,
            "MailingAddress": {"City": "Pé"},
            "nested": {},
        });
        assert_eq!(built.json(), serde_json::to_string(&expected).expect("writes"));
        assert_eq!(Value::Object(built.to_map()), expected);
    }

    #[test]
    fn an_object_read_from_elsewhere_is_held_in_serde_jsons_form() {
        let read: JsonObject = serde_json::from_str(r#"{ "b" : "\/x", "a" : 1.50 }"#).expect("an object");
        assert_eq!(read.json(), r#"{"a":1.5,"b":"/x"}"#);
        assert_eq!(serde_json::to_string(&read).expect("writes"), read.json());
        let from_value: JsonObject = serde_json::from_value(json!({"k": [1]})).expect("an object");
        assert_eq!(from_value.json(), r#"{"k":[1]}"#);
        let err = serde_json::from_str::<JsonObject>("[1]").expect_err("not an object");
        assert!(err.to_string().contains("map"), "{err}");
    }
}
