//! The `[[destinations]]` of a config, modelled the way `sfsync-destinations` models
//! protocols: the keys every destination takes are fields of [`DestinationConfig`]; `type`
//! picks one variant of [`DestinationSettings`], whose struct states that destination's
//! credentials, regions and options once. Serde rejects a key the type does not take and
//! reports a credential it needs but lacks; `validate` adds what a type cannot say (URLs,
//! the Mixpanel service account's three keys together, the syncs a destination names).
//!
//! Adding a destination: a settings struct and a variant here, its arm in
//! [`DestinationSettings::kind`] and [`DestinationSettings::credentials`], and its module in
//! `sfsync-destinations`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationConfig {
    pub name: String,
    /// Only these syncs go to this destination; all when absent.
    #[serde(default)]
    pub syncs: Option<Vec<String>>,
    /// Base-URL override (proxies, private endpoints, tests; RudderStack's data plane URL).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Gzip request bodies where the API takes them (the default depends on the API).
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
    /// `type` and the keys of that type. Serde cannot deny unknown keys on a struct with a
    /// flattened part, so each settings struct denies them: a key no one takes reaches the
    /// settings of the type and is refused there.
    #[serde(flatten)]
    pub settings: DestinationSettings,
}

/// The keys of [`DestinationConfig`] itself, which every type takes (for messages).
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "type",
    "syncs",
    "endpoint",
    "gzip",
    "max_batch_calls",
    "max_batch_bytes",
    "timeout_seconds",
    "retry_budget_seconds",
];

/// What a destination of each `type` needs and takes, besides [`COMMON_KEYS`]. Its `Debug`
/// names the type only: the settings hold credentials.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DestinationSettings {
    Customerio(CustomerioSettings),
    CustomerioTrack(CustomerioTrackSettings),
    Segment(SegmentSettings),
    Rudderstack(RudderstackSettings),
    Mixpanel(MixpanelSettings),
    Amplitude(AmplitudeSettings),
    Webhook(WebhookSettings),
    File(FileSettings),
}

/// Customer.io Data Pipelines API (`type = "customerio"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerioSettings {
    pub api_key: String,
    #[serde(default)]
    pub region: UsEuRegion,
}

/// Customer.io Track API v2 (`type = "customerio_track"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerioTrackSettings {
    pub site_id: String,
    pub api_key: String,
    #[serde(default)]
    pub region: UsEuRegion,
}

/// Segment HTTP Tracking API (`type = "segment"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSettings {
    pub write_key: String,
    #[serde(default)]
    pub region: UsEuRegion,
}

/// RudderStack HTTP API (`type = "rudderstack"`). Its data plane URL is the common
/// `endpoint`, which this type requires (see [`DestinationSettings::requires_endpoint`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RudderstackSettings {
    pub write_key: String,
}

/// Mixpanel ingestion APIs (`type = "mixpanel"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixpanelSettings {
    pub project_token: String,
    /// Service account: project id, user name and secret, all three or none.
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    /// The group key objects are written under (configured in the project).
    #[serde(default)]
    pub group_key: Option<String>,
    /// The project's ID management system (Project Settings → Identity Merge), which
    /// decides how a `merge` call is sent.
    #[serde(default)]
    pub id_merge: MixpanelIdMerge,
    #[serde(default)]
    pub region: MixpanelRegion,
}

/// Amplitude HTTP V2, Identify and Group Identify APIs (`type = "amplitude"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmplitudeSettings {
    pub api_key: String,
    /// The project's secret key, needed by its User Privacy API to delete users.
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub region: UsEuRegion,
}

/// Signed webhooks (`type = "webhook"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The target URL (`endpoint`, when set, overrides it).
    pub url: String,
    /// The Standard Webhooks signing secret (`whsec_…`, or raw bytes).
    pub secret: String,
}

/// JSON lines appended to a file (`type = "file"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub path: String,
}

/// The data centres of an API hosted in the US and the EU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsEuRegion {
    #[default]
    Us,
    Eu,
}

/// Mixpanel's data residency regions: US, EU and India.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixpanelRegion {
    #[default]
    Us,
    Eu,
    In,
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

/// A destination's `type`, without its settings.
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
}

impl fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DestinationSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.kind().as_str()).finish_non_exhaustive()
    }
}

impl DestinationSettings {
    pub fn kind(&self) -> DestinationKind {
        match self {
            DestinationSettings::Customerio(_) => DestinationKind::Customerio,
            DestinationSettings::CustomerioTrack(_) => DestinationKind::CustomerioTrack,
            DestinationSettings::Segment(_) => DestinationKind::Segment,
            DestinationSettings::Rudderstack(_) => DestinationKind::Rudderstack,
            DestinationSettings::Mixpanel(_) => DestinationKind::Mixpanel,
            DestinationSettings::Amplitude(_) => DestinationKind::Amplitude,
            DestinationSettings::Webhook(_) => DestinationKind::Webhook,
            DestinationSettings::File(_) => DestinationKind::File,
        }
    }

