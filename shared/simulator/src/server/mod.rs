//! The HTTP server: routing, the API-call guard (auth, limits, fault injection), and the
//! handle tests use to steer a running simulator.

mod bulk;
mod oauth;
mod pubsub;
mod rest;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::keys::Credentials;
use crate::org::Org;
use crate::plan::Plan;

pub use pubsub::{PubSubHandle, PubSubOptions};

/// API versions the server lists and accepts (`/services/data/vXX.X/...`).
pub const API_VERSIONS: &[&str] = &[
    "50.0", "51.0", "52.0", "53.0", "54.0", "55.0", "56.0", "57.0", "58.0", "59.0", "60.0", "61.0",
    "62.0", "63.0", "64.0",
];

/// Faults to inject. All off by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// A session becomes invalid (401 INVALID_SESSION_ID) after this many API calls with
    /// it; a new token from `/services/oauth2/token` works again.
    pub expire_token_after_calls: Option<u64>,
    /// Every Nth API call (counted org-wide) answers 503.
    pub fail_every_nth: Option<u64>,
    /// The daily API request limit: `Max` in Sforce-Limit-Info and /limits. Calls beyond it
    /// answer 403 REQUEST_LIMIT_EXCEEDED. Default 100,000.
    pub daily_limit: Option<u64>,
    /// Added before every response.
    pub latency: Option<Duration>,
    /// A REST query whose filter matches more rows than this fails with QUERY_TIMEOUT.
    pub query_timeout_over_rows: Option<usize>,
    /// How long such a query runs on the server before it answers QUERY_TIMEOUT. Salesforce
    /// stops a query after 2 minutes (the default); tests shorten it (and scale the
    /// client's timeouts with it) rather than wait. The answer is never instant: a client
    /// whose own timeout is shorter gives up first and never sees the error.
    pub query_timeout_after: Duration,
    /// A `nextRecordsUrl` locator not used for this long answers INVALID_QUERY_LOCATOR.
    /// Salesforce: about 15 minutes idle (the default). `Duration::ZERO` expires every
    /// locator at once, which forces a restart after every page.
    pub query_locator_idle: Duration,
    /// How far behind the org's clock getDeleted/getUpdated coverage stays: changes in
    /// transactions still in flight are not covered yet, so `latestDateCovered` is at most
    /// `now - replication_lag` (floored to the minute) and nothing after it is listed.
    /// GetDeletedResult (SOAP API guide): latestDateCovered is "less than or equal to
    /// endDate" and the next call must start there "to capture the changes that started
    /// after this date but didn't complete before endDate". Zero by default (only the
    /// minute floor); a busy org lags more.
    pub replication_lag: Duration,
    /// Force Bulk query jobs to end `"Failed"` or `"Aborted"` instead of JobComplete.
    pub bulk_final_state: Option<String>,
    /// How many status polls answer InProgress before a Bulk job reaches its final state.
    pub bulk_polls_before_complete: u32,
    /// Refresh Token Rotation, as a connected app can enforce it: every refresh_token grant
    /// answers a new `refresh_token` and invalidates the one presented; presenting an
    /// invalidated one revokes the chain's current refresh token and all its access tokens
    /// (see `oauth.rs`).
    pub rotate_refresh_tokens: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            expire_token_after_calls: None,
            fail_every_nth: None,
            daily_limit: None,
            latency: None,
            query_timeout_over_rows: None,
            query_timeout_after: QUERY_TIMEOUT_AFTER,
            query_locator_idle: QUERY_LOCATOR_IDLE,
            replication_lag: Duration::ZERO,
            bulk_final_state: None,
            bulk_polls_before_complete: 1,
            rotate_refresh_tokens: false,
        }
    }
}

/// Request counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Authenticated REST/Bulk requests, counted as Salesforce counts API usage (the
    /// requests rejected for the daily limit or a bad session are not counted).
    pub api_calls: u64,
    /// Requests to `/services/oauth2/token`, successful or not.
    pub token_requests: u64,
    /// Authenticated requests to `query`/`queryAll`, first pages and `nextRecordsUrl` alike.
    pub query_calls: u64,
    /// Bulk query jobs created.
    pub bulk_jobs: u64,
    /// Every request by `METHOD path`, with record ids, job ids and locators as `{id}`.
    pub by_path: BTreeMap<String, u64>,
}

