//! Describe metadata of the simulated org: which objects and fields exist, their types, and
//! where each field's value lives in a stored row.

use std::collections::HashMap;

use serde_json::{Value, json};

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
        let objects = vec![
            contact(name_parts),
            lead(name_parts),
            user(name_parts),
            account(),
            opportunity(),
            campaign(),
            campaign_member(),
            task(),
            account_contact_relation(),
            opportunity_contact_role(),
            project(),
        ];
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
    name: &'static str,
    label: &'static str,
    label_plural: &'static str,
    key_prefix: &'static str,
    custom: bool,
    fields: Vec<FieldDef>,
    columns: usize,
    soft_deletable: bool,
}

/// Options of one field beyond its name and type.
#[derive(Default)]
struct Opt {
    required: bool,
    refs: &'static [&'static str],
    rel: Option<&'static str>,
    picklist: &'static [&'static str],
    read_only: bool,
    compound: Option<String>,
}

fn refs(to: &'static [&'static str], rel: &'static str) -> Opt {
    Opt {
        refs: to,
        rel: Some(rel),
        ..Opt::default()
    }
}

fn pick(values: &'static [&'static str]) -> Opt {
    Opt {
        picklist: values,
        ..Opt::default()
    }
}

fn required() -> Opt {
    Opt {
        required: true,
        ..Opt::default()
    }
}

fn read_only() -> Opt {
    Opt {
        required: true,
        read_only: true,
        ..Opt::default()
    }
}

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

impl Builder {
    fn new(
        name: &'static str,
        label: &'static str,
        label_plural: &'static str,
        key_prefix: &'static str,
    ) -> Builder {
        let mut b = Builder {
            name,
            label,
            label_plural,
            key_prefix,
            custom: name.ends_with("__c"),
            fields: Vec::new(),
            columns: 0,
            soft_deletable: true,
        };
        b.add("Id", FieldType::Id, read_only());
        b
    }

    fn push(&mut self, name: &str, ty: FieldType, opt: Opt, storage: Storage) {
        self.fields.push(FieldDef {
            name: name.to_string(),
            label: label_of(name),
            ty,
            nillable: !opt.required,
            reference_to: opt.refs.iter().map(|s| s.to_string()).collect(),
            relationship_name: opt.rel.map(str::to_string),
            calculated: false,
            custom: name.ends_with("__c"),
            compound_field_name: opt.compound,
            createable: !opt.read_only,
            picklist: opt.picklist.to_vec(),
            length: match ty {
                FieldType::TextArea => 32000,
                FieldType::Id | FieldType::Reference => 18,
                FieldType::Email | FieldType::Url => 255,
                FieldType::Phone => 40,
                _ => 255,
            },
            storage,
        });
    }

    fn add(&mut self, name: &str, ty: FieldType, opt: Opt) -> usize {
        let col = self.columns;
        self.columns += 1;
        self.push(name, ty, opt, Storage::Column(col));
        col
    }

    fn col(&self, name: &str) -> usize {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .and_then(FieldDef::column)
            .unwrap_or(0)
    }

    /// First/Middle/Last/Suffix plus the read-only compound `Name`.
    fn person_name(&mut self, name_parts: bool) {
        let compound = || Some("Name".to_string());
        self.add(
            "Salutation",
            FieldType::Picklist,
            Opt {
                picklist: &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."],
                compound: compound(),
                ..Opt::default()
            },
        );
        let first = self.add(
            "FirstName",
            FieldType::String,
            Opt {
                compound: compound(),
                ..Opt::default()
            },
        );
        let mut parts = vec![first];
        if name_parts {
            parts.push(self.add(
                "MiddleName",
                FieldType::String,
                Opt {
                    compound: compound(),
                    ..Opt::default()
                },
            ));
        }
        parts.push(self.add(
            "LastName",
            FieldType::String,
            Opt {
                required: true,
                compound: compound(),
                ..Opt::default()
            },
        ));
        if name_parts {
            parts.push(self.add(
                "Suffix",
                FieldType::String,
                Opt {
                    compound: compound(),
                    ..Opt::default()
                },
            ));
        }
        self.push(
            "Name",
            FieldType::String,
            read_only(),
            Storage::FullName(parts),
        );
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
        for (slot, (part, ty)) in cols.iter_mut().zip(parts) {
            let opt = Opt {
                compound: Some(compound.clone()),
                picklist: if part == "GeocodeAccuracy" {
                    &["Address", "NearAddress", "Block", "Street", "City", "Zip"]
                } else {
                    &[]
                },
                ..Opt::default()
            };
            *slot = self.add(&format!("{prefix}{part}"), ty, opt);
        }
        self.push(
            &compound,
            FieldType::Address,
            read_only(),
            Storage::Address(cols),
        );
    }

