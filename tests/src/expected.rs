//! What must arrive at a destination for an org's records, written down from the mapping
//! spec rather than computed by the production mapper (`map_record`): a mapper that drops
//! or alters a field cannot also move what the tests expect.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sfsync_mapping::Config;
use sfsync_simulator::{Org, SimulatorHandle};

/// The message ids of the `calls` that carry the current version of every live record of
/// `config`'s sync `sync` (over `object`) in the simulator's org, as [`EXPECTED_CALLS`]
/// writes down they must arrive; a record no call carries counts as `missing …`.
pub fn expected_ids(
    config: &Config,
    sync: &str,
    object: &str,
    sim: &SimulatorHandle,
    calls: &[Value],
) -> HashSet<String> {
    let fields = config
        .sync(sync)
        .map(|s| s.fields.clone())
        .unwrap_or_else(|| panic!("no sync {sync}"));
    let shape = ExpectedShape::of(sync);
    assert_eq!(shape.object, object, "sync {sync}");
    let org = sim.org();
    let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    shape.in_org(&org, fields).expected_ids(&org, calls)
}

/// How a live record of one of the test configs' syncs must arrive, written down from the
/// mapping spec (customerio-salesforce-mapping.md, "Reserved traits": `Email` → `email`,
/// `FirstName` → `firstName`, …, other fields and relationship paths keep their names) and
/// the Segment spec (people → `identify` with `userId`, objects → `group` with `groupId`;
/// `timestamp` = the record version, its SystemModstamp). Independent of `map_record`, so
/// a mapper that drops or alters a field cannot also move what the tests expect.
pub struct ExpectedShape {
    pub sync: &'static str,
    pub object: &'static str,
    pub call_type: &'static str,
    /// (call key, record field): `userId` ← `Id` for people; both ids for relationships.
    pub ids: &'static [(&'static str, &'static str)],
    /// (Salesforce field or relationship path, trait); `a/b` is trait `b` inside the
    /// object trait `a` (a trait name itself may hold a dot: `Account.Name`).
    pub traits: &'static [(&'static str, &'static str)],
    /// The parent a relationship path reads: (relationship, lookup field, object), e.g.
    /// `Account.Name` is the `Name` of the Account whose Id is in `AccountId`.
    pub parent: Option<(&'static str, &'static str, &'static str)>,
}

pub const EXPECTED_CALLS: &[ExpectedShape] = &[
    ExpectedShape {
        sync: "contacts",
        object: "Contact",
        call_type: "identify",
        ids: &[("userId", "Id")],
        traits: &[
            ("Email", "email"),
            ("FirstName", "firstName"),
            ("LastName", "lastName"),
            ("Description", "description"),
            ("Account.Name", "Account.Name"),
        ],
        parent: Some(("Account", "AccountId", "Account")),
    },
    ExpectedShape {
        sync: "accounts",
        object: "Account",
        call_type: "group",
        ids: &[("groupId", "Id")],
        traits: &[("Name", "name"), ("Industry", "Industry")],
        parent: None,
    },
    // A relationship: a group call naming both sides, its fields as they are under
    // `relationshipAttributes` (Customer.io Data Pipelines' relationship form).
    ExpectedShape {
        sync: "relations",
        object: "AccountContactRelation",
        call_type: "group",
        ids: &[("userId", "ContactId"), ("groupId", "AccountId")],
        traits: &[
            ("IsDirect", "relationshipAttributes/IsDirect"),
            ("Roles", "relationshipAttributes/Roles"),
        ],
        parent: None,
    },
];

impl ExpectedShape {
    /// The shape written down for `sync`.
    pub fn of(sync: &str) -> &'static ExpectedShape {
        EXPECTED_CALLS
            .iter()
            .find(|s| s.sync == sync)
            .unwrap_or_else(|| panic!("no expected calls written down for sync {sync}"))
    }

