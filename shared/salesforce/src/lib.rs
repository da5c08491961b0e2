//! sfsync's Salesforce client: OAuth (client credentials, JWT bearer, refresh token), REST
//! query/queryAll with keyset pagination on (SystemModstamp, Id), Bulk API 2.0 for large
//! windows, getDeleted, describe-based validation, and API-limit accounting.
//!
//! ```no_run
//! # async fn demo(sf: &sfsync_mapping::config::SalesforceConfig, sync: &sfsync_mapping::SyncConfig) -> Result<(), sfsync_salesforce::Error> {
//! use sfsync_salesforce::{Client, ClientConfig, Window};
//! let client = Client::new(ClientConfig::from_config(sf)?)?;
//! let plan = client.plan(sync).await?;
//! let mut extraction = client.extract(&plan, Window {
//!     after: None,
//!     until: chrono::Utc::now(),
//!     include_deleted: sync.deletes,
//!     api: sync.api,
//!     where_clause: None,
//! });
//! while let Some(page) = extraction.next_page().await? {
//!     // hand page.records on, then checkpoint page.last
//! }
//! # Ok(()) }
//! ```

mod auth;
mod bulk;
mod client;
mod config;
mod cursor;
mod deleted;
mod describe;
mod error;
mod extract;
mod limits;
mod merged;
mod online;
mod plan;
mod rotation;
mod session_headers;
pub mod soql;

pub use bulk::{BulkJobState, StopFn};
pub use client::Client;
pub use config::{
    ClientConfig, Credentials, DEFAULT_BULK_UNSUPPORTED_OBJECTS, QUERY_TIMEOUT, SERVER_QUERY_LIMIT,
    default_audience,
};
pub use cursor::Cursor;
pub use deleted::{DELETED_MIN_WINDOW, DELETED_RETENTION_DAYS, DeletedRecord, DeletedResult};
pub use describe::{FieldDescribe, GlobalDescribe, ObjectDescribe, SObjectSummary};
pub use error::{Error, FieldProblem};
pub use extract::{Extraction, Page, Window};
pub use limits::{ApiUsage, LimitInfo};
pub use online::{ConfigFieldProblem, check_online, check_online_with};
pub use plan::{OPTIONAL_FIELDS, PlannedField, RelationshipHop, SyncPlan, suggestions};
pub use rotation::{
    RefreshTokenStore, RotatedRefreshToken, StoreError, StoreFuture, origin_of, supersedes,
};
pub use session_headers::SessionHeaders;
