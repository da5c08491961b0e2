//! `conversions`: on by default for Lead people syncs keyed by Id, refused where there are
//! no conversions to follow.

use sfsync_mapping::Config;

fn config(object: &str, kind_and_ids: &str, extra: &str) -> String {
    format!(
        r#"[salesforce]
login_url = "https://acme.my.salesforce.com"
auth = "client_credentials"
client_id = "${{secret:sf_client_id}}"
client_secret = "${{secret:sf_client_secret}}"

[[syncs]]
name = "people"
object = "{object}"
{kind_and_ids}
{extra}
"#
    )
}

const PEOPLE: &str = "kind = \"people\"\nuser_id = \"Id\"";

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(err) => err.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn conversions_default_on_for_lead_people_syncs_and_can_be_turned_off() {
    let on = Config::parse(&config("Lead", PEOPLE, "")).expect("valid");
    assert!(on.syncs[0].converts_leads());
    let off = Config::parse(&config("Lead", PEOPLE, "conversions = false")).expect("valid");
    assert!(!off.syncs[0].converts_leads());
}

#[test]
fn conversions_on_a_sync_without_conversions_are_refused_naming_the_key() {
    let contact = problems(&config("Contact", PEOPLE, "conversions = true"));
    assert!(
        contact
            .iter()
            .any(|p| p.contains("syncs[0].conversions") && p.contains("only people syncs of Lead")),
        "{contact:#?}"
    );
    let by_email = problems(&config(
        "Lead",
        "kind = \"people\"\nuser_id = \"Email\"",
        "conversions = true",
    ));
    assert!(
        by_email
            .iter()
            .any(|p| p.contains("syncs[0].conversions") && p.contains("user_id = \"Id\"")),
        "{by_email:#?}"
    );
    let not_bool = problems(&config("Lead", PEOPLE, "conversions = \"yes\""));
    assert!(
        not_bool.iter().any(|p| p.contains("conversions")),
        "{not_bool:#?}"
    );
}

#[test]
fn a_run_takes_lead_conversions_after_the_other_syncs() {
    let text = format!(
        "{}\n[[syncs]]\nname = \"contacts\"\nobject = \"Contact\"\n{PEOPLE}\n\n[[syncs]]\nname = \"accounts\"\nobject = \"Account\"\nkind = \"objects\"\ngroup_id = \"Id\"\nobject_type_id = \"1\"\n",
        config("Lead", PEOPLE, "")
    );
    let config = Config::parse(&text).expect("valid");
    let names: Vec<&str> = config.syncs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["people", "contacts", "accounts"]);
    let order: Vec<&str> = sfsync_mapping::config::run_order(&config.syncs)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["contacts", "accounts", "people"]);
}
