//! The rules a parsed config must follow beyond its types: names, field paths, the keys each
//! sync kind and auth flow needs, URLs, limits. Every rule reports `(key path, message)`;
//! `lines` turns the key into a line.

use std::collections::HashSet;

use super::destinations::{DestinationConfig, DestinationSettings};
use super::model::{AuthFlow, Config, MAX_COMPRESSION_LEVEL, SyncConfig, SyncKind};
use crate::secrets;

impl Config {
    /// Semantic checks; `report(key, message)` is called once per problem.
    pub(super) fn check(&self, report: &mut dyn FnMut(String, String)) {
        self.check_salesforce(report);
        self.check_pipeline(report);
        let mut names = HashSet::new();
        for (i, sync) in self.syncs.iter().enumerate() {
            let at = |k: &str| format!("syncs[{i}].{k}");
            if !names.insert(sync.name.as_str()) {
                report(at("name"), format!("duplicate sync name {:?}", sync.name));
            }
            check_sync(sync, &at, report);
        }
        if self.syncs.is_empty() {
            report(
                "syncs".into(),
                "at least one [[syncs]] table is required".into(),
            );
        }
        let mut dest_names = HashSet::new();
        for (i, dest) in self.destinations.iter().enumerate() {
            let at = |k: &str| format!("destinations[{i}].{k}");
            if !dest_names.insert(dest.name.as_str()) {
                report(
                    at("name"),
                    format!("duplicate destination name {:?}", dest.name),
                );
            }
            check_destination(dest, &names, &at, report);
        }
        // Every string value may hold references: check their syntax here so that a typo
        // shows up in `validate`, not at 3 a.m. in Lambda.
        for (key, value) in self.reference_values() {
            if let Err(e) = secrets::check_syntax(&value) {
                report(key, e.to_string());
            }
        }
    }

    fn check_salesforce(&self, report: &mut dyn FnMut(String, String)) {
        let sf = &self.salesforce;
        let at = |k: &str| format!("salesforce.{k}");
        if !secrets::has_reference(&sf.login_url) && !is_http_url(&sf.login_url) {
            report(
                at("login_url"),
                format!("{:?} is not an http(s) URL", sf.login_url),
            );
        }
        if sf.auth == AuthFlow::ClientCredentials
            && let Some(message) = client_credentials_host_problem(&sf.login_url)
        {
            report(at("login_url"), message);
        }
        if !is_api_version(&sf.api_version) {
            report(
                at("api_version"),
                format!("{:?} is not an API version like \"62.0\"", sf.api_version),
            );
        }
        if sf.client_id.trim().is_empty() {
            report(at("client_id"), "must not be empty".into());
        }
        let (required, allowed): (&[&str], &[&str]) = match sf.auth {
            AuthFlow::ClientCredentials => (&["client_secret"], &["client_secret"]),
            AuthFlow::JwtBearer => (
                &["username", "private_key"],
                &["username", "private_key", "jwt_audience"],
            ),
            AuthFlow::RefreshToken => (&["refresh_token"], &["refresh_token", "client_secret"]),
        };
        let present = [
            ("client_secret", sf.client_secret.is_some()),
            ("username", sf.username.is_some()),
            ("private_key", sf.private_key.is_some()),
            ("refresh_token", sf.refresh_token.is_some()),
            ("jwt_audience", sf.jwt_audience.is_some()),
        ];
        let flow = serde_flow_name(sf.auth);
        for (key, is_present) in present {
            if required.contains(&key) && !is_present {
                report(at(key), format!("required by auth = \"{flow}\""));
            }
            if is_present && !allowed.contains(&key) {
                report(at(key), format!("not used by auth = \"{flow}\""));
            }
        }
        if !(200..=2000).contains(&sf.page_size) {
            report(
                at("page_size"),
                format!(
                    "{} is outside Salesforce's batchSize range 200..=2000",
                    sf.page_size
                ),
            );
        }
        if !(sf.max_api_share > 0.0 && sf.max_api_share <= 1.0) {
            report(
                at("max_api_share"),
                format!("{} must be in (0, 1]", sf.max_api_share),
            );
        }
        if sf.lookback_seconds > 86_400 {
            report(
                at("lookback_seconds"),
                format!("{} is more than a day", sf.lookback_seconds),
            );
        }
    }
}

