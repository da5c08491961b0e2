//! The sync configuration: one TOML file with `[salesforce]`, `[[syncs]]` and
//! `[[destinations]]`. Unknown keys are rejected; every problem is reported with its key
//! path (`syncs[1].group_id`) and its line.
//!
//! Values may reference secrets (`${secret:NAME}`) and environment variables
//! (`${env:NAME}`). Loading never resolves them, so commands that connect to nothing (`map`)
//! work without credentials; `resolve_references` produces the resolved copy.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::secrets::{self, Resolver};

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
    #[serde(default = "default_true")]
    pub compress: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_message_bytes: default_max_message_bytes(),
            compress: true,
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
/// (Customer.io's Track API: "the primary profile must already exist"), so the Contact's
/// `identify` must be delivered first in the same run.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Customerio,
    CustomerioTrack,
    Segment,
    Rudderstack,
    Mixpanel,
    Amplitude,
    Webhook,
    File,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Customerio => "customerio",
            DestinationKind::CustomerioTrack => "customerio_track",
            DestinationKind::Segment => "segment",
            DestinationKind::Rudderstack => "rudderstack",
            DestinationKind::Mixpanel => "mixpanel",
            DestinationKind::Amplitude => "amplitude",
            DestinationKind::Webhook => "webhook",
            DestinationKind::File => "file",
        }
    }

    /// Regions the API has; empty when it has none.
    pub fn regions(self) -> &'static [&'static str] {
        match self {
            DestinationKind::Customerio
            | DestinationKind::CustomerioTrack
            | DestinationKind::Segment
            | DestinationKind::Amplitude => &["us", "eu"],
            DestinationKind::Mixpanel => &["us", "eu", "in"],
            _ => &[],
        }
    }

    /// Credential and target keys: which are required and which are allowed at all.
    fn keys(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            DestinationKind::Customerio => (&["api_key"], &["api_key"]),
            DestinationKind::CustomerioTrack => (&["site_id", "api_key"], &["site_id", "api_key"]),
            DestinationKind::Segment => (&["write_key"], &["write_key"]),
            DestinationKind::Rudderstack => (&["write_key", "endpoint"], &["write_key"]),
            DestinationKind::Mixpanel => (
                &["project_token"],
                &[
                    "project_token",
                    "project_id",
                    "username",
                    "secret",
                    "group_key",
                ],
            ),
            DestinationKind::Amplitude => (&["api_key"], &["api_key", "secret_key"]),
            DestinationKind::Webhook => (&["url", "secret"], &["url", "secret"]),
            DestinationKind::File => (&["path"], &["path"]),
        }
    }
}

impl fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    #[serde(default)]
    pub region: Option<String>,
    /// Base-URL override (proxies, private endpoints, tests; RudderStack's data plane URL).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only these syncs go to this destination; all when absent.
    #[serde(default)]
    pub syncs: Option<Vec<String>>,
    #[serde(default)]
    pub api_key: Option<String>,
    #[serde(default)]
    pub site_id: Option<String>,
    #[serde(default)]
    pub write_key: Option<String>,
    #[serde(default)]
    pub project_token: Option<String>,
    /// Mixpanel service account: project id, user name and secret.
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    /// Mixpanel service-account secret, or the webhook signing secret (`whsec_…`).
    #[serde(default)]
    pub secret: Option<String>,
    /// Amplitude: the project's secret key, needed by its User Privacy API to delete users.
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Mixpanel: the group key objects are written under (configured in the project).
    #[serde(default)]
    pub group_key: Option<String>,
    /// Mixpanel: the project's ID management system (Project Settings → Identity Merge),
    /// which decides how a `merge` call is sent. Default `simplified`.
    #[serde(default)]
    pub id_merge: Option<MixpanelIdMerge>,
    /// Webhook target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// File destination: JSON lines are appended here.
    #[serde(default)]
    pub path: Option<String>,
    /// Gzip request bodies where the API takes them (default true).
    #[serde(default)]
    pub gzip: Option<bool>,
    /// Lower the API's own batch limits (never raise them).
    #[serde(default)]
    pub max_batch_calls: Option<usize>,
    #[serde(default)]
    pub max_batch_bytes: Option<usize>,
    /// Per-request timeout.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// How long one delivery may keep retrying before calls are handed back as "retry later".
    #[serde(default)]
    pub retry_budget_seconds: Option<u64>,
}

