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
            .all(|r| Cursor::of_value(r).unwrap().modstamp >= start)
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
    let when = Cursor::of_value(record).unwrap().modstamp;
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

/// The org says which deletions it can still list: a start before a purge of its delete
/// log is answered with `earliestDateAvailable` after it (the gap), and the next call must
/// start at `latestDateCovered`, which a lagging org holds behind the requested end.
#[tokio::test]
async fn get_deleted_reports_the_gap_and_where_the_next_call_starts() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let start = now(&sim).await;
    let (purged, kept, purge_point) = {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        org.advance_clock(ChronoDuration::hours(1));
        let purged = org.insert("Contact", fields(json!({"LastName": "Purged early"})));
        assert!(org.hard_delete("Contact", &purged));
        org.advance_clock(ChronoDuration::hours(1));
        let purge_point = org.now();
        assert!(org.purge_delete_log("Contact", purge_point) >= 1);
        org.advance_clock(ChronoDuration::minutes(5));
        let kept = org.insert("Contact", fields(json!({"LastName": "Deleted later"})));
        assert!(org.hard_delete("Contact", &kept));
        org.advance_clock(ChronoDuration::minutes(5));
        (purged, kept, purge_point)
    };
    let end = now(&sim).await;
    let result = client
        .deleted_detailed("Contact", start, end)
        .await
        .unwrap();
    assert_eq!(result.gap_after(start), Some(purge_point));
    let ids: Vec<&str> = result.records.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&kept.as_str()) && !ids.contains(&purged.as_str()));
    // The simple call refuses to hide the gap.
    assert!(matches!(
        client.deleted("Contact", start, end).await,
        Err(Error::DeletedTooOld { .. })
    ));
    // Coverage lagging the org's clock by 5 minutes: the next start is that far back.
    sim.set_faults(sfsync_simulator::Faults {
        replication_lag: std::time::Duration::from_secs(300),
        ..sfsync_simulator::Faults::default()
    });
    let result = client
        .deleted_detailed("Contact", purge_point, end)
        .await
        .unwrap();
    let next = result.next_start(purge_point, end);
    assert!(next <= end - ChronoDuration::minutes(5), "{next} vs {end}");
    assert!(next > end - ChronoDuration::minutes(7), "{next} vs {end}");
    // A window of a minute or less is refused before it is sent.
    let calls = client.usage().calls;
    let err = client
        .deleted_detailed("Contact", end - ChronoDuration::seconds(60), end)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than one minute"), "{err}");
    assert_eq!(client.usage().calls, calls);
    sim.shutdown().await;
}

/// client_credentials against a generic login host is refused by the org, as Salesforce
/// refuses it anywhere but My Domain; the message says what Salesforce said.
#[tokio::test]
async fn client_credentials_on_a_generic_login_host_is_refused_by_the_org() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    sim.set_login_host(Some("login.salesforce.com"));
    let client = client(&sim.url());
    let err = client.authenticate().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("request not supported on this domain"),
        "{err}"
    );
    sim.set_login_host(Some("acme.my.salesforce.com"));
    client.authenticate().await.unwrap();
    sim.shutdown().await;
}

/// getDeleted lists a merge's loser like any deletion; `merged_into` names its winner
/// (queryAll of `MasterRecordId`), and says nothing of a plain delete.
#[tokio::test]
async fn merged_into_names_the_winner_of_each_merged_loser() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let (winner, loser, deleted) = {
        let org = sim.org();
        let mut org = org.lock().unwrap();
        let winner = org.insert("Contact", fields(json!({"LastName": "Winner"})));
        let loser = org.insert("Contact", fields(json!({"LastName": "Loser"})));
        let deleted = org.insert("Contact", fields(json!({"LastName": "Gone"})));
        org.merge("Contact", &winner, &[&loser]).unwrap();
        assert!(org.soft_delete("Contact", &deleted));
        (winner, loser, deleted)
    };
    let ids = vec![
        loser.clone(),
        deleted.clone(),
        "x' OR Name != '".to_string(),
    ];
    let merged = client.merged_into("Contact", &ids).await.unwrap();
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(merged.get(&loser), Some(&winner));
    assert!(client.merged_into("Bad Object", &ids).await.is_err());
}
