//! Incremental extraction: keyset pagination on (SystemModstamp, Id) over REST, or a
//! Bulk API 2.0 job for large windows.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sfsync_mapping::Record;
use sfsync_mapping::config::ExtractApi;
use tracing::{debug, info, warn};

use crate::bulk::{self, BulkJobState, BulkPage, BulkState, BulkStep, StopFn};
use crate::client::{Client, query_string};
use crate::cursor::Cursor;
use crate::error::Error;
use crate::plan::SyncPlan;
use crate::soql::{self, LowerBound};

/// What one extraction covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Exclusive keyset start; `None` = from the beginning. An empty `id` includes every
    /// record at `modstamp` (what a look-back start wants).
    pub after: Option<Cursor>,
    /// Inclusive upper bound on SystemModstamp, fixed for a run.
    pub until: DateTime<Utc>,
    /// Use queryAll: soft-deleted (Recycle Bin) and archived rows too.
    pub include_deleted: bool,
    pub api: ExtractApi,
    /// Extra condition; `None` uses the sync's own `where`.
    pub where_clause: Option<String>,
}

/// One page of records.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// REST record shape, whichever API served them, each as its JSON text.
    pub records: Vec<Record>,
    /// Everything up to this cursor has now been returned: the checkpoint may move here
    /// once these records are durably handed on. `None` when it cannot move yet (Bulk pages
    /// before the last).
    pub last: Option<Cursor>,
    /// For a Bulk page before the last: where the job's reading stands once this page is
    /// handed on. Saved with it, a later run resumes the same job right after this page.
    pub bulk: Option<BulkJobState>,
}

/// A running extraction; pull pages with [`Extraction::next_page`]. After an error the
/// same call may be repeated: the failed request is tried again from where it stopped.
pub struct Extraction {
    client: Client,
    plan: Arc<SyncPlan>,
    window: Window,
    api_used: ExtractApi,
    state: State,
    /// Asked while a Bulk job is polled: stop and leave the job for a later run.
    stop: Option<StopFn>,
    /// Where a Bulk job stood when the extraction stopped before reading it all.
    suspended: Option<BulkJobState>,
    /// A Bulk job whose results were all read (to delete).
    finished_job: Option<String>,
}

enum State {
    Start,
    Rest(RestState),
    Bulk(Box<BulkState>),
    Done,
}

impl Client {
    /// Starts extracting a window of a planned sync. Nothing is sent before the first
    /// [`Extraction::next_page`].
    pub fn extract(&self, plan: &SyncPlan, window: Window) -> Extraction {
        let api_used = match window.api {
            ExtractApi::Bulk if plan.bulk_supported => ExtractApi::Bulk,
            _ => ExtractApi::Rest,
        };
        Extraction {
            client: self.clone(),
            plan: Arc::new(plan.clone()),
            window,
            api_used,
            state: State::Start,
            stop: None,
            suspended: None,
            finished_job: None,
        }
    }

    /// `SELECT COUNT() …` over REST.
    pub(crate) async fn count(&self, soql: &str, include_deleted: bool) -> Result<u64, Error> {
        let page = self.query_page(soql, include_deleted).await?;
        Ok(page.total_size)
    }

