//! The machinery every HTTP destination shares: a [`Protocol`] says how calls look on the
//! wire and what a response means; the engine batches to the limits, gzips, sends, waits,
//! retries and turns everything into one outcome per call.
//!
//! Classification (shared, protocols refine it):
//! - 2xx: delivered (unless the protocol reads an error in the body).
//! - 408, 429, 5xx except 501 and 505, timeouts and connection errors: retryable. The wait
//!   before the next request is the larger of the API's `Retry-After` / `X-RateLimit-Reset`
//!   and exponential backoff with full jitter; no request leaves before it elapses (the
//!   wait gates the whole destination, not only the failed batch).
//! - 413 on a batch: the batch is split in two and each half sent (a lone call is dead).
//! - 401 and 403: the credentials were refused. No call is at fault, so none is dead: every
//!   call still to send comes back `Paused` and the host stops sending to the destination.
//! - 3xx and other 4xx: dead, with the status and the API's message.
//! - Partial answers (per-item verdicts): delivered items are never sent again; only the
//!   failed ones are dead-lettered or resent.
//!
//! Batches are sent one at a time, in input order, so that a profile's update and its later
//! delete in the same chunk reach the API in that order. After a retryable failure the
//! failed batch goes first again, so order survives retries too.
//!
//! Bisection: an API that refuses a whole request for one bad call (a protocol answers
//! `Verdict::Split`) costs one call, not the batch. The refused batch is halved and each half
//! sent; a half that passes is delivered, a half refused again is halved again, and a lone
//! call refused is dead with the API's message for it. When the first half passes, the
//! second is known to hold a culprit and is halved without being sent whole. Isolating `k`
//! culprits among `n` calls takes about `2·k·log2(n/k)` requests; each refused batch may
//! spend [`split_budget`] requests on it (enough for [`MAX_CULPRITS`] culprits, and never
//! more than a full bisection could take). Past it, the calls not yet cleared come back
//! `RetryLater` (never dead): the next attempt bisects what is left with a fresh budget.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;
use sfsync_mapping::Call;

use crate::wire::{self, BuildContext};
use crate::{BuildError, CallOutcome, DeliveryReport, Limits, Outcome, Plan, PlannedRequest};

/// Index of one of a protocol's endpoints (`routes()`).
pub(crate) type Route = usize;

