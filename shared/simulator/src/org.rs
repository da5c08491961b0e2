//! The in-memory org: one table per sObject, kept ordered by (SystemModstamp, Id) so that
//! incremental queries read only the window they ask for.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::ids::make_id;
use crate::schema::{FieldDef, FieldType, ObjectDef, Schema, Storage};
use crate::value::{Val, date_to_days, parse_date, parse_datetime, parse_naive_datetime};

mod change_events;

/// FNV-1a: the id index and the generator's field-name lookups hash short keys millions
/// of times, where the default SipHash is measurably slower. Keys are our own ids, so
/// hash flooding is no concern.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Sort key of the modstamp index: milliseconds, then the id.
pub(crate) type OrderKey = (i64, Arc<str>);

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub vals: Box<[Val]>,
    /// Hard-deleted rows keep their slot (open query cursors refer to rows by position) but
    /// leave every index.
    pub purged: bool,
}

impl Row {
    pub(crate) fn get(&self, col: usize) -> &Val {
        self.vals.get(col).unwrap_or(&Val::Null)
    }
}

/// One object's rows and indexes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub rows: Vec<Row>,
    pub by_id: FastMap<Arc<str>, u32>,
    pub order: BTreeMap<OrderKey, u32>,
    /// Every delete (soft or hard) with its time, for `/sobjects/{Obj}/deleted`.
    pub deleted: BTreeMap<Arc<str>, i64>,
    /// The delete log holds nothing older than this (ms): `earliestDateAvailable`.
    pub delete_log_purged_until: i64,
    pub next_seq: u64,
}

impl Table {
    pub(crate) fn row(&self, idx: u32) -> Option<&Row> {
        self.rows.get(idx as usize)
    }

    pub(crate) fn find(&self, id: &str) -> Option<u32> {
        if let Some(i) = self.by_id.get(id) {
            return Some(*i);
        }
        // Ids are case-insensitive in their 18-character form and the 15-character form is
        // their case-sensitive prefix; only fall back to this slower path on a miss.
        if id.len() == 15 || id.len() == 18 {
            let key15 = id.get(..15)?;
            return self
                .by_id
                .iter()
                .find(|(k, _)| {
                    if id.len() == 15 {
                        k.starts_with(key15)
                    } else {
                        k.eq_ignore_ascii_case(id)
                    }
                })
                .map(|(_, i)| *i);
        }
        None
    }
}

static ORG_INSTANCES: AtomicU64 = AtomicU64::new(1);

/// Describe metadata is identical for every org with the same options: build it once.
pub(crate) fn shared_schema(name_parts: bool) -> Arc<Schema> {
    static WITH: OnceLock<Arc<Schema>> = OnceLock::new();
    static WITHOUT: OnceLock<Arc<Schema>> = OnceLock::new();
    let cell = if name_parts { &WITH } else { &WITHOUT };
    cell.get_or_init(|| Arc::new(Schema::build(name_parts)))
        .clone()
}

/// The instant generated orgs treat as "now" unless their spec says otherwise. Fixed, so
/// that an org is the same for a seed whenever it is generated.
pub fn default_anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 6, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// An in-memory Salesforce org: tables per sObject, describe metadata and a clock.
///
/// The clock starts at the spec's anchor (generated rows are all older). Each mutating
/// call (`insert`, `update`, `soft_delete`, `hard_delete`, `touch_random`) is one
/// transaction: it first advances the clock by one second, then stamps the rows with the
/// new `now()`, so a change is always newer than anything before it. `advance_clock`
/// moves it further; `insert_late` stamps the past without moving it.
///
/// Real-Salesforce differences callers must expect: `User` has no `IsDeleted` (and no
/// `OwnerId`); `CampaignMember` deletes are always hard.
#[derive(Debug, Clone)]
pub struct Org {
    pub(crate) schema: Arc<Schema>,
    pub(crate) tables: Vec<Table>,
    pub(crate) clock_ms: i64,
    /// Distinguishes orgs, so a query locator from a replaced org is rejected rather than
    /// read against the wrong rows.
    pub(crate) instance: u64,
    /// Owner of rows inserted without one (the first generated user, or a dangling id).
    pub(crate) default_owner: Arc<str>,
    /// Change Data Capture journal, once enabled (`crate::cdc`).
    pub(crate) changes: Option<Box<crate::cdc::ChangeJournal>>,
}

