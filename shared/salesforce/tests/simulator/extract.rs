//! REST keyset extraction: ties, faults mid-pagination, look-back, QUERY_TIMEOUT splits.

use chrono::Duration as ChronoDuration;
use serde_json::json;
use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::Cursor;
use sfsync_simulator::{Faults, Org, OrgSpec};

use crate::common::*;

/// 1,000 contacts committed in one transaction (one SystemModstamp) with rows before and
/// after: pages of 200 cut the tie block four times.
async fn tie_org() -> (Org, usize) {
    let mut org = Org::empty();
    for i in 0..50 {
        org.insert(
            "Contact",
            fields(json!({"LastName": format!("Before {i}")})),
        );
    }
    let tie = org.now() + ChronoDuration::seconds(10);
    for i in 0..1000 {
        org.insert_late(
            "Contact",
            fields(json!({"LastName": format!("Tie {i}")})),
            tie,
        );
    }
    org.advance_clock(ChronoDuration::seconds(20));
    for i in 0..30 {
        org.insert("Contact", fields(json!({"LastName": format!("After {i}")})));
    }
    (org, 1080)
}

#[tokio::test]
async fn ties_across_page_boundaries_come_out_exactly_once() {
    let (org, total) = tie_org().await;
    let sim = start(org).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();
    let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Rest));
    // Extractions move between tasks (the pipeline spawns them): the future is Send.
    let (records, lasts) = tokio::spawn(async move { drain(&mut extraction).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(records.len(), total);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    assert!(lasts.len() >= 6, "pages: {}", lasts.len());
    assert!(lasts.iter().all(Option::is_some));
    sim.shutdown().await;
}

#[tokio::test]
async fn resuming_from_a_cursor_inside_a_tie_loses_and_repeats_nothing() {
    let (org, total) = tie_org().await;
    let sim = start(org).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();

    // Run by run, one page each, checkpointing page.last: every page boundary restarts a
    // fresh query in the middle of the tie block.
    let mut checkpoint: Option<Cursor> = None;
    let mut all = Vec::new();
    let mut runs = 0;
    loop {
        let mut extraction =
            client.extract(&plan, window(checkpoint.clone(), until, ExtractApi::Rest));
        let Some(page) = extraction.next_page().await.unwrap() else {
            break;
        };
        runs += 1;
        assert!(!page.records.is_empty());
        checkpoint = page.last.clone();
        assert!(checkpoint.is_some());
        all.extend(page.records.iter().map(sfsync_mapping::Record::to_value));
        assert!(runs < 100, "no progress");
    }
    assert!(runs >= 6);
    assert_eq!(all.len(), total);
    assert_eq!(unique_ids(&all), org_ids(&sim, "Contact").await);
    sim.shutdown().await;
}

#[tokio::test]
async fn keyset_query_is_sent_with_batch_size_and_unquoted_datetimes() {
    let (org, _) = tie_org().await;
    let sim = start(org).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();
    // A cursor with a non-empty id and a `+`-free literal, and an `after` with
    // milliseconds: the simulator parses both only if they are encoded properly.
    let first = {
        let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
        e.next_page().await.unwrap().unwrap()
    };
    assert_eq!(
        first.records.len(),
        200,
        "batchSize=page_size was not honoured"
    );
    let after = first.last.clone().unwrap();
    let mut e = client.extract(&plan, window(Some(after.clone()), until, ExtractApi::Rest));
    let second = e.next_page().await.unwrap().unwrap();
    let c = Cursor::of_record(&second.records[0]).unwrap();
    assert!(c > after);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_mid_pagination_are_retried_without_loss() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(1_200))).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        fail_every_nth: Some(3),
        ..Faults::default()
    });
    let before = sim.stats().api_calls;
    let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let (records, lasts) = drain(&mut extraction).await.unwrap();
    sim.set_faults(Faults::default());
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    let calls = sim.stats().api_calls - before;
    assert!(
        calls > lasts.len() as u64,
        "no request failed: {calls} calls for {} pages",
        lasts.len()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn exhausted_retries_surface_a_retryable_error() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        fail_every_nth: Some(1),
        ..Faults::default()
    });
    let before = client.usage().calls;
    let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let err = extraction.next_page().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(
        client.usage().calls - before,
        u64::from(client.config().max_retries) + 1
    );
    // The same call picks up again once the server recovers.
    sim.set_faults(Faults::default());
    let (records, _) = drain(&mut extraction).await.unwrap();
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    sim.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let mut config = config(&sim.url());
    config.request_timeout = std::time::Duration::from_millis(100);
    config.max_retries = 2;
    let client = client_with(config);
    client.authenticate().await.unwrap();
    sim.set_faults(Faults {
        latency: Some(std::time::Duration::from_millis(400)),
        ..Faults::default()
    });
    let err = client.describe("Contact").await.unwrap_err();
    sim.set_faults(Faults::default());
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        matches!(err, sfsync_salesforce::Error::Http { .. }),
        "{err:?}"
    );
    assert_eq!(client.usage().calls, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn late_commit_is_caught_by_the_next_run_with_look_back() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();

    // Run 1.
    let until1 = now(&sim).await;
    let mut e = client.extract(&plan, window(None, until1, ExtractApi::Rest));
    let (first, lasts) = drain(&mut e).await.unwrap();
    let checkpoint = lasts.into_iter().flatten().next_back().unwrap();
    assert_eq!(unique_ids(&first), org_ids(&sim, "Contact").await);

    // A transaction that started before run 1 commits after it, stamped 60 s before the
    // checkpoint; another change arrives normally.
    let (late, fresh) = {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        org.advance_clock(ChronoDuration::seconds(30));
        let late = org.insert_late(
            "Contact",
            fields(json!({"LastName": "Late"})),
            checkpoint.modstamp - ChronoDuration::seconds(60),
        );
        let fresh = org.insert("Contact", fields(json!({"LastName": "Fresh"})));
        (late, fresh)
    };
    let until2 = now(&sim).await;

    // Without look-back the late row is lost…
    let mut e = client.extract(
        &plan,
        window(Some(checkpoint.clone()), until2, ExtractApi::Rest),
    );
    let (no_lookback, _) = drain(&mut e).await.unwrap();
    let ids = unique_ids(&no_lookback);
    assert!(ids.contains(&fresh));
    assert!(!ids.contains(&late));

    // …with the pipeline's look-back (checkpoint - 300 s, id "") it is caught.
    let after = Cursor {
        modstamp: checkpoint.modstamp - ChronoDuration::seconds(300),
        id: String::new(),
    };
    let mut e = client.extract(&plan, window(Some(after), until2, ExtractApi::Rest));
    let (with_lookback, lasts) = drain(&mut e).await.unwrap();
    let ids = unique_ids(&with_lookback);
    assert!(ids.contains(&fresh));
    assert!(ids.contains(&late));
    assert_keyset_order(&with_lookback);
    assert_eq!(lasts.last().cloned().flatten().map(|c| c.id), Some(fresh));
    sim.shutdown().await;
}

