//! Helpers every command shares: loading the config and secrets, logging, the runtime.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sfsync_mapping::Config;
use sfsync_mapping::secrets::SecretMap;

/// A config file as loaded: the parsed config and its text (kept for line numbers).
pub struct LoadedConfig {
    pub path: PathBuf,
    pub text: String,
    pub config: Config,
}

/// Reads and validates a config file. References are not resolved.
pub fn load_config(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config = Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(LoadedConfig {
        path: path.to_path_buf(),
        text,
        config,
    })
}

/// Reads the secrets file (a JSON object of strings); an empty map without one.
pub fn load_secrets(path: Option<&Path>) -> Result<SecretMap> {
    match path {
        None => Ok(SecretMap::default()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secrets file {}", path.display()))?;
            SecretMap::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        }
    }
}

/// Loads a config and resolves every reference, for commands that connect to something.
pub fn load_resolved(config: &Path, secrets: Option<&Path>) -> Result<Config> {
    let loaded = load_config(config)?;
    let secrets = load_secrets(secrets)?;
    loaded
        .config
        .resolve_references(&loaded.text, &secrets)
        .map_err(|e| anyhow::anyhow!("{}: {e}", loaded.path.display()))
}

/// Logs go to stderr; `RUST_LOG` sets the level (default: warnings).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(future),
        Err(e) => panic!("cannot start the async runtime: {e}"),
    }
}
