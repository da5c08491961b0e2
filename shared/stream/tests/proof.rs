//! "Polling stays the proof" (issue 15, item 4): the stream notes every record version it
//! hands on in the ledger kept with the state; the scheduled extraction of a sync with
//! `stream = true` compares what it extracts and reports exactly how many versions the stream
//! had not delivered — while still handing every record on. Against the simulator over gRPC
//! and REST, with the state in files and, on moto, in the DynamoDB state table.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sfsync_mapping::config::{ExtractApi, SyncConfig, SyncKind};
use sfsync_pipeline::extract::{ExtractSettings, extract_sync};
use sfsync_pipeline::ledger::StreamLedger;
use sfsync_pipeline::message::RecordsMessage;
use sfsync_pipeline::queue::{Queue, QueueError, SendError};
use sfsync_pipeline::report::RunReport;
use sfsync_pipeline::state::StateStore;
use sfsync_salesforce::{Client, ClientConfig, Credentials};
use sfsync_simulator::{Faults, Org, OrgSpec, PubSubHandle, PubSubOptions, Simulator};
use sfsync_stream::{ReplayStore, StoredReplay, StreamSettings, stream_sync};
use tokio::sync::{mpsc, oneshot};

/// The in-process queue: records messages as values, each one announced on a channel.
struct Collect(mpsc::UnboundedSender<RecordsMessage>);

impl Queue<RecordsMessage> for Collect {
    async fn send(
        &self,
        message: RecordsMessage,
        _: Option<Duration>,
    ) -> Result<usize, SendError<RecordsMessage>> {
        self.0
            .send(message)
            .map(|()| 1)
            .map_err(|_| QueueError::Downstream("test receiver gone".into()).into())
    }
}

fn sync() -> SyncConfig {
    SyncConfig {
        name: "contacts".into(),
        object: "Contact".into(),
        kind: SyncKind::People,
        user_id: Some("Id".into()),
        group_id: None,
        object_type_id: None,
        event: None,
        event_field: None,
        timestamp_field: None,
        fields: vec!["Email".into(), "Title".into()],
        where_clause: None,
        deletes: false,
        api: ExtractApi::Rest,
        stream: true,
        conversions: None,
    }
}

fn client(url: &str) -> Client {
    let demo = sfsync_simulator::Credentials::demo();
    let mut config = ClientConfig::new(
        url,
        Credentials::ClientCredentials {
            client_id: demo.client_id,
            client_secret: demo.client_secret,
        },
    );
    config.retry_base = Duration::from_millis(1);
    Client::new(config).expect("client")
}

fn title(t: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Title".into(), json!(t));
    m
}

/// Every record id of every message received so far.
fn ids_in(rx: &mut mpsc::UnboundedReceiver<RecordsMessage>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(message) = rx.try_recv() {
        out.extend(message.records.iter().filter_map(|r| r.string_field("Id")));
    }
    out
}

struct World {
    sim: sfsync_simulator::SimulatorHandle,
    pubsub: PubSubHandle,
    client: Client,
}

impl World {
    async fn start() -> World {
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
        let client = client(&sim.url());
        World {
            sim,
            pubsub,
            client,
        }
    }

    fn org<T>(&self, f: impl FnOnce(&mut Org) -> T) -> T {
        let org = self.sim.org();
        let mut guard = org.lock().expect("org lock");
        f(&mut guard)
    }

    /// One polling run of the sync on the org's clock, every record collected.
    async fn poll<S: StateStore>(
        &self,
        store: &S,
        ledger: &StreamLedger,
        run: &str,
    ) -> (RunReport, Vec<String>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut settings = ExtractSettings::new(format!("test:{run}"));
        settings.stream_ledger = Some(ledger.clone());
        let started_at = self.org(|org| org.now());
        let report = extract_sync(
            &self.client,
            &sync(),
            &Collect(tx),
            store,
            run,
            started_at,
            &settings,
        )
        .await
        .expect("polling ran");
        (report, ids_in(&mut rx))
    }
}