#[tokio::test]
async fn empty_window_has_no_pages() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();
    let after = Cursor {
        modstamp: until,
        id: "zzzzzzzzzzzzzzzzzz".into(),
    };
    let mut e = client.extract(&plan, window(Some(after), until, ExtractApi::Rest));
    assert!(e.next_page().await.unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn user_where_clause_is_applied() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let until = now(&sim).await;
    {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        org.insert(
            "Contact",
            fields(json!({"LastName": "Needle", "Title": "VP Magic"})),
        );
    }
    let until = until.max(now(&sim).await);
    let client = client(&sim.url());
    let plan = client
        .plan(&contacts_sync(&["LastName", "Title"]))
        .await
        .unwrap();
    let mut w = window(None, until, ExtractApi::Rest);
    w.where_clause = Some("Title = 'VP Magic'".into());
    let mut e = client.extract(&plan, w);
    let (records, _) = drain(&mut e).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["LastName"], "Needle");
    sim.shutdown().await;
}

#[tokio::test]
async fn query_timeout_splits_the_window() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(1_000))).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        query_timeout_over_rows: Some(300),
        query_timeout_after: std::time::Duration::from_millis(20),
        ..Faults::default()
    });
    let queries = sim.stats().query_calls;
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let (records, pages) = drain(&mut e).await.unwrap();
    sim.set_faults(Faults::default());
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    // Some queries timed out and were split: more query calls than pages.
    let calls = sim.stats().query_calls - queries;
    assert!(
        calls > pages.len() as u64 + 1,
        "{calls} calls for {} pages",
        pages.len()
    );
    sim.shutdown().await;
}

