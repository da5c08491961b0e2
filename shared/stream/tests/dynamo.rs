//! The replay store in the state table, on moto (started by `sfsync_e2e::aws`): a replay id
//! comes back byte for byte, in an item of its own.

use chrono::Utc;
use sfsync_pipeline::state::StateStore;
use sfsync_pipeline::state::dynamo::DynamoStore;
use sfsync_stream::{DynamoReplayStore, ReplayStore, StoredReplay};

#[tokio::test]
async fn a_replay_id_is_kept_in_the_state_table_in_its_own_item() {
    let sdk = sfsync_e2e::aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = sfsync_e2e::unique("stream-state");
    sfsync_e2e::state_table(&dynamo, &table).await;
    let replays = DynamoReplayStore::new(dynamo.clone(), &table);
    let checkpoints = DynamoStore::new(dynamo, &table);

    assert!(replays.get("contacts").await.expect("get").is_none());
    let replay = StoredReplay::new(&[0, 7, 255], "/data/ContactChangeEvent", Utc::now(), None);
    replays.put("contacts", &replay).await.expect("put");

    let back = replays.get("contacts").await.expect("get").expect("stored");
    assert_eq!(back.bytes().ok(), Some(vec![0, 7, 255]));
    assert_eq!(back, replay);
    // Its own item (sk "replay"): the sync's checkpoint item is not it.
    assert!(
        checkpoints
            .checkpoint("contacts")
            .await
            .expect("read")
            .is_none()
    );
}

/// The stream ledger in the state table: more versions than one BatchWriteItem (25) or one
/// BatchGetItem (100) takes, duplicates included, come back exactly; every item expires
/// (`ttl`), and the stream's start is noted once.
#[tokio::test]
async fn the_stream_ledger_is_batched_into_the_state_table_and_expires() {
    use sfsync_pipeline::ledger::{HandedOnBy, LEDGER_TTL_DAYS, RecordVersion};
    let sdk = sfsync_e2e::aws().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = sfsync_e2e::unique("stream-ledger");
    sfsync_e2e::state_table(&dynamo, &table).await;
    let ledger = DynamoStore::new(dynamo.clone(), &table).stream_ledger();
    let v = |i: usize| RecordVersion {
        id: format!("003{i:015}"),
        ms: 1_700_000_000_000 + i as i64,
    };

    assert_eq!(ledger.since("contacts").await.expect("since"), None);
    let first = chrono::DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("time");
    ledger.started("contacts", first).await.expect("started");
    ledger
        .started("contacts", first + chrono::Duration::hours(1))
        .await
        .expect("started again");
    assert_eq!(ledger.since("contacts").await.expect("since"), Some(first));

    // 60 versions streamed (3 BatchWriteItem requests), one of them twice.
    let mut streamed: Vec<RecordVersion> = (0..60).map(v).collect();
    streamed.push(v(7));
    ledger
        .record("contacts", &streamed, HandedOnBy::Stream)
        .await
        .expect("record");
    ledger
        .record("contacts", &[v(200)], HandedOnBy::Polling)
        .await
        .expect("record polling");
    // 250 looked up (3 BatchGetItem requests).
    let asked: Vec<RecordVersion> = (0..250).map(v).collect();
    let found = ledger.lookup("contacts", &asked).await.expect("lookup");
    assert_eq!(found.len(), 61);
    assert!((0..60).all(|i| found.get(&v(i)) == Some(&HandedOnBy::Stream)));
    assert_eq!(found.get(&v(200)), Some(&HandedOnBy::Polling));
    // Another sync's ledger is its own.
    assert!(
        ledger
            .lookup("leads", &asked)
            .await
            .expect("lookup")
            .is_empty()
    );

    let item = dynamo
        .get_item()
        .table_name(&table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("ledger#contacts#{}", v(3).id)),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(v(3).ms.to_string()),
        )
        .send()
        .await
        .expect("get item")
        .item
        .expect("the version's item");
    let ttl: i64 = item
        .get("ttl")
        .and_then(|t| t.as_n().ok())
        .and_then(|t| t.parse().ok())
        .expect("a ttl");
    let expected = Utc::now().timestamp() + LEDGER_TTL_DAYS * 86_400;
    assert!((expected - 60..=expected).contains(&ttl), "{ttl}");

    // A table that does not exist: an error the proof turns into "unknown".
    let gone = DynamoStore::new(dynamo, sfsync_e2e::unique("no-such-table")).stream_ledger();
    assert!(gone.lookup("contacts", &asked).await.is_err());
    let proof = sfsync_pipeline::ledger::StreamProof::start(
        &gone,
        "contacts",
        Utc::now(),
        std::time::Duration::ZERO,
    )
    .await;
    let mut counts = sfsync_pipeline::report::RunCounts::default();
    proof.check(asked, &mut counts).await;
    assert_eq!((counts.stream_unknown, counts.stream_missed), (250, 0));
}
