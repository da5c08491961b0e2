//! Run reports: what one run of one sync did, from extraction to delivery.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A run id starts with its UTC start time so that ids sort by time.
pub fn new_run_id(started_at: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Extraction still going (or the process died: a later run resumes from the checkpoint).
    Running,
    /// Everything up to the run's start was extracted and enqueued.
    Complete,
    /// Stopped before the deadline; the next invocation continues from the checkpoint.
    Partial,
    /// Stopped at the configured share of the daily API limit; resumes on a later run.
    ApiLimit,
    Failed,
    /// Everything was extracted, but some hard deletes can no longer be read from
    /// Salesforce (`RunReport::deletes_gap` says which span): the destination may still
    /// hold records deleted then. Needs a person: see docs/troubleshooting.md.
    DeletesMissed,
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Partial => "partial (continues next run)",
            RunStatus::ApiLimit => "stopped at the API limit (resumes later)",
            RunStatus::Failed => "failed",
            RunStatus::DeletesMissed => "complete, but hard deletes were missed (see below)",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCounts {
    pub extracted: u64,
    pub deleted_found: u64,
    pub messages: u64,
    pub mapped: u64,
    /// Records that could not be mapped because of a data problem (bad date, wrong type).
    pub skipped: u64,
    /// Records the sync leaves out by its own rules (deleted without `deletes`, no
    /// identifier). Reasons of both kinds are counted in `skip_reasons`.
    pub skipped_deliberate: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Calls handed back to the queue for a later attempt.
    pub retried: u64,
    pub destination_requests: u64,
    #[serde(default)]
    pub skip_reasons: BTreeMap<String, u64>,
    /// Spans of hard deletes Salesforce could no longer list (0 or 1 per run): the metric
    /// `HardDeleteGaps` an alarm watches.
    #[serde(default)]
    pub delete_gaps: u64,
    /// `merge` calls made for converted Leads (of `mapped`).
    #[serde(default)]
    pub conversions: u64,
    /// `merge` calls made for records merged in Salesforce (of `mapped`).
    #[serde(default)]
    pub merges: u64,
    /// Syncs with `stream = true`, polling's proof of the stream (`crate::ledger`): record
    /// versions polling extracted and compared with the stream ledger…
    #[serde(default)]
    pub stream_compared: u64,
    /// …of which the stream had not handed on (polling delivered them): 0 when the stream
    /// is complete. The metric `StreamMissed`.
    #[serde(default)]
    pub stream_missed: u64,
    /// Versions older than the stream's first event (or the stream never ran): not compared.
    #[serde(default)]
    pub stream_unchecked: u64,
    /// Versions not compared because the ledger could not be read (still delivered).
    #[serde(default)]
    pub stream_unknown: u64,
}

impl RunCounts {
    /// The counters the map and deliver stages add (extraction writes the others).
    pub fn downstream_fields(&self) -> [(&'static str, u64); 9] {
        [
            ("mapped", self.mapped),
            ("conversions", self.conversions),
            ("merges", self.merges),
            ("skipped", self.skipped),
            ("skipped_deliberate", self.skipped_deliberate),
            ("delivered", self.delivered),
            ("dead", self.dead),
            ("retried", self.retried),
            ("destination_requests", self.destination_requests),
        ]
    }

    pub fn set_downstream(&mut self, name: &str, value: u64) {
        match name {
            "mapped" => self.mapped = value,
            "conversions" => self.conversions = value,
            "merges" => self.merges = value,
            "skipped" => self.skipped = value,
            "skipped_deliberate" => self.skipped_deliberate = value,
            "delivered" => self.delivered = value,
            "dead" => self.dead = value,
            "retried" => self.retried = value,
            "destination_requests" => self.destination_requests = value,
            _ => {}
        }
    }

    pub fn add(&mut self, other: &RunCounts) {
        self.extracted += other.extracted;
        self.deleted_found += other.deleted_found;
        self.messages += other.messages;
        self.mapped += other.mapped;
        self.skipped += other.skipped;
        self.skipped_deliberate += other.skipped_deliberate;
        self.delivered += other.delivered;
        self.dead += other.dead;
        self.retried += other.retried;
        self.destination_requests += other.destination_requests;
        self.delete_gaps += other.delete_gaps;
        self.conversions += other.conversions;
        self.merges += other.merges;
        self.stream_compared += other.stream_compared;
        self.stream_missed += other.stream_missed;
        self.stream_unchecked += other.stream_unchecked;
        self.stream_unknown += other.stream_unknown;
        for (k, v) in &other.skip_reasons {
            *self.skip_reasons.entry(k.clone()).or_default() += v;
        }
    }

    /// Keeps what later stages already added when the extract side is rewritten.
    pub fn keep_downstream(&mut self, existing: &RunCounts) {
        for (name, value) in existing.downstream_fields() {
            self.set_downstream(name, value);
        }
        self.skip_reasons = existing.skip_reasons.clone();
    }
}

/// Hard deletes that can no longer be read: getDeleted reaches 15 days back (less when
/// Salesforce purged its delete log early), and this sync's deletions from `from` to `to`
/// were past that reach when the run asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletesGap {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl fmt::Display for DeletesGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hard deletes between {} and {} UTC can no longer be read from Salesforce; records \
             deleted then may remain in the destinations: run a full replay with deletes \
             (docs/troubleshooting.md)",
            self.from.format("%Y-%m-%d %H:%M:%S"),
            self.to.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub sync: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// The window this run covered: (checkpoint − look-back, until].
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// Extraction API used (rest or bulk).
    pub api: Option<String>,
    pub salesforce_api_calls: u64,
    pub counts: RunCounts,
    pub error: Option<String>,
    /// Set with [`RunStatus::DeletesMissed`].
    #[serde(default)]
    pub deletes_gap: Option<DeletesGap>,
    /// A stream run whose stored replay id had expired (older than the event bus's
    /// retention): it subscribed at the tip and re-read the window by polling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay_expired: bool,
}

impl RunReport {
    pub fn new(run_id: &str, sync: &str, started_at: DateTime<Utc>) -> RunReport {
        RunReport {
            run_id: run_id.to_string(),
            sync: sync.to_string(),
            started_at,
            finished_at: None,
            status: RunStatus::Running,
            window_start: None,
            window_end: None,
            api: None,
            salesforce_api_calls: 0,
            counts: RunCounts::default(),
            error: None,
            deletes_gap: None,
            replay_expired: false,
        }
    }

    /// A report that only later stages have written to so far.
    pub fn placeholder(run_id: &str, sync: &str) -> RunReport {
        RunReport::new(run_id, sync, Utc::now())
    }

    pub fn key_of(run_id: &str, sync: &str) -> String {
        format!("{run_id}#{sync}")
    }

    pub fn key(&self) -> String {
        RunReport::key_of(&self.run_id, &self.sync)
    }

    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds())
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "sync {} — run {} — {}",
            self.sync, self.run_id, self.status
        )?;
        if let (Some(a), Some(b)) = (self.window_start, self.window_end) {
            writeln!(
                f,
                "  window      {} → {}",
                a.format("%Y-%m-%d %H:%M:%S"),
                b.format("%Y-%m-%d %H:%M:%S")
            )?;
        }
        writeln!(
            f,
            "  extracted   {:>8}  ({} deleted; {} Salesforce API call{}{})",
            c.extracted,
            c.deleted_found,
            self.salesforce_api_calls,
            if self.salesforce_api_calls == 1 {
                ""
            } else {
                "s"
            },
            self.api
                .as_deref()
                .map(|a| format!(", {a}"))
                .unwrap_or_default()
        )?;
        if c.stream_compared + c.stream_unchecked + c.stream_unknown > 0 {
            writeln!(f, "{}", StreamProofLine(c))?;
        }
        write!(f, "  mapped      {:>8}", c.mapped)?;
        if c.conversions + c.merges > 0 {
            write!(
                f,
                "  ({} Lead conversion{}, {} record merge{} sent as merges)",
                c.conversions,
                if c.conversions == 1 { "" } else { "s" },
                c.merges,
                if c.merges == 1 { "" } else { "s" },
            )?;
        }
        writeln!(f)?;
        write!(f, "  skipped     {:>8}", c.skipped + c.skipped_deliberate)?;
        if c.skipped + c.skipped_deliberate > 0 {
            let reasons: Vec<String> = c
                .skip_reasons
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            write!(f, "  ({})", reasons.join(", "))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  delivered   {:>8}  ({} destination request{})",
            c.delivered,
            c.destination_requests,
            if c.destination_requests == 1 { "" } else { "s" }
        )?;
        writeln!(f, "  dead        {:>8}", c.dead)?;
        if c.retried > 0 {
            writeln!(f, "  retried     {:>8}", c.retried)?;
        }
        if let Some(ms) = self.duration_ms() {
            writeln!(f, "  duration    {:>8.1} s", ms as f64 / 1000.0)?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "  error       {e}")?;
        }
        if let Some(gap) = &self.deletes_gap {
            writeln!(f, "  deletes     {gap}")?;
        }
        if self.replay_expired {
            writeln!(
                f,
                "  replay      the stored replay id had expired (older than the event bus's retention): subscribed at the tip, and the window above was re-read by polling"
            )?;
        }
        Ok(())
    }
}

/// The run report's line of a streaming sync: how many versions polling found that the
/// stream had not delivered (docs/operate.md, "Is the stream complete?").
struct StreamProofLine<'a>(&'a RunCounts);

impl fmt::Display for StreamProofLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        if c.stream_compared + c.stream_unknown == 0 {
            return write!(
                f,
                "  unstreamed  {:>8}  (none compared: {} version{} from before the stream's first event)",
                "-",
                c.stream_unchecked,
                if c.stream_unchecked == 1 { "" } else { "s" }
            );
        }
        write!(
            f,
            "  unstreamed  {:>8}  (of {} version{} compared with the stream's ledger: delivered by polling",
            c.stream_missed,
            c.stream_compared,
            if c.stream_compared == 1 { "" } else { "s" }
        )?;
        if c.stream_unchecked > 0 {
            write!(
                f,
                "; {} from before the stream's first event not compared",
                c.stream_unchecked
            )?;
        }
        if c.stream_unknown > 0 {
            write!(
                f,
                "; {} unknown: the stream ledger could not be read",
                c.stream_unknown
            )?;
        }
        write!(f, ")")
    }
}
