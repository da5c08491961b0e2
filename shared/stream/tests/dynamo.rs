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