/// One endpoint of an API.
pub(crate) struct RouteSpec {
    /// For messages: "Segment /v1/batch".
    pub name: &'static str,
    /// The API's own limits for this endpoint.
    pub limits: Limits,
    /// Bytes between two items in the body (`,` for JSON arrays, `%2C` for form values).
    pub separator: &'static [u8],
    /// The endpoint takes `Content-Encoding: gzip` bodies.
    pub gzip: bool,
    /// A second per-request limit on something the calls carry (Amplitude Group Identify:
    /// 1024 group properties in all): (the limit, what it counts). See `Encoded::units`.
    pub max_units: Option<(usize, &'static str)>,
    /// The API allows one request per this interval on the endpoint (Amplitude's User
    /// Privacy API: one per second); the engine waits before sending sooner.
    pub min_interval: Option<Duration>,
}

/// One call in wire form.
pub(crate) struct Encoded {
    pub route: Route,
    pub bytes: Vec<u8>,
    /// What the call adds towards its route's `max_units` (0 where there is none).
    pub units: usize,
}

/// A request ready to send (the body uncompressed).
pub(crate) struct Request {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What came back.
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a response means for the calls of its request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Delivered,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Dead {
        reason: String,
    },
    /// The request as a whole was refused for something one of its calls may cause: send
    /// each half on its own (a lone call is dead with the reason).
    Split {
        reason: String,
    },
    /// The endpoint is gone (webhook 410): every call still to send is dead.
    Disable {
        reason: String,
    },
    /// The credentials were refused (401/403): every call still to send is paused.
    Unauthorized {
        reason: String,
    },
    /// One verdict per call of the request, in request order.
    PerItem(Vec<ItemVerdict>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemVerdict {
    Delivered,
    Dead(String),
    /// Not accepted, through no fault of its own: send again (without backoff).
    Resend(String),
}

/// How one API looks on the wire. Everything here is synchronous and does no I/O.
pub(crate) trait Protocol: Send + Sync {
    fn routes(&self) -> &[RouteSpec];

    /// One call in wire form, or why it can never be sent.
    fn encode(&self, call: &Call) -> Result<Encoded, String>;

    /// The request carrying `items` (the encoded forms of `calls`) on `route`. Called for
    /// every attempt, so it may stamp the time (webhook signatures).
    fn request(&self, route: Route, items: &[&[u8]], calls: &[&Call]) -> Request;

    fn classify(&self, _route: Route, response: &Response, calls: &[&Call]) -> Verdict {
        standard_verdict(response, calls.len(), self.throttle_wait())
    }

    /// The wait after a 429 without `Retry-After`, when the API documents one.
    fn throttle_wait(&self) -> Option<Duration> {
        None
    }

    /// The first backoff delay (doubling up to the cap).
    fn backoff_base(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// A call the API must have accepted before `call` is sent, when the API ignores `call`
    /// unless something it names already exists (Customer.io Track v2: a person merge and
    /// the identify of its survivor). See `prerequisite` for how delivery orders them.
    fn prerequisite(&self, _call: &Call) -> Option<Call> {
        None
    }

    /// How long the API may take to apply an accepted request: the wait between the
    /// accepted prerequisites and the calls that need them.
    fn prerequisite_settle(&self) -> Duration {
        Duration::ZERO
    }
}

/// Concatenates `prefix`, the items separated by `separator`, and `suffix`.
pub(crate) fn join_body(
    prefix: &[u8],
    items: &[&[u8]],
    separator: &[u8],
    suffix: &[u8],
) -> Vec<u8> {
    let len = prefix.len()
        + suffix.len()
        + items.iter().map(|i| i.len()).sum::<usize>()
        + separator.len() * items.len().saturating_sub(1);
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(prefix);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(separator);
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(suffix);
    body
}

pub(crate) fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h
}

/// The shared classification of a status code (see the module docs).
pub(crate) fn standard_verdict(
    response: &Response,
    n: usize,
    throttle_wait: Option<Duration>,
) -> Verdict {
    let status = response.status;
    match status {
        200..=299 => Verdict::Delivered,
        300..=399 => {
            let location = response
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)");
            Verdict::Dead {
                reason: format!(
                    "HTTP {status}: redirected to {location}; set the destination's region or endpoint to that host"
                ),
            }
        }
        408 => Verdict::Retry {
            reason: describe(response),
            after: retry_after(&response.headers, SystemTime::now()),
        },
        429 => Verdict::Retry {
            reason: describe(response),
            after: retry_after(&response.headers, SystemTime::now()).or(throttle_wait),
        },
        413 if n > 1 => Verdict::Split {
            reason: describe(response),
        },
        401 | 403 => Verdict::Unauthorized {
            reason: describe(response),
        },
        500..=599 if status != 501 && status != 505 => Verdict::Retry {
            reason: describe(response),
            after: retry_after(&response.headers, SystemTime::now()),
        },
        _ => Verdict::Dead {
            reason: describe(response),
        },
    }
}

/// "HTTP 400: <the API's message>".
pub(crate) fn describe(response: &Response) -> String {
    let message = api_message(&response.body);
    let status = response.status;
    if message.is_empty() {
        let phrase = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        format!("HTTP {status} {phrase}").trim_end().to_string()
    } else {
        format!("HTTP {status}: {message}")
    }
}

/// The human part of an error body: a JSON `message`/`error`/`errors`, else the text.
pub(crate) fn api_message(body: &[u8]) -> String {
    const MAX: usize = 500;
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = message_of(&value) {
            return wire::truncate(&m, MAX);
        }
        return wire::truncate(&value.to_string(), MAX);
    }
    let text = String::from_utf8_lossy(body);
    wire::truncate(text.trim(), MAX)
}

fn message_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(map) => ["message", "error", "msg", "reason", "errors", "detail"]
            .iter()
            .filter_map(|k| map.get(*k))
            .find_map(message_of),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(message_of).collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        _ => None,
    }
}