    pub(crate) async fn query_page(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<QueryPage, Error> {
        let path = self.data_path(if include_deleted {
            "/queryAll"
        } else {
            "/query"
        });
        let query = query_string(&[("q", soql)]);
        let headers = [(
            "Sforce-Query-Options",
            format!("batchSize={}", self.inner.config.page_size),
        )];
        self.send_with_timeout(
            reqwest::Method::GET,
            &path,
            Some(&query),
            &headers,
            None,
            Some(self.inner.config.query_timeout),
        )
        .await?
        .json("query")
    }

    pub(crate) async fn next_query_page(&self, next_records_url: &str) -> Result<QueryPage, Error> {
        let headers = [(
            "Sforce-Query-Options",
            format!("batchSize={}", self.inner.config.page_size),
        )];
        self.send_with_timeout(
            reqwest::Method::GET,
            next_records_url,
            None,
            &headers,
            None,
            Some(self.inner.config.query_timeout),
        )
        .await?
        .json("query page")
    }
}

#[derive(Deserialize)]
pub(crate) struct QueryPage {
    #[serde(rename = "totalSize", default)]
    pub(crate) total_size: u64,
    #[serde(default = "yes")]
    pub(crate) done: bool,
    #[serde(rename = "nextRecordsUrl", default)]
    pub(crate) next_records_url: Option<String>,
    /// Each record kept as the text Salesforce sent: nothing is built from it here (see
    /// `sfsync_mapping::record`).
    #[serde(default)]
    pub(crate) records: Vec<Record>,
}

fn yes() -> bool {
    true
}

impl Extraction {
    /// The API serving this extraction (final after the first `next_page`).
    pub fn api_used(&self) -> ExtractApi {
        self.api_used
    }

    /// Consults `stop` between polls of a Bulk job: when it answers true, the extraction
    /// ends early — [`Extraction::next_page`] answers `None` and [`Extraction::suspended`]
    /// says where the job stands.
    pub fn stop_when(mut self, stop: StopFn) -> Extraction {
        self.stop = Some(stop);
        self
    }

    /// Continues the Bulk job of an earlier run instead of choosing an API. The window must
    /// be the job's (`saved.after`, `saved.until`): a lost job is created again over it.
    pub fn resume_bulk(mut self, saved: BulkJobState) -> Extraction {
        let lower = RestState::first_lower(&self.window);
        let soql = bulk::bulk_soql(&self.plan, &self.condition(&lower));
        self.api_used = ExtractApi::Bulk;
        self.state = State::Bulk(Box::new(
            BulkState::new(
                self.plan.clone(),
                soql,
                self.window.include_deleted,
                (self.window.after.clone(), self.window.until),
                self.stop.clone(),
            )
            .resume(saved),
        ));
        self
    }

    /// After `next_page` answered `None`: `Some` when it stopped early (the stop function)
    /// with a Bulk job not read to the end — save it and resume it with
    /// [`Extraction::resume_bulk`]. `None` means the window is exhausted.
    pub fn suspended(&self) -> Option<&BulkJobState> {
        self.suspended.as_ref()
    }

