//! Delivery of calls to every destination sfsync supports: the wire formats, batching to each
//! API's limits, retries with backoff, and the classification of every response into one
//! outcome per call.
//!
//! A [`Destination`] is built once from a resolved [`DestinationConfig`] and reused. Its
//! [`Destination::deliver`] takes a chunk of calls and a time budget and always answers with
//! exactly one [`Outcome`] per call, in input order:
//!
//! - `Delivered`: the API accepted it.
//! - `Dead`: it can never be delivered as it is (the API rejected it, it is too large, it
//!   lacks what the API needs); the reason says why. Dead calls are never sent again by
//!   `deliver`; they go to a dead-letter store.
//! - `RetryLater`: the budget ran out while the API was throttling or failing; `after` is how
//!   long the API asked us (or the backoff told us) to wait.
//! - `Paused`: the API refused our credentials (401/403). That is no fault of the call, so
//!   it is never dead-lettered for it: the host keeps it queued and stops sending to the
//!   destination until the key works (see `AUTH_PAUSE_LIMIT` in the pipeline).
//!
//! Each API's module renders calls in the API's own form and reads its responses; the
//! shared engine (`engine`) does batching, gzip, sending, backoff and classification once
//! for all of them. Every module names, in its header, the vendor document its field names
//! come from.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sfsync_mapping::{Call, DestinationConfig, DestinationKind, DestinationSettings};

mod amplitude;
mod customerio;
mod customerio_track;
mod engine;
mod file;
mod mixpanel;
mod prerequisite;
mod rudderstack;
mod segment;
mod segment_spec;
mod webhook;
mod wire;

pub use mixpanel::DEFAULT_GROUP_KEY as MIXPANEL_DEFAULT_GROUP_KEY;
pub use wire::{dedupe_insert_id, event_ulid, webhook_id};

/// What an API accepts in one request (after any lower `max_batch_*` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in one request.
    pub max_calls: usize,
    /// Bytes of one request body, uncompressed.
    pub max_batch_bytes: usize,
    /// Bytes of one call as the API sees it; a larger call is dead without being sent.
    pub max_call_bytes: usize,
}

/// Why a destination cannot be built. Names the key; never holds a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("destination {destination:?}: `{key}` is required by type = \"{kind}\"")]
    Missing {
        destination: String,
        kind: DestinationKind,
        key: String,
    },
    #[error("destination {destination:?}: `{key}` {problem}")]
    Invalid {
        destination: String,
        key: String,
        problem: String,
    },
}

/// The result for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    RetryLater {
        reason: String,
        after: Option<Duration>,
    },
    Dead {
        reason: String,
    },
    /// The destination refused the credentials; nothing was wrong with the call.
    Paused {
        reason: String,
    },
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }
    pub fn is_dead(&self) -> bool {
        matches!(self, Outcome::Dead { .. })
    }
    pub fn is_retry_later(&self) -> bool {
        matches!(self, Outcome::RetryLater { .. })
    }
    pub fn is_paused(&self) -> bool {
        matches!(self, Outcome::Paused { .. })
    }
}

/// One input call and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub message_id: String,
    pub call: Call,
    pub outcome: Outcome,
}

/// Everything `deliver` did: one outcome per input call, in input order, and the number of
/// requests made (HTTP requests, or writes for the file destination).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryReport {
    pub outcomes: Vec<CallOutcome>,
    pub requests: u64,
}

impl DeliveryReport {
    pub fn delivered(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.outcome.is_delivered())
            .count()
    }

    pub fn dead(&self) -> impl Iterator<Item = &CallOutcome> {
        self.outcomes.iter().filter(|o| o.outcome.is_dead())
    }

    pub fn retry_later(&self) -> impl Iterator<Item = &CallOutcome> {
        self.outcomes.iter().filter(|o| o.outcome.is_retry_later())
    }

    pub fn paused(&self) -> impl Iterator<Item = &CallOutcome> {
        self.outcomes.iter().filter(|o| o.outcome.is_paused())
    }

    /// The longest wait any `RetryLater` outcome asks for.
    pub fn max_retry_after(&self) -> Option<Duration> {
        self.outcomes
            .iter()
            .filter_map(|o| match &o.outcome {
                Outcome::RetryLater { after, .. } => *after,
                _ => None,
            })
            .max()
    }

    /// Adds another report's outcomes and requests to this one.
    pub fn extend(&mut self, other: DeliveryReport) {
        self.outcomes.extend(other.outcomes);
        self.requests += other.requests;
    }
}

/// How a chunk of calls would be sent, without sending it (for benchmarks and dry runs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub requests: Vec<PlannedRequest>,
    /// Calls that would be dead without being sent: (index in the input, reason).
    pub rejected: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    /// The URL (the file path for the file destination).
    pub url: String,
    /// Indices of the input calls this request carries, in order.
    pub calls: Vec<usize>,
    /// Uncompressed body size.
    pub body_bytes: usize,
}

