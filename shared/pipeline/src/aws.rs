//! AWS edges: SDK clients, the secret, and the sync config of the Lambda functions.
//!
//! The functions take their sync config from the `SFSYNC_CONFIG` environment variable (the
//! TOML itself) when it is set, else from the key `sfsync_config` of the Secrets Manager
//! secret. The secret is read once per cold start either way, so the config costs no extra
//! call, changes without a code change or a redeploy (new cold starts pick it up), is
//! versioned by Secrets Manager (AWSPREVIOUS rolls back), and is not bound by Lambda's 4 KB
//! limit on environment variables. The environment variable suits small configs and tests.

use aws_config::BehaviorVersion;
use sfsync_mapping::Config;
use sfsync_mapping::secrets::SecretMap;

/// The secret key that may hold the sync config.
pub const CONFIG_SECRET_KEY: &str = "sfsync_config";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// Secrets Manager's `GetSecretValue` failed. The message keeps the SDK's whole context
    /// (service code and message, request id): it names the secret, never its value.
    #[error(
        "cannot read secret {secret_id}: {}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(source.as_ref())
    )]
    SecretRead {
        secret_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The secret is binary: only a `SecretString` is read.
    #[error(
        "cannot read secret {secret_id}: the secret has no SecretString (binary secrets are not supported)"
    )]
    SecretNotString { secret_id: String },
    /// The `SecretString` is not a JSON object of strings. `source` names the key or the
    /// line and column, never a value.
    #[error("cannot read secret {secret_id}: {source}")]
    SecretFormat {
        secret_id: String,
        #[source]
        source: sfsync_mapping::secrets::ReferenceError,
    },
    #[error(
        "no sync config: set SFSYNC_CONFIG or put the TOML under the secret's key \"{CONFIG_SECRET_KEY}\""
    )]
    NoConfig,
    #[error("invalid sync config ({source_name}): {source}")]
    Config {
        source_name: String,
        source: sfsync_mapping::config::ConfigError,
    },
    /// A destination of the config cannot be built.
    #[error("invalid sync config (destinations): {0}")]
    Destinations(#[from] crate::deliver::DeliverSetupError),
    /// The `[salesforce]` settings cannot make a client.
    #[error("invalid sync config (salesforce): {0}")]
    Salesforce(#[from] sfsync_salesforce::Error),
}

/// Loads the shared AWS config (region, credentials, `AWS_ENDPOINT_URL` for emulators).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

pub fn env(name: &'static str) -> Result<String, SetupError> {
    std::env::var(name).map_err(|_| SetupError::MissingEnv(name))
}

/// Reads the secret (a JSON object of strings). The error never contains its value.
pub async fn load_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<SecretMap, SetupError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SetupError::SecretRead {
            secret_id: secret_id.to_string(),
            source: e.into(),
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| SetupError::SecretNotString {
            secret_id: secret_id.to_string(),
        })?;
    SecretMap::from_json(text).map_err(|source| SetupError::SecretFormat {
        secret_id: secret_id.to_string(),
        source,
    })
}

/// The function's sync config, parsed, validated and resolved against the secret: a
/// Lambda's cold start fails here, with every problem listed, rather than mid-run.
pub fn function_config(secrets: &SecretMap) -> Result<Config, SetupError> {
    config_from(std::env::var("SFSYNC_CONFIG").ok(), secrets)
}

/// [`function_config`] with the value of `SFSYNC_CONFIG` given.
fn config_from(env_config: Option<String>, secrets: &SecretMap) -> Result<Config, SetupError> {
    let (text, source_name) = match env_config {
        Some(text) => (text, "SFSYNC_CONFIG".to_string()),
        None => match secrets.0.get(CONFIG_SECRET_KEY) {
            Some(text) => (text.clone(), format!("secret key {CONFIG_SECRET_KEY}")),
            None => return Err(SetupError::NoConfig),
        },
    };
    let config = Config::parse(&text).map_err(|source| SetupError::Config {
        source_name: source_name.clone(),
        source,
    })?;
    config
        .resolve_references(&text, secrets)
        .map_err(|source| SetupError::Config {
            source_name,
            source,
        })
}

/// Converts a Lambda deadline (epoch milliseconds) into an `Instant`.
pub fn deadline_instant(deadline_epoch_ms: u64) -> Option<std::time::Instant> {
    if deadline_epoch_ms == 0 {
        return None;
    }
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let left = deadline_epoch_ms.saturating_sub(now_ms);
    Some(std::time::Instant::now() + std::time::Duration::from_millis(left))
}

/// Time left before a deadline, less a safety margin.
pub fn budget_until(
    deadline: Option<std::time::Instant>,
    margin: std::time::Duration,
    cap: std::time::Duration,
) -> std::time::Duration {
    deadline
        .map(|d| {
            d.saturating_duration_since(std::time::Instant::now())
                .saturating_sub(margin)
        })
        .unwrap_or(cap)
        .min(cap)
}

