//! One scheduled extract invocation over several syncs: which syncs run and in what order
//! (the stalest first), the settings they share, and the rule that stops the rest once the
//! org's API budget or the invocation's time is spent. The extract Lambda only translates
//! its input to [`SyncSelection`] and its environment to [`ExtractSettings`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sfsync_mapping::{Config, SyncConfig};
use sfsync_salesforce::Client;
use tracing::Instrument;

use crate::extract::{Clock, ExtractError, ExtractSettings, extract_sync};
use crate::ledger::StreamLedger;
use crate::message::RecordsMessage;
use crate::queue::Queue;
use crate::report::{RunReport, RunStatus};
use crate::state::{StateError, StateStore};

/// What one invocation did.
#[derive(Debug, Serialize)]
pub struct ExtractOutput {
    pub run_id: String,
    pub reports: Vec<RunReport>,
    /// Syncs another run was already extracting.
    pub busy: Vec<String>,
    /// Selected syncs this invocation did not start, and why: the org's API budget was
    /// spent, or the deadline came, during an earlier sync. They run on the next
    /// invocation, first (see [`least_recently_extracted_first`]).
    pub not_run: Vec<NotRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotRun {
    pub sync: String,
    pub reason: StopReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The configured share of the org's daily API requests is used up.
    ApiLimit,
    /// Too little of the invocation's time is left.
    Deadline,
}

/// A sync whose run ended `Failed`, with the error its run report holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSync {
    pub sync: String,
    pub error: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractFailure {
    #[error("unknown sync(s) in the input: {}", .0.join(", "))]
    UnknownSyncs(Vec<String>),
    /// The invocation ran to its end, but these syncs failed (their reports say why).
    #[error("sync(s) failed: {}", failed_list(.0))]
    Failed(Vec<FailedSync>),
    #[error(transparent)]
    State(#[from] StateError),
}

fn failed_list(failed: &[FailedSync]) -> String {
    failed
        .iter()
        .map(|f| format!("{}: {}", f.sync, f.error))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The syncs an invocation runs, in config order: all of them, or the named ones (every
/// name must exist, or nothing runs).
pub fn select_syncs<'a>(
    config: &'a Config,
    names: Option<&[String]>,
) -> Result<Vec<&'a SyncConfig>, ExtractFailure> {
    let Some(names) = names else {
        return Ok(config.syncs.iter().collect());
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| config.sync(n).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ExtractFailure::UnknownSyncs(unknown));
    }
    Ok(config
        .syncs
        .iter()
        .filter(|s| names.contains(&s.name))
        .collect())
}

/// The selected syncs, the one whose checkpoint moved longest ago first (never-run syncs
/// before all). A sync that keeps an invocation busy until its deadline (a large backfill)
/// or spends the API budget then goes last next time, so every sync gets its turn instead
/// of the first in the config starving the rest.
pub async fn least_recently_extracted_first<'a, S: StateStore>(
    store: &S,
    syncs: Vec<&'a SyncConfig>,
) -> Result<Vec<&'a SyncConfig>, StateError> {
    let mut keyed = Vec::with_capacity(syncs.len());
    for (position, sync) in syncs.into_iter().enumerate() {
        let moved = store
            .checkpoint(&sync.name)
            .await?
            .map(|c| c.updated_at)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        keyed.push((moved, position, sync));
    }
    keyed.sort_by_key(|(moved, position, _)| (*moved, *position));
    Ok(keyed.into_iter().map(|(_, _, sync)| sync).collect())
}

/// The stop-the-others rule. The API limit is org-wide and the deadline is ours: once a
/// sync ends on either, or too little time is left before the next one starts, the syncs
/// after it wait for the next invocation.
#[derive(Debug, Default)]
pub struct StopRule {
    stopped: Option<StopReason>,
}