/// The longest wait a response asks for: `Retry-After` (seconds or HTTP date) and
/// `X-RateLimit-Reset` (seconds to wait, or an epoch in seconds or milliseconds).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    const MAX: Duration = Duration::from_secs(24 * 3600);
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let from_retry_after = text("retry-after").and_then(|v| {
        if let Ok(secs) = v.parse::<f64>() {
            return seconds(secs);
        }
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let at = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(at.timestamp_millis()).ok()?);
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    });
    let from_reset = text("x-ratelimit-reset").and_then(|v| {
        let n = v.parse::<f64>().ok()?;
        if n > 1e9 {
            let millis = if n > 1e12 { n } else { n * 1000.0 };
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(millis as u64);
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        } else {
            seconds(n)
        }
    });
    from_retry_after.max(from_reset).map(|d| d.min(MAX))
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// A batch of calls (indices into the chunk) on one route, with its retry history.
struct Group {
    route: Route,
    items: Vec<usize>,
    attempt: u32,
    last_reason: Option<String>,
    /// Set once the batch is part of a bisection: the index of its request budget.
    bisection: Option<usize>,
    /// The first half of a split: when it passes, the half queued right after it must hold
    /// the culprit.
    first_half: bool,
    /// Known to hold a culprit (its sibling passed): halve it without sending it whole.
    suspect: bool,
}

impl Group {
    fn new(route: Route, items: Vec<usize>) -> Group {
        Group {
            route,
            items,
            attempt: 0,
            last_reason: None,
            bisection: None,
            first_half: false,
            suspect: false,
        }
    }
}

/// How many culprits in one refused batch the split budget is sized for.
pub(crate) const MAX_CULPRITS: usize = 8;

/// The requests a refused batch of `n` calls may spend on bisection: `2·k·⌈log2 n⌉` for
/// `k` = [`MAX_CULPRITS`], capped at `2n - 2` (every node of a full bisection tree below the
/// refused request, which no bisection can exceed).
pub(crate) fn split_budget(n: usize) -> usize {
    if n < 2 {
        return 0;
    }
    let depth = usize::BITS - (n - 1).leading_zeros(); // ⌈log2 n⌉
    (2 * MAX_CULPRITS * depth as usize).min(2 * n - 2)
}

