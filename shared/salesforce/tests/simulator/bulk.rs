//! Bulk API 2.0: same records as REST, automatic switch, terminal states, fallbacks.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sfsync_mapping::config::{ExtractApi, SyncKind};
use sfsync_salesforce::Error;
use sfsync_simulator::{Faults, Org, OrgSpec};

use crate::common::*;

fn by_id(records: Vec<Value>) -> BTreeMap<String, Value> {
    let n = records.len();
    let map: BTreeMap<String, Value> = records.into_iter().map(|r| (id_of(&r), r)).collect();
    assert_eq!(map.len(), n, "duplicate records");
    map
}

async fn rest_and_bulk(
    sim: &sfsync_simulator::SimulatorHandle,
    sync: &sfsync_mapping::SyncConfig,
    include_deleted: bool,
) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let until = now(sim).await;
    let mut config = config(&sim.url());
    config.bulk_page_size = 40;
    let client = client_with(config);
    let plan = client.plan(sync).await.unwrap();
    assert!(plan.bulk_supported, "{:?}", plan.bulk_unsupported_reason);

    let mut w = window(None, until, ExtractApi::Rest);
    w.include_deleted = include_deleted;
    let mut rest = client.extract(&plan, w.clone());
    let (rest_records, _) = drain(&mut rest).await.unwrap();
    assert_eq!(rest.api_used(), ExtractApi::Rest);

    w.api = ExtractApi::Bulk;
    let mut bulk = client.extract(&plan, w);
    // Extractions move between tasks (the pipeline spawns them): the future is Send.
    let (bulk, drained) = tokio::spawn(async move {
        let drained = drain(&mut bulk).await;
        (bulk, drained)
    })
    .await
    .unwrap();
    let (bulk_records, lasts) = drained.unwrap();
    assert_eq!(bulk.api_used(), ExtractApi::Bulk);
    // Only the final page may move the checkpoint, to the maximum cursor seen.
    assert!(
        lasts.len() >= 2,
        "expected several Bulk pages, got {}",
        lasts.len()
    );
    let (final_last, earlier) = lasts.split_last().unwrap();
    assert!(earlier.iter().all(Option::is_none), "{lasts:?}");
    let max = bulk_records
        .iter()
        .map(|r| sfsync_salesforce::Cursor::of_value(r).unwrap())
        .max();
    assert_eq!(final_last, &max);
    (by_id(rest_records), by_id(bulk_records))
}

fn assert_same(rest: &BTreeMap<String, Value>, bulk: &BTreeMap<String, Value>) {
    assert_eq!(rest.len(), bulk.len());
    for (id, r) in rest {
        let b = bulk
            .get(id)
            .unwrap_or_else(|| panic!("{id} missing from Bulk"));
        assert_eq!(r, b, "record {id} differs:\nREST {r}\nBulk {b}");
    }
}

