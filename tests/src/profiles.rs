//! A Customer.io Track API v2 server that keeps people, for tests that must assert how many
//! profiles a run leaves (docs.customer.io/integrations/api/track/, v2 `batch` and its
//! `person` operations), applied as Customer.io documents them:
//! - `identify` "adds or updates a person": it creates the person if missing and sets the
//!   `attributes` it carries (optional in the `identify_person` schema: without them
//!   nothing else changes);
//! - `event` adds to the person's activity (an event `id` is kept once);
//! - `merge` "merges `secondary` into `primary`, then deletes `secondary`": attributes "not
//!   set, or empty, on the primary" come from the secondary, and so does its event history
//!   ("Merge duplicate people"; the 30-day window is not modelled). "If the primary profile
//!   doesn't exist, your request won't do anything" — answered 200 all the same — and, as
//!   the same page warns, a merge sent right after the identify that creates its primary
//!   may not find it: a primary created less than [`PROCESSING_LAG`] before the merge is
//!   treated as missing. A secondary that does not exist leaves nothing to merge;
//! - `delete` removes the person and their activity.
//!
//! Basic `SITE_ID:API_KEY` (given to [`PeopleServer::start`]), else 401.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// How long after an identify creates a person a merge can see them. Customer.io documents
/// the race without a figure; this one is ours, below sfsync's wait between the two.
pub const PROCESSING_LAG: Duration = Duration::from_millis(250);

/// What the server holds.
#[derive(Debug, Default, Clone)]
pub struct People {
    /// Profiles by `id`, with their attributes.
    pub profiles: BTreeMap<String, Map<String, Value>>,
    /// Each person's events (`event` operations), by person id.
    pub events: BTreeMap<String, Vec<Value>>,
    /// Operations accepted with 200 that changed nothing, with why.
    pub ignored: Vec<(Value, String)>,
    /// Every operation, in arrival order.
    pub operations: Vec<Value>,
    /// When each person was created.
    created: HashMap<String, Instant>,
}

impl People {
    fn apply(&mut self, op: Value, now: Instant) {
        self.operations.push(op.clone());
        let id = |v: &Value| v["id"].as_str().map(str::to_string);
        if op["type"] != "person" {
            return;
        }
        match op["action"].as_str() {
            Some("identify") => match id(&op["identifiers"]) {
                Some(who) => {
                    self.created.entry(who.clone()).or_insert(now);
                    let profile = self.profiles.entry(who).or_default();
                    if let Some(attributes) = op["attributes"].as_object() {
                        profile.extend(attributes.clone());
                    }
                }
                None => self.ignored.push((op, "no identifiers.id".into())),
            },
            Some("event") => match id(&op["identifiers"]) {
                Some(who) => {
                    let events = self.events.entry(who).or_default();
                    if !events.iter().any(|e| e["id"] == op["id"]) {
                        events.push(op);
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
                match self.created.get(&primary) {
                    None => {
                        self.ignored
                            .push((op, format!("primary {primary} does not exist")));
                        return;
                    }
                    Some(at) if now.duration_since(*at) < PROCESSING_LAG => {
                        self.ignored.push((
                            op,
                            format!("primary {primary} not processed yet (identified just before)"),
                        ));
                        return;
                    }
                    Some(_) => {}
                }
                self.created.remove(&secondary);
                let history = self.events.remove(&secondary).unwrap_or_default();
                self.events
                    .entry(primary.clone())
                    .or_default()
                    .extend(history);
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
                    self.events.remove(&who);
                    self.created.remove(&who);
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
    let ops = body["batch"].as_array().cloned().unwrap_or_default();
    let Ok(mut people) = state.people.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let now = Instant::now();
    for op in ops {
        people.apply(op, now);
    }
    (StatusCode::OK, "{}").into_response()
}