    /// CreatedDate … SystemModstamp, in the order Salesforce's describe lists them.
    fn audit(&mut self) {
        self.add("CreatedDate", FieldType::DateTime, read_only());
        self.add(
            "CreatedById",
            FieldType::Reference,
            Opt {
                required: true,
                read_only: true,
                ..refs(&["User"], "CreatedBy")
            },
        );
        self.add("LastModifiedDate", FieldType::DateTime, read_only());
        self.add(
            "LastModifiedById",
            FieldType::Reference,
            Opt {
                required: true,
                read_only: true,
                ..refs(&["User"], "LastModifiedBy")
            },
        );
        self.add("SystemModstamp", FieldType::DateTime, read_only());
    }

    fn is_deleted(&mut self) {
        self.add("IsDeleted", FieldType::Boolean, read_only());
    }

    /// `MasterRecordId`: set on the losing records of a merge (which are deleted) to the
    /// winner's Id; null otherwise. Object reference, "Contact"/"Lead"/"Account": "If this
    /// record was deleted as the result of a merge, this field contains the ID of the record
    /// that remains." Describe lists it right after IsDeleted.
    fn master_record(&mut self, object: &'static [&'static str]) {
        self.add(
            "MasterRecordId",
            FieldType::Reference,
            Opt {
                read_only: true,
                ..refs(object, "MasterRecord")
            },
        );
    }

    fn owner(&mut self, polymorphic: bool) {
        let to: &'static [&'static str] = if polymorphic {
            &["Group", "User"]
        } else {
            &["User"]
        };
        self.add(
            "OwnerId",
            FieldType::Reference,
            Opt {
                required: true,
                ..refs(to, "Owner")
            },
        );
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
        ObjectDef {
            name: self.name.to_string(),
            label: self.label.to_string(),
            label_plural: self.label_plural.to_string(),
            key_prefix: self.key_prefix,
            custom: self.custom,
            col_id: self.col("Id"),
            col_modstamp: self.col("SystemModstamp"),
            col_last_modified: self.col("LastModifiedDate"),
            col_is_deleted,
            soft_deletable: self.soft_deletable && col_is_deleted.is_some(),
            n_columns: self.columns,
            fields: self.fields,
            by_lower,
            by_relationship,
        }
    }
}

pub(crate) const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];

fn contact(name_parts: bool) -> ObjectDef {
    let mut b = Builder::new("Contact", "Contact", "Contacts", "003");
    b.is_deleted();
    b.master_record(&["Contact"]);
    b.add(
        "AccountId",
        FieldType::Reference,
        refs(&["Account"], "Account"),
    );
    b.person_name(name_parts);
    b.address("Mailing");
    b.add("Phone", FieldType::Phone, Opt::default());
    b.add("MobilePhone", FieldType::Phone, Opt::default());
    b.add("Email", FieldType::Email, Opt::default());
    b.add("Title", FieldType::String, Opt::default());
    b.add("Department", FieldType::String, Opt::default());
    b.add("LeadSource", FieldType::Picklist, pick(LEAD_SOURCES));
    b.add("Birthdate", FieldType::Date, Opt::default());
    b.add("Description", FieldType::TextArea, Opt::default());
    b.owner(false);
    b.add("HasOptedOutOfEmail", FieldType::Boolean, required());
    b.add("DoNotCall", FieldType::Boolean, required());
    b.audit();
    b.add("LastActivityDate", FieldType::Date, read_only_nillable());
    b.add(
        "Tier__c",
        FieldType::Picklist,
        pick(&["Gold", "Silver", "Bronze"]),
    );
    b.add("Score__c", FieldType::Double, Opt::default());
    b.finish()
}

fn read_only_nillable() -> Opt {
    Opt {
        read_only: true,
        ..Opt::default()
    }
}

pub(crate) const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];