impl Config {
    fn check_pipeline(&self, report: &mut dyn FnMut(String, String)) {
        let pipeline = &self.pipeline;
        // SQS takes bodies up to 1 MiB (256 KiB on older queues); below 16 KiB a single
        // record may not fit a message at all.
        if !(16 * 1024..=1024 * 1024).contains(&pipeline.max_message_bytes) {
            report(
                "pipeline.max_message_bytes".into(),
                format!(
                    "{} is outside 16384..=1048576 (16 KiB to SQS's 1 MiB)",
                    pipeline.max_message_bytes
                ),
            );
        }
        let Some(level) = pipeline.compression_level else {
            return;
        };
        if level > MAX_COMPRESSION_LEVEL {
            report(
                "pipeline.compression_level".into(),
                format!(
                    "{level} is outside 0..={MAX_COMPRESSION_LEVEL} (0: no compression, 1: fastest, {MAX_COMPRESSION_LEVEL}: smallest)"
                ),
            );
        } else if !pipeline.compress && level > 0 {
            report(
                "pipeline.compression_level".into(),
                format!(
                    "{level} contradicts compress = false: remove `compress` (compression_level = 0 turns compression off)"
                ),
            );
        }
    }
}

fn serde_flow_name(flow: AuthFlow) -> &'static str {
    match flow {
        AuthFlow::ClientCredentials => "client_credentials",
        AuthFlow::JwtBearer => "jwt_bearer",
        AuthFlow::RefreshToken => "refresh_token",
    }
}

fn check_sync(
    sync: &SyncConfig,
    at: &dyn Fn(&str) -> String,
    report: &mut dyn FnMut(String, String),
) {
    if !is_name(&sync.name) {
        report(
            at("name"),
            format!(
                "{:?} must be 1-64 characters of letters, digits, '_' or '-'",
                sync.name
            ),
        );
    }
    if !is_api_name(&sync.object) {
        report(
            at("object"),
            format!("{:?} is not an sObject API name", sync.object),
        );
    }
    let kind = sync.kind;
    // (key, value, required for this kind, allowed for this kind)
    let rules: [(&str, bool, bool, bool); 6] = [
        (
            "user_id",
            sync.user_id.is_some(),
            kind != SyncKind::Objects,
            true,
        ),
        (
            "group_id",
            sync.group_id.is_some(),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
        ),
        (
            "object_type_id",
            sync.object_type_id.is_some(),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
            matches!(kind, SyncKind::Objects | SyncKind::Relationships),
        ),
        (
            "event",
            sync.event.is_some(),
            false,
            kind == SyncKind::Events,
        ),
        (
            "event_field",
            sync.event_field.is_some(),
            false,
            kind == SyncKind::Events,
        ),
        (
            "timestamp_field",
            sync.timestamp_field.is_some(),
            false,
            kind == SyncKind::Events,
        ),
    ];
    for (key, present, required, allowed) in rules {
        if required && !present {
            report(at(key), format!("required for kind = \"{kind}\""));
        } else if present && !allowed {
            report(at(key), format!("not used by kind = \"{kind}\""));
        }
    }
    if kind == SyncKind::Events && sync.event.is_some() == sync.event_field.is_some() {
        report(
            at("event"),
            "events need exactly one of `event` (a fixed name) or `event_field`".into(),
        );
    }
    if let Some(event) = &sync.event
        && event.trim().is_empty()
    {
        report(at("event"), "must not be empty".into());
    }
    for (key, value) in [
        ("user_id", &sync.user_id),
        ("group_id", &sync.group_id),
        ("event_field", &sync.event_field),
        ("timestamp_field", &sync.timestamp_field),
    ] {
        if let Some(v) = value
            && !is_field_path(v)
        {
            report(at(key), format!("{v:?} is not a field name or parent path"));
        }
    }
    if let Some(t) = &sync.object_type_id
        && (t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()))
    {
        report(
            at("object_type_id"),
            format!("{t:?} must be a string of digits, like \"1\""),
        );
    }
    let mut seen = HashSet::new();
    for (j, field) in sync.fields.iter().enumerate() {
        if !is_field_path(field) {
            report(
                at(&format!("fields[{j}]")),
                format!("{field:?} is not a field name or parent path (Account.Name)"),
            );
        } else if !seen.insert(field.to_ascii_lowercase()) {
            report(
                at(&format!("fields[{j}]")),
                format!("{field:?} is listed twice"),
            );
        }
    }
    if let Some(w) = &sync.where_clause {
        let upper = w.to_ascii_uppercase();
        if w.trim().is_empty() {
            report(at("where"), "must not be empty".into());
        } else if upper.contains("ORDER BY") || upper.contains(" LIMIT ") || w.contains(';') {
            report(
                at("where"),
                "must be a condition only: sfsync adds ORDER BY and LIMIT itself".into(),
            );
        }
    }
    if sync.deletes && kind == SyncKind::Events {
        report(
            at("deletes"),
            "events cannot be deleted downstream; remove `deletes`".into(),
        );
    }
    if sync.conversions == Some(true) {
        if kind != SyncKind::People || !sync.object.eq_ignore_ascii_case("Lead") {
            report(
                at("conversions"),
                "only people syncs of Lead have conversions; remove `conversions`".into(),
            );
        } else if !sync.identified_by_record_id() {
            report(
                at("conversions"),
                "a conversion merges the Lead's Id into its Contact's Id, so the sync needs \
                 user_id = \"Id\" (or set conversions = false)"
                    .into(),
            );
        }
    }
    if sync.stream
        && let Some(reason) = no_change_events(&sync.object)
    {
        report(at("stream"), format!("{}: {reason}", sync.object));
    }
}

