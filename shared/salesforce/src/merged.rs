//! Which deleted records were merge losers: `queryAll` of `MasterRecordId` for ids that
//! getDeleted listed.
//!
//! getDeleted lists every deletion, merge losers included, with nothing but the id and the
//! date. A loser still in the Recycle Bin keeps its `MasterRecordId` ("If this record was
//! deleted as the result of a merge, this field contains the ID of the record that remains";
//! visible through queryAll), so asking for it lets a sync send the loser's merge instead of
//! a delete that would remove the merged person downstream.

use std::collections::HashMap;

use crate::client::Client;
use crate::error::Error;

/// Ids per query: 200 ids of 18 characters keep the SOQL far below Salesforce's URI limit.
const IDS_PER_QUERY: usize = 200;

fn is_record_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Client {
    /// For the ids among `ids` that were deleted by a merge: id → `MasterRecordId`. Only for
    /// objects with `MasterRecordId` (Lead, Contact, Account); ids not of record-id shape are
    /// left out of the query (never interpolated into SOQL).
    pub async fn merged_into(
        &self,
        object: &str,
        ids: &[String],
    ) -> Result<HashMap<String, String>, Error> {
        if !sfsync_mapping::config::is_api_name(object) {
            return Err(Error::config(format!(
                "{object:?} is not an sObject API name"
            )));
        }
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| is_record_id(id))
            .collect();
        let mut out = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let list = chunk
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",");
            let soql = format!(
                "SELECT Id, MasterRecordId FROM {object} WHERE Id IN ({list}) AND MasterRecordId != null"
            );
            let mut page = self.query_page(&soql, true).await?;
            loop {
                for record in &page.records {
                    if let (Some(id), Some(master)) = (
                        record.string_field("Id"),
                        record.string_field("MasterRecordId"),
                    ) {
                        out.insert(id, master);
                    }
                }
                match page.next_records_url.take() {
                    Some(next) if !page.done => page = self.next_query_page(&next).await?,
                    _ => break,
                }
            }
        }
        Ok(out)
    }
}
