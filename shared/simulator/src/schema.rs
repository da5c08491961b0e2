//! Describe metadata of the simulated org: which objects and fields exist, their types, and
//! where each field's value lives in a stored row. The objects themselves are data
//! (`schema/objects.rs`); this module turns them into describe answers.

use std::collections::HashMap;

use serde_json::{Value, json};

mod objects;

pub(crate) use objects::{
    ACR_ROLES, LEAD_SOURCES, LEAD_STATUSES, NAME_ENTITY_FIELDS, PROJECT_STATUSES, STAGES,
};
use objects::{Entry, Field, OBJECTS, ObjectSpec};

/// A field's describe `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Reference,
    String,
    TextArea,
    Email,
    Phone,
    Url,
    Picklist,
    MultiPicklist,
    Combobox,
    Boolean,
    Int,
    Double,
    Currency,
    Percent,
    Date,
    DateTime,
    Address,
}

impl FieldType {
    pub(crate) fn api_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::TextArea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Url => "url",
            FieldType::Picklist => "picklist",
            FieldType::MultiPicklist => "multipicklist",
            FieldType::Combobox => "combobox",
            FieldType::Boolean => "boolean",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Currency => "currency",
            FieldType::Percent => "percent",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Address => "address",
        }
    }

    fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::Int => "xsd:int",
            FieldType::Double | FieldType::Currency | FieldType::Percent => "xsd:double",
            FieldType::Date => "xsd:date",
            FieldType::DateTime => "xsd:dateTime",
            FieldType::Address => "urn:address",
            _ => "xsd:string",
        }
    }

    /// The kind of SOQL literal a filter on this type needs.
    pub(crate) fn literal_kind(self) -> LiteralKind {
        match self {
            FieldType::Boolean => LiteralKind::Boolean,
            FieldType::Int => LiteralKind::Integer,
            FieldType::Double | FieldType::Currency | FieldType::Percent => LiteralKind::Double,
            FieldType::Date => LiteralKind::Date,
            FieldType::DateTime => LiteralKind::DateTime,
            FieldType::Address => LiteralKind::NotFilterable,
            _ => LiteralKind::String,
        }
    }

    /// Ids compare byte-wise; every other text compares without case.
    pub(crate) fn is_id_like(self) -> bool {
        matches!(self, FieldType::Id | FieldType::Reference)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LiteralKind {
    String,
    Boolean,
    Integer,
    Double,
    Date,
    DateTime,
    NotFilterable,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Storage {
    /// A column of the stored row.
    Column(usize),
    /// The read-only compound `Name` of a person: its parts joined by spaces.
    FullName(Vec<usize>),
    /// A compound address: columns street, city, state, postalCode, country, latitude,
    /// longitude, geocodeAccuracy.
    Address([usize; 8]),
}

#[derive(Debug, Clone)]
pub(crate) struct FieldDef {
    pub name: String,
    pub label: String,
    pub ty: FieldType,
    pub nillable: bool,
    pub reference_to: Vec<String>,
    pub relationship_name: Option<String>,
    pub calculated: bool,
    pub custom: bool,
    pub compound_field_name: Option<String>,
    pub createable: bool,
    pub picklist: Vec<&'static str>,
    pub length: u32,
    pub storage: Storage,
}

impl FieldDef {
    pub(crate) fn column(&self) -> Option<usize> {
        match self.storage {
            Storage::Column(c) => Some(c),
            _ => None,
        }
    }

    fn describe(&self) -> Value {
        let is_text = matches!(self.ty.literal_kind(), LiteralKind::String);
        let (precision, scale) = match self.ty {
            FieldType::Currency | FieldType::Double => (18, 2),
            FieldType::Percent => (3, 0),
            FieldType::Int => (9, 0),
            _ => (0, 0),
        };
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.ty.api_name(),
            "soapType": self.ty.soap_type(),
            "length": if is_text { self.length } else { 0 },
            "byteLength": if is_text { self.length * 3 } else { 0 },
            "precision": precision,
            "scale": scale,
            "digits": 0,
            "nillable": self.nillable,
            "calculated": self.calculated,
            "calculatedFormula": Value::Null,
            "custom": self.custom,
            "compoundFieldName": self.compound_field_name,
            "createable": self.createable,
            "updateable": self.createable,
            "filterable": self.ty != FieldType::Address,
            "sortable": !matches!(self.ty, FieldType::Address | FieldType::TextArea | FieldType::MultiPicklist),
            "groupable": is_text,
            "unique": false,
            "externalId": false,
            "idLookup": matches!(self.ty, FieldType::Id | FieldType::Email),
            "nameField": self.name == "Name",
            "namePointing": self.reference_to.len() > 1,
            "polymorphicForeignKey": self.reference_to.len() > 1,
            "referenceTo": self.reference_to,
            "relationshipName": self.relationship_name,
            "defaultedOnCreate": matches!(self.ty, FieldType::Boolean) || self.name == "OwnerId",
            "picklistValues": self.picklist.iter().map(|v| json!({
                "active": true, "defaultValue": false, "label": v, "validFor": null, "value": v
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ObjectDef {
    pub name: String,
    pub label: String,
    pub label_plural: String,
    pub key_prefix: &'static str,
    pub custom: bool,
    pub fields: Vec<FieldDef>,
    by_lower: HashMap<String, usize>,
    by_relationship: HashMap<String, usize>,
    pub n_columns: usize,
    pub col_id: usize,
    pub col_modstamp: usize,
    pub col_last_modified: usize,
    pub col_is_deleted: Option<usize>,
    /// CampaignMember has no Recycle Bin: its deletes are always hard.
    pub soft_deletable: bool,
}

impl ObjectDef {
    pub(crate) fn field(&self, name: &str) -> Option<&FieldDef> {
        self.by_lower
            .get(&name.to_ascii_lowercase())
            .and_then(|i| self.fields.get(*i))
    }

    pub(crate) fn field_index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    /// The reference field whose relationship is `rel` (`Account` → `AccountId`).
    pub(crate) fn relationship(&self, rel: &str) -> Option<&FieldDef> {
        self.by_relationship
            .get(&rel.to_ascii_lowercase())
            .and_then(|i| self.fields.get(*i))
    }

    pub(crate) fn column(&self, name: &str) -> Option<usize> {
        self.field(name).and_then(FieldDef::column)
    }

    fn urls(&self, version: &str) -> Value {
        let base = format!("/services/data/v{version}/sobjects/{}", self.name);
        json!({
            "sobject": base,
            "describe": format!("{base}/describe"),
            "rowTemplate": format!("{base}/{{ID}}"),
        })
    }

    pub(crate) fn global_entry(&self, version: &str) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "customSetting": false,
            "queryable": true,
            "replicateable": true,
            "retrieveable": true,
            "searchable": true,
            "createable": true,
            "updateable": true,
            "deletable": true,
            "undeletable": self.soft_deletable,
            "layoutable": true,
            "triggerable": true,
            "deprecatedAndHidden": false,
            "urls": self.urls(version),
        })
    }

    pub(crate) fn describe(&self, version: &str, schema: &Schema) -> Value {
        let mut entry = self.global_entry(version);
        let children: Vec<Value> = schema
            .objects
            .iter()
            .flat_map(|o| {
                o.fields
                    .iter()
                    .filter(|f| f.reference_to.contains(&self.name))
                    .map(move |f| {
                        json!({
                            "childSObject": o.name,
                            "field": f.name,
                            "relationshipName": Value::Null,
                            "cascadeDelete": false,
                        })
                    })
            })
            .collect();
        if let Value::Object(map) = &mut entry {
            map.insert(
                "fields".to_string(),
                Value::Array(self.fields.iter().map(FieldDef::describe).collect()),
            );
            map.insert("childRelationships".to_string(), Value::Array(children));
            map.insert("recordTypeInfos".to_string(), Value::Array(Vec::new()));
        }
        entry
    }
}

/// All objects of the org.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    pub objects: Vec<ObjectDef>,
    by_lower: HashMap<String, usize>,
    by_prefix: HashMap<&'static str, usize>,
}

impl Schema {
    pub(crate) fn object_index(&self, name: &str) -> Option<usize> {
        self.by_lower.get(&name.to_ascii_lowercase()).copied()
    }

    pub(crate) fn object(&self, name: &str) -> Option<&ObjectDef> {
        self.object_index(name).and_then(|i| self.objects.get(i))
    }

    /// Which object an id belongs to, from its key prefix.
    pub(crate) fn object_of_id(&self, id: &str) -> Option<usize> {
        id.get(..3).and_then(|p| self.by_prefix.get(p)).copied()
    }

    /// Builds the org's objects. `name_parts` controls whether MiddleName and Suffix exist,
    /// since real orgs only have them when the feature is enabled.
    pub(crate) fn build(name_parts: bool) -> Schema {
        let objects: Vec<ObjectDef> = OBJECTS
            .iter()
            .map(|spec| Builder::object(spec, name_parts))
            .collect();
        let by_lower = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.to_ascii_lowercase(), i))
            .collect();
        let by_prefix = objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o.key_prefix, i))
            .collect();
        Schema {
            objects,
            by_lower,
            by_prefix,
        }
    }
}

