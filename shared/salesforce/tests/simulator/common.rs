//! Shared helpers: a simulator per test, fast client settings, draining extractions.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sfsync_mapping::config::{ExtractApi, SyncConfig, SyncKind};
use sfsync_salesforce::{Client, ClientConfig, Credentials, Cursor, Error, Extraction, Window};
use sfsync_simulator::{Faults, Org, Simulator, SimulatorHandle};

pub async fn start(org: Org) -> SimulatorHandle {
    start_with(org, Faults::default()).await
}

pub async fn start_with(org: Org, faults: Faults) -> SimulatorHandle {
    match Simulator::start(org, sfsync_simulator::Credentials::demo(), faults).await {
        Ok(handle) => handle,
        Err(e) => panic!("the simulator did not start: {e}"),
    }
}

pub fn client_credentials() -> Credentials {
    let demo = sfsync_simulator::Credentials::demo();
    Credentials::ClientCredentials {
        client_id: demo.client_id,
        client_secret: demo.client_secret,
    }
}

/// Test settings: small pages, tiny backoffs and polls.
pub fn config(url: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url, client_credentials());
    c.page_size = 200;
    c.max_retries = 4;
    c.retry_base = Duration::from_millis(1);
    c.retry_max_delay = Duration::from_millis(5);
    c.bulk_poll_initial = Duration::from_millis(1);
    c.bulk_poll_max = Duration::from_millis(4);
    c.request_timeout = Duration::from_secs(20);
    c.bulk_page_size = 250;
    c
}

pub fn client(url: &str) -> Client {
    client_with(config(url))
}

pub fn client_with(config: ClientConfig) -> Client {
    match Client::new(config) {
        Ok(c) => c,
        Err(e) => panic!("client: {e}"),
    }
}

pub fn sync(name: &str, object: &str, kind: SyncKind, fields: &[&str]) -> SyncConfig {
    SyncConfig {
        name: name.to_string(),
        object: object.to_string(),
        kind,
        user_id: match kind {
            SyncKind::Objects => None,
            _ => Some("Id".to_string()),
        },
        group_id: match kind {
            SyncKind::Objects | SyncKind::Relationships => Some("Id".to_string()),
            _ => None,
        },
        object_type_id: None,
        event: None,
        event_field: None,
        timestamp_field: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
        where_clause: None,
        deletes: false,
        api: ExtractApi::Auto,
        stream: false,
        conversions: None,
    }
}

pub fn contacts_sync(fields: &[&str]) -> SyncConfig {
    sync("contacts", "Contact", SyncKind::People, fields)
}

pub fn window(after: Option<Cursor>, until: DateTime<Utc>, api: ExtractApi) -> Window {
    Window {
        after,
        until,
        include_deleted: false,
        api,
        where_clause: None,
    }
}

pub async fn now(handle: &SimulatorHandle) -> DateTime<Utc> {
    handle.org().lock().unwrap().now()
}

/// Every page of an extraction: the records, and the `last` of each page.
pub async fn drain(
    extraction: &mut Extraction,
) -> Result<(Vec<Value>, Vec<Option<Cursor>>), Error> {
    let mut records = Vec::new();
    let mut lasts = Vec::new();
    while let Some(page) = extraction.next_page().await? {
        records.extend(page.records.iter().map(sfsync_mapping::Record::to_value));
        lasts.push(page.last);
    }
    Ok((records, lasts))
}

pub fn id_of(record: &Value) -> String {
    record
        .get("Id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Asserts no record appears twice, and returns the id set.
pub fn unique_ids(records: &[Value]) -> HashSet<String> {
    let mut seen = HashSet::new();
    for r in records {
        let id = id_of(r);
        assert!(!id.is_empty(), "record without Id: {r}");
        assert!(seen.insert(id.clone()), "duplicate record {id}");
    }
    seen
}

/// Ids of the live rows of an object, straight from the org.
pub async fn org_ids(handle: &SimulatorHandle, object: &str) -> HashSet<String> {
    handle
        .org()
        .lock()
        .unwrap()
        .records(object)
        .iter()
        .map(id_of)
        .collect()
}

pub fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Ordered by (SystemModstamp, Id) as the keyset promises.
pub fn assert_keyset_order(records: &[Value]) {
    let cursors: Vec<Cursor> = records
        .iter()
        .map(|r| match Cursor::of_value(r) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        })
        .collect();
    for pair in cursors.windows(2) {
        assert!(
            pair[0] < pair[1],
            "out of order: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}
