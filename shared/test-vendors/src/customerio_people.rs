//! Customer.io's people, as its Track API v2 `POST /api/v2/batch` keeps them
//! (docs.customer.io/integrations/api/track/, v2 `batch` and its `person` operations), for
//! tests that must assert how many profiles a delivery leaves and what they hold. Each
//! operation is applied as Customer.io documents it:
//! - `identify` "adds or updates a person": it creates the person if missing and sets the
//!   `attributes` it carries (optional in the `identify_person` schema: without them
//!   nothing else changes);
//! - `event` adds to the person's activity (an event `id` is kept once);
//! - `merge` "merges `secondary` into `primary`, then deletes `secondary`": attributes "not
//!   set, or empty, on the primary" come from the secondary, and so does its event history
//!   ("Merge duplicate people"; the 30-day window is not modelled). "If the primary profile
//!   doesn't exist, your request won't do anything" — the API answers 200 all the same —
//!   and, as the same page warns, "if you identify a person and send a request to this
//!   endpoint immediately, the primary profile might not exist when we process your merge
//!   request": a primary created less than [`PROCESSING_LAG`] before the merge is treated
//!   as missing. Both are recorded in [`People::ignored`]. A secondary that does not exist
//!   leaves nothing to merge: nothing changes;
//! - `delete` removes the person and their activity.
//!
//! The servers that hold a [`People`] check `Authorization: Basic base64(SITE_ID:API_KEY)`
//! (else 401) and answer every batch 200: the API does not say when a merge did nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// How long after an identify creates a person a merge can see them. Customer.io documents
/// the race without a figure; this one is ours, below sfsync's wait between the two.
pub const PROCESSING_LAG: Duration = Duration::from_millis(250);

/// What Customer.io holds of its people.
#[derive(Debug, Default, Clone)]
pub struct People {
    /// Profiles by `id`, with their attributes.
    pub profiles: BTreeMap<String, Map<String, Value>>,
    /// Each person's events (`event` operations), by person id.
    pub events: BTreeMap<String, Vec<Value>>,
    /// Operations accepted with 200 that changed nothing, with why.
    pub ignored: Vec<(Value, String)>,
    /// Every operation, in arrival order.
    pub operations: Vec<Value>,
    /// When each person was created.
    created: HashMap<String, Instant>,
}

impl People {
    /// The ids of the people held, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// Applies every operation of a v2 `batch` request body (`{"batch": [...]}`) that
    /// arrived at `now`.
    pub fn apply_batch(&mut self, body: &Value, now: Instant) {
        for op in body["batch"].as_array().into_iter().flatten() {
            self.apply(op.clone(), now);
        }
    }

    /// Applies one operation that arrived at `now`.
    pub fn apply(&mut self, op: Value, now: Instant) {
        self.operations.push(op.clone());
        if op["type"] != "person" {
            return;
        }
        match op["action"].as_str() {
            Some("identify") => {
                let Some(who) = id(&op["identifiers"]) else {
                    self.ignored.push((op, "no identifiers.id".into()));
                    return;
                };
                self.created.entry(who.clone()).or_insert(now);
                let profile = self.profiles.entry(who).or_default();
                if let Some(attributes) = op["attributes"].as_object() {
                    profile.extend(attributes.clone());
                }
            }
            Some("event") => {
                let Some(who) = id(&op["identifiers"]) else {
                    self.ignored.push((op, "no identifiers.id".into()));
                    return;
                };
                let events = self.events.entry(who).or_default();
                if !events.iter().any(|e| e["id"] == op["id"]) {
                    events.push(op);
                }
            }
            Some("merge") => self.merge(op, now),
            Some("delete") => {
                if let Some(who) = id(&op["identifiers"]) {
                    self.profiles.remove(&who);
                    self.events.remove(&who);
                    self.created.remove(&who);
                }
            }
            _ => {}
        }
    }

