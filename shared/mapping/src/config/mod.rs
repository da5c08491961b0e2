//! The sync configuration: one TOML file with `[salesforce]`, `[[syncs]]` and
//! `[[destinations]]`. Unknown keys are rejected; every problem is reported with its key
//! path (`syncs[1].group_id`) and its line.
//!
//! - `model`: what the file says about Salesforce, the syncs and the pipeline;
//! - `destinations`: the destinations, one settings struct per `type`;
//! - `validate`: the rules beyond the types;
//! - `lines`: from byte offsets and key paths to lines.
//!
//! Values may reference secrets (`${secret:NAME}`) and environment variables
//! (`${env:NAME}`). Loading never resolves them, so commands that connect to nothing (`map`)
//! work without credentials; `resolve_references` produces the resolved copy.

use std::fmt;

use crate::secrets::{self, Resolver};

mod destinations;
mod lines;
mod model;
mod validate;

pub use destinations::{
    AmplitudeSettings, COMMON_KEYS, CustomerioSettings, CustomerioTrackSettings, DestinationConfig,
    DestinationKind, DestinationSettings, FileSettings, MixpanelIdMerge, MixpanelRegion,
    MixpanelSettings, RudderstackSettings, SegmentSettings, UsEuRegion, WebhookSettings,
};
pub use model::{
    AuthFlow, Config, DEFAULT_API_VERSION, DEFAULT_COMPRESSION_LEVEL, ExtractApi,
    MAX_COMPRESSION_LEVEL, MERGEABLE_OBJECTS, PipelineConfig, SalesforceConfig, SyncConfig,
    SyncKind, run_order,
};
pub use validate::{client_credentials_host_problem, is_api_name, is_field_path};

use lines::{Locator, problem_from_toml};

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
        for (key, value) in out.salesforce_strings_mut() {
            fix(key, value);
        }
        let mut unreadable = Vec::new();
        for (i, d) in out.destinations.iter_mut().enumerate() {
            let rewritten = d.rewrite_strings(&mut |key, value| {
                fix(format!("destinations[{i}].{key}"), value);
            });
            if let Err(e) = rewritten {
                // Strings replaced by strings always read back; say so if one ever does not.
                let key = format!("destinations[{i}]");
                unreadable.push(ConfigProblem {
                    line: locator.line_of(&key),
                    key,
                    message: format!("cannot apply the resolved values: {e}"),
                });
            }
        }
        problems.extend(unreadable);
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The `[salesforce]` strings a reference may stand in, with their key paths.
    fn salesforce_strings_mut(&mut self) -> Vec<(String, &mut String)> {
        let sf = &mut self.salesforce;
        let mut out: Vec<(String, &mut String)> = vec![
            ("salesforce.login_url".into(), &mut sf.login_url),
            ("salesforce.client_id".into(), &mut sf.client_id),
        ];
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
        out
    }

    /// Every string a reference may stand in, with its key path.
    fn reference_values(&self) -> Vec<(String, String)> {
        let mut copy = self.clone();
        let mut out: Vec<(String, String)> = copy
            .salesforce_strings_mut()
            .into_iter()
            .map(|(k, v)| (k, v.clone()))
            .collect();
        for (i, d) in self.destinations.iter().enumerate() {
            out.extend(
                d.string_values()
                    .into_iter()
                    .map(|(k, v)| (format!("destinations[{i}].{k}"), v)),
            );
        }
        out
    }
}
