//! The Pub/Sub API of the simulator over real gRPC on loopback: change events for every
//! mutation, flow control, replay, retention, auth headers, gap and overflow events.

use serde_json::json;
use sfsync_pubsub::cdc::{ChangeEvent, decode_event, parse_schema};
use sfsync_pubsub::{Auth, ChangeType, FetchRequest, PubSubClient, ReplayPreset, error_code};
use sfsync_simulator::{Org, OrgSpec, PubSubHandle, PubSubOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::common::{Api, obj, start};

const CONTACTS: &str = "/data/ContactChangeEvent";

struct Bus {
    api: Api,
    pubsub: PubSubHandle,
}

async fn bus(options: PubSubOptions) -> Bus {
    let api = start(Org::generate(&OrgSpec::tiny())).await;
    let pubsub = api.sim.start_pubsub(options).await.expect("Pub/Sub starts");
    Bus { api, pubsub }
}

impl Bus {
    fn auth(&self) -> Auth {
        Auth {
            access_token: self.api.token.clone(),
            instance_url: self.api.sim.url(),
            // Salesforce session ids begin with the org id.
            tenant_id: self.api.token.split('!').next().unwrap_or("").to_string(),
        }
    }

    async fn client(&self) -> PubSubClient {
        PubSubClient::connect(&self.pubsub.url(), self.auth())
            .await
            .expect("connects")
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut Org) -> T) -> T {
        let org = self.api.sim.org();
        let mut guard = org.lock().expect("org lock");
        f(&mut guard)
    }
}

struct Subscription {
    client: PubSubClient,
    requests: mpsc::Sender<FetchRequest>,
    responses: Streaming<sfsync_pubsub::FetchResponse>,
}

async fn subscribe(
    bus: &Bus,
    preset: ReplayPreset,
    replay_id: Vec<u8>,
    n: i32,
) -> Result<Subscription, tonic::Status> {
    let mut client = bus.client().await;
    let (requests, rx) = mpsc::channel(8);
    requests
        .send(FetchRequest {
            topic_name: CONTACTS.into(),
            replay_preset: preset as i32,
            replay_id,
            num_requested: n,
            ..Default::default()
        })
        .await
        .expect("first request");
    let responses = client.subscribe(ReceiverStream::new(rx)).await?;
    Ok(Subscription {
        client,
        requests,
        responses,
    })
}

impl Subscription {
    /// The next `n` events (over as many responses as the server uses), decoded.
    async fn events(&mut self, n: usize) -> Vec<(Vec<u8>, ChangeEvent)> {
        let mut out = Vec::new();
        while out.len() < n {
            let response = self
                .responses
                .message()
                .await
                .expect("stream ok")
                .expect("stream open");
            for e in response.events {
                let event = e.event.expect("event");
                let info = self
                    .client
                    .get_schema(&event.schema_id)
                    .await
                    .expect("GetSchema");
                let schema = parse_schema(&info.schema_id, &info.schema_json).expect("schema");
                out.push((
                    e.replay_id,
                    decode_event(&schema, &event.payload).expect("decodes"),
                ));
            }
        }
        out
    }
}