/// Accumulates an object's fields, assigning stored columns in declaration order.
struct Builder {
    spec: &'static ObjectSpec,
    fields: Vec<FieldDef>,
    columns: usize,
}

/// `Id` → `Id`, `AccountId` → `Account`, `Tier__c` → `Tier`, `Primary_Contact__c` →
/// `Primary Contact`, `LastModifiedDate` → `Last Modified Date`.
fn label_of(name: &str) -> String {
    let base = name.trim_end_matches("__c").trim_end_matches("Id");
    let base = if base.is_empty() { name } else { base };
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if c == '_' {
            out.push(' ');
            continue;
        }
        if i > 0 && c.is_ascii_uppercase() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A nillable, createable field of type `ty` (the parts of a compound name or address).
fn part(ty: FieldType, picklist: &'static [&'static str]) -> Field {
    Field {
        name: "",
        ty,
        required: false,
        read_only: false,
        refs: &[],
        relationship: None,
        picklist,
    }
}

/// A field Salesforce sets and never leaves null: `Id`, and a compound name or address.
fn set_by_salesforce(ty: FieldType) -> Field {
    Field {
        required: true,
        read_only: true,
        ..part(ty, &[])
    }
}

const GEOCODE_ACCURACIES: &[&str] = &["Address", "NearAddress", "Block", "Street", "City", "Zip"];

