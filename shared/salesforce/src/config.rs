//! How to reach and authenticate against an org, and how hard to use it.

use std::fmt;
use std::time::Duration;

use sfsync_mapping::config::{AuthFlow, SalesforceConfig};

use crate::error::Error;

/// OAuth 2.0 server-to-server credentials. `Debug` never prints a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `grant_type=client_credentials` (the org's My Domain host only).
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, an RS256 assertion.
    JwtBearer {
        client_id: String,
        username: String,
        private_key_pem: String,
        audience: String,
    },
    /// `grant_type=refresh_token`; a rotated refresh token is kept for the process.
    RefreshToken {
        client_id: String,
        client_secret: Option<String>,
        refresh_token: String,
    },
}

impl Credentials {
    pub fn client_id(&self) -> &str {
        match self {
            Credentials::ClientCredentials { client_id, .. }
            | Credentials::JwtBearer { client_id, .. }
            | Credentials::RefreshToken { client_id, .. } => client_id,
        }
    }

    /// The flow's name as Salesforce and the config spell it.
    pub fn flow(&self) -> &'static str {
        match self {
            Credentials::ClientCredentials { .. } => "client_credentials",
            Credentials::JwtBearer { .. } => "jwt_bearer",
            Credentials::RefreshToken { .. } => "refresh_token",
        }
    }

    /// Every secret value, for redaction.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Credentials::ClientCredentials { client_secret, .. } => {
                out.push(client_secret.clone());
            }
            Credentials::JwtBearer {
                private_key_pem, ..
            } => {
                out.push(private_key_pem.clone());
                // The key body, line by line: a server could echo any part of it.
                for line in private_key_pem.lines() {
                    let line = line.trim();
                    if !line.is_empty() && !line.starts_with("-----") {
                        out.push(line.to_string());
                    }
                }
            }
            Credentials::RefreshToken {
                client_secret,
                refresh_token,
                ..
            } => {
                out.push(refresh_token.clone());
                out.extend(client_secret.clone());
            }
        }
        out
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &REDACTED)
                .finish(),
            Credentials::JwtBearer {
                client_id,
                username,
                audience,
                ..
            } => f
                .debug_struct("JwtBearer")
                .field("client_id", client_id)
                .field("username", username)
                .field("private_key_pem", &REDACTED)
                .field("audience", audience)
                .finish(),
            Credentials::RefreshToken {
                client_id,
                client_secret,
                ..
            } => f
                .debug_struct("RefreshToken")
                .field("client_id", client_id)
                .field("client_secret", &client_secret.as_ref().map(|_| REDACTED))
                .field("refresh_token", &REDACTED)
                .finish(),
        }
    }
}

/// Objects that Bulk API 2.0 cannot query (Salesforce's documented list for Bulk queries);
/// they are always extracted over REST.
pub const DEFAULT_BULK_UNSUPPORTED_OBJECTS: &[&str] = &[
    "CaseStatus",
    "ContractStatus",
    "KnowledgeArticle",
    "KnowledgeArticleVersion",
    "KnowledgeArticleVersionHistory",
    "KnowledgeArticleViewStat",
    "KnowledgeArticleVoteStat",
    "LeadStatus",
    "OpportunityStage",
    "PartnerRole",
    "RecentlyViewed",
    "SolutionStatus",
    "TaskPriority",
    "TaskStatus",
    "UserRecordAccess",
];

/// Salesforce's server-side limit on one query (`QUERY_TIMEOUT` after 2 minutes).
pub const SERVER_QUERY_LIMIT: Duration = Duration::from_secs(120);
/// The client's default timeout of one query request: comfortably above the server's
/// limit (see `ClientConfig::query_timeout`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(180);

