//! `stream = true`: the opt-in to Change Data Capture delivery, and the objects that cannot
//! have it.

use sfsync_mapping::Config;

fn config(object: &str, stream: &str) -> String {
    format!(
        r#"[salesforce]
login_url = "https://acme.my.salesforce.com"
auth = "client_credentials"
client_id = "${{secret:sf_client_id}}"
client_secret = "${{secret:sf_client_secret}}"

[[syncs]]
name = "things"
object = "{object}"
kind = "objects"
group_id = "Id"
object_type_id = "1"
{stream}
"#
    )
}

#[test]
fn stream_is_off_unless_asked_for_and_on_when_it_is() {
    let off = Config::parse(&config("Account", "")).expect("valid");
    assert!(!off.syncs[0].stream);
    let on = Config::parse(&config("Project__c", "stream = true")).expect("valid");
    assert!(on.syncs[0].stream);
}

#[test]
fn stream_on_an_object_without_change_events_names_the_key_and_line() {
    for (object, why) in [
        ("AccountHistory", "field history objects"),
        ("Settings__mdt", "custom metadata types"),
        ("Order_Placed__e", "platform events"),
    ] {
        let err = Config::parse(&config(object, "stream = true")).expect_err("refused");
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|p| p.starts_with("line 13: syncs[0].stream: ") && p.contains(why)),
            "{object}: {text:#?}"
        );
    }
}

#[test]
fn a_stream_value_that_is_not_a_boolean_is_refused() {
    let err = Config::parse(&config("Contact", "stream = \"yes\"")).expect_err("refused");
    assert!(
        err.problems
            .iter()
            .any(|p| p.to_string().contains("stream")),
        "{:?}",
        err.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    );
}
