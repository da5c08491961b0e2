//! Change Data Capture in the simulated org: a journal of change events, filled by every
//! mutation `Org` performs once `Org::enable_change_events` was called (off by default, so
//! that orgs without a Pub/Sub server pay nothing; the org's side is `org/change_events.rs`),
//! and served by the Pub/Sub API server (`server::pubsub`). This module knows rows and
//! object definitions, not the org, so the org depends on it and not the other way round.
//!
//! What an event holds follows the Change Data Capture Developer Guide: "Change Event Body"
//! (a create and an undelete carry every non-null field, an update only the changed ones, a
//! delete none), "Change Event Header Fields" (`transactionKey` shared by the events of one
//! transaction, `sequenceNumber` counting from 1 within it), "Gap Events" (header only, with
//! record ids; several records of one transaction may share one gap event) and "Overflow
//! Events" (`GAP_OVERFLOW`, no record ids, one per entity), and the 72-hour retention of
//! change events on the event bus ("Change Event Storage and Delivery").
//!
//! Known simplification: compound fields (a person's `Name`, addresses) are carried as their
//! flat parts (`FirstName`, `MailingCity`, …) instead of nested records.

use std::collections::VecDeque;
use std::sync::Arc;

pub use sfsync_pubsub::ChangeType;

use crate::schema::{ObjectDef, Storage};
use crate::value::Val;

/// Salesforce keeps change events for 72 hours.
pub const DEFAULT_RETENTION: chrono::Duration = chrono::Duration::hours(72);

/// Fields Salesforce leaves out of change events (the record id travels in the header).
const NOT_IN_EVENTS: [&str; 3] = ["Id", "IsDeleted", "SystemModstamp"];

/// One change event as recorded; encoded to Avro only when served.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JournalEvent {
    /// Position on the bus: the replay id is these 8 bytes, big-endian.
    pub replay: u64,
    pub object: String,
    pub record_ids: Vec<String>,
    pub change_type: ChangeType,
    pub commit_ms: i64,
    pub transaction_key: String,
    pub sequence: i32,
    pub commit_user: String,
    /// The field values the event carries, by field name.
    pub fields: Vec<(String, Val)>,
    pub changed: Vec<String>,
    pub nulled: Vec<String>,
}