impl Org {
    /// An org with describe metadata for every object and no rows.
    pub fn empty() -> Org {
        Org::with_schema(shared_schema(true), default_anchor())
    }

    pub(crate) fn with_schema(schema: Arc<Schema>, anchor: DateTime<Utc>) -> Org {
        let tables = schema.objects.iter().map(|_| Table::default()).collect();
        Org {
            schema,
            tables,
            clock_ms: anchor.timestamp_millis(),
            instance: ORG_INSTANCES.fetch_add(1, Ordering::Relaxed),
            default_owner: Arc::from(make_id("005", 1).as_str()),
            changes: None,
        }
    }

    /// Names of all objects, in describe order.
    pub fn object_names(&self) -> Vec<String> {
        self.schema.objects.iter().map(|o| o.name.clone()).collect()
    }

    pub(crate) fn object(&self, name: &str) -> Option<(usize, &ObjectDef)> {
        let i = self.schema.object_index(name)?;
        self.schema.objects.get(i).map(|o| (i, o))
    }

    /// The org's clock: what mutations stamp rows with.
    pub fn now(&self) -> DateTime<Utc> {
        crate::value::to_datetime(self.clock_ms)
    }

    pub fn advance_clock(&mut self, by: Duration) {
        self.clock_ms += by.num_milliseconds();
    }

    /// Every mutating call is one transaction one second after the previous one, so that a
    /// change is always newer than everything before it (Salesforce stamps whole seconds).
    pub(crate) fn tick(&mut self) -> i64 {
        self.clock_ms += 1000;
        self.clock_ms
    }

    /// Adds a row stored with `vals` (a full column vector) and indexes it.
    pub(crate) fn push_row(&mut self, obj: usize, vals: Vec<Val>) -> Option<Arc<str>> {
        let def = self.schema.objects.get(obj)?;
        let (col_id, col_mod) = (def.col_id, def.col_modstamp);
        let id = match vals.get(col_id) {
            Some(Val::Str(s)) => s.clone(),
            _ => return None,
        };
        let stamp = match vals.get(col_mod) {
            Some(Val::DateTime(ms)) => *ms,
            _ => 0,
        };
        let deleted = def
            .col_is_deleted
            .and_then(|c| vals.get(c))
            .is_some_and(Val::as_bool);
        let table = self.tables.get_mut(obj)?;
        let idx = table.rows.len() as u32;
        table.rows.push(Row {
            vals: vals.into_boxed_slice(),
            purged: false,
        });
        table.by_id.insert(id.clone(), idx);
        table.order.insert((stamp, id.clone()), idx);
        if deleted {
            table.deleted.insert(id.clone(), stamp);
        }
        Some(id)
    }

    fn next_id(&mut self, obj: usize) -> Option<String> {
        let prefix = self.schema.objects.get(obj)?.key_prefix;
        let table = self.tables.get_mut(obj)?;
        loop {
            table.next_seq += 1;
            let id = make_id(prefix, table.next_seq);
            if !table.by_id.contains_key(id.as_str()) {
                return Some(id);
            }
        }
    }

    /// Inserts a row stamped with the (advanced) clock and returns its new 18-character Id.
    ///
    /// Fields are matched without regard to case. Values in `fields` win over the defaults
    /// (IsDeleted false, OwnerId, audit fields), so a test can insert an exact row. A
    /// compound `…Address` object is spread over its parts; a Contact/Lead/User `Name` with
    /// no LastName is split into FirstName and LastName.
    ///
    /// # Panics
    /// On an unknown object or field, or a value of the wrong JSON type: these are mistakes
    /// in the calling test, not data.
    pub fn insert(&mut self, object: &str, fields: Map<String, Value>) -> String {
        let stamp = self.tick();
        self.insert_at(object, fields, stamp)
    }

