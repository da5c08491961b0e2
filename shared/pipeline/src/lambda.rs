//! The cold start every Lambda function shares: JSON logs, the AWS SDK config, the
//! function's environment and its state, built once and borrowed by every invocation.
//!
//! A cold start that cannot work (a missing environment variable, an unreadable secret, no
//! or an invalid sync config) ends the process with the error's own message on stderr, which
//! Lambda logs: `sfsync: cold start failed: environment variable SFSYNC_SECRET_ID is not set`,
//! `sfsync: cold start failed: no sync config: …` (docs/troubleshooting.md lists them).

use crate::aws::{FunctionEnv, SetupError, exit_on_setup_error, sdk_config};

/// JSON log lines with the current span's fields (`run_id`, `sync`, `message_id`), filtered
/// by `RUST_LOG`, without a timestamp: Lambda stamps every line itself.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .without_time()
        .init();
}

/// Logging, the SDK config and [`FunctionEnv::from_env`], then `build` (the function's
/// `…State::new`); exits with the error's message when any of them fails.
pub async fn cold_start<S>(
    build: impl AsyncFnOnce(&aws_config::SdkConfig, &FunctionEnv) -> Result<S, SetupError>,
) -> S {
    init_logging();
    let sdk = sdk_config().await;
    let env = exit_on_setup_error(FunctionEnv::from_env());
    exit_on_setup_error(build(&sdk, &env).await)
}

/// The function's sync config: its secret (`SFSYNC_SECRET_ID`) read once, the TOML from
/// `SFSYNC_CONFIG` or the secret's `sfsync_config` key, resolved against the secret
/// ([`crate::aws::function_config`]).
pub async fn load_config(
    sdk: &aws_config::SdkConfig,
    env: &FunctionEnv,
) -> Result<sfsync_mapping::Config, SetupError> {
    let secrets_manager = aws_sdk_secretsmanager::Client::new(sdk);
    let secrets = crate::aws::load_secret(&secrets_manager, &env.secret_id).await?;
    crate::aws::function_config(&secrets)
}

/// The Salesforce client of a function that talks to Salesforce (extract, stream): the
/// config's connection settings, and rotated refresh tokens kept in the function's own
/// secret, where every function and cold start finds the newest one
/// ([`crate::token_store::SecretTokenStore`]; infra/template.yaml grants PutSecretValue on
/// that secret only).
pub fn salesforce_client(
    sdk: &aws_config::SdkConfig,
    env: &FunctionEnv,
    config: &sfsync_mapping::config::SalesforceConfig,
) -> Result<sfsync_salesforce::Client, SetupError> {
    let client_config = sfsync_salesforce::ClientConfig::from_config(config)?;
    let token_store = std::sync::Arc::new(crate::token_store::SecretTokenStore::new(
        aws_sdk_secretsmanager::Client::new(sdk),
        &env.secret_id,
    ));
    Ok(sfsync_salesforce::Client::with_refresh_token_store(
        client_config,
        token_store,
    )?)
}
