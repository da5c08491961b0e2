//! Golden request bodies: every call kind, sent to each Segment-spec destination (Segment,
//! Customer.io Data Pipelines, RudderStack), must reach the server byte for byte as recorded
//! in `tests/golden/<destination>.jsonl` (one request body per line, in order).
//!
//! The encoders are performance work (issue 16: calls written straight into the body
//! instead of through a `serde_json::Value`); this test is what makes any change of the
//! bytes on the wire fail. A deliberate change of the wire form rewrites the files with
//! `SFSYNC_BLESS=1 cargo nextest run -p sfsync-destinations -E 'test(golden)'` and says why in
//! its commit.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sfsync_destinations::Destination;
use sfsync_mapping::{Call, DestinationConfig};

/// Every call kind the encoders render, plus a call whose values need escaping and nesting:
/// quotes, backslashes, control characters, non-ASCII names, an emoji, a compound address
/// (a nested object), nulls, numbers, booleans, an empty string and a dotted parent field.
fn calls() -> Vec<Call> {
    let tricky: Call = serde_json::from_value(json!({
        "type": "identify", "messageId": message_id(99), "timestamp": "2024-02-29T23:59:59.999Z",
        "userId": "003U00000000000099",
        "traits": {
            "email": "zoë.o'brien+test@example.com",
            "firstName": "Zoë \"Zo\" \\ O'Brien",
            "lastName": "Łukasiewicz-Núñez 🚀",
            "title": "line one\nline two\ttabbed\u{0001}",
            "MiddleName": null,
            "Suffix": "",
            "created_at": 1_709_251_199,
            "score": -12.5,
            "HasOptedOutOfEmail": false,
            "MailingAddress": {
                "street": "1 Rue de l'Église\nBâtiment B", "city": "Zürich", "state": null,
                "postalCode": "8001", "country": "CH", "latitude": 47.3769, "longitude": 8.5417,
                "geocodeAccuracy": null
            },
            "Account.Name": "Ünïcödé GmbH & Co. KG </script>"
        },
        "context": { "sfsync": { "sync": "contacts", "object": "Contact", "kind": "people", "recordId": "003U00000000000099" } }
    }))
    .expect("a valid call");
    let mut out = vec![tricky];
    for i in 0..2 {
        out.extend([
            identify(i),
            track(i),
            object(i),
            object_with_owner(i),
            relationship(i),
            delete_person(i),
            delete_object(i),
            delete_relationship(i),
            merge_person(i),
            merge_object(i),
        ]);
    }
    out
}

/// Batches as small as 7 calls, so that several requests (and their separators) are covered.
fn config(kind: &str, url: &str) -> DestinationConfig {
    let mut cfg = json!({
        "name": format!("golden-{kind}"),
        "type": kind,
        "endpoint": url,
        "max_batch_calls": 7,
        "timeout_seconds": 5,
    });
    let key = if kind == "customerio" {
        "api_key"
    } else {
        "write_key"
    };
    cfg[key] = json!("golden-key");
    serde_json::from_value(cfg).expect("a valid destination config")
}

fn golden_path(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{kind}.jsonl"))
}

/// The bodies `kind` sends for `calls()`, in order.
async fn bodies(kind: &str, ok: &'static str) -> Vec<String> {
    let server = serve(move |_, _| reply(200, ok)).await;
    let cfg = config(kind, &server.url);
    let http = sfsync_destinations::http_client().expect("client");
    let destination = Destination::new(&cfg, http).expect("destination builds");
    let calls = calls();
    let n = calls.len();
    let report = destination.deliver(calls, Duration::from_secs(20)).await;
    assert_eq!(report.delivered(), n, "{report:?}");
    server
        .requests()
        .into_iter()
        .map(|r| String::from_utf8(r.body).expect("a UTF-8 body"))
        .collect()
}

async fn check(kind: &str, ok: &'static str) {
    let got = bodies(kind, ok).await;
    assert!(got.len() > 1, "several requests: {}", got.len());
    for body in &got {
        assert!(!body.contains('\n'), "a body is one line of JSON");
        serde_json::from_str::<Value>(body).expect("each body is JSON");
    }
    let path = golden_path(kind);
    let text = got.join("\n") + "\n";
    if std::env::var_os("SFSYNC_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (SFSYNC_BLESS=1 writes it)", path.display()));
    for (i, (got, want)) in text.lines().zip(want.lines()).enumerate() {
        assert_eq!(
            got,
            want,
            "{kind}: request body {i} differs from {}",
            path.display()
        );
    }
    assert_eq!(
        text,
        want,
        "{kind}: the bodies differ from {}",
        path.display()
    );
}

#[tokio::test]
async fn golden_segment_bodies() {
    check("segment", r#"{"success":true}"#).await;
}

#[tokio::test]
async fn golden_customerio_bodies() {
    check("customerio", "{}").await;
}

#[tokio::test]
async fn golden_rudderstack_bodies() {
    check("rudderstack", "OK").await;
}
