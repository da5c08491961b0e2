//! The HTTP core: one token per process, retries with backoff, limit accounting, describe
//! caches.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};
use tracing::{debug, info, warn};

use crate::auth::{self, AuthState, OAuthError, Session, TokenResponse};
use crate::config::ClientConfig;
use crate::describe::{GlobalDescribe, ObjectDescribe};
use crate::error::{Error, FieldProblem, Redactor};
use crate::limits::{ApiUsage, LimitInfo};
use crate::rotation::{RefreshTokenStore, RotatedRefreshToken, origin_of};

/// A Salesforce API client. Cheap to clone: clones share the token, the describe caches
/// and the request accounting.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    http: reqwest::Client,
    auth: Mutex<AuthState>,
    redactor: StdMutex<Redactor>,
    calls: AtomicU64,
    token_requests: AtomicU64,
    limit: StdMutex<Option<LimitInfo>>,
    global: OnceCell<Arc<GlobalDescribe>>,
    describes: StdMutex<HashMap<String, Arc<ObjectDescribe>>>,
    /// Where rotated refresh tokens are kept (refresh_token flow only).
    token_store: Option<Arc<dyn RefreshTokenStore>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.config)
            .field("calls", &self.inner.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A fully read HTTP answer.
pub(crate) struct Response {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::decode(format!("{what}: the body is not the expected JSON ({e})")))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Deserialize)]
struct ApiErrorItem {
    #[serde(default, rename = "errorCode")]
    error_code: String,
    #[serde(default)]
    message: String,
}

