//! `stream_local` (what `sfsync stream` runs): a change committed in the simulator is mapped
//! and delivered in-process to a destination, and the run report says so.

use std::sync::Arc;

use serde_json::{Value, json};
use sfsync_e2e::fixtures::Fixture;
use sfsync_mapping::Config;
use sfsync_pipeline::local::{Progress, ProgressFn};
use sfsync_simulator::{Faults, Org, OrgSpec, PubSubOptions, Simulator};
use sfsync_stream::{FileReplayStore, LocalStream, ReplayStore, StoredReplay, stream_local};
use tokio::sync::{mpsc, oneshot};

/// The shared test fixture's Contacts (`tests/fixtures/sfsync.toml`), streamed, to a file.
fn config(url: &str, out: &std::path::Path) -> Config {
    let text = Fixture::syncs(&["contacts"])
        .fields("contacts", &["Email", "Title"])
        .without("contacts", "deletes")
        .sync("contacts", "stream", true)
        .to("file")
        .destination("path", out.display().to_string())
        .text();
    // No receiver: the calls go to the file.
    sfsync_e2e::fixtures::resolve(&text, url, "http://127.0.0.1:9")
}

#[tokio::test]
async fn a_change_is_mapped_and_delivered_and_the_run_report_says_stream() {
    let sim = Simulator::start(
        Org::generate(&OrgSpec::tiny()),
        sfsync_simulator::Credentials::demo(),
        Faults::default(),
    )
    .await
    .expect("simulator");
    let pubsub = sim
        .start_pubsub(PubSubOptions::default())
        .await
        .expect("pubsub");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("calls.jsonl");
    // Resume before the first event (the simulator's position 0), so the change below is
    // streamed however long the subscription takes to open.
    FileReplayStore::new(dir.path())
        .put(
            "contacts",
            &StoredReplay::new(
                &0u64.to_be_bytes(),
                "/data/ContactChangeEvent",
                chrono::Utc::now(),
                None,
            ),
        )
        .await
        .expect("seed replay");

    let (delivered_tx, mut delivered) = mpsc::unbounded_channel();
    let progress: ProgressFn = Arc::new(move |event| {
        if let Progress::Delivered { calls, .. } = event {
            let _ = delivered_tx.send(calls);
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let options = LocalStream {
        state_dir: dir.path().to_path_buf(),
        endpoint: pubsub.url(),
        syncs: vec![],
        max_events: None,
    };
    let task = tokio::spawn(stream_local(
        config(&sim.url(), &out),
        options,
        progress,
        async {
            let _ = stopped.await;
        },
    ));

    let id = {
        let org = sim.org();
        let mut org = org.lock().expect("org");
        let id = org.records("Contact")[0]["Id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut fields = serde_json::Map::new();
        fields.insert("Title".into(), json!("Streamed"));
        assert!(org.update("Contact", &id, fields));
        id
    };
    let calls = tokio::time::timeout(std::time::Duration::from_secs(30), delivered.recv())
        .await
        .expect("delivered within 30 s")
        .expect("progress");
    assert_eq!(calls, 1);
    let written = std::fs::read_to_string(&out).expect("destination file");
    let call: Value = serde_json::from_str(written.lines().next().unwrap_or("")).expect("a call");
    assert_eq!(call["userId"], id.as_str());
    assert_eq!(call["traits"]["title"], "Streamed");

    let _ = stop.send(());
    let reports = task.await.expect("task").expect("stream ran");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].api.as_deref(), Some("stream"));
    assert_eq!(reports[0].counts.extracted, 1);
    assert_eq!(reports[0].counts.delivered, 1);
}

#[tokio::test]
async fn a_config_without_streaming_syncs_is_refused_plainly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config("http://127.0.0.1:9", &dir.path().join("x.jsonl"));
    config.syncs[0].stream = false;
    let progress: ProgressFn = Arc::new(|_| {});
    let options = LocalStream {
        state_dir: dir.path().to_path_buf(),
        endpoint: "http://127.0.0.1:9".into(),
        syncs: vec![],
        max_events: None,
    };
    let err = stream_local(config, options, progress, async {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("stream = true"), "{err}");
}