const DEFAULT_DAILY_LIMIT: u64 = 100_000;
/// Salesforce's server-side query time limit: a query that does not execute within "the
/// standard 2-minute timeout limit" fails with QUERY_TIMEOUT (Bulk API Developer Guide,
/// "How Bulk Queries Are Processed"; REST queries answer the same code).
pub const QUERY_TIMEOUT_AFTER: Duration = Duration::from_secs(120);
/// Idle lifetime of a query locator, and how many may be open per user. SOAP API guide,
/// "QueryLocator": "QueryLocator objects expire automatically after 15 minutes of
/// inactivity" and "A user can have up to 10 query cursors open at a time ... the oldest of
/// the 10 cursors is released". (Salesforce's limits cheat sheet says API 56.0 relaxed this
/// to 2 days and no count limit; the simulator keeps the stricter documented behaviour,
/// which a client must survive on any org.) The simulator has one API user, so the count
/// applies to all cursors.
pub const QUERY_LOCATOR_IDLE: Duration = Duration::from_secs(15 * 60);
pub(crate) const MAX_CURSORS: usize = 10;

/// A REST query's result, kept so that nextRecordsUrl pages are served without re-running it.
struct Cursor {
    org_instance: u64,
    plan: Arc<Plan>,
    rows: Arc<[u32]>,
    batch: usize,
    /// When a page of it was last served: idle locators expire.
    last_used: std::time::Instant,
}

struct Runtime {
    faults: Faults,
    stats: Stats,
    /// Live access tokens and how many API calls each has made.
    tokens: HashMap<String, u64>,
    cursors: HashMap<String, Cursor>,
    cursor_order: VecDeque<String>,
    jobs: HashMap<String, bulk::Job>,
    seq: u64,
    /// The refresh-token chain (rotation).
    refresh_chain: oauth::RefreshChain,
    /// The host name the token endpoint answers as (see [`SimulatorHandle::set_login_host`]).
    login_host: Option<String>,
}

pub(crate) struct Shared {
    org: Arc<Mutex<Org>>,
    credentials: Credentials,
    url: String,
    runtime: Mutex<Runtime>,
}

impl Shared {
    fn rt(&self) -> MutexGuard<'_, Runtime> {
        // A panicking test thread must not take the whole server down with a poisoned lock.
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn org(&self) -> MutexGuard<'_, Org> {
        self.org.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_seq(&self) -> u64 {
        let mut rt = self.rt();
        rt.seq += 1;
        rt.seq
    }

    fn daily_max(&self) -> u64 {
        self.rt().faults.daily_limit.unwrap_or(DEFAULT_DAILY_LIMIT)
    }
}

/// A Salesforce REST error body: `[{"message","errorCode"}]`.
pub(crate) fn sf_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!([{ "message": message, "errorCode": code }])),
    )
        .into_response()
}

pub(crate) fn not_found() -> Response {
    sf_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The requested resource does not exist",
    )
}