    /// Inserts a row whose transaction "committed late": its SystemModstamp (and
    /// CreatedDate) is `modstamp`, typically older than rows already read. The clock does
    /// not move.
    pub fn insert_late(
        &mut self,
        object: &str,
        fields: Map<String, Value>,
        modstamp: DateTime<Utc>,
    ) -> String {
        let mut fields = fields;
        let stamp = Value::String(modstamp.to_rfc3339());
        for f in ["SystemModstamp", "CreatedDate", "LastModifiedDate"] {
            fields.insert(f.to_string(), stamp.clone());
        }
        self.insert_at(object, fields, modstamp.timestamp_millis())
    }

    fn insert_at(&mut self, object: &str, fields: Map<String, Value>, stamp: i64) -> String {
        let Some((obj, def)) = self.object(object) else {
            panic!("Org::insert: unknown object {object:?}");
        };
        let def = def.clone();
        let mut vals = vec![Val::Null; def.n_columns];
        for f in &def.fields {
            let Some(col) = f.column() else { continue };
            let default = match f.name.as_str() {
                "IsDeleted" | "HasOptedOutOfEmail" | "DoNotCall" | "IsConverted" | "IsClosed"
                | "IsWon" | "IsArchived" | "HasResponded" | "IsPrimary" | "IsDirect"
                | "IsHighPriority" | "IsUnreadByOwner" => Val::Bool(false),
                "IsActive" => Val::Bool(true),
                "OwnerId" | "CreatedById" | "LastModifiedById" => {
                    Val::Str(self.default_owner.clone())
                }
                "CreatedDate" | "LastModifiedDate" | "SystemModstamp" => Val::DateTime(stamp),
                _ => Val::Null,
            };
            if let Some(slot) = vals.get_mut(col) {
                *slot = default;
            }
        }
        let mut explicit_id = None;
        for (key, value) in &fields {
            if key.eq_ignore_ascii_case("Id") {
                explicit_id = value.as_str().map(str::to_string);
                continue;
            }
            apply_field(&def, &mut vals, key, value);
        }
        let id = match explicit_id {
            Some(id) => {
                if self
                    .tables
                    .get(obj)
                    .is_some_and(|t| t.by_id.contains_key(id.as_str()))
                {
                    panic!("Org::insert: duplicate Id {id}");
                }
                id
            }
            None => self.next_id(obj).unwrap_or_default(),
        };
        if let Some(slot) = vals.get_mut(def.col_id) {
            *slot = Val::str(&id);
        }
        derive_fields(&def, &mut vals);
        self.push_row(obj, vals);
        self.journal_change(obj, &id, crate::cdc::ChangeType::Create, None);
        id
    }

    /// Updates fields of a live or soft-deleted row and bumps SystemModstamp and
    /// LastModifiedDate to the (advanced) clock. False if the object or row does not exist.
    ///
    /// # Panics
    /// On an unknown field or a value of the wrong JSON type, as [`Org::insert`].
    pub fn update(&mut self, object: &str, id: &str, fields: Map<String, Value>) -> bool {
        let Some((obj, _)) = self.object(object) else {
            return false;
        };
        let Some(idx) = self.live_index(obj, id, true) else {
            return false;
        };
        let stamp = self.tick();
        let before = self.journal_snapshot(obj, idx);
        self.modify(obj, idx, stamp, |def, vals| {
            for (key, value) in &fields {
                apply_field(def, vals, key, value);
            }
            derive_fields(def, vals);
            if let Some(slot) = vals.get_mut(def.col_last_modified) {
                *slot = Val::DateTime(stamp);
            }
        });
        self.journal_change(obj, id, crate::cdc::ChangeType::Update, before);
        true
    }

