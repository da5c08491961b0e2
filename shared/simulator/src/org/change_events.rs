//! The org's side of Change Data Capture: turning change events on, recording one for every
//! mutation, gap and overflow events, and undelete (whose event is an `UNDELETE`). The
//! journal and what an event carries live in `crate::cdc`.

use super::Org;
use crate::cdc::{ChangeJournal, ChangeType, Commit, EventBody};
use crate::value::Val;

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
        self.record_event(object, ids, change_type)
    }

    /// An overflow event for `object`: changes beyond a transaction's 100,000 that the stream
    /// does not describe. Carries no record ids.
    pub fn emit_overflow(&mut self, object: &str) -> bool {
        self.record_event(object, Vec::new(), ChangeType::GapOverflow)
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
        // Off (the default): no event, and nothing spent on one.
        if self.changes.is_none() {
            return;
        }
        let commit = self.commit();
        let Some(journal) = self.changes.as_mut() else {
            return;
        };
        let Some(def) = self.schema.objects.get(obj) else {
            return;
        };
        let after = self
            .tables
            .get(obj)
            .and_then(|t| t.row(t.find(id)?))
            .map(|r| &r.vals[..]);
        journal.record_row_change(def, id, change_type, before.as_deref(), after, commit);
    }

    /// A change committed now by the org's default user.
    fn commit(&self) -> Commit {
        Commit {
            ms: self.clock_ms,
            user: self.default_owner.to_string(),
        }
    }

    /// An event of `object` without a body (a gap or an overflow event). False when the
    /// object is unknown or change events are off.
    fn record_event(
        &mut self,
        object: &str,
        record_ids: Vec<String>,
        change_type: ChangeType,
    ) -> bool {
        let Some(name) = self.object(object).map(|(_, d)| d.name.clone()) else {
            return false;
        };
        let commit = self.commit();
        let Some(journal) = self.changes.as_mut() else {
            return false;
        };
        journal.record(name, record_ids, change_type, EventBody::default(), commit);
        true
    }
}
