//! A revoked or wrong key does not dead-letter the world: locally, `sfsync sync` stops with
//! "credentials rejected by <destination>", dead-letters nothing, and leaves the undelivered
//! records before the checkpoint, so the next run (with a working key) delivers them all.

use sfsync_e2e::local::*;
use sfsync_simulator::Faults;

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_stops_the_local_sync_and_the_next_run_delivers_everything() {
    let w = Local::start(&CONFIG, org(300), Faults::default()).await;
    // The key is refused once; the run must stop at that first refusal.
    w.receiver
        .script(401, &[], r#"{"error":"Invalid write key"}"#);
    let err = match w.run().await {
        Ok(_) => panic!("the run went on past a rejected key"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("credentials rejected by seg: HTTP 401: Invalid write key"),
        "{err}"
    );
    assert!(!err.contains(SEGMENT_WRITE_KEY), "{err}");
    assert_eq!(w.receiver.received().len(), 1, "it stopped at the refusal");
    assert!(w.dead_letters().is_empty(), "nothing is dead-lettered");
    assert!(w.delivered().is_empty());

    // The key works again: the next run delivers every record, none lost.
    let outcome = w.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.all_delivered());
    let delivered: std::collections::HashSet<String> = w.delivered_ids().into_iter().collect();
    assert!(
        w.expected_all().is_subset(&delivered),
        "{} records missing",
        w.expected_all().difference(&delivered).count()
    );
    for sync in ["contacts", "accounts"] {
        w.assert_checkpoint_covered(sync).await;
    }
}