#[tokio::test]
async fn bulk_records_equal_rest_records() {
    let sim = start(Org::generate(&OrgSpec::demo())).await;
    {
        // Cells the CSV must carry intact: quotes, commas, newlines, NUL, unicode; and a
        // contact without account (null parent).
        let org = sim.org();
        let mut org = org.lock().unwrap();
        org.insert(
            "Contact",
            fields(json!({
                "LastName": "O\"Brien, \"the\" second",
                "Description": "line one\nline two\r\nthird, with \"quotes\"\u{0} and NUL",
                "Title": "Ünïcødé ✓",
            })),
        );
    }
    let sync = contacts_sync(&[
        "FirstName",
        "LastName",
        "Email",
        "Title",
        "Description",
        "Birthdate",
        "HasOptedOutOfEmail",
        "CreatedDate",
        "AccountId",
        "Account.Name",
        "Account.AnnualRevenue",
        "Account.NumberOfEmployees",
        "Account.Owner.Email",
        "Owner.Name",
    ]);
    let (rest, bulk) = rest_and_bulk(&sim, &sync, false).await;
    assert!(rest.len() > 250, "{}", rest.len());
    assert_same(&rest, &bulk);
    // The parents really were nested and nulled.
    assert!(bulk.values().any(|r| r["Account"].is_object()));
    assert!(bulk.values().any(|r| r["Account"].is_null()));
    assert!(
        bulk.values()
            .any(|r| r["Description"].as_str().is_some_and(|d| d.contains('\0')))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_numbers_dates_and_polymorphic_parents_equal_rest() {
    let sim = start(Org::generate(&OrgSpec::demo())).await;
    let mut opportunities = sync(
        "opportunities",
        "Opportunity",
        SyncKind::Objects,
        &[
            "Name",
            "Amount",
            "CloseDate",
            "StageName",
            "Probability",
            "IsWon",
            "Account.Name",
        ],
    );
    opportunities.object_type_id = Some("2".into());
    let (rest, bulk) = rest_and_bulk(&sim, &opportunities, false).await;
    assert_same(&rest, &bulk);

    let mut tasks = sync(
        "tasks",
        "Task",
        SyncKind::Events,
        &["Subject", "ActivityDate", "Who.Name", "What.Name"],
    );
    tasks.user_id = Some("WhoId".into());
    tasks.event = Some("Task".into());
    let (rest, bulk) = rest_and_bulk(&sim, &tasks, false).await;
    assert_same(&rest, &bulk);
    assert!(
        bulk.values()
            .any(|r| r["Who"]["attributes"]["type"].is_string())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bulk_query_all_includes_soft_deleted_rows_like_rest() {
    let sim = start(Org::generate(&OrgSpec::demo())).await;
    let sync = contacts_sync(&["LastName", "Email"]);
    let (rest, bulk) = rest_and_bulk(&sim, &sync, true).await;
    assert_same(&rest, &bulk);
    assert!(bulk.values().any(|r| r["IsDeleted"] == json!(true)));
    sim.shutdown().await;
}

#[tokio::test]
async fn auto_switches_to_bulk_above_the_threshold() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let sync = contacts_sync(&["Email"]);

    let mut config = config(&sim.url());
    config.bulk_threshold = 5;
    let client = client_with(config);
    let plan = client.plan(&sync).await.unwrap();
    let jobs = sim.stats().bulk_jobs;
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Auto));
    let (records, _) = drain(&mut e).await.unwrap();
    assert_eq!(e.api_used(), ExtractApi::Bulk);
    assert_eq!(sim.stats().bulk_jobs, jobs + 1);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);

    let mut config = crate::common::config(&sim.url());
    config.bulk_threshold = 1_000;
    let client = client_with(config);
    let plan = client.plan(&sync).await.unwrap();
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Auto));
    let (records, _) = drain(&mut e).await.unwrap();
    assert_eq!(e.api_used(), ExtractApi::Rest);
    assert_eq!(sim.stats().bulk_jobs, jobs + 1);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    sim.shutdown().await;
}

#[tokio::test]
async fn compound_address_falls_back_to_rest() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client
        .plan(&contacts_sync(&["MailingAddress"]))
        .await
        .unwrap();
    assert!(!plan.bulk_supported);
    assert!(
        plan.bulk_unsupported_reason
            .as_deref()
            .unwrap_or("")
            .contains("MailingAddress")
    );
    let jobs = sim.stats().bulk_jobs;
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Bulk));
    let (records, _) = drain(&mut e).await.unwrap();
    assert_eq!(e.api_used(), ExtractApi::Rest);
    assert_eq!(sim.stats().bulk_jobs, jobs);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    sim.shutdown().await;
}

async fn bulk_with_faults(faults: Faults) -> (Result<Vec<Value>, Error>, u64) {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(faults);
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Bulk));
    let result = drain(&mut e).await.map(|(r, _)| r);
    let polls = sim
        .stats()
        .by_path
        .iter()
        .filter(|(path, _)| path.contains("/jobs/query/") && !path.contains("/results"))
        .map(|(_, n)| *n)
        .sum::<u64>();
    sim.shutdown().await;
    (result, polls)
}

#[tokio::test]
async fn bulk_job_complete_after_several_polls() {
    let (result, polls) = bulk_with_faults(Faults {
        bulk_polls_before_complete: 4,
        ..Faults::default()
    })
    .await;
    let records = result.unwrap();
    assert!(!records.is_empty());
    assert!(polls >= 4, "polls: {polls}");
}