    /// Deletes a Bulk job whose results were all read (`DELETE /jobs/query/{id}`): call it
    /// once what was read is safe. Salesforce would keep it 7 days otherwise.
    pub async fn delete_finished_bulk_job(&mut self) -> Result<(), Error> {
        let Some(job_id) = self.finished_job.take() else {
            return Ok(());
        };
        let path = self.client.data_path(&format!("/jobs/query/{job_id}"));
        match self
            .client
            .send(reqwest::Method::DELETE, &path, None, &[], None)
            .await
        {
            Ok(_) => {
                debug!(job_id = %job_id, "bulk job deleted");
                Ok(())
            }
            // Already gone.
            Err(Error::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// True when every page was returned: the next [`Extraction::next_page`] answers `None`
    /// without asking Salesforce anything. A caller short of time can still finish the run.
    pub fn is_exhausted(&self) -> bool {
        match &self.state {
            State::Start => false,
            State::Rest(rest) => rest.current.is_none() && rest.segments.is_empty(),
            State::Bulk(bulk) => bulk.is_finished(),
            State::Done => self.suspended.is_none(),
        }
    }

    /// The next page, or `None` when the window is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, Error> {
        loop {
            match &mut self.state {
                State::Start => {
                    self.state = self.choose().await?;
                }
                State::Rest(rest) => {
                    return match rest.next(&self.client, &self.plan, &self.window).await? {
                        Some(page) => Ok(Some(page)),
                        None => {
                            self.state = State::Done;
                            Ok(None)
                        }
                    };
                }
                State::Bulk(bulk) => match bulk.next(&self.client).await? {
                    BulkStep::Page(BulkPage {
                        records,
                        last,
                        position,
                    }) => {
                        if position.is_none() {
                            self.finished_job = bulk.job_id().map(str::to_string);
                        }
                        return Ok(Some(Page {
                            records,
                            last,
                            bulk: position,
                        }));
                    }
                    BulkStep::Done => {
                        self.finished_job = bulk.job_id().map(str::to_string);
                        self.state = State::Done;
                        return Ok(None);
                    }
                    BulkStep::Suspended => {
                        self.suspended = bulk.position();
                        self.state = State::Done;
                        return Ok(None);
                    }
                    BulkStep::Fallback(reason) => {
                        warn!(sync = %self.plan.sync.name, %reason, "Bulk API cannot serve this query; using REST");
                        self.api_used = ExtractApi::Rest;
                        self.state = State::Rest(RestState::new(&self.window));
                    }
                },
                State::Done => return Ok(None),
            }
        }
    }

    fn condition(&self, lower: &LowerBound) -> String {
        soql::window_condition(lower, self.window.until, self.user_where())
    }

    fn user_where(&self) -> Option<&str> {
        self.window
            .where_clause
            .as_deref()
            .or(self.plan.sync.where_clause.as_deref())
    }

    async fn choose(&mut self) -> Result<State, Error> {
        let plan = &self.plan;
        let lower = RestState::first_lower(&self.window);
        let use_bulk = match self.window.api {
            ExtractApi::Rest => false,
            ExtractApi::Bulk => {
                if !plan.bulk_supported {
                    warn!(sync = %plan.sync.name, reason = plan.bulk_unsupported_reason.as_deref().unwrap_or(""), "Bulk API requested but cannot serve this sync; using REST");
                }
                plan.bulk_supported
            }
            ExtractApi::Auto if !plan.bulk_supported => false,
            ExtractApi::Auto => {
                let soql = format!(
                    "SELECT COUNT() FROM {} WHERE {}",
                    plan.object,
                    self.condition(&lower)
                );
                match self.client.count(&soql, self.window.include_deleted).await {
                    Ok(n) => {
                        let bulk = n > self.client.inner.config.bulk_threshold;
                        info!(sync = %plan.sync.name, records = n, threshold = self.client.inner.config.bulk_threshold, bulk, "counted the window");
                        bulk
                    }
                    // Too many rows to even count in time: that is what Bulk is for.
                    Err(e) if e.api_code() == Some("QUERY_TIMEOUT") => true,
                    Err(e) => return Err(e),
                }
            }
        };
        if use_bulk {
            self.api_used = ExtractApi::Bulk;
            let soql = bulk::bulk_soql(plan, &self.condition(&lower));
            Ok(State::Bulk(Box::new(BulkState::new(
                plan.clone(),
                soql,
                self.window.include_deleted,
                (self.window.after.clone(), self.window.until),
                self.stop.clone(),
            ))))
        } else {
            self.api_used = ExtractApi::Rest;
            Ok(State::Rest(RestState::new(&self.window)))
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    lower: LowerBound,
    until: DateTime<Utc>,
    /// How many halvings produced this segment.
    depth: u32,
}

/// REST keyset pagination over one or more segments of the window (more than one after a
/// `QUERY_TIMEOUT` split).
struct RestState {
    segments: VecDeque<Segment>,
    current: Option<Segment>,
    next_url: Option<String>,
    /// The last record returned from the current segment.
    segment_last: Option<Cursor>,
}

/// The earliest SystemModstamp a split may assume when the window has no start.
fn floor() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(915_148_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC) // 1999-01-01
}

impl RestState {
    fn first_lower(window: &Window) -> LowerBound {
        match &window.after {
            Some(c) => LowerBound::Keyset(c.clone()),
            None => LowerBound::Start,
        }
    }

    fn new(window: &Window) -> RestState {
        RestState {
            segments: VecDeque::from([Segment {
                lower: RestState::first_lower(window),
                until: window.until,
                depth: 0,
            }]),
            current: None,
            next_url: None,
            segment_last: None,
        }
    }

    async fn next(
        &mut self,
        client: &Client,
        plan: &SyncPlan,
        window: &Window,
    ) -> Result<Option<Page>, Error> {
        loop {
            let segment = match &self.current {
                Some(s) => s.clone(),
                None => match self.segments.pop_front() {
                    Some(s) => {
                        self.current = Some(s.clone());
                        self.next_url = None;
                        self.segment_last = None;
                        s
                    }
                    None => return Ok(None),
                },
            };
            let result = match &self.next_url {
                Some(url) => client.next_query_page(url).await,
                None => {
                    let user_where = window
                        .where_clause
                        .as_deref()
                        .or(plan.sync.where_clause.as_deref());
                    let condition =
                        soql::window_condition(&segment.lower, segment.until, user_where);
                    let soql = soql::select(&plan.select, &plan.object, &condition, true);
                    debug!(sync = %plan.sync.name, soql = %soql, "query");
                    client.query_page(&soql, window.include_deleted).await
                }
            };
            let page = match result {
                Ok(page) => page,
                Err(e) if e.api_code() == Some("QUERY_TIMEOUT") => {
                    self.split(&segment, e, client.inner.config.max_window_splits)?;
                    continue;
                }
                Err(e)
                    if e.api_code() == Some("INVALID_QUERY_LOCATOR") && self.next_url.is_some() =>
                {
                    // The locator expired: the keyset lets the segment restart right after
                    // the last record returned.
                    warn!(sync = %plan.sync.name, "query locator expired; restarting from the last record");
                    self.restart_current(&segment);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.next_url = if page.done {
                None
            } else {
                match page.next_records_url {
                    Some(url) => Some(url),
                    None => {
                        return Err(Error::decode(
                            "a query page says done = false but has no nextRecordsUrl",
                        ));
                    }
                }
            };
            if self.next_url.is_none() {
                self.current = None;
            }
            let Some(last_record) = page.records.last() else {
                continue;
            };
            let last = Cursor::of_record(last_record)?;
            self.segment_last = Some(last.clone());
            return Ok(Some(Page {
                records: page.records,
                last: Some(last),
                bulk: None,
            }));
        }
    }

    /// The segment's remaining range as it stands: after the last record returned, or its
    /// own start.
    fn remaining(&self, segment: &Segment) -> Segment {
        Segment {
            lower: match &self.segment_last {
                Some(c) => LowerBound::Keyset(c.clone()),
                None => segment.lower.clone(),
            },
            until: segment.until,
            depth: segment.depth,
        }
    }

    fn restart_current(&mut self, segment: &Segment) {
        let rest = self.remaining(segment);
        self.current = Some(rest);
        self.next_url = None;
    }

    /// `QUERY_TIMEOUT`: query the first half of what remains, then the rest.
    fn split(&mut self, segment: &Segment, error: Error, max_splits: u32) -> Result<(), Error> {
        let rest = self.remaining(segment);
        let start = match &rest.lower {
            LowerBound::Start => floor(),
            LowerBound::Keyset(c) => c.modstamp,
            LowerBound::AfterTime(t) => *t,
        };
        let span = rest.until.signed_duration_since(start);
        if rest.depth >= max_splits || span <= chrono::Duration::seconds(1) {
            warn!(
                depth = rest.depth,
                "query still times out on a small window; giving up"
            );
            return Err(error);
        }
        let mid = start + span / 2;
        let depth = rest.depth + 1;
        info!(from = %start, mid = %mid, until = %rest.until, depth, "QUERY_TIMEOUT: splitting the window");
        self.segments.push_front(Segment {
            lower: LowerBound::AfterTime(mid),
            until: rest.until,
            depth,
        });
        self.segments.push_front(Segment {
            lower: rest.lower,
            until: mid,
            depth,
        });
        self.current = None;
        self.next_url = None;
        Ok(())
    }
}
