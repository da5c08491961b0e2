//! Helpers every command shares: loading the config and secrets, logging, the runtime.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sfsync_mapping::secrets::SecretMap;
use sfsync_mapping::{Config, DestinationConfig, SyncConfig};

/// `--config FILE` and `--secrets FILE`, taken the same way by every command that reads a
/// config and connects to something.
#[derive(clap::Args)]
pub struct ConfigFiles {
    /// The sync config (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// A JSON object of secrets for `${secret:NAME}` references.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
}

impl ConfigFiles {
    /// The config with every reference resolved.
    pub fn load_resolved(&self) -> Result<Config> {
        load_resolved(&self.config, self.secrets.as_deref())
    }
}

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

/// The sync named `name`, or an error naming the syncs there are and the closest one.
pub fn sync_named<'a>(
    config: &'a Config,
    name: &str,
    config_path: &Path,
) -> Result<&'a SyncConfig> {
    config.sync(name).ok_or_else(|| {
        let names = config.syncs.iter().map(|s| s.name.as_str());
        unknown_name("sync", name, names, config_path)
    })
}

/// The destination named `name`, or an error naming the destinations and the closest one.
pub fn destination_named<'a>(
    config: &'a Config,
    name: &str,
    config_path: &Path,
) -> Result<&'a DestinationConfig> {
    config.destination(name).ok_or_else(|| {
        let names = config.destinations.iter().map(|d| d.name.as_str());
        unknown_name("destination", name, names, config_path)
    })
}

/// Every name of `names` is a sync of `config` (checked before a run starts anything).
pub fn check_sync_names(config: &Config, names: &[String], config_path: &Path) -> Result<()> {
    for name in names {
        sync_named(config, name, config_path)?;
    }
    Ok(())
}

/// `no sync named "contcts" in sfsync.toml; did you mean "contacts"? (syncs: contacts, leads)`
fn unknown_name<'a>(
    what: &str,
    name: &str,
    names: impl Iterator<Item = &'a str> + Clone,
    config_path: &Path,
) -> anyhow::Error {
    let known: Vec<&str> = names.clone().collect();
    anyhow::anyhow!(
        "no {what} named {name:?} in {}{} ({what}s: {})",
        config_path.display(),
        sfsync_mapping::suggest::did_you_mean(name, names),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// Logs go to stderr; `RUST_LOG` sets the level (default: warnings). Colour only when
/// stderr is a terminal and `NO_COLOR` is not set, so that logs captured into a file or a
/// pipe carry no escape codes. (The Lambda functions log JSON through their own setup.)
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Colour on a terminal, unless `NO_COLOR` is set to anything but the empty string
/// (https://no-color.org: "when present and not an empty string").
pub fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn an_unknown_sync_or_destination_suggests_the_closest() {
        let config = Config::parse(
            "[salesforce]\nlogin_url = \"https://x.my.salesforce.com\"\nauth = \"client_credentials\"\n\
             client_id = \"i\"\nclient_secret = \"s\"\n\n[[syncs]]\nname = \"contacts\"\nobject = \"Contact\"\n\
             kind = \"people\"\nuser_id = \"Id\"\n\n[[destinations]]\nname = \"export\"\ntype = \"file\"\npath = \"x\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let path = Path::new("sfsync.toml");
        let err = sync_named(&config, "contcts", path)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "no sync named \"contcts\" in sfsync.toml; did you mean \"contacts\"? (syncs: contacts)"
            )
        );
        let err = destination_named(&config, "exprt", path)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("did you mean \"export\"?")));
        let err = sync_named(&config, "zzz", path)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| !e.contains("did you mean") && e.contains("(syncs: contacts)"))
        );
        assert!(check_sync_names(&config, &["contacts".into()], path).is_ok());
    }
}
