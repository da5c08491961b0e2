//! Bulk API 2.0 query jobs, and turning their CSV back into REST-shaped records.
//!
//! A Bulk record must equal the REST record for the same row: values are typed again from
//! describe (empty → null, numbers, booleans, datetimes in REST's `…+0000` form), dotted
//! parent columns are nested again with their `attributes`, and a parent that does not exist
//! becomes `null`. To tell a missing parent from one whose selected fields are all empty,
//! and to build its `attributes`, the job also selects each parent's `Id` through the
//! relationship (`Account.Id`); those hidden columns are removed from the records.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sfsync_mapping::Record;
use tracing::{debug, info, warn};

use crate::client::{Client, query_string};
use crate::cursor::Cursor;
use crate::describe::GlobalDescribe;
use crate::error::Error;
use crate::plan::SyncPlan;
use crate::soql;

/// Records of a Bulk job, handed to the extraction that turns them into its `Page`.
pub(crate) struct BulkPage {
    /// Written as JSON text from the CSV rows' `Value`s, like a REST page's records.
    pub(crate) records: Vec<Record>,
    /// The job's maximum cursor, on its last page only (the checkpoint may move there).
    pub(crate) last: Option<Cursor>,
    /// Where the job's reading stands after this page; `None` on its last page.
    pub(crate) position: Option<BulkJobState>,
}

pub(crate) enum BulkStep {
    Page(BulkPage),
    Done,
    /// The run must stop before the job is complete: its position is saved for later.
    Suspended,
    /// Bulk cannot serve this query (the job was refused): extract over REST instead.
    Fallback(String),
}

struct HopInfo {
    targets: Vec<String>,
}

/// The SELECT list of a Bulk job: the plan's, then each parent's `Id` through its
/// relationship (`Account.Id`), which is empty exactly when REST answers a null parent —
/// also when the lookup points to a record that no longer exists.
fn bulk_columns(plan: &SyncPlan) -> (Vec<String>, Vec<String>, HashMap<String, HopInfo>) {
    let mut select = plan.select.clone();
    let mut hidden = Vec::new();
    let mut hops = HashMap::new();
    for column in &plan.columns {
        let mut prefix = String::new();
        for hop in &column.hops {
            let relationship_path = if prefix.is_empty() {
                hop.relationship.clone()
            } else {
                format!("{prefix}.{}", hop.relationship)
            };
            let id_path = format!("{relationship_path}.Id");
            hops.entry(relationship_path.to_ascii_lowercase())
                .or_insert_with(|| HopInfo {
                    targets: hop.targets.clone(),
                });
            if !select.iter().any(|s| s.eq_ignore_ascii_case(&id_path)) {
                select.push(id_path.clone());
                hidden.push(id_path);
            }
            prefix = relationship_path;
        }
    }
    (select, hidden, hops)
}

/// The job's SOQL: no ORDER BY (it would defeat Bulk's chunking; the checkpoint is the
/// maximum cursor seen instead).
pub(crate) fn bulk_soql(plan: &SyncPlan, condition: &str) -> String {
    let (select, _, _) = bulk_columns(plan);
    soql::select(&select, &plan.object, condition, false)
}

/// Where the reading of a Bulk API 2.0 query job stands, for a later process to resume the
/// same job at the same results page: a Lambda has 15 minutes, a job can take longer to
/// complete, and creating a new job per invocation would re-deliver the window and spend the
/// org's 10,000 daily query jobs. Saved with the sync's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkJobState {
    pub job_id: String,
    /// The window the job's query covers: the run that resumes it extracts this window.
    pub after: Option<Cursor>,
    pub until: DateTime<Utc>,
    /// The `locator` of the results page to read next (`None`: the first page).
    pub locator: Option<String>,
    /// Rows of that page already handed on (skipped when it is read again).
    pub rows_done: u64,
    /// The greatest (SystemModstamp, Id) handed on so far: the checkpoint once all is read.
    pub max: Option<Cursor>,
    /// This job already replaces a failed or expired one: it is not replaced again.
    pub recreated: bool,
}

