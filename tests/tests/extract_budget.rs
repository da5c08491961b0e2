//! The extract stage under a run's budget: deadlines measured on an injected clock (never
//! the machine's speed), and what a run that stops early leaves for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sfsync_e2e::local::{Local, fixture};
use sfsync_pipeline::extract::extract_sync;
use sfsync_pipeline::extract::{ExtractSettings, ManualClock};
use sfsync_pipeline::message::RecordsMessage;
use sfsync_pipeline::queue::{Queue, SendError};
use sfsync_pipeline::report::RunStatus;
use sfsync_pipeline::report::new_run_id;
use sfsync_pipeline::state::StateStore;
use sfsync_simulator::{Faults, Org, OrgSpec};

/// A queue that takes records as values, counts how often each record id was sent, and
/// advances the run's clock by `per_record` for every record: "a run has time for N
/// records" becomes exact.
struct CountingQueue {
    clock: Arc<ManualClock>,
    per_record: Duration,
    sent: Mutex<HashMap<String, u32>>,
}

impl CountingQueue {
    fn new(clock: Arc<ManualClock>, per_record: Duration) -> CountingQueue {
        CountingQueue {
            clock,
            per_record,
            sent: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> HashMap<String, u32> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Queue<RecordsMessage> for CountingQueue {
    async fn send(
        &self,
        message: RecordsMessage,
        _: Option<Duration>,
    ) -> Result<usize, SendError<RecordsMessage>> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        for record in &message.records {
            let id = record.string_field("Id").unwrap_or_default();
            *sent.entry(id).or_default() += 1;
        }
        self.clock
            .advance(self.per_record * message.records.len() as u32);
        Ok(1)
    }
}

/// Settings whose deadline leaves `records` records' worth of time on `clock`.
fn budget(clock: &Arc<ManualClock>, per_record: Duration, records: u32) -> ExtractSettings {
    let mut settings = ExtractSettings::new("test-owner");
    settings.margin = Duration::from_secs(30);
    settings.deadline = Some(clock.start() + settings.margin + per_record * records);
    settings.clock = clock.clone();
    settings
}

/// A mass update of 30,000 contacts at one SystemModstamp, read by runs that each have time
/// for about 5,000 records: every run must continue right after the last record the one
/// before it enqueued — a resume from `SystemModstamp − look-back` would re-read the same
/// first records of the tie forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_mass_update_larger_than_one_run_completes_in_bounded_runs_without_loss_or_repeats() {
    const CONTACTS: usize = 30_000;
    let org = Org::generate(&OrgSpec {
        contacts: CONTACTS,
        accounts: 30,
        soft_deleted: 0,
        anchor: chrono::Utc::now() - chrono::Duration::hours(1),
        ..OrgSpec::tiny()
    });
    let local = Local::start(
        &fixture().salesforce("page_size", 2000).text(),
        org,
        Faults::default(),
    )
    .await;
    let touched = {
        let org = local.sim.org();
        let mut org = org.lock().unwrap_or_else(|e| e.into_inner());
        org.touch_random("Contact", CONTACTS, 7)
    };
    assert_eq!(touched.len(), CONTACTS);
    let store = local.store();
    let per_record = Duration::from_millis(1);

    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let clock = Arc::new(ManualClock::new());
        let queue = CountingQueue::new(clock.clone(), per_record);
        let settings = budget(&clock, per_record, 5_000);
        let report = local
            .extract_once("contacts", &queue, &store, &settings)
            .await;
        for (id, n) in queue.counts() {
            *counts.entry(id).or_default() += n;
        }
        statuses.push(report.status);
        assert_ne!(report.status, RunStatus::Failed, "{report}");
        if report.status == RunStatus::Complete {
            break;
        }
        assert!(
            report.counts.extracted <= 8_000,
            "a run read past its budget: {report}"
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&RunStatus::Complete),
        "not complete after {} runs: {statuses:?}",
        statuses.len()
    );
    assert!(statuses.len() <= 8, "{statuses:?}");
    let missing: Vec<&String> = touched
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "{} records lost", missing.len());
    let resent: Vec<(&String, &u32)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        resent.is_empty(),
        "{} records sent more than once, e.g. {:?}",
        resent.len(),
        resent.first()
    );
}