#[tokio::test]
async fn bulk_job_failed_reports_its_error_message() {
    let (result, _) = bulk_with_faults(Faults {
        bulk_final_state: Some("Failed".into()),
        bulk_polls_before_complete: 2,
        ..Faults::default()
    })
    .await;
    match result {
        Err(Error::BulkJob { state, message, .. }) => {
            assert_eq!(state, "Failed");
            assert!(!message.is_empty());
        }
        other => panic!("expected a failed job, got {other:?}"),
    }
}

#[tokio::test]
async fn bulk_job_aborted_ends_the_poll_loop() {
    let (result, _) = bulk_with_faults(Faults {
        bulk_final_state: Some("Aborted".into()),
        ..Faults::default()
    })
    .await;
    match result {
        Err(e @ Error::BulkJob { .. }) => {
            assert!(e.to_string().contains("Aborted"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected an aborted job, got {other:?}"),
    }
}

#[tokio::test]
async fn bulk_job_that_never_finishes_times_out() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let mut config = config(&sim.url());
    config.bulk_timeout = std::time::Duration::from_millis(30);
    let client = client_with(config);
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        bulk_polls_before_complete: 1_000_000,
        ..Faults::default()
    });
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Bulk));
    let err = e.next_page().await.unwrap_err();
    assert!(matches!(err, Error::BulkJob { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_job_bulk_cannot_serve_falls_back_to_rest() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    // A plan that claims Bulk support for a compound field: Salesforce refuses the job, and
    // the extraction carries on over REST.
    let mut plan = client
        .plan(&contacts_sync(&["MailingAddress"]))
        .await
        .unwrap();
    plan.bulk_supported = true;
    plan.bulk_unsupported_reason = None;
    let jobs = sim.stats().bulk_jobs;
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Bulk));
    let (records, _) = drain(&mut e).await.unwrap();
    // Refused at creation ("Selecting compound data not supported in Bulk Query"): no job.
    assert_eq!(sim.stats().bulk_jobs, jobs);
    assert_eq!(e.api_used(), ExtractApi::Rest);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert!(records.iter().any(|r| r["MailingAddress"].is_object()));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_bulk_page_can_be_handed_on_in_slices_without_extra_calls() {
    let sim = start(Org::generate(&OrgSpec::demo())).await;
    let sync = contacts_sync(&["FirstName", "LastName", "Email", "Account.Name"]);
    let until = now(&sim).await;
    let mut whole_config = config(&sim.url());
    whole_config.bulk_page_size = 40;
    let mut sliced_config = whole_config.clone();
    sliced_config.bulk_rows_per_page = 15;
    let mut outcomes = Vec::new();
    for cfg in [whole_config, sliced_config] {
        let client = client_with(cfg);
        let plan = client.plan(&sync).await.unwrap();
        let calls_before = client.usage().calls;
        let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Bulk));
        let mut sizes = Vec::new();
        let mut lasts = Vec::new();
        let mut records = Vec::new();
        while let Some(page) = extraction.next_page().await.unwrap() {
            sizes.push(page.records.len());
            lasts.push(page.last);
            records.extend(page.records.iter().map(sfsync_mapping::Record::to_value));
        }
        assert_eq!(extraction.api_used(), ExtractApi::Bulk);
        outcomes.push((sizes, lasts, records, client.usage().calls - calls_before));
    }
    let (whole_sizes, whole_lasts, whole_records, whole_calls) = &outcomes[0];
    let (sliced_sizes, sliced_lasts, sliced_records, sliced_calls) = &outcomes[1];
    assert!(whole_sizes.iter().any(|&n| n > 15), "{whole_sizes:?}");
    assert!(sliced_sizes.iter().all(|&n| n <= 15), "{sliced_sizes:?}");
    assert!(sliced_sizes.len() > whole_sizes.len());
    // The same records in the same order, the same final checkpoint, and only the last
    // piece carries it; slicing costs no API call.
    assert_eq!(sliced_records, whole_records);
    assert_eq!(sliced_lasts.last(), whole_lasts.last());
    assert!(sliced_lasts.last().is_some_and(Option::is_some));
    let (_, earlier) = sliced_lasts.split_last().unwrap();
    assert!(earlier.iter().all(Option::is_none), "{sliced_lasts:?}");
    assert_eq!(sliced_calls, whole_calls);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// A job that outlives one process (issue 11, item 3)