/// The org's change events within the retention window.
#[derive(Debug, Clone)]
pub(crate) struct ChangeJournal {
    retention_ms: i64,
    events: VecDeque<JournalEvent>,
    /// Replay position of the next event (the first is 1; 0 means "before everything").
    next_replay: u64,
    /// The transaction the last event belonged to (its commit time) and its sequence.
    last_tx: (i64, i32),
    /// Tells subscribers the latest replay position whenever an event is added.
    notify: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ChangeJournal {
    pub(crate) fn new(retention: chrono::Duration) -> ChangeJournal {
        ChangeJournal {
            retention_ms: retention.num_milliseconds(),
            events: VecDeque::new(),
            next_replay: 1,
            last_tx: (i64::MIN, 0),
            notify: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The replay position of the newest event (0 before the first).
    pub(crate) fn latest(&self) -> u64 {
        self.next_replay - 1
    }

    /// The position just before the oldest retained event: the earliest a subscription can
    /// start after.
    pub(crate) fn earliest(&self) -> u64 {
        self.events.front().map_or(self.latest(), |e| e.replay - 1)
    }

    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Forgets events older than the retention window at `now_ms`.
    pub(crate) fn trim(&mut self, now_ms: i64) {
        while self
            .events
            .front()
            .is_some_and(|e| e.commit_ms < now_ms - self.retention_ms)
        {
            self.events.pop_front();
        }
    }

    /// Up to `max` events of `object` after replay position `after`.
    pub(crate) fn after(&self, after: u64, object: &str, max: usize) -> Vec<JournalEvent> {
        let Some(first) = self.events.front().map(|e| e.replay) else {
            return Vec::new();
        };
        let skip = usize::try_from((after + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        self.events
            .iter()
            .skip(skip)
            .filter(|e| e.object == object)
            .take(max)
            .cloned()
            .collect()
    }

    fn push(&mut self, mut event: JournalEvent) {
        // Events with the same commit time come from the same transaction (every Org
        // mutation is one transaction one second after the last).
        let seq = if self.last_tx.0 == event.commit_ms {
            self.last_tx.1 + 1
        } else {
            1
        };
        self.last_tx = (event.commit_ms, seq);
        event.sequence = seq;
        event.transaction_key = format!("{:016x}-{:x}", event.commit_ms, self.next_replay >> 20);
        event.replay = self.next_replay;
        self.next_replay += 1;
        self.trim(event.commit_ms);
        self.events.push_back(event);
        self.notify.send_replace(self.latest());
    }
}

/// The field values of a row that a change event may carry, in describe order.
fn event_fields(def: &ObjectDef, vals: &[Val]) -> Vec<(String, Val)> {
    def.fields
        .iter()
        .filter(|f| !NOT_IN_EVENTS.contains(&f.name.as_str()))
        .filter_map(|f| match f.storage {
            Storage::Column(c) => Some((f.name.clone(), vals.get(c).cloned().unwrap_or(Val::Null))),
            _ => None,
        })
        .collect()
}

/// Who committed a change, and when (ms of the org's clock).
pub(crate) struct Commit {
    pub ms: i64,
    pub user: String,
}

impl ChangeJournal {
    /// Records the change event of one row's change of `def`'s object. `after` is the row
    /// now (none once it is gone); for an update, `before` is the row before the change.
    pub(crate) fn record_row_change(
        &mut self,
        def: &ObjectDef,
        id: &str,
        change_type: ChangeType,
        before: Option<&[Val]>,
        after: Option<&[Val]>,
        commit: Commit,
    ) {
        let after = after.map(|r| event_fields(def, r)).unwrap_or_default();
        let (fields, changed, nulled) = match change_type {
            ChangeType::Create | ChangeType::Undelete => {
                let fields: Vec<_> = after.into_iter().filter(|(_, v)| !v.is_null()).collect();
                (fields, Vec::new(), Vec::new())
            }
            ChangeType::Update => {
                let before = before.map(|b| event_fields(def, b)).unwrap_or_default();
                let fields: Vec<(String, Val)> = after
                    .into_iter()
                    .filter(|(name, v)| !before.iter().any(|(n, b)| n == name && b == v))
                    .collect();
                let changed = fields.iter().map(|(n, _)| n.clone()).collect();
                let nulled = fields
                    .iter()
                    .filter(|(_, v)| v.is_null())
                    .map(|(n, _)| n.clone())
                    .collect();
                (fields, changed, nulled)
            }
            _ => (Vec::new(), Vec::new(), Vec::new()),
        };
        self.record(
            def.name.clone(),
            vec![id.to_string()],
            change_type,
            EventBody {
                fields,
                changed,
                nulled,
            },
            commit,
        );
    }

    /// Records one event of `object` (its API name as described).
    pub(crate) fn record(
        &mut self,
        object: String,
        record_ids: Vec<String>,
        change_type: ChangeType,
        body: EventBody,
        commit: Commit,
    ) {
        self.push(JournalEvent {
            replay: 0,
            object,
            record_ids,
            change_type,
            commit_ms: commit.ms,
            transaction_key: String::new(),
            sequence: 0,
            commit_user: commit.user,
            fields: body.fields,
            changed: body.changed,
            nulled: body.nulled,
        });
    }
}

/// What an event says of the record: the values it carries, the fields that changed and
/// those set to null (empty for gap and overflow events).
#[derive(Default)]
pub(crate) struct EventBody {
    pub fields: Vec<(String, Val)>,
    pub changed: Vec<String>,
    pub nulled: Vec<String>,
}
