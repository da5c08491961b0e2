//! Webhooks: Standard Webhooks signing, a webhook-id stable across retries, 410, and the
//! shared behaviour.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sfsync_destinations::{Destination, Outcome, webhook_id};
use sfsync_mapping::{Call, DestinationConfig, DestinationKind};
use sha2::Sha256;

/// `whsec_` + base64("sfsync-test-signing-key").
const SECRET: &str = "whsec_c2ZzeW5jLXRlc3Qtc2lnbmluZy1rZXk=";
const KEY: &[u8] = b"sfsync-test-signing-key";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Webhook);
    set(&mut c, "url", format!("{url}/hooks/sfsync"));
    set(&mut c, "secret", SECRET);
    c
}

const FIXTURE: Fixture = Fixture {
    config: cfg,
    ok: || reply(204, ""),
    gzip_by_default: false,
    secrets: &[SECRET],
};

fn expected_signature(key: &[u8], r: &Recorded) -> String {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn batches_are_signed_standard_webhooks() {
    let server = serve(|_, _| reply(200, "ok")).await;
    let d = destination(&cfg(&server.url));
    let calls = vec![identify(0), relationship(1), delete_object(2)];
    let report = d.deliver(calls.clone(), Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 3);
    let r = &server.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/sfsync");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    // The body is the calls exactly as `sfsync map` prints them.
    let expected: Vec<Value> = calls
        .iter()
        .map(|c| serde_json::to_value(c).expect("json"))
        .collect();
    assert_eq!(r.json(), json!({ "calls": expected }));
    let parsed: Vec<Call> = serde_json::from_value(r.json()["calls"].clone()).expect("calls");
    assert_eq!(parsed, calls);
    // Headers: the id derives from the message ids, the timestamp is now, the signature
    // verifies with the whsec_-decoded key.
    let ids: Vec<String> = calls.iter().map(|c| c.message_id.clone()).collect();
    assert_eq!(
        r.header("webhook-id").as_deref(),
        Some(webhook_id(ids.iter().map(String::as_str)).as_str())
    );
    let ts: i64 = r
        .header("webhook-timestamp")
        .expect("ts")
        .parse()
        .expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert_eq!(
        r.header("webhook-signature"),
        Some(expected_signature(KEY, r))
    );
}

#[tokio::test]
async fn the_webhook_id_is_stable_across_retries() {
    let server = serve(|n, _| {
        if n == 0 {
            reply(503, "busy")
        } else {
            reply(200, "ok")
        }
    })
    .await;
    let d = destination(&cfg(&server.url));
    let report = d.deliver(tracks(4), Duration::from_secs(10)).await;
    assert_eq!(report.delivered(), 4);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id")
    );
    for r in &requests {
        assert_eq!(
            r.header("webhook-signature"),
            Some(expected_signature(KEY, r))
        );
    }
}

#[tokio::test]
async fn a_plain_secret_is_used_as_raw_bytes() {
    let server = serve(|_, _| reply(200, "ok")).await;
    let mut config = cfg(&server.url);
    set(&mut config, "secret", "plain-shared-secret");
    let d = destination(&config);
    d.deliver(tracks(1), Duration::from_secs(10)).await;
    let r = &server.requests()[0];
    assert_eq!(
        r.header("webhook-signature"),
        Some(expected_signature(b"plain-shared-secret", r))
    );
}

#[tokio::test]
async fn a_410_disables_the_endpoint() {
    let server = serve(|_, _| reply(410, "gone")).await;
    let mut config = cfg(&server.url);
    config.max_batch_calls = Some(2);
    let d = destination(&config);
    let report = d.deliver(tracks(6), Duration::from_secs(10)).await;
    assert_eq!(server.requests().len(), 1, "nothing is sent after a 410");
    assert_eq!(report.dead().count(), 6);
    assert!(
        report
            .dead()
            .all(|o| matches!(&o.outcome, Outcome::Dead { reason } if reason.contains("410")))
    );
    let report = d.deliver(tracks(1), Duration::from_secs(10)).await;
    assert_eq!(server.requests().len(), 1);
    assert_eq!(report.dead().count(), 1);
}

#[tokio::test]
async fn gzip_only_when_configured_and_the_signature_covers_the_json() {
    let server = serve(|_, _| reply(200, "ok")).await;
    let mut config = cfg(&server.url);
    config.gzip = Some(true);
    let d = destination(&config);
    d.deliver(tracks(20), Duration::from_secs(10)).await;
    let r = &server.requests()[0];
    assert!(r.gzipped);
    assert_eq!(r.json()["calls"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        r.header("webhook-signature"),
        Some(expected_signature(KEY, r))
    );
}

#[tokio::test]
async fn a_bad_whsec_secret_is_refused_without_showing_it() {
    let mut config = cfg("http://127.0.0.1:9");
    set(&mut config, "secret", "whsec_***not base64***");
    let http = sfsync_destinations::http_client().expect("client");
    let err = Destination::new(&config, http).expect_err("bad secret");
    let text = err.to_string();
    assert!(text.contains("secret"), "{text}");
    assert!(!text.contains("not base64***"), "{text}");
}
