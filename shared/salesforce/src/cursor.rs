//! A position in the (SystemModstamp, Id) order every extraction walks: what a checkpoint
//! saves, what a keyset query starts after, and what a Bulk job tracks as its maximum.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sfsync_mapping::Record;

use crate::error::Error;

/// A position in the (SystemModstamp, Id) order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub modstamp: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    /// The cursor of a REST-shaped record (`SystemModstamp` and `Id`).
    pub fn of_record(record: &Record) -> Result<Cursor, Error> {
        Cursor::of_parts(
            record.string_field("SystemModstamp").as_deref(),
            record.string_field("Id"),
        )
    }

    /// [`Cursor::of_record`] of a record built as a `Value` (a Bulk CSV row).
    pub fn of_value(record: &Value) -> Result<Cursor, Error> {
        Cursor::of_parts(
            record.get("SystemModstamp").and_then(Value::as_str),
            record.get("Id").and_then(Value::as_str).map(str::to_string),
        )
    }

    fn of_parts(modstamp: Option<&str>, id: Option<String>) -> Result<Cursor, Error> {
        let modstamp = modstamp.ok_or_else(|| Error::decode("a record has no SystemModstamp"))?;
        let modstamp = sfsync_mapping::time::parse_salesforce_datetime(modstamp)
            .map_err(|e| Error::decode(format!("SystemModstamp {modstamp:?}: {e}")))?;
        let id = id.ok_or_else(|| Error::decode("a record has no Id"))?;
        Ok(Cursor { modstamp, id })
    }
}