impl StopRule {
    /// Before a sync starts: why it must not (`time_is_short`: less than the settings'
    /// margin is left; asked only while nothing has stopped yet, as an injected clock may
    /// move on every read), or `None` to run it.
    pub fn before_next(&mut self, time_is_short: impl FnOnce() -> bool) -> Option<StopReason> {
        if self.stopped.is_none() && time_is_short() {
            self.stopped = Some(StopReason::Deadline);
        }
        self.stopped
    }

    /// After a sync ran: how it ended decides whether the next may start.
    pub fn after(&mut self, status: RunStatus) {
        self.stopped = match status {
            RunStatus::ApiLimit => Some(StopReason::ApiLimit),
            RunStatus::Partial => Some(StopReason::Deadline),
            _ => None,
        };
    }
}

/// Runs the syncs in turn under the [`StopRule`]; `Err(Failed)` once all ran if any failed
/// (the output's reports are then in the run history and the logs).
pub async fn extract_syncs<Q: Queue<RecordsMessage>, S: StateStore>(
    client: &Client,
    syncs: Vec<&SyncConfig>,
    queue: &Q,
    store: &S,
    run_id: &str,
    started_at: DateTime<Utc>,
    settings: &ExtractSettings,
) -> Result<ExtractOutput, ExtractFailure> {
    let mut output = ExtractOutput {
        run_id: run_id.to_string(),
        reports: Vec::new(),
        busy: Vec::new(),
        not_run: Vec::new(),
    };
    let syncs = least_recently_extracted_first(store, syncs).await?;
    let mut failed = Vec::new();
    let mut rule = StopRule::default();
    for sync in syncs {
        if let Some(reason) = rule.before_next(|| settings.time_is_short()) {
            tracing::warn!(sync = %sync.name, ?reason, "sync not started in this invocation");
            output.not_run.push(NotRun {
                sync: sync.name.clone(),
                reason,
            });
            continue;
        }
        let span = tracing::info_span!("extract", run_id = %run_id, sync = %sync.name);
        // Instrumented while it awaits; entered only for the synchronous rest of the turn.
        let result = extract_sync(client, sync, queue, store, run_id, started_at, settings)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        match result {
            Ok(report) => {
                tracing::info!(
                    status = %report.status,
                    extracted = report.counts.extracted,
                    messages = report.counts.messages,
                    api_calls = report.salesforce_api_calls,
                    "sync extracted"
                );
                crate::metrics::emit(
                    "extract",
                    &sync.name,
                    &report.counts,
                    report.salesforce_api_calls,
                );
                if report.status == RunStatus::Failed {
                    failed.push(FailedSync {
                        sync: sync.name.clone(),
                        error: report.error.clone().unwrap_or_default(),
                    });
                }
                rule.after(report.status);
                output.reports.push(report);
            }
            Err(ExtractError::LeaseHeld(e)) => {
                tracing::warn!(error = %e, "sync skipped: another run holds its lease");
                output.busy.push(sync.name.clone());
            }
            Err(ExtractError::State(e)) => return Err(e.into()),
        }
    }
    if !output.not_run.is_empty() {
        tracing::warn!(
            not_run = %output.not_run.iter().map(|n| n.sync.as_str()).collect::<Vec<_>>().join(", "),
            "the invocation stopped early; these syncs run first next time"
        );
    }
    if failed.is_empty() {
        Ok(output)
    } else {
        Err(ExtractFailure::Failed(failed))
    }
}