    /// The values that are secrets, to scrub from anything reported.
    pub fn credentials(&self) -> Vec<&str> {
        let all: Vec<Option<&String>> = match self {
            DestinationSettings::Customerio(s) => vec![Some(&s.api_key)],
            DestinationSettings::CustomerioTrack(s) => vec![Some(&s.site_id), Some(&s.api_key)],
            DestinationSettings::Segment(s) => vec![Some(&s.write_key)],
            DestinationSettings::Rudderstack(s) => vec![Some(&s.write_key)],
            DestinationSettings::Mixpanel(s) => vec![Some(&s.project_token), s.secret.as_ref()],
            DestinationSettings::Amplitude(s) => vec![Some(&s.api_key), s.secret_key.as_ref()],
            DestinationSettings::Webhook(s) => vec![Some(&s.secret)],
            DestinationSettings::File(_) => vec![],
        };
        all.into_iter().flatten().map(String::as_str).collect()
    }

    /// Whether the common `endpoint` is required: RudderStack's data plane has no default
    /// host, each workspace has its own.
    pub fn requires_endpoint(&self) -> bool {
        matches!(self, DestinationSettings::Rudderstack(_))
    }
}

impl DestinationConfig {
    pub fn kind(&self) -> DestinationKind {
        self.settings.kind()
    }

    pub fn routes(&self, sync: &str) -> bool {
        self.syncs
            .as_ref()
            .is_none_or(|syncs| syncs.iter().any(|s| s == sync))
    }

    /// Every string value but `name` and `type`, with its key: where `${secret:…}` and
    /// `${env:…}` references may stand. Read through serde, so a new settings field is
    /// covered without being listed.
    pub fn string_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) {
            for (key, value) in map {
                if let serde_json::Value::String(s) = value
                    && key != "name"
                    && key != "type"
                {
                    out.push((key, s));
                }
            }
        }
        out
    }

    /// Rewrites every value [`DestinationConfig::string_values`] lists with
    /// `rewrite(key, value)`.
    pub(crate) fn rewrite_strings(
        &mut self,
        rewrite: &mut dyn FnMut(&str, &mut String),
    ) -> Result<(), serde_json::Error> {
        let mut value = serde_json::to_value(&*self)?;
        if let serde_json::Value::Object(map) = &mut value {
            for (key, value) in map.iter_mut() {
                if let serde_json::Value::String(s) = value
                    && key != "name"
                    && key != "type"
                {
                    rewrite(key, s);
                }
            }
        }
        *self = serde_json::from_value(value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `COMMON_KEYS` names exactly the fields of `DestinationConfig` (and the tag).
    #[test]
    fn common_keys_are_the_struct_fields() {
        let config = DestinationConfig {
            name: "d".into(),
            syncs: Some(vec![]),
            endpoint: Some("https://x".into()),
            gzip: Some(true),
            max_batch_calls: Some(1),
            max_batch_bytes: Some(1),
            timeout_seconds: Some(1),
            retry_budget_seconds: Some(1),
            settings: DestinationSettings::File(FileSettings { path: "p".into() }),
        };
        let serde_json::Value::Object(map) = serde_json::to_value(&config).unwrap_or_default()
        else {
            panic!("a destination serializes to a map");
        };
        let mut keys: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "path")
            .collect();
        keys.sort_unstable();
        let mut common = COMMON_KEYS.to_vec();
        common.sort_unstable();
        assert_eq!(keys, common);
    }

    #[test]
    fn debug_output_names_the_type_but_no_credential() {
        let config: DestinationConfig = serde_json::from_value(serde_json::json!({
            "name": "seg", "type": "segment", "write_key": "write-key-seen-nowhere",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let debug = format!("{config:?}");
        assert!(
            debug.contains("segment") && debug.contains("seg"),
            "{debug}"
        );
        assert!(!debug.contains("seen-nowhere"), "{debug}");
    }

    #[test]
    fn string_values_name_every_credential_and_rewrite_them() {
        let mut config: DestinationConfig = serde_json::from_value(serde_json::json!({
            "name": "m", "type": "mixpanel", "project_token": "${secret:t}",
            "project_id": "1", "username": "u", "secret": "${env:S}", "endpoint": "https://e",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let keys: Vec<String> = config.string_values().into_iter().map(|(k, _)| k).collect();
        for key in [
            "project_token",
            "project_id",
            "username",
            "secret",
            "endpoint",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        assert!(!keys.iter().any(|k| k == "name" || k == "type"), "{keys:?}");
        config
            .rewrite_strings(&mut |key, value| {
                if value.starts_with("${") {
                    *value = format!("resolved-{key}");
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let DestinationSettings::Mixpanel(m) = &config.settings else {
            panic!("still mixpanel");
        };
        assert_eq!(m.project_token, "resolved-project_token");
        assert_eq!(m.secret.as_deref(), Some("resolved-secret"));
        assert_eq!(m.username.as_deref(), Some("u"));
    }
}