impl Builder {
    /// The object `spec` describes; MiddleName and Suffix only with `name_parts` (real
    /// orgs only have them when the feature is enabled).
    fn object(spec: &'static ObjectSpec, name_parts: bool) -> ObjectDef {
        let mut b = Builder {
            spec,
            fields: Vec::new(),
            columns: 0,
        };
        b.add("Id", set_by_salesforce(FieldType::Id), None);
        b.entries(spec.fields, name_parts);
        b.finish()
    }

    fn entries(&mut self, entries: &'static [Entry], name_parts: bool) {
        for entry in entries {
            match *entry {
                Entry::Field(f) => {
                    self.add(f.name, f, None);
                }
                Entry::Group(group) => self.entries(group, name_parts),
                Entry::PersonName => self.person_name(name_parts),
                Entry::Address(prefix) => self.address(prefix),
            }
        }
    }

    fn push(&mut self, name: &str, f: Field, compound: Option<String>, storage: Storage) {
        self.fields.push(FieldDef {
            name: name.to_string(),
            label: label_of(name),
            ty: f.ty,
            nillable: !f.required,
            reference_to: f.refs.iter().map(|s| s.to_string()).collect(),
            relationship_name: f.relationship.map(str::to_string),
            calculated: false,
            custom: name.ends_with("__c"),
            compound_field_name: compound,
            createable: !f.read_only,
            picklist: f.picklist.to_vec(),
            length: match f.ty {
                FieldType::TextArea => 32000,
                FieldType::Id | FieldType::Reference => 18,
                FieldType::Email | FieldType::Url => 255,
                FieldType::Phone => 40,
                _ => 255,
            },
            storage,
        });
    }

