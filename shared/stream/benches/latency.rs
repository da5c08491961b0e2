//! Change Data Capture latency, end to end on this machine: a change committed in the
//! simulated org → the destination's HTTP request (a webhook served here), through the
//! simulator's Pub/Sub API, the stream stage's re-read by Id, map and deliver — everything
//! `sfsync stream` does. Then a burst, for events per second through one subscriber.
//!
//!     cargo bench -p sfsync-stream --bench latency
//!
//! Results go to docs/benchmarks.md ("Change Data Capture latency").

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use sfsync_mapping::Config;
use sfsync_pipeline::local::ProgressFn;
use sfsync_simulator::{Faults, Org, OrgSpec, PubSubOptions, Simulator};
use sfsync_stream::{FileReplayStore, LocalStream, ReplayStore, StoredReplay, stream_local};
use tokio::sync::{mpsc, oneshot};

const SEQUENTIAL: usize = 200;
const BURST: usize = 2_000;

#[tokio::main]
async fn main() {
    let sim = Simulator::start(
        Org::generate(&OrgSpec::demo()),
        sfsync_simulator::Credentials::demo(),
        Faults::default(),
    )
    .await
    .expect("simulator");
    let pubsub = sim
        .start_pubsub(PubSubOptions::default())
        .await
        .expect("pubsub");

    // The destination: every request body with its arrival instant.
    let (hits_tx, mut hits) = mpsc::unbounded_channel::<(Instant, String)>();
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let hits_tx = hits_tx.clone();
            async move {
                let _ = hits_tx.send((Instant::now(), body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let c = sfsync_simulator::Credentials::demo();
    let config = Config::parse(&format!(
        r#"[salesforce]
login_url = "{}"
auth = "client_credentials"
client_id = "{}"
client_secret = "{}"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "Title", "FirstName", "LastName", "Account.Name"]
stream = true

[[destinations]]
name = "hook"
type = "webhook"
url = "{hook}"
secret = "bench"
"#,
        sim.url(),
        c.client_id,
        c.client_secret
    ))
    .expect("config");
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
        .expect("seed");
    let (stop, stopped) = oneshot::channel::<()>();
    let progress: ProgressFn = Arc::new(|_| {});
    let options = LocalStream {
        state_dir: dir.path().to_path_buf(),
        endpoint: pubsub.url(),
        syncs: vec![],
        max_events: None,
    };
    let task = tokio::spawn(stream_local(config, options, progress, async {
        let _ = stopped.await;
    }));

    let ids: Vec<String> = {
        let org = sim.org();
        let org = org.lock().expect("org");
        org.records("Contact")
            .iter()
            .filter_map(|r| r["Id"].as_str().map(String::from))
            .collect()
    };
    let update = |id: &str, title: String| {
        let org = sim.org();
        let mut org = org.lock().expect("org");
        let mut fields = serde_json::Map::new();
        fields.insert("Title".into(), serde_json::Value::String(title));
        org.update("Contact", id, fields);
    };
    let mut wait_for = async |needle: &str| -> Instant {
        loop {
            let (at, body) = tokio::time::timeout(Duration::from_secs(60), hits.recv())
                .await
                .expect("a destination request within 60 s")
                .expect("server running");
            if body.contains(needle) {
                return at;
            }
        }
    };

    // Warm up: connections, schema cache, plan.
    update(&ids[0], "warm".into());
    wait_for("warm").await;

    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        let id = &ids[(i + 1) % ids.len()];
        let marker = format!("seq-{i}");
        let committed = Instant::now();
        update(id, marker.clone());
        let arrived = wait_for(&marker).await;
        latencies.push(arrived - committed);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "sequential: {SEQUENTIAL} changes, commit → destination request: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );

    // Burst: BURST updates committed at once (one event each), until the last is delivered.
    let n = BURST.min(ids.len());
    let started = Instant::now();
    for (i, id) in ids.iter().take(n).enumerate() {
        update(id, format!("burst-{i}-end"));
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        let (_, body) = tokio::time::timeout(Duration::from_secs(120), hits.recv())
            .await
            .expect("burst delivered within 120 s")
            .expect("server running");
        for part in body.split("burst-").skip(1) {
            if let Some(num) = part.split('-').next() {
                seen.insert(num.to_string());
            }
        }
    }
    let took = started.elapsed();
    println!(
        "burst: {n} changes committed at once, all delivered in {:.2} s: {:.0} events/s through one subscriber",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let _ = stop.send(());
    let reports = task.await.expect("task").expect("stream");
    for r in reports {
        println!("{r}");
    }
}
