//! The parts of Salesforce's describe results sfsync uses. Unknown keys are ignored and
//! every key has a default, so a newer API version cannot break parsing.

use serde::{Deserialize, Serialize};

/// `GET /services/data/vXX.X/sobjects`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GlobalDescribe {
    pub encoding: Option<String>,
    pub max_batch_size: Option<u64>,
    pub sobjects: Vec<SObjectSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SObjectSummary {
    pub name: String,
    pub label: String,
    pub custom: bool,
    pub queryable: bool,
    pub replicateable: bool,
    pub retrieveable: bool,
    pub deletable: bool,
    pub key_prefix: Option<String>,
}

impl GlobalDescribe {
    /// The object named `name`, case-insensitively.
    pub fn object(&self, name: &str) -> Option<&SObjectSummary> {
        self.sobjects
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(name))
    }

    /// The object whose ids start with the 3-character prefix of `id`.
    pub fn object_for_id(&self, id: &str) -> Option<&SObjectSummary> {
        let prefix = id.get(..3)?;
        self.sobjects
            .iter()
            .find(|o| o.key_prefix.as_deref() == Some(prefix))
    }
}

/// `GET /services/data/vXX.X/sobjects/{Object}/describe`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectDescribe {
    pub name: String,
    pub label: String,
    pub custom: bool,
    pub queryable: bool,
    pub replicateable: bool,
    pub key_prefix: Option<String>,
    pub fields: Vec<FieldDescribe>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldDescribe {
    pub name: String,
    pub label: String,
    /// `id`, `reference`, `string`, `boolean`, `int`, `double`, `datetime`, `address`, …
    #[serde(rename = "type")]
    pub field_type: String,
    pub nillable: bool,
    pub custom: bool,
    pub calculated: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    /// Set on the parts of a compound field (`MailingCity` → `MailingAddress`).
    pub compound_field_name: Option<String>,
}

impl ObjectDescribe {
    /// The field named `name`, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The reference field whose `relationshipName` is `name` (`Account` → `AccountId`).
    pub fn relationship(&self, name: &str) -> Option<&FieldDescribe> {
        self.fields.iter().find(|f| {
            f.relationship_name
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(name))
        })
    }

    /// Every relationship name of the object.
    pub fn relationship_names(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter_map(|f| f.relationship_name.as_deref())
    }
}

impl FieldDescribe {
    /// Compound fields (address, location) cannot be queried by Bulk API 2.0.
    pub fn is_compound(&self) -> bool {
        matches!(self.field_type.as_str(), "address" | "location")
    }
}
