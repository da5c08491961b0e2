//! A Customer.io Track API v2 server that keeps people, for tests that must assert how many
//! profiles a run leaves (docs.customer.io/integrations/api/track/, v2 `batch` and its
//! `person` operations). What it does with each operation — identify, event, merge (with
//! Customer.io's documented "primary does not exist" and identify→merge race), delete — is
//! [`People`], shared with `sfsync-destinations`' tests (crate `sfsync-test-vendors`).
//!
//! Basic `SITE_ID:API_KEY` (given to [`PeopleServer::start`]), else 401.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
pub use sfsync_test_vendors::{PROCESSING_LAG, People};

struct ServerState {
    auth: String,
    people: Mutex<People>,
}

/// A running people server.
#[derive(Clone)]
pub struct PeopleServer {
    pub url: String,
    state: Arc<ServerState>,
}

impl PeopleServer {
    /// A server that accepts `Authorization: Basic base64(site_id:api_key)` only.
    pub async fn start(site_id: &str, api_key: &str) -> PeopleServer {
        let auth = format!("Basic {}", STANDARD.encode(format!("{site_id}:{api_key}")));
        let state = Arc::new(ServerState {
            auth,
            people: Mutex::new(People::default()),
        });
        let app = axum::Router::new()
            .fallback(batch)
            .with_state(state.clone());
        PeopleServer {
            url: crate::serve(app).await,
            state,
        }
    }

    /// Applies one operation as if it had just arrived: what Customer.io already holds from
    /// other sources (a person's activity tracked by a website, say).
    pub fn apply(&self, op: Value) {
        if let Ok(mut people) = self.state.people.lock() {
            people.apply(op, Instant::now());
        }
    }

    pub fn people(&self) -> People {
        self.state
            .people
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }
}

async fn batch(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == state.auth);
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"message":"unauthorized"}]}"#,
        )
            .into_response();
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"errors":[{"message":"invalid JSON"}]}"#,
        )
            .into_response();
    };
    let Ok(mut people) = state.people.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    people.apply_batch(&body, Instant::now());
    (StatusCode::OK, "{}").into_response()
}
