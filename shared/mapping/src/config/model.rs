//! What a config file says about Salesforce, the syncs and the pipeline, as plain data.
//! Destinations have a module of their own (`destinations`); the rules a valid config
//! follows are in `validate`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::destinations::DestinationConfig;

/// The Salesforce REST API version used when the config does not say.
pub const DEFAULT_API_VERSION: &str = "62.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub salesforce: SalesforceConfig,
    #[serde(default)]
    pub syncs: Vec<SyncConfig>,
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    #[serde(default)]
    pub pipeline: PipelineConfig,
}

/// How the stages talk to each other in AWS (the local run passes messages in memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Largest SQS message body. SQS bills every 64 KiB as one request, so bigger messages
    /// buy nothing; 256 KiB is the classic limit every queue accepts.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Gzip + base64 message bodies: several times more records per billed request.
    /// `false` turns compression off whatever `compression_level` says (validation refuses
    /// the two together); configs written before the level existed keep working.
    #[serde(default = "default_true")]
    pub compress: bool,
    /// The gzip level of message bodies, 0 (off) to 9 (smallest); `None`: the default,
    /// [`DEFAULT_COMPRESSION_LEVEL`]. SQS bills bytes, so a higher level buys fewer billed
    /// requests with Lambda CPU (docs/benchmarks.md, "SQS compression level").
    #[serde(default)]
    pub compression_level: Option<u32>,
}

/// The gzip level of SQS message bodies when the config does not name one: the level that
/// saved the most (billed SQS requests against Lambda CPU) when measured
/// (docs/benchmarks.md, "SQS compression level").
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// The highest gzip level.
pub const MAX_COMPRESSION_LEVEL: u32 = 9;

impl PipelineConfig {
    /// The gzip level bodies are compressed at: 0 when compression is off.
    pub fn compression_level(&self) -> u32 {
        if !self.compress {
            return 0;
        }
        self.compression_level
            .unwrap_or(DEFAULT_COMPRESSION_LEVEL)
            .min(MAX_COMPRESSION_LEVEL)
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_message_bytes: default_max_message_bytes(),
            compress: true,
            compression_level: None,
        }
    }
}

fn default_max_message_bytes() -> usize {
    256 * 1024
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFlow {
    ClientCredentials,
    JwtBearer,
    RefreshToken,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// OAuth host: `https://login.salesforce.com`, `https://test.salesforce.com` or the org's
    /// My Domain (`https://<domain>.my.salesforce.com`, required for client_credentials).
    pub login_url: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub auth: AuthFlow,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// JWT `aud`; by default `https://test.salesforce.com` for sandboxes, else login.
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// REST page size (`Sforce-Query-Options: batchSize`), 200..=2000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Each incremental query starts this far before the checkpoint, so that records whose
    /// transaction committed late (with an older SystemModstamp) are still caught.
    #[serde(default = "default_lookback_seconds")]
    pub lookback_seconds: u64,
    /// Use Bulk API 2.0 when a query would return more records than this.
    #[serde(default = "default_bulk_threshold")]
    pub bulk_threshold: u64,
    /// Stop cleanly once this share of the org's daily API requests is used (0 < x <= 1).
    #[serde(default = "default_max_api_share")]
    pub max_api_share: f64,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}
fn default_page_size() -> u32 {
    2000
}
fn default_lookback_seconds() -> u64 {
    300
}
fn default_bulk_threshold() -> u64 {
    100_000
}
fn default_max_api_share() -> f64 {
    0.8
}

/// What a sync turns each record into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// `identify` (Contacts, Leads, Users).
    People,
    /// `track`, tied to a person (Tasks).
    Events,
    /// `group` (Accounts, Opportunities, Campaigns, custom objects).
    Objects,
    /// `group` with both `userId` and `groupId` (AccountContactRelation, ...).
    Relationships,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::People => "people",
            SyncKind::Events => "events",
            SyncKind::Objects => "objects",
            SyncKind::Relationships => "relationships",
        }
    }
}

