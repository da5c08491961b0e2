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
    #[error("cannot read secret {secret_id}: {message}")]
    Secret { secret_id: String, message: String },
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
        .map_err(|e| SetupError::Secret {
            secret_id: secret_id.to_string(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let text = out.secret_string().ok_or_else(|| SetupError::Secret {
        secret_id: secret_id.to_string(),
        message: "the secret has no SecretString (binary secrets are not supported)".into(),
    })?;
    SecretMap::from_json(text).map_err(|e| SetupError::Secret {
        secret_id: secret_id.to_string(),
        message: e.to_string(),
    })
}

/// The function's sync config, parsed, validated and resolved against the secret: a
/// Lambda's cold start fails here, with every problem listed, rather than mid-run.
pub fn function_config(secrets: &SecretMap) -> Result<Config, SetupError> {
    let (text, source_name) = match std::env::var("SFSYNC_CONFIG") {
        Ok(text) => (text, "SFSYNC_CONFIG".to_string()),
        Err(_) => match secrets.0.get(CONFIG_SECRET_KEY) {
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
        Ok(FunctionEnv {
            secret_id: env("SFSYNC_SECRET_ID")?,
            state_table: env("STATE_TABLE")?,
            records_queue_url: std::env::var("RECORDS_QUEUE_URL").ok(),
            delivery_queue_url: std::env::var("DELIVERY_QUEUE_URL").ok(),
            dead_letter_queue_url: std::env::var("DEAD_LETTER_QUEUE_URL").ok(),
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
