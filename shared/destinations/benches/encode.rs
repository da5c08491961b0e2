//! Encoding throughput per destination: 10,000 calls (a realistic mix of identify, track,
//! object, relationship and delete calls) encoded and packed into requests, without
//! sending. Prints how many requests each destination needs for those 10,000 calls when
//! batches are filled to its limits.
//!
//! Run: `cargo bench -p sfsync-destinations --bench encode`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sfsync_destinations::Destination;
use sfsync_mapping::config::{
    AmplitudeSettings, CustomerioSettings, CustomerioTrackSettings, FileSettings, MixpanelSettings,
    RudderstackSettings, SegmentSettings, UsEuRegion, WebhookSettings,
};
use sfsync_mapping::{Call, DestinationConfig, DestinationKind, DestinationSettings};

const CALLS: usize = 10_000;

fn source(kind: &str, object: &str, i: usize) -> Value {
    json!({ "sfsync": { "sync": format!("{kind}-sync"), "object": object, "kind": kind, "recordId": format!("003{i:015}") } })
}

/// Call `i` of the mix: 40% identify, 30% track, 15% object, 10% relationship, 5% delete.
fn call(i: usize) -> Call {
    let message_id = format!("6f1d3c2a-9b7e-4c5d-8a41-{i:012}");
    let ts = "2024-05-01T12:34:56.789Z";
    let value = match i % 20 {
        0..=7 => json!({
            "type": "identify", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"),
            "traits": { "email": format!("person{i}@example.com"), "firstName": "Ada", "lastName": "Lovelace",
                        "title": "VP Engineering", "phone": "+44 20 7946 0958", "LeadSource": "Web",
                        "created_at": 1_700_000_000, "Account.Name": "Acme Corporation" },
            "context": source("people", "Contact", i),
        }),
        8..=13 => json!({
            "type": "track", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "event": "Call Logged",
            "properties": { "Subject": "Quarterly review", "Status": "Completed", "Priority": "Normal",
                            "CallDurationInSeconds": 1260, "Description": "Discussed renewal terms and next steps." },
            "context": source("events", "Task", i),
        }),
        14..=16 => json!({
            "type": "group", "messageId": message_id, "timestamp": ts,
            "groupId": format!("001A{i:014}"), "anonymousId": format!("sfsync-object-1-001A{i:014}"),
            "traits": { "name": "Acme Corporation", "Industry": "Manufacturing", "AnnualRevenue": 125_000_000,
                        "NumberOfEmployees": 4200, "BillingCountry": "United Kingdom", "object_type_id": "1" },
            "context": source("objects", "Account", i),
        }),
        17 | 18 => json!({
            "type": "group", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "groupId": format!("001A{i:014}"),
            "traits": { "object_type_id": "1", "relationshipAttributes": { "Roles": "Decision Maker", "IsDirect": true } },
            "context": source("relationships", "AccountContactRelation", i),
        }),
        _ => json!({
            "type": "delete", "messageId": message_id, "timestamp": ts,
            "userId": format!("003U{i:014}"), "entity": "person",
            "context": source("people", "Contact", i),
        }),
    };
    serde_json::from_value(value).expect("a valid call")
}

fn config(kind: DestinationKind) -> DestinationConfig {
    let key = || "bench-key".to_string();
    let us = UsEuRegion::Us;
    let settings = match kind {
        DestinationKind::Customerio => DestinationSettings::Customerio(CustomerioSettings {
            api_key: key(),
            region: us,
        }),
        DestinationKind::Amplitude => DestinationSettings::Amplitude(AmplitudeSettings {
            api_key: key(),
            // Person deletes go to the User Privacy API (without it they are refused unsent).
            secret_key: Some("bench-secret-key".into()),
            region: us,
        }),
        DestinationKind::CustomerioTrack => {
            DestinationSettings::CustomerioTrack(CustomerioTrackSettings {
                site_id: "bench-site".into(),
                api_key: key(),
                region: us,
            })
        }
        DestinationKind::Segment => DestinationSettings::Segment(SegmentSettings {
            write_key: key(),
            region: us,
        }),
        DestinationKind::Rudderstack => {
            DestinationSettings::Rudderstack(RudderstackSettings { write_key: key() })
        }
        DestinationKind::Mixpanel => DestinationSettings::Mixpanel(MixpanelSettings {
            project_token: "bench-token".into(),
            project_id: None,
            username: None,
            secret: None,
            group_key: None,
            id_merge: Default::default(),
            region: Default::default(),
        }),
        DestinationKind::Webhook => DestinationSettings::Webhook(WebhookSettings {
            url: "https://hooks.example.com/sfsync".into(),
            secret: "whsec_YmVuY2gtc2lnbmluZy1rZXk=".into(),
        }),
        DestinationKind::File => DestinationSettings::File(FileSettings {
            path: "/dev/null".into(),
        }),
    };
    DestinationConfig {
        name: kind.as_str().to_string(),
        syncs: None,
        // RudderStack's data plane URL has no default.
        endpoint: (kind == DestinationKind::Rudderstack)
            .then(|| "https://dataplane.example.com".to_string()),
        gzip: None,
        max_batch_calls: None,
        max_batch_bytes: None,
        timeout_seconds: None,
        retry_budget_seconds: None,
        settings,
    }
}

const KINDS: [DestinationKind; 8] = [
    DestinationKind::Customerio,
    DestinationKind::CustomerioTrack,
    DestinationKind::Segment,
    DestinationKind::Rudderstack,
    DestinationKind::Mixpanel,
    DestinationKind::Amplitude,
    DestinationKind::Webhook,
    DestinationKind::File,
];

fn encode(c: &mut Criterion) {
    let calls: Vec<Call> = (0..CALLS).map(call).collect();
    let http = sfsync_destinations::http_client().expect("client");
    let destinations: Vec<Destination> = KINDS
        .iter()
        .map(|k| Destination::new(&config(*k), http.clone()).expect("destination"))
        .collect();

    println!("\nrequests per {CALLS} calls (mixed workload, batches filled to each API's limits):");
    for d in &destinations {
        let plan = d.plan(&calls);
        let bytes: usize = plan.requests.iter().map(|r| r.body_bytes).sum();
        let limits = d.limits();
        println!(
            "  {:<17} {:>5} requests  {:>6.1} MB  (rejected {}; limits: {} calls, {} B/batch, {} B/call)",
            d.kind().as_str(),
            plan.requests.len(),
            bytes as f64 / 1e6,
            plan.rejected.len(),
            limits.max_calls,
            limits.max_batch_bytes,
            limits.max_call_bytes,
        );
    }

    let mut group = c.benchmark_group("encode_10k_calls");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(20);
    for d in &destinations {
        group.bench_function(d.kind().as_str(), |b| {
            b.iter(|| black_box(d.plan(black_box(&calls))))
        });
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