/// Asked between polls of a job: true when the run must stop and save where it is.
pub type StopFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// How waiting for a job ended.
enum Waited {
    Complete,
    /// The stop function said so; the job goes on on Salesforce's side.
    Stopped,
    /// Bulk cannot serve this query: REST can.
    CannotServe(String),
    /// Failed, aborted, or gone (deleted or past its 7 days): the job cannot be read.
    Lost {
        state: String,
        message: String,
    },
}

pub(crate) struct BulkState {
    plan: Arc<SyncPlan>,
    soql: String,
    include_deleted: bool,
    after: Option<Cursor>,
    until: DateTime<Utc>,
    job_id: Option<String>,
    complete: bool,
    /// The locator of the next results page to fetch (`None`: the first page).
    fetch_locator: Option<String>,
    /// Rows to skip in the next fetched page: handed on before a resume.
    skip: u64,
    /// The locator of the page held in `rows`, and how many of its rows were handed on.
    page_locator: Option<String>,
    rows_done: u64,
    finished: bool,
    max: Option<Cursor>,
    recreated: bool,
    poll_delay: Option<Duration>,
    started: Option<Instant>,
    converter: Option<Converter>,
    /// The rows of the results page being handed on in slices, and whether it is the job's
    /// last page.
    rows: Option<(RowReader, bool)>,
    pages: u64,
    records: u64,
    stop: Option<StopFn>,
}

impl BulkState {
    pub(crate) fn new(
        plan: Arc<SyncPlan>,
        soql: String,
        include_deleted: bool,
        window: (Option<Cursor>, DateTime<Utc>),
        stop: Option<StopFn>,
    ) -> BulkState {
        BulkState {
            plan,
            soql,
            include_deleted,
            after: window.0,
            until: window.1,
            job_id: None,
            complete: false,
            fetch_locator: None,
            skip: 0,
            page_locator: None,
            rows_done: 0,
            finished: false,
            max: None,
            recreated: false,
            poll_delay: None,
            started: None,
            converter: None,
            rows: None,
            pages: 0,
            records: 0,
            stop,
        }
    }

    /// Continues a job a earlier process saved. Its state is polled again first: the job
    /// may have failed or expired meanwhile.
    pub(crate) fn resume(mut self, saved: BulkJobState) -> BulkState {
        self.job_id = Some(saved.job_id);
        self.fetch_locator = saved.locator;
        self.skip = saved.rows_done;
        self.max = saved.max;
        self.recreated = saved.recreated;
        self
    }

    /// Every row was handed on.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// Where the reading stands after what was handed on so far; `None` once every row was.
    pub(crate) fn position(&self) -> Option<BulkJobState> {
        if self.finished {
            return None;
        }
        let job_id = self.job_id.clone()?;
        let (locator, rows_done) = match &self.rows {
            Some(_) => (self.page_locator.clone(), self.rows_done),
            None => (self.fetch_locator.clone(), self.skip),
        };
        Some(BulkJobState {
            job_id,
            after: self.after.clone(),
            until: self.until,
            locator,
            rows_done,
            max: self.max.clone(),
            recreated: self.recreated,
        })
    }

    /// Replaces a job that cannot be read with a new one over the same window — once: a
    /// second loss is an error, so that a job that always fails is not created in a loop.
    fn replace_lost_job(
        &mut self,
        job_id: &str,
        state: String,
        message: String,
    ) -> Result<(), Error> {
        if self.recreated {
            return Err(Error::BulkJob {
                job_id: job_id.to_string(),
                state,
                message: format!(
                    "{message}; this job already replaced a lost one, so it is not created again"
                ),
            });
        }
        warn!(job_id, state = %state, %message, "bulk job lost; creating it again once over the same window");
        self.recreated = true;
        self.job_id = None;
        self.complete = false;
        self.fetch_locator = None;
        self.skip = 0;
        self.page_locator = None;
        self.rows_done = 0;
        self.rows = None;
        self.poll_delay = None;
        self.started = None;
        Ok(())
    }