/// Where a function finds its resources; `from_env` reads the variables the SAM template
/// sets. Tests build it directly.
#[derive(Debug, Clone, Default)]
pub struct FunctionEnv {
    pub secret_id: String,
    pub state_table: String,
    pub records_queue_url: Option<String>,
    pub delivery_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
}

impl FunctionEnv {
    pub fn from_env() -> Result<FunctionEnv, SetupError> {
        FunctionEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`FunctionEnv::from_env`] with the variables read by `lookup`.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<FunctionEnv, SetupError> {
        let need = |name: &'static str| lookup(name).ok_or(SetupError::MissingEnv(name));
        Ok(FunctionEnv {
            secret_id: need("SFSYNC_SECRET_ID")?,
            state_table: need("STATE_TABLE")?,
            records_queue_url: lookup("RECORDS_QUEUE_URL"),
            delivery_queue_url: lookup("DELIVERY_QUEUE_URL"),
            dead_letter_queue_url: lookup("DEAD_LETTER_QUEUE_URL"),
        })
    }

    pub fn need(value: &Option<String>, name: &'static str) -> Result<String, SetupError> {
        value.clone().ok_or(SetupError::MissingEnv(name))
    }
}

/// Ends a cold start that cannot work (missing variable, unreadable secret, invalid config)
/// with the error's own message on stderr — which Lambda logs — rather than its debug form.
pub fn exit_on_setup_error<T>(result: Result<T, SetupError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            eprintln!("sfsync: cold start failed: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret that is not a JSON object of strings is named with the key at fault and the
    /// parse error kept as the cause; no value of the secret appears.
    #[test]
    fn a_malformed_secret_names_the_key_but_no_value() {
        let text = r#"{"api_key": "sk_live_hidden", "retries": 3}"#;
        let source = SecretMap::from_json(text).expect_err("3 is not a string");
        let err = SetupError::SecretFormat {
            secret_id: "sfsync".into(),
            source,
        };
        assert_eq!(
            err.to_string(),
            "cannot read secret sfsync: secrets file: the value of \"retries\" must be a string"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(!format!("{err:?}").contains("sk_live_hidden"));
    }

    /// The cold-start messages docs/troubleshooting.md and docs/development.md quote.
    #[test]
    fn a_missing_variable_is_named_as_the_docs_say() {
        let err = FunctionEnv::from_lookup(|_| None).expect_err("nothing is set");
        assert_eq!(
            err.to_string(),
            "environment variable SFSYNC_SECRET_ID is not set"
        );
        let err = FunctionEnv::from_lookup(|name| {
            (name == "SFSYNC_SECRET_ID").then(|| "sfsync/prod".to_string())
        })
        .expect_err("no table");
        assert_eq!(
            err.to_string(),
            "environment variable STATE_TABLE is not set"
        );
        let env = FunctionEnv::from_lookup(|name| match name {
            "SFSYNC_SECRET_ID" => Some("sfsync/prod".into()),
            "STATE_TABLE" => Some("sfsync-state".into()),
            "DELIVERY_QUEUE_URL" => Some("https://sqs/delivery".into()),
            _ => None,
        })
        .expect("the two required ones are set");
        assert_eq!(
            FunctionEnv::need(&env.delivery_queue_url, "DELIVERY_QUEUE_URL").ok(),
            Some("https://sqs/delivery".to_string())
        );
        assert_eq!(
            FunctionEnv::need(&env.records_queue_url, "RECORDS_QUEUE_URL")
                .expect_err("unset")
                .to_string(),
            "environment variable RECORDS_QUEUE_URL is not set"
        );
    }

    #[test]
    fn no_sync_config_anywhere_is_the_troubleshooting_message() {
        let secrets = SecretMap::from_json(r#"{"sf_client_secret": "s3cr3t"}"#).expect("json");
        let err = config_from(None, &secrets).expect_err("no config");
        assert_eq!(
            err.to_string(),
            "no sync config: set SFSYNC_CONFIG or put the TOML under the secret's key \"sfsync_config\""
        );
    }

    #[test]
    fn an_invalid_sync_config_names_where_it_came_from_and_never_the_secret() {
        let secrets = SecretMap::from_json(
            r#"{"sf_client_secret": "s3cr3t", "sfsync_config": "[salesforce\nlogin_url = 1"}"#,
        )
        .expect("json");
        let err = config_from(None, &secrets).expect_err("not TOML");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid sync config (secret key sfsync_config): "),
            "{text}"
        );
        let err = config_from(Some("syncs = 3".into()), &secrets).expect_err("not a config");
        let text = format!("{err} {err:?}");
        assert!(
            text.starts_with("invalid sync config (SFSYNC_CONFIG): "),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