#[tokio::test]
async fn every_mutation_becomes_a_change_event_with_its_header() {
    let bus = bus(PubSubOptions::default()).await;
    let mut sub = subscribe(&bus, ReplayPreset::Earliest, vec![], 20)
        .await
        .expect("subscribes");
    let (id, stamp) = bus.mutate(|org| {
        let id = org.insert(
            "Contact",
            obj(json!({"LastName": "Lovelace", "Email": "ada@example.com"})),
        );
        (id, org.now().timestamp_millis())
    });
    bus.mutate(|org| {
        org.update(
            "Contact",
            &id,
            obj(json!({"Title": "Countess", "Email": null})),
        )
    });
    bus.mutate(|org| org.soft_delete("Contact", &id));
    bus.mutate(|org| org.undelete("Contact", &id));
    bus.mutate(|org| org.hard_delete("Contact", &id));
    let touched = bus.mutate(|org| org.touch_random("Contact", 3, 7));

    let events = sub.events(8).await;
    let types: Vec<ChangeType> = events.iter().map(|(_, e)| e.header.change_type).collect();
    use ChangeType::*;
    assert_eq!(
        types,
        vec![
            Create, Update, Delete, Undelete, Delete, Update, Update, Update
        ]
    );
    for (_, e) in &events[..5] {
        assert_eq!(e.header.record_ids, vec![id.clone()]);
        assert_eq!(e.header.entity_name, "Contact");
    }
    let create = &events[0].1;
    assert_eq!(create.header.commit_timestamp, stamp);
    assert_eq!(create.fields.get("Email"), Some(&json!("ada@example.com")));
    assert!(create.header.changed_fields.is_empty());
    let update = &events[1].1;
    let mut changed = update.header.changed_fields.clone();
    changed.sort();
    assert_eq!(changed, vec!["Email", "LastModifiedDate", "Title"]);
    assert_eq!(update.header.nulled_fields, vec!["Email"]);
    assert_eq!(update.fields.get("Title"), Some(&json!("Countess")));
    assert!(
        !update.fields.contains_key("LastName"),
        "an update carries only changed fields"
    );
    assert!(events[2].1.fields.is_empty(), "a delete carries no fields");
    // touch_random is one transaction: one key, sequence numbers 1, 2, 3.
    let tx: Vec<(&str, i32)> = events[5..]
        .iter()
        .map(|(_, e)| (e.header.transaction_key.as_str(), e.header.sequence_number))
        .collect();
    assert!(tx.iter().all(|(k, _)| *k == tx[0].0));
    assert_eq!(
        tx.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let ids: Vec<String> = events[5..]
        .iter()
        .flat_map(|(_, e)| e.header.record_ids.clone())
        .collect();
    assert_eq!(ids, touched);
    // Replay ids increase.
    assert!(events.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test]
async fn the_server_sends_no_more_events_than_the_client_asked_for() {
    let bus = bus(PubSubOptions::default()).await;
    bus.mutate(|org| org.touch_random("Contact", 5, 1));
    let mut sub = subscribe(&bus, ReplayPreset::Earliest, vec![], 2)
        .await
        .expect("subscribes");
    let first = sub.responses.message().await.expect("ok").expect("open");
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.pending_num_requested, 0);
    sub.requests
        .send(FetchRequest {
            num_requested: 3,
            ..Default::default()
        })
        .await
        .expect("more");
    let rest = sub.events(3).await;
    assert_eq!(rest.len(), 3);
    assert_eq!(first.latest_replay_id, first.events[1].replay_id);
}

#[tokio::test]
async fn a_custom_replay_id_resumes_after_it_and_an_expired_one_is_refused() {
    let bus = bus(PubSubOptions {
        retention: chrono::Duration::hours(72),
        ..Default::default()
    })
    .await;
    let touched = bus.mutate(|org| org.touch_random("Contact", 3, 2));
    let mut sub = subscribe(&bus, ReplayPreset::Earliest, vec![], 3)
        .await
        .expect("subscribes");
    let events = sub.events(3).await;
    drop(sub);
    let mut resumed = subscribe(&bus, ReplayPreset::Custom, events[0].0.clone(), 5)
        .await
        .expect("resumes");
    let after: Vec<String> = resumed
        .events(2)
        .await
        .iter()
        .flat_map(|(_, e)| e.header.record_ids.clone())
        .collect();
    assert_eq!(after, touched[1..].to_vec());

    bus.mutate(|org| org.advance_clock(chrono::Duration::hours(73)));
    let expired = subscribe(&bus, ReplayPreset::Custom, events[0].0.clone(), 5).await;
    let status = expired.err().expect("an expired replay id is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        error_code(&status),
        Some(sfsync_pubsub::ERROR_REPLAY_ID_VALIDATION_FAILED)
    );
    let corrupted = subscribe(&bus, ReplayPreset::Custom, vec![1, 2, 3], 5).await;
    let status = corrupted.err().expect("a malformed replay id is refused");
    assert_eq!(
        error_code(&status),
        Some(sfsync_pubsub::ERROR_REPLAY_ID_CORRUPTED)
    );
}

#[tokio::test]
async fn calls_need_the_headers_of_a_live_session() {
    let bus = bus(PubSubOptions::default()).await;
    let mut good = bus.client().await;
    let topic = good.get_topic(CONTACTS).await.expect("GetTopic");
    assert!(topic.can_subscribe && !topic.schema_id.is_empty());
    assert!(topic.tenant_guid.starts_with("00D"));
    let schema = good.get_schema(&topic.schema_id).await.expect("GetSchema");
    assert!(schema.schema_json.contains("ChangeEventHeader"));

    for auth in [
        Auth {
            access_token: "not-a-session".into(),
            ..bus.auth()
        },
        Auth {
            instance_url: "https://elsewhere.my.salesforce.com".into(),
            ..bus.auth()
        },
        Auth {
            tenant_id: "00D000000000000AAA".into(),
            ..bus.auth()
        },
    ] {
        let mut client = PubSubClient::connect(&bus.pubsub.url(), auth)
            .await
            .expect("connects");
        let status = client.get_topic(CONTACTS).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(error_code(&status), Some(sfsync_pubsub::ERROR_AUTH));
        assert!(
            !status.message().contains(&bus.api.token),
            "the token is never echoed"
        );
    }
    bus.api.sim.expire_all_tokens();
    let status = good.get_topic(CONTACTS).await.expect_err("expired session");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let unknown = bus
        .client()
        .await
        .get_topic("/data/NoSuchThingChangeEvent")
        .await;
    assert!(unknown.is_err());
}

#[tokio::test]
async fn gap_and_overflow_events_come_on_demand_with_ids_but_no_fields() {
    let bus = bus(PubSubOptions::default()).await;
    let ids = bus.mutate(|org| {
        let ids = org.touch_random("Contact", 2, 3);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(org.emit_gap("Contact", &refs, ChangeType::GapUpdate));
        assert!(org.emit_overflow("Contact"));
        assert!(
            !org.emit_gap("Contact", &refs, ChangeType::Update),
            "not a gap type"
        );
        ids
    });
    let mut sub = subscribe(&bus, ReplayPreset::Earliest, vec![], 10)
        .await
        .expect("subscribes");
    let events = sub.events(4).await;
    let gap = &events[2].1;
    assert_eq!(gap.header.change_type, ChangeType::GapUpdate);
    assert_eq!(
        gap.header.record_ids, ids,
        "one gap event names several records"
    );
    assert!(gap.fields.is_empty());
    let overflow = &events[3].1;
    assert_eq!(overflow.header.change_type, ChangeType::GapOverflow);
    assert!(overflow.header.record_ids.is_empty());
    assert_eq!(overflow.header.entity_name, "Contact");
}

#[tokio::test]
async fn a_later_request_naming_another_topic_ends_the_subscription() {
    let bus = bus(PubSubOptions::default()).await;
    let mut sub = subscribe(&bus, ReplayPreset::Latest, vec![], 1)
        .await
        .expect("subscribes");
    sub.requests
        .send(FetchRequest {
            topic_name: "/data/LeadChangeEvent".into(),
            num_requested: 1,
            ..Default::default()
        })
        .await
        .expect("send");
    let status = sub.responses.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
