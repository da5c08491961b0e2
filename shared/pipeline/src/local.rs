//! The local edges: the next stage run inline as the queue, so that `send` returning means
//! the records were mapped and delivered (or dead-lettered to a file). That is the local
//! meaning of "durably enqueued": the checkpoint of `sfsync sync` never passes a record that
//! did not reach its destination or the dead-letter file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sfsync_destinations::Destination;
use sfsync_mapping::Config;
use tracing::Instrument;

use crate::carrier::{Carried, Carrier, CarryError, HostRules};
use crate::dead_letter::DeadLetterFile;
use crate::deliver::{DeliverPolicy, Deliverer};
use crate::map::{MapError, map_and_send};
use crate::message::{CallsMessage, RecordsMessage};
use crate::queue::{Queue, QueueError, SendError};
use crate::report::RunCounts;
use crate::state::StateStore;

/// Records per send locally: Salesforce's largest REST page (Bulk pages are 10,000 rows).
pub const LOCAL_MAX_RECORDS_PER_SEND: usize = 2000;

/// Progress of a local run, for bars or plain lines.
#[derive(Debug, Clone)]
pub enum Progress {
    Extracted {
        sync: String,
        records: u64,
    },
    Delivered {
        sync: String,
        destination: String,
        calls: u64,
    },
    Waiting {
        destination: String,
        seconds: u64,
        reason: String,
    },
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// The local side of the delivery queue: calls messages delivered until each call is
/// delivered or dead, every settlement carried out by the deliver Lambda's carrier
/// (crate::carrier) with the local host's rules: a message to retry is always put back
/// (this queue keeps nothing in flight, so the receive is counted in the message's attempt,
/// and `MAX_ATTEMPTS` ends it), and paused calls stop the run (the checkpoint stays before
/// them).
pub struct LocalDelivery {
    deliverer: Deliverer,
    dead_letters: DeadLetterFile,
    progress: ProgressFn,
    /// Set when a destination refused our credentials: the run stops there.
    paused: Mutex<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalDeliverError {
    /// A destination refused our credentials (401/403), or the dead letters could not be
    /// written.
    #[error(transparent)]
    Carry(#[from] CarryError),
    #[error("destination {destination} is not set up")]
    NotSetUp { destination: String },
}

impl LocalDelivery {
    pub fn new(deliverer: Deliverer, dead_letters: DeadLetterFile, progress: ProgressFn) -> Self {
        LocalDelivery {
            deliverer,
            dead_letters,
            progress,
            paused: Mutex::new(None),
        }
    }

    pub fn deliverer(&self) -> &Deliverer {
        &self.deliverer
    }

    /// "credentials rejected by <destination>: …" once a destination refused our key.
    pub fn paused(&self) -> Option<String> {
        self.paused.lock().ok().and_then(|p| p.clone())
    }

    /// Delivers the messages and every retry they lead to; returns the counts over all of
    /// them. `sync` names the progress events.
    pub async fn deliver_all(
        &self,
        messages: Vec<CallsMessage>,
        sync: &str,
    ) -> Result<RunCounts, LocalDeliverError> {
        let queue = DelayQueue::default();
        for message in messages {
            queue.hold(message, Duration::ZERO);
        }
        self.deliver_queued(&queue, sync).await
    }

    /// A delivery queue for one hand-off from the map stage: it holds calls messages for
    /// destinations this run has set up until [`LocalDelivery::deliver_held`] delivers them.
    fn hand_off(&self) -> HandOff<'_> {
        HandOff {
            delivery: self,
            queue: DelayQueue::default(),
        }
    }

    /// Delivers what the map stage handed off, and every retry it leads to.
    async fn deliver_held(
        &self,
        hand_off: HandOff<'_>,
        sync: &str,
    ) -> Result<RunCounts, LocalDeliverError> {
        self.deliver_queued(&hand_off.queue, sync).await
    }

    async fn deliver_queued(
        &self,
        queue: &DelayQueue,
        sync: &str,
    ) -> Result<RunCounts, LocalDeliverError> {
        let counts = Mutex::new(RunCounts::default());
        let carrier = Carrier {
            queue,
            dead_letters: &self.dead_letters,
            tally: &counts,
            rules: HostRules::LOCAL,
        };
        while let Some(due) = queue.release_next().await {
            for settlement in self.deliverer.deliver(due, None).await {
                match carrier.carry_out(settlement).await {
                    Ok(carried) => self.show(sync, carried),
                    Err(CarryError::Paused { reason }) => {
                        // A refused key is no call's fault: nothing is dead-lettered, and
                        // failing this send keeps the checkpoint before these records, so
                        // the next run (with a working key) delivers them.
                        if let Ok(mut stopped) = self.paused.lock() {
                            stopped.get_or_insert(reason.clone());
                        }
                        return Err(CarryError::Paused { reason }.into());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(counts.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    fn show(&self, sync: &str, carried: Carried) {
        if carried.delivered > 0 {
            (self.progress)(Progress::Delivered {
                sync: sync.to_string(),
                destination: carried.destination.clone(),
                calls: carried.delivered,
            });
        }
        if let Some(waiting) = carried.waiting {
            (self.progress)(Progress::Waiting {
                destination: carried.destination,
                seconds: waiting.after.as_secs(),
                reason: waiting.reason,
            });
        }
    }
}

/// The local delivery queue of one hand-off: calls messages released after their delay.
#[derive(Default)]
struct DelayQueue {
    waiting: Mutex<Vec<(Instant, CallsMessage)>>,
}

impl DelayQueue {
    fn hold(&self, message: CallsMessage, delay: Duration) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.push((Instant::now() + delay, message));
    }

    /// Waits until the earliest waiting message is due, then takes every message due by
    /// then; `None` when nothing waits.
    async fn release_next(&self) -> Option<Vec<CallsMessage>> {
        let first = {
            let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            waiting.iter().map(|(at, _)| *at).min()?
        };
        tokio::time::sleep_until(first.into()).await;
        let now = Instant::now();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiting)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        *waiting = later;
        Some(due.into_iter().map(|(_, m)| m).collect())
    }
}

impl Queue<CallsMessage> for DelayQueue {
    async fn send(
        &self,
        message: CallsMessage,
        delay: Option<Duration>,
    ) -> Result<usize, SendError<CallsMessage>> {
        self.hold(message, delay.unwrap_or_default());
        Ok(1)
    }
}

/// The map stage's delivery queue locally: calls messages wait in a [`DelayQueue`] and are
/// delivered once the map stage is done with the records message. A message for a
/// destination this run did not set up is refused at once.
struct HandOff<'a> {
    delivery: &'a LocalDelivery,
    queue: DelayQueue,
}

impl Queue<CallsMessage> for HandOff<'_> {
    async fn send(
        &self,
        message: CallsMessage,
        delay: Option<Duration>,
    ) -> Result<usize, SendError<CallsMessage>> {
        if self
            .delivery
            .deliverer
            .destination(&message.destination)
            .is_none()
        {
            let error = LocalDeliverError::NotSetUp {
                destination: message.destination,
            };
            return Err(QueueError::downstream(error).into());
        }
        self.queue.send(message, delay).await
    }
}

pub struct InlineQueue<S: StateStore> {
    config: Arc<Config>,
    delivery: LocalDelivery,
    store: S,
    /// Totals per sync, for the CLI's summary.
    totals: Mutex<HashMap<String, RunCounts>>,
}

impl<S: StateStore> InlineQueue<S> {
    pub fn new(
        config: Arc<Config>,
        destinations: Vec<Arc<Destination>>,
        store: S,
        dead_letter_path: PathBuf,
        progress: ProgressFn,
    ) -> InlineQueue<S> {
        let deliverer = Deliverer::new(destinations, DeliverPolicy::local(Duration::from_secs(60)));
        InlineQueue {
            config,
            delivery: LocalDelivery::new(
                deliverer,
                DeadLetterFile::new(dead_letter_path),
                progress,
            ),
            store,
            totals: Mutex::new(HashMap::new()),
        }
    }

    /// "credentials rejected by <destination>: …" once a destination refused our key.
    pub fn paused(&self) -> Option<String> {
        self.delivery.paused()
    }

    /// How long one delivery keeps retrying inside the destination client.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.delivery.deliverer.policy.max_budget = budget;
        self
    }

    /// The deliver stage's policy (tests shorten its waits).
    pub fn with_policy(mut self, policy: DeliverPolicy) -> Self {
        self.delivery.deliverer.policy = policy;
        self
    }

    pub fn totals(&self, sync: &str) -> RunCounts {
        self.totals
            .lock()
            .map(|t| t.get(sync).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    async fn process_records(&self, records: RecordsMessage) -> Result<(), QueueError> {
        let span = tracing::info_span!("map", run_id = %records.run_id, sync = %records.sync);
        self.map_and_deliver(records).instrument(span).await
    }

    /// Maps a records message and delivers its calls: the map stage's own code, with a
    /// delivery queue that hands the calls over in memory (locally nothing goes on a wire
    /// between the stages). The run's counts are the map's and the delivery's together.
    async fn map_and_deliver(&self, records: RecordsMessage) -> Result<(), QueueError> {
        let sync = records.sync.clone();
        (self.delivery.progress)(Progress::Extracted {
            sync: sync.clone(),
            records: records.records.len() as u64,
        });
        let hand_off = self.delivery.hand_off();
        let mapped = match map_and_send(&self.config, records, &hand_off).await {
            Ok(mapped) => mapped,
            // The hand-off's own refusal, as it is.
            Err(MapError::Queue(e)) => return Err(e),
            Err(e) => return Err(QueueError::downstream(e)),
        };
        for line in &mapped.skipped {
            tracing::info!(sync = %sync, "skipped {line}");
        }
        // Each destination's share is delivered in a `deliver{destination}` span.
        let delivered = self
            .delivery
            .deliver_held(hand_off, &sync)
            .await
            .map_err(QueueError::downstream)?;
        let mut counts = mapped.counts;
        counts.add(&delivered);
        self.store
            .add_counts(&mapped.run_id, &sync, &counts)
            .await
            .map_err(QueueError::downstream)?;
        if let Ok(mut totals) = self.totals.lock() {
            totals.entry(sync).or_default().add(&counts);
        }
        Ok(())
    }
}

/// The local records queue: each message is mapped and delivered before `send` returns —
/// the local meaning of "durably enqueued". Records are never delayed.
impl<S: StateStore> Queue<RecordsMessage> for InlineQueue<S> {
    async fn send(
        &self,
        message: RecordsMessage,
        _delay: Option<Duration>,
    ) -> Result<usize, SendError<RecordsMessage>> {
        self.process_records(message).await?;
        Ok(1)
    }
}

/// What to run locally.
pub struct LocalRun {
    pub state_dir: PathBuf,
    /// Only these syncs (empty: all).
    pub syncs: Vec<String>,
    /// Ignore checkpoints.
    pub full: bool,
    /// How long one delivery keeps retrying inside the destination client.
    pub budget: Duration,
    /// The first retry wait of the Salesforce client and of every destination (doubling up
    /// to 8 times it) when the other side does not say how long to wait; `None` keeps their
    /// defaults. Tests shorten it so that a storm of 5xx takes milliseconds; a Retry-After
    /// is honoured in full either way.
    pub retry_base: Option<Duration>,
    /// When the run starts (its window's end); `None`: now. Tests pass a simulated org's
    /// clock, so that the window and getDeleted's dates lie on the org's time line.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct LocalOutcome {
    pub run_id: String,
    pub reports: Vec<crate::report::RunReport>,
    /// Syncs skipped because another run held their lease.
    pub busy: Vec<String>,
    pub dead_letter_path: PathBuf,
}

impl LocalOutcome {
    /// True when every record was delivered or deliberately skipped.
    pub fn all_delivered(&self) -> bool {
        self.busy.is_empty()
            && self.reports.iter().all(|r| {
                r.status == crate::report::RunStatus::Complete
                    && r.counts.dead == 0
                    && r.counts.skipped == 0
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no sync named {name:?} (syncs: {known})")]
    UnknownSync { name: String, known: String },
    #[error("salesforce: {0}")]
    Salesforce(#[from] sfsync_salesforce::Error),
    #[error("destination {name}: {source}")]
    Destination {
        name: String,
        #[source]
        source: sfsync_destinations::BuildError,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("http client: {0}")]
    Http(#[source] reqwest::Error),
    /// A destination refused our credentials (401/403): the run stopped, nothing was
    /// dead-lettered for it.
    /// `reason` is the "credentials rejected by <destination>: …" the delivery noted.
    #[error(
        "{reason}. The sync stopped: nothing was dead-lettered, and the undelivered records stay before the checkpoint for the next run (fix the key, then run again)"
    )]
    CredentialsRejected { reason: String },
}

/// The Salesforce client settings of a local run. Bulk results pages (10,000 rows) are
/// parsed a REST page's worth at a time: each piece is mapped and delivered before the next
/// is parsed, so memory stays that of one REST page whichever API serves the sync
/// (docs/benchmarks.md, memory).
pub fn local_client_config(
    salesforce: &sfsync_mapping::config::SalesforceConfig,
) -> Result<sfsync_salesforce::ClientConfig, sfsync_salesforce::Error> {
    let mut client_config = sfsync_salesforce::ClientConfig::from_config(salesforce)?;
    client_config.bulk_rows_per_page = LOCAL_MAX_RECORDS_PER_SEND as u32;
    Ok(client_config)
}

/// One local run of the selected syncs through the same stages as the Lambdas.
pub async fn run_local(
    config: Config,
    options: LocalRun,
    progress: ProgressFn,
) -> Result<LocalOutcome, LocalError> {
    use crate::extract::{ExtractError, ExtractSettings, extract_sync};
    use crate::report::new_run_id;
    use crate::state::file::FileStore;

    let selected: Vec<sfsync_mapping::SyncConfig> = if options.syncs.is_empty() {
        // Conversions (merges into Contacts) after the Contacts' identifies.
        sfsync_mapping::config::run_order(&config.syncs)
            .into_iter()
            .cloned()
            .collect()
    } else {
        let mut out = Vec::new();
        for name in &options.syncs {
            let sync = config.sync(name).ok_or_else(|| LocalError::UnknownSync {
                name: name.clone(),
                known: config
                    .syncs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            out.push(sync.clone());
        }
        out
    };
    // A rotated refresh token is kept in the state directory (mode 0600) for the next run.
    let mut client_config = local_client_config(&config.salesforce)?;
    if let Some(base) = options.retry_base {
        client_config.retry_base = base;
        client_config.retry_max_delay = base * 8;
    }
    let client = sfsync_salesforce::Client::with_refresh_token_store(
        client_config,
        Arc::new(crate::token_store::FileTokenStore::new(&options.state_dir)),
    )?;
    // No redirects (a redirected POST would become a GET); each request's timeout is the
    // destination engine's.
    let http = sfsync_destinations::http_client().map_err(LocalError::Http)?;
    let names = sfsync_destinations::object_names(&config);
    let mut destinations = Vec::new();
    for d in &config.destinations {
        let mut built = Destination::with_object_names(d, http.clone(), &names).map_err(|e| {
            LocalError::Destination {
                name: d.name.clone(),
                source: e,
            }
        })?;
        if let Some(base) = options.retry_base {
            built.set_backoff(base, base * 8);
        }
        destinations.push(Arc::new(built));
    }
    let store = FileStore::new(&options.state_dir)?;
    let dead_letter_path = options.state_dir.join("dead-letters.jsonl");
    let lookback = Duration::from_secs(config.salesforce.lookback_seconds);
    let config = Arc::new(config);
    let queue = InlineQueue::new(
        config.clone(),
        destinations,
        store.clone(),
        dead_letter_path.clone(),
        progress,
    )
    .with_budget(options.budget);

    let started_at = options.started_at.unwrap_or_else(chrono::Utc::now);
    let run_id = new_run_id(started_at);
    let owner = format!(
        "{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
        std::process::id()
    );
    let mut settings = ExtractSettings::new(owner);
    settings.full = options.full;
    settings.lookback = lookback;
    // Each send is mapped and delivered before it returns: at most a REST page's worth at
    // once, whichever API serves the page, keeps memory flat (docs/benchmarks.md, memory).
    settings.max_records_per_send = LOCAL_MAX_RECORDS_PER_SEND;
    // Syncs with stream = true count what `sfsync stream` had not delivered.
    settings.stream_ledger = Some(store.stream_ledger());

    let mut outcome = LocalOutcome {
        run_id: run_id.clone(),
        reports: Vec::new(),
        busy: Vec::new(),
        dead_letter_path,
    };
    for sync in &selected {
        match extract_sync(
            &client, sync, &queue, &store, &run_id, started_at, &settings,
        )
        .await
        {
            Ok(_) => {}
            Err(ExtractError::LeaseHeld(e)) => {
                tracing::warn!(sync = %sync.name, error = %e, "skipped: another run holds the lease");
                outcome.busy.push(sync.name.clone());
                continue;
            }
            Err(ExtractError::State(e)) => return Err(e.into()),
        }
        if let Some(reason) = queue.paused() {
            return Err(LocalError::CredentialsRejected { reason });
        }
        // The stored report carries what every stage added.
        if let Some(report) = store
            .runs(usize::MAX)
            .await?
            .into_iter()
            .find(|r| r.run_id == run_id && r.sync == sync.name)
        {
            outcome.reports.push(report);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MESSAGE_VERSION;
    use crate::state::file::FileStore;

    const CONFIG: &str = r#"
[salesforce]
login_url = "https://x.my.salesforce.com"
auth = "client_credentials"
client_id = "id"
client_secret = "s"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email"]

[[destinations]]
name = "out"
type = "file"
path = "out.jsonl"
"#;

    fn records(sync: &str) -> RecordsMessage {
        RecordsMessage {
            v: MESSAGE_VERSION,
            run_id: "r".into(),
            sync: sync.into(),
            records: vec![
                serde_json::json!({
                    "Id": "003000000000000001",
                    "SystemModstamp": "2024-05-01T00:00:00.000+0000",
                    "Email": "a@x.io"
                })
                .into(),
            ],
        }
    }

    /// The local records queue runs the map stage's own code: its failures come back
    /// through `send` with the messages the CLI printed before, never a panic or a loss.
    #[tokio::test]
    async fn the_map_stages_failures_come_back_from_send_with_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config::parse(CONFIG).unwrap());
        // No destination set up, though the config routes the sync to "out".
        let queue = InlineQueue::new(
            config,
            Vec::new(),
            FileStore::new(dir.path()).unwrap(),
            dir.path().join("dead.jsonl"),
            Arc::new(|_: Progress| {}),
        );
        let err = queue.send(records("contacts"), None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the next stage failed: destination out is not set up"
        );
        let err = queue.send(records("nope"), None).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the next stage failed: message names sync \"nope\", which the config does not have"
        );
        let SendError::Queue(QueueError::Downstream(cause)) = &err else {
            panic!("not the next stage's failure: {err}");
        };
        assert!(matches!(
            cause.downcast_ref::<MapError>(),
            Some(MapError::UnknownSync { .. })
        ));
    }
}
