//! The simulated org's objects as data: one table per object, its fields in the order
//! Salesforce's describe lists them (each stored field takes the next column of a row).
//!
//! Field names, types, picklist values and relationships follow the standard objects of the
//! Object Reference for the Salesforce Platform (Contact, Lead, User, Account, Opportunity,
//! Campaign, CampaignMember, Task, AccountContactRelation, OpportunityContactRole) plus one
//! custom object, `Project__c`. What describe derives from a field (soapType, length,
//! precision, the flags) is computed in `schema.rs`; `every_describe_equals_the_recorded_one`
//! there pins the result.

use super::FieldType as T;

/// One entry of an object's field list.
#[derive(Debug, Clone, Copy)]
pub(super) enum Entry {
    /// One stored field.
    Field(Field),
    /// Several entries that many objects share (the audit fields).
    Group(&'static [Entry]),
    /// Salutation, FirstName, [MiddleName,] LastName, [Suffix,] and the read-only compound
    /// `Name` (MiddleName and Suffix only in an org with the name-parts feature).
    PersonName,
    /// The parts of a compound address and the address itself: `Mailing` gives
    /// MailingStreet … MailingAddress; the empty prefix gives Street … Address.
    Address(&'static str),
}

/// A stored field: its name and type and what describe says beyond them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub name: &'static str,
    pub ty: T,
    /// Never null (describe's `nillable: false`).
    pub required: bool,
    /// Not createable nor updateable: set by Salesforce.
    pub read_only: bool,
    pub refs: &'static [&'static str],
    pub relationship: Option<&'static str>,
    pub picklist: &'static [&'static str],
}

/// A nillable, createable field of type `ty`.
const fn field(name: &'static str, ty: T) -> Entry {
    Entry::Field(Field {
        name,
        ty,
        required: false,
        read_only: false,
        refs: &[],
        relationship: None,
        picklist: &[],
    })
}

/// Sets fields of a `Field` entry; other entries pass unchanged (const: no closures).
macro_rules! set {
    ($entry:expr, $($name:ident: $value:expr),+) => {
        match $entry {
            Entry::Field(f) => Entry::Field(Field { $($name: $value,)+ ..f }),
            other => other,
        }
    };
}

impl Entry {
    /// Never null.
    const fn required(self) -> Entry {
        set!(self, required: true)
    }

    /// Set by Salesforce only (may be null).
    const fn read_only(self) -> Entry {
        set!(self, read_only: true)
    }

    /// Set by Salesforce and never null.
    const fn system(self) -> Entry {
        set!(self, required: true, read_only: true)
    }

    /// The picklist's values.
    const fn values(self, values: &'static [&'static str]) -> Entry {
        set!(self, picklist: values)
    }

    /// A lookup to `targets`, reached in SOQL through `relationship` (`Account.Name`).
    const fn to(self, targets: &'static [&'static str], relationship: &'static str) -> Entry {
        set!(self, refs: targets, relationship: Some(relationship))
    }

    /// A lookup to `targets` with no relationship to query through.
    const fn to_unnamed(self, targets: &'static [&'static str]) -> Entry {
        set!(self, refs: targets)
    }
}

/// An object of the org.
#[derive(Debug)]
pub(super) struct ObjectSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub label_plural: &'static str,
    pub key_prefix: &'static str,
    /// Deletes go to the Recycle Bin (when the object has IsDeleted); false for CampaignMember
    /// (always hard-deleted) and User (deactivated, never deleted).
    pub soft_deletable: bool,
    /// After the `Id` every object starts with.
    pub fields: &'static [Entry],
}

const USER: &[&str] = &["User"];
const GROUP_OR_USER: &[&str] = &["Group", "User"];

const IS_DELETED: Entry = field("IsDeleted", T::Boolean).system();

/// CreatedDate … SystemModstamp, in the order Salesforce's describe lists them.
const AUDIT: Entry = Entry::Group(&[
    field("CreatedDate", T::DateTime).system(),
    field("CreatedById", T::Reference)
        .system()
        .to(USER, "CreatedBy"),
    field("LastModifiedDate", T::DateTime).system(),
    field("LastModifiedById", T::Reference)
        .system()
        .to(USER, "LastModifiedBy"),
    field("SystemModstamp", T::DateTime).system(),
]);

