//! The local pipeline as the end-to-end tests drive it: a simulated org, a recording
//! destination, a resolved config and a state directory, and the checks every fault test
//! makes — nothing lost, duplicates bounded, the checkpoint never ahead of what arrived.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde_json::Value;
use sfsync_mapping::Config;
use sfsync_pipeline::extract::{ExtractSettings, extract_sync};
use sfsync_pipeline::local::{LocalError, LocalOutcome, LocalRun, ProgressFn, run_local};
use sfsync_pipeline::message::{DeadLetter, RecordsMessage};
use sfsync_pipeline::queue::{Queue, SendError};
use sfsync_pipeline::report::{RunReport, new_run_id};
use sfsync_pipeline::state::file::FileStore;
use sfsync_pipeline::state::{Checkpoint, StateStore};
use sfsync_salesforce::Cursor;
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator, SimulatorHandle};

use crate::Receiver;
use crate::expected::ExpectedShape;
use crate::fixtures::Fixture;

pub use crate::fixtures::{CIO_API_KEY, CIO_SITE_ID, SEGMENT_WRITE_KEY};

/// The local tests' config: the shared fixture's Contacts and Accounts to the Segment
/// receiver, the Contacts selecting `Description` too (the bad-input and size tests put
/// oversized text there) and without deletes.
pub fn fixture() -> Fixture {
    Fixture::syncs(&["contacts", "accounts"])
        .fields(
            "contacts",
            &[
                "Email",
                "FirstName",
                "LastName",
                "Description",
                "Account.Name",
            ],
        )
        .without("contacts", "deletes")
}

/// [`fixture`] as text.
pub static CONFIG: LazyLock<String> = LazyLock::new(|| fixture().text());

/// An org of `contacts` contacts and 30 accounts (few of everything else), stamped in the
/// last minutes so that incremental runs with look-back behave as they would in production.
pub fn org(contacts: usize) -> Org {
    Org::generate(&OrgSpec {
        contacts,
        accounts: 30,
        tie_block: 150,
        anchor: chrono::Utc::now() - chrono::Duration::seconds(120),
        ..OrgSpec::tiny()
    })
}

/// A simulated org, a recording destination and a state directory.
pub struct Local {
    pub dir: tempfile::TempDir,
    /// Shared, so that a progress callback can change the faults mid-run.
    pub sim: Arc<SimulatorHandle>,
    pub receiver: Receiver,
    /// Resolved: no `${…}` left.
    pub config: Config,
}

