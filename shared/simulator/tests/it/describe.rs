//! Describe metadata and record retrieval.

use reqwest::StatusCode;
use serde_json::Value;
use sfsync_simulator::{Org, OrgSpec};

use crate::common::{V, start, tiny};

fn field<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn global_and_object_describe() {
    let api = tiny().await;
    let global = api
        .get(&format!("/services/data/v{V}/sobjects"))
        .await
        .json();
    let objects = global["sobjects"].as_array().cloned().unwrap_or_default();
    assert_eq!(objects.len(), 11);
    let project = objects
        .iter()
        .find(|o| o["name"] == "Project__c")
        .cloned()
        .unwrap_or_default();
    assert_eq!(project["custom"], true);
    assert_eq!(project["keyPrefix"], "a0X");
    assert_eq!(project["queryable"], true);
    assert_eq!(project["replicateable"], true);

    let contact = api
        .get(&format!("/services/data/v{V}/sobjects/contact/describe"))
        .await
        .json();
    assert_eq!(contact["name"], "Contact");
    let addr = field(&contact, "MailingAddress");
    assert_eq!(addr["type"], "address");
    assert_eq!(
        field(&contact, "MailingCity")["compoundFieldName"],
        "MailingAddress"
    );
    assert_eq!(field(&contact, "MiddleName")["type"], "string");
    let account_id = field(&contact, "AccountId");
    assert_eq!(account_id["type"], "reference");
    assert_eq!(account_id["referenceTo"][0], "Account");
    assert_eq!(account_id["relationshipName"], "Account");
    assert_eq!(account_id["nillable"], true);
    assert_eq!(field(&contact, "LastName")["nillable"], false);
    for f in [
        "Id",
        "CreatedDate",
        "LastModifiedDate",
        "SystemModstamp",
        "IsDeleted",
        "OwnerId",
    ] {
        assert!(field(&contact, f).is_object(), "Contact.{f}");
    }
    let task = api
        .get(&format!("/services/data/v{V}/sobjects/Task/describe"))
        .await
        .json();
    assert_eq!(
        field(&task, "WhoId")["referenceTo"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(field(&task, "WhoId")["relationshipName"], "Who");
    let project = api
        .get(&format!("/services/data/v{V}/sobjects/Project__c/describe"))
        .await
        .json();
    assert_eq!(
        field(&project, "Account__c")["relationshipName"],
        "Account__r"
    );
    assert_eq!(field(&project, "Budget__c")["custom"], true);
    assert_eq!(field(&project, "Budget__c")["type"], "currency");
    let acr = api
        .get(&format!(
            "/services/data/v{V}/sobjects/AccountContactRelation/describe"
        ))
        .await
        .json();
    assert_eq!(field(&acr, "Roles")["type"], "multipicklist");
    let user = api
        .get(&format!("/services/data/v{V}/sobjects/User/describe"))
        .await
        .json();
    assert!(
        field(&user, "IsDeleted").is_null(),
        "User has no IsDeleted in Salesforce"
    );

    let missing = api
        .get(&format!("/services/data/v{V}/sobjects/Nope/describe"))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "NOT_FOUND");
}

#[tokio::test]
async fn name_parts_are_an_org_option() {
    let api = start(Org::generate(&OrgSpec {
        name_parts: false,
        ..OrgSpec::tiny()
    }))
    .await;
    let contact = api
        .get(&format!("/services/data/v{V}/sobjects/Contact/describe"))
        .await
        .json();
    assert!(field(&contact, "MiddleName").is_null());
    assert!(field(&contact, "Suffix").is_null());
    let r = api.query("SELECT Id, MiddleName FROM Contact").await;
    assert_eq!(r.error_code(), "INVALID_FIELD");
}

#[tokio::test]
async fn retrieve_one_record() {
    let api = tiny().await;
    let id = api.sim.org().lock().expect("org").records("Account")[0]["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let r = api
        .get(&format!("/services/data/v{V}/sobjects/Account/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.starts_with("{\"attributes\":{\"type\":\"Account\""));
    assert_eq!(r.json()["Id"], id);
    let r = api
        .get(&format!(
            "/services/data/v{V}/sobjects/Account/001000000000000AAA"
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