const LAST_ACTIVITY_DATE: Entry = field("LastActivityDate", T::Date).read_only();

const fn owner(targets: &'static [&'static str]) -> Entry {
    field("OwnerId", T::Reference)
        .required()
        .to(targets, "Owner")
}

/// `MasterRecordId`: set on the losing records of a merge (which are deleted) to the
/// winner's Id; null otherwise. Object reference, "Contact"/"Lead"/"Account": "If this
/// record was deleted as the result of a merge, this field contains the ID of the record
/// that remains." Describe lists it right after IsDeleted.
const fn master_record(targets: &'static [&'static str]) -> Entry {
    field("MasterRecordId", T::Reference)
        .read_only()
        .to(targets, "MasterRecord")
}

pub(crate) const LEAD_SOURCES: &[&str] = &[
    "Web",
    "Phone Inquiry",
    "Partner Referral",
    "Purchased List",
    "Other",
];

pub(crate) const LEAD_STATUSES: &[&str] = &[
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
];

pub(crate) const STAGES: &[&str] = &[
    "Prospecting",
    "Qualification",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
];

pub(crate) const ACR_ROLES: &[&str] = &[
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Technical Buyer",
    "Influencer",
];

pub(crate) const PROJECT_STATUSES: &[&str] = &["Planned", "Active", "On Hold", "Done"];

const INDUSTRIES: &[&str] = &["Technology", "Finance", "Retail", "Healthcare"];