fn lead(name_parts: bool) -> ObjectDef {
    let mut b = Builder::new("Lead", "Lead", "Leads", "00Q");
    b.is_deleted();
    b.master_record(&["Lead"]);
    b.person_name(name_parts);
    b.add("Title", FieldType::String, Opt::default());
    b.add("Company", FieldType::String, required());
    b.address("");
    b.add("Phone", FieldType::Phone, Opt::default());
    b.add("MobilePhone", FieldType::Phone, Opt::default());
    b.add("Email", FieldType::Email, Opt::default());
    b.add("Website", FieldType::Url, Opt::default());
    b.add("Description", FieldType::TextArea, Opt::default());
    b.add("LeadSource", FieldType::Picklist, pick(LEAD_SOURCES));
    b.add(
        "Status",
        FieldType::Picklist,
        Opt {
            required: true,
            ..pick(LEAD_STATUSES)
        },
    );
    b.add(
        "Industry",
        FieldType::Picklist,
        pick(&["Technology", "Finance", "Retail", "Healthcare"]),
    );
    b.add("AnnualRevenue", FieldType::Currency, Opt::default());
    b.add("NumberOfEmployees", FieldType::Int, Opt::default());
    b.owner(true);
    b.add("HasOptedOutOfEmail", FieldType::Boolean, required());
    b.add("IsConverted", FieldType::Boolean, required());
    b.add("ConvertedDate", FieldType::Date, read_only_nillable());
    b.add(
        "ConvertedAccountId",
        FieldType::Reference,
        refs(&["Account"], "ConvertedAccount"),
    );
    b.add(
        "ConvertedContactId",
        FieldType::Reference,
        refs(&["Contact"], "ConvertedContact"),
    );
    b.add(
        "ConvertedOpportunityId",
        FieldType::Reference,
        refs(&["Opportunity"], "ConvertedOpportunity"),
    );
    b.add("IsUnreadByOwner", FieldType::Boolean, required());
    b.audit();
    b.add("LastActivityDate", FieldType::Date, read_only_nillable());
    b.finish()
}

fn user(name_parts: bool) -> ObjectDef {
    // Real User rows have no IsDeleted (users are deactivated, never deleted) and no OwnerId.
    let mut b = Builder::new("User", "User", "Users", "005");
    b.add("Username", FieldType::String, required());
    b.person_name(name_parts);
    b.add("CompanyName", FieldType::String, Opt::default());
    b.add("Department", FieldType::String, Opt::default());
    b.add("Title", FieldType::String, Opt::default());
    b.address("");
    b.add("Email", FieldType::Email, required());
    b.add("Phone", FieldType::Phone, Opt::default());
    b.add("Alias", FieldType::String, required());
    b.add("IsActive", FieldType::Boolean, required());
    b.add(
        "TimeZoneSidKey",
        FieldType::Picklist,
        Opt {
            required: true,
            ..pick(&["America/Los_Angeles", "Europe/Paris", "Asia/Tokyo"])
        },
    );
    b.add(
        "UserType",
        FieldType::Picklist,
        Opt {
            read_only: true,
            ..pick(&["Standard", "PowerPartner", "CsnOnly"])
        },
    );
    b.add(
        "ManagerId",
        FieldType::Reference,
        refs(&["User"], "Manager"),
    );
    b.audit();
    b.add("LastLoginDate", FieldType::DateTime, read_only_nillable());
    b.soft_deletable = false;
    b.finish()
}

fn account() -> ObjectDef {
    let mut b = Builder::new("Account", "Account", "Accounts", "001");
    b.is_deleted();
    b.master_record(&["Account"]);
    b.add("Name", FieldType::String, required());
    b.add(
        "Type",
        FieldType::Picklist,
        pick(&[
            "Prospect",
            "Customer - Direct",
            "Customer - Channel",
            "Partner",
        ]),
    );
    b.add(
        "ParentId",
        FieldType::Reference,
        refs(&["Account"], "Parent"),
    );
    b.address("Billing");
    b.add("Phone", FieldType::Phone, Opt::default());
    b.add("Website", FieldType::Url, Opt::default());
    b.add(
        "Industry",
        FieldType::Picklist,
        pick(&["Technology", "Finance", "Retail", "Healthcare"]),
    );
    b.add("AnnualRevenue", FieldType::Currency, Opt::default());
    b.add("NumberOfEmployees", FieldType::Int, Opt::default());
    b.add("Description", FieldType::TextArea, Opt::default());
    b.owner(false);
    b.audit();
    b.add("LastActivityDate", FieldType::Date, read_only_nillable());
    b.finish()
}

