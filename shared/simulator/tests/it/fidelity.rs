//! Behaviours of a real org that lose data when a client ignores them (issue 11): the
//! server-side query time limit, expiring and released query locators, getDeleted's
//! window rules and dates, and client_credentials only on My Domain.

use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec};

use crate::common::{V, obj, start, start_with};

fn deleted_path(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let iso = |t: DateTime<Utc>| {
        t.to_rfc3339_opts(SecondsFormat::Secs, false)
            .replace('+', "%2B")
            .replace(':', "%3A")
    };
    format!(
        "/services/data/v{V}/sobjects/Contact/deleted/?start={}&end={}",
        iso(start),
        iso(end)
    )
}

#[tokio::test]
async fn query_timeout_is_answered_after_the_server_side_limit_not_at_once() {
    let delay = Duration::from_millis(300);
    let api = start_with(
        Org::generate(&OrgSpec::tiny()),
        Faults {
            query_timeout_over_rows: Some(5),
            query_timeout_after: delay,
            ..Faults::default()
        },
    )
    .await;
    let started = Instant::now();
    let r = api.query("SELECT Id FROM Contact").await;
    assert_eq!(r.error_code(), "QUERY_TIMEOUT", "{}", r.text);
    // A lower bound only: the server spent its limit on the query before answering.
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    // Salesforce's own limit is the default.
    assert_eq!(
        Faults::default().query_timeout_after,
        Duration::from_secs(120)
    );
}

