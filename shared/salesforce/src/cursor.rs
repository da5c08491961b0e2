//! A position in the (SystemModstamp, Id) order every extraction walks: what a checkpoint
//! saves, what a keyset query starts after, and what a Bulk job tracks as its maximum.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// A position in the (SystemModstamp, Id) order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub modstamp: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// The cursor of a REST-shaped record (`SystemModstamp` and `Id`).
    pub fn of_record(record: &Value) -> Result<Cursor, Error> {
        let modstamp = record
            .get("SystemModstamp")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::decode("a record has no SystemModstamp"))?;
        let modstamp = sfsync_mapping::time::parse_salesforce_datetime(modstamp)
            .map_err(|e| Error::decode(format!("SystemModstamp {modstamp:?}: {e}")))?;
        let id = record
            .get("Id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::decode("a record has no Id"))?;
        Ok(Cursor {
            modstamp,
            id: id.to_string(),
        })
    }
}
