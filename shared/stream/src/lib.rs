//! The stream stage: a sync's changes delivered seconds after they commit, through Salesforce
//! Change Data Capture read from the Pub/Sub API, while the scheduled extraction keeps running
//! as the proof that nothing was missed.
//!
//! # From change events to records
//! The subscriber asks for a bounded number of events at a time (`FetchRequest.num_requested`,
//! topped up only by what it has handed on: flow control), decodes each Avro payload with the
//! schema fetched by its schema id (cached), and then **reads every named record again by Id**
//! through the existing extractor — `SELECT <the sync's fields> … WHERE (<the sync's where>)
//! AND Id IN (≤ 200 ids)` over REST — for every call kind (identify, group, track). Why not
//! deliver the event's own fields (the "changed traits only" option):
//! - the deterministic `messageId` is made of (sync, Id, SystemModstamp); change events do not
//!   carry SystemModstamp, so the same record version reached by the stream and by polling
//!   would get two ids and be delivered twice — re-reading makes them identical, so the
//!   polling safety net's copy is deduplicated downstream;
//! - an update event carries only the changed fields, but calls need their identifiers
//!   (`user_id`, `group_id`, email) and relationship fields (`Account.Name`), which change
//!   events never carry, and `track` events need the whole record as properties;
//! - the sync's `where` decides what is delivered, and can only be evaluated on the record.
//!
//! SOQL by Id is used rather than sObject Collections (`/composite/sobjects`, also ≤ 200 ids
//! per call) because Collections cannot follow relationship paths; the cost is one API call
//! per batch of up to 200 changed records.
//!
//! Deletes and undeletes: a `DELETE` re-reads with `queryAll` (when the sync has `deletes`),
//! which returns the soft-deleted record with `IsDeleted: true` — the existing delete
//! handling; a record purged since (or hard-deleted) is handed on in the getDeleted shape,
//! stamped with the event's commit time. An `UNDELETE` re-reads the live record. Gap events
//! (`GAP_*`) name their records and are re-read the same way; an overflow (`GAP_OVERFLOW`,
//! no ids) re-reads the object's window from the overflow's commit time through the
//! extractor. A stored replay id the bus no longer has (older than its 72-hour retention)
//! makes the stage subscribe from the tip and re-read the window since the stored id's time
//! minus a look-back: reported as the run's window.

pub mod changes;
pub mod local;
pub mod replay;
pub mod stage;
pub mod syncs;

pub use changes::{EventCounts, Work, plan};
pub use local::{LocalStream, LocalStreamError, stream_local};
pub use replay::{DynamoReplayStore, FileReplayStore, ReplayStore, ReplayStoreError, StoredReplay};
pub use stage::{Resume, StreamError, StreamReport, StreamSettings, stream_sync};
pub use syncs::{failed_run_report, stream_syncs};