fn stop_now() -> sfsync_salesforce::StopFn {
    std::sync::Arc::new(|| true)
}

fn never() -> sfsync_salesforce::StopFn {
    std::sync::Arc::new(|| false)
}

fn deletes(sim: &sfsync_simulator::SimulatorHandle) -> u64 {
    sim.stats()
        .by_path
        .iter()
        .filter(|(k, _)| k.starts_with("DELETE ") && k.contains("/jobs/query/"))
        .map(|(_, n)| *n)
        .sum()
}

#[tokio::test]
async fn a_bulk_job_left_by_one_process_is_resumed_by_the_next_at_the_same_row() {
    let sim = start_with(
        Org::generate(&OrgSpec::demo()),
        Faults {
            bulk_polls_before_complete: 4,
            ..Faults::default()
        },
    )
    .await;
    let until = now(&sim).await;
    let sync = contacts_sync(&["FirstName", "LastName", "Account.Name"]);
    let mut cfg = config(&sim.url());
    cfg.bulk_page_size = 40;
    cfg.bulk_rows_per_page = 15;
    let w = window(None, until, ExtractApi::Bulk);

    // Process 1 must stop while the job is still in progress: it saves the job.
    let client = client_with(cfg.clone());
    let plan = client.plan(&sync).await.unwrap();
    let mut first = client.extract(&plan, w.clone()).stop_when(stop_now());
    assert!(first.next_page().await.unwrap().is_none());
    let saved = first.suspended().cloned().expect("the job is saved");
    assert_eq!(saved.locator, None);
    assert_eq!(sim.stats().bulk_jobs, 1);

    // Process 2 resumes polling the same job and stops after two slices (mid-page).
    let client = client_with(cfg.clone());
    let mut second = client
        .extract(&plan, w.clone())
        .stop_when(never())
        .resume_bulk(saved);
    let mut records = Vec::new();
    let mut position = None;
    for _ in 0..2 {
        let page = second.next_page().await.unwrap().expect("a page");
        records.extend(page.records.iter().map(sfsync_mapping::Record::to_value));
        position = page.bulk;
    }
    let position = position.expect("more to read");
    assert_eq!(position.rows_done, 30, "{position:?}");

    // Process 3 resumes at that row and reads to the end.
    let client = client_with(cfg);
    let mut third = client.extract(&plan, w).resume_bulk(position);
    let (rest, lasts) = drain(&mut third).await.unwrap();
    records.extend(rest);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_eq!(sim.stats().bulk_jobs, 1, "one job for the window");
    let max = records
        .iter()
        .map(|r| sfsync_salesforce::Cursor::of_value(r).unwrap())
        .max();
    assert_eq!(lasts.last().cloned().flatten(), max);
    // Read to the end: the job is deleted.
    assert_eq!(deletes(&sim), 0);
    third.delete_finished_bulk_job().await.unwrap();
    assert_eq!(deletes(&sim), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_bulk_job_is_created_again_once_and_never_in_a_loop() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();
    let w = window(None, until, ExtractApi::Bulk);
    let mut first = client.extract(&plan, w.clone()).stop_when(stop_now());
    assert!(first.next_page().await.unwrap().is_none());
    let saved = first.suspended().cloned().unwrap();

    // The job is gone (its 7 days are over): the next run creates it again, once.
    sim.org()
        .lock()
        .unwrap()
        .advance_clock(chrono::Duration::days(8));
    let mut second = client.extract(&plan, w.clone()).resume_bulk(saved.clone());
    let (records, _) = drain(&mut second).await.unwrap();
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_eq!(sim.stats().bulk_jobs, 2);

    // A replacement that is lost too is an error, not a third job.
    let replaced = sfsync_salesforce::BulkJobState {
        recreated: true,
        ..saved
    };
    let mut third = client.extract(&plan, w).resume_bulk(replaced);
    let err = drain(&mut third).await.unwrap_err();
    assert!(matches!(err, Error::BulkJob { .. }), "{err}");
    assert!(err.to_string().contains("not created again"), "{err}");
    assert_eq!(sim.stats().bulk_jobs, 2);
    sim.shutdown().await;
}
