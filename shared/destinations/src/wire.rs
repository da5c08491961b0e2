//! Small pieces every protocol shares: reading the config, auth headers, URLs, form
//! encoding, gzip, and the deterministic dedupe keys derived from a call's messageId.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};
use sfsync_mapping::{Call, DestinationConfig};
use sha2::{Digest, Sha256};

use crate::BuildError;

/// A credential. Its `Debug` never shows the value.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: &str) -> Secret {
        Secret(value.to_string())
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The config of one destination, read with errors that name the key. Each module reads its
/// own settings (`sfsync_mapping::config::*Settings`) and the common keys through this.
pub(crate) struct BuildContext<'a> {
    pub config: &'a DestinationConfig,
}

impl<'a> BuildContext<'a> {
    pub(crate) fn new(config: &'a DestinationConfig) -> Result<BuildContext<'a>, BuildError> {
        let ctx = BuildContext { config };
        for (key, value) in config.string_values() {
            if value.contains("${") {
                return Err(ctx.invalid(
                    &key,
                    "still holds a ${…} reference: resolve the config's references first",
                ));
            }
        }
        if ctx.config.max_batch_calls == Some(0) {
            return Err(ctx.invalid("max_batch_calls", "must be at least 1"));
        }
        if ctx.config.max_batch_bytes == Some(0) {
            return Err(ctx.invalid("max_batch_bytes", "must be at least 1"));
        }
        if ctx.config.timeout_seconds == Some(0) {
            return Err(ctx.invalid("timeout_seconds", "must be at least 1"));
        }
        Ok(ctx)
    }

    pub(crate) fn invalid(&self, key: &str, problem: impl Into<String>) -> BuildError {
        BuildError::Invalid {
            destination: self.config.name.clone(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// A value that must not be empty (serde already made sure it is there).
    pub(crate) fn non_empty<'v>(&self, key: &str, value: &'v str) -> Result<&'v str, BuildError> {
        if value.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(value)
        }
    }

    /// An optional value; present but empty is an error.
    pub(crate) fn non_empty_optional<'v>(
        &self,
        key: &str,
        value: Option<&'v String>,
    ) -> Result<Option<&'v str>, BuildError> {
        value.map(|v| self.non_empty(key, v)).transpose()
    }

    /// The API's base URL: `endpoint` when set, else the host of the configured region.
    pub(crate) fn base_url(&self, region_host: &str) -> Result<String, BuildError> {
        Ok(self.endpoint()?.unwrap_or_else(|| region_host.to_string()))
    }

    /// `endpoint`, for an API that has no default host (RudderStack's data plane).
    pub(crate) fn required_endpoint(&self) -> Result<String, BuildError> {
        self.endpoint()?.ok_or_else(|| BuildError::Missing {
            destination: self.config.name.clone(),
            kind: self.config.kind(),
            key: "endpoint".to_string(),
        })
    }

    fn endpoint(&self) -> Result<Option<String>, BuildError> {
        let Some(endpoint) = self.non_empty_optional("endpoint", self.config.endpoint.as_ref())?
        else {
            return Ok(None);
        };
        http_url(endpoint)
            .map(|url| Some(url.to_string()))
            .ok_or_else(|| self.invalid("endpoint", "is not an http(s) URL"))
    }

    /// `gzip` from the config, defaulting to whether the API takes gzip bodies.
    pub(crate) fn gzip(&self, default: bool) -> bool {
        self.config.gzip.unwrap_or(default)
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.config
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(crate::DEFAULT_TIMEOUT)
    }

    /// Every credential of the config, to scrub from anything we report.
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.config
            .settings
            .credentials()
            .into_iter()
            .filter(|v| v.len() >= 4)
            .map(str::to_string)
            .collect()
    }
}