    /// Moves a row to the Recycle Bin: IsDeleted=true, SystemModstamp bumped. It then shows
    /// only in `queryAll` and is listed by `/deleted`. CampaignMember has no Recycle Bin, so
    /// for it this is a hard delete, as in Salesforce.
    pub fn soft_delete(&mut self, object: &str, id: &str) -> bool {
        self.soft_delete_setting(object, id, None)
    }

    /// [`Org::soft_delete`], also writing `extra` (a column and its value) in the same
    /// transaction: a merge's loser gets its `MasterRecordId` as it goes to the Recycle Bin.
    pub(crate) fn soft_delete_setting(
        &mut self,
        object: &str,
        id: &str,
        extra: Option<(usize, Val)>,
    ) -> bool {
        let Some((obj, def)) = self.object(object) else {
            return false;
        };
        let soft = def.col_is_deleted.filter(|_| def.soft_deletable);
        let Some(col_deleted) = soft else {
            return self.hard_delete(object, id);
        };
        let Some(idx) = self.live_index(obj, id, false) else {
            return false;
        };
        let stamp = self.tick();
        self.modify(obj, idx, stamp, |def, vals| {
            if let Some(slot) = vals.get_mut(col_deleted) {
                *slot = Val::Bool(true);
            }
            if let Some((col, value)) = extra
                && let Some(slot) = vals.get_mut(col)
            {
                *slot = value;
            }
            if let Some(slot) = vals.get_mut(def.col_last_modified) {
                *slot = Val::DateTime(stamp);
            }
        });
        if let Some(table) = self.tables.get_mut(obj)
            && let Some(row) = table.row(idx)
            && let Some(Val::Str(key)) = row.vals.get(table_id_col(&self.schema, obj))
        {
            let key = key.clone();
            table.deleted.insert(key, stamp);
        }
        self.journal_change(obj, id, crate::cdc::ChangeType::Delete, None);
        true
    }

    /// Removes a row for good (emptied Recycle Bin): invisible to query and queryAll, still
    /// listed by `/sobjects/{Obj}/deleted`.
    pub fn hard_delete(&mut self, object: &str, id: &str) -> bool {
        let Some((obj, _)) = self.object(object) else {
            return false;
        };
        let Some(idx) = self.live_index(obj, id, true) else {
            return false;
        };
        let col_id = table_id_col(&self.schema, obj);
        let col_mod = self
            .schema
            .objects
            .get(obj)
            .map(|o| o.col_modstamp)
            .unwrap_or(0);
        let in_bin = self.in_recycle_bin(obj, idx);
        let stamp = self.tick();
        let Some(table) = self.tables.get_mut(obj) else {
            return false;
        };
        let Some(row) = table.rows.get_mut(idx as usize) else {
            return false;
        };
        row.purged = true;
        let key = match row.get(col_id) {
            Val::Str(s) => s.clone(),
            _ => return false,
        };
        let old = match row.get(col_mod) {
            Val::DateTime(ms) => *ms,
            _ => 0,
        };
        table.order.remove(&(old, key.clone()));
        table.by_id.remove(&key);
        // A soft delete followed by a purge keeps its first (Recycle Bin) date.
        table.deleted.entry(key.clone()).or_insert(stamp);
        if !in_bin {
            self.journal_change(obj, &key, crate::cdc::ChangeType::Delete, None);
        }
        true
    }

    /// Empties `object`'s delete log of everything before `before`, as Salesforce's
    /// background purge does when the log grows large (REST API guide, "sObject Get
    /// Deleted"): those deletions are no longer listed by `/deleted`, whose
    /// `earliestDateAvailable` moves to `before`. Returns how many entries went.
    pub fn purge_delete_log(&mut self, object: &str, before: DateTime<Utc>) -> usize {
        let Some((obj, _)) = self.object(object) else {
            return 0;
        };
        let Some(table) = self.tables.get_mut(obj) else {
            return 0;
        };
        let cut = before.timestamp_millis();
        let n = table.deleted.len();
        table.deleted.retain(|_, when| *when >= cut);
        table.delete_log_purged_until = table.delete_log_purged_until.max(cut);
        n - table.deleted.len()
    }