    pub(crate) async fn next(&mut self, client: &Client) -> Result<BulkStep, Error> {
        if self.finished {
            return Ok(BulkStep::Done);
        }
        let job_id = loop {
            let job_id = match &self.job_id {
                Some(id) => id.clone(),
                None => match self.create(client).await? {
                    Ok(id) => id,
                    Err(reason) => return Ok(BulkStep::Fallback(reason)),
                },
            };
            if self.complete {
                break job_id;
            }
            match self.wait(client, &job_id).await? {
                Waited::Complete => break job_id,
                Waited::Stopped => return Ok(BulkStep::Suspended),
                Waited::CannotServe(reason) => return Ok(BulkStep::Fallback(reason)),
                Waited::Lost { state, message } => {
                    self.replace_lost_job(&job_id, state, message)?
                }
            }
        };
        if self.converter.is_none() {
            let global = client.describe_global().await?;
            self.converter = Some(Converter::new(&self.plan, client, global));
        }
        let config = &client.inner.config;
        loop {
            if let Some((mut reader, last_page)) = self.rows.take() {
                let Some(converter) = &self.converter else {
                    return Err(Error::decode("internal: no Bulk converter"));
                };
                let records = reader.take(converter, config.bulk_rows_per_page.max(1) as usize)?;
                for record in &records {
                    let cursor = Cursor::of_value(record)?;
                    if self.max.as_ref().is_none_or(|m| cursor > *m) {
                        self.max = Some(cursor);
                    }
                }
                self.records += records.len() as u64;
                self.rows_done += records.len() as u64;
                let more_rows = !reader.is_done();
                if more_rows {
                    self.rows = Some((reader, last_page));
                }
                if more_rows || !last_page {
                    if records.is_empty() {
                        continue;
                    }
                    return Ok(BulkStep::Page(BulkPage {
                        records: records.iter().map(Record::from_value).collect(),
                        last: None,
                        position: self.position(),
                    }));
                }
                self.finished = true;
                info!(
                    pages = self.pages,
                    records = self.records,
                    "bulk results read"
                );
                if records.is_empty() && self.max.is_none() {
                    return Ok(BulkStep::Done);
                }
                return Ok(BulkStep::Page(BulkPage {
                    records: records.iter().map(Record::from_value).collect(),
                    last: self.max.clone(),
                    position: None,
                }));
            }
            let max_records = config.bulk_page_size.to_string();
            let mut params = vec![("maxRecords", max_records.as_str())];
            if let Some(locator) = &self.fetch_locator {
                params.push(("locator", locator.as_str()));
            }
            let path = client.data_path(&format!("/jobs/query/{job_id}/results"));
            let response = match client
                .send(
                    reqwest::Method::GET,
                    &path,
                    Some(&query_string(&params)),
                    &[("Accept", "text/csv".to_string())],
                    None,
                )
                .await
            {
                Ok(response) => response,
                // Deleted or past its 7 days while being read.
                Err(Error::Api {
                    status: 404,
                    code,
                    message,
                }) => {
                    self.replace_lost_job(&job_id, "gone".into(), format!("{code}: {message}"))?;
                    return Box::pin(self.next(client)).await;
                }
                Err(e) => return Err(e),
            };
            let next_locator = response
                .header("Sforce-Locator")
                .map(str::trim)
                .filter(|l| !l.is_empty() && *l != "null")
                .map(str::to_string);
            let Some(converter) = &self.converter else {
                return Err(Error::decode("internal: no Bulk converter"));
            };
            // The page's CSV is kept as text and parsed `bulk_rows_per_page` rows at a time:
            // parsed rows take several times the memory of the text.
            let mut reader = converter.reader(response.body)?;
            self.pages += 1;
            debug!(job_id = %job_id, page = self.pages, "bulk results page");
            self.page_locator = self.fetch_locator.take();
            // Rows a run before this one already handed on (a resume inside the page).
            self.rows_done = reader.skip(std::mem::take(&mut self.skip))?;
            let last_page = match next_locator {
                Some(locator) => {
                    self.fetch_locator = Some(locator);
                    false
                }
                None => true,
            };
            self.rows = Some((reader, last_page));
        }
    }