/// The limits of one route after the config's overrides, with its fixed overhead.
struct EffectiveRoute {
    limits: Limits,
    envelope: usize,
    separator: usize,
    max_units: Option<(usize, &'static str)>,
    min_interval: Option<Duration>,
}

/// Fewer seconds than this left in the budget: do not start a request.
pub(crate) const MIN_ATTEMPT: Duration = Duration::from_millis(200);
/// Error bodies are read up to this size.
const MAX_RESPONSE_BODY: usize = 1 << 20;

pub(crate) struct HttpDelivery {
    protocol: Box<dyn Protocol>,
    http: reqwest::Client,
    routes: Vec<EffectiveRoute>,
    gzip: bool,
    timeout: Duration,
    backoff_base: Duration,
    backoff_cap: Duration,
    secrets: Vec<String>,
    /// No request before this instant (Retry-After, backoff): shared by every delivery.
    gate: Mutex<Option<Instant>>,
    /// When each route last had an answer, for routes with a `min_interval`.
    last_sent: Mutex<Vec<Option<Instant>>>,
    /// Set when the endpoint said it is gone for good.
    disabled: Mutex<Option<String>>,
}

impl HttpDelivery {
    pub(crate) fn new(
        protocol: Box<dyn Protocol>,
        http: reqwest::Client,
        ctx: &BuildContext<'_>,
    ) -> Result<HttpDelivery, BuildError> {
        let config = ctx.config;
        let mut routes = Vec::new();
        for (route, spec) in protocol.routes().iter().enumerate() {
            let envelope = protocol.request(route, &[], &[]).body.len();
            let max_calls = spec
                .limits
                .max_calls
                .min(config.max_batch_calls.unwrap_or(usize::MAX));
            let max_batch_bytes = spec
                .limits
                .max_batch_bytes
                .min(config.max_batch_bytes.unwrap_or(usize::MAX));
            if max_batch_bytes <= envelope {
                return Err(ctx.invalid(
                    "max_batch_bytes",
                    format!(
                        "{max_batch_bytes} leaves no room for calls: a {} request alone takes {envelope} bytes",
                        spec.name
                    ),
                ));
            }
            routes.push(EffectiveRoute {
                limits: Limits {
                    max_calls,
                    max_batch_bytes,
                    max_call_bytes: spec.limits.max_call_bytes.min(max_batch_bytes - envelope),
                },
                envelope,
                separator: spec.separator.len(),
                max_units: spec.max_units,
                min_interval: spec.min_interval,
            });
        }
        let backoff_base = protocol.backoff_base();
        Ok(HttpDelivery {
            gzip: ctx.gzip(true),
            timeout: ctx.timeout(),
            backoff_base,
            backoff_cap: Duration::from_secs(60),
            secrets: ctx.secrets(),
            protocol,
            http,
            last_sent: Mutex::new(vec![None; routes.len()]),
            routes,
            gate: Mutex::new(None),
            disabled: Mutex::new(None),
        })
    }

    pub(crate) fn limits(&self) -> Limits {
        self.routes.first().map(|r| r.limits).unwrap_or(Limits {
            max_calls: 0,
            max_batch_bytes: 0,
            max_call_bytes: 0,
        })
    }

    pub(crate) fn set_backoff(&mut self, base: Duration, cap: Duration) {
        self.backoff_base = base;
        self.backoff_cap = cap.max(base);
    }

    /// Encodes a call and checks it against its route's per-call limit.
    fn encode_checked(&self, call: &Call) -> Result<Encoded, String> {
        let encoded = self.protocol.encode(call)?;
        let route = self
            .routes
            .get(encoded.route)
            .ok_or_else(|| "internal error: unknown route".to_string())?;
        let max = route.limits.max_call_bytes;
        let name = || {
            self.protocol
                .routes()
                .get(encoded.route)
                .map(|s| s.name)
                .unwrap_or("this API")
        };
        if encoded.bytes.len() > max {
            return Err(format!(
                "too large: {} bytes as sent to {}, which takes at most {max} bytes per call",
                encoded.bytes.len(),
                name()
            ));
        }
        if let Some((max_units, what)) = route.max_units
            && encoded.units > max_units
        {
            return Err(format!(
                "too large: {} {what}, and {} takes at most {max_units} per request",
                encoded.units,
                name()
            ));
        }
        Ok(encoded)
    }

    /// Packs encoded calls into batches: per route, in input order, to the count and byte
    /// limits. Batches are ordered by their first call.
    fn batch(&self, encoded: &[Option<Encoded>]) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        // Per route: (index in `groups` of the open batch, its body size, its units so far).
        let mut open: Vec<Option<(usize, usize, usize)>> = vec![None; self.routes.len()];
        for (i, e) in encoded.iter().enumerate() {
            let Some(e) = e else { continue };
            let Some(route) = self.routes.get(e.route) else {
                continue;
            };
            let len = e.bytes.len();
            let max_units = route.max_units.map_or(usize::MAX, |(max, _)| max);
            let fits = match open[e.route] {
                Some((g, size, units)) => {
                    groups[g].items.len() < route.limits.max_calls
                        && size + route.separator + len <= route.limits.max_batch_bytes
                        && units.saturating_add(e.units) <= max_units
                }
                None => false,
            };
            match open[e.route] {
                Some((g, size, units)) if fits => {
                    groups[g].items.push(i);
                    open[e.route] = Some((g, size + route.separator + len, units + e.units));
                }
                _ => {
                    groups.push(Group::new(e.route, vec![i]));
                    open[e.route] = Some((groups.len() - 1, route.envelope + len, e.units));
                }
            }
        }
        groups
    }

