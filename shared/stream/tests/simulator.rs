//! The stream stage against the simulator over real gRPC (Pub/Sub API) and HTTP (REST): a
//! committed change reaches the queue as the record polling would read, with the same
//! messageId; deletes, gaps, overflows and an expired replay id.

use std::time::Duration;

use serde_json::{Map, Value, json};
use sfsync_mapping::config::{ExtractApi, SyncConfig, SyncKind};
use sfsync_mapping::{Record, map_record};
use sfsync_pipeline::message::RecordsMessage;
use sfsync_pipeline::queue::{Queue, QueueError, SendError};
use sfsync_salesforce::{Client, ClientConfig, Credentials, Window};
use sfsync_simulator::{
    Faults, Org, OrgSpec, PubSubHandle, PubSubOptions, Simulator, SimulatorHandle,
};
use sfsync_stream::{
    FileReplayStore, ReplayStore, Resume, StoredReplay, StreamReport, StreamSettings, stream_sync,
};
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

fn sync(deletes: bool) -> SyncConfig {
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
        fields: vec![
            "Email".into(),
            "Title".into(),
            "LastName".into(),
            "Account.Name".into(),
        ],
        where_clause: None,
        deletes,
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

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

struct Harness {
    sim: SimulatorHandle,
    pubsub: PubSubHandle,
    client: Client,
    state: tempfile::TempDir,
}

async fn harness() -> Harness {
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
    Harness {
        sim,
        pubsub,
        client,
        state: tempfile::tempdir().expect("temp dir"),
    }
}

/// The simulator's replay ids are 8-byte positions; position 0 is "before every event", so a
/// stream resumed there misses nothing that happens after the test starts it, however long
/// the subscription takes to open.
fn before_everything(last_commit: Option<chrono::DateTime<chrono::Utc>>) -> StoredReplay {
    StoredReplay::new(
        &0u64.to_be_bytes(),
        "/data/ContactChangeEvent",
        chrono::Utc::now(),
        last_commit,
    )
}

struct Running {
    records: mpsc::UnboundedReceiver<RecordsMessage>,
    seen: Vec<Value>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<StreamReport, sfsync_stream::StreamError>>,
}

impl Harness {
    fn mutate<T>(&self, f: impl FnOnce(&mut Org) -> T) -> T {
        let org = self.sim.org();
        let mut guard = org.lock().expect("org lock");
        f(&mut guard)
    }

    fn start(&self, sync: SyncConfig, settings: StreamSettings) -> Running {
        let (tx, records) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let client = self.client.clone();
        let store = FileReplayStore::new(self.state.path());
        let task = tokio::spawn(async move {
            stream_sync(&client, &sync, &Collect(tx), &store, &settings, async {
                let _ = stopped.await;
            })
            .await
        });
        Running {
            records,
            seen: Vec::new(),
            stop,
            task,
        }
    }

    fn settings(&self) -> StreamSettings {
        let mut s = StreamSettings::new(self.pubsub.url(), "stream-test");
        s.reconnect_after = Duration::from_millis(10);
        s
    }
}

impl Running {
    /// The first record with `id` received and not yet taken (records of one message may
    /// be taken one by one).
    async fn until(&mut self, id: &str) -> Value {
        loop {
            if let Some(i) = self.seen.iter().position(|r| r["Id"] == id) {
                return self.seen.remove(i);
            }
            let message = tokio::time::timeout(Duration::from_secs(30), self.records.recv())
                .await
                .unwrap_or_else(|_| panic!("record {id} within 30 s"))
                .expect("stream running");
            self.seen
                .extend(message.records.iter().map(Record::to_value));
        }
    }

    async fn finish(self) -> StreamReport {
        let _ = self.stop.send(());
        self.task.await.expect("task").expect("stream ran")
    }
}

async fn polled(client: &Client, sync: &SyncConfig, id: &str) -> Option<Value> {
    let plan = client.plan(sync).await.expect("plan");
    let mut ex = client.extract(
        &plan,
        Window {
            after: None,
            until: chrono::Utc::now(),
            include_deleted: true,
            api: ExtractApi::Rest,
            where_clause: None,
        },
    );
    while let Some(page) = ex.next_page().await.expect("page") {
        if let Some(r) = page
            .records
            .iter()
            .map(Record::to_value)
            .find(|r| r["Id"] == id)
        {
            return Some(r);
        }
    }
    None
}

#[tokio::test]
async fn a_committed_change_arrives_as_the_polled_record_with_the_same_message_id() {
    let h = harness().await;
    let store = FileReplayStore::new(h.state.path());
    store
        .put("contacts", &before_everything(None))
        .await
        .expect("seed replay");
    let sync = sync(true);
    let mut running = h.start(sync.clone(), h.settings());

    let id = h.mutate(|org| {
        org.records("Contact")[0]["Id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    h.mutate(|org| org.update("Contact", &id, obj(json!({"Title": "Chief Streamer"}))));
    let streamed = running.until(&id).await;
    assert_eq!(streamed["Title"], "Chief Streamer");
    assert!(
        streamed.get("Account").is_some(),
        "relationship fields come with the re-read"
    );

    let polled = polled(&h.client, &sync, &id)
        .await
        .expect("polling finds it");
    let a = map_record(&sync, streamed).expect("maps");
    let b = map_record(&sync, polled).expect("maps");
    assert_eq!(
        a.message_id, b.message_id,
        "polling's copy is deduplicated downstream"
    );

    let report = running.finish().await;
    assert_eq!(report.resumed, Resume::Stored);
    assert_eq!(report.events, 1);
    assert!(report.records >= 1);
    let stored = store.get("contacts").await.expect("get").expect("stored");
    assert_eq!(
        stored.bytes().ok(),
        Some(1u64.to_be_bytes().to_vec()),
        "replay id stored after enqueue"
    );
    assert!(stored.last_commit.is_some());
}

#[tokio::test]
async fn deletes_undeletes_gaps_and_overflows_become_records() {
    let h = harness().await;
    FileReplayStore::new(h.state.path())
        .put("contacts", &before_everything(None))
        .await
        .expect("seed");
    let sync = sync(true);
    let mut running = h.start(sync.clone(), h.settings());
    let ids: Vec<String> = h.mutate(|org| {
        org.records("Contact")
            .iter()
            .take(6)
            .filter_map(|r| r["Id"].as_str().map(String::from))
            .collect()
    });

    h.mutate(|org| org.soft_delete("Contact", &ids[0]));
    let soft = running.until(&ids[0]).await;
    assert_eq!(soft["IsDeleted"], true);

    h.mutate(|org| org.undelete("Contact", &ids[0]));
    let back = running.until(&ids[0]).await;
    assert_eq!(back["IsDeleted"], false);

    h.mutate(|org| org.hard_delete("Contact", &ids[1]));
    let purged = running.until(&ids[1]).await;
    assert_eq!(purged["IsDeleted"], true);
    // The same shape and stamp as getDeleted gives polling: one messageId for both.
    // getDeleted covers whole minutes up to its end: let this one close.
    h.mutate(|org| org.advance_clock(chrono::Duration::minutes(2)));
    let start = h.mutate(|org| org.now()) - chrono::Duration::days(1);
    let polled = h
        .client
        .deleted(
            "Contact",
            start,
            h.mutate(|org| org.now()) + chrono::Duration::minutes(5),
        )
        .await
        .expect("getDeleted");
    let polled = polled
        .into_iter()
        .find(|r| r["Id"] == ids[1].as_str())
        .expect("getDeleted lists it");
    assert_eq!(
        map_record(&sync, purged).expect("maps").message_id,
        map_record(&sync, polled).expect("maps").message_id
    );

    h.mutate(|org| {
        org.emit_gap(
            "Contact",
            &[ids[2].as_str(), ids[3].as_str()],
            sfsync_pubsub::ChangeType::GapUpdate,
        )
    });
    running.until(&ids[2]).await;
    running.until(&ids[3]).await;

    // An overflow names no records: the window from its commit time is re-read, which
    // includes a record changed in that second.
    h.mutate(|org| {
        org.touch_random("Contact", 0, 1);
        org.advance_clock(chrono::Duration::seconds(1));
        org.emit_overflow("Contact")
    });
    let later = h.mutate(|org| {
        org.update("Contact", &ids[4], obj(json!({"Title": "Overflowed"})));
        org.emit_overflow("Contact")
    });
    assert!(later);
    // Once for its update event, once more for the overflow's window re-read.
    running.until(&ids[4]).await;
    let again = running.until(&ids[4]).await;
    assert_eq!(again["Title"], "Overflowed");

    let report = running.finish().await;
    assert_eq!(report.gap_events, 1);
    assert_eq!(report.overflow_events, 2);
    assert!(report.deleted >= 2);
}

#[tokio::test]
async fn an_expired_replay_id_falls_back_to_re_reading_the_window_and_says_so() {
    let h = harness().await;
    let since = h.mutate(|org| org.now());
    let id = h.mutate(|org| {
        let id = org.records("Contact")[0]["Id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        org.update(
            "Contact",
            &id,
            obj(json!({"Title": "Changed while nobody listened"})),
        );
        org.advance_clock(chrono::Duration::hours(73));
        // A new event, so the retained bus starts after the stored position.
        org.touch_random("Contact", 1, 9);
        id
    });
    FileReplayStore::new(h.state.path())
        .put("contacts", &before_everything(Some(since)))
        .await
        .expect("seed");
    let mut running = h.start(sync(false), h.settings());
    let record = running.until(&id).await;
    assert_eq!(record["Title"], "Changed while nobody listened");
    let report = running.finish().await;
    let expected = since - chrono::Duration::minutes(10);
    assert_eq!(
        report.resumed,
        Resume::Expired {
            window_start: Some(expected)
        }
    );
    let run = report.run_report("stream-test", "contacts", chrono::Utc::now());
    assert_eq!(
        run.window_start,
        Some(expected),
        "the run report names the polled window"
    );
    assert_eq!(run.api.as_deref(), Some("stream"));
    assert!(run.replay_expired);
    assert!(
        run.to_string().contains("the stored replay id had expired"),
        "the run report says why it polled: {run}"
    );
}

/// Item 2's decision, per call kind: an update event names only the changed fields, but every
/// call is made from the full selected record read again by Id — a `group` carries its
/// unchanged traits, a `track` its unchanged properties — with the messageId polling gives the
/// same version.
#[tokio::test]
async fn every_call_kind_is_made_from_the_full_record_not_the_changed_fields() {
    let h = harness().await;
    let store = FileReplayStore::new(h.state.path());
    let accounts = SyncConfig {
        name: "accounts".into(),
        object: "Account".into(),
        kind: SyncKind::Objects,
        user_id: None,
        group_id: Some("Id".into()),
        object_type_id: Some("1".into()),
        fields: vec!["Name".into(), "Industry".into()],
        ..sync(false)
    };
    let tasks = SyncConfig {
        name: "tasks".into(),
        object: "Task".into(),
        kind: SyncKind::Events,
        user_id: Some("WhoId".into()),
        event: Some("Task Logged".into()),
        timestamp_field: Some("CreatedDate".into()),
        fields: vec!["Subject".into(), "Status".into()],
        where_clause: Some("WhoId != null".into()),
        ..sync(false)
    };
    for (sync, topic) in [
        (&accounts, "/data/AccountChangeEvent"),
        (&tasks, "/data/TaskChangeEvent"),
    ] {
        store
            .put(
                &sync.name,
                &StoredReplay::new(&0u64.to_be_bytes(), topic, chrono::Utc::now(), None),
            )
            .await
            .expect("seed replay");
    }
    let account = h.mutate(|org| {
        org.records("Account")
            .iter()
            .find(|r| r["IsDeleted"] != true && r["Name"].is_string())
            .and_then(|r| r["Id"].as_str().map(str::to_string))
            .expect("an account")
    });
    let task = h.mutate(|org| {
        org.records("Task")
            .iter()
            .find(|r| r["IsDeleted"] != true && r["WhoId"].is_string() && r["Subject"].is_string())
            .and_then(|r| r["Id"].as_str().map(str::to_string))
            .expect("a task with a person")
    });

    for (sync, id, change) in [
        (&accounts, &account, json!({"Industry": "Streaming"})),
        (&tasks, &task, json!({"Status": "Completed"})),
    ] {
        let mut running = h.start(sync.clone(), h.settings());
        h.mutate(|org| org.update(&sync.object, id, obj(change.clone())));
        let streamed = running.until(id).await;
        running.finish().await;
        let call = map_record(sync, streamed).expect("maps");
        let polled = polled(&h.client, sync, id).await.expect("polling finds it");
        let expected = map_record(sync, polled).expect("maps");
        assert_eq!(call.message_id, expected.message_id, "{}", sync.name);
        let call = serde_json::to_value(&call).expect("json");
        match sync.kind {
            SyncKind::Objects => {
                assert_eq!(call["type"], "group");
                assert_eq!(call["traits"]["Industry"], "Streaming", "{call}");
                // Unchanged: only the full record carries it.
                assert!(call["traits"]["name"].is_string(), "{call}");
            }
            _ => {
                assert_eq!(call["type"], "track");
                let property = |name: &str| {
                    let p = &call["properties"];
                    p.get(name)
                        .or_else(|| p.get(name.to_lowercase()))
                        .cloned()
                        .unwrap_or(Value::Null)
                };
                assert_eq!(property("Status"), "Completed", "{call}");
                assert!(property("Subject").is_string(), "{call}");
            }
        }
    }
}
