//! Describe-based validation with suggestions, plans, caches and check_online.

use sfsync_mapping::config::SyncKind;
use sfsync_salesforce::{Error, FieldProblem};
use sfsync_simulator::{Org, OrgSpec};

use crate::common::*;

fn problem<'a>(problems: &'a [FieldProblem], key: &str) -> &'a FieldProblem {
    problems
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("no problem for {key} in {problems:?}"))
}

#[tokio::test]
async fn unknown_object_is_reported_with_a_suggestion() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let problems = client
        .check_sync(&contacts_sync(&["Email"]).clone_with_object("Contcat"))
        .await
        .unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = problem(&problems, "object");
    assert!(
        p.message.contains("did you mean \"Contact\""),
        "{}",
        p.message
    );
    sim.shutdown().await;
}

trait WithObject {
    fn clone_with_object(&self, object: &str) -> Self;
}

impl WithObject for sfsync_mapping::SyncConfig {
    fn clone_with_object(&self, object: &str) -> Self {
        let mut s = self.clone();
        s.object = object.to_string();
        s
    }
}

#[tokio::test]
async fn invalid_fields_are_reported_with_suggestions() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let mut sync = contacts_sync(&[
        "Emial",
        "Acount.Name",
        "Account.Nme",
        "AccountId.Name",
        "Account",
        "Tier",
        "LastName",
        "Account.Owner.Emal",
    ]);
    sync.user_id = Some("Idd".into());
    let problems = client.check_sync(&sync).await.unwrap();
    let msg = |key: &str| problem(&problems, key).message.clone();
    assert!(
        msg("user_id").contains("did you mean \"Id\""),
        "{}",
        msg("user_id")
    );
    assert!(
        msg("fields[0]").contains("did you mean \"Email\""),
        "{}",
        msg("fields[0]")
    );
    assert!(
        msg("fields[1]").contains("did you mean \"Account\""),
        "{}",
        msg("fields[1]")
    );
    assert!(
        msg("fields[2]").contains("did you mean \"Name\""),
        "{}",
        msg("fields[2]")
    );
    assert!(
        msg("fields[3]").contains("Account.Name"),
        "{}",
        msg("fields[3]")
    );
    assert!(
        msg("fields[4]").contains("relationship"),
        "{}",
        msg("fields[4]")
    );
    assert!(msg("fields[5]").contains("Tier__c"), "{}", msg("fields[5]"));
    assert!(
        msg("fields[7]").contains("did you mean \"Email\""),
        "{}",
        msg("fields[7]")
    );
    assert!(problems.iter().all(|p| p.key != "fields[6]"));
    assert_eq!(problems.len(), 8, "{problems:?}");

    match client.plan(&sync).await {
        Err(Error::InvalidSync { problems: p }) => assert_eq!(p, problems),
        other => panic!("expected InvalidSync, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn plan_canonicalises_names_and_skips_missing_optional_fields() {
    let spec = OrgSpec {
        name_parts: false,
        ..OrgSpec::tiny()
    };
    let sim = start(Org::generate(&spec)).await;
    let client = client(&sim.url());
    let plan = client
        .plan(&contacts_sync(&[
            "email",
            "MiddleName",
            "account.name",
            "Suffix",
        ]))
        .await
        .unwrap();
    assert_eq!(plan.object, "Contact");
    assert_eq!(
        plan.select,
        ["Id", "SystemModstamp", "IsDeleted", "Email", "Account.Name"]
    );
    assert_eq!(plan.missing_optional, ["MiddleName", "Suffix"]);
    assert!(plan.bulk_supported);
    assert_eq!(plan.columns[4].hops[0].reference_field, "AccountId");

    // With name parts enabled they are selected.
    let sim2 = start(Org::generate(&OrgSpec::tiny())).await;
    let plan = crate::common::client(&sim2.url())
        .plan(&contacts_sync(&["MiddleName"]))
        .await
        .unwrap();
    assert!(plan.select.iter().any(|f| f == "MiddleName"));
    assert!(plan.missing_optional.is_empty());
    sim.shutdown().await;
    sim2.shutdown().await;
}

#[tokio::test]
async fn malformed_where_is_reported_by_check_sync() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let mut sync = contacts_sync(&["Email"]);
    sync.where_clause = Some("Emial = 'x'".into());
    let problems = client.check_sync(&sync).await.unwrap();
    assert!(
        problem(&problems, "where").message.contains("Emial"),
        "{problems:?}"
    );
    sync.where_clause = Some("Email = 'x'".into());
    assert!(client.check_sync(&sync).await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn describes_are_cached_per_client() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let a = client.describe("Contact").await.unwrap();
    let b = client.clone().describe("contact").await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    client.describe_global().await.unwrap();
    client.describe_global().await.unwrap();
    assert_eq!(client.usage().calls, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn check_online_keys_problems_by_sync() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let demo = sfsync_simulator::Credentials::demo();
    let text = format!(
        r#"
[salesforce]
login_url = "{url}"
auth = "client_credentials"
client_id = "{id}"
client_secret = "{secret}"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email"]

[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name", "Webiste", "Industry"]
"#,
        url = sim.url(),
        id = demo.client_id,
        secret = demo.client_secret
    );
    let config = sfsync_mapping::Config::parse(&text).unwrap();
    let problems = sfsync_salesforce::check_online(&config).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "syncs[1].fields[1]");
    assert!(problems[0].message.contains("did you mean \"Website\""));

    let mut bad = config.clone();
    bad.salesforce.client_secret = Some("wrong-secret-value".into());
    let err = sfsync_salesforce::check_online(&bad).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn relationships_sync_validates_both_ids() {
    let sim = start(Org::generate(&OrgSpec::tiny())).await;
    let client = client(&sim.url());
    let mut acr = sync(
        "acr",
        "AccountContactRelation",
        SyncKind::Relationships,
        &["Roles", "IsDirect"],
    );
    acr.user_id = Some("ContactId".into());
    acr.group_id = Some("AccountId".into());
    acr.object_type_id = Some("1".into());
    assert!(client.check_sync(&acr).await.unwrap().is_empty());
    acr.group_id = Some("AccountIdd".into());
    let problems = client.check_sync(&acr).await.unwrap();
    assert!(problem(&problems, "group_id").message.contains("AccountId"));
    sim.shutdown().await;
}