/// The settings every sync of a scheduled invocation shares: the lease held in the
/// invocation's name, the config's look-back, the invocation's deadline measured on `clock`,
/// and the stream ledger, so that syncs with `stream = true` count what the stream function
/// had not delivered.
pub fn invocation_settings(
    config: &Config,
    owner: String,
    full: bool,
    deadline: Option<Instant>,
    clock: Arc<dyn Clock>,
    stream_ledger: StreamLedger,
) -> ExtractSettings {
    let mut settings = ExtractSettings::new(owner);
    settings.full = full;
    settings.lookback = Duration::from_secs(config.salesforce.lookback_seconds);
    settings.deadline = deadline;
    settings.clock = clock;
    settings.stream_ledger = Some(stream_ledger);
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Checkpoint;
    use crate::state::file::FileStore;
    use sfsync_salesforce::Cursor;

    const CONFIG: &str = r#"
[salesforce]
login_url = "https://x.my.salesforce.com"
auth = "client_credentials"
client_id = "id"
client_secret = "s"

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email"]

[[syncs]]
name = "leads"
object = "Lead"
kind = "people"
user_id = "Id"
fields = ["Email"]

[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name"]

[[destinations]]
name = "all"
type = "file"
path = "a.jsonl"
"#;

    fn names(syncs: &[&SyncConfig]) -> Vec<String> {
        syncs.iter().map(|s| s.name.clone()).collect()
    }

    #[test]
    fn selection_keeps_config_order_and_names_every_unknown_sync() {
        let config = Config::parse(CONFIG).unwrap();
        let all = select_syncs(&config, None).unwrap();
        assert_eq!(names(&all), ["contacts", "leads", "accounts"]);
        let asked = ["accounts".to_string(), "contacts".to_string()];
        let some = select_syncs(&config, Some(&asked)).unwrap();
        assert_eq!(names(&some), ["contacts", "accounts"]);
        let wrong = ["contacts", "opps", "cases"].map(String::from);
        let error = select_syncs(&config, Some(&wrong)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown sync(s) in the input: opps, cases"
        );
    }

    #[tokio::test]
    async fn the_stalest_sync_runs_first_and_never_run_syncs_before_all() {
        let config = Config::parse(CONFIG).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path()).unwrap();
        let at = |minutes: i64| {
            DateTime::<Utc>::UNIX_EPOCH
                + chrono::Duration::days(20_000)
                + chrono::Duration::minutes(minutes)
        };
        // contacts moved last, accounts before it; leads never ran.
        for (sync, minutes) in [("contacts", 10), ("accounts", 5)] {
            let checkpoint = Checkpoint {
                cursor: Cursor {
                    modstamp: at(minutes),
                    id: String::new(),
                },
                run_id: "r".into(),
                updated_at: at(minutes),
                version: 1,
                partial: false,
                deletes_from: None,
                bulk: None,
            };
            store.put_checkpoint(sync, 0, &checkpoint).await.unwrap();
        }
        let ordered = least_recently_extracted_first(&store, select_syncs(&config, None).unwrap())
            .await
            .unwrap();
        assert_eq!(names(&ordered), ["leads", "accounts", "contacts"]);
    }

    #[test]
    fn an_api_limit_or_a_deadline_stops_the_syncs_after_it() {
        let mut rule = StopRule::default();
        assert_eq!(rule.before_next(|| false), None);
        rule.after(RunStatus::Complete);
        assert_eq!(rule.before_next(|| false), None);
        rule.after(RunStatus::ApiLimit);
        assert_eq!(rule.before_next(|| false), Some(StopReason::ApiLimit));
        // The first reason stays, and the clock is not read again (a ticking test clock
        // would move).
        assert_eq!(
            rule.before_next(|| unreachable!("the clock is read after the stop")),
            Some(StopReason::ApiLimit)
        );

        let mut rule = StopRule::default();
        rule.after(RunStatus::Partial);
        assert_eq!(rule.before_next(|| false), Some(StopReason::Deadline));

        // A failed sync does not stop the others; too little time left does.
        let mut rule = StopRule::default();
        rule.after(RunStatus::Failed);
        assert_eq!(rule.before_next(|| false), None);
        assert_eq!(rule.before_next(|| true), Some(StopReason::Deadline));
        assert_eq!(rule.before_next(|| false), Some(StopReason::Deadline));
    }

    #[test]
    fn failures_are_listed_with_their_reports_errors() {
        let failure = ExtractFailure::Failed(vec![
            FailedSync {
                sync: "contacts".into(),
                error: "boom".into(),
            },
            FailedSync {
                sync: "leads".into(),
                error: "bang".into(),
            },
        ]);
        assert_eq!(
            failure.to_string(),
            "sync(s) failed: contacts: boom; leads: bang"
        );
    }
}