    /// Changes `n` distinct live rows (chosen by `seed`) as one transaction — they share one
    /// new SystemModstamp — and returns their ids. The changed field is a plausible one for
    /// the object (Title, Name, Subject, Status, …).
    pub fn touch_random(&mut self, object: &str, n: usize, seed: u64) -> Vec<String> {
        let Some((obj, def)) = self.object(object) else {
            return Vec::new();
        };
        let target = [
            "Title",
            "Description",
            "Subject",
            "Status",
            "Name",
            "Role",
            "Roles",
        ]
        .iter()
        .find_map(|f| def.field(f).filter(|fd| fd.column().is_some()))
        .map(|f| (f.name.clone(), f.ty, f.picklist.clone()));
        let col_deleted = def.col_is_deleted;
        let Some(table) = self.tables.get(obj) else {
            return Vec::new();
        };
        let mut live: Vec<u32> = table
            .order
            .values()
            .copied()
            .filter(|i| {
                table
                    .row(*i)
                    .is_some_and(|r| col_deleted.is_none_or(|c| !r.get(c).as_bool()))
            })
            .collect();
        let mut rng = crate::rng::Rng::new(seed ^ 0x7c3a_91e5);
        let take = n.min(live.len());
        // Partial Fisher–Yates: the first `take` slots become a uniform sample.
        for i in 0..take {
            let j = i + rng.below((live.len() - i) as u64) as usize;
            live.swap(i, j);
        }
        live.truncate(take);
        live.sort_unstable();
        let stamp = self.tick();
        let mut ids = Vec::with_capacity(take);
        for idx in live {
            let mut new_value = None;
            if let Some((name, ty, picklist)) = &target {
                let v = match ty {
                    FieldType::Picklist | FieldType::MultiPicklist if !picklist.is_empty() => {
                        Val::str(picklist[rng.below(picklist.len() as u64) as usize])
                    }
                    _ => Val::str(&format!("Updated {}", rng.below(1_000_000))),
                };
                new_value = Some((name.clone(), v));
            }
            let before = self.journal_snapshot(obj, idx);
            self.modify(obj, idx, stamp, |def, vals| {
                if let Some((name, v)) = &new_value
                    && let Some(col) = def.column(name)
                    && let Some(slot) = vals.get_mut(col)
                {
                    *slot = v.clone();
                }
                if let Some(slot) = vals.get_mut(def.col_last_modified) {
                    *slot = Val::DateTime(stamp);
                }
            });
            let id = match self
                .tables
                .get(obj)
                .and_then(|t| t.row(idx))
                .map(|r| r.get(def_id_col(&self.schema, obj)))
            {
                Some(Val::Str(id)) => Some(id.to_string()),
                _ => None,
            };
            if let Some(id) = id {
                self.journal_change(obj, &id, crate::cdc::ChangeType::Update, before);
                ids.push(id);
            }
        }
        ids
    }

    /// Rows of `object` that exist: live ones, plus soft-deleted ones when asked.
    pub fn count(&self, object: &str, include_deleted: bool) -> usize {
        let Some((obj, def)) = self.object(object) else {
            return 0;
        };
        let Some(table) = self.tables.get(obj) else {
            return 0;
        };
        match def.col_is_deleted {
            Some(c) if !include_deleted => table
                .order
                .values()
                .filter(|i| table.row(**i).is_some_and(|r| !r.get(c).as_bool()))
                .count(),
            _ => table.order.len(),
        }
    }

    /// All live rows (neither soft- nor hard-deleted) in REST shape with every field,
    /// ordered by (SystemModstamp, Id).
    pub fn records(&self, object: &str) -> Vec<Value> {
        let Some((obj, def)) = self.object(object) else {
            return Vec::new();
        };
        let Some(table) = self.tables.get(obj) else {
            return Vec::new();
        };
        table
            .order
            .values()
            .filter_map(|i| table.row(*i))
            .filter(|r| def.col_is_deleted.is_none_or(|c| !r.get(c).as_bool()))
            .map(|r| record_json(def, r, crate::DEFAULT_API_VERSION))
            .collect()
    }