impl Local {
    /// `text` may use the fixture's references ([`crate::fixtures::secrets`]: both
    /// destinations at the receiver).
    pub async fn start(text: &str, org: Org, faults: Faults) -> Local {
        let sim = Simulator::start(org, Credentials::demo(), faults)
            .await
            .unwrap_or_else(|e| panic!("simulator: {e}"));
        let receiver = Receiver::start().await;
        let config = crate::fixtures::resolve(text, &sim.url(), &receiver.url);
        Local {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
            sim: Arc::new(sim),
            receiver,
            config,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// One `extract_sync` of the named sync into any queue and state store, with a client
    /// built from the config: for tests of the extract stage's edges.
    pub async fn extract_once<Q: Queue<RecordsMessage>, S: StateStore>(
        &self,
        sync: &str,
        queue: &Q,
        store: &S,
        settings: &ExtractSettings,
    ) -> RunReport {
        let client = sfsync_salesforce::ClientConfig::from_config(&self.config.salesforce)
            .and_then(sfsync_salesforce::Client::new)
            .unwrap_or_else(|e| panic!("{e}"));
        let sync = self
            .config
            .sync(sync)
            .cloned()
            .unwrap_or_else(|| panic!("no sync {sync}"));
        let started = chrono::Utc::now();
        extract_sync(
            &client,
            &sync,
            queue,
            store,
            &new_run_id(started),
            started,
            settings,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn store(&self) -> FileStore {
        FileStore::new(self.state_dir()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One `sfsync sync`: `run_local` with every sync.
    pub async fn run(&self) -> Result<LocalOutcome, LocalError> {
        run_local(
            self.config.clone(),
            self.options(None, None),
            Arc::new(|_| {}),
        )
        .await
    }

    /// What `sfsync sync` runs, over this world's state directory.
    fn options(
        &self,
        retry_base: Option<Duration>,
        started_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> LocalRun {
        LocalRun {
            state_dir: self.state_dir(),
            syncs: Vec::new(),
            full: false,
            budget: Duration::from_secs(20),
            retry_base,
            started_at,
        }
    }

    /// One `sfsync sync` (the real `run_local`) whose Salesforce client and destinations
    /// start retrying after `backoff` instead of their defaults: a test of 5xx storms then
    /// takes milliseconds, while every `Retry-After` a destination sends is still honoured
    /// in full. `progress` sees what `sfsync sync`'s does. Returns the run's stored reports.
    pub async fn run_with_backoff(
        &self,
        backoff: Duration,
        progress: ProgressFn,
    ) -> Vec<RunReport> {
        self.run_local_with(self.options(Some(backoff), None), progress)
            .await
    }

    /// One run of every sync (as [`Local::run_with_backoff`]) that starts at `started_at`:
    /// a test passes the simulated org's clock, so that the run's window and getDeleted's
    /// dates are on the org's time line, as they are against a real org.
    pub async fn run_at(&self, started_at: chrono::DateTime<chrono::Utc>) -> Vec<RunReport> {
        let options = self.options(Some(Duration::from_millis(1)), Some(started_at));
        self.run_local_with(options, Arc::new(|_| {})).await
    }

    async fn run_local_with(&self, options: LocalRun, progress: ProgressFn) -> Vec<RunReport> {
        run_local(self.config.clone(), options, progress)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .reports
    }

    pub fn dead_letter_path(&self) -> PathBuf {
        self.state_dir().join("dead-letters.jsonl")
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        std::fs::read_to_string(self.dead_letter_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Every call the Segment destination accepted (answered 2xx), in arrival order.
    pub fn delivered(&self) -> Vec<Value> {
        self.receiver
            .received()
            .iter()
            .filter(|r| (200..300).contains(&r.status) && r.path.ends_with("/v1/batch"))
            .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The message ids of the delivered calls, in arrival order (repeats included).
    pub fn delivered_ids(&self) -> Vec<String> {
        message_ids(&self.delivered())
    }

    /// The message ids of the calls that carry what the org's current live records of a
    /// sync must produce ([`crate::expected::EXPECTED_CALLS`], written from the mapping spec, never from
    /// `map_record`): the delivered or dead-lettered call of each record's current version.
    /// A record with no such call counts as `missing <sync> <Id>`, which no delivery has.
    pub fn expected(&self, sync: &str) -> HashSet<String> {
        let calls = self.handled_calls();
        let org = self.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        ExpectedShape::of(sync)
            .in_org(&org, self.selected_fields(sync))
            .expected_ids(&org, &calls)
    }

    /// The fields the config's sync selects: only those are expected among its traits.
    fn selected_fields(&self, sync: &str) -> Vec<String> {
        self.config
            .sync(sync)
            .map(|s| s.fields.clone())
            .unwrap_or_else(|| panic!("no sync {sync}"))
    }

    /// Every call that arrived (2xx) or was dead-lettered, as JSON.
    fn handled_calls(&self) -> Vec<Value> {
        let dead = self.dead_letters().into_iter().map(|d| {
            serde_json::to_value(&d.call).unwrap_or_else(|e| panic!("dead-lettered call: {e}"))
        });
        self.delivered().into_iter().chain(dead).collect()
    }

    /// Every sync's expected message ids.
    pub fn expected_all(&self) -> HashSet<String> {
        self.config
            .syncs
            .iter()
            .flat_map(|s| self.expected(&s.name))
            .collect()
    }

    pub async fn checkpoint(&self, sync: &str) -> Option<Checkpoint> {
        self.store()
            .checkpoint(sync)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The checkpoint is never ahead of what arrived: every record at or before it was
    /// delivered or dead-lettered (with its reason), as [`crate::expected::EXPECTED_CALLS`] says it must
    /// arrive. Returns how many records it covers.
    pub async fn assert_checkpoint_covered(&self, sync: &str) -> usize {
        let Some(checkpoint) = self.checkpoint(sync).await else {
            return 0;
        };
        let calls = self.handled_calls();
        let org = self.sim.org();
        let org = org.lock().unwrap_or_else(|e| panic!("{e}"));
        let shape = ExpectedShape::of(sync).in_org(&org, self.selected_fields(sync));
        let mut covered = 0;
        for record in org.records(shape.shape.object) {
            let cursor = Cursor::of_value(&record).unwrap_or_else(|e| panic!("{e}"));
            if cursor > checkpoint.cursor {
                continue;
            }
            covered += 1;
            assert!(
                shape.find(&record, &calls).is_some(),
                "sync {sync}: the checkpoint {:?} passed record {} ({:?}), which never arrived",
                checkpoint.cursor,
                record["Id"],
                cursor
            );
        }
        covered
    }
}

/// A records queue that keeps every message it is sent, for tests of the extract stage.
#[derive(Default)]
pub struct KeptRecords(Mutex<Vec<RecordsMessage>>);

impl KeptRecords {
    /// The messages sent so far, in order.
    pub fn messages(&self) -> Vec<RecordsMessage> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Queue<RecordsMessage> for KeptRecords {
    async fn send(
        &self,
        message: RecordsMessage,
        _delay: Option<Duration>,
    ) -> Result<usize, SendError<RecordsMessage>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
        Ok(1)
    }
}

pub fn message_ids(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| c["messageId"].as_str().map(str::to_string))
        .collect()
}

/// How many entries repeat an earlier one.
pub fn repeats(ids: &[String]) -> usize {
    ids.len() - ids.iter().collect::<HashSet<_>>().len()
}
