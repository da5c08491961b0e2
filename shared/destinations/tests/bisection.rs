//! A request refused because of one call costs one call: for every destination whose API
//! can refuse a whole request for one bad call, a full batch with 1 and with 5 bad calls
//! delivers every valid call and dead-letters only the bad ones, each with the API's
//! message, within the split budget. The requests each case took are printed (run with
//! `--nocapture`) and recorded in docs/benchmarks.md.

mod common;

use std::time::Duration;

use common::vendors::{self, Refuse, SharedLedger};
use common::*;
use serde_json::{Value, json};
use sfsync_destinations::{Destination, Outcome};
use sfsync_mapping::{Call, DestinationConfig, DestinationKind};

const KEY: &str = "key_for_bisection_tests";
const MARK: &str = "REFUSE-ME";
const WHY: &str = "this call fails the vendor's validation";

/// The requests a bisection may take for `k` culprits among `n` calls: the refused request,
/// then at most two per culprit per level of the tree.
fn bound(n: usize, k: usize) -> u64 {
    let depth = usize::BITS - (n - 1).leading_zeros();
    (1 + 2 * k * depth as usize) as u64
}

/// As many calls made by `make` as fit one request of `d` on their route.
fn full_batch(d: &Destination, make: impl Fn(usize) -> Call) -> Vec<Call> {
    let calls: Vec<Call> = (0..12_000).map(make).collect();
    let n = d.plan(&calls).requests[0].calls.len();
    calls.into_iter().take(n).collect()
}

/// `k` positions spread over `n`.
fn culprits(n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|j| j * n / k + n / (2 * k)).collect()
}

fn mark(call: &mut Call) {
    let mut traits = call.traits_map();
    traits.insert("flag".into(), Value::String(MARK.into()));
    call.traits = Some(traits.into());
}

struct Case {
    name: &'static str,
    config: fn(&str) -> DestinationConfig,
    make: fn(usize) -> Call,
    /// Turns a valid call into one the vendor refuses.
    spoil: fn(&mut Call),
    /// What the vendor's message for a spoiled call contains.
    message: &'static str,
}

async fn vendor_for(kind: DestinationKind, refuse: Refuse) -> (Server, SharedLedger) {
    match kind {
        DestinationKind::Customerio => vendors::customerio_pipelines(KEY, refuse).await,
        DestinationKind::Segment | DestinationKind::Rudderstack => {
            vendors::segment_like(KEY, refuse).await
        }
        DestinationKind::Mixpanel => vendors::mixpanel(refuse).await,
        DestinationKind::Amplitude => vendors::amplitude(KEY, "unused", refuse).await,
        DestinationKind::Webhook => vendors::webhook_receiver(refuse).await,
        other => panic!("{other} cannot refuse a request for one call"),
    }
}

/// Runs one destination with 1 and 5 culprits in a full batch; returns (n, requests for 1,
/// requests for 5).
async fn isolate(case: &Case) -> (usize, u64, u64) {
    let mut spent = Vec::new();
    let mut size = 0;
    for k in [1, 5] {
        let (server, ledger) = vendor_for(
            (case.config)("http://x").kind(),
            vendors::refuse_marked(MARK, WHY),
        )
        .await;
        let d = destination(&(case.config)(&server.url));
        let mut calls = full_batch(&d, case.make);
        let n = calls.len();
        size = n;
        let bad = culprits(n, k);
        for &i in &bad {
            (case.spoil)(&mut calls[i]);
        }
        let bad_ids: Vec<String> = bad.iter().map(|&i| calls[i].message_id.clone()).collect();
        let report = d.deliver(calls, Duration::from_secs(60)).await;
        let dead: Vec<&str> = report.dead().map(|o| o.message_id.as_str()).collect();
        assert_eq!(
            dead, bad_ids,
            "{}: k={k}: only the culprits are dead",
            case.name
        );
        for o in report.dead() {
            let Outcome::Dead { reason } = &o.outcome else {
                unreachable!()
            };
            assert!(
                reason.contains(case.message),
                "{}: the API's message: {reason}",
                case.name
            );
        }
        assert_eq!(report.delivered(), n - k, "{}: k={k}", case.name);
        assert_eq!(report.retry_later().count(), 0, "{}: k={k}", case.name);
        let ledger = ledger.lock().expect("ledger");
        assert!(
            ledger.dropped.is_empty(),
            "{}: {:?}",
            case.name,
            ledger.dropped
        );
        assert!(
            report.requests <= bound(n, k),
            "{}: {} requests for {k} culprits in {n}: more than {}",
            case.name,
            report.requests,
            bound(n, k)
        );
        println!(
            "bisection: {:<28} batch of {n:>5}: {k} bad call(s) isolated in {:>3} requests",
            case.name, report.requests
        );
        spent.push(report.requests);
    }
    (size, spent[0], spent[1])
}

fn with_key(kind: DestinationKind, url: &str) -> DestinationConfig {
    let mut c = config(kind);
    c.endpoint = Some(url.into());
    match kind {
        DestinationKind::Segment | DestinationKind::Rudderstack => set(&mut c, "write_key", KEY),
        DestinationKind::Mixpanel => set(&mut c, "project_token", KEY),
        DestinationKind::Webhook => set(&mut c, "secret", KEY),
        _ => set(&mut c, "api_key", KEY),
    }
    c
}

