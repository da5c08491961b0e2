//! `/sobjects/{Obj}/deleted/` and `/updated/`.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sfsync_simulator::{Org, OrgSpec};

use crate::common::{V, obj, start};

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[tokio::test]
async fn deleted_lists_soft_and_hard_deletes_in_the_window() {
    let mut org = Org::empty();
    let keep = org.insert("Contact", obj(json!({"LastName": "Keep"})));
    let soft = org.insert("Contact", obj(json!({"LastName": "Soft"})));
    let hard = org.insert("Contact", obj(json!({"LastName": "Hard"})));
    org.advance_clock(Duration::minutes(10));
    let start_at = org.now();
    assert!(org.soft_delete("Contact", &soft));
    assert!(org.hard_delete("Contact", &hard));
    org.advance_clock(Duration::minutes(3));
    let now = org.now();
    let api = start(org).await;

    let path = |s: DateTime<Utc>, e: DateTime<Utc>| {
        format!("/services/data/v{V}/sobjects/Contact/deleted/")
            + &format!("?start={}&end={}", urlenc(&iso(s)), urlenc(&iso(e)))
    };
    let r = api.get(&path(start_at, now)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    let ids: Vec<&str> = body["deletedRecords"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&soft.as_str()) && ids.contains(&hard.as_str()));
    assert!(!ids.contains(&keep.as_str()));
    let first_date = body["deletedRecords"][0]["deletedDate"]
        .as_str()
        .unwrap_or("");
    assert!(first_date.ends_with(".000+0000"), "{first_date}");
    assert!(body["earliestDateAvailable"].is_string());
    // latestDateCovered is the end, floored to the minute.
    let latest = body["latestDateCovered"].as_str().unwrap_or("");
    assert!(latest.ends_with(":00.000+0000"), "{latest}");

    // A window before the deletes is empty; a start beyond the 15-day reach is refused.
    let before = api
        .get(&path(
            start_at - Duration::days(2),
            start_at - Duration::days(1),
        ))
        .await;
    assert_eq!(before.json()["deletedRecords"], json!([]));
    let too_old = api.get(&path(now - Duration::days(16), now)).await;
    assert_eq!(too_old.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_old.error_code(), "INVALID_REPLICATION_DATE");
    let missing = api
        .get(&format!("/services/data/v{V}/sobjects/Contact/deleted/"))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let unknown = api
        .get(&path(start_at, now).replace("Contact", "Nope"))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // queryAll sees the soft delete, not the hard one.
    let all = api
        .query_all("SELECT Id, IsDeleted FROM Contact")
        .await
        .json();
    assert_eq!(all["totalSize"], 2);
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn generated_deletes_are_reachable() {
    let spec = OrgSpec::demo();
    let org = Org::generate(&spec);
    let now = org.now();
    let api = start(org).await;
    for object in ["Contact", "Lead", "CampaignMember", "Project__c"] {
        let r = api
            .get(&format!(
                "/services/data/v{V}/sobjects/{object}/deleted/?start={}&end={}",
                urlenc(&iso(now - Duration::days(15) + Duration::minutes(1))),
                urlenc(&iso(now))
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{object}: {}", r.text);
        assert_eq!(
            r.json()["deletedRecords"].as_array().map(Vec::len),
            Some(spec.soft_deleted),
            "{object}"
        );
    }
}

#[tokio::test]
async fn updated_lists_changed_ids() {
    let mut org = Org::generate(&OrgSpec::tiny());
    org.advance_clock(Duration::minutes(5));
    let from = org.now();
    let touched = org.touch_random("Lead", 3, 1);
    org.advance_clock(Duration::minutes(2));
    let to = org.now();
    let api = start(org).await;
    let r = api
        .get(&format!(
            "/services/data/v{V}/sobjects/Lead/updated/?start={}&end={}",
            urlenc(&iso(from)),
            urlenc(&iso(to))
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut ids: Vec<String> = r.json()["ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    let mut expected = touched;
    expected.sort();
    assert_eq!(ids, expected);
}