/// The stream delivers two changes, is stopped, three more are made: polling reports
/// exactly those three (and still hands every record on), and its next run, whose
/// look-back reads them again, does not count them twice.
async fn polling_reports_exactly_what_the_stream_missed<S: StateStore, R: ReplayStore + 'static>(
    world: &World,
    store: &S,
    replays: R,
    ledger: StreamLedger,
) {
    // Resume before the first event (the simulator's position 0), so the changes below are
    // streamed however long the subscription takes to open.
    replays
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
    let ids: Vec<String> = world.org(|org| {
        org.records("Contact")
            .iter()
            .filter(|r| r["IsDeleted"] != true)
            .take(6)
            .filter_map(|r| r["Id"].as_str().map(String::from))
            .collect()
    });

    let (tx, mut streamed) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut settings = StreamSettings::new(world.pubsub.url(), "stream-run");
    settings.reconnect_after = Duration::from_millis(10);
    settings.ledger = Some(ledger.clone());
    let client = world.client.clone();
    let task = tokio::spawn(async move {
        stream_sync(&client, &sync(), &Collect(tx), &replays, &settings, async {
            let _ = stopped.await;
        })
        .await
    });
    world.org(|org| {
        org.update("Contact", &ids[0], title("Streamed one"));
        org.update("Contact", &ids[1], title("Streamed two"));
    });
    let mut got = Vec::new();
    while !(got.contains(&ids[0]) && got.contains(&ids[1])) {
        let message = tokio::time::timeout(Duration::from_secs(30), streamed.recv())
            .await
            .expect("streamed within 30 s")
            .expect("stream running");
        got.extend(message.records.iter().filter_map(|r| r.string_field("Id")));
    }
    let _ = stop.send(());
    let report = task.await.expect("task").expect("stream ran");
    assert_eq!(report.ledger_unnoted, 0);

    // While the stream is stopped: three changes it never sees.
    world.org(|org| {
        for id in &ids[2..5] {
            org.update("Contact", id, title("Missed by the stream"));
        }
        // Past the comparison grace, so this run compares them.
        org.advance_clock(chrono::Duration::minutes(2));
    });
    let (first, handed_on) = world.poll(store, &ledger, "poll-1").await;
    let c = &first.counts;
    assert_eq!(c.stream_missed, 3, "{first}");
    assert_eq!(c.stream_compared, 5, "{first}");
    assert_eq!(c.stream_unknown, 0, "{first}");
    // Every other contact predates the stream's first event: not held against it.
    assert_eq!(c.stream_unchecked, c.extracted - 5, "{first}");
    for id in &ids[..5] {
        assert!(
            handed_on.contains(id),
            "polling hands on {id} whatever the ledger says"
        );
    }
    let text = first.to_string();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("unstreamed"))
        .unwrap_or_else(|| panic!("the report says what the stream missed: {text}"));
    assert_eq!(line.split_whitespace().nth(1), Some("3"), "{text}");
    assert!(line.contains("(of 5 versions"), "{text}");

    // The next run re-reads the same versions in its look-back: no second count.
    world.org(|org| org.advance_clock(chrono::Duration::minutes(1)));
    let (second, _) = world.poll(store, &ledger, "poll-2").await;
    assert_eq!(second.counts.stream_missed, 0, "{second}");
    assert_eq!(second.counts.stream_compared, 2, "{second}");
}

#[tokio::test]
async fn polling_reports_exactly_what_the_stopped_stream_missed_with_state_in_files() {
    let world = World::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sfsync_pipeline::state::file::FileStore::new(dir.path()).expect("store");
    let ledger = store.stream_ledger();
    let replays = sfsync_stream::FileReplayStore::new(dir.path());
    polling_reports_exactly_what_the_stream_missed(&world, &store, replays, ledger).await;

    // A ledger that cannot be read loses and blocks nothing: the records are handed on and
    // the versions are counted as unknown.
    let id = world.org(|org| {
        let id = org
            .records("Contact")
            .iter()
            .filter(|r| r["IsDeleted"] != true)
            .nth(7)
            .and_then(|r| r["Id"].as_str().map(str::to_string))
            .expect("a live contact");
        org.update("Contact", &id, title("Ledger unreadable"));
        org.advance_clock(chrono::Duration::minutes(2));
        id
    });
    std::fs::write(
        dir.path().join("stream-ledger/contacts.stream.jsonl"),
        "{torn",
    )
    .expect("corrupt the ledger");
    let (third, handed_on) = world.poll(&store, &store.stream_ledger(), "poll-3").await;
    assert!(handed_on.contains(&id), "{third}");
    assert!(third.counts.stream_unknown >= 1, "{third}");
    assert_eq!(third.counts.stream_missed, 0, "{third}");
    assert_eq!(third.status, sfsync_pipeline::report::RunStatus::Complete);
    assert!(
        third
            .to_string()
            .contains("the stream ledger could not be read"),
        "{third}"
    );
}

#[tokio::test]
async fn polling_reports_exactly_what_the_stopped_stream_missed_with_state_in_dynamodb() {
    let world = World::start().await;
    let sdk = sfsync_e2e::aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = sfsync_e2e::unique("stream-proof");
    sfsync_e2e::state_table(&dynamo, &table).await;
    let store = sfsync_pipeline::state::dynamo::DynamoStore::new(dynamo.clone(), &table);
    let ledger = store.stream_ledger();
    let replays = sfsync_stream::DynamoReplayStore::new(dynamo, &table);
    polling_reports_exactly_what_the_stream_missed(&world, &store, replays, ledger).await;
}