pub(crate) const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

fn opportunity() -> ObjectDef {
    let mut b = Builder::new("Opportunity", "Opportunity", "Opportunities", "006");
    b.is_deleted();
    b.add(
        "AccountId",
        FieldType::Reference,
        refs(&["Account"], "Account"),
    );
    b.add("Name", FieldType::String, required());
    b.add("Description", FieldType::TextArea, Opt::default());
    b.add(
        "StageName",
        FieldType::Picklist,
        Opt {
            required: true,
            ..pick(STAGES)
        },
    );
    b.add("Amount", FieldType::Currency, Opt::default());
    b.add("Probability", FieldType::Percent, Opt::default());
    b.add("CloseDate", FieldType::Date, required());
    b.add(
        "Type",
        FieldType::Picklist,
        pick(&["New Business", "Existing Business"]),
    );
    b.add("LeadSource", FieldType::Picklist, pick(LEAD_SOURCES));
    b.add("IsClosed", FieldType::Boolean, read_only());
    b.add("IsWon", FieldType::Boolean, read_only());
    b.add(
        "CampaignId",
        FieldType::Reference,
        refs(&["Campaign"], "Campaign"),
    );
    b.owner(false);
    b.audit();
    b.add("LastActivityDate", FieldType::Date, read_only_nillable());
    b.finish()
}

fn campaign() -> ObjectDef {
    let mut b = Builder::new("Campaign", "Campaign", "Campaigns", "701");
    b.is_deleted();
    b.add("Name", FieldType::String, required());
    b.add(
        "ParentId",
        FieldType::Reference,
        refs(&["Campaign"], "Parent"),
    );
    b.add(
        "Type",
        FieldType::Picklist,
        pick(&["Conference", "Webinar", "Email", "Advertisement"]),
    );
    b.add(
        "Status",
        FieldType::Picklist,
        pick(&["Planned", "In Progress", "Completed", "Aborted"]),
    );
    b.add("StartDate", FieldType::Date, Opt::default());
    b.add("EndDate", FieldType::Date, Opt::default());
    b.add("ExpectedRevenue", FieldType::Currency, Opt::default());
    b.add("BudgetedCost", FieldType::Currency, Opt::default());
    b.add("ActualCost", FieldType::Currency, Opt::default());
    b.add("IsActive", FieldType::Boolean, required());
    b.add("Description", FieldType::TextArea, Opt::default());
    b.owner(false);
    b.audit();
    b.finish()
}

fn campaign_member() -> ObjectDef {
    let mut b = Builder::new(
        "CampaignMember",
        "Campaign Member",
        "Campaign Members",
        "00v",
    );
    b.is_deleted();
    b.add(
        "CampaignId",
        FieldType::Reference,
        Opt {
            required: true,
            ..refs(&["Campaign"], "Campaign")
        },
    );
    b.add("LeadId", FieldType::Reference, refs(&["Lead"], "Lead"));
    b.add(
        "ContactId",
        FieldType::Reference,
        refs(&["Contact"], "Contact"),
    );
    b.add(
        "Status",
        FieldType::Picklist,
        pick(&["Planned", "Sent", "Received", "Responded"]),
    );
    b.add("HasResponded", FieldType::Boolean, read_only());
    b.add("FirstRespondedDate", FieldType::Date, read_only_nillable());
    b.add(
        "LeadOrContactId",
        FieldType::Reference,
        Opt {
            read_only: true,
            refs: &["Contact", "Lead"],
            ..Opt::default()
        },
    );
    b.audit();
    b.soft_deletable = false;
    b.finish()
}

