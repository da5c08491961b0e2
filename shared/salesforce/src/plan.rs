//! Checking a sync against the org's describe, and the extraction plan that results.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sfsync_mapping::config::{SyncConfig, SyncKind};
// "Did you mean …?" is shared with the config checks and the command line.
use sfsync_mapping::suggest::did_you_mean;
pub use sfsync_mapping::suggest::suggestions;

use crate::client::Client;
use crate::describe::{FieldDescribe, ObjectDescribe};
use crate::error::{Error, FieldProblem};

/// Fields that exist only when the org enables them: selected when present, skipped
/// otherwise.
pub const OPTIONAL_FIELDS: &[&str] = &["MiddleName", "Suffix"];

/// Field types Bulk API 2.0 cannot return.
const BULK_UNSUPPORTED_TYPES: &[&str] = &["address", "location", "base64"];

/// How many targets of a polymorphic lookup are described to check a parent path.
const MAX_POLYMORPHIC_TARGETS: usize = 12;

/// One hop of a parent path: `Account` through `AccountId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipHop {
    /// Canonical relationship name (`Account`, `Owner`, `Parent__r`).
    pub relationship: String,
    /// The reference field holding the parent's id (`AccountId`).
    pub reference_field: String,
    /// `referenceTo`: more than one for polymorphic lookups (`WhoId` → Contact, Lead).
    pub targets: Vec<String>,
}

/// One selected column, resolved against describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedField {
    /// Canonical path as selected (`Email`, `Account.Name`).
    pub path: String,
    /// The describe type of the leaf field (`string`, `double`, `datetime`, …).
    pub field_type: String,
    /// The parent hops, empty for a field of the object itself.
    pub hops: Vec<RelationshipHop>,
}

/// What [`Client::extract`] runs for a sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPlan {
    pub sync: SyncConfig,
    /// Canonical object API name.
    pub object: String,
    /// The SELECT list: `sync.select_fields()` in canonical casing, fields that do not exist
    /// in this org (optional ones only) left out.
    pub select: Vec<String>,
    /// Optional fields (`MiddleName`, `Suffix`) the org does not have.
    pub missing_optional: Vec<String>,
    /// Whether Bulk API 2.0 can serve this sync (no compound fields, a supported object).
    pub bulk_supported: bool,
    /// Why not, when it cannot.
    pub bulk_unsupported_reason: Option<String>,
    /// Type information for every entry of `select`, in the same order.
    pub columns: Vec<PlannedField>,
}

impl SyncPlan {
    pub(crate) fn column(&self, path: &str) -> Option<&PlannedField> {
        self.columns
            .iter()
            .find(|c| c.path.eq_ignore_ascii_case(path))
    }
}

impl Client {
    /// Resolves a sync against describe. `Err(Error::InvalidSync)` when the object or a
    /// required field is unknown.
    pub async fn plan(&self, sync: &SyncConfig) -> Result<SyncPlan, Error> {
        let (plan, problems) = self.analyze(sync, false).await?;
        match plan {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => Err(Error::InvalidSync { problems }),
        }
    }

    /// Every problem of a sync against this org, each with the key it is about and
    /// suggestions for near-miss names. Also runs the `where` condition once (`LIMIT 1`) so
    /// that a malformed condition is reported here rather than mid-run.
    pub async fn check_sync(&self, sync: &SyncConfig) -> Result<Vec<FieldProblem>, Error> {
        let (_, problems) = self.analyze(sync, true).await?;
        Ok(problems)
    }

    async fn analyze(
        &self,
        sync: &SyncConfig,
        check_where: bool,
    ) -> Result<(Option<SyncPlan>, Vec<FieldProblem>), Error> {
        let global = self.describe_global().await?;
        let mut problems = Vec::new();
        let Some(summary) = global.object(&sync.object) else {
            let names: Vec<&str> = global.sobjects.iter().map(|o| o.name.as_str()).collect();
            problems.push(FieldProblem {
                key: "object".into(),
                message: format!(
                    "no sObject named {:?} in this org{}",
                    sync.object,
                    did_you_mean(&sync.object, names)
                ),
            });
            return Ok((None, problems));
        };
        if !summary.queryable {
            problems.push(FieldProblem {
                key: "object".into(),
                message: format!("{} cannot be queried", summary.name),
            });
            return Ok((None, problems));
        }
        let object = self.describe(&summary.name).await?;

        let mut select = Vec::new();
        let mut columns = Vec::new();
        let mut missing_optional = Vec::new();
        for field in sync.select_fields() {
            let key = key_of(sync, &field);
            match self.resolve_path(&object, &field).await? {
                Ok(column) => {
                    select.push(column.path.clone());
                    columns.push(column);
                }
                Err(_)
                    if !field.contains('.')
                        && OPTIONAL_FIELDS
                            .iter()
                            .any(|o| o.eq_ignore_ascii_case(&field)) =>
                {
                    missing_optional.push(field.clone());
                }
                Err(message) => {
                    let message = if key == "object" {
                        format!(
                            "{} has no {field} field, which incremental extraction needs",
                            object.name
                        )
                    } else {
                        message
                    };
                    problems.push(FieldProblem { key, message });
                }
            }
        }

        if check_where
            && problems.is_empty()
            && let Some(condition) = sync.where_clause.as_deref()
        {
            let soql = format!("SELECT Id FROM {} WHERE ({condition}) LIMIT 1", object.name);
            if let Err(e) = self.run_query_once(&soql).await {
                match e {
                    Error::Api { code, message, .. } => problems.push(FieldProblem {
                        key: "where".into(),
                        message: format!("Salesforce rejects the condition: {code}: {message}"),
                    }),
                    other => return Err(other),
                }
            }
        }

        let config = &self.inner.config;
        let mut reason = None;
        if config
            .bulk_unsupported_objects
            .iter()
            .any(|o| o.eq_ignore_ascii_case(&object.name))
        {
            reason = Some(format!("Bulk API 2.0 cannot query {}", object.name));
        } else if let Some(c) = columns
            .iter()
            .find(|c| BULK_UNSUPPORTED_TYPES.contains(&c.field_type.as_str()))
        {
            reason = Some(format!(
                "{} is a {} field, which Bulk API 2.0 cannot return",
                c.path, c.field_type
            ));
        }
        let plan = SyncPlan {
            sync: sync.clone(),
            object: object.name.clone(),
            select,
            missing_optional,
            bulk_supported: reason.is_none(),
            bulk_unsupported_reason: reason,
            columns,
        };
        Ok((Some(plan), problems))
    }