    /// This shape for a sync that selects `fields` (only their traits are expected), with
    /// the org's live parent records its relationship paths read.
    pub fn in_org(&'static self, org: &Org, fields: Vec<String>) -> ShapeInOrg {
        let parents = self
            .parent
            .map(|(_, _, object)| {
                org.records(object)
                    .into_iter()
                    .filter_map(|r| Some((r["Id"].as_str()?.to_string(), r)))
                    .collect()
            })
            .unwrap_or_default();
        ShapeInOrg {
            shape: self,
            fields,
            parents,
        }
    }
}

/// An [`ExpectedShape`] and the parent records (by Id) its relationship paths read.
pub struct ShapeInOrg {
    pub shape: &'static ExpectedShape,
    /// The fields the sync selects.
    fields: Vec<String>,
    parents: HashMap<String, Value>,
}

impl ShapeInOrg {
    /// The messageId of the call among `calls` that carries `record`'s current version.
    pub fn find(&self, record: &Value, calls: &[Value]) -> Option<String> {
        let shape = self.shape;
        let version = record["SystemModstamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
            .unwrap_or_else(|| panic!("a record without SystemModstamp: {record}"));
        calls
            .iter()
            .find(|call| {
                call["type"] == shape.call_type
                    && shape
                        .ids
                        .iter()
                        .all(|(key, field)| call[*key] == record[*field])
                    && call["timestamp"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        == Some(version)
                    && self
                        .traits()
                        .all(|(path, name)| trait_at(call, name) == self.value_at(record, path))
            })
            .and_then(|call| call["messageId"].as_str().map(str::to_string))
    }

    /// What stands for a record no call carries, saying how the closest call (same id)
    /// differs, for the failure message.
    pub fn missing(&self, record: &Value, calls: &[Value]) -> String {
        let shape = self.shape;
        let id = &record["Id"];
        let same_ids = |c: &&Value| {
            shape
                .ids
                .iter()
                .all(|(key, field)| c[*key] == record[*field])
        };
        let Some(call) = calls.iter().rev().find(same_ids) else {
            return format!("missing {} {id}: no call", shape.sync);
        };
        let mut diffs = vec![format!(
            "type {} timestamp {} (SystemModstamp {})",
            call["type"], call["timestamp"], record["SystemModstamp"]
        )];
        for (path, name) in self.traits() {
            let want = self.value_at(record, path);
            let got = trait_at(call, name);
            if got != want {
                diffs.push(format!("{name}: {got} != {want}"));
            }
        }
        format!("missing {} {id}: {}", shape.sync, diffs.join("; "))
    }

    /// (field, trait) of the fields the sync selects.
    fn traits(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.shape
            .traits
            .iter()
            .copied()
            .filter(|(path, _)| self.fields.iter().any(|f| f.eq_ignore_ascii_case(path)))
    }

    /// The message ids of the calls that carry the current version of every live record
    /// of the shape's object (a record no call carries counts as `missing …`).
    pub fn expected_ids(&self, org: &Org, calls: &[Value]) -> HashSet<String> {
        org.records(self.shape.object)
            .iter()
            .map(|record| {
                self.find(record, calls)
                    .unwrap_or_else(|| self.missing(record, calls))
            })
            .collect()
    }

    /// A record's value at a field or relationship path (`Account.Name`: the parent's
    /// `Name`); null when the parent is null or not a live record.
    fn value_at(&self, record: &Value, path: &str) -> Value {
        match (self.shape.parent, path.split_once('.')) {
            (Some((relationship, lookup, _)), Some((head, rest))) if head == relationship => record
                [lookup]
                .as_str()
                .and_then(|id| self.parents.get(id))
                .map_or(Value::Null, |parent| field_at(parent, rest)),
            _ => field_at(record, path),
        }
    }
}

/// A record's value at a field or relationship path (`Account.Name`): null when a parent
/// on the way is null.
fn field_at(record: &Value, path: &str) -> Value {
    path.split('.')
        .try_fold(record, |value, name| {
            value.get(name).filter(|v| !v.is_null())
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// A call's trait at `name`, where `a/b` is `b` inside the object trait `a`; null if absent.
fn trait_at(call: &Value, name: &str) -> Value {
    name.split('/')
        .try_fold(&call["traits"], |value, key| value.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}
