//! How many records of a page the extract stage hands to the queue in one send: the whole
//! page by default (in AWS: the fewest, fullest SQS messages), and at most a REST page's
//! worth in `sfsync sync`, whose queue maps and delivers each send before returning — so a
//! Bulk results page (10,000 rows) does not hold five times the memory of a REST page
//! (docs/benchmarks.md, "Memory stays flat").

use sfsync_e2e::local::{KeptRecords, Local, fixture, org};
use sfsync_pipeline::extract::ExtractSettings;
use sfsync_pipeline::local::LOCAL_MAX_RECORDS_PER_SEND;
use sfsync_pipeline::report::RunStatus;
use sfsync_simulator::Faults;

/// Extracts the contacts over Bulk API 2.0 (one results page: the org is smaller than a
/// Bulk page) with these settings; returns the records of each send.
async fn sends(w: &Local, max_records_per_send: Option<usize>) -> Vec<usize> {
    let mut settings = ExtractSettings::new("test:send-size");
    settings.full = true;
    if let Some(n) = max_records_per_send {
        settings.max_records_per_send = n;
    }
    let queue = KeptRecords::default();
    let report = w
        .extract_once("contacts", &queue, &w.store(), &settings)
        .await;
    assert_eq!(report.status, RunStatus::Complete, "{report}");
    assert_eq!(report.api.as_deref(), Some("bulk"), "{report}");
    let sends: Vec<usize> = queue.messages().iter().map(|m| m.records.len()).collect();
    assert_eq!(
        sends.iter().sum::<usize>() as u64,
        report.counts.extracted,
        "{report}"
    );
    sends
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bulk_page_goes_whole_by_default_and_in_rest_page_pieces_locally() {
    let bulk = fixture().sync("contacts", "api", "bulk").text();
    let w = Local::start(&bulk, org(5000), Faults::default()).await;
    let whole = sends(&w, None).await;
    assert_eq!(whole.len(), 1, "{whole:?}");
    let total = whole[0];
    assert!(total > 4000, "{total} contacts");
    let pieces = sends(&w, Some(LOCAL_MAX_RECORDS_PER_SEND)).await;
    assert_eq!(pieces, vec![2000, 2000, total - 4000]);
}