    /// One row (live or soft-deleted) in REST shape, or None.
    pub fn record(&self, object: &str, id: &str) -> Option<Value> {
        let (obj, def) = self.object(object)?;
        let table = self.tables.get(obj)?;
        let row = table.row(table.find(id)?)?;
        Some(record_json(def, row, crate::DEFAULT_API_VERSION))
    }

    /// The row index of `id` if it exists and, unless `allow_deleted`, is not soft-deleted.
    pub(crate) fn live_index(&self, obj: usize, id: &str, allow_deleted: bool) -> Option<u32> {
        let def = self.schema.objects.get(obj)?;
        let table = self.tables.get(obj)?;
        let idx = table.find(id)?;
        let row = table.row(idx)?;
        if row.purged {
            return None;
        }
        if !allow_deleted && def.col_is_deleted.is_some_and(|c| row.get(c).as_bool()) {
            return None;
        }
        Some(idx)
    }

    /// Applies `change` to a row and re-indexes it under the new modstamp.
    pub(crate) fn modify(
        &mut self,
        obj: usize,
        idx: u32,
        stamp: i64,
        change: impl FnOnce(&ObjectDef, &mut [Val]),
    ) {
        let schema = self.schema.clone();
        let Some(def) = schema.objects.get(obj) else {
            return;
        };
        let Some(table) = self.tables.get_mut(obj) else {
            return;
        };
        let Some(row) = table.rows.get_mut(idx as usize) else {
            return;
        };
        let key = match row.get(def.col_id) {
            Val::Str(s) => s.clone(),
            _ => return,
        };
        let old = match row.get(def.col_modstamp) {
            Val::DateTime(ms) => *ms,
            _ => 0,
        };
        change(def, &mut row.vals);
        if let Some(slot) = row.vals.get_mut(def.col_modstamp) {
            *slot = Val::DateTime(stamp);
        }
        table.order.remove(&(old, key.clone()));
        table.order.insert((stamp, key), idx);
    }
}

fn table_id_col(schema: &Schema, obj: usize) -> usize {
    schema.objects.get(obj).map(|o| o.col_id).unwrap_or(0)
}

fn def_id_col(schema: &Schema, obj: usize) -> usize {
    table_id_col(schema, obj)
}

/// Keeps the fields Salesforce derives in step with what was written.
fn derive_fields(def: &ObjectDef, vals: &mut [Val]) {
    if def.name == "CampaignMember" {
        let contact = def.column("ContactId").and_then(|c| vals.get(c)).cloned();
        let lead = def.column("LeadId").and_then(|c| vals.get(c)).cloned();
        let who = match (contact, lead) {
            (Some(c), _) if !c.is_null() => c,
            (_, Some(l)) => l,
            _ => Val::Null,
        };
        if let Some(slot) = def.column("LeadOrContactId").and_then(|c| vals.get_mut(c)) {
            *slot = who;
        }
    }
}