#[tokio::test]
async fn an_idle_query_locator_expires() {
    let api = start_with(
        Org::generate(&OrgSpec::with_contacts(500)),
        Faults {
            query_locator_idle: Duration::ZERO,
            ..Faults::default()
        },
    )
    .await;
    let first = api
        .query_batch("query", "SELECT Id FROM Contact", Some(200))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let next = first.json()["nextRecordsUrl"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no nextRecordsUrl in {}", first.text));
    let r = api.get(&next).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_QUERY_LOCATOR");
    // The 15-minute idle time is the default.
    assert_eq!(
        Faults::default().query_locator_idle,
        Duration::from_secs(900)
    );
}

#[tokio::test]
async fn an_eleventh_open_cursor_releases_the_oldest() {
    let api = start(Org::generate(&OrgSpec::with_contacts(500))).await;
    let mut locators = Vec::new();
    for _ in 0..11 {
        let r = api
            .query_batch("query", "SELECT Id FROM Contact", Some(200))
            .await;
        let next = r.json()["nextRecordsUrl"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no nextRecordsUrl in {}", r.text));
        locators.push(next);
    }
    let oldest = api.get(&locators[0]).await;
    assert_eq!(
        oldest.error_code(),
        "INVALID_QUERY_LOCATOR",
        "{}",
        oldest.text
    );
    for next in &locators[1..] {
        let r = api.get(next).await;
        assert_eq!(r.status, StatusCode::OK, "{next}: {}", r.text);
    }
}

#[tokio::test]
async fn get_deleted_needs_more_than_one_minute() {
    let mut org = Org::empty();
    org.advance_clock(ChronoDuration::minutes(10));
    let now = org.now();
    let api = start(org).await;
    for span in [ChronoDuration::seconds(30), ChronoDuration::seconds(60)] {
        let r = api.get(&deleted_path(now - span, now)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{span}: {}", r.text);
        assert_eq!(r.error_code(), "INVALID_REPLICATION_DATE");
    }
    let r = api
        .get(&deleted_path(now - ChronoDuration::seconds(61), now))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn get_deleted_covers_whole_minutes_and_the_next_call_starts_at_latest_date_covered() {
    let mut org = Org::empty();
    let id = org.insert("Contact", obj(json!({"LastName": "Short-lived"})));
    // Move the clock to hh:mm:00, then delete at hh:mm:10 and end the window at hh:mm:30.
    let ms = org.now().timestamp_millis();
    org.advance_clock(ChronoDuration::milliseconds(60_000 - ms.rem_euclid(60_000)));
    org.advance_clock(ChronoDuration::minutes(5));
    let minute = org.now();
    org.advance_clock(ChronoDuration::seconds(9));
    assert!(org.hard_delete("Contact", &id));
    org.advance_clock(ChronoDuration::seconds(20));
    let end = org.now();
    let api = start(org).await;

    let r = api
        .get(&deleted_path(minute - ChronoDuration::minutes(4), end))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    // The last, partial minute is not covered yet.
    assert_eq!(body["deletedRecords"], json!([]), "{body}");
    let latest = body["latestDateCovered"].as_str().unwrap_or_default();
    assert_eq!(
        latest,
        minute.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
    );

    // Later, a call starting at latestDateCovered lists it.
    api.sim
        .org()
        .lock()
        .expect("org")
        .advance_clock(ChronoDuration::minutes(2));
    let later = api.sim.org().lock().expect("org").now();
    let r = api.get(&deleted_path(minute, later)).await;
    let ids: Vec<String> = r.json()["deletedRecords"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, vec![id]);
}

#[tokio::test]
async fn a_purged_delete_log_moves_earliest_date_available() {
    let mut org = Org::empty();
    let early = org.insert("Contact", obj(json!({"LastName": "Early"})));
    let late = org.insert("Contact", obj(json!({"LastName": "Late"})));
    org.advance_clock(ChronoDuration::hours(1));
    let start_at = org.now();
    assert!(org.hard_delete("Contact", &early));
    org.advance_clock(ChronoDuration::hours(3));
    let purge_point = org.now();
    assert!(org.hard_delete("Contact", &late));
    org.advance_clock(ChronoDuration::hours(1));
    assert_eq!(org.purge_delete_log("Contact", purge_point), 1);
    let now = org.now();
    let api = start(org).await;

    let r = api.get(&deleted_path(start_at, now)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    let earliest = body["earliestDateAvailable"].as_str().unwrap_or_default();
    assert_eq!(
        earliest,
        purge_point.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
    );
    let ids: Vec<String> = body["deletedRecords"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, vec![late]);
}

#[tokio::test]
async fn client_credentials_is_refused_on_the_generic_login_hosts() {
    let api = start(Org::generate(&OrgSpec::tiny())).await;
    let c = Credentials::demo();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
    ];
    for host in ["login.salesforce.com", "test.salesforce.com"] {
        api.sim.set_login_host(Some(host));
        let r = api.token_form(&form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}: {}", r.text);
        assert_eq!(r.json()["error"], "invalid_grant");
        assert_eq!(
            r.json()["error_description"],
            "request not supported on this domain"
        );
    }
    // The same request sent with a generic Host header is refused too.
    api.sim.set_login_host(None);
    let r = api
        .http
        .post(format!("{}/services/oauth2/token", api.url()))
        .header("Host", "login.salesforce.com")
        .form(&form)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // My Domain (and the simulator's own address) accept it.
    api.sim.set_login_host(Some("acme.my.salesforce.com"));
    assert_eq!(api.token_form(&form).await.status, StatusCode::OK);
    api.sim.set_login_host(None);
    assert_eq!(api.token_form(&form).await.status, StatusCode::OK);
}

#[tokio::test]
async fn replication_lag_holds_latest_date_covered_back_and_hides_what_follows() {
    let mut org = Org::empty();
    let id = org.insert("Contact", obj(json!({"LastName": "In flight"})));
    org.advance_clock(ChronoDuration::hours(1));
    let start_at = org.now();
    org.advance_clock(ChronoDuration::minutes(10));
    assert!(org.hard_delete("Contact", &id));
    org.advance_clock(ChronoDuration::minutes(2));
    let end = org.now();
    let api = start_with(
        org,
        Faults {
            replication_lag: Duration::from_secs(300),
            ..Faults::default()
        },
    )
    .await;
    let r = api.get(&deleted_path(start_at, end)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["deletedRecords"], json!([]), "{body}");
    let latest = body["latestDateCovered"].as_str().unwrap_or_default();
    let expected = end - ChronoDuration::minutes(5);
    let ms = expected.timestamp_millis();
    let floored = expected - ChronoDuration::milliseconds(ms.rem_euclid(60_000));
    assert_eq!(
        latest,
        floored.format("%Y-%m-%dT%H:%M:%S.000+0000").to_string()
    );
}
