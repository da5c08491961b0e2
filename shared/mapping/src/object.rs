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

use crate::record::Canonical;

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
        JsonObject::written(map)
    }

    /// `{}`.
    pub fn empty() -> JsonObject {
        JsonObject::written(&Map::new())
    }

    /// What serde_json writes for `object` (a map, or an [`ObjectBuilder`]): its own text,
    /// taken as it is (`to_raw_value` does not parse what it just wrote).
    fn written(object: &impl Serialize) -> JsonObject {
        // Writing maps of strings and `Value`s, and record values, cannot fail.
        JsonObject(serde_json::value::to_raw_value(object).unwrap_or_else(|_| empty_raw()))
    }

    /// The object's JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
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
    pub fn raw(
        &mut self,
        name: impl Into<Cow<'a, str>>,
        value: &'a RawValue,
        without_attributes: bool,
    ) {
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
        // Stable: of equal names the later stays later, and is the one kept.
        self.members
            .sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        JsonObject::written(&self)
    }
}

/// The members, in order, the last of a repeated name kept (the builder sorted them).
impl Serialize for ObjectBuilder<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let members = &self.members;
        let kept = members
            .iter()
            .enumerate()
            .filter(|(i, (name, _))| members.get(i + 1).is_none_or(|(next, _)| next != name))
            .map(|(_, (name, member))| (name.as_ref(), member));
        serializer.collect_map(kept)
    }
}

impl Serialize for Member<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Member::Raw(raw, without_attributes) => Canonical {
                raw,
                without_attributes: *without_attributes,
            }
            .serialize(serializer),
            Member::Value(value) => value.serialize(serializer),
            Member::Object(object) => object.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_objects_are_what_serde_json_writes_for_the_same_map() {
        let city =
            RawValue::from_string(r#"{"attributes":{"type":"Address"},"City":"P\u00e9"}"#.into())
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
        assert_eq!(
            built.json(),
            serde_json::to_string(&expected).expect("writes")
        );
        assert_eq!(Value::Object(built.to_map()), expected);
    }

    #[test]
    fn an_object_read_from_elsewhere_is_held_in_serde_jsons_form() {
        let read: JsonObject =
            serde_json::from_str(r#"{ "b" : "\/x", "a" : 1.50 }"#).expect("an object");
        assert_eq!(read.json(), r#"{"a":1.5,"b":"/x"}"#);
        assert_eq!(serde_json::to_string(&read).expect("writes"), read.json());
        let from_value: JsonObject = serde_json::from_value(json!({"k": [1]})).expect("an object");
        assert_eq!(from_value.json(), r#"{"k":[1]}"#);
        let err = serde_json::from_str::<JsonObject>("[1]").expect_err("not an object");
        assert!(err.to_string().contains("map"), "{err}");
    }
}