/// Mixpanel's identity management systems ("Identity Management Overview", Mixpanel docs):
/// only Original ID Merge can merge two identified users (the `$merge` event through
/// `/import`); Simplified ID Merge cannot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixpanelIdMerge {
    Original,
    #[default]
    Simplified,
}

impl DestinationConfig {
    pub fn routes(&self, sync: &str) -> bool {
        self.syncs
            .as_ref()
            .is_none_or(|syncs| syncs.iter().any(|s| s == sync))
    }

    fn credential(&self, key: &str) -> Option<&String> {
        match key {
            "api_key" => self.api_key.as_ref(),
            "site_id" => self.site_id.as_ref(),
            "write_key" => self.write_key.as_ref(),
            "project_token" => self.project_token.as_ref(),
            "project_id" => self.project_id.as_ref(),
            "username" => self.username.as_ref(),
            "secret" => self.secret.as_ref(),
            "secret_key" => self.secret_key.as_ref(),
            "group_key" => self.group_key.as_ref(),
            "url" => self.url.as_ref(),
            "path" => self.path.as_ref(),
            "endpoint" => self.endpoint.as_ref(),
            _ => None,
        }
    }
}

const CREDENTIAL_KEYS: &[&str] = &[
    "api_key",
    "site_id",
    "write_key",
    "project_token",
    "project_id",
    "username",
    "secret",
    "secret_key",
    "group_key",
    "url",
    "path",
];

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Key path, e.g. `syncs[1].group_id` (indices from 0, as written in the file order).
    pub key: String,
    /// 1-based line of the key (or of its table when the key is missing).
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "the config has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates a config. References are checked for syntax, not resolved.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![problem_from_toml(text, &e)],
        })?;
        let locator = Locator::new(text);
        let mut problems = Vec::new();
        config.check(&mut |key: String, message: String| {
            let line = locator.line_of(&key);
            problems.push(ConfigProblem { key, line, message });
        });
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    pub fn sync(&self, name: &str) -> Option<&SyncConfig> {
        self.syncs.iter().find(|s| s.name == name)
    }

    pub fn destination(&self, name: &str) -> Option<&DestinationConfig> {
        self.destinations.iter().find(|d| d.name == name)
    }

    /// A copy with every `${secret:…}` and `${env:…}` replaced. Every reference that cannot
    /// be resolved is reported (by key and name, never by value).
    pub fn resolve_references(
        &self,
        text: &str,
        resolver: &dyn Resolver,
    ) -> Result<Config, ConfigError> {
        let locator = Locator::new(text);
        let mut problems = Vec::new();
        let mut out = self.clone();
        let mut fix = |key: String, value: &mut String| match secrets::resolve(value, resolver) {
            Ok(resolved) => *value = resolved,
            Err(e) => problems.push(ConfigProblem {
                line: locator.line_of(&key),
                key,
                message: e.to_string(),
            }),
        };
        for (key, value) in out.string_values_mut() {
            fix(key, value);
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every string a reference may stand in, with its key path.
    fn string_values_mut(&mut self) -> Vec<(String, &mut String)> {
        let mut out: Vec<(String, &mut String)> = Vec::new();
        let sf = &mut self.salesforce;
        out.push(("salesforce.login_url".into(), &mut sf.login_url));
        out.push(("salesforce.client_id".into(), &mut sf.client_id));
        for (k, v) in [
            ("client_secret", &mut sf.client_secret),
            ("username", &mut sf.username),
            ("private_key", &mut sf.private_key),
            ("refresh_token", &mut sf.refresh_token),
            ("jwt_audience", &mut sf.jwt_audience),
        ] {
            if let Some(v) = v.as_mut() {
                out.push((format!("salesforce.{k}"), v));
            }
        }
        for (i, d) in self.destinations.iter_mut().enumerate() {
            for (k, v) in [
                ("endpoint", &mut d.endpoint),
                ("api_key", &mut d.api_key),
                ("site_id", &mut d.site_id),
                ("write_key", &mut d.write_key),
                ("project_token", &mut d.project_token),
                ("project_id", &mut d.project_id),
                ("username", &mut d.username),
                ("secret", &mut d.secret),
                ("secret_key", &mut d.secret_key),
                ("url", &mut d.url),
                ("path", &mut d.path),
            ] {
                if let Some(v) = v.as_mut() {
                    out.push((format!("destinations[{i}].{k}"), v));
                }
            }
        }
        out
    }

    /// Semantic checks; `report(key, message)` is called once per problem.
    fn check(&self, report: &mut dyn FnMut(String, String)) {
        self.check_salesforce(report);
        let mut names = HashSet::new();
        for (i, sync) in self.syncs.iter().enumerate() {
            let at = |k: &str| format!("syncs[{i}].{k}");
            if !names.insert(sync.name.as_str()) {
                report(at("name"), format!("duplicate sync name {:?}", sync.name));
            }
            check_sync(sync, &at, report);
        }
        if self.syncs.is_empty() {
            report(
                "syncs".into(),
                "at least one [[syncs]] table is required".into(),
            );
        }
        let mut dest_names = HashSet::new();
        for (i, dest) in self.destinations.iter().enumerate() {
            let at = |k: &str| format!("destinations[{i}].{k}");
            if !dest_names.insert(dest.name.as_str()) {
                report(
                    at("name"),
                    format!("duplicate destination name {:?}", dest.name),
                );
            }
            check_destination(dest, &names, &at, report);
        }
        // Every string value may hold references: check their syntax here so that a typo
        // shows up in `validate`, not at 3 a.m. in Lambda.
        let mut copy = self.clone();
        for (key, value) in copy.string_values_mut() {
            if let Err(e) = secrets::check_syntax(value) {
                report(key, e.to_string());
            }
        }
    }

    fn check_salesforce(&self, report: &mut dyn FnMut(String, String)) {
        let sf = &self.salesforce;
        let at = |k: &str| format!("salesforce.{k}");
        if !secrets::has_reference(&sf.login_url) && !is_http_url(&sf.login_url) {
            report(
                at("login_url"),
                format!("{:?} is not an http(s) URL", sf.login_url),
            );
        }
        if sf.auth == AuthFlow::ClientCredentials
            && let Some(message) = client_credentials_host_problem(&sf.login_url)
        {
            report(at("login_url"), message);
        }
        if !is_api_version(&sf.api_version) {
            report(
                at("api_version"),
                format!("{:?} is not an API version like \"62.0\"", sf.api_version),
            );
        }
        if sf.client_id.trim().is_empty() {
            report(at("client_id"), "must not be empty".into());
        }
        let (required, allowed): (&[&str], &[&str]) = match sf.auth {
            AuthFlow::ClientCredentials => (&["client_secret"], &["client_secret"]),
            AuthFlow::JwtBearer => (
                &["username", "private_key"],
                &["username", "private_key", "jwt_audience"],
            ),
            AuthFlow::RefreshToken => (&["refresh_token"], &["refresh_token", "client_secret"]),
        };
        let present = [
            ("client_secret", sf.client_secret.is_some()),
            ("username", sf.username.is_some()),
            ("private_key", sf.private_key.is_some()),
            ("refresh_token", sf.refresh_token.is_some()),
            ("jwt_audience", sf.jwt_audience.is_some()),
        ];
        let flow = serde_flow_name(sf.auth);
        for (key, is_present) in present {
            if required.contains(&key) && !is_present {
                report(at(key), format!("required by auth = \"{flow}\""));
            }
            if is_present && !allowed.contains(&key) {
                report(at(key), format!("not used by auth = \"{flow}\""));
            }
        }
        if !(200..=2000).contains(&sf.page_size) {
            report(
                at("page_size"),
                format!(
                    "{} is outside Salesforce's batchSize range 200..=2000",
                    sf.page_size
                ),
            );
        }
        if !(sf.max_api_share > 0.0 && sf.max_api_share <= 1.0) {
            report(
                at("max_api_share"),
                format!("{} must be in (0, 1]", sf.max_api_share),
            );
        }
        if sf.lookback_seconds > 86_400 {
            report(
                at("lookback_seconds"),
                format!("{} is more than a day", sf.lookback_seconds),
            );
        }
    }
}

fn serde_flow_name(flow: AuthFlow) -> &'static str {
    match flow {
        AuthFlow::ClientCredentials => "client_credentials",
        AuthFlow::JwtBearer => "jwt_bearer",
        AuthFlow::RefreshToken => "refresh_token",
    }
}