    fn merge(&mut self, op: Value, now: Instant) {
        let (Some(primary), Some(secondary)) = (id(&op["primary"]), id(&op["secondary"])) else {
            self.ignored
                .push((op, "merge needs primary.id and secondary.id".into()));
            return;
        };
        match self.created.get(&primary) {
            None => {
                self.ignored
                    .push((op, format!("primary {primary} does not exist")));
                return;
            }
            Some(at) if now.duration_since(*at) < PROCESSING_LAG => {
                self.ignored.push((
                    op,
                    format!("primary {primary} not processed yet (identified just before)"),
                ));
                return;
            }
            Some(_) => {}
        }
        self.created.remove(&secondary);
        let history = self.events.remove(&secondary).unwrap_or_default();
        self.events
            .entry(primary.clone())
            .or_default()
            .extend(history);
        let Some(old) = self.profiles.remove(&secondary) else {
            return;
        };
        let profile = self.profiles.entry(primary).or_default();
        for (k, v) in old {
            if profile.get(&k).is_none_or(Value::is_null) {
                profile.insert(k, v);
            }
        }
    }
}

/// The `id` of an `identifiers`, `primary` or `secondary` object.
fn id(v: &Value) -> Option<String> {
    v["id"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identify(id: &str, attributes: Value) -> Value {
        json!({"type": "person", "action": "identify", "identifiers": {"id": id}, "attributes": attributes})
    }

    fn merge(primary: &str, secondary: &str) -> Value {
        json!({"type": "person", "action": "merge", "primary": {"id": primary}, "secondary": {"id": secondary}})
    }

    fn event(id: &str, event_id: &str) -> Value {
        json!({"type": "person", "action": "event", "identifiers": {"id": id}, "name": "Signed Up", "id": event_id})
    }

    #[test]
    fn a_merge_moves_the_events_and_only_the_attributes_the_primary_lacks() {
        let t0 = Instant::now();
        let mut people = People::default();
        people.apply(identify("p", json!({"email": "p@x", "Title": null})), t0);
        people.apply(
            identify("s", json!({"email": "s@x", "Title": "CTO", "Co": "A"})),
            t0,
        );
        people.apply(event("s", "e1"), t0);
        people.apply(event("s", "e1"), t0);
        people.apply(merge("p", "s"), t0 + PROCESSING_LAG);
        assert!(people.ignored.is_empty(), "{:?}", people.ignored);
        assert_eq!(people.ids(), ["p"]);
        let p = &people.profiles["p"];
        assert_eq!(p["email"], "p@x", "the primary's own value stays");
        assert_eq!(
            p["Title"], "CTO",
            "an empty attribute comes from the secondary"
        );
        assert_eq!(p["Co"], "A", "a missing attribute comes from the secondary");
        assert_eq!(people.events["p"].len(), 1, "events move, each id once");
        assert!(!people.events.contains_key("s"));
    }

    #[test]
    fn a_merge_into_a_missing_or_just_created_primary_is_ignored() {
        let t0 = Instant::now();
        let mut people = People::default();
        people.apply(identify("s", json!({"email": "s@x"})), t0);
        people.apply(merge("p", "s"), t0 + PROCESSING_LAG);
        people.apply(identify("p", json!({})), t0 + PROCESSING_LAG);
        people.apply(merge("p", "s"), t0 + PROCESSING_LAG + PROCESSING_LAG / 2);
        let why: Vec<&str> = people.ignored.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            why,
            [
                "primary p does not exist",
                "primary p not processed yet (identified just before)"
            ]
        );
        assert!(people.profiles.contains_key("s"), "nothing merged");
        assert_eq!(people.operations.len(), 4);
    }

    #[test]
    fn a_batch_applies_each_operation_and_a_delete_removes_the_person() {
        let t0 = Instant::now();
        let mut people = People::default();
        let body = json!({"batch": [identify("a", json!({"x": 1})), event("a", "e"),
            {"type": "person", "action": "delete", "identifiers": {"id": "a"}},
            identify("b", json!({}))]});
        people.apply_batch(&body, t0);
        assert_eq!(people.profiles.keys().collect::<Vec<_>>(), ["b"]);
        assert!(people.events.is_empty());
        assert_eq!(people.operations.len(), 4);
    }
}