/// Salesforce answers QUERY_TIMEOUT after 2 minutes. Scaled down (the server's limit to
/// 400 ms, and every client timeout by the same factor from its default), the client must
/// still be waiting when the answer comes, so that it splits the window instead of giving
/// up and paying for the same query again.
#[tokio::test]
async fn query_timeout_after_the_server_limit_splits_the_window_with_the_default_timeouts() {
    let server_limit = std::time::Duration::from_millis(400);
    let salesforce_limit = sfsync_salesforce::SERVER_QUERY_LIMIT;
    let scale = |d: std::time::Duration| {
        d.mul_f64(server_limit.as_secs_f64() / salesforce_limit.as_secs_f64())
    };
    let sim = start(Org::generate(&OrgSpec::with_contacts(700))).await;
    let until = now(&sim).await;
    let mut config = config(&sim.url());
    let defaults = sfsync_salesforce::ClientConfig::new(sim.url(), client_credentials());
    config.request_timeout = scale(defaults.request_timeout);
    config.query_timeout = scale(defaults.query_timeout);
    assert!(defaults.query_timeout > salesforce_limit);
    let client = client_with(config);
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        query_timeout_over_rows: Some(300),
        query_timeout_after: server_limit,
        ..Faults::default()
    });
    let queries = sim.stats().query_calls;
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let drained = drain(&mut e).await;
    sim.set_faults(Faults::default());
    let (records, pages) = drained.unwrap_or_else(|e| panic!("the sync did not complete: {e:?}"));
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    // The window was split: more query calls than pages, and no query was repeated for a
    // client-side timeout (each timed-out query is answered once, then split).
    let calls = sim.stats().query_calls - queries;
    assert!(
        calls > pages.len() as u64 + 1,
        "{calls} calls for {} pages",
        pages.len()
    );
    assert_eq!(client.usage().calls, sim.stats().api_calls);
    sim.shutdown().await;
}

#[tokio::test]
async fn query_timeout_on_a_tiny_window_gives_up() {
    let (org, _) = tie_org().await;
    let sim = start(org).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    // 1,000 rows share one second: no split can make the query small enough.
    sim.set_faults(Faults {
        query_timeout_over_rows: Some(300),
        query_timeout_after: std::time::Duration::from_millis(20),
        ..Faults::default()
    });
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let err = drain(&mut e).await.unwrap_err();
    assert_eq!(err.api_code(), Some("QUERY_TIMEOUT"), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported_as_retryable() {
    // A port nobody listens on: bind one, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = config(&url);
    config.max_retries = 2;
    let client = client_with(config);
    let err = client.describe_global().await.unwrap_err();
    assert!(
        matches!(err, sfsync_salesforce::Error::Http { .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(client.usage().token_requests, 3);
}

/// Every `nextRecordsUrl` expires at once (Salesforce: after ~15 minutes idle, e.g. while a
/// slow destination holds the run): each page after the first answers
/// INVALID_QUERY_LOCATOR, and the extraction restarts right after the last record it
/// returned, losing and repeating nothing.
#[tokio::test]
async fn expired_query_locators_restart_after_the_last_record_read() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(700))).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    sim.set_faults(Faults {
        query_locator_idle: std::time::Duration::ZERO,
        ..Faults::default()
    });
    let before = sim.stats();
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let (records, pages) = drain(&mut e).await.unwrap();
    sim.set_faults(Faults::default());
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    let after = sim.stats();
    let locator_calls = after
        .by_path
        .get("GET /services/data/v62.0/query/{id}")
        .copied()
        .unwrap_or(0)
        - before
            .by_path
            .get("GET /services/data/v62.0/query/{id}")
            .copied()
            .unwrap_or(0);
    let first_pages = after
        .by_path
        .get("GET /services/data/v62.0/query")
        .copied()
        .unwrap_or(0)
        - before
            .by_path
            .get("GET /services/data/v62.0/query")
            .copied()
            .unwrap_or(0);
    // Every page came from a fresh query; each locator was tried once and refused.
    assert_eq!(first_pages, pages.len() as u64, "{after:?}");
    assert!(locator_calls >= pages.len() as u64 - 1, "{after:?}");
    sim.shutdown().await;
}

/// A user has at most 10 open query cursors; opening an 11th releases the oldest. Ten
/// other queries between two pages release the extraction's cursor, which then restarts
/// after the last record read.
#[tokio::test]
async fn a_released_query_cursor_restarts_after_the_last_record_read() {
    let sim = start(Org::generate(&OrgSpec::with_contacts(700))).await;
    let until = now(&sim).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["Email"])).await.unwrap();
    let mut e = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let mut records: Vec<serde_json::Value> = e
        .next_page()
        .await
        .unwrap()
        .unwrap()
        .records
        .iter()
        .map(sfsync_mapping::Record::to_value)
        .collect();
    for _ in 0..10 {
        let mut other = client.extract(&plan, window(None, until, ExtractApi::Rest));
        assert!(other.next_page().await.unwrap().is_some());
    }
    let fresh = |sim: &sfsync_simulator::SimulatorHandle| {
        sim.stats()
            .by_path
            .get("GET /services/data/v62.0/query")
            .copied()
            .unwrap_or(0)
    };
    let queries = fresh(&sim);
    let (rest, _) = drain(&mut e).await.unwrap();
    records.extend(rest);
    assert_eq!(unique_ids(&records), org_ids(&sim, "Contact").await);
    assert_keyset_order(&records);
    // The released locator was refused, and one fresh query went on from the last record.
    assert_eq!(fresh(&sim) - queries, 1);
    sim.shutdown().await;
}