/// The Lambda deadline budget of a Bulk run: a job that takes longer to complete than one
/// invocation has, and results that take several invocations to read. Each run stops in time
/// (while polling, or between slices of a results page) and saves the job, its window and
/// its results position; the next run resumes that same job at that row. One job for the
/// whole window, every record sent exactly once, the job deleted when read.
#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_run_that_outlasts_its_deadline_resumes_the_same_job_until_done() {
    const CONTACTS: usize = 3_000;
    let org = Org::generate(&OrgSpec {
        contacts: CONTACTS,
        accounts: 30,
        soft_deleted: 0,
        anchor: chrono::Utc::now() - chrono::Duration::hours(1),
        ..OrgSpec::tiny()
    });
    let config = fixture().sync("contacts", "api", "bulk").text();
    let local = Local::start(
        &config,
        org,
        Faults {
            // The job completes after 1,000 status polls: more than one run's worth.
            bulk_polls_before_complete: 1_000,
            ..Faults::default()
        },
    )
    .await;
    let mut client_config = sfsync_salesforce::ClientConfig::from_config(&local.config.salesforce)
        .unwrap_or_else(|e| panic!("{e}"));
    client_config.bulk_page_size = 1_000;
    client_config.bulk_rows_per_page = 250;
    client_config.bulk_poll_initial = Duration::from_millis(1);
    client_config.bulk_poll_max = Duration::from_millis(1);
    let client = sfsync_salesforce::Client::new(client_config).unwrap_or_else(|e| panic!("{e}"));
    let sync = local
        .config
        .sync("contacts")
        .cloned()
        .unwrap_or_else(|| panic!("no contacts sync"));
    let expected: std::collections::HashSet<String> = {
        let org = local.sim.org();
        let org = org.lock().unwrap_or_else(|e| e.into_inner());
        org.records("Contact")
            .iter()
            .filter_map(|r| r.get("Id").and_then(|v| v.as_str()).map(str::to_string))
            .collect()
    };
    assert_eq!(expected.len(), CONTACTS);
    let store = local.store();

    // Each read of the clock costs 1 ms (a poll, a loop turn), each record sent 1 ms; a run
    // has 600 ms: about 600 polls, or two or three slices of 250 records.
    let per_record = Duration::from_millis(1);
    let mut counts: HashMap<String, u32> = HashMap::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let clock = Arc::new(ManualClock::ticking(Duration::from_millis(1)));
        let queue = CountingQueue::new(clock.clone(), per_record);
        let mut settings = ExtractSettings::new("test-owner");
        settings.deadline = Some(clock.start() + settings.margin + Duration::from_millis(600));
        settings.clock = clock.clone();
        let started = chrono::Utc::now();
        let report = extract_sync(
            &client,
            &sync,
            &queue,
            &store,
            &new_run_id(started),
            started,
            &settings,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for (id, n) in queue.counts() {
            *counts.entry(id).or_default() += n;
        }
        statuses.push(report.status);
        assert_ne!(report.status, RunStatus::Failed, "{report}");
        if report.status == RunStatus::Complete {
            break;
        }
        assert_eq!(report.status, RunStatus::Partial, "{report}");
        let cp = store
            .checkpoint("contacts")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a partial Bulk run saves where it is"));
        assert!(cp.bulk.is_some() || cp.partial, "{cp:?}");
    }
    assert_eq!(
        statuses.last(),
        Some(&RunStatus::Complete),
        "not complete after {} runs: {statuses:?}",
        statuses.len()
    );
    assert!(
        statuses.len() >= 3,
        "the deadline never interrupted: {statuses:?}"
    );
    let stats = local.sim.stats();
    assert_eq!(stats.bulk_jobs, 1, "one job for the window: {statuses:?}");
    let missing = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    assert_eq!(missing, 0, "records lost");
    let resent: Vec<(&String, &u32)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        resent.is_empty(),
        "{} records sent more than once, e.g. {:?}",
        resent.len(),
        resent.first()
    );
    let deleted: u64 = stats
        .by_path
        .iter()
        .filter(|(k, _)| k.starts_with("DELETE ") && k.contains("/jobs/query/"))
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(deleted, 1, "the job is deleted once read");
    let cp = store
        .checkpoint("contacts")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint"));
    assert!(cp.bulk.is_none() && !cp.partial, "{cp:?}");
}