/// Every object, in describe-global order.
pub(super) const OBJECTS: &[ObjectSpec] = &[
    ObjectSpec {
        name: "Contact",
        label: "Contact",
        label_plural: "Contacts",
        key_prefix: "003",
        soft_deletable: true,
        fields: &[
            IS_DELETED,
            master_record(&["Contact"]),
            field("AccountId", T::Reference).to(&["Account"], "Account"),
            Entry::PersonName,
            Entry::Address("Mailing"),
            field("Phone", T::Phone),
            field("MobilePhone", T::Phone),
            field("Email", T::Email),
            field("Title", T::String),
            field("Department", T::String),
            field("LeadSource", T::Picklist).values(LEAD_SOURCES),
            field("Birthdate", T::Date),
            field("Description", T::TextArea),
            owner(USER),
            field("HasOptedOutOfEmail", T::Boolean).required(),
            field("DoNotCall", T::Boolean).required(),
            AUDIT,
            LAST_ACTIVITY_DATE,
            field("Tier__c", T::Picklist).values(&["Gold", "Silver", "Bronze"]),
            field("Score__c", T::Double),
        ],
    },
    ObjectSpec {
        name: "Lead",
        label: "Lead",
        label_plural: "Leads",
        key_prefix: "00Q",
        soft_deletable: true,
        fields: &[
            IS_DELETED,
            master_record(&["Lead"]),
            Entry::PersonName,
            field("Title", T::String),
            field("Company", T::String).required(),
            Entry::Address(""),
            field("Phone", T::Phone),
            field("MobilePhone", T::Phone),
            field("Email", T::Email),
            field("Website", T::Url),
            field("Description", T::TextArea),
            field("LeadSource", T::Picklist).values(LEAD_SOURCES),
            field("Status", T::Picklist)
                .required()
                .values(LEAD_STATUSES),
            field("Industry", T::Picklist).values(INDUSTRIES),
            field("AnnualRevenue", T::Currency),
            field("NumberOfEmployees", T::Int),
            owner(GROUP_OR_USER),
            field("HasOptedOutOfEmail", T::Boolean).required(),
            field("IsConverted", T::Boolean).required(),
            field("ConvertedDate", T::Date).read_only(),
            field("ConvertedAccountId", T::Reference).to(&["Account"], "ConvertedAccount"),
            field("ConvertedContactId", T::Reference).to(&["Contact"], "ConvertedContact"),
            field("ConvertedOpportunityId", T::Reference)
                .to(&["Opportunity"], "ConvertedOpportunity"),
            field("IsUnreadByOwner", T::Boolean).required(),
            AUDIT,
            LAST_ACTIVITY_DATE,
        ],
    },
    // Real User rows have no IsDeleted (users are deactivated, never deleted) and no OwnerId.
    ObjectSpec {
        name: "User",
        label: "User",
        label_plural: "Users",
        key_prefix: "005",
        soft_deletable: false,
        fields: &[
            field("Username", T::String).required(),
            Entry::PersonName,
            field("CompanyName", T::String),
            field("Department", T::String),
            field("Title", T::String),
            Entry::Address(""),
            field("Email", T::Email).required(),
            field("Phone", T::Phone),
            field("Alias", T::String).required(),
            field("IsActive", T::Boolean).required(),
            field("TimeZoneSidKey", T::Picklist).required().values(&[
                "America/Los_Angeles",
                "Europe/Paris",
                "Asia/Tokyo",
            ]),
            field("UserType", T::Picklist).read_only().values(&[
                "Standard",
                "PowerPartner",
                "CsnOnly",
            ]),
            field("ManagerId", T::Reference).to(USER, "Manager"),
            AUDIT,
            field("LastLoginDate", T::DateTime).read_only(),
        ],
    },
    ObjectSpec {
        name: "Account",
        label: "Account",
        label_plural: "Accounts",
        key_prefix: "001",
        soft_deletable: true,
        fields: &[
            IS_DELETED,
            master_record(&["Account"]),
            field("Name", T::String).required(),
            field("Type", T::Picklist).values(&[
                "Prospect",
                "Customer - Direct",
                "Customer - Channel",
                "Partner",
            ]),
            field("ParentId", T::Reference).to(&["Account"], "Parent"),
            Entry::Address("Billing"),
            field("Phone", T::Phone),
            field("Website", T::Url),
            field("Industry", T::Picklist).values(INDUSTRIES),
            field("AnnualRevenue", T::Currency),
            field("NumberOfEmployees", T::Int),
            field("Description", T::TextArea),
            owner(USER),
            AUDIT,
            LAST_ACTIVITY_DATE,
        ],
    },
    ObjectSpec {
        name: "Opportunity",
        label: "Opportunity",
        label_plural: "Opportunities",
        key_prefix: "006",
        soft_deletable: true,
        fields: &[
            IS_DELETED,
            field("AccountId", T::Reference).to(&["Account"], "Account"),
            field("Name", T::String).required(),
            field("Description", T::TextArea),
            field("StageName", T::Picklist).required().values(STAGES),
            field("Amount", T::Currency),
            field("Probability", T::Percent),
            field("CloseDate", T::Date).required(),
            field("Type", T::Picklist).values(&["New Business", "Existing Business"]),
            field("LeadSource", T::Picklist).values(LEAD_SOURCES),
            field("IsClosed", T::Boolean).system(),
            field("IsWon", T::Boolean).system(),
            field("CampaignId", T::Reference).to(&["Campaign"], "Campaign"),
            owner(USER),
            AUDIT,
            LAST_ACTIVITY_DATE,
        ],
    },
    ObjectSpec {
        name: "Campaign",
        label: "Campaign",
        label_plural: "Campaigns",
        key_prefix: "701",
        soft_deletable: true,
        fields: &[
            IS_DELETED,
            field("Name", T::String).required(),
            field("ParentId", T::Reference).to(&["Campaign"], "Parent"),
            field("Type", T::Picklist).values(&["Conference", "Webinar", "Email", "Advertisement"]),
            field("Status", T::Picklist).values(&[
                "Planned",
                "In Progress",
                "Completed",
                "Aborted",
            ]),
            field("StartDate", T::Date),
            field("EndDate", T::Date),
            field("ExpectedRevenue", T::Currency),
            field("BudgetedCost", T::Currency),
            field("ActualCost", T::Currency),
            field("IsActive", T::Boolean).required(),
            field("Description", T::TextArea),
            owner(USER),
            AUDIT,
        ],
    },
    // No Recycle Bin: a CampaignMember's deletes are always hard.
    ObjectSpec {
        name: "CampaignMember",
        label: "Campaign Member",
        label_plural: "Campaign Members",
        key_prefix: "00v",
        soft_deletable: false,
        fields: &[
            IS_DELETED,
            field("CampaignId", T::Reference)
                .required()
                .to(&["Campaign"], "Campaign"),
            field("LeadId", T::Reference).to(&["Lead"], "Lead"),
            field("ContactId", T::Reference).to(&["Contact"], "Contact"),
            field("Status", T::Picklist).values(&["Planned", "Sent", "Received", "Responded"]),
            field("HasResponded", T::Boolean).system(),
            field("FirstRespondedDate", T::Date).read_only(),
            field("LeadOrContactId", T::Reference)
                .read_only()
                .to_unnamed(&["Contact", "Lead"]),
            AUDIT,
        ],
    },
    ObjectSpec {
        name: "Task",
        label: "Task",
        label_plural: "Tasks",
        key_prefix: "00T",
        soft_deletable: true,
        fields: &[
            field("WhoId", T::Reference).to(&["Contact", "Lead"], "Who"),
            field("WhatId", T::Reference).to(
                &["Account", "Opportunity", "Campaign", "Project__c"],
                "What",
            ),
            field("Subject", T::Combobox),
            field("ActivityDate", T::Date),
            field("Status", T::Picklist).required().values(&[
                "Not Started",
                "In Progress",
                "Completed",
                "Deferred",
            ]),
            field("Priority", T::Picklist)
                .required()
                .values(&["High", "Normal", "Low"]),
            field("IsHighPriority", T::Boolean).system(),
            owner(GROUP_OR_USER),
            field("Description", T::TextArea),
            field("Type", T::Picklist).values(&["Call", "Email", "Meeting", "Other"]),
            IS_DELETED,
            field("AccountId", T::Reference)
                .read_only()
                .to(&["Account"], "Account"),
            field("IsClosed", T::Boolean).system(),
            AUDIT,
            field("IsArchived", T::Boolean).system(),
            field("CallDurationInSeconds", T::Int),
            field("TaskSubtype", T::Picklist).values(&["Task", "Email", "Call"]),
        ],
    },
    ObjectSpec {
        name: "AccountContactRelation",
        label: "Account Contact Relationship",
        label_plural: "Account Contact Relationships",
        key_prefix: "07k",
        soft_deletable: true,
        fields: &[
            field("AccountId", T::Reference)
                .required()
                .to(&["Account"], "Account"),
            field("ContactId", T::Reference)
                .required()
                .to(&["Contact"], "Contact"),
            field("Roles", T::MultiPicklist).values(ACR_ROLES),
            field("IsDirect", T::Boolean).system(),
            field("IsActive", T::Boolean).required(),
            field("StartDate", T::Date),
            field("EndDate", T::Date),
            AUDIT,
            IS_DELETED,
        ],
    },
    ObjectSpec {
        name: "OpportunityContactRole",
        label: "Opportunity Contact Role",
        label_plural: "Opportunity Contact Role",
        key_prefix: "00K",
        soft_deletable: true,
        fields: &[
            field("OpportunityId", T::Reference)
                .required()
                .to(&["Opportunity"], "Opportunity"),
            field("ContactId", T::Reference)
                .required()
                .to(&["Contact"], "Contact"),
            field("Role", T::Picklist).values(ACR_ROLES),
            field("IsPrimary", T::Boolean).required(),
            AUDIT,
            IS_DELETED,
        ],
    },
    ObjectSpec {
        name: "Project__c",
        label: "Project",
        label_plural: "Projects",
        key_prefix: "a0X",
        soft_deletable: true,
        fields: &[
            owner(GROUP_OR_USER),
            IS_DELETED,
            field("Name", T::String).required(),
            AUDIT,
            LAST_ACTIVITY_DATE,
            field("Budget__c", T::Currency),
            field("Status__c", T::Picklist).values(PROJECT_STATUSES),
            field("Account__c", T::Reference).to(&["Account"], "Account__r"),
            field("Primary_Contact__c", T::Reference).to(&["Contact"], "Primary_Contact__r"),
            field("Start_Date__c", T::Date),
            field("Description__c", T::TextArea),
        ],
    },
];

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
