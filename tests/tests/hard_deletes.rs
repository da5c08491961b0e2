//! Hard deletes end to end (issue 11, item 4): getDeleted inside a run feeds `delete` calls
//! to a destination; the next getDeleted starts at `latestDateCovered`; deletions that
//! Salesforce can no longer list make the run say so (status, gap, count), and the sync goes
//! on.
//!
//! Every run starts at the simulated org's clock (`Local::run_at`), as a run against a real
//! org starts at (roughly) the org's time: the windows and getDeleted's dates are then on
//! one time line.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sfsync_e2e::local::{Local, org};
use sfsync_pipeline::report::{RunReport, RunStatus};
use sfsync_simulator::Faults;

/// Contacts only, `deletes = true`, no look-back (so that only `latestDateCovered` can
/// bring a run's getDeleted back before the end of the previous run).
fn config() -> String {
    let text = sfsync_e2e::fixtures::Fixture::syncs(&["contacts"])
        .salesforce("lookback_seconds", 0)
        .text();
    assert!(text.contains("deletes = true") && text.contains("lookback_seconds = 0"));
    text
}

fn now(w: &Local) -> DateTime<Utc> {
    w.sim.org().lock().unwrap_or_else(|e| panic!("{e}")).now()
}

/// Moves the org's clock to the start of a later minute, `minutes` whole minutes on.
fn to_minute_start(w: &Local, minutes: i64) -> DateTime<Utc> {
    let org = w.sim.org();
    let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    let ms = org.now().timestamp_millis();
    org.advance_clock(Duration::milliseconds(60_000 - ms.rem_euclid(60_000)));
    org.advance_clock(Duration::minutes(minutes));
    org.now()
}

fn advance(w: &Local, by: Duration) -> DateTime<Utc> {
    let org = w.sim.org();
    let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    org.advance_clock(by);
    org.now()
}

/// Hard-deletes one live contact (gone from queryAll too) and returns its id.
fn hard_delete_one(w: &Local) -> String {
    let org = w.sim.org();
    let mut org = org.lock().unwrap_or_else(|e| panic!("{e}"));
    let id = org
        .records("Contact")
        .iter()
        .find_map(|r| r["Id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no contact left"));
    assert!(org.hard_delete("Contact", &id));
    id
}

fn deletion_delivered(w: &Local, id: &str) -> bool {
    w.delivered()
        .iter()
        .any(|c: &Value| c["userId"] == json!(id) && c["event"] == json!("User Deleted"))
}