pub(crate) fn http_url(s: &str) -> Option<&str> {
    let ok = (s.starts_with("https://") || s.starts_with("http://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace);
    ok.then_some(s)
}

/// `base` + `path`, with exactly one slash between them.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// `Basic base64(user:password)`, marked sensitive so it never shows in logs.
pub(crate) fn basic_auth(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    // Base64 output is always a valid header value; the fallback is never taken.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// application/x-www-form-urlencoded encoding of `input`, appended to `out`.
pub(crate) fn form_encode(input: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

pub(crate) fn to_json(value: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail (its map keys are strings).
    serde_json::to_vec(value).unwrap_or_default()
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Mixpanel's `$insert_id` and Amplitude's `insert_id`: the messageId itself when it is at
/// most 36 characters of `[A-Za-z0-9-]` (the mapping's UUIDs are), else the first 32 hex
/// digits of its SHA-256. Deterministic, so a resent call dedupes.
pub fn dedupe_insert_id(message_id: &str) -> String {
    let valid = !message_id.is_empty()
        && message_id.len() <= 36
        && message_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        message_id.to_string()
    } else {
        hex(&Sha256::digest(message_id.as_bytes())[..16])
    }
}

/// The Customer.io Track event `id`: a ULID whose 48-bit time is the call's timestamp (ms)
/// and whose 80 random bits are the first 80 bits of SHA-256(messageId). The same call
/// always gets the same id, so a resent event dedupes.
pub fn event_ulid(call: &Call) -> Result<String, String> {
    let millis = call
        .timestamp_millis()
        .ok_or_else(|| format!("timestamp {:?} is not an RFC 3339 datetime", call.timestamp))?;
    let millis = u64::try_from(millis)
        .ok()
        .filter(|m| *m < (1u64 << 48))
        .ok_or_else(|| format!("timestamp {:?} is outside the ULID range", call.timestamp))?;
    let digest = Sha256::digest(call.message_id.as_bytes());
    let mut random: u128 = 0;
    for byte in &digest[..10] {
        random = (random << 8) | u128::from(*byte);
    }
    Ok(ulid::Ulid::from_parts(millis, random).to_string())
}

/// The Standard Webhooks `webhook-id` of a batch: `msg_` + 32 hex digits of SHA-256 over the
/// batch's message ids. The same batch (on a retry) always has the same id.
pub fn webhook_id<'a>(message_ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for id in message_ids {
        hasher.update(id.as_bytes());
        hasher.update([b'\n']);
    }
    format!("msg_{}", hex(&hasher.finalize()[..16]))
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

/// A call's traits without our `object_type_id` and `relationshipAttributes` bookkeeping.
pub(crate) fn object_traits(call: &Call) -> Map<String, Value> {
    let mut traits = call.traits_map();
    traits.remove("object_type_id");
    traits.remove("relationshipAttributes");
    traits
}

/// The user of a call, or a reason it is missing.
pub(crate) fn user_id(call: &Call) -> Result<&str, String> {
    match call.user_id.as_deref() {
        Some(u) if !u.is_empty() => Ok(u),
        _ => Err(format!("{} call has no userId", kind_name(call))),
    }
}

pub(crate) fn group_id(call: &Call) -> Result<&str, String> {
    match call.group_id.as_deref() {
        Some(g) if !g.is_empty() => Ok(g),
        _ => Err(format!("{} call has no groupId", kind_name(call))),
    }
}

pub(crate) fn object_type(call: &Call) -> Result<String, String> {
    match call.object_type() {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(format!("{} call has no object_type_id", kind_name(call))),
    }
}

pub(crate) fn timestamp_millis(call: &Call) -> Result<i64, String> {
    call.timestamp_millis()
        .ok_or_else(|| format!("timestamp {:?} is not an RFC 3339 datetime", call.timestamp))
}

/// "identify", "relationship group", "object delete", ... for messages.
pub(crate) fn kind_name(call: &Call) -> String {
    use sfsync_mapping::{CallType, Entity};
    match call.call_type {
        CallType::Group if call.is_relationship() => "relationship group".into(),
        CallType::Merge => match call.entity {
            Some(Entity::Object) => "object merge".into(),
            _ => "person merge".into(),
        },
        CallType::Delete => match call.entity {
            Some(Entity::Person) => "person delete".into(),
            Some(Entity::Object) => "object delete".into(),
            Some(Entity::Relationship) => "relationship delete".into(),
            None => "delete".into(),
        },
        t => t.as_str().into(),
    }
}

/// A person `merge` call's (surviving userId, previousId).
pub(crate) fn person_merge_ids(call: &Call) -> Result<(&str, &str), String> {
    let previous = match call.previous_id.as_deref() {
        Some(p) if !p.is_empty() => p,
        _ => return Err(format!("{} call has no previousId", kind_name(call))),
    };
    let surviving = user_id(call)?;
    if surviving == previous {
        return Err(format!(
            "{} call merges {previous} into itself",
            kind_name(call)
        ));
    }
    Ok((surviving, previous))
}

/// An object `merge` for an API that cannot merge objects: the delete of the losing object.
/// Its relationships are not lost: Salesforce's merge re-parents the loser's related records
/// to the winner, and those changes arrive as relationship calls of the winner.
pub(crate) fn object_merge_as_delete(call: &Call) -> Result<Call, String> {
    let previous = match call.previous_id.as_deref() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => return Err(format!("{} call has no previousId", kind_name(call))),
    };
    let object_type = object_type(call)?;
    let mut delete = call.clone();
    delete.call_type = sfsync_mapping::CallType::Delete;
    delete.entity = Some(sfsync_mapping::Entity::Object);
    delete.anonymous_id = Some(sfsync_mapping::anonymous_object_id(&object_type, &previous));
    delete.group_id = Some(previous);
    delete.previous_id = None;
    delete.object_type_id = Some(object_type);
    Ok(delete)
}

/// A `delete` call as the semantic track event Customer.io Data Pipelines defines ("User
/// Deleted", "Object Deleted", "Relationship Deleted"), for APIs without a delete of their
/// own: (event name, userId, anonymousId, properties).
pub(crate) struct DeleteEvent<'c> {
    pub event: &'static str,
    pub user_id: Option<&'c str>,
    pub anonymous_id: Option<&'c str>,
    pub properties: Map<String, Value>,
}

pub(crate) fn delete_event(call: &Call) -> Result<DeleteEvent<'_>, String> {
    use sfsync_mapping::Entity;
    let object_properties = |call: &Call| -> Result<Map<String, Value>, String> {
        let mut p = Map::new();
        p.insert(
            "objectId".into(),
            Value::String(group_id(call)?.to_string()),
        );
        p.insert("objectTypeId".into(), Value::String(object_type(call)?));
        Ok(p)
    };
    match call.entity {
        Some(Entity::Person) => Ok(DeleteEvent {
            event: "User Deleted",
            user_id: Some(user_id(call)?),
            anonymous_id: None,
            properties: Map::new(),
        }),
        Some(Entity::Object) => Ok(DeleteEvent {
            event: "Object Deleted",
            user_id: None,
            // The mapping names the object's anonymous profile (rule 5 of `sfsync_mapping::mapper`).
            anonymous_id: call.anonymous_id.as_deref().filter(|a| !a.is_empty()),
            properties: object_properties(call)?,
        }),
        Some(Entity::Relationship) => Ok(DeleteEvent {
            event: "Relationship Deleted",
            user_id: Some(user_id(call)?),
            anonymous_id: None,
            properties: object_properties(call)?,
        }),
        None => Err("delete call has no entity (person, object or relationship)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_json() {
        let mut out = Vec::new();
        form_encode(br#"[{"a":"b c"}]"#, &mut out);
        assert_eq!(out, b"%5B%7B%22a%22%3A%22b+c%22%7D%5D");
    }

    #[test]
    fn insert_ids_keep_uuids_and_hash_the_rest() {
        let uuid = "6f1d3c2a-9b7e-4c5d-8a41-2f0ed3b69c17";
        assert_eq!(dedupe_insert_id(uuid), uuid);
        let long = dedupe_insert_id("a message id with spaces and more than 36 characters");
        assert_eq!(long.len(), 32);
        assert!(long.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            long,
            dedupe_insert_id("a message id with spaces and more than 36 characters")
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 10), "abc");
    }

    #[test]
    fn webhook_ids_are_stable_and_order_sensitive() {
        let a = webhook_id(["1", "2"]);
        assert_eq!(a, webhook_id(["1", "2"]));
        assert_ne!(a, webhook_id(["2", "1"]));
        assert!(a.starts_with("msg_") && a.len() == 36);
    }
}