fn task() -> ObjectDef {
    let mut b = Builder::new("Task", "Task", "Tasks", "00T");
    b.add(
        "WhoId",
        FieldType::Reference,
        refs(&["Contact", "Lead"], "Who"),
    );
    b.add(
        "WhatId",
        FieldType::Reference,
        refs(
            &["Account", "Opportunity", "Campaign", "Project__c"],
            "What",
        ),
    );
    b.add("Subject", FieldType::Combobox, Opt::default());
    b.add("ActivityDate", FieldType::Date, Opt::default());
    b.add(
        "Status",
        FieldType::Picklist,
        Opt {
            required: true,
            ..pick(&["Not Started", "In Progress", "Completed", "Deferred"])
        },
    );
    b.add(
        "Priority",
        FieldType::Picklist,
        Opt {
            required: true,
            ..pick(&["High", "Normal", "Low"])
        },
    );
    b.add("IsHighPriority", FieldType::Boolean, read_only());
    b.owner(true);
    b.add("Description", FieldType::TextArea, Opt::default());
    b.add(
        "Type",
        FieldType::Picklist,
        pick(&["Call", "Email", "Meeting", "Other"]),
    );
    b.is_deleted();
    b.add(
        "AccountId",
        FieldType::Reference,
        Opt {
            read_only: true,
            ..refs(&["Account"], "Account")
        },
    );
    b.add("IsClosed", FieldType::Boolean, read_only());
    b.audit();
    b.add("IsArchived", FieldType::Boolean, read_only());
    b.add("CallDurationInSeconds", FieldType::Int, Opt::default());
    b.add(
        "TaskSubtype",
        FieldType::Picklist,
        pick(&["Task", "Email", "Call"]),
    );
    b.finish()
}

pub(crate) const ACR_ROLES: &[&str] = &[
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Technical Buyer",
    "Influencer",
];

fn account_contact_relation() -> ObjectDef {
    let mut b = Builder::new(
        "AccountContactRelation",
        "Account Contact Relationship",
        "Account Contact Relationships",
        "07k",
    );
    b.add(
        "AccountId",
        FieldType::Reference,
        Opt {
            required: true,
            ..refs(&["Account"], "Account")
        },
    );
    b.add(
        "ContactId",
        FieldType::Reference,
        Opt {
            required: true,
            ..refs(&["Contact"], "Contact")
        },
    );
    b.add("Roles", FieldType::MultiPicklist, pick(ACR_ROLES));
    b.add("IsDirect", FieldType::Boolean, read_only());
    b.add("IsActive", FieldType::Boolean, required());
    b.add("StartDate", FieldType::Date, Opt::default());
    b.add("EndDate", FieldType::Date, Opt::default());
    b.audit();
    b.is_deleted();
    b.finish()
}

fn opportunity_contact_role() -> ObjectDef {
    let mut b = Builder::new(
        "OpportunityContactRole",
        "Opportunity Contact Role",
        "Opportunity Contact Role",
        "00K",
    );
    b.add(
        "OpportunityId",
        FieldType::Reference,
        Opt {
            required: true,
            ..refs(&["Opportunity"], "Opportunity")
        },
    );
    b.add(
        "ContactId",
        FieldType::Reference,
        Opt {
            required: true,
            ..refs(&["Contact"], "Contact")
        },
    );
    b.add("Role", FieldType::Picklist, pick(ACR_ROLES));
    b.add("IsPrimary", FieldType::Boolean, required());
    b.audit();
    b.is_deleted();
    b.finish()
}

pub(crate) const PROJECT_STATUSES: &[&str] = &["Planned", "Active", "On Hold", "Done"];

fn project() -> ObjectDef {
    let mut b = Builder::new("Project__c", "Project", "Projects", "a0X");
    b.owner(true);
    b.is_deleted();
    b.add("Name", FieldType::String, required());
    b.audit();
    b.add("LastActivityDate", FieldType::Date, read_only_nillable());
    b.add("Budget__c", FieldType::Currency, Opt::default());
    b.add("Status__c", FieldType::Picklist, pick(PROJECT_STATUSES));
    b.add(
        "Account__c",
        FieldType::Reference,
        refs(&["Account"], "Account__r"),
    );
    b.add(
        "Primary_Contact__c",
        FieldType::Reference,
        refs(&["Contact"], "Primary_Contact__r"),
    );
    b.add("Start_Date__c", FieldType::Date, Opt::default());
    b.add("Description__c", FieldType::TextArea, Opt::default());
    b.finish()
}

/// Fields a polymorphic relationship (`Who`, `What`, `Owner` on Lead/Task) can reach: the
/// `Name` pseudo-object, whose values come from whichever object the id points at.
pub(crate) const NAME_ENTITY_FIELDS: &[&str] = &[
    "Id",
    "Name",
    "Type",
    "FirstName",
    "LastName",
    "Email",
    "Phone",
    "Title",
    "Alias",
    "Username",
    "IsActive",
];

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
