//! The config file: the public contract, and an error for every way to get it wrong, each
//! naming its key and line.

use sfsync_mapping::config::{AuthFlow, ExtractApi};
use sfsync_mapping::secrets::SecretMap;
use sfsync_mapping::{Config, DestinationKind, SyncKind};

const FULL: &str = include_str!("../../../examples/sfsync.toml");

const BASE: &str = r#"[salesforce]
login_url = "https://acme.my.salesforce.com"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "Account.Name"]
"#;

/// Parses `text` and returns its problems as "line N: key: message" strings.
fn problems(text: &str) -> Vec<String> {
    match Config::parse(text) {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

fn assert_problem(text: &str, line: usize, key: &str, needle: &str) {
    let all = problems(text);
    let expected_prefix = format!("line {line}: {key}: ");
    assert!(
        all.iter()
            .any(|p| p.starts_with(&expected_prefix) && p.contains(needle)),
        "expected a problem at {expected_prefix}… containing {needle:?}, got {all:#?}"
    );
}

#[test]
fn the_example_config_is_valid_and_covers_every_kind_and_destination() {
    let config = Config::parse(FULL).unwrap_or_else(|e| panic!("{e}"));
    let kinds: std::collections::HashSet<_> = config.syncs.iter().map(|s| s.kind).collect();
    assert_eq!(kinds.len(), 4);
    let dests: std::collections::HashSet<_> =
        config.destinations.iter().map(|d| d.kind()).collect();
    for kind in [
        DestinationKind::Customerio,
        DestinationKind::CustomerioTrack,
        DestinationKind::Segment,
        DestinationKind::Rudderstack,
        DestinationKind::Mixpanel,
        DestinationKind::Amplitude,
        DestinationKind::Webhook,
        DestinationKind::File,
    ] {
        assert!(dests.contains(&kind), "example lacks {kind}");
    }
}

#[test]
fn the_issue_contract_parses_with_defaults() {
    let config = Config::parse(BASE).unwrap();
    assert_eq!(config.salesforce.auth, AuthFlow::ClientCredentials);
    assert_eq!(config.salesforce.api_version, "62.0");
    assert_eq!(config.salesforce.page_size, 2000);
    assert_eq!(config.salesforce.lookback_seconds, 300);
    let sync = config.sync("contacts").unwrap();
    assert_eq!(sync.kind, SyncKind::People);
    assert_eq!(sync.api, ExtractApi::Auto);
    assert!(!sync.deletes);
    assert_eq!(
        sync.select_fields(),
        vec![
            "Id",
            "SystemModstamp",
            "IsDeleted",
            "Email",
            "FirstName",
            "Account.Name"
        ]
    );
}

#[test]
fn secrets_are_not_resolved_by_parse() {
    let config = Config::parse(BASE).unwrap();
    assert_eq!(
        config.salesforce.client_secret.as_deref(),
        Some("${secret:sf_client_secret}")
    );
}

#[test]
fn resolving_references_reports_each_missing_secret_with_its_line() {
    let config = Config::parse(BASE).unwrap();
    let secrets = SecretMap::from_json(r#"{"sf_client_id":"abc"}"#).unwrap();
    let err = config.resolve_references(BASE, &secrets).unwrap_err();
    let all: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        all,
        vec!["line 5: salesforce.client_secret: secret \"sf_client_secret\" is not in the secrets"]
    );

    let secrets =
        SecretMap::from_json(r#"{"sf_client_id":"abc","sf_client_secret":"xyz"}"#).unwrap();
    let resolved = config.resolve_references(BASE, &secrets).unwrap();
    assert_eq!(resolved.salesforce.client_id, "abc");
    assert_eq!(resolved.salesforce.client_secret.as_deref(), Some("xyz"));
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let text = BASE.replace("kind = \"people\"", "kind = \"people\"\nuserid = \"Id\"");
    assert_problem(&text, 11, "syncs[0].userid", "unknown field `userid`");
    let text = BASE.replace("auth =", "colour = \"blue\"\nauth =");
    assert_problem(&text, 3, "salesforce.colour", "unknown field `colour`");
    let text = format!("{BASE}\n[extra]\na = 1\n");
    assert_problem(&text, 14, "extra", "unknown field `extra`");
}

#[test]
fn an_unknown_key_or_value_suggests_the_closest_valid_one() {
    let text = BASE.replace("client_secret =", "client_sercet =");
    assert_problem(
        &text,
        5,
        "salesforce.client_sercet",
        "did you mean \"client_secret\"?",
    );
    // The valid keys are still listed.
    assert_problem(&text, 5, "salesforce.client_sercet", "`login_url`");
    let text = BASE.replace("user_id =", "user_di =");
    assert_problem(&text, 11, "syncs[0].user_di", "did you mean \"user_id\"?");
    let text = BASE.replace("kind = \"people\"", "kind = \"peple\"");
    assert_problem(&text, 10, "syncs[0].kind", "did you mean \"people\"?");
    // Nothing close: no guess.
    let text = BASE.replace("auth =", "colour = \"blue\"\nauth =");
    let all = problems(&text);
    assert!(all.iter().all(|p| !p.contains("did you mean")), "{all:#?}");
}

#[test]
fn wrong_types_and_enum_values_are_named() {
    let text = BASE.replace("kind = \"people\"", "kind = \"persons\"");
    assert_problem(&text, 10, "syncs[0].kind", "unknown variant `persons`");
    let text = BASE.replace("auth = \"client_credentials\"", "auth = \"password\"");
    assert_problem(&text, 3, "salesforce.auth", "unknown variant `password`");
    let text = BASE.replace("fields = [", "deletes = \"yes\"\nfields = [");
    assert_problem(&text, 12, "syncs[0].deletes", "invalid type");
}

#[test]
fn toml_syntax_errors_have_a_line() {
    let text = BASE.replace("object = \"Contact\"", "object = Contact");
    let all = problems(&text);
    assert!(all.iter().any(|p| p.starts_with("line 9:")), "{all:?}");
}

#[test]
fn missing_required_keys() {
    let text = BASE.replace("login_url = \"https://acme.my.salesforce.com\"\n", "");
    assert!(
        problems(&text)
            .iter()
            .any(|p| p.contains("missing field `login_url`"))
    );
    let text = BASE.replace("user_id = \"Id\"\n", "");
    assert_problem(
        &text,
        7,
        "syncs[0].user_id",
        "required for kind = \"people\"",
    );
}

#[test]
fn every_kind_rule() {
    let with = |kind: &str, extra: &str| {
        BASE.replace(
            "kind = \"people\"\nuser_id = \"Id\"",
            &format!("kind = \"{kind}\"\n{extra}"),
        )
    };
    // objects need group_id and object_type_id; user_id optional.
    let text = with("objects", "");
    assert_problem(
        &text,
        7,
        "syncs[0].group_id",
        "required for kind = \"objects\"",
    );
    assert_problem(
        &text,
        7,
        "syncs[0].object_type_id",
        "required for kind = \"objects\"",
    );
    assert!(
        problems(&with(
            "objects",
            "group_id = \"Id\"\nobject_type_id = \"1\""
        ))
        .is_empty()
    );
    assert!(
        problems(&with(
            "objects",
            "group_id = \"Id\"\nobject_type_id = \"1\"\nuser_id = \"OwnerId\""
        ))
        .is_empty()
    );
    // relationships need all three.
    let text = with("relationships", "user_id = \"ContactId\"");
    assert_problem(
        &text,
        7,
        "syncs[0].group_id",
        "required for kind = \"relationships\"",
    );
    // events need a user and exactly one of event / event_field.
    let text = with("events", "user_id = \"WhoId\"");
    assert_problem(&text, 7, "syncs[0].event", "exactly one of");
    let text = with(
        "events",
        "user_id = \"WhoId\"\nevent = \"A\"\nevent_field = \"Subject\"",
    );
    assert_problem(&text, 12, "syncs[0].event", "exactly one of");
    assert!(
        problems(&with(
            "events",
            "user_id = \"WhoId\"\nevent_field = \"Subject\"\ntimestamp_field = \"ActivityDate\""
        ))
        .is_empty()
    );
    // keys that a kind does not use.
    let text = with("people", "user_id = \"Id\"\ngroup_id = \"AccountId\"");
    assert_problem(
        &text,
        12,
        "syncs[0].group_id",
        "not used by kind = \"people\"",
    );
    let text = with("people", "user_id = \"Id\"\nevent = \"X\"");
    assert_problem(&text, 12, "syncs[0].event", "not used by kind = \"people\"");
    let text = with(
        "objects",
        "group_id = \"Id\"\nobject_type_id = \"1\"\ntimestamp_field = \"CreatedDate\"",
    );
    assert_problem(
        &text,
        13,
        "syncs[0].timestamp_field",
        "not used by kind = \"objects\"",
    );
    let text = with(
        "events",
        "user_id = \"WhoId\"\nevent = \"X\"\ndeletes = true",
    );
    assert_problem(&text, 13, "syncs[0].deletes", "cannot be deleted");
}

#[test]
fn names_fields_and_values_are_checked() {
    let text = BASE.replace("name = \"contacts\"", "name = \"my contacts!\"");
    assert_problem(&text, 8, "syncs[0].name", "letters, digits");
    let text = BASE.replace("object = \"Contact\"", "object = \"Contact; DROP\"");
    assert_problem(&text, 9, "syncs[0].object", "not an sObject API name");
    let text = BASE.replace("\"Account.Name\"]", "\"Account..Name\", \"Email\"]");
    assert_problem(&text, 12, "syncs[0].fields[2]", "not a field name");
    assert_problem(&text, 12, "syncs[0].fields[3]", "listed twice");
    let text = format!("{BASE}where = \"IsConverted = false ORDER BY Name\"\n");
    assert_problem(&text, 13, "syncs[0].where", "condition only");
    let text = BASE.replace(
        "auth =",
        "api_version = \"62\"\npage_size = 5000\nmax_api_share = 1.5\nauth =",
    );
    assert_problem(&text, 3, "salesforce.api_version", "API version");
    assert_problem(&text, 4, "salesforce.page_size", "200..=2000");
    assert_problem(&text, 5, "salesforce.max_api_share", "(0, 1]");
    let text = BASE.replace("https://acme.my.salesforce.com", "acme.my.salesforce.com");
    assert_problem(&text, 2, "salesforce.login_url", "not an http(s) URL");
}

#[test]
fn duplicate_names() {
    let text = format!(
        "{BASE}\n[[syncs]]\nname = \"contacts\"\nobject = \"Lead\"\nkind = \"people\"\nuser_id = \"Id\"\n"
    );
    assert_problem(&text, 15, "syncs[1].name", "duplicate sync name");
}

#[test]
fn auth_flows_require_their_credentials() {
    let text = BASE.replace("auth = \"client_credentials\"", "auth = \"jwt_bearer\"");
    assert_problem(
        &text,
        1,
        "salesforce.username",
        "required by auth = \"jwt_bearer\"",
    );
    assert_problem(
        &text,
        1,
        "salesforce.private_key",
        "required by auth = \"jwt_bearer\"",
    );
    assert_problem(
        &text,
        5,
        "salesforce.client_secret",
        "not used by auth = \"jwt_bearer\"",
    );
    let text = BASE
        .replace("auth = \"client_credentials\"", "auth = \"refresh_token\"")
        .replace(
            "client_secret = \"${secret:sf_client_secret}\"",
            "refresh_token = \"${secret:rt}\"",
        );
    assert!(problems(&text).is_empty(), "{:?}", problems(&text));
}

#[test]
fn reference_syntax_is_checked_at_load() {
    let text = BASE.replace("${secret:sf_client_id}", "${secrets:sf_client_id}");
    assert_problem(&text, 4, "salesforce.client_id", "unknown reference");
    let text = BASE.replace("${secret:sf_client_id}", "${secret:sf_client_id");
    assert_problem(&text, 4, "salesforce.client_id", "unterminated");
}

#[test]
fn destination_rules() {
    let dest = |body: &str| format!("{BASE}\n[[destinations]]\nname = \"d\"\n{body}\n");
    // line 14 is `[[destinations]]`, line 16 the first body line.
    let text = dest("type = \"segment\"");
    assert_problem(
        &text,
        14,
        "destinations[0].write_key",
        "required by type = \"segment\"",
    );
    let text = dest("type = \"segment\"\nwrite_key = \"k\"\nsite_id = \"s\"");
    assert_problem(
        &text,
        18,
        "destinations[0].site_id",
        "not used by type = \"segment\"",
    );
    let text = dest("type = \"segment\"\nwrite_key = \"k\"\nregion = \"ap\"");
    assert_problem(&text, 18, "destinations[0].region", "expected `us` or `eu`");
    let text = dest("type = \"file\"\npath = \"out.jsonl\"\nregion = \"us\"");
    assert_problem(
        &text,
        18,
        "destinations[0].region",
        "not used by type = \"file\"",
    );
    let text = dest("type = \"rudderstack\"\nwrite_key = \"k\"");
    assert_problem(
        &text,
        14,
        "destinations[0].endpoint",
        "required by type = \"rudderstack\"",
    );
    let text = dest("type = \"customerio_track\"\napi_key = \"k\"");
    assert_problem(&text, 14, "destinations[0].site_id", "required");
    let text = dest("type = \"webhook\"\nurl = \"ftp://x\"\nsecret = \"whsec_x\"");
    assert_problem(&text, 17, "destinations[0].url", "not an http(s) URL");
    let text = dest("type = \"mixpanel\"\nproject_token = \"t\"\nusername = \"u\"");
    assert_problem(&text, 14, "destinations[0].project_id", "service account");
    let text = dest("type = \"file\"\npath = \"o\"\nsyncs = [\"contacts\", \"leads\"]");
    assert_problem(
        &text,
        18,
        "destinations[0].syncs[1]",
        "no sync is named \"leads\"",
    );
    let text = dest("type = \"file\"\npath = \"o\"\nmax_batch_calls = 0");
    assert_problem(&text, 18, "destinations[0].max_batch_calls", "at least 1");
    assert!(
        problems(&dest(
            "type = \"amplitude\"\napi_key = \"k\"\nregion = \"eu\""
        ))
        .is_empty()
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = BASE
        .replace("user_id = \"Id\"\n", "")
        .replace("name = \"contacts\"", "name = \"\"")
        .replace("https://acme", "acme");
    assert!(problems(&text).len() >= 3, "{:#?}", problems(&text));
}

#[test]
fn routing() {
    let text = format!(
        "{BASE}\n[[destinations]]\nname = \"d\"\ntype = \"file\"\npath = \"o\"\nsyncs = [\"contacts\"]\n"
    );
    let config = Config::parse(&text).unwrap();
    assert!(config.destinations[0].routes("contacts"));
    assert!(!config.destinations[0].routes("leads"));
}

/// Every remaining way to get a value wrong, each named with its key and line.
#[test]
fn every_other_bad_value_is_named_with_its_key_and_line() {
    // [salesforce]
    let text = BASE.replace(
        "client_id = \"${secret:sf_client_id}\"",
        "client_id = \"  \"",
    );
    assert_problem(&text, 4, "salesforce.client_id", "must not be empty");
    let extra = |line: &str| BASE.replace("auth =", &format!("{line}\nauth ="));
    assert_problem(
        &extra("lookback_seconds = 90000"),
        3,
        "salesforce.lookback_seconds",
        "more than a day",
    );
    assert_problem(
        &extra("max_api_share = 0.0"),
        3,
        "salesforce.max_api_share",
        "(0, 1]",
    );
    assert_problem(
        &extra("max_api_share = nan"),
        3,
        "salesforce.max_api_share",
        "(0, 1]",
    );
    assert_problem(
        &extra("page_size = 100"),
        3,
        "salesforce.page_size",
        "200..=2000",
    );
    assert_problem(
        &extra("page_size = \"big\""),
        3,
        "salesforce.page_size",
        "invalid type",
    );
    assert_problem(
        &extra("page_size = -1"),
        3,
        "salesforce.page_size",
        "invalid value",
    );
    assert_problem(
        &extra("api_version = \"v62.0\""),
        3,
        "salesforce.api_version",
        "API version",
    );
    assert_problem(
        &extra("jwt_audience = \"https://test.salesforce.com\""),
        3,
        "salesforce.jwt_audience",
        "not used by auth = \"client_credentials\"",
    );
    let text = BASE.replace("client_secret = \"${secret:sf_client_secret}\"\n", "");
    assert_problem(
        &text,
        1,
        "salesforce.client_secret",
        "required by auth = \"client_credentials\"",
    );
    let text = BASE
        .replace("auth = \"client_credentials\"", "auth = \"refresh_token\"")
        .replace(
            "client_secret = \"${secret:sf_client_secret}\"",
            "username = \"u@example.com\"",
        );
    assert_problem(
        &text,
        1,
        "salesforce.refresh_token",
        "required by auth = \"refresh_token\"",
    );
    assert_problem(
        &text,
        5,
        "salesforce.username",
        "not used by auth = \"refresh_token\"",
    );
    let text = BASE.replace("[salesforce]\n", "[salesforce_]\n");
    assert!(
        problems(&text)
            .iter()
            .any(|p| p.contains("unknown field `salesforce_`")),
        "{:?}",
        problems(&text)
    );
    let text = BASE.replace(
        "[salesforce]\nlogin_url = \"https://acme.my.salesforce.com\"\nauth = \"client_credentials\"\nclient_id = \"${secret:sf_client_id}\"\nclient_secret = \"${secret:sf_client_secret}\"\n",
        "",
    );
    assert!(
        problems(&text)
            .iter()
            .any(|p| p.contains("missing field `salesforce`")),
        "{:?}",
        problems(&text)
    );

    // [[syncs]]
    let sync_line = |line: &str| BASE.replace("fields = [", &format!("{line}\nfields = ["));
    assert_problem(
        &sync_line("api = \"soap\""),
        12,
        "syncs[0].api",
        "unknown variant `soap`",
    );
    assert_problem(
        &sync_line("where = \"  \""),
        12,
        "syncs[0].where",
        "must not be empty",
    );
    assert_problem(
        &sync_line("where = \"IsDeleted = false LIMIT 10\""),
        12,
        "syncs[0].where",
        "condition only",
    );
    assert_problem(
        &sync_line("where = \"Email != null; DELETE\""),
        12,
        "syncs[0].where",
        "condition only",
    );
    let text = BASE.replace("user_id = \"Id\"", "user_id = \"Account..Id\"");
    assert_problem(
        &text,
        11,
        "syncs[0].user_id",
        "not a field name or parent path",
    );
    let text = BASE.replace(
        "name = \"contacts\"",
        &format!("name = \"{}\"", "c".repeat(65)),
    );
    assert_problem(&text, 8, "syncs[0].name", "1-64 characters");
    let text = BASE.replace(
        "object = \"Contact\"",
        &format!("object = \"{}\"", "C".repeat(81)),
    );
    assert_problem(&text, 9, "syncs[0].object", "not an sObject API name");
    let text = BASE.replace("object = \"Contact\"", "object = \"1Contact\"");
    assert_problem(&text, 9, "syncs[0].object", "not an sObject API name");
    for bad in [
        "1Email",
        "Account.",
        ".Name",
        "Em ail",
        "Account.Owner.",
        "",
    ] {
        let text = BASE.replace("\"Account.Name\"]", &format!("\"{bad}\"]"));
        assert_problem(&text, 12, "syncs[0].fields[2]", "not a field name");
    }
    let text = BASE.replace("fields = [", "fields = \"Email\"\n#[");
    assert!(
        problems(&text).iter().any(|p| p.contains("invalid type")),
        "{:?}",
        problems(&text)
    );
    let events = |extra: &str| {
        BASE.replace(
            "kind = \"people\"\nuser_id = \"Id\"",
            &format!("kind = \"events\"\nuser_id = \"WhoId\"\n{extra}"),
        )
    };
    assert_problem(
        &events("event = \"  \""),
        12,
        "syncs[0].event",
        "must not be empty",
    );
    assert_problem(
        &events("event_field = \"Sub ject\""),
        12,
        "syncs[0].event_field",
        "not a field name",
    );
    assert_problem(
        &events("event = \"X\"\ntimestamp_field = \"Created-Date\""),
        13,
        "syncs[0].timestamp_field",
        "not a field name",
    );
    let objects = |group: &str, type_id: &str| {
        BASE.replace(
            "kind = \"people\"\nuser_id = \"Id\"",
            &format!("kind = \"objects\"\ngroup_id = \"{group}\"\nobject_type_id = \"{type_id}\""),
        )
    };
    assert_problem(
        &objects("1Id", "1"),
        11,
        "syncs[0].group_id",
        "not a field name",
    );
    assert_problem(
        &objects("Id", "one"),
        12,
        "syncs[0].object_type_id",
        "string of digits",
    );
    assert_problem(
        &objects("Id", ""),
        12,
        "syncs[0].object_type_id",
        "string of digits",
    );
    let text = BASE.replace(
        "kind = \"people\"\nuser_id = \"Id\"",
        "kind = \"objects\"\ngroup_id = \"Id\"\nobject_type_id = 1",
    );
    assert_problem(&text, 12, "syncs[0].object_type_id", "invalid type");
    let header = &BASE[..BASE.find("[[syncs]]").unwrap_or(BASE.len())];
    assert!(
        problems(header)
            .iter()
            .any(|p| p == "syncs: at least one [[syncs]] table is required"),
        "{:?}",
        problems(header)
    );
    let text = BASE.replace("[[syncs]]", "[syncs]");
    assert!(
        problems(&text).iter().any(|p| p.contains("invalid type")),
        "{:?}",
        problems(&text)
    );

    // [[destinations]] (line 14 is `[[destinations]]`, 15 its name, 16 its type)
    let dest =
        |name: &str, body: &str| format!("{BASE}\n[[destinations]]\nname = \"{name}\"\n{body}\n");
    assert_problem(
        &dest("d", "type = \"kafka\""),
        16,
        "destinations[0].type",
        "unknown variant `kafka`",
    );
    assert_problem(
        &dest("my dest", "type = \"file\"\npath = \"o\""),
        15,
        "destinations[0].name",
        "letters, digits",
    );
    assert_problem(
        &dest("d", "type = \"file\"\npath = \"o\"\ncolour = \"blue\""),
        18,
        "destinations[0].colour",
        "unknown field `colour`",
    );
    assert_problem(
        &dest(
            "d",
            "type = \"segment\"\nwrite_key = \"k\"\nendpoint = \"ftp://proxy\"",
        ),
        18,
        "destinations[0].endpoint",
        "not an http(s) URL",
    );
    assert_problem(
        &dest(
            "d",
            "type = \"segment\"\nwrite_key = \"k\"\nmax_batch_bytes = 0",
        ),
        18,
        "destinations[0].max_batch_bytes",
        "at least 1",
    );
    assert_problem(
        &dest(
            "d",
            "type = \"segment\"\nwrite_key = \"k\"\ntimeout_seconds = 0",
        ),
        18,
        "destinations[0].timeout_seconds",
        "at least 1",
    );
    assert_problem(
        &dest(
            "d",
            "type = \"mixpanel\"\nproject_token = \"t\"\nregion = \"ap\"",
        ),
        18,
        "destinations[0].region",
        "expected one of `us`, `eu`, `in`",
    );
    assert_problem(
        &dest(
            "d",
            "type = \"segment\"\nwrite_key = \"k\"\nsyncs = \"contacts\"",
        ),
        18,
        "destinations[0].syncs",
        "invalid type",
    );
    let two = format!(
        "{}[[destinations]]\nname = \"d\"\ntype = \"file\"\npath = \"p\"\n",
        dest("d", "type = \"file\"\npath = \"o\"")
    );
    assert_problem(
        &two,
        19,
        "destinations[1].name",
        "duplicate destination name",
    );

    // References.
    let text = BASE.replace("${secret:sf_client_id}", "${secret:}");
    assert_problem(&text, 4, "salesforce.client_id", "empty name");
    let text = BASE.replace("${secret:sf_client_id}", "${env:}");
    assert_problem(&text, 4, "salesforce.client_id", "empty name");
    let text = dest("d", "type = \"segment\"\nwrite_key = \"${vault:seg}\"");
    assert_problem(&text, 17, "destinations[0].write_key", "unknown reference");
}

#[test]
fn an_unset_environment_variable_is_named_with_its_line_never_a_value() {
    let text = BASE.replace(
        "${secret:sf_client_id}",
        "${env:SFSYNC_TEST_CERTAINLY_UNSET_VARIABLE}",
    );
    let config = Config::parse(&text).unwrap();
    let secrets = SecretMap::from_json(r#"{"sf_client_secret":"TOPSECRET"}"#).unwrap();
    let err = config.resolve_references(&text, &secrets).unwrap_err();
    let all: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        all,
        vec![
            "line 4: salesforce.client_id: environment variable \"SFSYNC_TEST_CERTAINLY_UNSET_VARIABLE\" is not set"
        ]
    );
    assert!(!err.to_string().contains("TOPSECRET"));
    // Secrets files that are not a JSON object of strings are refused without echoing values.
    for bad in [
        r#"{"a": 1}"#,
        "[]",
        "{not json",
        r#"{"a": {"b": "TOPSECRET"}}"#,
    ] {
        let e = SecretMap::from_json(bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("secrets file"), "{bad}: {e}");
        assert!(!e.contains("TOPSECRET"), "{e}");
    }
}

/// Salesforce serves the client_credentials flow only on the org's My Domain
/// (`https://<domain>.my.salesforce.com`); login.salesforce.com and test.salesforce.com
/// refuse it. `validate` says so before a deploy does.
#[test]
fn client_credentials_on_a_generic_login_host_names_the_key_line_and_fix() {
    for host in [
        "https://login.salesforce.com",
        "https://test.salesforce.com/",
        "https://LOGIN.salesforce.com",
    ] {
        let text = BASE.replace("https://acme.my.salesforce.com", host);
        assert_problem(&text, 2, "salesforce.login_url", "My Domain");
        assert_problem(&text, 2, "salesforce.login_url", "client_credentials");
    }
    // The other flows may use the generic hosts; My Domain is fine for every flow.
    let jwt = BASE
        .replace(
            "https://acme.my.salesforce.com",
            "https://login.salesforce.com",
        )
        .replace("auth = \"client_credentials\"", "auth = \"jwt_bearer\"")
        .replace(
            "client_secret = \"${secret:sf_client_secret}\"",
            "username = \"me@example.com\"\nprivate_key = \"${secret:key}\"",
        );
    assert_eq!(problems(&jwt), Vec::<String>::new());
    assert_eq!(problems(BASE), Vec::<String>::new());
}

/// Each destination type states its keys once (its settings struct): a missing credential
/// and a key the type does not take are named with their key and line, for every type.
#[test]
fn every_destination_type_names_a_missing_or_unknown_key_with_its_line() {
    // (type, its required keys with a valid value, a key of another type)
    type Keys<'a> = &'a [(&'a str, &'a str)];
    let types: [(&str, Keys, &str); 8] = [
        ("customerio", &[("api_key", "k")], "write_key"),
        (
            "customerio_track",
            &[("site_id", "s"), ("api_key", "k")],
            "project_token",
        ),
        ("segment", &[("write_key", "k")], "site_id"),
        (
            "rudderstack",
            &[("write_key", "k"), ("endpoint", "https://dp.example.com")],
            "region",
        ),
        ("mixpanel", &[("project_token", "t")], "secret_key"),
        ("amplitude", &[("api_key", "k")], "group_key"),
        (
            "webhook",
            &[
                ("url", "https://hooks.example.com"),
                ("secret", "whsec_eA=="),
            ],
            "path",
        ),
        ("file", &[("path", "out.jsonl")], "url"),
    ];
    // Line 14 is `[[destinations]]`, 15 its name, 16 its type, 17 on the keys.
    let dest = |kind: &str, keys: &[(&str, &str)]| {
        let body: String = keys
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\"\n"))
            .collect();
        format!("{BASE}\n[[destinations]]\nname = \"d\"\ntype = \"{kind}\"\n{body}")
    };
    for (kind, required, foreign) in types {
        assert_eq!(
            problems(&dest(kind, required)),
            Vec::<String>::new(),
            "{kind}"
        );
        for (i, (key, _)) in required.iter().enumerate() {
            let mut without = required.to_vec();
            without.remove(i);
            assert_problem(
                &dest(kind, &without),
                14,
                &format!("destinations[0].{key}"),
                &format!("required by type = \"{kind}\""),
            );
        }
        let line = 17 + required.len();
        let mut with_foreign = required.to_vec();
        with_foreign.push((foreign, "x"));
        assert_problem(
            &dest(kind, &with_foreign),
            line,
            &format!("destinations[0].{foreign}"),
            &format!("unknown field `{foreign}`: not used by type = \"{kind}\""),
        );
        let mut misspelt = required.to_vec();
        misspelt.push(("timeout_secs", "5"));
        assert_problem(
            &dest(kind, &misspelt),
            line,
            "destinations[0].timeout_secs",
            "did you mean \"timeout_seconds\"?",
        );
    }
    // A value of the wrong type inside a type's settings is named by its key too.
    let text =
        format!("{BASE}\n[[destinations]]\nname = \"d\"\ntype = \"segment\"\nwrite_key = 5\n");
    assert_problem(&text, 17, "destinations[0].write_key", "invalid type");
}

/// `[pipeline]`: the SQS body compression level (issue 13/16). BASE has 12 lines; the
/// section is at line 14, its first key at line 15.
#[test]
fn the_pipeline_section_is_checked_and_named_with_its_key_and_line() {
    let with = |body: &str| format!("{BASE}\n[pipeline]\n{body}\n");
    // Out of range: named with its key, its line and the range.
    assert_problem(
        &with("compression_level = 12"),
        15,
        "pipeline.compression_level",
        "12 is outside 0..=9",
    );
    // Not a level at all: serde's error, on the same key and line.
    assert_problem(
        &with("compress = true\ncompression_level = -1"),
        16,
        "pipeline.compression_level",
        "",
    );
    assert_problem(
        &with("compression_level = \"best\""),
        15,
        "pipeline.compression_level",
        "",
    );
    // The documented range of the message size.
    assert_problem(
        &with("max_message_bytes = 1000"),
        15,
        "pipeline.max_message_bytes",
        "1000 is outside 16384..=1048576",
    );
    assert!(problems(&with("max_message_bytes = 1048576")).is_empty());
    // The old flag off and a level on say two different things.
    assert_problem(
        &with("compress = false\ncompression_level = 6"),
        16,
        "pipeline.compression_level",
        "contradicts compress = false",
    );
}

#[test]
fn the_compression_level_defaults_and_the_old_flag_keeps_working() {
    use sfsync_mapping::config::DEFAULT_COMPRESSION_LEVEL;
    let level = |body: &str| {
        Config::parse(&format!("{BASE}\n[pipeline]\n{body}\n"))
            .unwrap()
            .pipeline
            .compression_level()
    };
    assert_eq!(
        Config::parse(BASE).unwrap().pipeline.compression_level(),
        DEFAULT_COMPRESSION_LEVEL
    );
    assert_eq!(level("compress = true"), DEFAULT_COMPRESSION_LEVEL);
    assert_eq!(level("compress = false"), 0);
    assert_eq!(level("compress = false\ncompression_level = 0"), 0);
    assert_eq!(level("compression_level = 0"), 0);
    assert_eq!(level("compression_level = 1"), 1);
    assert_eq!(level("compression_level = 9"), 9);
}
