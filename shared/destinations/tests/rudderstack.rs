//! RudderStack: the data plane URL, Segment-spec wire form, and the shared behaviour.

mod common;

use common::*;
use sfsync_destinations::{BuildError, Destination};
use sfsync_mapping::{DestinationConfig, DestinationKind};

const WRITE_KEY: &str = "rudder_write_key_5d6e";

fn cfg(url: &str) -> DestinationConfig {
    let mut c = config(DestinationKind::Rudderstack);
    set(&mut c, "write_key", WRITE_KEY);
    c.endpoint = Some(url.into());
    c
}

const FIXTURE: Fixture = Fixture {
    config: cfg,
    ok: || reply(200, "OK"),
    gzip_by_default: true,
    secrets: &[WRITE_KEY],
};

#[tokio::test]
async fn shared_behaviour_holds() {
    shared_behaviour(&FIXTURE).await;
}

#[tokio::test]
async fn posts_to_the_data_plane_batch_endpoint() {
    let calls = vec![
        object(0),
        delete_object(1),
        relationship(2),
        delete_relationship(3),
    ];
    // A data plane URL with a path prefix and a trailing slash.
    let requests = deliver_all("OK", |url| cfg(&format!("{url}/dataplane/")), calls).await;
    let r = &requests[0];
    assert_eq!(r.path, "/dataplane/v1/batch");
    assert_eq!(
        r.header("authorization").as_deref(),
        Some(basic(WRITE_KEY, "").as_str())
    );
    assert!(r.gzipped);
    let batch = r.json()["batch"].clone();
    assert_eq!(batch[0]["type"], "group");
    assert_eq!(
        batch[0]["anonymousId"],
        "sfsync-object-1-001A00000000000000"
    );
    assert_eq!(batch[1]["type"], "track");
    assert_eq!(batch[1]["event"], "Object Deleted");
    assert_eq!(
        batch[1]["anonymousId"],
        "sfsync-object-1-001A00000000000001"
    );
    // Where what sits behind RudderStack (as behind Segment) reads the deleted object.
    assert_eq!(batch[1]["groupId"], "001A00000000000001");
    assert_eq!(batch[1]["context"]["groupId"], "001A00000000000001");
    assert_eq!(batch[2]["userId"], "003U00000000000002");
    assert_eq!(
        batch[2]["traits"]["relationshipAttributes"]["Roles"],
        "Buyer"
    );
    assert_eq!(batch[3]["event"], "Relationship Deleted");
    assert_eq!(batch[3]["context"]["groupId"], "001A00000000000003");
}

#[tokio::test]
async fn the_data_plane_url_is_required() {
    let mut config = cfg("http://unused");
    config.endpoint = None;
    let http = sfsync_destinations::http_client().expect("client");
    let err = Destination::new(&config, http).expect_err("no endpoint");
    assert!(
        matches!(
            &err,
            BuildError::Missing { key, .. } if key == "endpoint"
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("endpoint"));
}