fn check_sync(
    sync: &SyncConfig,
    at: &dyn Fn(&str) -> String,
    report: &mut dyn FnMut(String, String),
) {
    if !is_name(&sync.name) {
        report(
            at("name"),
            format!(
                "{:?} must be 1-64 characters of letters, digits, '_' or '-'",
                sync.name
            ),
        );
    }
    if !is_api_name(&sync.object) {
        report(
            at("object"),
            format!("{:?} is not an sObject API name", sync.object),
        );
    }
    let kind = sync.kind;
    // (key, value, required for this kind, allowed for this kind)
    let rules: [(&str, bool, bool, bool); 6] = [
        (
            "user_id",
            sync.user_id.is_some(),
            kind != SyncKind::Objects,
            true,
        ),
        (
            "group_id",
            sync.group_id.is_some(),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
        ),
        (
            "object_type_id",
            sync.object_type_id.is_some(),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
        ),
        (
            "event",
            sync.event.is_some(),
            false,
            kind == SyncKind::Events,
        ),
        (
            "event_field",
            sync.event_field.is_some(),
            false,
            kind == SyncKind::Events,
        ),
        (
            "timestamp_field",
            sync.timestamp_field.is_some(),
            false,
            kind == SyncKind::Events,
        ),
    ];
    for (key, present, required, allowed) in rules {
        if required && !present {
            report(at(key), format!("required for kind = \"{kind}\""));
        } else if present && !allowed {
            report(at(key), format!("not used by kind = \"{kind}\""));
        }
    }
    if kind == SyncKind::Events && sync.event.is_some() == sync.event_field.is_some() {
        report(
            at("event"),
            "events need exactly one of `event` (a fixed name) or `event_field`".into(),
        );
    }
    if let Some(event) = &sync.event
        && event.trim().is_empty()
    {
        report(at("event"), "must not be empty".into());
    }
    for (key, value) in [
        ("user_id", &sync.user_id),
        ("group_id", &sync.group_id),
        ("event_field", &sync.event_field),
        ("timestamp_field", &sync.timestamp_field),
    ] {
        if let Some(v) = value
            && !is_field_path(v)
        {
            report(at(key), format!("{v:?} is not a field name or parent path"));
        }
    }
    if let Some(t) = &sync.object_type_id
        && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()))
    {
        report(
            at("object_type_id"),
            format!("{t:?} must be a string of digits, like \"1\""),
        );
    }
    let mut seen = HashSet::new();
    for (j, field) in sync.fields.iter().enumerate() {
        if !is_field_path(field) {
            report(
                at(&format!("fields[{j}]")),
                format!("{field:?} is not a field name or parent path (Account.Name)"),
            );
        } else if !seen.insert(field.to_ascii_lowercase()) {
            report(
                at(&format!("fields[{j}]")),
                format!("{field:?} is listed twice"),
            );
        }
    }
    if let Some(w) = &sync.where_clause {
        let upper = w.to_ascii_uppercase();
        if w.trim().is_empty() {
            report(at("where"), "must not be empty".into());
        } else if upper.contains("ORDER BY") || upper.contains(" LIMIT ") || w.contains(';') {
            report(
                at("where"),
                "must be a condition only: sfsync adds ORDER BY and LIMIT itself".into(),
            );
        }
    }
    if sync.deletes && kind == SyncKind::Events {
        report(
            at("deletes"),
            "events cannot be deleted downstream; remove `deletes`".into(),
        );
    }
    if sync.conversions == Some(true) {
        if kind != SyncKind::People || !sync.object.eq_ignore_ascii_case("Lead") {
            report(
                at("conversions"),
                "only people syncs of Lead have conversions; remove `conversions`".into(),
            );
        } else if !sync.identified_by_record_id() {
            report(
                at("conversions"),
                "a conversion merges the Lead's Id into its Contact's Id, so the sync needs \
                 user_id = \"Id\" (or set conversions = false)"
                    .into(),
            );
        }
    }
    if sync.stream
        && let Some(reason) = no_change_events(&sync.object)
    {
        report(at("stream"), format!("{}: {reason}", sync.object));
    }
}

