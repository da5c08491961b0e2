//! The file destination: JSON lines appended and flushed; dead on I/O errors.

mod common;

use std::time::Duration;

use common::*;
use sfsync_destinations::{DeliveryReport, Outcome};
use sfsync_mapping::{Call, DestinationConfig, DestinationKind};

fn cfg(path: &std::path::Path) -> DestinationConfig {
    let mut c = config(DestinationKind::File);
    set(&mut c, "path", path.display().to_string());
    c
}

fn lines(path: &std::path::Path) -> Vec<Call> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a call per line"))
        .collect()
}

#[tokio::test]
async fn calls_are_appended_as_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("calls.jsonl");
    let d = destination(&cfg(&path));
    let first = vec![identify(0), object(1), delete_relationship(2)];
    let report = d.deliver(first.clone(), Duration::from_secs(5)).await;
    assert_eq!(report.delivered(), 3);
    assert_eq!(report.requests, 1);
    let report: DeliveryReport = d.deliver(vec![track(3)], Duration::from_secs(5)).await;
    assert_eq!(report.delivered(), 1);
    let mut expected = first;
    expected.push(track(3));
    assert_eq!(lines(&path), expected, "appended in order, nothing lost");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.ends_with('\n'));
    assert_eq!(text.lines().count(), 4);
}

#[tokio::test]
async fn an_io_error_makes_the_calls_dead_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory cannot be opened for appending.
    let d = destination(&cfg(dir.path()));
    let report = d
        .deliver(vec![identify(0), track(1)], Duration::from_secs(5))
        .await;
    assert_eq!(report.dead().count(), 2);
    for o in report.dead() {
        let Outcome::Dead { reason } = &o.outcome else {
            unreachable!()
        };
        assert!(reason.contains("cannot append to"), "{reason}");
        assert!(
            reason.contains(&dir.path().display().to_string()),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn plan_reports_one_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("calls.jsonl");
    let d = destination(&cfg(&path));
    let plan = d.plan(&tracks(10));
    assert_eq!(plan.requests.len(), 1);
    assert_eq!(plan.requests[0].calls, (0..10).collect::<Vec<_>>());
    assert!(!path.exists(), "planning writes nothing");
}
