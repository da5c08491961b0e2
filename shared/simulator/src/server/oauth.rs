//! `POST /services/oauth2/token`: client_credentials, JWT bearer and refresh_token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::Shared;

const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The simulated org's id, used in the identity URL.
pub(crate) const ORG_ID: &str = "00DHs0000000001EAA";

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `Authorization: Basic base64(client_id:client_secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    shared.rt().stats.token_requests += 1;
    let Ok(Form(form)) = form else {
        return oauth_error(
            "invalid_request",
            "request body must be application/x-www-form-urlencoded",
        );
    };
    let creds = &shared.credentials;
    let basic = basic_credentials(&headers);
    let field = |k: &str| form.get(k).map(String::as_str);
    let client_id = field("client_id")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let client_secret = field("client_secret")
        .map(str::to_string)
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    // The chain's next refresh token, when rotation issued one.
    let mut rotated: Option<String> = None;
    let user = match field("grant_type") {
        Some("client_credentials") => {
            if let Some(host) = generic_login_host(&shared, &headers) {
                // "OAuth 2.0 Client Credentials Flow for Server-to-Server Integration"
                // (Salesforce Help): the token request goes to the org's My Domain; the
                // generic login hosts refuse the flow.
                tracing::debug!(%host, "client_credentials refused on a generic login host");
                return oauth_error("invalid_grant", "request not supported on this domain");
            }
            if client_id.as_deref() != Some(creds.client_id.as_str()) {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if client_secret.as_deref() != Some(creds.client_secret.as_str()) {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            creds.username.clone()
        }
        Some(JWT_GRANT) => {
            let Some(assertion) = field("assertion") else {
                return oauth_error("invalid_request", "assertion parameter is missing");
            };
            match verify_jwt(&shared, assertion) {
                Ok(user) => user,
                Err(resp) => return *resp,
            }
        }
        Some("refresh_token") => {
            if client_id.as_deref() != Some(creds.client_id.as_str()) {
                return oauth_error("invalid_client_id", "client identifier invalid");
            }
            if client_secret
                .as_deref()
                .is_some_and(|s| s != creds.client_secret)
            {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            match redeem_refresh_token(&shared, field("refresh_token").unwrap_or("")) {
                Ok(next) => rotated = next,
                Err(resp) => return *resp,
            }
            creds.username.clone()
        }
        Some("password") => {
            return oauth_error("unsupported_grant_type", "grant type not supported");
        }
        _ => return oauth_error("unsupported_grant_type", "grant type not supported"),
    };
    let access_token = format!(
        "{ORG_ID}!{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .to_ascii_uppercase()
    );
    {
        let mut rt = shared.rt();
        rt.tokens.insert(access_token.clone(), 0);
        if field("grant_type") == Some("refresh_token") {
            rt.refresh_chain.access_tokens.push(access_token.clone());
        }
    }
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let id = format!(
        "{}/id/{ORG_ID}/{}",
        shared.url,
        crate::ids::make_id("005", 1)
    );
    // Salesforce signs id + issued_at with the consumer secret (HMAC-SHA256, base64).
    let signature = Hmac::<Sha256>::new_from_slice(creds.client_secret.as_bytes())
        .map(|mut mac| {
            mac.update(id.as_bytes());
            mac.update(issued_at.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    tracing::debug!(user = %user, "issued access token");
    let mut body = json!({
        "access_token": access_token,
        "instance_url": shared.url,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": signature,
    });
    if let (Some(next), Some(map)) = (rotated, body.as_object_mut()) {
        map.insert("refresh_token".into(), serde_json::Value::String(next));
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The refresh-token chain of the org's one integration user.
///
/// Salesforce Help, "Force one-time-use Refresh Tokens - (RTR) Refresh Token Rotation"
/// (article 005316711): rotation "enforces single-use refresh tokens by issuing a new token
/// with each exchange and immediately invalidating the previous one", and "any attempted
/// reuse of an invalidated refresh token results in the immediate revocation of the current
/// refresh token and all associated access tokens, requiring the client to re-authenticate".
#[derive(Debug, Default)]
pub(crate) struct RefreshChain {
    /// The one valid refresh token once the configured one was rotated.
    current: Option<String>,
    /// Tokens rotated out of the chain.
    retired: Vec<String>,
    /// A retired token was presented: nothing of the chain works any more.
    revoked: bool,
    /// Access tokens issued through the chain (revoked with it).
    pub(crate) access_tokens: Vec<String>,
}

/// Checks a presented refresh token against the chain. `Ok(Some(next))` when rotation
/// issued the chain's next token.
fn redeem_refresh_token(shared: &Shared, presented: &str) -> Result<Option<String>, Box<Response>> {
    let configured = shared.credentials.refresh_token.clone();
    let mut rt = shared.rt();
    let rotate = rt.faults.rotate_refresh_tokens;
    let super::Runtime {
        refresh_chain: chain,
        tokens,
        ..
    } = &mut *rt;
    let valid = chain.current.clone().unwrap_or(configured);
    if chain.revoked || presented != valid {
        if !chain.revoked && chain.retired.iter().any(|t| t == presented) {
            tracing::debug!("a rotated-out refresh token was presented: chain revoked");
            chain.revoked = true;
            for token in chain.access_tokens.drain(..) {
                tokens.remove(&token);
            }
        }
        return Err(Box::new(oauth_error(
            "invalid_grant",
            "expired access/refresh token",
        )));
    }
    if !rotate {
        return Ok(None);
    }
    let next = format!(
        "5Aep861{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .to_ascii_uppercase()
    );
    chain.retired.push(valid);
    chain.current = Some(next.clone());
    Ok(Some(next))
}

/// The generic login host the request was sent to, if it was one: `login.salesforce.com`
/// or `test.salesforce.com`. The simulator listens on 127.0.0.1, so the host comes from its
/// configured login host name when set (`SimulatorHandle::set_login_host`), else from the
/// request's `Host` header (what a client, or a proxy in front of the simulator, sends).
fn generic_login_host(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    let configured = shared.rt().login_host.clone();
    let host = configured.or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })?;
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host.as_str(), |(name, _)| name)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    matches!(
        name.as_str(),
        "login.salesforce.com" | "test.salesforce.com"
    )
    .then_some(name)
}

/// Checks an RS256 assertion: signature, `aud`, `exp`, then `iss` and `sub`.
fn verify_jwt(shared: &Shared, assertion: &str) -> Result<String, Box<Response>> {
    let creds = &shared.credentials;
    let Some(pem) = &creds.jwt_public_key_pem else {
        return Err(Box::new(oauth_error(
            "invalid_client",
            "no certificate is configured for this connected app",
        )));
    };
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
        Box::new(oauth_error(
            "invalid_client",
            "the connected app's certificate is invalid",
        ))
    })?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[
        "https://login.salesforce.com",
        "https://test.salesforce.com",
        shared.url.as_str(),
    ]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let data = jsonwebtoken::decode::<Claims>(assertion, &key, &validation).map_err(|e| {
        let description = match e.kind() {
            ErrorKind::InvalidAudience => "audience is invalid",
            ErrorKind::ExpiredSignature => "expired authorization code",
            _ => "invalid assertion",
        };
        Box::new(oauth_error("invalid_grant", description))
    })?;
    if data.claims.iss != creds.client_id {
        return Err(Box::new(oauth_error(
            "invalid_client_id",
            "client identifier invalid",
        )));
    }
    if data.claims.sub != creds.username {
        return Err(Box::new(oauth_error(
            "invalid_grant",
            "user hasn't approved this consumer",
        )));
    }
    Ok(data.claims.sub)
}
