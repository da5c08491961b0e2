//! No secret and no access token reaches a log line, at any level, while the pipeline signs
//! in with a wrong secret, signs in again, has its session expire mid-run, and meets a
//! destination that echoes its key; and the lines of a run carry its `run_id` and `sync`.
//!
//! This file holds one test: it installs the process-wide subscriber (and the `log` bridge),
//! so that lines written on any thread, by any crate, are captured.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use sfsync_e2e::local::{CONFIG, Local, SEGMENT_WRITE_KEY, org};
use sfsync_pipeline::report::RunStatus;
use sfsync_simulator::{Credentials, Faults};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Every formatted line, in one shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The simulator mints access tokens as `<org id>!<32 hex digits>`, like Salesforce.
const TOKEN_PREFIX: &str = "00DHs0000000001EAA!";

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_token_reaches_any_log_line_and_lines_carry_run_and_sync() {
    let buffer = Buffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(buffer.clone())
        .finish()
        .try_init()
        .unwrap_or_else(|e| panic!("this test must own the process's subscriber: {e}"));

    let faults = Faults {
        expire_token_after_calls: Some(3),
        ..Faults::default()
    };
    let w = Local::start(&CONFIG, org(300), faults).await;
    let creds = Credentials::demo();

    // 1. A wrong client secret: the sync fails to sign in, and says so.
    let wrong_secret = "wrong-secret-5b1f0c9a";
    let mut wrong = w.config.clone();
    wrong.salesforce.client_secret = Some(wrong_secret.to_string());
    let failed = sfsync_pipeline::local::run_local(
        wrong,
        sfsync_pipeline::local::LocalRun {
            state_dir: w.dir.path().join("wrong"),
            syncs: vec!["contacts".into()],
            full: false,
            budget: std::time::Duration::from_secs(5),
            retry_base: None,
            started_at: None,
        },
        Arc::new(|_| {}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(failed.reports[0].status, RunStatus::Failed);
    let error = failed.reports[0].error.clone().unwrap_or_default();
    assert!(error.contains("invalid_client"), "{error}");
    assert!(!error.contains(wrong_secret), "{error}");

    // 2. The destination rejects the key and echoes the key it was sent: the run stops (an
    //    auth failure dead-letters nothing) with the API's message, the key scrubbed.
    w.receiver.script(
        401,
        &[],
        &format!(r#"{{"error":"invalid write key {SEGMENT_WRITE_KEY}"}}"#),
    );
    let stopped = match w.run().await {
        Ok(_) => panic!("the run went on past a rejected key"),
        Err(e) => e.to_string(),
    };
    assert!(stopped.contains("credentials rejected by seg"), "{stopped}");
    assert!(stopped.contains("invalid write key"), "{stopped}");
    assert!(!stopped.contains(SEGMENT_WRITE_KEY), "{stopped}");
    // 3. A run whose session expires every three calls.
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    for r in &outcome.reports {
        assert_eq!(r.status, RunStatus::Complete, "{r}");
    }
    assert!(w.sim.stats().token_requests >= 3, "{:?}", w.sim.stats());
    let dead = std::fs::read_to_string(w.dead_letter_path()).unwrap_or_default();
    assert!(dead.is_empty(), "{dead}");

    let logs = buffer.text();
    // The test can fail: lines were captured, at every level.
    assert!(logs.lines().count() > 50, "{} lines", logs.lines().count());
    for level in ["TRACE", "DEBUG", " INFO", "ERROR"] {
        assert!(logs.contains(level), "no {level} line");
    }
    assert!(logs.contains("session rejected; refreshing the token once"));
    assert!(
        logs.contains("invalid_client"),
        "the failed sign-in is logged"
    );
    assert!(
        logs.contains("credentials rejected by seg"),
        "the auth pause is logged"
    );
    assert!(logs.matches("authenticated").count() >= 3);

    let basic = |user: &str, password: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    };
    let secrets = [
        ("the client secret", creds.client_secret.clone()),
        ("a wrong client secret", wrong_secret.to_string()),
        ("the refresh token", creds.refresh_token.clone()),
        ("the Segment write key", SEGMENT_WRITE_KEY.to_string()),
        (
            "the Segment Basic credentials",
            basic(SEGMENT_WRITE_KEY, ""),
        ),
        ("an access token", TOKEN_PREFIX.to_string()),
    ];
    for (what, secret) in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("{what} is in a log line: {line}");
        }
    }
    for (what, secret) in &secrets {
        assert!(
            !dead.contains(secret.as_str()),
            "{what} is in a dead letter"
        );
    }

    // Lines written during a run carry its run id and sync, from the stage spans.
    let run = format!("run_id={}", outcome.run_id);
    for (stage, sync) in [
        ("extract_sync", "contacts"),
        ("map", "contacts"),
        ("extract_sync", "accounts"),
    ] {
        let span = format!("{stage}{{{run} sync={sync}}}");
        assert!(
            logs.lines().any(|l| l.contains(&span)),
            "no line in span {span}"
        );
    }
    assert!(logs.lines().any(|l| l.contains("deliver{destination=seg")));
}
