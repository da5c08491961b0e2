//! Change Data Capture in the simulated org: a journal of change events, filled by every
//! mutation `Org` performs once [`Org::enable_change_events`] was called (off by default, so
//! that orgs without a Pub/Sub server pay nothing), and served by the Pub/Sub API server
//! (`server::pubsub`).
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

use crate::org::Org;
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
    fn new(retention: chrono::Duration) -> ChangeJournal {
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

impl Org {
    /// Starts recording a change event for every mutation from now on (Setup → Change Data
    /// Capture, every object selected), kept for `retention` of the org's clock.
    pub fn enable_change_events(&mut self, retention: chrono::Duration) {
        if self.changes.is_none() {
            self.changes = Some(Box::new(ChangeJournal::new(retention)));
        }
    }

    pub fn change_events_enabled(&self) -> bool {
        self.changes.is_some()
    }

    /// A gap event of `change_type` (a `GAP_*` type) for these records of `object`, as
    /// Salesforce sends when it cannot produce the change event itself. False when change
    /// events are off or the type is not a gap type.
    pub fn emit_gap(&mut self, object: &str, record_ids: &[&str], change_type: ChangeType) -> bool {
        if !change_type.is_gap() || change_type == ChangeType::GapOverflow {
            return false;
        }
        let ids = record_ids.iter().map(|s| s.to_string()).collect();
        self.record_event(object, ids, change_type, Vec::new(), Vec::new(), Vec::new())
    }

    /// An overflow event for `object`: changes beyond a transaction's 100,000 that the stream
    /// does not describe. Carries no record ids.
    pub fn emit_overflow(&mut self, object: &str) -> bool {
        self.record_event(
            object,
            Vec::new(),
            ChangeType::GapOverflow,
            Vec::new(),
            Vec::new(),
            Vec::new(),
        )
    }

    /// Restores a soft-deleted row from the Recycle Bin (IsDeleted=false, SystemModstamp
    /// bumped), as `undelete()` does. False if the row is not in the Recycle Bin.
    pub fn undelete(&mut self, object: &str, id: &str) -> bool {
        let Some((obj, def)) = self.object(object) else {
            return false;
        };
        let Some(col_deleted) = def.col_is_deleted.filter(|_| def.soft_deletable) else {
            return false;
        };
        let Some(table) = self.tables.get(obj) else {
            return false;
        };
        let Some(idx) = table.find(id) else {
            return false;
        };
        if table
            .row(idx)
            .is_none_or(|r| r.purged || !r.get(col_deleted).as_bool())
        {
            return false;
        }
        let stamp = self.tick();
        self.modify(obj, idx, stamp, |def, vals| {
            if let Some(slot) = vals.get_mut(col_deleted) {
                *slot = Val::Bool(false);
            }
            if let Some(slot) = vals.get_mut(def.col_last_modified) {
                *slot = Val::DateTime(stamp);
            }
        });
        if let Some(table) = self.tables.get_mut(obj) {
            table.deleted.retain(|k, _| !k.eq_ignore_ascii_case(id));
        }
        self.journal_change(obj, id, ChangeType::Undelete, None);
        true
    }

    /// The row's values before a change, kept only when change events are on.
    pub(crate) fn journal_snapshot(&self, obj: usize, idx: u32) -> Option<Box<[Val]>> {
        self.changes.as_ref()?;
        Some(self.tables.get(obj)?.row(idx)?.vals.clone())
    }

    /// Whether a row is already in the Recycle Bin (its purge then makes no change event).
    pub(crate) fn in_recycle_bin(&self, obj: usize, idx: u32) -> bool {
        let col = self.schema.objects.get(obj).and_then(|d| d.col_is_deleted);
        let row = self.tables.get(obj).and_then(|t| t.row(idx));
        matches!((col, row), (Some(c), Some(r)) if r.get(c).as_bool())
    }

    /// Records the change event of one row's change (committed at the org's clock). For an
    /// update, `before` is the row's snapshot from [`Org::journal_snapshot`].
    pub(crate) fn journal_change(
        &mut self,
        obj: usize,
        id: &str,
        change_type: ChangeType,
        before: Option<Box<[Val]>>,
    ) {
        if self.changes.is_none() {
            return;
        }
        let Some(def) = self.schema.objects.get(obj) else {
            return;
        };
        let after = self
            .tables
            .get(obj)
            .and_then(|t| t.row(t.find(id)?))
            .map(|r| event_fields(def, &r.vals))
            .unwrap_or_default();
        let (fields, changed, nulled) = match change_type {
            ChangeType::Create | ChangeType::Undelete => {
                let fields: Vec<_> = after.into_iter().filter(|(_, v)| !v.is_null()).collect();
                (fields, Vec::new(), Vec::new())
            }
            ChangeType::Update => {
                let before = before.map(|b| event_fields(def, &b)).unwrap_or_default();
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
        let object = def.name.clone();
        self.record_event(
            &object,
            vec![id.to_string()],
            change_type,
            fields,
            changed,
            nulled,
        );
    }

    fn record_event(
        &mut self,
        object: &str,
        record_ids: Vec<String>,
        change_type: ChangeType,
        fields: Vec<(String, Val)>,
        changed: Vec<String>,
        nulled: Vec<String>,
    ) -> bool {
        let Some(name) = self.object(object).map(|(_, d)| d.name.clone()) else {
            return false;
        };
        let commit_ms = self.clock_ms;
        let commit_user = self.default_owner.to_string();
        let Some(journal) = self.changes.as_mut() else {
            return false;
        };
        journal.push(JournalEvent {
            replay: 0,
            object: name,
            record_ids,
            change_type,
            commit_ms,
            transaction_key: String::new(),
            sequence: 0,
            commit_user,
            fields,
            changed,
            nulled,
        });
        true
    }
}
