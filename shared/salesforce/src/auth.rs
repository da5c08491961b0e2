//! OAuth 2.0 token requests (client credentials, JWT bearer, refresh token).
//!
//! Salesforce answers no `expires_in`: a session lives until it idles out or is revoked,
//! so the client keeps one token per process and refreshes it when an API call answers 401.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Credentials;
use crate::error::Error;
use crate::rotation::RotatedRefreshToken;

/// A live session. `Debug` hides the token.
pub(crate) struct Session {
    pub(crate) access_token: String,
    pub(crate) instance_url: String,
    /// Increases with every new token, so that concurrent 401s refresh only once.
    pub(crate) generation: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("instance_url", &self.instance_url)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
pub(crate) struct AuthState {
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) generation: u64,
    /// The newest refresh token of the chain, once the server rotated the configured one
    /// (from this process or, through the store, from another).
    pub(crate) rotated_refresh_token: Option<RotatedRefreshToken>,
    /// A rotated token the store has not accepted yet: saving it is retried before the
    /// session is handed out again.
    pub(crate) unsaved: bool,
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) instance_url: String,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct OAuthError {
    #[serde(default)]
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) error_description: String,
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
}

/// The form of a token request. `refresh_token` overrides the configured one (rotation).
pub(crate) fn token_form(
    credentials: &Credentials,
    refresh_token: Option<&str>,
) -> Result<Vec<(&'static str, String)>, Error> {
    Ok(match credentials {
        Credentials::ClientCredentials {
            client_id,
            client_secret,
        } => vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.clone()),
        ],
        Credentials::JwtBearer {
            client_id,
            username,
            private_key_pem,
            audience,
        } => vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer".to_string(),
            ),
            (
                "assertion",
                jwt_assertion(client_id, username, private_key_pem, audience)?,
            ),
        ],
        Credentials::RefreshToken {
            client_id,
            client_secret,
            refresh_token: configured,
        } => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                (
                    "refresh_token",
                    refresh_token.unwrap_or(configured).to_string(),
                ),
                ("client_id", client_id.clone()),
            ];
            if let Some(secret) = client_secret {
                form.push(("client_secret", secret.clone()));
            }
            form
        }
    })
}

/// An RS256 JWT with `iss` = consumer key, `sub` = username, `aud`, `exp` 3 minutes ahead.
pub(crate) fn jwt_assertion(
    client_id: &str,
    username: &str,
    private_key_pem: &str,
    audience: &str,
) -> Result<String, Error> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).map_err(|e| {
        // The error kind only ("InvalidKeyFormat"), never key material.
        Error::config(format!(
            "salesforce.private_key is not a usable RSA private key in PEM form ({:?})",
            e.kind()
        ))
    })?;
    let claims = JwtClaims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp: chrono::Utc::now().timestamp() + 180,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| Error::config(format!("cannot sign the JWT assertion ({:?})", e.kind())))
}
