//! The deliver stage: calls messages → their destinations, and what becomes of each
//! message, decided here once for every host ([`Deliverer::deliver`] returns a
//! [`Settlement`] per message), and carried out once for every host by crate::carrier: on
//! SQS for the deliver Lambda (crate::deliver_sqs), on the in-process queue for `sfsync
//! sync`, `stream` and `redrive` (crate::local).
//!
//! - delivered calls are done;
//! - dead calls (permanent errors, oversize, a destination no longer configured, too many
//!   attempts) go to the dead-letter sink with their reason (crate::dead_letter);
//! - the calls of all messages for one destination are delivered together, so batches fill
//!   across message boundaries; outcomes are then judged per message, as if each had been
//!   delivered alone;
//! - retryable calls come back as [`Retry`]: a message of `attempt + 1` to release after the
//!   wait the destination asked for (Retry-After) or the policy's backoff. When nothing of a
//!   message went through (`whole`), a queue that keeps received messages in flight (SQS)
//!   leaves the received message instead, visible again after that wait: SQS counts the
//!   receive, and its redrive policy ends a message received `maxReceiveCount` times. Else
//!   only the rest is sent again, so delivered calls are not repeated;
//! - paused calls: see below.
//!
//! Auth pauses: a destination that refuses our credentials (401/403) refuses every call,
//! through no fault of theirs. Those calls are [`Paused`], never dead: the host keeps them
//! (AWS: back on the queue with `paused_since`, delayed by [`PAUSE_RECHECK`], with a
//! `DestinationPaused` metric the template alarms on; locally: the run stops and the
//! checkpoint stays before them) until the key works again. They are put back rather than
//! left in flight with a longer visibility timeout because a left message counts a receive
//! each time: after `DeliveryMaxReceiveCount` receives SQS would move it to the dead-letter
//! queue without a reason, long before [`AUTH_PAUSE_LIMIT`], and its body could not record
//! when the pause began. Auth pauses do not count as attempts. Only when a message's pause has lasted
//! longer than [`AUTH_PAUSE_LIMIT`] are its calls dead-lettered, with the reason, so a key
//! nobody fixes does not keep them forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{Call, Config};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::extract::{Clock, SystemClock};
use crate::message::{CallsMessage, DeadLetter, MESSAGE_VERSION, MessageError, decode};
use crate::report::RunCounts;

/// After this many hand-backs a call is dead ("gave up"), so nothing loops forever.
pub const MAX_ATTEMPTS: u32 = 8;

/// How long a destination may refuse our credentials before the calls waiting for it are
/// dead-lettered: long enough to notice the alarm and rotate a key, short of SQS's
/// four-day retention.
pub const AUTH_PAUSE_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// How long paused calls wait on the queue before the destination is tried again: SQS's
/// longest message delay (15 minutes).
pub const PAUSE_RECHECK: Duration = Duration::from_secs(900);

/// How the deliver stage spends time: per-host numbers for the one policy.
#[derive(Debug, Clone)]
pub struct DeliverPolicy {
    /// Longest the calls for one destination may keep retrying inside one delivery.
    pub max_budget: Duration,
    /// Kept free before an invocation's deadline (for settling and acknowledging).
    pub margin: Duration,
    /// The wait before a retry when the destination named none (no Retry-After).
    pub retry_wait: Backoff,
    /// How long paused calls wait before the destination is tried again.
    pub pause_recheck: Duration,
    /// What a deadline is measured against ([`SystemClock`]; tests inject a clock).
    pub clock: Arc<dyn Clock>,
}

impl DeliverPolicy {
    /// The deliver Lambda: 120 s per destination at most, 10 s kept before the deadline, a
    /// message nothing of which went through is visible again after 30 s.
    pub fn lambda() -> DeliverPolicy {
        DeliverPolicy {
            max_budget: Duration::from_secs(120),
            margin: Duration::from_secs(10),
            retry_wait: Backoff::fixed(Duration::from_secs(30)),
            pause_recheck: PAUSE_RECHECK,
            clock: Arc::new(SystemClock),
        }
    }

    /// A local run: `budget` per delivery, no deadline, and retries after a short backoff
    /// (someone is watching the terminal).
    pub fn local(budget: Duration) -> DeliverPolicy {
        DeliverPolicy {
            max_budget: budget,
            margin: Duration::ZERO,
            retry_wait: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(20),
                floor: Duration::from_millis(200),
            },
            pause_recheck: PAUSE_RECHECK,
            clock: Arc::new(SystemClock),
        }
    }

    /// The time a delivery may take: what is left before the deadline less the margin, at
    /// most `max_budget`.
    pub fn budget(&self, deadline: Option<Instant>) -> Duration {
        deadline
            .map(|d| {
                d.saturating_duration_since(self.clock.now())
                    .saturating_sub(self.margin)
            })
            .unwrap_or(self.max_budget)
            .min(self.max_budget)
    }
}

