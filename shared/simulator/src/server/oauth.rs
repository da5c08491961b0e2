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
const ORG_ID: &str = "00DHs0000000001EAA";

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
    let user = match field("grant_type") {
        Some("client_credentials") => {
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
            if field("refresh_token") != Some(creds.refresh_token.as_str()) {
                return oauth_error("invalid_grant", "expired access/refresh token");
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
    shared.rt().tokens.insert(access_token.clone(), 0);
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
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": access_token,
            "instance_url": shared.url,
            "id": id,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
        })),
    )
        .into_response()
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
