//! Identity lineage: converting a Lead and merging duplicate records, the two ways
//! Salesforce changes who a person is.
//!
//! Behaviour follows the SOAP API Developer Guide:
//! - `convertLead()`: the Lead gets `IsConverted = true`, `ConvertedContactId`,
//!   `ConvertedAccountId`, `ConvertedDate` and the converted status; a Contact and an Account
//!   are created from the Lead unless existing ones are given (the Contact is then linked to
//!   the Account). A converted Lead cannot be converted again.
//! - `merge()`: up to three records of one type (Lead, Contact, Account); the losers are
//!   deleted (to the Recycle Bin, so `queryAll` still returns them) with `MasterRecordId`
//!   naming the winner, and their related records are re-parented to the winner.
//!
//! Both go through the same row mutations as `insert`/`update`/`soft_delete`, so the
//! SystemModstamp index, the delete log and the Change Data Capture journal see them.

use serde_json::{Map, Value, json};

use crate::org::Org;
use crate::schema::FieldType;
use crate::value::Val;

/// What a conversion produced: the Contact and Account the Lead now points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadConversion {
    pub contact_id: String,
    pub account_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineageError {
    #[error("{object} {id} does not exist or is deleted")]
    NotFound { object: String, id: String },
    #[error("Lead {0} is already converted")]
    AlreadyConverted(String),
    #[error("{0} records cannot be merged (only Lead, Contact and Account)")]
    NotMergeable(String),
    #[error("a merge takes one or two losers besides the master, got {0}")]
    LoserCount(usize),
    #[error("{0} cannot be merged into itself")]
    SelfMerge(String),
}

/// Lead fields copied onto the Contact a conversion creates.
const CONTACT_FROM_LEAD: &[(&str, &str)] = &[
    ("FirstName", "FirstName"),
    ("LastName", "LastName"),
    ("Email", "Email"),
    ("Phone", "Phone"),
    ("MobilePhone", "MobilePhone"),
    ("Title", "Title"),
    ("LeadSource", "LeadSource"),
    ("Description", "Description"),
    ("HasOptedOutOfEmail", "HasOptedOutOfEmail"),
    ("Address", "MailingAddress"),
];

/// Lead fields copied onto the Account a conversion creates.
const ACCOUNT_FROM_LEAD: &[(&str, &str)] = &[
    ("Company", "Name"),
    ("Industry", "Industry"),
    ("AnnualRevenue", "AnnualRevenue"),
    ("NumberOfEmployees", "NumberOfEmployees"),
    ("Website", "Website"),
    ("Phone", "Phone"),
];

fn copy_fields(from: &Value, pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .filter_map(|(src, dst)| {
            let v = from.get(*src)?;
            (!v.is_null()).then(|| (dst.to_string(), v.clone()))
        })
        .collect()
}

impl Org {
    /// Converts a Lead, as `convertLead()` does. With `contact`/`account` the Lead is
    /// converted into those existing records; otherwise they are created from the Lead.
    pub fn convert_lead(
        &mut self,
        lead_id: &str,
        contact: Option<&str>,
        account: Option<&str>,
    ) -> Result<LeadConversion, LineageError> {
        let missing = |object: &str, id: &str| LineageError::NotFound {
            object: object.to_string(),
            id: id.to_string(),
        };
        let lead = self
            .live_record("Lead", lead_id)
            .ok_or_else(|| missing("Lead", lead_id))?;
        if lead.get("IsConverted").and_then(Value::as_bool) == Some(true) {
            return Err(LineageError::AlreadyConverted(lead_id.to_string()));
        }
        for (object, id) in [("Contact", contact), ("Account", account)] {
            if let Some(id) = id
                && self.live_record(object, id).is_none()
            {
                return Err(missing(object, id));
            }
        }
        let account_id = match account {
            Some(id) => id.to_string(),
            None => self.insert("Account", copy_fields(&lead, ACCOUNT_FROM_LEAD)),
        };
        let contact_id = match contact {
            Some(id) => {
                // An existing Contact is attached to the conversion's Account.
                let mut link = Map::new();
                link.insert("AccountId".into(), json!(account_id));
                self.update("Contact", id, link);
                id.to_string()
            }
            None => {
                let mut fields = copy_fields(&lead, CONTACT_FROM_LEAD);
                fields.insert("AccountId".into(), json!(account_id));
                self.insert("Contact", fields)
            }
        };
        let converted = json!({
            "IsConverted": true,
            "Status": "Closed - Converted",
            "ConvertedContactId": contact_id,
            "ConvertedAccountId": account_id,
            // The transaction's own date: `update` ticks the clock by one second first.
            "ConvertedDate": (self.now() + chrono::Duration::seconds(1)).format("%Y-%m-%d").to_string(),
        });
        if let Value::Object(fields) = converted {
            self.update("Lead", lead_id, fields);
        }
        Ok(LeadConversion {
            contact_id,
            account_id,
        })
    }