/// What becomes of one calls message, for its host to carry out in this order: counts,
/// dead letters, paused calls, retry. The message may be acknowledged once all succeeded.
#[derive(Debug, Default)]
pub struct Settlement {
    /// The run the message belongs to, and the destination it named.
    pub run_id: String,
    pub destination: String,
    /// Counters per sync: delivered, dead, retried, destination requests.
    pub counts: BTreeMap<String, RunCounts>,
    /// Calls that can never go, each with its reason.
    pub dead: Vec<DeadLetter>,
    /// Calls held while the destination refuses our credentials.
    pub paused: Option<Paused>,
    /// Calls to try again later.
    pub retry: Option<Retry>,
}

impl Settlement {
    /// Calls delivered, over every sync.
    pub fn delivered(&self) -> u64 {
        self.counts.values().map(|c| c.delivered).sum()
    }
}

/// Retryable calls, as the message to release after `after`.
#[derive(Debug)]
pub struct Retry {
    /// The calls, with `attempt + 1`.
    pub message: CallsMessage,
    pub after: Duration,
    /// The destination's last answer, for logs.
    pub reason: String,
    /// Nothing of the received message went through (none delivered, dead or paused): a
    /// queue that keeps received messages may leave it instead of sending `message`.
    pub whole: bool,
}

/// Calls held back because the destination refused our credentials.
#[derive(Debug)]
pub struct Paused {
    /// The calls, with their attempt count kept and `paused_since` set.
    pub message: CallsMessage,
    /// Send `message` again after this long.
    pub recheck: Duration,
    /// "credentials rejected by <destination>: HTTP 401: …".
    pub reason: String,
}

/// The deliver stage: every configured destination, built once, and the policy.
pub struct Deliverer {
    destinations: HashMap<String, Arc<Destination>>,
    pub policy: DeliverPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverSetupError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("destination {name}: {source}")]
    Destination {
        name: String,
        source: sfsync_destinations::BuildError,
    },
}

impl Deliverer {
    pub fn new(
        destinations: impl IntoIterator<Item = Arc<Destination>>,
        policy: DeliverPolicy,
    ) -> Deliverer {
        Deliverer {
            destinations: destinations
                .into_iter()
                .map(|d| (d.name().to_string(), d))
                .collect(),
            policy,
        }
    }

    /// Builds every destination of the config (one HTTP client, no redirects: a redirected
    /// POST would become a GET; each request's timeout is the destination engine's).
    pub fn from_config(
        config: &Config,
        policy: DeliverPolicy,
    ) -> Result<Deliverer, DeliverSetupError> {
        let http = sfsync_destinations::http_client().map_err(DeliverSetupError::Http)?;
        let names = sfsync_destinations::object_names(config);
        let mut destinations = Vec::with_capacity(config.destinations.len());
        for d in &config.destinations {
            let built =
                Destination::with_object_names(d, http.clone(), &names).map_err(|source| {
                    DeliverSetupError::Destination {
                        name: d.name.clone(),
                        source,
                    }
                })?;
            destinations.push(Arc::new(built));
        }
        Ok(Deliverer::new(destinations, policy))
    }

    pub fn destination(&self, name: &str) -> Option<&Arc<Destination>> {
        self.destinations.get(name)
    }

    /// Delivers the messages (the calls for one destination together, each destination
    /// within the budget left before `deadline`) and settles each: one [`Settlement`] per
    /// message, in order.
    pub async fn deliver(
        &self,
        messages: Vec<CallsMessage>,
        deadline: Option<Instant>,
    ) -> Vec<Settlement> {
        let mut settlements: Vec<Option<Settlement>> = Vec::with_capacity(messages.len());
        let mut groups: Vec<(String, Vec<(usize, CallsMessage)>)> = Vec::new();
        for (index, message) in messages.into_iter().enumerate() {
            settlements.push(None);
            if !self.destinations.contains_key(&message.destination) {
                // The destination was removed from the config: these calls can never go.
                settlements[index] = Some(unknown_destination(message));
                continue;
            }
            match groups.iter_mut().find(|(d, _)| *d == message.destination) {
                Some((_, group)) => group.push((index, message)),
                None => groups.push((message.destination.clone(), vec![(index, message)])),
            }
        }
        for (name, group) in groups {
            let Some(destination) = self.destinations.get(&name) else {
                continue;
            };
            let budget = self.policy.budget(deadline);
            let heads: Vec<(usize, Head)> = group.iter().map(|(i, m)| (*i, Head::of(m))).collect();
            let messages = group.into_iter().map(|(_, m)| m).collect::<Vec<_>>();
            let span =
                tracing::info_span!("deliver", destination = %name, messages = messages.len());
            let outputs = deliver_messages_at(destination, messages, budget, Utc::now())
                .instrument(span)
                .await;
            for ((index, head), out) in heads.into_iter().zip(outputs) {
                settlements[index] = Some(settle(&self.policy, &name, head, out));
            }
        }
        settlements
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    }
}

