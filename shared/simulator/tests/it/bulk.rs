//! Bulk API 2.0 query jobs: lifecycle, CSV pages and quoting, failures.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sfsync_simulator::{Faults, Org, OrgSpec};

use crate::common::{Api, V, obj, start, start_with};

fn jobs() -> String {
    format!("/services/data/v{V}/jobs/query")
}

async fn create(api: &Api, operation: &str, soql: &str) -> Value {
    let r = api
        .post_json(&jobs(), &json!({"operation": operation, "query": soql}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()
}

async fn poll(api: &Api, id: &str) -> Value {
    api.get(&format!("{}/{id}", jobs())).await.json()
}

/// Polls until a terminal state, returning the states seen.
async fn poll_to_end(api: &Api, id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let info = poll(api, id).await;
        let state = info["state"].as_str().unwrap_or("").to_string();
        seen.push(state.clone());
        if matches!(state.as_str(), "JobComplete" | "Failed" | "Aborted") {
            break;
        }
    }
    seen
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn lifecycle_and_paged_results() {
    let api = start(Org::generate(&OrgSpec::demo())).await;
    let job = create(
        &api,
        "query",
        "SELECT Id, LastName, Account.Name, SystemModstamp FROM Contact",
    )
    .await;
    assert_eq!(job["state"], "UploadComplete");
    assert_eq!(job["operation"], "query");
    assert_eq!(job["object"], "Contact");
    let id = job["id"].as_str().unwrap_or("").to_string();
    assert!(id.starts_with("750") && id.len() == 18);

    // Results before completion are refused.
    let early = api.get(&format!("{}/{id}/results", jobs())).await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        poll_to_end(&api, &id).await,
        vec!["InProgress", "JobComplete"]
    );
    assert_eq!(poll(&api, &id).await["numberRecordsProcessed"], 295);

    let mut rows = Vec::new();
    let mut locator: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("{}/{id}/results?maxRecords=100", jobs());
        if let Some(l) = &locator {
            path.push_str(&format!("&locator={l}"));
        }
        let r = api.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.header("content-type").starts_with("text/csv"));
        let table = parse_csv(&r.text);
        assert_eq!(
            table[0],
            vec!["Id", "LastName", "Account.Name", "SystemModstamp"],
            "every page repeats the header"
        );
        let n: usize = r
            .header("sforce-numberofrecords")
            .parse()
            .unwrap_or(usize::MAX);
        assert_eq!(n, table.len() - 1);
        rows.extend(table.into_iter().skip(1));
        pages += 1;
        let next = r.header("sforce-locator");
        if next == "null" {
            break;
        }
        locator = Some(next);
    }
    assert_eq!(pages, 3);
    assert_eq!(rows.len(), 295);
    assert!(
        rows.iter()
            .all(|r| r[3].ends_with(".000Z") && r[3].len() == 24)
    );
    // Private contacts have no account: the parent column is empty.
    assert!(rows.iter().any(|r| r[2].is_empty()));
    assert!(rows.iter().any(|r| !r[2].is_empty()));
    assert_eq!(api.sim.stats().bulk_jobs, 1);

    // queryAll includes the Recycle Bin.
    let all = create(&api, "queryAll", "SELECT Id, IsDeleted FROM Contact").await;
    let all_id = all["id"].as_str().unwrap_or("").to_string();
    poll_to_end(&api, &all_id).await;
    let r = api.get(&format!("{}/{all_id}/results", jobs())).await;
    let table = parse_csv(&r.text);
    assert_eq!(table.len() - 1, 300);
    assert!(table.iter().skip(1).any(|r| r[1] == "true"));
    assert!(table.iter().skip(1).any(|r| r[1] == "false"));
    assert_eq!(r.header("sforce-locator"), "null");
}

#[tokio::test]
async fn csv_quotes_every_value() {
    let mut org = Org::empty();
    let tricky = "He said \"hi\", then\nleft";
    org.insert(
        "Contact",
        obj(json!({"LastName": "Q", "Title": tricky, "Description": null})),
    );
    let api = start_with(
        org,
        Faults {
            bulk_polls_before_complete: 0,
            ..Faults::default()
        },
    )
    .await;
    let job = create(
        &api,
        "query",
        "SELECT LastName, Title, Description, DoNotCall FROM Contact",
    )
    .await;
    let id = job["id"].as_str().unwrap_or("").to_string();
    assert_eq!(poll_to_end(&api, &id).await, vec!["JobComplete"]);
    let r = api.get(&format!("{}/{id}/results", jobs())).await;
    assert_eq!(
        r.text,
        "\"LastName\",\"Title\",\"Description\",\"DoNotCall\"\n\"Q\",\"He said \"\"hi\"\", then\nleft\",\"\",\"false\"\n"
    );
    assert_eq!(parse_csv(&r.text)[1][1], tricky);
}

#[tokio::test]
async fn compound_fields_are_refused_at_creation_and_forced_states_fail_the_job() {
    let api = start(Org::generate(&OrgSpec::tiny())).await;
    let refused = api
        .post_json(
            &jobs(),
            &json!({"operation": "query", "query": "SELECT Id, MailingAddress FROM Contact"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json()[0]["message"],
        "Selecting compound data not supported in Bulk Query"
    );
    assert_eq!(api.sim.stats().bulk_jobs, 0, "no job exists");

    // Bad SOQL is refused when the job is created.
    let bad = api
        .post_json(
            &jobs(),
            &json!({"operation": "query", "query": "SELECT Nope FROM Contact"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_code(), "INVALID_FIELD");
    let bad = api
        .post_json(
            &jobs(),
            &json!({"operation": "upsert", "query": "SELECT Id FROM Contact"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    for forced in ["Failed", "Aborted"] {
        api.sim.set_faults(Faults {
            bulk_final_state: Some(forced.to_string()),
            bulk_polls_before_complete: 2,
            ..Faults::default()
        });
        let job = create(&api, "query", "SELECT Id FROM Contact").await;
        let id = job["id"].as_str().unwrap_or("").to_string();
        let states = poll_to_end(&api, &id).await;
        assert_eq!(states, vec!["InProgress", "InProgress", forced]);
        if forced == "Failed" {
            assert!(poll(&api, &id).await["errorMessage"].is_string());
        }
    }

    // A client can abort a running job.
    api.sim.set_faults(Faults::default());
    let job = create(&api, "query", "SELECT Id FROM Contact").await;
    let id = job["id"].as_str().unwrap_or("").to_string();
    let r = api
        .patch_json(&format!("{}/{id}", jobs()), &json!({"state": "Aborted"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "Aborted");
    assert_eq!(poll(&api, &id).await["state"], "Aborted");
}

#[tokio::test]
async fn a_job_is_gone_after_seven_days() {
    let api = start(Org::generate(&OrgSpec::tiny())).await;
    let job = create(&api, "query", "SELECT Id FROM Contact").await;
    let id = job["id"].as_str().unwrap_or("").to_string();
    assert_eq!(
        poll_to_end(&api, &id).await.last().map(String::as_str),
        Some("JobComplete")
    );
    let r = api.get(&format!("{}/{id}/results", jobs())).await;
    assert_eq!(r.status, StatusCode::OK);
    api.sim
        .org()
        .lock()
        .unwrap()
        .advance_clock(chrono::Duration::days(7) + chrono::Duration::seconds(1));
    let r = api.get(&format!("{}/{id}/results", jobs())).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "NOT_FOUND");
    assert_eq!(
        api.get(&format!("{}/{id}", jobs())).await.status,
        StatusCode::NOT_FOUND
    );
}