    /// Merges `losers` into `master` (same object), as `merge()` does: records pointing at a
    /// loser are re-parented to the master, the master is touched, and each loser goes to
    /// the Recycle Bin with `MasterRecordId` = master.
    pub fn merge(
        &mut self,
        object: &str,
        master: &str,
        losers: &[&str],
    ) -> Result<(), LineageError> {
        let Some((obj, def)) = self.object(object) else {
            return Err(LineageError::NotMergeable(object.to_string()));
        };
        let object = def.name.clone();
        if !matches!(object.as_str(), "Lead" | "Contact" | "Account") {
            return Err(LineageError::NotMergeable(object));
        }
        let Some(col_master) = def.column("MasterRecordId") else {
            return Err(LineageError::NotMergeable(object));
        };
        if losers.is_empty() || losers.len() > 2 {
            return Err(LineageError::LoserCount(losers.len()));
        }
        for id in std::iter::once(&master).chain(losers) {
            if self.live_index(obj, id, false).is_none() {
                return Err(LineageError::NotFound {
                    object: object.clone(),
                    id: id.to_string(),
                });
            }
        }
        let master_id = self.stored_id(obj, master);
        for loser in losers {
            if self.stored_id(obj, loser) == master_id {
                return Err(LineageError::SelfMerge(loser.to_string()));
            }
        }
        for loser in losers {
            let loser_id = self.stored_id(obj, loser);
            self.reparent(&object, &loser_id, &master_id);
        }
        self.update(&object, &master_id, Map::new());
        for loser in losers {
            let loser_id = self.stored_id(obj, loser);
            self.soft_delete_setting(&object, &loser_id, Some((col_master, Val::str(&master_id))));
        }
        Ok(())
    }

    /// A row that exists and is not deleted, in REST shape.
    fn live_record(&self, object: &str, id: &str) -> Option<Value> {
        let (obj, _) = self.object(object)?;
        self.live_index(obj, id, false)?;
        self.record(object, id)
    }

    /// The 18-character Id a row is stored under (callers may pass the 15-character form).
    fn stored_id(&self, obj: usize, id: &str) -> String {
        let stored = self
            .tables
            .get(obj)
            .and_then(|t| t.row(t.find(id)?))
            .zip(self.schema.objects.get(obj))
            .map(|(row, def)| row.get(def.col_id).clone());
        match stored {
            Some(Val::Str(s)) => s.to_string(),
            _ => id.to_string(),
        }
    }