/// A JSON body written by hand (query pages are built as text to keep key order).
pub(crate) fn json_text(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    resp
}

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Serves `org` on 127.0.0.1 at a free port, in the current tokio runtime.
    pub async fn start(
        org: Org,
        credentials: Credentials,
        faults: Faults,
    ) -> std::io::Result<SimulatorHandle> {
        Simulator::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            org,
            credentials,
            faults,
        )
        .await
    }

    /// Serves on `addr` (port 0 picks a free one).
    pub async fn start_on(
        addr: SocketAddr,
        org: Org,
        credentials: Credentials,
        faults: Faults,
    ) -> std::io::Result<SimulatorHandle> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        let org = Arc::new(Mutex::new(org));
        let shared = Arc::new(Shared {
            org: org.clone(),
            credentials,
            url: url.clone(),
            runtime: Mutex::new(Runtime {
                faults,
                stats: Stats::default(),
                tokens: HashMap::new(),
                cursors: HashMap::new(),
                cursor_order: VecDeque::new(),
                jobs: HashMap::new(),
                seq: 0,
                refresh_chain: oauth::RefreshChain::default(),
                login_host: None,
            }),
        });
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulator stopped with an error");
            }
        });
        Ok(SimulatorHandle {
            url,
            addr: local,
            org,
            shared,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimulatorHandle {
    url: String,
    addr: SocketAddr,
    org: Arc<Mutex<Org>>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimulatorHandle {
    /// `http://127.0.0.1:PORT`: both the OAuth host and the instance URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The org, to mutate between runs (lock it briefly: requests wait for it).
    pub fn org(&self) -> Arc<Mutex<Org>> {
        self.org.clone()
    }

    pub fn credentials(&self) -> Credentials {
        self.shared.credentials.clone()
    }

    pub fn faults(&self) -> Faults {
        self.shared.rt().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.rt().faults = faults;
    }

    pub fn stats(&self) -> Stats {
        self.shared.rt().stats.clone()
    }

    /// Zeroes the counters (API usage included, as if a new day began).
    pub fn reset_stats(&self) {
        self.shared.rt().stats = Stats::default();
    }

    /// The host name the token endpoint pretends to be served as. The simulator listens on
    /// 127.0.0.1, so a client cannot really reach `login.salesforce.com` through it; this
    /// name stands in for the host the client would have used. `None` (the default) takes
    /// the request's `Host` header instead. On `login.salesforce.com` and
    /// `test.salesforce.com` the client_credentials flow is refused, as Salesforce refuses
    /// it anywhere but the org's My Domain.
    pub fn set_login_host(&self, host: Option<&str>) {
        self.shared.rt().login_host = host.map(str::to_string);
    }

    /// Forgets every issued access token, as if all sessions timed out.
    pub fn expire_all_tokens(&self) {
        self.shared.rt().tokens.clear();
    }

    /// Stops accepting requests and waits for the server task to end.
    pub async fn shutdown(mut self) {
        stop_and_wait(self.stop.take(), self.task.take()).await;
    }
}

/// Signals a server task to stop and waits for it to end. Idle keep-alive connections
/// close at once on graceful shutdown; a client holding a request (or a subscription) open
/// should not hang the caller forever, so after 5 s the task is aborted.
async fn stop_and_wait(stop: Option<oneshot::Sender<()>>, task: Option<JoinHandle<()>>) {
    if let Some(tx) = stop {
        let _ = tx.send(());
    }
    if let Some(task) = task {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = [
        ("/services/data/{version}", get(rest::resources)),
        ("/services/data/{version}/limits", get(rest::limits)),
        (
            "/services/data/{version}/sobjects",
            get(rest::global_describe),
        ),
        (
            "/services/data/{version}/sobjects/{object}/describe",
            get(rest::describe),
        ),
        (
            "/services/data/{version}/sobjects/{object}/deleted",
            get(rest::deleted),
        ),
        (
            "/services/data/{version}/sobjects/{object}/updated",
            get(rest::updated),
        ),
        ("/services/data/{version}/query", get(rest::query)),
        ("/services/data/{version}/queryAll", get(rest::query_all)),
    ]
    .into_iter()
    .fold(Router::new(), |api, (path, handler)| {
        route_with_and_without_slash(api, path, handler)
    })
    .route(
        "/services/data/{version}/sobjects/{object}/{id}",
        get(rest::retrieve),
    )
    .route(
        "/services/data/{version}/query/{locator}",
        get(rest::query_more),
    )
    .route(
        "/services/data/{version}/queryAll/{locator}",
        get(rest::query_more),
    )
    .route(
        "/services/data/{version}/jobs/query",
        post(bulk::create).get(bulk::list),
    )
    .route(
        "/services/data/{version}/jobs/query/{job}",
        get(bulk::status).patch(bulk::abort).delete(bulk::delete),
    )
    .route(
        "/services/data/{version}/jobs/query/{job}/results",
        get(bulk::results),
    )
    .route_layer(middleware::from_fn_with_state(shared.clone(), guard));
    let top = Router::new().route("/services/oauth2/token", post(oauth::token));
    route_with_and_without_slash(top, "/services/data", get(rest::versions))
        .merge(api)
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// Routes `path` and `path/` to `handler`: a client may add the trailing slash to these
/// resource and query URLs, and both answer the same.
fn route_with_and_without_slash(
    router: Router<Arc<Shared>>,
    path: &str,
    handler: MethodRouter<Arc<Shared>>,
) -> Router<Arc<Shared>> {
    router
        .route(path, handler.clone())
        .route(&format!("{path}/"), handler)
}

/// `METHOD path` with ids and locators folded, for `Stats::by_path`.
fn path_key(method: &Method, path: &str) -> String {
    let folded: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let digits = seg.bytes().filter(u8::is_ascii_digit).count();
            if seg.len() >= 15 && digits >= 3 && !seg.contains("__") {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", folded.join("/"))
}

/// Counts every request and applies the latency fault.
async fn observe(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let key = path_key(req.method(), req.uri().path());
    let latency = {
        let mut rt = shared.rt();
        *rt.stats.by_path.entry(key).or_default() += 1;
        rt.faults.latency
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    next.run(req).await
}

/// The session token of a request: `Authorization: Bearer X` (or the older `OAuth X`).
fn bearer(req: &Request) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth") {
        Some(token.trim().to_string())
    } else {
        None
    }
}

fn limit_header(used: u64, max: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("api-usage={used}/{max}"))
        .unwrap_or_else(|_| HeaderValue::from_static("api-usage=0/0"))
}

/// Everything under `/services/data/vXX.X/`: version check, session check, daily limit,
/// call counting, the 503 fault, and the Sforce-Limit-Info header.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let version_ok = req
        .uri()
        .path()
        .strip_prefix("/services/data/v")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|v| API_VERSIONS.contains(&v));
    if !version_ok {
        return not_found();
    }
    let token = bearer(&req);
    let is_query = {
        let p = req.uri().path();
        p.contains("/query") && !p.contains("/jobs/query")
    };
    let (used, max) = {
        let mut rt = shared.rt();
        let max = rt.faults.daily_limit.unwrap_or(DEFAULT_DAILY_LIMIT);
        let expire_after = rt.faults.expire_token_after_calls;
        let uses = token.as_ref().and_then(|t| rt.tokens.get(t).copied());
        let Some(uses) = uses else {
            return sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        };
        if expire_after.is_some_and(|n| uses >= n) {
            if let Some(t) = &token {
                rt.tokens.remove(t);
            }
            return sf_error(
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION_ID",
                "Session expired or invalid",
            );
        }
        if rt.stats.api_calls >= max {
            let mut resp = sf_error(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            );
            resp.headers_mut()
                .insert("sforce-limit-info", limit_header(rt.stats.api_calls, max));
            return resp;
        }
        rt.stats.api_calls += 1;
        if is_query {
            rt.stats.query_calls += 1;
        }
        if let Some(t) = &token
            && let Some(u) = rt.tokens.get_mut(t)
        {
            *u += 1;
        }
        let used = rt.stats.api_calls;
        if rt
            .faults
            .fail_every_nth
            .is_some_and(|n| n > 0 && used % n == 0)
        {
            let mut resp = sf_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVER_UNAVAILABLE",
                "Service temporarily unavailable (simulated fault); retry later.",
            );
            resp.headers_mut()
                .insert("sforce-limit-info", limit_header(used, max));
            return resp;
        }
        (used, max)
    };
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert("sforce-limit-info", limit_header(used, max));
    resp
}

/// An empty response with a status (for DELETE).
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_keys_fold_ids() {
        assert_eq!(
            path_key(
                &Method::GET,
                "/services/data/v62.0/query/01gHs0000000001AAA-2000"
            ),
            "GET /services/data/v62.0/query/{id}"
        );
        assert_eq!(
            path_key(
                &Method::GET,
                "/services/data/v62.0/sobjects/Project__c/describe"
            ),
            "GET /services/data/v62.0/sobjects/Project__c/describe"
        );
    }
}