/// Why an object can have no Change Data Capture channel, if it cannot. Change events exist
/// for custom objects (`__c`) and the standard objects Salesforce lists as supported (Change
/// Data Capture Developer Guide, "Supported Objects"); metadata, platform events, external
/// and big objects, and the History/Share/Feed companions have none.
fn no_change_events(object: &str) -> Option<&'static str> {
    const NONE: [(&str, &str); 7] = [
        ("__mdt", "custom metadata types have no change events"),
        ("__e", "platform events have no change events"),
        ("__x", "external objects have no change events"),
        ("__b", "big objects have no change events"),
        ("History", "field history objects have no change events"),
        ("Share", "sharing objects have no change events"),
        ("Feed", "feed objects have no change events"),
    ];
    NONE.iter()
        .find(|(suffix, _)| object.ends_with(suffix))
        .map(|(_, why)| *why)
}

fn check_destination(
    dest: &DestinationConfig,
    syncs: &HashSet<&str>,
    at: &dyn Fn(&str) -> String,
    report: &mut dyn FnMut(String, String),
) {
    if !is_name(&dest.name) {
        report(
            at("name"),
            format!(
                "{:?} must be 1-64 characters of letters, digits, '_' or '-'",
                dest.name
            ),
        );
    }
    let kind = dest.kind();
    if dest.settings.requires_endpoint() && dest.endpoint.is_none() {
        report(at("endpoint"), format!("required by type = \"{kind}\""));
    }
    let mut urls = vec![("endpoint", dest.endpoint.as_ref())];
    match &dest.settings {
        DestinationSettings::Mixpanel(m) => {
            let service_account = [&m.project_id, &m.username, &m.secret];
            let n = service_account.iter().filter(|v| v.is_some()).count();
            if n != 0 && n != 3 {
                report(
                    at("project_id"),
                    "a Mixpanel service account needs project_id, username and secret together"
                        .into(),
                );
            }
        }
        DestinationSettings::Webhook(w) => urls.push(("url", Some(&w.url))),
        _ => {}
    }
    for (key, value) in urls {
        if let Some(v) = value
            && !secrets::has_reference(v)
            && !is_http_url(v)
        {
            report(at(key), format!("{v:?} is not an http(s) URL"));
        }
    }
    if let Some(list) = &dest.syncs {
        for (j, name) in list.iter().enumerate() {
            if !syncs.contains(name.as_str()) {
                report(
                    at(&format!("syncs[{j}]")),
                    format!("no sync is named {name:?}"),
                );
            }
        }
    }
    for (key, value) in [
        ("max_batch_calls", dest.max_batch_calls),
        ("max_batch_bytes", dest.max_batch_bytes),
    ] {
        if value == Some(0) {
            report(at(key), "must be at least 1".into());
        }
    }
    if dest.timeout_seconds == Some(0) {
        report(at("timeout_seconds"), "must be at least 1".into());
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An sObject or field API name: a letter, then letters, digits and underscores.
pub fn is_api_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 80
}

/// A field name or a parent path like `Account.Owner.Email`.
pub fn is_field_path(s: &str) -> bool {
    s.split('.').all(is_api_name)
}

fn is_api_version(s: &str) -> bool {
    match s.split_once('.') {
        Some((major, "0")) => !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// Salesforce serves the client_credentials flow only on the org's My Domain token
/// endpoint; the generic login hosts refuse it ("OAuth 2.0 Client Credentials Flow for
/// Server-to-Server Integration", Salesforce Help: the request goes to
/// `https://MyDomainName.my.salesforce.com/services/oauth2/token`). The problem with
/// `login_url` for that flow, if any, with the fix.
pub fn client_credentials_host_problem(login_url: &str) -> Option<String> {
    let rest = login_url
        .trim()
        .strip_prefix("https://")
        .or_else(|| login_url.trim().strip_prefix("http://"))?;
    let host = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host != "login.salesforce.com" && host != "test.salesforce.com" {
        return None;
    }
    Some(format!(
        "auth = \"client_credentials\" works only on your org's My Domain, and {host} refuses \
         it: set login_url to https://YOUR-DOMAIN.my.salesforce.com (a sandbox: \
         https://YOUR-DOMAIN--SANDBOX.sandbox.my.salesforce.com; Setup → My Domain shows it), \
         or use auth = \"jwt_bearer\""
    ))
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}