    /// A stored field: the next column of the row.
    fn add(&mut self, name: &str, f: Field, compound: Option<String>) -> usize {
        let col = self.columns;
        self.columns += 1;
        self.push(name, f, compound, Storage::Column(col));
        col
    }

    fn col(&self, name: &str) -> usize {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .and_then(FieldDef::column)
            .unwrap_or(0)
    }

    /// Salutation, First/Middle/Last/Suffix, and the read-only compound `Name` they make.
    fn person_name(&mut self, name_parts: bool) {
        let compound = || Some("Name".to_string());
        let salutations = &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."];
        self.add(
            "Salutation",
            part(FieldType::Picklist, salutations),
            compound(),
        );
        let text = part(FieldType::String, &[]);
        let mut parts = vec![self.add("FirstName", text, compound())];
        if name_parts {
            parts.push(self.add("MiddleName", text, compound()));
        }
        let last = Field {
            required: true,
            ..text
        };
        parts.push(self.add("LastName", last, compound()));
        if name_parts {
            parts.push(self.add("Suffix", text, compound()));
        }
        let name = set_by_salesforce(FieldType::String);
        self.push("Name", name, None, Storage::FullName(parts));
    }

    /// The parts of a compound address and the address itself, e.g. `Mailing` →
    /// MailingStreet … MailingAddress. Lead and User use the empty prefix (`Street`, `Address`).
    fn address(&mut self, prefix: &str) {
        let compound = format!("{prefix}Address");
        let mut cols = [0usize; 8];
        let parts = [
            ("Street", FieldType::TextArea),
            ("City", FieldType::String),
            ("State", FieldType::String),
            ("PostalCode", FieldType::String),
            ("Country", FieldType::String),
            ("Latitude", FieldType::Double),
            ("Longitude", FieldType::Double),
            ("GeocodeAccuracy", FieldType::Picklist),
        ];
        for (slot, (name, ty)) in cols.iter_mut().zip(parts) {
            let values = if name == "GeocodeAccuracy" {
                GEOCODE_ACCURACIES
            } else {
                &[]
            };
            let name = format!("{prefix}{name}");
            *slot = self.add(&name, part(ty, values), Some(compound.clone()));
        }
        let address = set_by_salesforce(FieldType::Address);
        self.push(&compound, address, None, Storage::Address(cols));
    }