/// Why an object can have no Change Data Capture channel, if it cannot. Change events exist
/// for custom objects (`__c`) and the standard objects Salesforce lists as supported (Change
/// Data Capture Developer Guide, "Supported Objects"); metadata, platform events, external
/// and big objects, and the History/Share/Feed companions have none.
fn no_change_events(object: &str) -> Option<&'static str> {
    const NONE: [(&str, &str); 7] = [
        ("__mdt", "custom metadata types have no change events"),
        ("__e", "platform events have no change events"),
        ("__x", "external objects have no change events"),
        ("__b", "big objects have no change events"),
        ("History", "field history objects have no change events"),
        ("Share", "sharing objects have no change events"),
        ("Feed", "feed objects have no change events"),
    ];
    NONE.iter()
        .find(|(suffix, _)| object.ends_with(suffix))
        .map(|(_, why)| *why)
}

fn check_destination(
    dest: &DestinationConfig,
    syncs: &HashSet<&str>,
    at: &dyn Fn(&str) -> String,
    report: &mut dyn FnMut(String, String),
) {
    if !is_name(&dest.name) {
        report(
            at("name"),
            format!(
                "{:?} must be 1-64 characters of letters, digits, '_' or '-'",
                dest.name
            ),
        );
    }
    let kind = dest.kind;
    let (required, allowed) = kind.keys();
    for key in required {
        if dest.credential(key).is_none() {
            report(at(key), format!("required by type = \"{kind}\""));
        }
    }
    for key in CREDENTIAL_KEYS {
        if dest.credential(key).is_some() && !allowed.contains(key) {
            report(at(key), format!("not used by type = \"{kind}\""));
        }
    }
    match (&dest.region, kind.regions()) {
        (Some(_), []) => report(at("region"), format!("type = \"{kind}\" has no regions")),
        (Some(r), regions) if !regions.contains(&r.as_str()) => report(
            at("region"),
            format!("{r:?} is not one of {}", regions.join(", ")),
        ),
        _ => {}
    }
    if dest.id_merge.is_some() && kind != DestinationKind::Mixpanel {
        report(at("id_merge"), format!("not used by type = \"{kind}\""));
    }
    if kind == DestinationKind::Mixpanel {
        let service_account = [&dest.project_id, &dest.username, &dest.secret];
        let n = service_account.iter().filter(|v| v.is_some()).count();
        if n != 0 && n != 3 {
            report(
                at("project_id"),
                "a Mixpanel service account needs project_id, username and secret together".into(),
            );
        }
    }
    for (key, value) in [("endpoint", &dest.endpoint), ("url", &dest.url)] {
        if let Some(v) = value
            && !secrets::has_reference(v)
            && !is_http_url(v)
        {
            report(at(key), format!("{v:?} is not an http(s) URL"));
        }
    }
    if let Some(list) = &dest.syncs {
        for (j, name) in list.iter().enumerate() {
            if !syncs.contains(name.as_str()) {
                report(
                    at(&format!("syncs[{j}]")),
                    format!("no sync is named {name:?}"),
                );
            }
        }
    }
    for (key, value) in [
        ("max_batch_calls", dest.max_batch_calls),
        ("max_batch_bytes", dest.max_batch_bytes),
    ] {
        if value == Some(0) {
            report(at(key), "must be at least 1".into());
        }
    }
    if dest.timeout_seconds == Some(0) {
        report(at("timeout_seconds"), "must be at least 1".into());
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An sObject or field API name: a letter, then letters, digits and underscores.
pub fn is_api_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 80
}

/// A field name or a parent path like `Account.Owner.Email`.
pub fn is_field_path(s: &str) -> bool {
    s.split('.').all(is_api_name)
}

fn is_api_version(s: &str) -> bool {
    match s.split_once('.') {
        Some((major, "0")) => !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Salesforce serves the client_credentials flow only on the org's My Domain token
/// endpoint; the generic login hosts refuse it ("OAuth 2.0 Client Credentials Flow for
/// Server-to-Server Integration", Salesforce Help: the request goes to
/// `https://MyDomainName.my.salesforce.com/services/oauth2/token`). The problem with
/// `login_url` for that flow, if any, with the fix.
pub fn client_credentials_host_problem(login_url: &str) -> Option<String> {
    let rest = login_url
        .trim()
        .strip_prefix("https://")
        .or_else(|| login_url.trim().strip_prefix("http://"))?;
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host != "login.salesforce.com" && host != "test.salesforce.com" {
        return None;
    }
    Some(format!(
        "auth = \"client_credentials\" works only on your org's My Domain, and {host} refuses \
         it: set login_url to https://YOUR-DOMAIN.my.salesforce.com (a sandbox: \
         https://YOUR-DOMAIN--SANDBOX.sandbox.my.salesforce.com; Setup → My Domain shows it), \
         or use auth = \"jwt_bearer\""
    ))
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}

fn problem_from_toml(text: &str, e: &toml::de::Error) -> ConfigProblem {
    let line = e.span().map(|span| line_of_offset(text, span.start));
    let key = e
        .span()
        .and_then(|span| key_near(text, span.start))
        .unwrap_or_else(|| "(file)".to_string());
    ConfigProblem {
        key,
        line,
        message: with_suggestion(e.message().trim()),
    }
}

/// Adds the closest valid name to serde's "unknown field `client_sercet`, expected one of
/// `login_url`, …" (and to "unknown variant …" for misspelt values such as a `kind`), so
/// the user reads the fix instead of searching the list.
fn with_suggestion(message: &str) -> String {
    let is_unknown_name =
        message.starts_with("unknown field `") || message.starts_with("unknown variant `");
    if !is_unknown_name {
        return message.to_string();
    }
    // serde names the unknown one first, then every valid one, each between backticks.
    let mut names = message.split('`').skip(1).step_by(2);
    let Some(unknown) = names.next() else {
        return message.to_string();
    };
    format!("{message}{}", crate::suggest::did_you_mean(unknown, names))
}

/// The key path of the value or key at `offset`, best effort (for parse errors).
fn key_near(text: &str, offset: usize) -> Option<String> {
    Locator::new(text).key_at(offset)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the line of a key path in the original text, using toml_edit's spans.
struct Locator<'a> {
    text: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        Locator {
            text,
            doc: toml_edit::Document::parse(text).ok(),
        }
    }

    /// The line of `key` (e.g. `syncs[1].fields[2]`); when the key is absent, the line of
    /// the deepest key or table that exists on the path.
    fn line_of(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let mut best: Option<std::ops::Range<usize>> = None;
        for segment in key.split('.') {
            let (name, index) = match segment.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (segment, None),
            };
            let Some((k, item)) = table.get_key_value(name) else {
                break;
            };
            best = k.span().or(best);
            let next: Option<&dyn toml_edit::TableLike> = match (index, item) {
                (Some(i), toml_edit::Item::ArrayOfTables(tables)) => tables.get(i).map(|t| {
                    best = t.span().or(best.clone());
                    t as &dyn toml_edit::TableLike
                }),
                (Some(i), item) => {
                    if let Some(elem) = item.as_array().and_then(|a| a.get(i)) {
                        best = elem.span().or(best.clone());
                    }
                    None
                }
                (None, item) => item.as_table_like(),
            };
            match next {
                Some(t) => table = t,
                None => break,
            }
        }
        best.map(|span| line_of_offset(self.text, span.start))
    }

    /// The key path whose key or value contains `offset` (for serde errors).
    fn key_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let mut found = None;
        visit_table(doc.as_table(), "", offset, &mut found);
        found
    }
}

fn visit_table(table: &toml_edit::Table, prefix: &str, offset: usize, found: &mut Option<String>) {
    for (k, item) in table.iter() {
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let key_span = table.key(k).and_then(|key| key.span());
        let contains = |span: Option<std::ops::Range<usize>>| {
            span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
        };
        match item {
            toml_edit::Item::Table(t) => {
                if contains(key_span.clone()) {
                    *found = Some(path.clone());
                }
                visit_table(t, &path, offset, found);
            }
            toml_edit::Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    if contains(t.span()) {
                        *found = Some(p.clone());
                    }
                    visit_table(t, &p, offset, found);
                }
            }
            toml_edit::Item::Value(v) => {
                if contains(key_span) || contains(v.span()) {
                    *found = Some(path);
                }
            }
            toml_edit::Item::None => {}
        }
    }
}