    pub(crate) fn prerequisite(&self, call: &Call) -> Option<Call> {
        self.protocol.prerequisite(call)
    }

    pub(crate) fn prerequisite_settle(&self) -> Duration {
        self.protocol.prerequisite_settle()
    }

    /// How `calls` would go out in input order (see `prerequisite::plan` for the whole plan).
    pub(crate) fn plan_in_order(&self, calls: &[Call]) -> Plan {
        let mut rejected = Vec::new();
        let encoded: Vec<Option<Encoded>> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| match self.encode_checked(call) {
                Ok(e) => Some(e),
                Err(reason) => {
                    rejected.push((i, reason));
                    None
                }
            })
            .collect();
        let requests = self
            .batch(&encoded)
            .into_iter()
            .map(|group| {
                let request = self.build_request(&group, calls, &encoded);
                PlannedRequest {
                    url: request.url,
                    body_bytes: request.body.len(),
                    calls: group.items,
                }
            })
            .collect();
        Plan { requests, rejected }
    }

    fn build_request(&self, group: &Group, calls: &[Call], encoded: &[Option<Encoded>]) -> Request {
        let items: Vec<&[u8]> = group
            .items
            .iter()
            .filter_map(|&i| encoded.get(i).and_then(|e| e.as_ref()))
            .map(|e| e.bytes.as_slice())
            .collect();
        let call_refs: Vec<&Call> = group.items.iter().filter_map(|&i| calls.get(i)).collect();
        self.protocol.request(group.route, &items, &call_refs)
    }

    /// Sends `calls` in input order until `deadline` (see `prerequisite::deliver`, which
    /// orders the calls that need another one accepted first).
    pub(crate) async fn deliver_until(
        &self,
        calls: Vec<Call>,
        deadline: Instant,
    ) -> DeliveryReport {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; calls.len()];
        let mut requests = 0u64;

        let disabled = lock(&self.disabled).clone();
        if let Some(reason) = disabled {
            return finish(calls, outcomes, requests, |_| Outcome::Dead {
                reason: reason.clone(),
            });
        }

        let encoded: Vec<Option<Encoded>> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| match self.encode_checked(call) {
                Ok(e) => Some(e),
                Err(reason) => {
                    outcomes[i] = Some(Outcome::Dead { reason });
                    None
                }
            })
            .collect();

        let mut queue: VecDeque<Group> = self.batch(&encoded).into();
        // Requests left to each bisection (indexed by `Group::bisection`).
        let mut split_budgets: Vec<usize> = Vec::new();

        while let Some(mut group) = queue.pop_front() {
            if group.suspect && group.items.len() > 1 {
                // Its sibling passed, so the culprit is in here: halve it unsent.
                let reason = group.last_reason.clone().unwrap_or_default();
                if let Err(group) = split(group, &mut queue, &mut split_budgets) {
                    retry_unsplit(&mut outcomes, group, &reason);
                }
                continue;
            }
            // Honour the gate (Retry-After, backoff), unless it lies beyond the budget.
            // Copy the gate out first: a guard held across the sleep below would make this
            // future !Send.
            let gate_now = *lock(&self.gate);
            if let Some(gate) = gate_now {
                let now = Instant::now();
                if gate > now {
                    if gate >= deadline {
                        give_back(&mut outcomes, group, queue, gate - now);
                        break;
                    }
                    tokio::time::sleep_until(gate.into()).await;
                }
            }
            // An endpoint that allows one request per interval: wait for its turn.
            if let Some(turn) = self.next_turn(group.route) {
                let now = Instant::now();
                if turn > now {
                    if turn + MIN_ATTEMPT >= deadline {
                        give_back(&mut outcomes, group, queue, turn - now);
                        break;
                    }
                    tokio::time::sleep_until(turn.into()).await;
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < MIN_ATTEMPT {
                give_back(&mut outcomes, group, queue, Duration::ZERO);
                break;
            }

            let request = self.build_request(&group, &calls, &encoded);
            let gzip = self.gzip
                && self
                    .protocol
                    .routes()
                    .get(group.route)
                    .is_some_and(|r| r.gzip);
            requests += 1;
            let sent = self.send(request, gzip, remaining.min(self.timeout)).await;
            // Counted from the answer, so the server sees the interval too, whatever the
            // time the request spent in transit.
            self.mark_sent(group.route);
            let verdict = match sent {
                Ok(response) => {
                    let call_refs: Vec<&Call> = group.items.iter().map(|&i| &calls[i]).collect();
                    self.protocol.classify(group.route, &response, &call_refs)
                }
                Err(reason) => Verdict::Retry {
                    reason,
                    after: None,
                },
            };

            match verdict {
                Verdict::Delivered => {
                    for &i in &group.items {
                        outcomes[i] = Some(Outcome::Delivered);
                    }
                    if group.first_half
                        && let Some(sibling) = queue.front_mut()
                        && sibling.bisection == group.bisection
                    {
                        sibling.suspect = true;
                    }
                }
                Verdict::Dead { reason } => {
                    let reason = self.redact(&reason);
                    for &i in &group.items {
                        outcomes[i] = Some(Outcome::Dead {
                            reason: reason.clone(),
                        });
                    }
                }
                Verdict::Disable { reason } => {
                    let reason = self.redact(&reason);
                    *lock(&self.disabled) = Some(reason.clone());
                    for g in std::iter::once(group).chain(queue.drain(..)) {
                        for i in g.items {
                            outcomes[i] = Some(Outcome::Dead {
                                reason: reason.clone(),
                            });
                        }
                    }
                    break;
                }
                Verdict::Unauthorized { reason } => {
                    let reason = self.redact(&reason);
                    for g in std::iter::once(group).chain(queue.drain(..)) {
                        for i in g.items {
                            outcomes[i] = Some(Outcome::Paused {
                                reason: reason.clone(),
                            });
                        }
                    }
                    break;
                }
                Verdict::Split { reason } => {
                    let reason = self.redact(&reason);
                    if group.items.len() == 1 {
                        // Alone and still refused: this call is the culprit.
                        for &i in &group.items {
                            outcomes[i] = Some(Outcome::Dead {
                                reason: reason.clone(),
                            });
                        }
                    } else {
                        group.last_reason = Some(reason.clone());
                        if let Err(group) = split(group, &mut queue, &mut split_budgets) {
                            retry_unsplit(&mut outcomes, group, &reason);
                        }
                    }
                }
                Verdict::PerItem(verdicts) => {
                    if verdicts.len() != group.items.len() {
                        // A protocol bug: do not guess which call is which.
                        let reason =
                            "internal error: the response verdicts do not match the request"
                                .to_string();
                        for &i in &group.items {
                            outcomes[i] = Some(Outcome::Dead {
                                reason: reason.clone(),
                            });
                        }
                        continue;
                    }
                    let mut resend = Vec::new();
                    let mut resend_reason = None;
                    for (&i, v) in group.items.iter().zip(verdicts) {
                        match v {
                            ItemVerdict::Delivered => outcomes[i] = Some(Outcome::Delivered),
                            ItemVerdict::Dead(reason) => {
                                outcomes[i] = Some(Outcome::Dead {
                                    reason: self.redact(&reason),
                                })
                            }
                            ItemVerdict::Resend(reason) => {
                                resend.push(i);
                                resend_reason = Some(self.redact(&reason));
                            }
                        }
                    }
                    if !resend.is_empty() {
                        queue.push_front(Group {
                            attempt: group.attempt,
                            last_reason: resend_reason,
                            ..Group::new(group.route, resend)
                        });
                    }
                }
                Verdict::Retry { reason, after } => {
                    group.attempt += 1;
                    let backoff = self.jitter(group.attempt);
                    let wait = after.map_or(backoff, |a| a.max(backoff));
                    tracing::debug!(
                        attempt = group.attempt,
                        wait_ms = wait.as_millis() as u64,
                        "retryable failure"
                    );
                    group.last_reason = Some(self.redact(&reason));
                    let until = Instant::now() + wait;
                    {
                        let mut gate = lock(&self.gate);
                        *gate = Some(gate.map_or(until, |g| g.max(until)));
                    }
                    queue.push_front(group);
                }
            }
        }

        finish(calls, outcomes, requests, |_| Outcome::RetryLater {
            reason: "not sent (internal error)".into(),
            after: None,
        })
    }

    /// The earliest instant `route` may send again, for routes with a `min_interval`.
    fn next_turn(&self, route: Route) -> Option<Instant> {
        let interval = self.routes.get(route)?.min_interval?;
        let last = lock(&self.last_sent).get(route).copied().flatten()?;
        Some(last + interval)
    }

    fn mark_sent(&self, route: Route) {
        if self
            .routes
            .get(route)
            .is_some_and(|r| r.min_interval.is_some())
            && let Some(slot) = lock(&self.last_sent).get_mut(route)
        {
            *slot = Some(Instant::now());
        }
    }

    /// Sends one request; `Err` is a transport failure (retryable).
    async fn send(
        &self,
        request: Request,
        gzip: bool,
        timeout: Duration,
    ) -> Result<Response, String> {
        let Request {
            url,
            mut headers,
            mut body,
        } = request;
        if gzip {
            match wire::gzip(&body) {
                Ok(compressed) => {
                    body = compressed;
                    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                Err(e) => tracing::warn!("gzip failed, sending uncompressed: {e}"),
            }
        }
        let result = self
            .http
            .post(url)
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        let mut response = match result {
            Ok(r) => r,
            Err(e) => return Err(transport_reason(&e)),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break;
                    }
                }
                Ok(None) => break,
                // The status is known; classify on it with what was read.
                Err(e) => {
                    tracing::debug!("reading the response body failed: {}", e.without_url());
                    break;
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Full jitter: uniform in [0, min(cap, base · 2^(attempt-1))] (the shared backoff).
    fn jitter(&self, attempt: u32) -> Duration {
        sfsync_backoff::full_jitter(self.backoff_base, attempt, self.backoff_cap)
    }

    /// Removes any credential from a message (an API may echo what it was sent).
    fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // Without the URL: a user's endpoint may carry credentials.
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Halves a refused batch (both halves queued first, in order) within its bisection's
/// budget; gives the batch back when the budget is spent.
fn split(
    mut group: Group,
    queue: &mut VecDeque<Group>,
    budgets: &mut Vec<usize>,
) -> Result<(), Group> {
    let bisection = match group.bisection {
        Some(b) => b,
        None => {
            budgets.push(split_budget(group.items.len()));
            budgets.len() - 1
        }
    };
    match budgets.get_mut(bisection) {
        Some(left) if *left >= 2 && group.items.len() > 1 => *left -= 2,
        _ => return Err(group),
    }
    let second = group.items.split_off(group.items.len() / 2);
    queue.push_front(Group {
        attempt: group.attempt,
        last_reason: group.last_reason.clone(),
        bisection: Some(bisection),
        ..Group::new(group.route, second)
    });
    queue.push_front(Group {
        attempt: group.attempt,
        last_reason: group.last_reason,
        bisection: Some(bisection),
        first_half: true,
        ..Group::new(group.route, group.items)
    });
    Ok(())
}

/// A refused batch whose bisection budget is spent: its calls are not known to be bad, so
/// they come back retry-later (the next attempt bisects them with a fresh budget).
fn retry_unsplit(outcomes: &mut [Option<Outcome>], group: Group, reason: &str) {
    let reason = format!(
        "not isolated yet: its batch was refused ({reason}) and the split budget of this delivery is spent; retried with the next attempt"
    );
    for i in group.items {
        outcomes[i] = Some(Outcome::RetryLater {
            reason: reason.clone(),
            after: None,
        });
    }
}

/// The budget ran out: `group` and everything queued are handed back as retry-later.
fn give_back(
    outcomes: &mut [Option<Outcome>],
    group: Group,
    queue: VecDeque<Group>,
    after: Duration,
) {
    let after = (!after.is_zero()).then_some(after);
    for g in std::iter::once(group).chain(queue) {
        let reason = match g.last_reason {
            Some(r) => format!("retry budget exhausted; last failure: {r}"),
            None => "retry budget exhausted before this call was sent".to_string(),
        };
        for i in g.items {
            outcomes[i] = Some(Outcome::RetryLater {
                reason: reason.clone(),
                after,
            });
        }
    }
}

/// Pairs calls with outcomes; `missing` fills any gap (there should be none).
fn finish(
    calls: Vec<Call>,
    outcomes: Vec<Option<Outcome>>,
    requests: u64,
    missing: impl Fn(usize) -> Outcome,
) -> DeliveryReport {
    let outcomes = calls
        .into_iter()
        .zip(outcomes)
        .enumerate()
        .map(|(i, (call, outcome))| CallOutcome {
            message_id: call.message_id.clone(),
            outcome: outcome.unwrap_or_else(|| missing(i)),
            call,
        })
        .collect();
    DeliveryReport { outcomes, requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&'static str, &str)], body: &str) -> Response {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Response {
            status,
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classifies_statuses() {
        let v = |s| standard_verdict(&response(s, &[], ""), 2, None);
        assert_eq!(v(200), Verdict::Delivered);
        assert_eq!(v(204), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(v(s), Verdict::Retry { .. }), "{s}");
        }
        for s in [400, 404, 422, 501, 505, 301] {
            assert!(matches!(v(s), Verdict::Dead { .. }), "{s}");
        }
        for s in [401, 403] {
            assert!(matches!(v(s), Verdict::Unauthorized { .. }), "{s}");
        }
        assert!(matches!(v(413), Verdict::Split { .. }));
        assert!(matches!(
            standard_verdict(&response(413, &[], ""), 1, None),
            Verdict::Dead { .. }
        ));
    }

    #[test]
    fn the_split_budget_grows_with_the_batch_and_never_passes_a_full_bisection() {
        assert_eq!(split_budget(1), 0);
        assert_eq!(split_budget(2), 2);
        assert_eq!(split_budget(8), 14);
        // 2000 calls: 2 · 8 culprits · 11 levels.
        assert_eq!(split_budget(2000), 176);
        assert_eq!(split_budget(2048), 176);
        assert_eq!(split_budget(2049), 192);
    }

    #[test]
    fn dead_reasons_carry_the_api_message() {
        let r = response(400, &[], r#"{"code":400,"error":"Invalid API key"}"#);
        assert_eq!(describe(&r), "HTTP 400: Invalid API key");
        let r = response(422, &[], r#"{"errors":[{"message":"a"},{"message":"b"}]}"#);
        assert_eq!(describe(&r), "HTTP 422: a; b");
        let r = response(404, &[], "");
        assert_eq!(describe(&r), "HTTP 404 Not Found");
    }

    #[test]
    fn reads_every_form_of_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = |pairs: &[(&'static str, &str)]| response(429, pairs, "").headers;
        assert_eq!(
            retry_after(&h(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")]), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&h(&[("x-ratelimit-reset", "1700000005")]), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(&h(&[("x-ratelimit-reset", "1700000002000")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&h(&[("retry-after", "1"), ("x-ratelimit-reset", "4")]), now),
            Some(Duration::from_secs(4))
        );
        assert_eq!(retry_after(&h(&[("retry-after", "soon")]), now), None);
    }
}