    fn finish(self) -> ObjectDef {
        let by_lower = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase(), i))
            .collect();
        let by_relationship = self
            .fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.relationship_name
                    .as_ref()
                    .map(|r| (r.to_ascii_lowercase(), i))
            })
            .collect();
        let col_is_deleted = self
            .fields
            .iter()
            .find(|f| f.name == "IsDeleted")
            .and_then(FieldDef::column);
        let spec = self.spec;
        ObjectDef {
            name: spec.name.to_string(),
            label: spec.label.to_string(),
            label_plural: spec.label_plural.to_string(),
            key_prefix: spec.key_prefix,
            custom: spec.name.ends_with("__c"),
            col_id: self.col("Id"),
            col_modstamp: self.col("SystemModstamp"),
            col_last_modified: self.col("LastModifiedDate"),
            col_is_deleted,
            soft_deletable: spec.soft_deletable && col_is_deleted.is_some(),
            n_columns: self.columns,
            fields: self.fields,
            by_lower,
            by_relationship,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// `value` as JSON with every object's keys sorted, whatever serde_json's map order.
    fn canonical(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let entries: Vec<String> = keys
                    .into_iter()
                    .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(canonical).collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
    }

    fn digest(value: &Value) -> String {
        let hash = Sha256::digest(canonical(value).as_bytes());
        hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// One line per object and per field of both schemas (with and without MiddleName and
    /// Suffix): the field's place in the stored row and a digest of its full describe entry;
    /// for the object, its row layout and a digest of its describe without the fields
    /// (global entry, child relationships).
    fn describe_lines() -> Vec<String> {
        let mut lines = Vec::new();
        for name_parts in [true, false] {
            let schema = Schema::build(name_parts);
            for object in &schema.objects {
                let mut describe = object.describe(crate::DEFAULT_API_VERSION, &schema);
                let fields = describe
                    .as_object_mut()
                    .and_then(|m| m.remove("fields"))
                    .unwrap_or(Value::Null);
                lines.push(format!(
                    "name_parts={name_parts} {} columns={} id={} modstamp={} last_modified={} \
                     is_deleted={:?} soft_deletable={} {}",
                    object.name,
                    object.n_columns,
                    object.col_id,
                    object.col_modstamp,
                    object.col_last_modified,
                    object.col_is_deleted,
                    object.soft_deletable,
                    digest(&describe)
                ));
                let entries = fields.as_array().cloned().unwrap_or_default();
                assert_eq!(entries.len(), object.fields.len(), "{}", object.name);
                for (field, entry) in object.fields.iter().zip(&entries) {
                    lines.push(format!(
                        "name_parts={name_parts} {}.{} {:?} {}",
                        object.name,
                        field.name,
                        field.storage,
                        digest(entry)
                    ));
                }
            }
        }
        lines
    }

    /// The describe of every object, field by field, equals the recorded one: the schema's
    /// source may be rewritten, what the simulator answers may not change by accident. After
    /// an intended change, replace the lines the failure prints in `schema/describe.golden`.
    #[test]
    fn every_describe_equals_the_recorded_one() {
        let golden: Vec<&str> = include_str!("schema/describe.golden")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let actual = describe_lines();
        let missing: Vec<&&str> = golden
            .iter()
            .filter(|l| !actual.iter().any(|a| a == **l))
            .collect();
        let unexpected: Vec<&String> = actual
            .iter()
            .filter(|a| !golden.contains(&a.as_str()))
            .collect();
        assert!(
            missing.is_empty() && unexpected.is_empty() && golden.len() == actual.len(),
            "describe changed.\nrecorded, now absent:\n{}\nnew:\n{}",
            missing
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            unexpected
                .iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        // The order of objects and of fields is part of describe: compare it as well.
        assert_eq!(golden, actual);
    }

    #[test]
    fn schema_has_expected_shape() {
        let s = Schema::build(true);
        let contact = s.object("contact").map(|o| o.name.clone());
        assert_eq!(contact.as_deref(), Some("Contact"));
        let c = s
            .object("Contact")
            .map(|o| o.field("mailingaddress").map(|f| f.ty));
        assert_eq!(c, Some(Some(FieldType::Address)));
        assert!(s.object("User").is_some_and(|u| u.col_is_deleted.is_none()));
        assert!(
            s.object("Project__c")
                .and_then(|p| p.relationship("account__r"))
                .is_some_and(|f| f.name == "Account__c")
        );
        let without = Schema::build(false);
        assert!(
            without
                .object("Contact")
                .is_some_and(|c| c.field("MiddleName").is_none())
        );
        assert_eq!(s.object_of_id("00Q000000000000AAA"), s.object_index("Lead"));
    }
}
