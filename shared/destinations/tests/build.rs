//! Building destinations: errors name the key, never a secret; Debug hides credentials.

mod common;

use common::*;
use sfsync_destinations::{BuildError, Destination};
use sfsync_mapping::DestinationKind;

fn build(config: &sfsync_mapping::DestinationConfig) -> Result<Destination, BuildError> {
    Destination::new(config, sfsync_destinations::http_client().expect("client"))
}

/// A missing credential is refused when the config is read (each type's settings state what
/// it requires); an empty one when the destination is built. Both name the key.
#[test]
fn missing_or_empty_credentials_are_named() {
    for (kind, key) in [
        (DestinationKind::Customerio, "api_key"),
        (DestinationKind::CustomerioTrack, "site_id"),
        (DestinationKind::Segment, "write_key"),
        (DestinationKind::Rudderstack, "write_key"),
        (DestinationKind::Mixpanel, "project_token"),
        (DestinationKind::Amplitude, "api_key"),
        (DestinationKind::Webhook, "url"),
        (DestinationKind::File, "path"),
    ] {
        let mut json = serde_json::to_value(config(kind)).expect("serializes");
        json.as_object_mut().map(|m| m.remove(key));
        let err = serde_json::from_value::<sfsync_mapping::DestinationConfig>(json)
            .expect_err("missing credential");
        assert!(
            err.to_string().contains(&format!("missing field `{key}`")),
            "{kind}: {err}"
        );
        let mut c = config(kind);
        set(&mut c, key, "  ");
        let err = build(&c).expect_err("empty credential");
        assert!(
            matches!(&err, BuildError::Invalid { key: k, .. } if k == key),
            "{kind}: {err:?}"
        );
        assert!(err.to_string().contains(key), "{err}");
        assert!(err.to_string().contains(&format!("test-{kind}")), "{err}");
    }
}

#[test]
fn unresolved_references_are_refused() {
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", "${secret:SEGMENT_KEY}");
    let err = build(&c).expect_err("unresolved");
    assert!(
        matches!(
            &err,
            BuildError::Invalid { key, .. } if key == "write_key"
        ),
        "{err:?}"
    );
}

#[test]
fn empty_values_and_bad_urls_are_refused() {
    let mut c = config(DestinationKind::Amplitude);
    set(&mut c, "api_key", "  ");
    assert!(build(&c).is_err());
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", "k");
    c.endpoint = Some("ftp://example.com".into());
    let err = build(&c).expect_err("bad endpoint");
    assert!(err.to_string().contains("endpoint"));
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", "k");
    c.max_batch_bytes = Some(5);
    let err = build(&c).expect_err("no room");
    assert!(err.to_string().contains("max_batch_bytes"), "{err}");
}

#[test]
fn debug_output_shows_no_secret() {
    let mut c = config(DestinationKind::CustomerioTrack);
    set(&mut c, "site_id", "site-id-visible-nowhere");
    set(&mut c, "api_key", "api-key-visible-nowhere");
    let d = build(&c).expect("builds");
    let debug = format!("{d:?}");
    assert!(debug.contains("test-customerio_track"), "{debug}");
    assert!(!debug.contains("visible-nowhere"), "{debug}");
}

#[test]
fn the_default_budget_follows_the_config() {
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", "k");
    assert_eq!(
        build(&c).expect("builds").default_budget(),
        sfsync_destinations::DEFAULT_RETRY_BUDGET
    );
    c.retry_budget_seconds = Some(7);
    assert_eq!(
        build(&c).expect("builds").default_budget(),
        std::time::Duration::from_secs(7)
    );
}

#[test]
fn destinations_and_deliveries_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let mut c = config(DestinationKind::Segment);
    set(&mut c, "write_key", "k");
    let d = build(&c).expect("builds");
    send_sync(&d);
    // The delivery future holds no lock across an await: it can be spawned.
    send(d.deliver(Vec::new(), std::time::Duration::ZERO));
}