    /// Resolves `Email` or `Account.Owner.Email`. The outer error is an API failure; the
    /// inner one a message about the path.
    async fn resolve_path(
        &self,
        object: &Arc<ObjectDescribe>,
        path: &str,
    ) -> Result<Result<PlannedField, String>, Error> {
        let segments: Vec<&str> = path.split('.').collect();
        let mut current: Vec<Arc<ObjectDescribe>> = vec![object.clone()];
        let mut hops = Vec::new();
        let mut canonical: Vec<String> = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let here = current
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>()
                .join("/");
            if i + 1 == segments.len() {
                let found = current.iter().find_map(|o| o.field(segment));
                let Some(field) = found else {
                    return Ok(Err(unknown_field(&current, segment, path, &here)));
                };
                canonical.push(field.name.clone());
                return Ok(Ok(PlannedField {
                    path: canonical.join("."),
                    field_type: field.field_type.clone(),
                    hops,
                }));
            }
            let found: Option<FieldDescribe> = current
                .iter()
                .find_map(|o| o.relationship(segment))
                .cloned();
            let Some(reference) = found else {
                return Ok(Err(unknown_relationship(&current, segment, path, &here)));
            };
            let relationship = reference.relationship_name.clone().unwrap_or_default();
            canonical.push(relationship.clone());
            let mut next = Vec::new();
            for target in reference.reference_to.iter().take(MAX_POLYMORPHIC_TARGETS) {
                match self.describe(target).await {
                    Ok(d) => next.push(d),
                    // A target the integration user cannot see: skip it.
                    Err(Error::Api { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if next.is_empty() {
                return Ok(Err(format!(
                    "{path:?}: the parent of {relationship} ({}) cannot be described",
                    reference.reference_to.join(", ")
                )));
            }
            hops.push(RelationshipHop {
                relationship,
                reference_field: reference.name.clone(),
                targets: reference.reference_to.clone(),
            });
            current = next;
        }
        Ok(Err(format!("{path:?} is empty")))
    }

    /// One REST query, for checks (no pagination).
    pub(crate) async fn run_query_once(&self, soql: &str) -> Result<serde_json::Value, Error> {
        let path = self.data_path("/query");
        let query = crate::client::query_string(&[("q", soql)]);
        self.get(&path, Some(&query)).await?.json("query")
    }
}

fn unknown_field(current: &[Arc<ObjectDescribe>], segment: &str, path: &str, here: &str) -> String {
    if let Some(rel) = current
        .iter()
        .flat_map(|o| o.relationship_names())
        .find(|r| r.eq_ignore_ascii_case(segment))
    {
        return format!(
            "{rel} is a relationship of {here}, not a field: select the id field or one of its \
             fields, e.g. {rel}.Name"
        );
    }
    let names: Vec<&str> = current
        .iter()
        .flat_map(|o| o.fields.iter().map(|f| f.name.as_str()))
        .collect();
    let what = if path.contains('.') {
        format!("no field {segment:?} on {here} (in {path:?})")
    } else {
        format!("no field {segment:?} on {here}")
    };
    format!("{what}{}", did_you_mean(segment, names))
}

fn unknown_relationship(
    current: &[Arc<ObjectDescribe>],
    segment: &str,
    path: &str,
    here: &str,
) -> String {
    // `AccountId.Name`: the user named the id field instead of the relationship.
    if let Some(field) = current.iter().find_map(|o| o.field(segment))
        && let Some(rel) = &field.relationship_name
    {
        let rest = path.split_once('.').map(|(_, r)| r).unwrap_or_default();
        return format!(
            "{} is the id field; parent fields go through the relationship name: did you mean \
             \"{rel}.{rest}\"?",
            field.name
        );
    }
    let names: Vec<&str> = current
        .iter()
        .flat_map(|o| o.relationship_names())
        .collect();
    format!(
        "no relationship {segment:?} on {here} (in {path:?}){}",
        did_you_mean(segment, names)
    )
}

/// The config key a selected field comes from.
fn key_of(sync: &SyncConfig, field: &str) -> String {
    let same = |v: &Option<String>| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(field));
    if ["Id", "SystemModstamp", "IsDeleted"]
        .iter()
        .any(|f| f.eq_ignore_ascii_case(field))
    {
        return "object".into();
    }
    if same(&sync.user_id) {
        return "user_id".into();
    }
    if same(&sync.group_id) {
        return "group_id".into();
    }
    if same(&sync.event_field) {
        return "event_field".into();
    }
    if sync.kind == SyncKind::Events && sync.timestamp_field().eq_ignore_ascii_case(field) {
        return "timestamp_field".into();
    }
    match sync
        .fields
        .iter()
        .position(|f| f.eq_ignore_ascii_case(field))
    {
        Some(j) => format!("fields[{j}]"),
        None => "fields".into(),
    }
}
