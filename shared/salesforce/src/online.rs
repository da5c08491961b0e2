//! `validate --online`: every sync of a config checked against the org.

use sfsync_mapping::Config;
use tracing::info;

use crate::client::Client;
use crate::config::ClientConfig;
use crate::error::Error;

/// One problem of a config against the org, keyed like the offline checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFieldProblem {
    /// `syncs[1].fields[2]`, `syncs[0].object`, …
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigFieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Authenticates with a resolved config and checks every sync against describe.
pub async fn check_online(config: &Config) -> Result<Vec<ConfigFieldProblem>, Error> {
    let client = Client::new(ClientConfig::from_config(&config.salesforce)?)?;
    check_online_with(&client, config).await
}

/// [`check_online`] with an existing client.
pub async fn check_online_with(
    client: &Client,
    config: &Config,
) -> Result<Vec<ConfigFieldProblem>, Error> {
    client.authenticate().await?;
    let mut out = Vec::new();
    for (i, sync) in config.syncs.iter().enumerate() {
        for problem in client.check_sync(sync).await? {
            out.push(ConfigFieldProblem {
                key: format!("syncs[{i}].{}", problem.key),
                message: problem.message,
            });
        }
    }
    info!(
        syncs = config.syncs.len(),
        problems = out.len(),
        "config checked against the org"
    );
    Ok(out)
}