/// Everything the client needs. Build it with [`ClientConfig::from_config`] or
/// [`ClientConfig::new`] (defaults for everything but the host and credentials).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// OAuth host (`https://login.salesforce.com`, `https://test.salesforce.com`, My Domain).
    pub login_url: String,
    /// REST API version without the `v`, e.g. `"62.0"`.
    pub api_version: String,
    pub credentials: Credentials,
    /// REST `batchSize` (200..=2000; Salesforce may return fewer).
    pub page_size: u32,
    /// Stop with [`Error::ApiLimit`] once `used / max` of the daily requests reaches this.
    pub max_api_share: f64,
    /// With `api = auto`, use Bulk API 2.0 when a query counts more records than this.
    pub bulk_threshold: u64,
    /// Timeout of one HTTP request (connect + answer).
    pub request_timeout: Duration,
    /// Timeout of one SOQL query request (first page or `nextRecordsUrl`). Salesforce stops
    /// a query after 2 minutes and answers `QUERY_TIMEOUT`, which makes the extraction
    /// split the window (or move to Bulk API 2.0). The client must still be listening
    /// then: with a timeout of its own at or under 120 s it would give up first, retry the
    /// same query (each try counted against the daily API requests) and never split. The
    /// default, 180 s, leaves a minute for the network and for sending a full 2,000-record
    /// page after a slow query; it must stay above the server's limit.
    pub query_timeout: Duration,
    /// How many times a 5xx, a timeout or a connection error is retried.
    pub max_retries: u32,
    /// Base of the exponential backoff (full jitter) between retries.
    pub retry_base: Duration,
    /// Cap of one backoff delay.
    pub retry_max_delay: Duration,
    /// First delay between two polls of a Bulk job; doubles up to `bulk_poll_max`.
    pub bulk_poll_initial: Duration,
    pub bulk_poll_max: Duration,
    /// Give up on a Bulk job that is not done after this long.
    pub bulk_timeout: Duration,
    /// `maxRecords` of one Bulk results page (one page's CSV text is held in memory).
    pub bulk_page_size: u32,
    /// Rows of a Bulk results page parsed and handed on at a time (parsed rows take several
    /// times the memory of the CSV text). By default the whole page: the Lambdas pack each
    /// page into the fullest SQS messages; `sfsync sync` sets a REST page's worth.
    pub bulk_rows_per_page: u32,
    /// Objects never sent to Bulk API 2.0.
    pub bulk_unsupported_objects: Vec<String>,
    /// How many times one part of a window may be halved after `QUERY_TIMEOUT` before the
    /// error is returned (24 halvings take 25 years down to under a minute).
    pub max_window_splits: u32,
}

impl ClientConfig {
    /// A config with the defaults of `sfsync.toml`.
    pub fn new(login_url: impl Into<String>, credentials: Credentials) -> ClientConfig {
        ClientConfig {
            login_url: login_url.into(),
            api_version: sfsync_mapping::config::DEFAULT_API_VERSION.to_string(),
            credentials,
            page_size: 2000,
            max_api_share: 0.8,
            bulk_threshold: 100_000,
            request_timeout: Duration::from_secs(120),
            query_timeout: QUERY_TIMEOUT,
            max_retries: 5,
            retry_base: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            bulk_poll_initial: Duration::from_millis(500),
            bulk_poll_max: Duration::from_secs(15),
            bulk_timeout: Duration::from_secs(4 * 3600),
            bulk_page_size: 10_000,
            bulk_rows_per_page: u32::MAX,
            bulk_unsupported_objects: DEFAULT_BULK_UNSUPPORTED_OBJECTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            max_window_splits: 24,
        }
    }

    /// From an already-resolved `[salesforce]` table (no `${secret:…}` left).
    ///
    /// `private_key` may hold the PEM itself (also with `\n` escapes, as environment
    /// variables often carry it) or the path of a PEM file.
    pub fn from_config(sf: &SalesforceConfig) -> Result<ClientConfig, Error> {
        let need = |value: &Option<String>, key: &str| -> Result<String, Error> {
            match value {
                Some(v) if !v.trim().is_empty() => Ok(v.clone()),
                _ => Err(Error::config(format!(
                    "salesforce.{key} is required by auth = \"{}\"",
                    flow_name(sf.auth)
                ))),
            }
        };
        if sf.client_id.trim().is_empty() {
            return Err(Error::config("salesforce.client_id must not be empty"));
        }
        if sf.login_url.contains("${") {
            return Err(Error::config(
                "salesforce.login_url still holds a ${…} reference: resolve the config first",
            ));
        }
        // `validate` catches a literal login_url; one resolved from a secret is checked here,
        // before a token request that Salesforce would refuse.
        if sf.auth == AuthFlow::ClientCredentials
            && let Some(problem) =
                sfsync_mapping::config::client_credentials_host_problem(&sf.login_url)
        {
            return Err(Error::config(format!("salesforce.login_url: {problem}")));
        }
        let credentials = match sf.auth {
            AuthFlow::ClientCredentials => Credentials::ClientCredentials {
                client_id: sf.client_id.clone(),
                client_secret: need(&sf.client_secret, "client_secret")?,
            },
            AuthFlow::JwtBearer => Credentials::JwtBearer {
                client_id: sf.client_id.clone(),
                username: need(&sf.username, "username")?,
                private_key_pem: load_private_key(&need(&sf.private_key, "private_key")?)?,
                audience: sf
                    .jwt_audience
                    .clone()
                    .filter(|a| !a.trim().is_empty())
                    .unwrap_or_else(|| default_audience(&sf.login_url).to_string()),
            },
            AuthFlow::RefreshToken => Credentials::RefreshToken {
                client_id: sf.client_id.clone(),
                client_secret: sf.client_secret.clone().filter(|s| !s.is_empty()),
                refresh_token: need(&sf.refresh_token, "refresh_token")?,
            },
        };
        let mut config = ClientConfig::new(sf.login_url.trim_end_matches('/'), credentials);
        config.api_version = sf.api_version.trim_start_matches('v').to_string();
        config.page_size = sf.page_size.clamp(200, 2000);
        config.max_api_share = sf.max_api_share;
        config.bulk_threshold = sf.bulk_threshold;
        Ok(config)
    }
}