/// One configured destination, built once and reused for every chunk.
pub struct Destination {
    name: String,
    kind: DestinationKind,
    default_budget: Duration,
    inner: Inner,
}

enum Inner {
    Http(Box<engine::HttpDelivery>),
    File(file::FileSink),
}

impl fmt::Debug for Destination {
    // Deliberately shows no credential: protocols hold keys and signing secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("limits", &self.limits())
            .finish_non_exhaustive()
    }
}

/// How long `deliver` may keep retrying when the config does not say.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// Per-request timeout when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Destination {
    /// Builds a destination from a config whose references are already resolved.
    pub fn new(
        config: &DestinationConfig,
        http: reqwest::Client,
    ) -> Result<Destination, BuildError> {
        Self::with_object_names(config, http, &HashMap::new())
    }

    /// Like [`Destination::new`], with the Salesforce object name of each `object_type_id`
    /// (see [`object_names`]). Amplitude names its group types after them; without a name
    /// the group type is `object_type_<id>`.
    pub fn with_object_names(
        config: &DestinationConfig,
        http: reqwest::Client,
        object_names: &HashMap<String, String>,
    ) -> Result<Destination, BuildError> {
        let ctx = wire::BuildContext::new(config)?;
        let default_budget = config
            .retry_budget_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_RETRY_BUDGET);
        let protocol: Box<dyn engine::Protocol> = match &config.settings {
            DestinationSettings::File(settings) => {
                return Ok(Destination {
                    name: config.name.clone(),
                    kind: config.kind(),
                    default_budget,
                    inner: Inner::File(file::FileSink::new(&ctx, settings)?),
                });
            }
            DestinationSettings::Customerio(s) => Box::new(customerio::build(&ctx, s)?),
            DestinationSettings::CustomerioTrack(s) => Box::new(customerio_track::build(&ctx, s)?),
            DestinationSettings::Segment(s) => Box::new(segment::build(&ctx, s)?),
            DestinationSettings::Rudderstack(s) => Box::new(rudderstack::build(&ctx, s)?),
            DestinationSettings::Mixpanel(s) => Box::new(mixpanel::build(&ctx, s)?),
            DestinationSettings::Amplitude(s) => Box::new(amplitude::build(&ctx, s, object_names)?),
            DestinationSettings::Webhook(s) => Box::new(webhook::build(&ctx, s)?),
        };
        Ok(Destination {
            name: config.name.clone(),
            kind: config.kind(),
            default_budget,
            inner: Inner::Http(Box::new(engine::HttpDelivery::new(protocol, http, &ctx)?)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> DestinationKind {
        self.kind
    }

    /// The limits of the destination's main request (events for Mixpanel and Amplitude),
    /// after the config's `max_batch_*` overrides.
    pub fn limits(&self) -> Limits {
        match &self.inner {
            Inner::Http(h) => h.limits(),
            Inner::File(f) => f.limits(),
        }
    }

    /// The config's `retry_budget_seconds`, or [`DEFAULT_RETRY_BUDGET`].
    pub fn default_budget(&self) -> Duration {
        self.default_budget
    }

    /// Overrides the backoff (first delay and cap); mainly for tests. Waits the API asks for
    /// (Retry-After, X-RateLimit-Reset) are honoured regardless.
    pub fn set_backoff(&mut self, base: Duration, cap: Duration) {
        if let Inner::Http(h) = &mut self.inner {
            h.set_backoff(base, cap);
        }
    }

    /// Sends `calls`, retrying what is retryable while `budget` lasts. Returns one outcome per
    /// call, in input order; never sends a call again once it is delivered or dead.
    pub async fn deliver(&self, calls: Vec<Call>, budget: Duration) -> DeliveryReport {
        match &self.inner {
            Inner::Http(h) => prerequisite::deliver(h, calls, budget).await,
            Inner::File(f) => f.deliver(calls).await,
        }
    }

    /// How `calls` would be batched and encoded, without sending anything.
    pub fn plan(&self, calls: &[Call]) -> Plan {
        match &self.inner {
            Inner::Http(h) => prerequisite::plan(h, calls),
            Inner::File(f) => f.plan(calls),
        }
    }
}

/// `object_type_id` → Salesforce object name, from the config's object syncs (for
/// [`Destination::with_object_names`]).
pub fn object_names(config: &sfsync_mapping::Config) -> HashMap<String, String> {
    config
        .syncs
        .iter()
        .filter(|s| s.kind == sfsync_mapping::SyncKind::Objects)
        .filter_map(|s| Some((s.object_type_id.clone()?, s.object.clone())))
        .collect()
}

/// An HTTP client fit for delivery: rustls, no redirects (a redirected POST would silently
/// become a GET), bounded connect time.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("sfsync/", env!("CARGO_PKG_VERSION")))
        .build()
}