/// Writes one caller-supplied field into a row being built.
fn apply_field(def: &ObjectDef, vals: &mut [Val], key: &str, value: &Value) {
    let Some(field) = def.field(key) else {
        panic!("Org: no field {key:?} on {}", def.name);
    };
    match &field.storage {
        Storage::Column(col) => {
            let v = json_to_val(field, value);
            if let Some(slot) = vals.get_mut(*col) {
                *slot = v;
            }
        }
        Storage::Address(cols) => {
            const KEYS: [&str; 8] = [
                "street",
                "city",
                "state",
                "postalCode",
                "country",
                "latitude",
                "longitude",
                "geocodeAccuracy",
            ];
            for (k, col) in KEYS.iter().zip(cols) {
                let part = value.get(k).cloned().unwrap_or(Value::Null);
                let v = match part {
                    Value::Null => Val::Null,
                    Value::Number(n) => Val::Num(n.as_f64().unwrap_or_default()),
                    Value::String(s) => Val::str(&s),
                    other => panic!("Org: bad {k} in {key}: {other}"),
                };
                if let Some(slot) = vals.get_mut(*col) {
                    *slot = v;
                }
            }
        }
        Storage::FullName(parts) => {
            // Split "First Last" when no explicit LastName is given.
            let Some(full) = value.as_str() else { return };
            // Parts are First, [Middle], Last, [Suffix]: Last is second from the end when
            // the org has Middle/Suffix, else last.
            let last_pos = if parts.len() == 4 { 2 } else { 1 };
            let (Some(first_col), Some(last_col)) = (parts.first(), parts.get(last_pos)) else {
                return;
            };
            let (first, last) = match full.rsplit_once(' ') {
                Some((f, l)) => (Val::str(f), Val::str(l)),
                None => (Val::Null, Val::str(full)),
            };
            if vals.get(*last_col).is_some_and(Val::is_null) {
                if let Some(slot) = vals.get_mut(*first_col) {
                    *slot = first;
                }
                if let Some(slot) = vals.get_mut(*last_col) {
                    *slot = last;
                }
            }
        }
    }
}

fn json_to_val(field: &FieldDef, value: &Value) -> Val {
    if value.is_null() {
        return Val::Null;
    }
    let bad = || -> ! {
        panic!(
            "Org: value {value} does not fit {} ({:?})",
            field.name, field.ty
        )
    };
    match field.ty {
        FieldType::Boolean => value.as_bool().map(Val::Bool).unwrap_or_else(|| bad()),
        FieldType::Int => value.as_i64().map(Val::Int).unwrap_or_else(|| bad()),
        FieldType::Double | FieldType::Currency | FieldType::Percent => {
            value.as_f64().map(Val::Num).unwrap_or_else(|| bad())
        }
        FieldType::DateTime => value
            .as_str()
            .and_then(|s| parse_datetime(s).or_else(|| parse_naive_datetime(s)))
            .map(|d| Val::DateTime(d.timestamp_millis()))
            .unwrap_or_else(|| bad()),
        FieldType::Date => value
            .as_str()
            .and_then(parse_date)
            .map(|d| Val::Date(date_to_days(d)))
            .unwrap_or_else(|| bad()),
        _ => match value {
            Value::String(s) => Val::str(s),
            Value::Array(items) if field.ty == FieldType::MultiPicklist => {
                let parts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                Val::str(&parts.join(";"))
            }
            _ => bad(),
        },
    }
}

/// The value of a field for a row, computing compound fields.
pub(crate) fn field_value(field: &FieldDef, row: &Row) -> FieldOut {
    match &field.storage {
        Storage::Column(c) => FieldOut::Val(row.get(*c).clone()),
        Storage::FullName(parts) => {
            let mut s = String::new();
            for p in parts {
                if let Val::Str(part) = row.get(*p) {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    s.push_str(part);
                }
            }
            if s.is_empty() {
                FieldOut::Val(Val::Null)
            } else {
                FieldOut::Val(Val::Str(Arc::from(s)))
            }
        }
        Storage::Address(cols) => {
            let parts: Vec<Val> = cols.iter().map(|c| row.get(*c).clone()).collect();
            if parts.iter().all(Val::is_null) {
                FieldOut::Val(Val::Null)
            } else {
                FieldOut::Address(parts)
            }
        }
    }
}

/// A field's value as read: a scalar, or the parts of a compound address.
pub(crate) enum FieldOut {
    Val(Val),
    Address(Vec<Val>),
}