/// What settling a message needs to know of it once its calls went out with the others'.
struct Head {
    run_id: String,
    attempt: u32,
    /// The sync the message's share of the destination requests is counted under.
    first_sync: Option<String>,
}

impl Head {
    fn of(message: &CallsMessage) -> Head {
        Head {
            run_id: message.run_id.clone(),
            attempt: message.attempt,
            first_sync: message.calls.first().map(|c| c.source().sync.clone()),
        }
    }
}

fn unknown_destination(message: CallsMessage) -> Settlement {
    let reason = format!("destination {:?} is not in the config", message.destination);
    let mut settlement = Settlement {
        run_id: message.run_id.clone(),
        destination: message.destination.clone(),
        ..Default::default()
    };
    for call in message.calls {
        settlement
            .counts
            .entry(call.source().sync.clone())
            .or_default()
            .dead += 1;
        settlement.dead.push(DeadLetter {
            v: MESSAGE_VERSION,
            run_id: message.run_id.clone(),
            destination: message.destination.clone(),
            reason: reason.clone(),
            call,
        });
    }
    settlement
}

/// One message's outcomes as a settlement: counts per sync (the requests, shared by the
/// calls of a batch, go to the sync of the message's first call), dead letters, paused
/// calls with their attempt kept, and the rest retried with `attempt + 1`.
fn settle(policy: &DeliverPolicy, destination: &str, head: Head, out: DeliverOutput) -> Settlement {
    let mut counts: BTreeMap<String, RunCounts> = BTreeMap::new();
    for (sync, delivered) in &out.delivered_by_sync {
        counts.entry(sync.clone()).or_default().delivered += delivered;
    }
    for dead in &out.dead {
        counts
            .entry(dead.call.source().sync.clone())
            .or_default()
            .dead += 1;
    }
    for call in &out.retry {
        counts
            .entry(call.source().sync.clone())
            .or_default()
            .retried += 1;
    }
    if let Some(first) = head.first_sync
        && out.requests > 0
    {
        counts.entry(first).or_default().destination_requests += out.requests;
    }
    let paused = match (out.paused_since, out.paused.is_empty()) {
        (Some(since), false) => Some(Paused {
            message: CallsMessage {
                v: MESSAGE_VERSION,
                run_id: head.run_id.clone(),
                destination: destination.to_string(),
                attempt: head.attempt,
                paused_since: Some(since),
                calls: out.paused,
            },
            recheck: policy.pause_recheck,
            reason: out.pause_reason.unwrap_or_default(),
        }),
        _ => None,
    };
    let whole = out.delivered == 0 && out.dead.is_empty() && paused.is_none();
    let retry = (!out.retry.is_empty()).then(|| Retry {
        after: out
            .retry_after
            .unwrap_or_else(|| policy.retry_wait.wait(head.attempt + 1)),
        reason: out
            .retry_reason
            .unwrap_or_else(|| "destination unavailable".into()),
        whole,
        message: CallsMessage {
            v: MESSAGE_VERSION,
            run_id: head.run_id.clone(),
            destination: destination.to_string(),
            attempt: head.attempt + 1,
            paused_since: None,
            calls: out.retry,
        },
    });
    Settlement {
        run_id: head.run_id,
        destination: destination.to_string(),
        counts,
        dead: out.dead,
        paused,
        retry,
    }
}

/// What the deliver stage reads: a calls message, or a dead letter redriven from the
/// dead-letter queue after the cause was fixed (it is delivered again like a message of one).
pub fn decode_delivery(body: &str) -> Result<CallsMessage, MessageError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        reason: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_str(body)?;
    if probe.reason.is_some() {
        let dead: DeadLetter = decode(body)?;
        return Ok(CallsMessage {
            v: MESSAGE_VERSION,
            run_id: dead.run_id,
            destination: dead.destination,
            attempt: 0,
            paused_since: None,
            calls: vec![dead.call],
        });
    }
    decode(body)
}

