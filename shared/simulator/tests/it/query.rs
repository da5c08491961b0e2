//! REST query/queryAll: paging, record shape, filters, errors, incremental patterns.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sfsync_simulator::{Org, OrgSpec};

use crate::common::{Api, V, obj, start, tiny};

fn spec_700() -> OrgSpec {
    OrgSpec {
        contacts: 700,
        soft_deleted: 10,
        tie_block: 300,
        ..OrgSpec::tiny()
    }
}

/// `2024-05-01T12:34:56.000+0000` → a SOQL literal `2024-05-01T12:34:56.000Z`.
fn soql_dt(rest: &str) -> String {
    let dt = DateTime::parse_from_str(rest, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap_or_else(|e| panic!("{rest}: {e}"));
    dt.with_timezone(&Utc)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn key(r: &Value) -> (String, String) {
    (
        r["SystemModstamp"].as_str().unwrap_or("").to_string(),
        r["Id"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn pages_follow_batch_size_and_next_records_url() {
    let api = start(Org::generate(&spec_700())).await;
    let soql = "SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id";
    let first = api.query_batch("query", soql, Some(200)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let page = first.json();
    assert_eq!(page["totalSize"], 690);
    assert_eq!(page["done"], false);
    assert_eq!(page["records"].as_array().map(Vec::len), Some(200));
    let next = page["nextRecordsUrl"].as_str().unwrap_or("").to_string();
    assert!(
        next.starts_with(&format!("/services/data/v{V}/query/01g")),
        "{next}"
    );
    assert!(next.ends_with("-200"), "{next}");
    // Key order of the page object itself.
    assert!(
        first
            .text
            .starts_with("{\"totalSize\":690,\"done\":false,\"nextRecordsUrl\":")
    );

    let second = api.get(&next).await;
    assert_eq!(second.json()["totalSize"], 690);
    // Fetching the same locator again returns the same page (safe retries).
    let again = api.get(&next).await;
    assert_eq!(second.text, again.text);

    let all = api.query_records("query", soql, Some(200)).await;
    assert_eq!(all.len(), 690);
    let keys: Vec<_> = all.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ORDER BY SystemModstamp, Id");
    let unique: HashSet<_> = keys.iter().map(|k| k.1.clone()).collect();
    assert_eq!(unique.len(), 690);
    // 700/200 → pages of 200, 200, 200, 90: 4 query calls in total for that walk.
    let before = api.sim.stats().query_calls;
    let _ = api.query_records("query", soql, Some(200)).await;
    assert_eq!(api.sim.stats().query_calls - before, 4);

    // Default page size is 2000; below-minimum sizes are raised to 200.
    let whole = api.query(soql).await.json();
    assert_eq!(whole["done"], true);
    assert!(whole.get("nextRecordsUrl").is_none());
    assert_eq!(whole["records"].as_array().map(Vec::len), Some(690));
    let clamped = api.query_batch("query", soql, Some(50)).await.json();
    assert_eq!(clamped["records"].as_array().map(Vec::len), Some(200));
}

#[tokio::test]
async fn query_hides_and_query_all_shows_deleted() {
    let api = start(Org::generate(&spec_700())).await;
    let count = |r: crate::common::Reply| r.json()["totalSize"].as_u64();
    assert_eq!(
        count(api.query("SELECT COUNT() FROM Contact").await),
        Some(690)
    );
    assert_eq!(
        count(api.query_all("SELECT COUNT() FROM Contact").await),
        Some(700)
    );
    let c = api.query("SELECT COUNT() FROM Contact").await.json();
    assert_eq!(c, json!({"totalSize": 690, "done": true, "records": []}));
    assert_eq!(
        count(
            api.query("SELECT Id FROM Contact WHERE IsDeleted = true")
                .await
        ),
        Some(0)
    );
    let deleted = api
        .query_records(
            "queryAll",
            "SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true",
            None,
        )
        .await;
    assert_eq!(deleted.len(), 10);
    assert!(deleted.iter().all(|r| r["IsDeleted"] == true));

    // A hard delete is invisible to both.
    let id = deleted[0]["Id"].as_str().unwrap_or("").to_string();
    assert!(
        api.sim
            .org()
            .lock()
            .expect("org")
            .hard_delete("Contact", &id)
    );
    assert_eq!(
        count(api.query_all("SELECT COUNT() FROM Contact").await),
        Some(699)
    );
}

#[tokio::test]
async fn keyset_paging_over_tie_blocks_loses_nothing() {
    let api = start(Org::generate(&spec_700())).await;
    let base = "SELECT Id, SystemModstamp FROM Contact";
    let mut seen = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    for _ in 0..20 {
        let soql = match &cursor {
            None => format!("{base} ORDER BY SystemModstamp ASC, Id ASC LIMIT 150"),
            Some((ts, id)) => {
                let t = soql_dt(ts);
                format!(
                    "{base} WHERE (SystemModstamp > {t} OR (SystemModstamp = {t} AND Id > '{id}')) ORDER BY SystemModstamp ASC, Id ASC LIMIT 150"
                )
            }
        };
        let page = api.query(&soql).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let records = page.json()["records"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if records.is_empty() {
            break;
        }
        cursor = records.last().map(key);
        seen.extend(records.iter().map(|r| key(r).1));
    }
    assert_eq!(seen.len(), 690);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 690);
    // The tie block really is there: 300 rows share one stamp.
    let all = api.query_records("query", base, None).await;
    let mut by_stamp = std::collections::HashMap::<String, usize>::new();
    for r in &all {
        *by_stamp.entry(key(r).0).or_default() += 1;
    }
    assert!(by_stamp.values().any(|n| *n >= 290), "{by_stamp:?}");
}

async fn shaped_org() -> (Api, String, String, String) {
    let mut org = Org::empty();
    let account = org.insert("Account", obj(json!({"Name": "Acme, Inc."})));
    let with = org.insert(
        "Contact",
        obj(json!({
            "FirstName": "Zoë", "LastName": "山田", "AccountId": account,
            "Email": "zoe@example.com", "Score__c": 12.0,
            "MailingAddress": {"street": "1 Main St\nSuite 4", "city": "Kraków", "latitude": 50.06},
        })),
    );
    let without = org.insert(
        "Contact",
        obj(json!({"LastName": "O'Brien", "Birthdate": "1980-02-29"})),
    );
    org.insert(
        "Task",
        obj(json!({"Subject": "Call", "WhoId": with, "Status": "Completed", "Priority": "Normal"})),
    );
    org.insert(
        "Task",
        obj(json!({"Subject": "Orphan", "Status": "Not Started", "Priority": "Low"})),
    );
    (start(org).await, account, with, without)
}

#[tokio::test]
async fn records_have_rest_shape() {
    let (api, account, with, without) = shaped_org().await;
    let r = api
        .query("select id, firstname, lastname, name, account.name, account.owner.name, mailingaddress, score__c, birthdate, systemmodstamp from contact order by lastname")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.text.contains(&format!(
            "\"records\":[{{\"attributes\":{{\"type\":\"Contact\",\"url\":\"/services/data/v{V}/sobjects/Contact/"
        )),
        "{}",
        r.text
    );
    // Keys in SELECT order and canonical casing.
    let first = r.text.find("\"Id\"").unwrap_or(0);
    let positions: Vec<usize> = [
        "\"FirstName\"",
        "\"LastName\"",
        "\"Name\"",
        "\"Account\"",
        "\"MailingAddress\"",
        "\"Score__c\"",
        "\"Birthdate\"",
        "\"SystemModstamp\"",
    ]
    .iter()
    .map(|k| r.text[first..].find(k).map(|p| p + first).unwrap_or(0))
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{positions:?} in {}",
        r.text
    );

    let records = r.json()["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 2);
    // "O'Brien" sorts before "山田".
    let (plain, full) = (&records[0], &records[1]);
    assert_eq!(plain["Id"], without);
    assert_eq!(plain["Account"], Value::Null);
    assert_eq!(plain["MailingAddress"], Value::Null);
    assert_eq!(plain["FirstName"], Value::Null);
    assert_eq!(plain["Name"], "O'Brien");
    assert_eq!(plain["Birthdate"], "1980-02-29");

    assert_eq!(full["Id"], with);
    assert_eq!(full["Name"], "Zoë 山田");
    assert_eq!(full["Score__c"], 12.0);
    assert!(r.text.contains("\"Score__c\":12.0"));
    assert_eq!(full["Account"]["attributes"]["type"], "Account");
    assert_eq!(
        full["Account"]["attributes"]["url"],
        format!("/services/data/v{V}/sobjects/Account/{account}")
    );
    assert_eq!(full["Account"]["Name"], "Acme, Inc.");
    assert_eq!(
        full["Account"]["Owner"],
        Value::Null,
        "no User rows: dangling owner"
    );
    assert_eq!(
        full["MailingAddress"],
        json!({"city": "Kraków", "country": null, "geocodeAccuracy": null, "latitude": 50.06,
               "longitude": null, "postalCode": null, "state": null, "street": "1 Main St\nSuite 4"})
    );
    let stamp = full["SystemModstamp"].as_str().unwrap_or("");
    assert_eq!(stamp.len(), 28, "{stamp}");
    assert!(stamp.ends_with(".000+0000"), "{stamp}");
}

#[tokio::test]
async fn polymorphic_who_and_filters() {
    let (api, account, with, without) = shaped_org().await;
    let tasks = api
        .query_records(
            "query",
            "SELECT Subject, Who.Name, Who.Type, WhoId FROM Task ORDER BY Subject",
            None,
        )
        .await;
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["Who"]["attributes"]["type"], "Name");
    assert_eq!(
        tasks[0]["Who"]["attributes"]["url"],
        format!("/services/data/v{V}/sobjects/Contact/{with}")
    );
    assert_eq!(tasks[0]["Who"]["Name"], "Zoë 山田");
    assert_eq!(tasks[0]["Who"]["Type"], "Contact");
    assert_eq!(tasks[1]["Who"], Value::Null);
    assert_eq!(tasks[1]["WhoId"], Value::Null);

    let ids = |recs: Vec<Value>| -> Vec<String> {
        recs.iter()
            .map(|r| r["Id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let q = |w: &str| format!("SELECT Id FROM Contact WHERE {w}");
    assert_eq!(
        ids(api
            .query_records("query", &q("Account.Name = 'ACME, inc.'"), None)
            .await),
        vec![with.clone()]
    );
    assert_eq!(
        ids(api
            .query_records("query", &q("AccountId = null"), None)
            .await),
        vec![without.clone()]
    );
    assert_eq!(
        ids(api
            .query_records(
                "query",
                &q(&format!(
                    "AccountId != null AND AccountId = '{}'",
                    &account[..15]
                )),
                None
            )
            .await),
        vec![with.clone()]
    );
    assert_eq!(
        ids(api
            .query_records("query", &q("LastName LIKE 'o\\'b%'"), None)
            .await),
        vec![without.clone()]
    );
    assert_eq!(
        ids(api
            .query_records("query", &q("Email IN ('zoe@example.com', 'x@y')"), None)
            .await),
        vec![with.clone()]
    );
    assert_eq!(
        ids(api
            .query_records("query", &q("NOT (Email != null)"), None)
            .await),
        vec![without.clone()]
    );
    assert_eq!(
        ids(api
            .query_records("query", &q("Birthdate < 1990-01-01"), None)
            .await),
        vec![without.clone()]
    );
    assert_eq!(
        ids(api.query_records("query", &q("Score__c >= 12"), None).await),
        vec![with.clone()]
    );
    let limited = api.query("SELECT Id FROM Contact LIMIT 1").await.json();
    assert_eq!(limited["totalSize"], 1);
}

#[tokio::test]
async fn query_errors_have_salesforce_shape() {
    let api = tiny().await;
    let r = api.query("SELECT Id FROM Contact WHERE").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MALFORMED_QUERY");
    assert!(
        r.json()[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ERROR at Row:1:Column:"))
    );

    let r = api.query("SELECT Id, Foo FROM Contact").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_FIELD");
    let msg = r.json()[0]["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains("No such column 'Foo' on entity 'Contact'"),
        "{msg}"
    );
    assert!(
        msg.starts_with("\nSELECT Id, Foo FROM Contact\n           ^\nERROR at Row:1:Column:12\n"),
        "{msg:?}"
    );

    let r = api.query("SELECT Id FROM Widget__c").await;
    assert_eq!(r.error_code(), "INVALID_TYPE");
    let r = api
        .query("SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01T00:00:00Z'")
        .await;
    assert_eq!(r.error_code(), "INVALID_FIELD");
    // User has no IsDeleted in Salesforce.
    let r = api.query("SELECT Id, IsDeleted FROM User").await;
    assert_eq!(r.error_code(), "INVALID_FIELD");
    let r = api
        .query("SELECT Id FROM Contact WHERE a = 1 AND b = 2 OR c = 3")
        .await;
    assert_eq!(r.error_code(), "MALFORMED_QUERY");

    // An unencoded '+' in the URL is a space: the datetime literal breaks, as on Salesforce.
    let raw = api
        .http
        .get(format!(
            "{}/services/data/v{V}/query?q=SELECT+Id+FROM+Contact+WHERE+SystemModstamp+>+2024-01-01T00:00:00+00:00",
            api.url()
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await.expect("json");
    assert_eq!(body[0]["errorCode"], "MALFORMED_QUERY");
    // Encoded properly, the same literal works.
    let ok = api
        .query("SELECT Id FROM Contact WHERE SystemModstamp > 2024-01-01T00:00:00+00:00")
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);

    let r = api.get(&format!("/services/data/v{V}/query")).await;
    assert_eq!(r.error_code(), "MALFORMED_QUERY");
    let r = api
        .get(&format!("/services/data/v{V}/query/01gNOPE-2000"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn every_api_response_carries_the_limit_header() {
    let api = tiny().await;
    let a = api.query("SELECT Id FROM Contact").await;
    let b = api.query("SELECT Id FROM Nope").await;
    assert_eq!(a.header("sforce-limit-info"), "api-usage=1/100000");
    assert_eq!(b.header("sforce-limit-info"), "api-usage=2/100000");
    let limits = api.get(&format!("/services/data/v{V}/limits")).await.json();
    assert_eq!(limits["DailyApiRequests"]["Max"], 100000);
    assert_eq!(limits["DailyApiRequests"]["Remaining"], 100000 - 3);
    let stats = api.sim.stats();
    assert_eq!(stats.api_calls, 3);
    assert_eq!(stats.query_calls, 2);
    assert_eq!(
        stats.by_path.get(&format!("GET /services/data/v{V}/query")),
        Some(&2)
    );
}

#[tokio::test]
async fn incremental_changes_and_late_commits() {
    let api = start(Org::generate(&OrgSpec::demo())).await;
    let all = api
        .query_records(
            "query",
            "SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id",
            None,
        )
        .await;
    let checkpoint = all.iter().map(key).max().unwrap_or_default().0;
    let since = |t: &str| {
        format!(
            "SELECT Id, Title, SystemModstamp FROM Contact WHERE SystemModstamp > {} ORDER BY SystemModstamp, Id",
            soql_dt(t)
        )
    };
    assert!(
        api.query_records("query", &since(&checkpoint), None)
            .await
            .is_empty()
    );

    let touched = {
        let org = api.sim.org();
        let mut org = org.lock().expect("org");
        org.touch_random("Contact", 25, 9)
    };
    assert_eq!(touched.len(), 25);
    let changed = api.query_records("query", &since(&checkpoint), None).await;
    let changed_ids: HashSet<String> = changed.iter().map(|r| key(r).1).collect();
    assert_eq!(changed_ids, touched.iter().cloned().collect());
    // One transaction: one shared SystemModstamp.
    assert_eq!(
        changed
            .iter()
            .map(|r| key(r).0)
            .collect::<HashSet<_>>()
            .len(),
        1
    );

    // A late commit lands behind the new checkpoint; only a look-back window finds it.
    let checkpoint2 = changed.iter().map(key).max().unwrap_or_default().0;
    let late_at: DateTime<Utc> = DateTime::parse_from_str(&checkpoint2, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
        - Duration::seconds(30);
    let late = api.sim.org().lock().expect("org").insert_late(
        "Contact",
        obj(json!({"LastName": "Late"})),
        late_at,
    );
    let after = api.query_records("query", &since(&checkpoint2), None).await;
    assert!(after.is_empty());
    let lookback = (late_at - Duration::minutes(5))
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string();
    let window = api.query_records("query", &since(&lookback), None).await;
    assert!(window.iter().any(|r| r["Id"] == late));

    // Replacing the org invalidates open cursors.
    let first = api
        .query_batch("query", "SELECT Id FROM Contact", Some(200))
        .await
        .json();
    let next = first["nextRecordsUrl"].as_str().unwrap_or("").to_string();
    *api.sim.org().lock().expect("org") = Org::generate(&OrgSpec::demo());
    let r = api.get(&next).await;
    assert_eq!(r.error_code(), "INVALID_QUERY_LOCATOR");
}

#[tokio::test]
async fn generated_orgs_answer_identically_for_a_seed() {
    let a = start(Org::generate(&OrgSpec::demo())).await;
    let b = start(Org::generate(&OrgSpec::demo())).await;
    let soql = "SELECT Id, Name, Email, Account.Name, MailingAddress, SystemModstamp FROM Contact";
    let ra = a.query_records("queryAll", soql, None).await;
    let rb = b.query_records("queryAll", soql, None).await;
    assert_eq!(ra.len(), 300);
    assert_eq!(ra, rb);
    let prefixes: Vec<(&str, &str)> = vec![
        ("Contact", "003"),
        ("Lead", "00Q"),
        ("User", "005"),
        ("Account", "001"),
        ("Opportunity", "006"),
        ("Campaign", "701"),
        ("CampaignMember", "00v"),
        ("Task", "00T"),
        ("AccountContactRelation", "07k"),
        ("OpportunityContactRole", "00K"),
        ("Project__c", "a0X"),
    ];
    for (object, prefix) in prefixes {
        let recs = a
            .query_records("query", &format!("SELECT Id FROM {object} LIMIT 5"), None)
            .await;
        assert!(!recs.is_empty(), "{object}");
        assert!(
            recs.iter().all(|r| r["Id"]
                .as_str()
                .is_some_and(|id| id.len() == 18 && id.starts_with(prefix))),
            "{object}"
        );
    }
}

/// A merge's loser leaves `query` and shows in `queryAll` with `MasterRecordId` naming the
/// winner; a converted Lead carries its conversion fields (SOAP API guide, merge() and
/// convertLead()).
#[tokio::test]
async fn merged_losers_show_in_query_all_with_their_master_and_conversions_show_on_the_lead() {
    let api = start(Org::empty()).await;
    let handle = api.sim.org();
    let (keep, lose, lead) = {
        let mut org = handle.lock().expect("org");
        let keep = org.insert("Contact", obj(json!({"LastName": "Keep"})));
        let lose = org.insert("Contact", obj(json!({"LastName": "Lose"})));
        let lead = org.insert(
            "Lead",
            obj(json!({"LastName": "L", "Company": "C", "Status": "Working - Contacted"})),
        );
        org.merge("Contact", &keep, &[&lose]).expect("merge");
        (keep, lose, lead)
    };
    let soql = "SELECT Id, IsDeleted, MasterRecordId FROM Contact";
    let live = api.query_records("query", soql, None).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["Id"], keep.as_str());
    let all = api.query_records("queryAll", soql, None).await;
    let loser = all.iter().find(|r| r["Id"] == lose.as_str());
    assert_eq!(
        loser.map(|r| r["MasterRecordId"].clone()),
        Some(json!(keep))
    );
    assert_eq!(loser.map(|r| r["IsDeleted"].clone()), Some(json!(true)));

    let done = {
        let mut org = handle.lock().expect("org");
        org.convert_lead(&lead, None, None).expect("convert")
    };
    let leads = api
        .query_records(
            "query",
            "SELECT Id, IsConverted, ConvertedContactId, ConvertedAccountId, ConvertedDate FROM Lead",
            None,
        )
        .await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["IsConverted"], true);
    assert_eq!(leads[0]["ConvertedContactId"], done.contact_id.as_str());
    assert_eq!(leads[0]["ConvertedAccountId"], done.account_id.as_str());
    assert!(leads[0]["ConvertedDate"].is_string());
}