impl FieldOut {
    pub(crate) fn write_json(&self, out: &mut String) {
        match self {
            FieldOut::Val(v) => v.write_json(out),
            FieldOut::Address(parts) => {
                // Keys in Salesforce's (alphabetical) order; parts are stored street, city,
                // state, postalCode, country, latitude, longitude, geocodeAccuracy.
                let order: [(&str, usize); 8] = [
                    ("city", 1),
                    ("country", 4),
                    ("geocodeAccuracy", 7),
                    ("latitude", 5),
                    ("longitude", 6),
                    ("postalCode", 3),
                    ("state", 2),
                    ("street", 0),
                ];
                out.push('{');
                for (n, (key, i)) in order.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(key);
                    out.push_str("\":");
                    parts.get(*i).unwrap_or(&Val::Null).write_json(out);
                }
                out.push('}');
            }
        }
    }

    pub(crate) fn into_val(self) -> Val {
        match self {
            FieldOut::Val(v) => v,
            FieldOut::Address(_) => Val::Null,
        }
    }
}

/// A whole row in REST shape, attributes first.
pub(crate) fn record_text(def: &ObjectDef, row: &Row, version: &str) -> String {
    let mut out = String::with_capacity(512);
    out.push('{');
    write_attributes(&mut out, &def.name, &def.name, row.get(def.col_id), version);
    for f in &def.fields {
        out.push(',');
        crate::value::write_json_string(&f.name, &mut out);
        out.push(':');
        field_value(f, row).write_json(&mut out);
    }
    out.push('}');
    out
}

pub(crate) fn record_json(def: &ObjectDef, row: &Row, version: &str) -> Value {
    serde_json::from_str(&record_text(def, row, version)).unwrap_or(Value::Null)
}

/// `"attributes":{"type":…,"url":…}`; `type_name` differs from `object` for polymorphic
/// parents (type `Name`, url of the real object).
pub(crate) fn write_attributes(
    out: &mut String,
    type_name: &str,
    object: &str,
    id: &Val,
    version: &str,
) {
    out.push_str("\"attributes\":{\"type\":");
    crate::value::write_json_string(type_name, out);
    out.push_str(",\"url\":");
    let url = match id {
        Val::Str(id) => format!("/services/data/v{version}/sobjects/{object}/{id}"),
        _ => format!("/services/data/v{version}/sobjects/{object}"),
    };
    crate::value::write_json_string(&url, out);
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn insert_update_delete_cycle() {
        let mut org = Org::empty();
        let start = org.now();
        let id = org.insert(
            "Contact",
            map(
                json!({"lastname": "Zoë", "FirstName": "Ann", "MailingAddress": {"city": "Paris"}}),
            ),
        );
        assert_eq!(id.len(), 18);
        assert!(id.starts_with("003"));
        assert!(org.now() > start);
        let rec = org.records("Contact");
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0]["LastName"], "Zoë");
        assert_eq!(rec[0]["Name"], "Ann Zoë");
        assert_eq!(rec[0]["MailingAddress"]["city"], "Paris");
        assert_eq!(rec[0]["MailingAddress"]["street"], Value::Null);
        assert_eq!(rec[0]["attributes"]["type"], "Contact");

        org.advance_clock(Duration::hours(1));
        assert!(org.update("Contact", &id, map(json!({"Title": "CEO"}))));
        let rec = org.records("Contact");
        assert_eq!(rec[0]["Title"], "CEO");
        assert_eq!(
            rec[0]["SystemModstamp"],
            crate::value::format_rest_datetime(org.now().timestamp_millis())
        );
        assert!(!org.update("Contact", "003000000000000AAA", Map::new()));

        assert!(org.soft_delete("Contact", &id));
        assert_eq!(org.count("Contact", false), 0);
        assert_eq!(org.count("Contact", true), 1);
        assert!(org.hard_delete("Contact", &id));
        assert_eq!(org.count("Contact", true), 0);
        assert!(!org.hard_delete("Contact", &id));
    }

    #[test]
    fn insert_late_keeps_old_modstamp() {
        let mut org = Org::empty();
        let past = org.now() - Duration::days(2);
        let id = org.insert_late(
            "Lead",
            map(json!({"LastName": "Late", "Company": "X", "Status": "Open - Not Contacted"})),
            past,
        );
        let rec = org.record("Lead", &id).unwrap_or(Value::Null);
        assert_eq!(
            rec["SystemModstamp"],
            crate::value::format_rest_datetime(past.timestamp_millis())
        );
    }
}