    /// Points every writable reference to `from` (of type `object`) at `to` instead.
    fn reparent(&mut self, object: &str, from: &str, to: &str) {
        let mut moves: Vec<(String, String, String)> = Vec::new();
        for (obj, def) in self.schema.objects.iter().enumerate() {
            let fields = def.fields.iter().filter(|f| {
                f.ty == FieldType::Reference
                    && f.createable
                    && f.reference_to.iter().any(|r| r == object)
            });
            for field in fields {
                let Some(col) = field.column() else { continue };
                let Some(table) = self.tables.get(obj) else {
                    continue;
                };
                for idx in table.order.values() {
                    let Some(row) = table.row(*idx) else { continue };
                    if matches!(row.get(col), Val::Str(v) if &**v == from)
                        && let Val::Str(id) = row.get(def.col_id)
                    {
                        moves.push((def.name.clone(), id.to_string(), field.name.clone()));
                    }
                }
            }
        }
        for (object, id, field) in moves {
            let mut fields = Map::new();
            fields.insert(field, json!(to));
            self.update(&object, &id, fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn lead(org: &mut Org) -> String {
        org.insert(
            "Lead",
            fields(
                json!({"FirstName": "Ada", "LastName": "Byron", "Email": "ada@example.com",
                          "Company": "Engines Ltd", "Status": "Working - Contacted"}),
            ),
        )
    }

    #[test]
    fn converting_a_lead_creates_contact_and_account_and_marks_the_lead() {
        let mut org = Org::empty();
        let lead_id = lead(&mut org);
        let before = org.record("Lead", &lead_id).unwrap_or_default()["SystemModstamp"].clone();
        let done = org.convert_lead(&lead_id, None, None);
        let Ok(done) = done else {
            panic!("conversion failed: {done:?}");
        };
        let lead = org.record("Lead", &lead_id).unwrap_or_default();
        assert_eq!(lead["IsConverted"], true);
        assert_eq!(lead["ConvertedContactId"], done.contact_id.as_str());
        assert_eq!(lead["ConvertedAccountId"], done.account_id.as_str());
        assert_eq!(lead["ConvertedDate"], "2024-06-01");
        assert_eq!(lead["Status"], "Closed - Converted");
        assert_ne!(lead["SystemModstamp"], before);
        let contact = org.record("Contact", &done.contact_id).unwrap_or_default();
        assert_eq!(contact["Email"], "ada@example.com");
        assert_eq!(contact["AccountId"], done.account_id.as_str());
        let account = org.record("Account", &done.account_id).unwrap_or_default();
        assert_eq!(account["Name"], "Engines Ltd");
        assert_eq!(
            org.convert_lead(&lead_id, None, None),
            Err(LineageError::AlreadyConverted(lead_id.clone()))
        );
    }

    #[test]
    fn converting_into_existing_records_links_them() {
        let mut org = Org::empty();
        let account = org.insert("Account", fields(json!({"Name": "Existing"})));
        let contact = org.insert("Contact", fields(json!({"LastName": "Byron"})));
        let lead_id = lead(&mut org);
        let done = org.convert_lead(&lead_id, Some(&contact), Some(&account));
        assert_eq!(
            done,
            Ok(LeadConversion {
                contact_id: contact.clone(),
                account_id: account.clone()
            })
        );
        assert_eq!(org.count("Contact", false), 1);
        assert_eq!(org.count("Account", false), 1);
        let c = org.record("Contact", &contact).unwrap_or_default();
        assert_eq!(c["AccountId"], account.as_str());
        let second = lead(&mut org);
        let missing = org.convert_lead(&second, Some("003000000000099AAA"), None);
        assert!(matches!(missing, Err(LineageError::NotFound { .. })));
    }

    #[test]
    fn merging_deletes_losers_with_master_record_id_and_reparents_children() {
        let mut org = Org::empty();
        let keep = org.insert("Account", fields(json!({"Name": "Keep"})));
        let lose = org.insert("Account", fields(json!({"Name": "Lose"})));
        let child = org.insert(
            "Contact",
            fields(json!({"LastName": "Child", "AccountId": lose})),
        );
        assert_eq!(org.merge("Account", &keep, &[&lose]), Ok(()));
        assert_eq!(org.count("Account", false), 1);
        let loser = org.record("Account", &lose).unwrap_or_default();
        assert_eq!(loser["IsDeleted"], true);
        assert_eq!(loser["MasterRecordId"], keep.as_str());
        let master = org.record("Account", &keep).unwrap_or_default();
        assert_eq!(master["MasterRecordId"], Value::Null);
        let child = org.record("Contact", &child).unwrap_or_default();
        assert_eq!(child["AccountId"], keep.as_str());
        assert_eq!(
            org.merge("Account", &keep, &[&lose]),
            Err(LineageError::NotFound {
                object: "Account".into(),
                id: lose.clone()
            })
        );
        assert_eq!(
            org.merge("Account", &keep, &[&keep]),
            Err(LineageError::SelfMerge(keep.clone()))
        );
        assert!(matches!(
            org.merge("Opportunity", &keep, &[&lose]),
            Err(LineageError::NotMergeable(_))
        ));
    }
}