fn contacts(reports: Vec<RunReport>) -> RunReport {
    reports
        .into_iter()
        .find(|r| r.sync == "contacts")
        .unwrap_or_else(|| panic!("no contacts report"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hard_delete_not_yet_covered_is_delivered_by_the_next_run_from_latest_date_covered() {
    // The org's getDeleted coverage lags its clock by 5 minutes (deletions still in
    // flight): latestDateCovered stays up to 5 minutes (plus the minute floor) behind a
    // run's end.
    let faults = Faults {
        replication_lag: std::time::Duration::from_secs(300),
        ..Faults::default()
    };
    let w = Local::start(&config(), org(40), faults).await;
    let first = contacts(w.run_at(now(&w)).await);
    assert_eq!(first.status, RunStatus::Complete, "{first}");

    // A contact is deleted 2 minutes before run 2 ends: inside the lag, so run 2's
    // getDeleted cannot list it yet.
    let minute = to_minute_start(&w, 10);
    advance(&w, Duration::seconds(9));
    let gone = hard_delete_one(&w);
    let until2 = advance(&w, Duration::seconds(140));
    assert!(until2 - minute < Duration::minutes(3));
    let second = contacts(w.run_at(until2).await);
    assert_eq!(second.status, RunStatus::Complete, "{second}");
    assert!(
        !deletion_delivered(&w, &gone),
        "listed before it was covered"
    );

    // Run 3 starts its getDeleted at run 2's latestDateCovered, not at run 2's end (which
    // is after the deletion).
    let until3 = advance(&w, Duration::minutes(10));
    let third = contacts(w.run_at(until3).await);
    assert_eq!(third.status, RunStatus::Complete, "{third}");
    assert!(
        deletion_delivered(&w, &gone),
        "the hard delete of {gone} was never delivered: {third}"
    );
    assert_eq!(third.counts.deleted_found, 1, "{third}");
    assert_eq!(third.counts.delete_gaps, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_delete_log_is_a_reported_gap_and_the_sync_goes_on() {
    let w = Local::start(&config(), org(40), Faults::default()).await;
    let first = contacts(w.run_at(now(&w)).await);
    assert_eq!(first.status, RunStatus::Complete, "{first}");
    let first_end = first.window_end.unwrap_or_else(|| panic!("no window end"));

    // One deletion is purged from Salesforce's delete log before the next run; one after
    // the purge is still listed.
    advance(&w, Duration::hours(1));
    let lost = hard_delete_one(&w);
    let purge_point = advance(&w, Duration::hours(1));
    let purged = w
        .sim
        .org()
        .lock()
        .unwrap_or_else(|e| panic!("{e}"))
        .purge_delete_log("Contact", purge_point);
    assert!(purged >= 1, "{purged}");
    advance(&w, Duration::minutes(5));
    let listed = hard_delete_one(&w);
    let until = advance(&w, Duration::minutes(5));

    let second = contacts(w.run_at(until).await);
    assert_eq!(second.status, RunStatus::DeletesMissed, "{second}");
    assert!(second.error.is_none(), "{second}");
    let gap = second
        .deletes_gap
        .unwrap_or_else(|| panic!("no gap in {second}"));
    assert_eq!(gap.from, first_end);
    assert_eq!(gap.to, purge_point);
    assert_eq!(second.counts.delete_gaps, 1);
    assert!(deletion_delivered(&w, &listed), "{second}");
    assert!(!deletion_delivered(&w, &lost));
    // Said in the report people read, with what to do.
    let text = second.to_string();
    assert!(
        text.contains("hard deletes") && text.contains("full replay"),
        "{text}"
    );

    // Reported once: the next run reads on from where this one got.
    let third = contacts(w.run_at(advance(&w, Duration::minutes(5))).await);
    assert_eq!(third.status, RunStatus::Complete, "{third}");
    assert_eq!(third.counts.delete_gaps, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_last_run_beyond_the_fifteen_day_reach_is_a_reported_gap_and_later_deletes_arrive() {
    let w = Local::start(&config(), org(40), Faults::default()).await;
    let first = contacts(w.run_at(now(&w)).await);
    assert_eq!(first.status, RunStatus::Complete, "{first}");

    advance(&w, Duration::days(16));
    let recent = hard_delete_one(&w);
    let until = advance(&w, Duration::minutes(10));
    let second = contacts(w.run_at(until).await);
    assert_eq!(second.status, RunStatus::DeletesMissed, "{second}");
    let gap = second
        .deletes_gap
        .unwrap_or_else(|| panic!("no gap in {second}"));
    assert_eq!(Some(gap.from), first.window_end);
    // The gap ends where the org's 15-day reach begins (a minute inside it).
    let reach = until - Duration::days(15);
    assert!(
        gap.to > reach && gap.to <= reach + Duration::minutes(2),
        "{gap:?} vs {reach}"
    );
    assert!(deletion_delivered(&w, &recent), "{second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_less_than_a_minute_apart_do_not_ask_salesforce_for_a_shorter_window() {
    let w = Local::start(&config(), org(40), Faults::default()).await;
    let first = contacts(w.run_at(now(&w)).await);
    assert_eq!(first.status, RunStatus::Complete, "{first}");
    let deleted_calls = |w: &Local| -> u64 {
        w.sim
            .stats()
            .by_path
            .iter()
            .filter(|(path, _)| path.contains("/sobjects/Contact/deleted"))
            .map(|(_, n)| *n)
            .sum()
    };

    // Salesforce refuses a getDeleted window of a minute or less: run 2, 30 s later, does
    // not ask, and keeps its start for the next run.
    advance(&w, Duration::seconds(5));
    let gone = hard_delete_one(&w);
    let second = contacts(w.run_at(advance(&w, Duration::seconds(25))).await);
    assert_eq!(second.status, RunStatus::Complete, "{second}");
    assert_eq!(deleted_calls(&w), 0);

    let third = contacts(w.run_at(advance(&w, Duration::minutes(2))).await);
    assert_eq!(third.status, RunStatus::Complete, "{third}");
    assert_eq!(deleted_calls(&w), 1);
    assert!(deletion_delivered(&w, &gone), "{third}");
}