/// `[{"errorCode","message"}]`, or a single object, or something else entirely.
fn parse_api_error(status: StatusCode, body: &[u8]) -> (String, String) {
    if let Ok(items) = serde_json::from_slice::<Vec<ApiErrorItem>>(body)
        && let Some(first) = items.into_iter().next()
    {
        return (first.error_code, first.message);
    }
    if let Ok(item) = serde_json::from_slice::<ApiErrorItem>(body)
        && !item.error_code.is_empty()
    {
        return (item.error_code, item.message);
    }
    if let Ok(oauth) = serde_json::from_slice::<OAuthError>(body)
        && !oauth.error.is_empty()
    {
        return (oauth.error, oauth.error_description);
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(300).collect();
    (
        status
            .canonical_reason()
            .unwrap_or("HTTP_ERROR")
            .to_ascii_uppercase()
            .replace(' ', "_"),
        text,
    )
}

/// Percent-encodes a query-string component (everything but unreserved characters), so
/// that `+` in a datetime is sent as `%2B` and spaces as `%20`.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` with every value encoded.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        Client::build(config, None)
    }

    /// A client whose refresh tokens, when the server rotates them, are kept in `store`:
    /// every token request starts from the newest stored token of the configured chain, and
    /// a rotated token is stored before the session it came with is used. Without a store a
    /// rotated token lives only as long as the process, and the next process presents the
    /// rotated-out configured one — which Salesforce answers by revoking the whole chain.
    pub fn with_refresh_token_store(
        config: ClientConfig,
        store: Arc<dyn RefreshTokenStore>,
    ) -> Result<Client, Error> {
        Client::build(config, Some(store))
    }

    fn build(
        config: ClientConfig,
        token_store: Option<Arc<dyn RefreshTokenStore>>,
    ) -> Result<Client, Error> {
        if !(config.login_url.starts_with("https://") || config.login_url.starts_with("http://")) {
            return Err(Error::config(format!(
                "login_url {:?} is not an http(s) URL",
                config.login_url
            )));
        }
        if !(config.max_api_share > 0.0 && config.max_api_share <= 1.0) {
            return Err(Error::config(format!(
                "max_api_share {} must be in (0, 1]",
                config.max_api_share
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(15)))
            .user_agent(concat!("sfsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        let redactor = Redactor::new(config.credentials.secrets());
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                http,
                auth: Mutex::new(AuthState::default()),
                redactor: StdMutex::new(redactor),
                calls: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                limit: StdMutex::new(None),
                global: OnceCell::new(),
                describes: StdMutex::new(HashMap::new()),
                token_store,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Requests made so far and the latest `Sforce-Limit-Info`.
    pub fn usage(&self) -> ApiUsage {
        ApiUsage {
            calls: self.inner.calls.load(Ordering::Relaxed),
            token_requests: self.inner.token_requests.load(Ordering::Relaxed),
            limit: self.lock_limit().clone(),
        }
    }

    /// Gets a token now (otherwise the first API call does).
    pub async fn authenticate(&self) -> Result<(), Error> {
        self.session().await.map(|_| ())
    }

    /// The instance URL the token endpoint answered (authenticates if needed).
    pub async fn instance_url(&self) -> Result<String, Error> {
        Ok(self.session().await?.instance_url.clone())
    }

    /// `GET /limits`: the org's limits as Salesforce answers them.
    pub async fn limits(&self) -> Result<Value, Error> {
        let path = self.data_path("/limits");
        self.get(&path, None).await?.json("limits")
    }

    /// The global describe, fetched once per client.
    pub async fn describe_global(&self) -> Result<Arc<GlobalDescribe>, Error> {
        self.inner
            .global
            .get_or_try_init(|| async {
                let path = self.data_path("/sobjects");
                let global: GlobalDescribe =
                    self.get(&path, None).await?.json("global describe")?;
                info!(objects = global.sobjects.len(), "global describe loaded");
                Ok(Arc::new(global))
            })
            .await
            .cloned()
    }

    /// An object's describe, fetched once per client and object.
    pub async fn describe(&self, object: &str) -> Result<Arc<ObjectDescribe>, Error> {
        if !sfsync_mapping::config::is_api_name(object) {
            return Err(Error::InvalidSync {
                problems: vec![FieldProblem {
                    key: "object".into(),
                    message: format!("{object:?} is not an sObject API name"),
                }],
            });
        }
        let key = object.to_ascii_lowercase();
        if let Some(found) = self.lock_describes().get(&key) {
            return Ok(found.clone());
        }
        let path = self.data_path(&format!("/sobjects/{object}/describe"));
        let describe: ObjectDescribe = self.get(&path, None).await?.json("describe")?;
        debug!(object = %describe.name, fields = describe.fields.len(), "describe loaded");
        let describe = Arc::new(describe);
        let mut cache = self.lock_describes();
        cache.insert(key, describe.clone());
        cache.insert(describe.name.to_ascii_lowercase(), describe.clone());
        Ok(describe)
    }

    pub(crate) fn data_path(&self, rest: &str) -> String {
        format!("/services/data/v{}{rest}", self.inner.config.api_version)
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        match self.inner.redactor.lock() {
            Ok(r) => r.clean(text),
            Err(poisoned) => poisoned.into_inner().clean(text),
        }
    }

    fn lock_limit(&self) -> std::sync::MutexGuard<'_, Option<LimitInfo>> {
        match self.inner.limit.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn lock_describes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ObjectDescribe>>> {
        match self.inner.describes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) async fn get(&self, target: &str, query: Option<&str>) -> Result<Response, Error> {
        self.send(Method::GET, target, query, &[], None).await
    }

    /// Sends one API request: budget check, bearer token, retries of 5xx and transport
    /// errors with full-jitter backoff, one token refresh on 401, limit accounting.
    /// `target` is a path on the instance (`/services/data/…`) or an absolute URL.
    pub(crate) async fn send(
        &self,
        method: Method,
        target: &str,
        query: Option<&str>,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Response, Error> {
        self.send_with_timeout(method, target, query, headers, body, None)
            .await
    }

    /// [`Client::send`] with its own whole-request timeout instead of `request_timeout`
    /// (queries: see `ClientConfig::query_timeout`).
    pub(crate) async fn send_with_timeout(
        &self,
        method: Method,
        target: &str,
        query: Option<&str>,
        headers: &[(&str, String)],
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Response, Error> {
        let config = &self.inner.config;
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            self.check_budget()?;
            let session = self.session().await?;
            let url = build_url(&session.instance_url, target, query);
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(&session.access_token);
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
            {
                request = request.header("Accept", "application/json");
            }
            for (name, value) in headers {
                request = request.header(*name, value.as_str());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(timeout) = timeout {
                request = request.timeout(timeout);
            }
            self.inner.calls.fetch_add(1, Ordering::Relaxed);
            debug!(%method, path = target, attempt, "salesforce request");
            let outcome = async {
                let response = request.send().await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body.to_vec()))
            }
            .await;
            let (status, headers, body) = match outcome {
                Ok(answer) => answer,
                Err(e) => {
                    let retryable = !(e.is_builder() || e.is_redirect());
                    let message = self.redact(&e.without_url().to_string());
                    if retryable && attempt < config.max_retries {
                        let delay = self.backoff(attempt);
                        warn!(path = target, attempt, error = %message, delay_ms = delay.as_millis() as u64, "request failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::Http { message, retryable });
                }
            };
            self.record_limit(&headers);
            if status.is_success() {
                return Ok(Response { headers, body });
            }
            let (code, message) = parse_api_error(status, &body);
            let message = self.redact(&message);
            let code = self.redact(&code);
            match status.as_u16() {
                401 if !refreshed => {
                    info!(path = target, code = %code, "session rejected; refreshing the token once");
                    refreshed = true;
                    self.refresh(session.generation).await?;
                    continue;
                }
                401 => {
                    return Err(Error::Auth {
                        message: format!(
                            "a freshly issued token was rejected too ({code}: {message})"
                        ),
                    });
                }
                403 if code == "REQUEST_LIMIT_EXCEEDED" => {
                    if message.contains("Concurrent") && attempt < config.max_retries {
                        let delay = self.backoff(attempt);
                        warn!(
                            path = target,
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            "concurrent request limit; retrying"
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    let (used, max) = self.current_usage().unwrap_or((0, 0));
                    warn!(used, max, "daily API request limit exceeded");
                    return Err(Error::ApiLimit { used, max });
                }
                s if (s >= 500 || s == 429) && attempt < config.max_retries => {
                    let delay = self.backoff(attempt);
                    warn!(path = target, status = s, code = %code, attempt, delay_ms = delay.as_millis() as u64, "server error; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                    continue;
                }
                s => {
                    return Err(Error::Api {
                        status: s,
                        code,
                        message,
                    });
                }
            }
        }
    }

    /// The wait before retry `attempt + 1` (`attempt` counts from 0 here): the shared
    /// full-jitter backoff, uniform in [0, min(retry_max_delay, retry_base · 2^attempt)].
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let config = &self.inner.config;
        sfsync_backoff::full_jitter(
            config.retry_base,
            attempt.saturating_add(1),
            config.retry_max_delay,
        )
    }

    fn current_usage(&self) -> Option<(u64, u64)> {
        self.lock_limit().as_ref().and_then(|l| l.api_usage)
    }

    fn check_budget(&self) -> Result<(), Error> {
        if let Some((used, max)) = self.current_usage()
            && max > 0
            && used as f64 / max as f64 >= self.inner.config.max_api_share
        {
            warn!(
                used,
                max,
                share = self.inner.config.max_api_share,
                "configured share of the daily API requests reached; stopping"
            );
            return Err(Error::ApiLimit { used, max });
        }
        Ok(())
    }

    fn record_limit(&self, headers: &HeaderMap) {
        if let Some(value) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
        {
            let info = LimitInfo::parse(value);
            *self.lock_limit() = Some(info);
        }
    }

    /// The current session, getting a token first if there is none.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, Error> {
        let mut state = self.inner.auth.lock().await;
        if state.unsaved {
            self.store_rotated(&mut state).await?;
        }
        if let Some(session) = &state.session {
            return Ok(session.clone());
        }
        self.fetch_token(&mut state).await
    }

    /// The configured refresh token's fingerprint, for the refresh_token flow.
    fn refresh_origin(&self) -> Option<String> {
        match &self.inner.config.credentials {
            crate::Credentials::RefreshToken { refresh_token, .. } => {
                Some(origin_of(refresh_token))
            }
            _ => None,
        }
    }

    /// Takes the newest stored token of the configured chain, if it is newer than the one in
    /// hand: another process (or an earlier cold start) may have rotated it. A store that
    /// cannot be read stops the request: presenting a rotated-out token revokes the chain.
    async fn adopt_stored_token(&self, state: &mut AuthState) -> Result<(), Error> {
        let (Some(store), Some(origin)) = (&self.inner.token_store, self.refresh_origin()) else {
            return Ok(());
        };
        let stored = store.load().await.map_err(|e| Error::Auth {
            message: self.redact(&format!("cannot read the stored refresh token: {e}")),
        })?;
        let Some(stored) = stored.filter(|s| s.origin == origin) else {
            return Ok(());
        };
        let in_hand = state
            .rotated_refresh_token
            .as_ref()
            .map_or(0, |t| t.generation);
        if stored.generation > in_hand {
            if let Ok(mut redactor) = self.inner.redactor.lock() {
                redactor.add(&stored.token);
            }
            debug!(
                generation = stored.generation,
                "using the stored rotated refresh token"
            );
            state.rotated_refresh_token = Some(stored);
        }
        Ok(())
    }

    /// Stores the rotated token in hand. On failure it stays marked unsaved and the error is
    /// returned: a run must not go on as if the token were safe.
    async fn store_rotated(&self, state: &mut AuthState) -> Result<(), Error> {
        let (Some(store), Some(token)) = (&self.inner.token_store, &state.rotated_refresh_token)
        else {
            state.unsaved = false;
            return Ok(());
        };
        match store.save(token).await {
            Ok(()) => {
                state.unsaved = false;
                Ok(())
            }
            Err(e) => {
                state.unsaved = true;
                let message = self.redact(&format!(
                    "Salesforce rotated the refresh token but it could not be stored ({e}); the next process would present the rotated-out token"
                ));
                tracing::error!(generation = token.generation, error = %message, "rotated refresh token not stored");
                Err(Error::Auth { message })
            }
        }
    }

    /// Replaces the session that answered 401. Concurrent callers that saw the same stale
    /// session wait on the lock and reuse the one new token (single flight).
    async fn refresh(&self, stale_generation: u64) -> Result<Arc<Session>, Error> {
        let mut state = self.inner.auth.lock().await;
        if let Some(session) = &state.session
            && session.generation != stale_generation
        {
            return Ok(session.clone());
        }
        state.session = None;
        self.fetch_token(&mut state).await
    }

    async fn fetch_token(&self, state: &mut AuthState) -> Result<Arc<Session>, Error> {
        let config = &self.inner.config;
        let url = format!(
            "{}/services/oauth2/token",
            config.login_url.trim_end_matches('/')
        );
        let flow = config.credentials.flow();
        self.adopt_stored_token(state).await?;
        let mut attempt: u32 = 0;
        loop {
            let rotated_in_hand = state
                .rotated_refresh_token
                .as_ref()
                .map(|t| t.token.clone());
            let form = auth::token_form(&config.credentials, rotated_in_hand.as_deref())?;
            // The refresh token this request presents (configured or rotated).
            let presented = form
                .iter()
                .find(|(k, _)| *k == "refresh_token")
                .map(|(_, v)| v.clone());
            self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
            debug!(flow, attempt, "token request");
            let outcome = async {
                let response = self
                    .inner
                    .http
                    .post(&url)
                    .header("Accept", "application/json")
                    .form(&form)
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, body.to_vec()))
            }
            .await;
            let (status, body) = match outcome {
                Ok(answer) => answer,
                Err(e) => {
                    let message = self.redact(&e.without_url().to_string());
                    if attempt < config.max_retries {
                        let delay = self.backoff(attempt);
                        warn!(flow, attempt, error = %message, "token request failed; retrying");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    // Transient, not a rejection of the credentials.
                    return Err(Error::Http {
                        message: format!("the token endpoint did not answer: {message}"),
                        retryable: true,
                    });
                }
            };
            if status.is_success() {
                // Never echo this body: it holds the token.
                let token: TokenResponse =
                    serde_json::from_slice(&body).map_err(|_| Error::Auth {
                        message: "the token response has no access_token and instance_url".into(),
                    })?;
                if let Ok(mut redactor) = self.inner.redactor.lock() {
                    redactor.add(&token.access_token);
                    if let Some(rt) = &token.refresh_token {
                        redactor.add(rt);
                    }
                }
                // With rotation on, the answer carries the chain's next refresh token and
                // the presented one is dead (salesforce-api.md, "Refresh-token rotation").
                let mut rotated = false;
                if let Some(origin) = self.refresh_origin()
                    && let Some(next) = token.refresh_token
                    && presented.as_deref() != Some(next.as_str())
                {
                    let generation = state
                        .rotated_refresh_token
                        .as_ref()
                        .map_or(1, |t| t.generation + 1);
                    state.rotated_refresh_token = Some(RotatedRefreshToken {
                        token: next,
                        generation,
                        origin,
                    });
                    rotated = true;
                    info!(flow, generation, "the server rotated the refresh token");
                }
                state.generation += 1;
                let session = Arc::new(Session {
                    access_token: token.access_token,
                    instance_url: token.instance_url.trim_end_matches('/').to_string(),
                    generation: state.generation,
                });
                info!(flow, instance_url = %session.instance_url, generation = session.generation, "authenticated");
                state.session = Some(session.clone());
                // Stored before the session is used: the old refresh token is already dead.
                if rotated {
                    self.store_rotated(state).await?;
                }
                return Ok(session);
            }
            if (status.is_server_error() || status.as_u16() == 429) && attempt < config.max_retries
            {
                let delay = self.backoff(attempt);
                warn!(
                    flow,
                    status = status.as_u16(),
                    attempt,
                    "token endpoint error; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
                continue;
            }
            if status.is_server_error() || status.as_u16() == 429 {
                let (code, message) = parse_api_error(status, &body);
                return Err(Error::Api {
                    status: status.as_u16(),
                    code: self.redact(&code),
                    message: self.redact(&message),
                });
            }
            let (code, description) = match serde_json::from_slice::<OAuthError>(&body) {
                Ok(e) if !e.error.is_empty() => (e.error, e.error_description),
                _ => parse_api_error(status, &body),
            };
            let message = self.redact(&format!(
                "{flow} flow: {code}: {description} (HTTP {})",
                status.as_u16()
            ));
            return Err(Error::Auth { message });
        }
    }
}

fn build_url(instance_url: &str, target: &str, query: Option<&str>) -> String {
    let mut url = if target.starts_with("http://") || target.starts_with("https://") {
        target.to_string()
    } else {
        format!("{}{}", instance_url.trim_end_matches('/'), target)
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_plus_and_spaces() {
        assert_eq!(
            encode_component("a > 2024-01-01T00:00:00+00:00 'x'"),
            "a%20%3E%202024-01-01T00%3A00%3A00%2B00%3A00%20%27x%27"
        );
    }

    #[test]
    fn builds_urls_from_paths_and_absolute_urls() {
        assert_eq!(
            build_url(
                "https://x.my.salesforce.com/",
                "/services/data/v62.0/query/01g-2000",
                None
            ),
            "https://x.my.salesforce.com/services/data/v62.0/query/01g-2000"
        );
        assert_eq!(
            build_url("https://x", "https://y/z?a=1", Some("b=2")),
            "https://y/z?a=1&b=2"
        );
    }

    #[test]
    fn parses_salesforce_error_shapes() {
        let (code, message) = parse_api_error(
            StatusCode::BAD_REQUEST,
            br#"[{"message":"No such column 'Emial'","errorCode":"INVALID_FIELD"}]"#,
        );
        assert_eq!(code, "INVALID_FIELD");
        assert!(message.contains("Emial"));
        let (code, _) = parse_api_error(StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        assert_eq!(code, "BAD_GATEWAY");
    }
}
