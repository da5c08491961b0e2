//! A Customer.io Track API v2 server that keeps people, for tests that must assert how many
//! profiles a run leaves (docs.customer.io/integrations/api/track/, v2 `batch` and its
//! `person` operations): `identify` creates or updates a person; `merge` "merges
//! `secondary` into `primary`, then deletes `secondary`" (attributes unset on the primary are
//! taken from the secondary), and "if the primary profile doesn't exist, your request won't
//! do anything" — answered 200 all the same; `delete` removes the person. Basic
//! `SITE_ID:API_KEY` (given to
//! [`PeopleServer::start`]), else 401.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// What the server holds.
#[derive(Debug, Default, Clone)]
pub struct People {
    /// Profiles by `id`, with their attributes.
    pub profiles: BTreeMap<String, Map<String, Value>>,
    /// Operations accepted with 200 that changed nothing, with why.
    pub ignored: Vec<(Value, String)>,
    /// Every operation, in arrival order.
    pub operations: Vec<Value>,
}

impl People {
    fn apply(&mut self, op: Value) {
        self.operations.push(op.clone());
        let id = |v: &Value| v["id"].as_str().map(str::to_string);
        if op["type"] != "person" {
            return;
        }
        match op["action"].as_str() {
            Some("identify") => match id(&op["identifiers"]) {
                Some(who) => {
                    let profile = self.profiles.entry(who).or_default();
                    if let Some(attributes) = op["attributes"].as_object() {
                        profile.extend(attributes.clone());
                    }
                }
                None => self.ignored.push((op, "no identifiers.id".into())),
            },
            Some("merge") => {
                let (Some(primary), Some(secondary)) = (id(&op["primary"]), id(&op["secondary"]))
                else {
                    self.ignored
                        .push((op, "merge needs primary.id and secondary.id".into()));
                    return;
                };
                if !self.profiles.contains_key(&primary) {
                    self.ignored
                        .push((op, format!("primary {primary} does not exist")));
                    return;
                }
                let Some(old) = self.profiles.remove(&secondary) else {
                    return;
                };
                let profile = self.profiles.entry(primary).or_default();
                for (k, v) in old {
                    if profile.get(&k).is_none_or(Value::is_null) {
                        profile.insert(k, v);
                    }
                }
            }
            Some("delete") => {
                if let Some(who) = id(&op["identifiers"]) {
                    self.profiles.remove(&who);
                }
            }
            _ => {}
        }
    }
}

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
    /// `authorization`: the exact header value a request must carry (`Basic base64(SITE_ID:API_KEY)`).
    pub async fn start(authorization: String) -> PeopleServer {
        let auth = authorization;
        let state = Arc::new(ServerState {
            auth,
            people: Mutex::new(People::default()),
        });
        let app = axum::Router::new()
            .fallback(batch)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PeopleServer {
            url: format!("http://{addr}"),
            state,
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
    let ops = body["batch"].as_array().cloned().unwrap_or_default();
    let Ok(mut people) = state.people.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    for op in ops {
        people.apply(op);
    }
    (StatusCode::OK, "{}").into_response()
}
