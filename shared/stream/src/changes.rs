//! What a batch of change events asks for, decided without I/O: which records to read again
//! by Id, which of them were deleted (and when), and from when to re-read the whole object
//! when the stream could not say which records changed (overflow).

use std::collections::{BTreeMap, HashSet};

use sfsync_pubsub::{ChangeEvent, ChangeType};

/// The work of one batch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Work {
    /// Records to read again by Id, each once, in the order their events came.
    pub reread: Vec<String>,
    /// Ids a delete event named, with its commit time (ms): when the re-read no longer finds
    /// them (purged from the Recycle Bin, or a hard delete) they go on as deleted records
    /// stamped with that time, the shape the extractor gives getDeleted results.
    pub deleted: BTreeMap<String, i64>,
    /// An overflow event: the object's records changed since this commit time (ms) must be
    /// re-read, because the stream does not name them.
    pub window_from_ms: Option<i64>,
    pub counts: EventCounts,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventCounts {
    pub events: u64,
    /// `GAP_CREATE`/`GAP_UPDATE`/`GAP_DELETE`/`GAP_UNDELETE`.
    pub gaps: u64,
    pub overflows: u64,
    /// Record ids named by the events (an event may name several).
    pub record_ids: u64,
}

/// Plans a batch of `sync`'s change events. `deletes` is the sync's own `deletes`: without
/// it, a deleted record is left alone, exactly as the extractor's `query` (not `queryAll`)
/// leaves it.
pub fn plan(events: &[ChangeEvent], deletes: bool) -> Work {
    let mut work = Work::default();
    let mut seen = HashSet::new();
    for event in events {
        let header = &event.header;
        work.counts.events += 1;
        work.counts.record_ids += header.record_ids.len() as u64;
        match header.change_type {
            ChangeType::GapOverflow => {
                work.counts.overflows += 1;
                let from = header.commit_timestamp;
                work.window_from_ms = Some(work.window_from_ms.map_or(from, |w| w.min(from)));
                continue;
            }
            t if t.is_gap() => work.counts.gaps += 1,
            _ => {}
        }
        if header.change_type.is_delete() {
            if !deletes {
                continue;
            }
            for id in &header.record_ids {
                work.deleted.insert(id.clone(), header.commit_timestamp);
            }
        } else {
            // A later create/undelete/update wins over an earlier delete in the same batch.
            for id in &header.record_ids {
                work.deleted.remove(id);
            }
        }
        for id in &header.record_ids {
            if seen.insert(id.clone()) {
                work.reread.push(id.clone());
            }
        }
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use sfsync_pubsub::ChangeEventHeader;

    fn event(change_type: ChangeType, ids: &[&str], at: i64) -> ChangeEvent {
        ChangeEvent {
            header: ChangeEventHeader {
                entity_name: "Contact".into(),
                record_ids: ids.iter().map(|s| s.to_string()).collect(),
                change_type,
                change_origin: String::new(),
                transaction_key: String::new(),
                sequence_number: 1,
                commit_timestamp: at,
                commit_number: 0,
                commit_user: String::new(),
                nulled_fields: vec![],
                diff_fields: vec![],
                changed_fields: vec![],
            },
            fields: Map::new(),
        }
    }

    #[test]
    fn every_named_record_is_read_again_once_in_order() {
        use ChangeType::*;
        let work = plan(
            &[
                event(Create, &["a"], 1),
                event(Update, &["b", "a"], 2),
                event(GapUpdate, &["c", "d"], 3),
            ],
            true,
        );
        assert_eq!(work.reread, vec!["a", "b", "c", "d"]);
        assert_eq!(
            work.counts,
            EventCounts {
                events: 3,
                gaps: 1,
                overflows: 0,
                record_ids: 5
            }
        );
        assert!(work.deleted.is_empty() && work.window_from_ms.is_none());
    }

    #[test]
    fn deletes_are_remembered_with_their_commit_time_only_when_the_sync_propagates_them() {
        use ChangeType::*;
        let events = [
            event(Delete, &["a", "b"], 5),
            event(Undelete, &["b"], 6),
            event(GapDelete, &["c"], 7),
        ];
        let with = plan(&events, true);
        assert_eq!(with.reread, vec!["a", "b", "c"]);
        assert_eq!(
            with.deleted.into_iter().collect::<Vec<_>>(),
            vec![("a".into(), 5), ("c".into(), 7)]
        );
        let without = plan(&events, false);
        assert_eq!(without.reread, vec!["b"]);
        assert!(without.deleted.is_empty());
    }

    #[test]
    fn an_overflow_asks_for_the_window_from_its_earliest_commit() {
        use ChangeType::*;
        let work = plan(
            &[
                event(GapOverflow, &[], 9),
                event(Update, &["a"], 10),
                event(GapOverflow, &[], 8),
            ],
            true,
        );
        assert_eq!(work.window_from_ms, Some(8));
        assert_eq!(work.reread, vec!["a"]);
        assert_eq!(work.counts.overflows, 2);
    }
}
