//! Soft deletes through queryAll, hard deletes through getDeleted.

use chrono::Duration as ChronoDuration;
use serde_json::{Value, json};
use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::{Cursor, Error};
use sfsync_simulator::{Org, OrgSpec};

use crate::common::*;

#[tokio::test]
async fn soft_deletes_come_from_query_all_within_the_window() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let plan = client.plan(&contacts_sync(&["LastName"])).await.unwrap();
    let start = now(&sim).await;
    let (soft, kept) = {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        let soft = org.insert("Contact", fields(json!({"LastName": "Soon gone"})));
        let kept = org.insert("Contact", fields(json!({"LastName": "Stays"})));
        assert!(org.soft_delete("Contact", &soft));
        (soft, kept)
    };
    let until = now(&sim).await;
    let after = Some(Cursor {
        modstamp: start,
        id: String::new(),
    });

    let mut w = window(after.clone(), until, ExtractApi::Rest);
    let mut e = client.extract(&plan, w.clone());
    let (visible, _) = drain(&mut e).await.unwrap();
    let ids = unique_ids(&visible);
    assert!(ids.contains(&kept) && !ids.contains(&soft));

    w.include_deleted = true;
    let mut e = client.extract(&plan, w);
    let (all, _) = drain(&mut e).await.unwrap();
    let deleted: Vec<&Value> = all.iter().filter(|r| id_of(r) == soft).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["IsDeleted"], json!(true));
    // Pre-existing Recycle Bin rows outside the window stay out.
    assert!(
        all.iter()
            .all(|r| Cursor::of_record(r).unwrap().modstamp >= start)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn hard_deletes_come_from_get_deleted() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let start = now(&sim).await;
    let gone = {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        org.advance_clock(ChronoDuration::minutes(2));
        let id = org.insert("Contact", fields(json!({"LastName": "Purged"})));
        assert!(org.hard_delete("Contact", &id));
        org.advance_clock(ChronoDuration::minutes(2));
        id
    };
    let end = now(&sim).await;
    let deleted = client.deleted("Contact", start, end).await.unwrap();
    let record = deleted
        .iter()
        .find(|r| id_of(r) == gone)
        .unwrap_or_else(|| panic!("{gone} not in {deleted:?}"));
    assert_eq!(record["attributes"]["type"], "Contact");
    assert_eq!(record["IsDeleted"], json!(true));
    let stamp = record["SystemModstamp"].as_str().unwrap();
    assert!(stamp.ends_with("+0000"), "{stamp}");
    let when = Cursor::of_record(record).unwrap().modstamp;
    assert!(when >= start && when <= end);
    // Invisible to queryAll.
    let plan = client.plan(&contacts_sync(&[])).await.unwrap();
    let mut w = window(None, end, ExtractApi::Rest);
    w.include_deleted = true;
    let (all, _) = drain(&mut client.extract(&plan, w)).await.unwrap();
    assert!(all.iter().all(|r| id_of(r) != gone));
    sim.shutdown().await;
}

#[tokio::test]
async fn get_deleted_older_than_fifteen_days_is_a_clear_error() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let end = now(&sim).await;
    let start = end - ChronoDuration::days(20);
    let err = client.deleted("Contact", start, end).await.unwrap_err();
    match &err {
        Error::DeletedTooOld { start: s, earliest } => {
            assert_eq!(*s, start);
            // The org's own horizon: 15 days before its clock, not ours.
            let horizon = end - ChronoDuration::days(15);
            assert!(
                (*earliest - horizon).num_minutes().abs() <= 1,
                "{earliest} vs {horizon}"
            );
        }
        other => panic!("expected DeletedTooOld, got {other:?}"),
    }
    assert!(err.to_string().contains("15 days"), "{err}");
    sim.shutdown().await;
}
