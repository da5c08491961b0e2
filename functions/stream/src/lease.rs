//! One subscriber at a time: the lease item `pk = "stream", sk = "lease"` of the state
//! table, taken with a conditional put by the invocation that streams and given back when it
//! stops. Its expiry is the invocation's own deadline, past which Lambda has ended the
//! process, so a lease whose holder crashed frees itself at the latest when the holder could
//! no longer be running.
//!
//! It is one lease for the function rather than one per sync (as extraction has): one
//! invocation subscribes to every streaming sync, and a second subscriber to any of them
//! would only deliver the same events twice.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;

const PK: &str = "stream";
const SK: &str = "lease";

/// Who holds the lease, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The holding invocation's request id.
    pub owner: String,
    pub until: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another invocation ({}) streams until {}", .0.owner, .0.until)]
    Held(Holder),
    /// A DynamoDB call failed; the message keeps the SDK's whole context (service code and
    /// message, request id) for the logs.
    #[error(
        "stream lease on table {table}: {operation}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(source.as_ref())
    )]
    Store {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

#[derive(Debug, Clone)]
pub struct SubscriberLease {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl SubscriberLease {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> SubscriberLease {
        SubscriberLease {
            client,
            table: table.into(),
        }
    }

    fn store_error<E>(
        &self,
        operation: &'static str,
        e: aws_sdk_dynamodb::error::SdkError<E>,
    ) -> LeaseError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        LeaseError::Store {
            operation,
            table: self.table.clone(),
            source: Box::new(e),
        }
    }

    /// Takes the lease for `owner` until `until`, unless another owner holds one that has not
    /// expired at `now`. Taking it again as its owner extends it.
    pub async fn acquire(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), LeaseError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(PK.into()))
            .item("sk", AttributeValue::S(SK.into()))
            .item("owner", AttributeValue::S(owner.into()))
            .item(
                "until_ms",
                AttributeValue::N(until.timestamp_millis().to_string()),
            )
            // The table's TTL removes a lease nobody gave back, a day after it expired.
            .item(
                "ttl",
                AttributeValue::N((until.timestamp() + 86_400).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR until_ms < :now OR #owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.timestamp_millis().to_string()),
            )
            .expression_attribute_values(":me", AttributeValue::S(owner.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => {
                let holder = self.holder().await?.unwrap_or(Holder {
                    // Given back between our put and this read: the next trigger takes it.
                    owner: "(just released)".into(),
                    until: now,
                });
                Err(LeaseError::Held(holder))
            }
            Err(e) => Err(self.store_error("PutItem", e)),
        }
    }

    /// Gives the lease back if `owner` still holds it (a lease that expired and was taken
    /// by another invocation is left alone).
    pub async fn release(&self, owner: &str) -> Result<(), LeaseError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(PK.into()))
            .key("sk", AttributeValue::S(SK.into()))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", AttributeValue::S(owner.into()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(self.store_error("DeleteItem", e)),
        }
    }

    /// The current holder, if any (expired or not).
    pub async fn holder(&self) -> Result<Option<Holder>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(PK.into()))
            .key("sk", AttributeValue::S(SK.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.store_error("GetItem", e))?;
        Ok(out.item.as_ref().map(holder_of))
    }
}

fn holder_of(item: &HashMap<String, AttributeValue>) -> Holder {
    let owner = item
        .get("owner")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let until = item
        .get("until_ms")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .unwrap_or_default();
    Holder { owner, until }
}

fn is_conditional<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}