fn flow_name(flow: AuthFlow) -> &'static str {
    match flow {
        AuthFlow::ClientCredentials => "client_credentials",
        AuthFlow::JwtBearer => "jwt_bearer",
        AuthFlow::RefreshToken => "refresh_token",
    }
}

/// The JWT `aud` Salesforce expects for a login host: test.salesforce.com for sandboxes.
pub fn default_audience(login_url: &str) -> &'static str {
    let lower = login_url.to_ascii_lowercase();
    if lower.contains("test.salesforce.com") || lower.contains(".sandbox.") {
        "https://test.salesforce.com"
    } else {
        "https://login.salesforce.com"
    }
}

fn load_private_key(value: &str) -> Result<String, Error> {
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.replace("\\n", "\n"));
    }
    let path = std::path::Path::new(trimmed);
    if trimmed.len() < 4096 && path.is_file() {
        return std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read salesforce.private_key file {}: {e}",
                path.display()
            ))
        });
    }
    // Never echo the value: it may be a mangled key.
    Err(Error::config(
        "salesforce.private_key is neither a PEM key (-----BEGIN …) nor a readable file path",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(auth: AuthFlow) -> SalesforceConfig {
        SalesforceConfig {
            login_url: "https://acme.my.salesforce.com/".into(),
            api_version: "61.0".into(),
            auth,
            client_id: "cid".into(),
            client_secret: Some("the-client-secret".into()),
            username: Some("me@example.com".into()),
            private_key: Some(
                "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----".into(),
            ),
            refresh_token: Some("the-refresh-token".into()),
            jwt_audience: None,
            page_size: 5000,
            lookback_seconds: 300,
            bulk_threshold: 10,
            max_api_share: 0.5,
        }
    }

    #[test]
    fn from_config_maps_every_flow() {
        let c = ClientConfig::from_config(&sf(AuthFlow::ClientCredentials)).unwrap();
        assert_eq!(c.login_url, "https://acme.my.salesforce.com");
        assert_eq!(c.api_version, "61.0");
        assert_eq!(c.page_size, 2000);
        assert_eq!(c.bulk_threshold, 10);
        assert!(matches!(
            c.credentials,
            Credentials::ClientCredentials { .. }
        ));

        let c = ClientConfig::from_config(&sf(AuthFlow::JwtBearer)).unwrap();
        match c.credentials {
            Credentials::JwtBearer {
                audience,
                private_key_pem,
                ..
            } => {
                assert_eq!(audience, "https://login.salesforce.com");
                assert!(private_key_pem.contains("\nAAAA\n"));
            }
            other => panic!("wrong flow {other:?}"),
        }
        let c = ClientConfig::from_config(&sf(AuthFlow::RefreshToken)).unwrap();
        assert!(matches!(c.credentials, Credentials::RefreshToken { .. }));
    }

    #[test]
    fn sandbox_audience_and_override() {
        assert_eq!(
            default_audience("https://test.salesforce.com"),
            "https://test.salesforce.com"
        );
        assert_eq!(
            default_audience("https://acme--dev.sandbox.my.salesforce.com"),
            "https://test.salesforce.com"
        );
        let mut s = sf(AuthFlow::JwtBearer);
        s.jwt_audience = Some("https://custom.example".into());
        let c = ClientConfig::from_config(&s).unwrap();
        assert!(
            matches!(c.credentials, Credentials::JwtBearer { ref audience, .. } if audience == "https://custom.example")
        );
    }

    #[test]
    fn client_credentials_on_a_generic_login_host_is_refused_by_key() {
        let mut s = sf(AuthFlow::ClientCredentials);
        s.login_url = "https://test.salesforce.com".into();
        let e = ClientConfig::from_config(&s).unwrap_err();
        assert!(e.to_string().contains("salesforce.login_url"), "{e}");
        assert!(e.to_string().contains("My Domain"), "{e}");
        // JWT bearer may use it.
        let mut s = sf(AuthFlow::JwtBearer);
        s.login_url = "https://test.salesforce.com".into();
        assert!(ClientConfig::from_config(&s).is_ok());
    }

    #[test]
    fn missing_secret_is_reported_by_key() {
        let mut s = sf(AuthFlow::ClientCredentials);
        s.client_secret = None;
        let e = ClientConfig::from_config(&s).unwrap_err();
        assert!(e.to_string().contains("salesforce.client_secret"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        for flow in [
            AuthFlow::ClientCredentials,
            AuthFlow::JwtBearer,
            AuthFlow::RefreshToken,
        ] {
            let c = ClientConfig::from_config(&sf(flow)).unwrap();
            let text = format!("{c:?}");
            assert!(!text.contains("the-client-secret"), "{text}");
            assert!(!text.contains("the-refresh-token"), "{text}");
            assert!(!text.contains("AAAA"), "{text}");
        }
    }
}
