//! Outbound webhooks: `POST <url>` with `{"calls":[call, …]}` (each call exactly as
//! `sfsync map` prints it), signed per Standard Webhooks 1.0.
//!
//! Header names and the signature scheme from the Standard Webhooks specification
//! (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md: `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! secrets `whsec_<base64 key>`).
//!
//! - `webhook-id` is `msg_` + 32 hex digits of SHA-256 over the batch's message ids: stable
//!   across retries of the same batch, so receivers can use it as the idempotency key.
//! - `webhook-timestamp` is the send time (unix seconds) of each attempt, and the signature
//!   is recomputed for each attempt. A `whsec_` secret is base64-decoded to get the key;
//!   any other secret is used as raw bytes. The signature covers the uncompressed body.
//! - 2xx: delivered. 410: the endpoint is gone; every call still to send is dead and the
//!   destination stops sending. 429/5xx: retried, honouring Retry-After. 400 and 422 refuse
//!   the batch for what may be one call in it: the engine bisects it, so only the call the
//!   receiver refuses alone is dead. 401/403: the receiver refused our signature; the
//!   destination pauses (no call is at fault).
//! - Limits (ours): ≤ 500 calls, 1 MB per request, 256 KB per call. gzip only when the
//!   config says `gzip = true` (receivers may not decompress).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderValue;
use sfsync_mapping::Call;
use sfsync_mapping::config::WebhookSettings;
use sha2::Sha256;

use crate::engine::{
    Encoded, Protocol, Request, Response, Route, RouteSpec, Verdict, describe, join_body,
    json_headers, standard_verdict,
};
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 500,
    max_batch_bytes: 1_000_000,
    max_call_bytes: 256 * 1024,
};

pub(crate) struct Webhook {
    url: String,
    key: Vec<u8>,
    route: [RouteSpec; 1],
}

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &WebhookSettings,
) -> Result<Webhook, BuildError> {
    let url = ctx.non_empty("url", &settings.url)?;
    let url = wire::http_url(url).ok_or_else(|| ctx.invalid("url", "is not an http(s) URL"))?;
    // `endpoint`, when set, overrides `url` (tests, proxies).
    let url = ctx.base_url(url)?;
    let secret = ctx.non_empty("secret", &settings.secret)?;
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ctx.invalid("secret", "starts with whsec_ but the rest is not base64"))?,
        None => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(ctx.invalid("secret", "is empty"));
    }
    Ok(Webhook {
        url,
        key,
        route: [RouteSpec {
            name: "webhook",
            limits: LIMITS,
            separator: b",",
            gzip: ctx.config.gzip == Some(true),
            max_units: None,
            min_interval: None,
        }],
    })
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub(crate) fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl Protocol for Webhook {
    fn routes(&self) -> &[RouteSpec] {
        &self.route
    }

    fn encode(&self, call: &Call) -> Result<Encoded, String> {
        serde_json::to_vec(call)
            .map(|bytes| Encoded {
                route: 0,
                bytes,
                units: 0,
            })
            .map_err(|e| format!("cannot serialize the call: {e}"))
    }

    fn request(&self, _route: Route, items: &[&[u8]], calls: &[&Call]) -> Request {
        let body = join_body(b"{\"calls\":[", items, b",", b"]}");
        let id = wire::webhook_id(calls.iter().map(|c| c.message_id.as_str()));
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature(&self.key, &id, timestamp, &body);
        let mut headers = json_headers();
        for (name, value) in [
            ("webhook-id", id),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        Request {
            url: self.url.clone(),
            headers,
            body,
        }
    }

    fn classify(&self, _route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        if response.status == 410 {
            return Verdict::Disable {
                reason: format!(
                    "{}: the webhook endpoint is gone; sending to it stopped",
                    describe(response)
                ),
            };
        }
        if matches!(response.status, 400 | 422) && calls.len() > 1 {
            return Verdict::Split {
                reason: describe(response),
            };
        }
        standard_verdict(response, calls.len(), None)
    }
}