#[derive(Debug, Default)]
struct DeliverOutput {
    pub delivered: u64,
    /// Delivered calls per sync, for the run reports (a message may mix syncs).
    pub delivered_by_sync: BTreeMap<String, u64>,
    /// Destination requests made. When several messages were delivered together, the
    /// shared requests are counted on the first message's output only, so sums stay right.
    pub requests: u64,
    pub dead: Vec<DeadLetter>,
    /// Calls to try again later, and how long to wait first.
    pub retry: Vec<Call>,
    pub retry_after: Option<Duration>,
    pub retry_reason: Option<String>,
    /// Calls held back because the destination refused our credentials: keep them queued
    /// (they are not retries: they keep their attempt count).
    pub paused: Vec<Call>,
    /// The destination's answer, "credentials rejected by <destination>: HTTP 401: …".
    pub pause_reason: Option<String>,
    /// Since when (unix ms) this message's calls have been paused: the message's own
    /// `paused_since`, or now for a first pause.
    pub paused_since: Option<i64>,
}

/// Delivers the calls of several messages for one destination as one stream, so batches
/// fill across message boundaries (ten half-full messages cost the requests of five full
/// ones, not ten), then splits the outcomes back: one output per message, in order, each
/// judged by its own calls and its own attempt count. `now` judges how long auth pauses
/// lasted.
async fn deliver_messages_at(
    destination: &Destination,
    messages: Vec<CallsMessage>,
    budget: Duration,
    now: DateTime<Utc>,
) -> Vec<DeliverOutput> {
    let mut spans = Vec::with_capacity(messages.len());
    let mut all_calls = Vec::with_capacity(messages.iter().map(|m| m.calls.len()).sum());
    for message in messages {
        spans.push((
            message.run_id,
            message.attempt,
            message.paused_since,
            message.calls.len(),
        ));
        all_calls.extend(message.calls);
    }
    let report = destination.deliver(all_calls, budget).await;
    let mut outcomes = report.outcomes.into_iter();
    let mut outputs = Vec::with_capacity(spans.len());
    let now_ms = now.timestamp_millis();
    let limit_ms = i64::try_from(AUTH_PAUSE_LIMIT.as_millis()).unwrap_or(i64::MAX);
    for (index, (run_id, attempt, paused_since, len)) in spans.into_iter().enumerate() {
        let mut out = DeliverOutput {
            requests: if index == 0 { report.requests } else { 0 },
            ..Default::default()
        };
        for outcome in outcomes.by_ref().take(len) {
            match outcome.outcome {
                Outcome::Delivered => {
                    out.delivered += 1;
                    *out.delivered_by_sync
                        .entry(outcome.call.source().sync.clone())
                        .or_default() += 1;
                }
                Outcome::Dead { reason } => out.dead.push(DeadLetter {
                    v: MESSAGE_VERSION,
                    run_id: run_id.clone(),
                    destination: destination.name().to_string(),
                    reason,
                    call: outcome.call,
                }),
                Outcome::RetryLater { reason, .. } if attempt + 1 >= MAX_ATTEMPTS => {
                    out.dead.push(DeadLetter {
                        v: MESSAGE_VERSION,
                        run_id: run_id.clone(),
                        destination: destination.name().to_string(),
                        reason: format!("gave up after {MAX_ATTEMPTS} attempts: {reason}"),
                        call: outcome.call,
                    })
                }
                Outcome::RetryLater { reason, after } => {
                    out.retry_reason.get_or_insert(reason);
                    if let Some(after) = after {
                        out.retry_after = Some(out.retry_after.map_or(after, |a| a.max(after)));
                    }
                    out.retry.push(outcome.call);
                }
                Outcome::Paused { reason } => {
                    let since = paused_since.unwrap_or(now_ms);
                    let reason =
                        format!("credentials rejected by {}: {reason}", destination.name());
                    if now_ms.saturating_sub(since) > limit_ms {
                        out.dead.push(DeadLetter {
                            v: MESSAGE_VERSION,
                            run_id: run_id.clone(),
                            destination: destination.name().to_string(),
                            reason: format!(
                                "{reason} (for longer than {} h, since {})",
                                AUTH_PAUSE_LIMIT.as_secs() / 3600,
                                DateTime::from_timestamp_millis(since)
                                    .map(|t| t.to_rfc3339())
                                    .unwrap_or_else(|| since.to_string())
                            ),
                            call: outcome.call,
                        });
                    } else {
                        out.pause_reason.get_or_insert(reason);
                        out.paused_since = Some(since);
                        out.paused.push(outcome.call);
                    }
                }
            }
        }
        outputs.push(out);
    }
    outputs
}
