//! `Sforce-Limit-Info` parsing and the client's request accounting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every field of the latest `Sforce-Limit-Info` header, e.g.
/// `api-usage=10018/100000; api-bursts=1/750`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitInfo {
    /// `api-usage`: (used, max) daily API requests, org-wide.
    pub api_usage: Option<(u64, u64)>,
    /// Every other field, by name, with its raw value (`"api-bursts" => "1/750"`).
    pub other: BTreeMap<String, String>,
}

impl LimitInfo {
    /// Parses the header. Fields are separated by `;` or `,`; unknown or malformed fields
    /// are kept raw in `other` and never make the parse fail.
    pub fn parse(header: &str) -> LimitInfo {
        let mut info = LimitInfo::default();
        for part in header.split([';', ',']) {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name.is_empty() {
                continue;
            }
            if name == "api-usage"
                && let Some(pair) = parse_pair(value)
            {
                info.api_usage = Some(pair);
                continue;
            }
            info.other.insert(name, value.to_string());
        }
        info
    }

    /// A `used/max` field as numbers (`pair("api-bursts")`).
    pub fn pair(&self, name: &str) -> Option<(u64, u64)> {
        if name.eq_ignore_ascii_case("api-usage") {
            return self.api_usage;
        }
        self.other
            .get(&name.to_ascii_lowercase())
            .and_then(|v| parse_pair(v))
    }

    /// `used / max` of the daily API requests.
    pub fn api_share(&self) -> Option<f64> {
        match self.api_usage {
            Some((used, max)) if max > 0 => Some(used as f64 / max as f64),
            _ => None,
        }
    }
}

fn parse_pair(value: &str) -> Option<(u64, u64)> {
    let (used, max) = value.split_once('/')?;
    Some((used.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// What a [`crate::Client`] has used so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    /// REST and Bulk requests this client made (retries included, OAuth excluded).
    pub calls: u64,
    /// OAuth token requests this client made.
    pub token_requests: u64,
    /// The latest `Sforce-Limit-Info` seen, if any.
    pub limit: Option<LimitInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field() {
        let info = LimitInfo::parse("api-usage=10018/100000; api-bursts=1/750");
        assert_eq!(info.api_usage, Some((10018, 100000)));
        assert_eq!(info.pair("api-bursts"), Some((1, 750)));
        assert_eq!(
            info.other.get("api-bursts").map(String::as_str),
            Some("1/750")
        );
    }

    #[test]
    fn field_order_and_spacing_do_not_matter() {
        let info = LimitInfo::parse(" per-app-api-usage=5/1000(appName=x) ;API-USAGE = 7 / 15000");
        assert_eq!(info.api_usage, Some((7, 15000)));
        assert!(info.other.contains_key("per-app-api-usage"));
        assert!((info.api_share().unwrap() - 7.0 / 15000.0).abs() < 1e-12);
    }

    #[test]
    fn garbage_is_tolerated() {
        let info = LimitInfo::parse("nonsense; api-usage=abc/def; =3");
        assert_eq!(info.api_usage, None);
        assert_eq!(
            info.other.get("api-usage").map(String::as_str),
            Some("abc/def")
        );
    }
}