const CASES: &[Case] = &[
    Case {
        name: "customerio /v1/batch",
        config: |u| with_key(DestinationKind::Customerio, u),
        make: identify,
        // Customer.io (strict) refuses a timestamp that is not ISO-8601.
        spoil: |c| c.timestamp = "yesterday".into(),
        message: "not an ISO-8601",
    },
    Case {
        name: "segment /v1/batch",
        config: |u| with_key(DestinationKind::Segment, u),
        make: identify,
        spoil: mark,
        message: WHY,
    },
    Case {
        name: "rudderstack /v1/batch",
        config: |u| with_key(DestinationKind::Rudderstack, u),
        make: identify,
        spoil: mark,
        message: WHY,
    },
    Case {
        name: "mixpanel /engage",
        config: |u| with_key(DestinationKind::Mixpanel, u),
        make: identify,
        spoil: mark,
        message: WHY,
    },
    Case {
        name: "mixpanel /groups",
        config: |u| with_key(DestinationKind::Mixpanel, u),
        make: object,
        spoil: mark,
        message: WHY,
    },
    Case {
        name: "amplitude /identify",
        config: |u| with_key(DestinationKind::Amplitude, u),
        make: identify,
        // Amplitude refuses user ids shorter than 5 characters.
        spoil: |c| c.user_id = Some("u1".into()),
        message: "shorter than 5",
    },
    Case {
        name: "amplitude /groupidentify",
        config: |u| with_key(DestinationKind::Amplitude, u),
        make: object,
        spoil: mark,
        message: WHY,
    },
    Case {
        name: "webhook",
        config: |u| {
            let mut c = with_key(DestinationKind::Webhook, u);
            set(&mut c, "url", u);
            c.endpoint = None;
            c
        },
        make: identify,
        spoil: mark,
        message: WHY,
    },
];

#[tokio::test]
async fn one_bad_call_in_a_full_batch_costs_one_call_at_every_destination() {
    let mut figures = Vec::new();
    for case in CASES {
        figures.push((case.name, isolate(case).await));
    }
    println!("| destination | full batch | requests to isolate 1 bad call | 5 bad calls |");
    for (name, (n, one, five)) in figures {
        println!("| {name} | {n} | {one} | {five} |");
    }
}

#[tokio::test]
async fn a_full_mixpanel_batch_with_five_bad_updates_dead_letters_only_them() {
    let (server, ledger) = vendors::mixpanel(vendors::refuse_marked(MARK, WHY)).await;
    let d = destination(&with_key(DestinationKind::Mixpanel, &server.url));
    let mut calls: Vec<Call> = (0..2000).map(identify).collect();
    let bad = [100, 500, 1000, 1500, 1900];
    for i in bad {
        mark(&mut calls[i]);
    }
    let report = d.deliver(calls, Duration::from_secs(60)).await;
    let dead: Vec<&str> = report.dead().map(|o| o.message_id.as_str()).collect();
    let expected: Vec<String> = bad.iter().map(|&i| message_id(i)).collect();
    assert_eq!(dead, expected);
    assert_eq!(
        report.delivered(),
        1995,
        "{:?}",
        report.retry_later().next()
    );
    assert_eq!(ledger.lock().expect("ledger").accepted.len(), 1995);
}

#[tokio::test]
async fn past_the_split_budget_the_rest_is_retried_never_dead() {
    // Every call is bad: more culprits than any budget covers. Nothing valid may die, and
    // what was not isolated comes back for the next attempt.
    let (server, _ledger) = vendors::mixpanel(vendors::refuse_marked("003U", WHY)).await;
    let d = destination(&with_key(DestinationKind::Mixpanel, &server.url));
    let calls: Vec<Call> = (0..2000).map(identify).collect();
    let report = d.deliver(calls, Duration::from_secs(60)).await;
    assert_eq!(report.delivered(), 0);
    let dead = report.dead().count();
    let retry = report.retry_later().count();
    assert_eq!(dead + retry, 2000);
    assert!(dead > 0, "some culprits were isolated");
    assert!(retry > 0, "the budget bounded the requests");
    assert!(report.requests <= 1 + 176, "{} requests", report.requests);
    for o in report.retry_later() {
        let Outcome::RetryLater { reason, .. } = &o.outcome else {
            unreachable!()
        };
        assert!(reason.contains("split budget"), "{reason}");
    }
}

#[tokio::test]
async fn mixpanel_needs_five_requests_per_10000_calls_of_each_kind() {
    let d = destination(&with_key(DestinationKind::Mixpanel, "http://unused"));
    for (kind, calls) in [
        (
            "events (/import)",
            (0..10_000).map(track).collect::<Vec<_>>(),
        ),
        ("profiles (/engage)", (0..10_000).map(identify).collect()),
        ("groups (/groups)", (0..10_000).map(object).collect()),
    ] {
        let plan = d.plan(&calls);
        let largest = plan
            .requests
            .iter()
            .map(|r| r.body_bytes)
            .max()
            .unwrap_or(0);
        println!(
            "mixpanel: 10,000 {kind}: {} requests, largest body {largest} bytes",
            plan.requests.len()
        );
        assert_eq!(plan.requests.len(), 5, "{kind}");
        assert!(largest <= 10_000_000);
    }
    // Larger events: the 10 MB body limit binds before the 2000-event limit.
    let big: Vec<Call> = (0..10_000).map(|i| big_track(i, 6_000)).collect();
    let plan = d.plan(&big);
    println!(
        "mixpanel: 10,000 events of ~6 KB: {} requests",
        plan.requests.len()
    );
    assert!(plan.requests.iter().all(|r| r.body_bytes <= 10_000_000));
    assert!(plan.requests.len() > 5, "{}", json!(plan.requests.len()));
}
