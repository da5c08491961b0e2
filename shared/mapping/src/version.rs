//! Which field dates a record version.
//!
//! A call's `timestamp` and its deterministic `messageId` come from the record's version:
//! `SystemModstamp`, which sfsync's own extraction always selects (Salesforce moves it on
//! every change, including system changes that leave `LastModifiedDate` alone). Records
//! exported by another tool with the user's own field list often carry only
//! `LastModifiedDate`; it then serves instead, so such a file still maps (to the same
//! `messageId` every time). A record with neither cannot be versioned and is skipped.

use crate::record::{Fields, Kind, kind};

/// The field that served as a record's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionField {
    SystemModstamp,
    LastModifiedDate,
}

impl VersionField {
    /// The Salesforce field name.
    pub fn name(self) -> &'static str {
        match self {
            VersionField::SystemModstamp => "SystemModstamp",
            VersionField::LastModifiedDate => "LastModifiedDate",
        }
    }
}

impl std::fmt::Display for VersionField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The field that dates `record`: `SystemModstamp` when it has a value, else
/// `LastModifiedDate` when that has one, else none. A present but unparseable value is not
/// skipped over here: the mapping reports it as an invalid date rather than quietly using
/// another field.
pub fn version_field(record: &Fields<'_>) -> Option<VersionField> {
    [VersionField::SystemModstamp, VersionField::LastModifiedDate]
        .into_iter()
        .find(|field| {
            record
                .get_exact(field.name())
                .is_some_and(|v| kind(v) != Kind::Null)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;
    use serde_json::json;

    fn version(v: serde_json::Value) -> Option<VersionField> {
        let record = Record::from_value(&v);
        version_field(&record.fields().expect("an object"))
    }

    #[test]
    fn system_modstamp_first_then_last_modified_date() {
        let both = json!({"SystemModstamp": "x", "LastModifiedDate": "y"});
        assert_eq!(version(both), Some(VersionField::SystemModstamp));
        let null_modstamp = json!({"SystemModstamp": null, "LastModifiedDate": "y"});
        assert_eq!(version(null_modstamp), Some(VersionField::LastModifiedDate));
        let neither = json!({"LastModifiedDate": null, "CreatedDate": "z"});
        assert_eq!(version(neither), None);
    }
}