    /// Creates the job. `Ok(Err(reason))` when Salesforce refuses the query for Bulk.
    async fn create(&mut self, client: &Client) -> Result<Result<String, String>, Error> {
        let body = json!({
            "operation": if self.include_deleted { "queryAll" } else { "query" },
            "query": self.soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        });
        let path = client.data_path("/jobs/query");
        let response = match client
            .send(reqwest::Method::POST, &path, None, &[], Some(&body))
            .await
        {
            Ok(r) => r,
            Err(Error::Api {
                status,
                code,
                message,
            }) if (400..500).contains(&status) && status != 401 && status != 403 => {
                return Ok(Err(format!("{code}: {message}")));
            }
            Err(e) => return Err(e),
        };
        let info: Value = response.json("bulk job")?;
        let id = info
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::decode("the Bulk job answer has no id"))?
            .to_string();
        info!(job_id = %id, object = %self.plan.object, operation = if self.include_deleted { "queryAll" } else { "query" }, "bulk query job created");
        self.job_id = Some(id.clone());
        self.started = Some(Instant::now());
        Ok(Ok(id))
    }

    /// Polls until a terminal state, with exponential backoff, or until the stop function
    /// says the run must end (the job goes on; a later run resumes polling it).
    async fn wait(&mut self, client: &Client, job_id: &str) -> Result<Waited, Error> {
        let config = &client.inner.config;
        let path = client.data_path(&format!("/jobs/query/{job_id}"));
        let started = *self.started.get_or_insert_with(Instant::now);
        loop {
            let info: Value = match client.get(&path, None).await {
                Ok(response) => response.json("bulk job")?,
                Err(Error::Api {
                    status: 404,
                    code,
                    message,
                }) => {
                    return Ok(Waited::Lost {
                        state: "gone".into(),
                        message: format!("{code}: {message} (deleted, or past its 7 days)"),
                    });
                }
                Err(e) => return Err(e),
            };
            let state = info
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            debug!(job_id, state = %state, "bulk job polled");
            match state.as_str() {
                "JobComplete" => {
                    self.complete = true;
                    return Ok(Waited::Complete);
                }
                "Failed" => {
                    let message = info
                        .get("errorMessage")
                        .and_then(Value::as_str)
                        .unwrap_or("no errorMessage given");
                    if bulk_cannot_serve(message) {
                        return Ok(Waited::CannotServe(client.redact(message)));
                    }
                    return Ok(Waited::Lost {
                        state,
                        message: client.redact(message),
                    });
                }
                "Aborted" => {
                    return Ok(Waited::Lost {
                        state,
                        message: "the job was aborted (by a user or an administrator)".into(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= config.bulk_timeout {
                return Err(Error::BulkJob {
                    job_id: job_id.to_string(),
                    state,
                    message: format!(
                        "not complete after {}s; giving up",
                        config.bulk_timeout.as_secs()
                    ),
                });
            }
            if self.stop.as_ref().is_some_and(|stop| stop()) {
                info!(job_id, state = %state, "stopping before the job is complete; a later run resumes it");
                return Ok(Waited::Stopped);
            }
            let delay = self.poll_delay.unwrap_or(config.bulk_poll_initial);
            tokio::time::sleep(delay).await;
            self.poll_delay = Some(delay.saturating_mul(2).min(config.bulk_poll_max));
        }
    }
}

/// A job failure that REST would not have: an unsupported object, field or query shape.
fn bulk_cannot_serve(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("functionality_not_enabled")
        || lower.contains("not supported")
        || lower.contains("invalidentity")
        || lower.contains("compound")
}

/// CSV rows → REST-shaped records.
pub(crate) struct Converter {
    object: String,
    api_version: String,
    /// lower-case path → (canonical path, describe type)
    columns: HashMap<String, (String, String)>,
    hidden: Vec<String>,
    hops: HashMap<String, HopInfo>,
    global: Arc<GlobalDescribe>,
}

impl Converter {
    pub(crate) fn new(plan: &SyncPlan, client: &Client, global: Arc<GlobalDescribe>) -> Converter {
        let (select, hidden, hops) = bulk_columns(plan);
        let mut columns = HashMap::new();
        for path in &select {
            let field_type = plan
                .column(path)
                .map(|c| c.field_type.clone())
                .unwrap_or_else(|| "reference".to_string());
            columns.insert(path.to_ascii_lowercase(), (path.clone(), field_type));
        }
        Converter {
            object: plan.object.clone(),
            api_version: client.inner.config.api_version.clone(),
            columns,
            hidden,
            hops,
            global,
        }
    }

    fn url(&self, object: &str, id: &str) -> String {
        format!(
            "/services/data/v{}/sobjects/{object}/{id}",
            self.api_version
        )
    }

    /// Reads a results page's header; its rows are then converted by [`RowReader::take`].
    pub(crate) fn reader(&self, body: Vec<u8>) -> Result<RowReader, Error> {
        let skip = if body.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut cursor = std::io::Cursor::new(body);
        cursor.set_position(skip);
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(cursor);
        let headers: Vec<(String, String)> = csv
            .byte_headers()
            .map_err(|e| Error::decode(format!("Bulk results CSV header: {e}")))?
            .iter()
            .map(|h| {
                let name = String::from_utf8_lossy(h).trim().to_string();
                match self.columns.get(&name.to_ascii_lowercase()) {
                    Some((path, ty)) => (path.clone(), ty.clone()),
                    None => (name, "string".to_string()),
                }
            })
            .collect();
        Ok(RowReader {
            csv,
            headers,
            row: csv::ByteRecord::new(),
            done: false,
        })
    }

    fn convert_row(
        &self,
        headers: &[(String, String)],
        row: &csv::ByteRecord,
    ) -> Result<Value, Error> {
        let mut record = Map::new();
        for ((path, field_type), raw) in headers.iter().zip(row.iter()) {
            let raw = String::from_utf8_lossy(raw);
            insert_path(&mut record, path, typed(&raw, field_type));
        }
        self.finalize(&mut record, "");
        for path in &self.hidden {
            remove_path(&mut record, path);
        }
        let id = record
            .get("Id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::decode("a Bulk results row has no Id"))?;
        record.insert(
            "attributes".into(),
            json!({"type": self.object, "url": self.url(&self.object, &id)}),
        );
        Ok(Value::Object(record))
    }

    /// Gives each parent node its `attributes`, or turns it into `null` when the parent
    /// does not exist (its `Id` is empty).
    fn finalize(&self, node: &mut Map<String, Value>, prefix: &str) {
        let keys: Vec<String> = node
            .iter()
            .filter(|(k, v)| v.is_object() && k.as_str() != "attributes")
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let hop = self.hops.get(&path.to_ascii_lowercase());
            let Some(Value::Object(child)) = node.get_mut(&key) else {
                continue;
            };
            self.finalize(child, &path);
            let id = child.get("Id").and_then(Value::as_str).map(str::to_string);
            let present = if child.contains_key("Id") {
                id.is_some()
            } else {
                child.values().any(|v| !v.is_null())
            };
            if !present {
                node.insert(key, Value::Null);
                continue;
            }
            // The object the id points to; REST types a polymorphic parent (Who, What, an
            // Owner of several types) as `Name` but keeps the real object in its url.
            let real_object = match hop {
                Some(h) if h.targets.len() == 1 => h.targets[0].clone(),
                Some(h) => id
                    .as_deref()
                    .and_then(|id| self.global.object_for_id(id))
                    .map(|o| o.name.clone())
                    .or_else(|| h.targets.first().cloned())
                    .unwrap_or_else(|| key.clone()),
                None => key.clone(),
            };
            let type_name = match hop {
                Some(h) if h.targets.len() > 1 => "Name".to_string(),
                _ => real_object.clone(),
            };
            let mut attributes = Map::new();
            attributes.insert("type".into(), Value::String(type_name));
            if let Some(id) = &id {
                attributes.insert("url".into(), Value::String(self.url(&real_object, id)));
            }
            child.insert("attributes".into(), Value::Object(attributes));
        }
    }
}

/// The rows of one results page, converted a slice at a time.
pub(crate) struct RowReader {
    csv: csv::Reader<std::io::Cursor<Vec<u8>>>,
    headers: Vec<(String, String)>,
    row: csv::ByteRecord,
    done: bool,
}

impl RowReader {
    /// Converts up to `n` more rows.
    pub(crate) fn take(&mut self, converter: &Converter, n: usize) -> Result<Vec<Value>, Error> {
        let mut records = Vec::with_capacity(n.min(10_000));
        while records.len() < n && !self.done {
            let more = self
                .csv
                .read_byte_record(&mut self.row)
                .map_err(|e| Error::decode(format!("Bulk results CSV: {e}")))?;
            if !more {
                self.done = true;
                break;
            }
            records.push(converter.convert_row(&self.headers, &self.row)?);
        }
        if !self.done && self.csv.is_done() {
            self.done = true;
        }
        Ok(records)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Discards up to `n` rows (handed on by an earlier run); returns how many there were.
    pub(crate) fn skip(&mut self, n: u64) -> Result<u64, Error> {
        let mut skipped = 0;
        while skipped < n && !self.done {
            let more = self
                .csv
                .read_byte_record(&mut self.row)
                .map_err(|e| Error::decode(format!("Bulk results CSV: {e}")))?;
            if !more {
                self.done = true;
                break;
            }
            skipped += 1;
        }
        if !self.done && self.csv.is_done() {
            self.done = true;
        }
        Ok(skipped)
    }
}

fn insert_path(record: &mut Map<String, Value>, path: &str, value: Value) {
    let mut node = record;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            node.insert(segment.to_string(), value);
            return;
        }
        let entry = node
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        node = next;
    }
}

fn remove_path(record: &mut Map<String, Value>, path: &str) {
    match path.split_once('.') {
        None => {
            record.remove(path);
        }
        Some((head, rest)) => {
            if let Some(Value::Object(child)) = record.get_mut(head) {
                remove_path(child, rest);
            }
        }
    }
}

/// A CSV cell typed as REST would type it.
pub(crate) fn typed(raw: &str, field_type: &str) -> Value {
    if raw.is_empty() {
        return Value::Null;
    }
    match field_type {
        "boolean" => match raw.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(raw.to_string()),
        },
        "int" | "long" => match raw.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => float(raw),
        },
        "double" | "currency" | "percent" => float(raw),
        "datetime" => match sfsync_mapping::time::parse_salesforce_datetime(raw) {
            Ok(t) => Value::String(soql::rest_datetime(t)),
            Err(_) => Value::String(raw.to_string()),
        },
        _ => Value::String(raw.to_string()),
    }
}

fn float(raw: &str) -> Value {
    match raw
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        Some(n) => Value::Number(n),
        None => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_cells_like_rest() {
        assert_eq!(typed("", "string"), Value::Null);
        assert_eq!(typed("true", "boolean"), json!(true));
        assert_eq!(typed("42", "int"), json!(42));
        assert_eq!(typed("1000", "currency"), json!(1000.0));
        assert_eq!(typed("12.5", "percent"), json!(12.5));
        assert_eq!(
            typed("2024-05-01T12:34:56.000Z", "datetime"),
            json!("2024-05-01T12:34:56.000+0000")
        );
        assert_eq!(typed("2024-05-01", "date"), json!("2024-05-01"));
        assert_eq!(typed("a\u{0}b", "textarea"), json!("a\u{0}b"));
    }

    #[test]
    fn nests_and_removes_paths() {
        let mut record = Map::new();
        insert_path(&mut record, "Account.Owner.Name", json!("x"));
        insert_path(&mut record, "Account.OwnerId", json!("005"));
        assert_eq!(record["Account"]["Owner"]["Name"], json!("x"));
        remove_path(&mut record, "Account.OwnerId");
        assert!(record["Account"].get("OwnerId").is_none());
    }
}