impl fmt::Display for SyncKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which Salesforce API extracts a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractApi {
    /// REST, switching to Bulk API 2.0 above `salesforce.bulk_threshold` records.
    #[default]
    Auto,
    Rest,
    Bulk,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub name: String,
    pub object: String,
    pub kind: SyncKind,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub object_type_id: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub event_field: Option<String>,
    #[serde(default)]
    pub timestamp_field: Option<String>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default, rename = "where")]
    pub where_clause: Option<String>,
    #[serde(default)]
    pub deletes: bool,
    #[serde(default)]
    pub api: ExtractApi,
    /// Also deliver this sync's changes seconds after they commit, through Change Data
    /// Capture (the `stream` stage); the scheduled extraction keeps running as the proof.
    /// The object must have Change Data Capture enabled in Salesforce.
    #[serde(default)]
    pub stream: bool,
    /// People syncs of `Lead`: turn a converted Lead into a `merge` of the Lead's identity
    /// into its Contact's. Unset means on for a Lead people sync identified by `Id`.
    #[serde(default)]
    pub conversions: Option<bool>,
}

/// `syncs` in the order a run takes them: as written, except that Lead people syncs that
/// follow conversions go after every other sync. A conversion's `merge` names the Contact it
/// became, and some APIs ignore a merge whose surviving person does not exist yet
/// (Customer.io's Track API: "the primary profile must already exist"), so a local run
/// delivers the Contact's `identify` first. This order alone does not survive SQS (no order,
/// parallel deliveries): the Track destination also identifies a merge's survivor itself
/// before sending the merge (`sfsync_destinations`, module `prerequisite`).
pub fn run_order<'a>(syncs: impl IntoIterator<Item = &'a SyncConfig>) -> Vec<&'a SyncConfig> {
    let mut ordered: Vec<&SyncConfig> = syncs.into_iter().collect();
    // Stable: the written order stays among equals.
    ordered.sort_by_key(|s| s.converts_leads());
    ordered
}

/// Objects whose records Salesforce can merge (`merge()`, SOAP API Developer Guide): their
/// deleted losers carry `MasterRecordId`.
pub const MERGEABLE_OBJECTS: &[&str] = &["Account", "Contact", "Lead"];

impl SyncConfig {
    /// Whether this sync turns Lead conversions into `merge` calls.
    pub fn converts_leads(&self) -> bool {
        self.kind == SyncKind::People
            && self.object.eq_ignore_ascii_case("Lead")
            && self
                .conversions
                .unwrap_or_else(|| self.identified_by_record_id())
    }

    /// Whether a deleted record with `MasterRecordId` becomes a `merge` call: people and
    /// object syncs with `deletes` of an object Salesforce merges.
    pub fn follows_merges(&self) -> bool {
        self.deletes
            && matches!(self.kind, SyncKind::People | SyncKind::Objects)
            && MERGEABLE_OBJECTS
                .iter()
                .any(|o| o.eq_ignore_ascii_case(&self.object))
    }

    /// True when the sync's own identifier (`user_id` for people, `group_id` for objects)
    /// is the record's `Id`, the only identifier a merge or conversion names.
    pub fn identified_by_record_id(&self) -> bool {
        let key = match self.kind {
            SyncKind::Objects => self.group_id.as_deref(),
            _ => self.user_id.as_deref(),
        };
        key.is_none_or(|k| k.eq_ignore_ascii_case("Id"))
    }

    /// The field an event's timestamp comes from.
    pub fn timestamp_field(&self) -> &str {
        self.timestamp_field.as_deref().unwrap_or("CreatedDate")
    }

    /// Every field the extractor must select for this sync, in a stable order without
    /// duplicates: the system fields the pipeline relies on, the identifiers, then `fields`.
    pub fn select_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |f: &str| {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                out.push(f.to_string());
            }
        };
        push("Id");
        push("SystemModstamp");
        push("IsDeleted");
        for f in [&self.user_id, &self.group_id, &self.event_field]
            .into_iter()
            .flatten()
        {
            push(f);
        }
        if self.kind == SyncKind::Events {
            push(self.timestamp_field());
        }
        if self.converts_leads() {
            push("IsConverted");
            push("ConvertedContactId");
        }
        if self.follows_merges() {
            push("MasterRecordId");
        }
        for f in &self.fields {
            push(f);
        }
        out
    }
}
