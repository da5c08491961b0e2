//! Binds a parsed query to the org's schema, runs it, and renders its rows as REST JSON or
//! Bulk CSV.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::ids::same_id;
use crate::org::{FieldOut, Org, Row, field_value, write_attributes};
use crate::schema::{FieldType, LiteralKind, NAME_ENTITY_FIELDS, ObjectDef, Schema};
use crate::soql::{CmpOp, Expr, Literal, Path, Query, SelectItem, SoqlError};
use crate::value::{Val, write_json_string};

/// Where a relationship step leads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Object(usize),
    /// A polymorphic lookup (`Who`, `What`, Lead/Task `Owner`): the `Name` pseudo-object,
    /// resolved per row from the id's key prefix.
    Poly,
}

#[derive(Debug, Clone, PartialEq)]
struct Step {
    /// The reference column in the current object.
    col: usize,
    target: Target,
}

#[derive(Debug, Clone, PartialEq)]
enum Leaf {
    Field {
        obj: usize,
        field: usize,
    },
    /// A field of the `Name` pseudo-object (canonical name).
    Poly(&'static str),
}

/// A resolved field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldPath {
    steps: Vec<Step>,
    leaf: Leaf,
    /// Canonical dotted name (`Account.Name`), used for CSV headers and duplicates.
    pub canonical: String,
    ty: FieldType,
}

/// The nested shape of a REST record.
#[derive(Debug, Clone)]
enum Proj {
    Field {
        name: String,
        leaf: Leaf,
    },
    Parent {
        rel: String,
        step: Step,
        children: Vec<Proj>,
    },
}

#[derive(Debug, Clone)]
enum Cond {
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
    Cmp {
        path: FieldPath,
        op: CmpOp,
        value: Val,
    },
    In {
        path: FieldPath,
        negated: bool,
        values: Vec<Val>,
    },
    Like {
        path: FieldPath,
        pattern: Vec<LikeTok>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum LikeTok {
    Char(char),
    One,
    Any,
}

#[derive(Debug, Clone)]
struct SortKey {
    path: FieldPath,
    ascending: bool,
    nulls_first: bool,
}

/// A query bound to the schema, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub obj: usize,
    pub object_name: String,
    pub count_only: bool,
    proj: Vec<Proj>,
    /// Selected paths in SELECT order (the CSV columns).
    pub columns: Vec<FieldPath>,
    filter: Option<Cond>,
    /// None: the natural (SystemModstamp, Id) order of the index.
    sort: Option<Vec<SortKey>>,
    pub limit: Option<usize>,
    /// Inclusive SystemModstamp bounds implied by the filter, in ms.
    range: (i64, i64),
    /// The first selected compound (address) field, which Bulk API cannot return.
    pub compound_field: Option<String>,
}

fn no_column(q: &Query, pos: usize, name: &str, entity: &str) -> SoqlError {
    SoqlError::at(
        "INVALID_FIELD",
        &q.text,
        pos,
        &format!(
            "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

fn bad_relationship(q: &Query, pos: usize, name: &str) -> SoqlError {
    SoqlError::at(
        "INVALID_FIELD",
        &q.text,
        pos,
        &format!(
            "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    )
}

fn resolve(schema: &Schema, q: &Query, obj: usize, path: &Path) -> Result<FieldPath, SoqlError> {
    let mut parts = path.parts.clone();
    // `Contact.Email` in a query on Contact: a leading object name is allowed.
    if parts.len() > 1
        && schema
            .objects
            .get(obj)
            .is_some_and(|o| o.name.eq_ignore_ascii_case(&parts[0]))
        && schema
            .objects
            .get(obj)
            .is_some_and(|o| o.relationship(&parts[0]).is_none())
    {
        parts.remove(0);
    }
    let Some((leaf_name, rels)) = parts.split_last() else {
        return Err(no_column(q, path.pos, "", ""));
    };
    let mut cur = Target::Object(obj);
    let mut steps = Vec::new();
    let mut canonical = Vec::new();
    for rel in rels {
        let Target::Object(o) = cur else {
            // Salesforce cannot traverse past the Name pseudo-object.
            return Err(bad_relationship(q, path.pos, rel));
        };
        let Some(def) = schema.objects.get(o) else {
            return Err(bad_relationship(q, path.pos, rel));
        };
        let Some(field) = def.relationship(rel) else {
            return Err(bad_relationship(q, path.pos, rel));
        };
        let Some(col) = field.column() else {
            return Err(bad_relationship(q, path.pos, rel));
        };
        let target = if field.reference_to.len() == 1 {
            match field
                .reference_to
                .first()
                .and_then(|t| schema.object_index(t))
            {
                Some(t) => Target::Object(t),
                None => return Err(bad_relationship(q, path.pos, rel)),
            }
        } else {
            Target::Poly
        };
        canonical.push(field.relationship_name.clone().unwrap_or_default());
        steps.push(Step { col, target });
        cur = target;
    }
    let (leaf, ty, name) = match cur {
        Target::Object(o) => {
            let def = schema.objects.get(o);
            let entity = def.map(|d| d.name.as_str()).unwrap_or("");
            let Some(fi) = def.and_then(|d| d.field_index(leaf_name)) else {
                return Err(no_column(q, path.pos, leaf_name, entity));
            };
            let Some(field) = def.and_then(|d| d.fields.get(fi)) else {
                return Err(no_column(q, path.pos, leaf_name, entity));
            };
            (
                Leaf::Field { obj: o, field: fi },
                field.ty,
                field.name.clone(),
            )
        }
        Target::Poly => {
            let Some(name) = NAME_ENTITY_FIELDS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(leaf_name))
            else {
                return Err(no_column(q, path.pos, leaf_name, "Name"));
            };
            let ty = match *name {
                "Id" => FieldType::Id,
                "IsActive" => FieldType::Boolean,
                _ => FieldType::String,
            };
            (Leaf::Poly(name), ty, name.to_string())
        }
    };
    canonical.push(name);
    Ok(FieldPath {
        steps,
        leaf,
        canonical: canonical.join("."),
        ty,
    })
}

fn insert_proj(tree: &mut Vec<Proj>, fp: &FieldPath, depth: usize) {
    if depth == fp.steps.len() {
        let name = fp
            .canonical
            .rsplit('.')
            .next()
            .unwrap_or(&fp.canonical)
            .to_string();
        tree.push(Proj::Field {
            name,
            leaf: fp.leaf.clone(),
        });
        return;
    }
    let rel = fp
        .canonical
        .split('.')
        .nth(depth)
        .unwrap_or_default()
        .to_string();
    let Some(step) = fp.steps.get(depth) else {
        return;
    };
    for p in tree.iter_mut() {
        if let Proj::Parent {
            rel: r, children, ..
        } = p
            && *r == rel
        {
            insert_proj(children, fp, depth + 1);
            return;
        }
    }
    let mut children = Vec::new();
    insert_proj(&mut children, fp, depth + 1);
    tree.push(Proj::Parent {
        rel,
        step: step.clone(),
        children,
    });
}

/// The literal as a value of the field's type, or Salesforce's type error.
fn bind_literal(q: &Query, fp: &FieldPath, lit: &Literal, pos: usize) -> Result<Val, SoqlError> {
    let field = fp.canonical.rsplit('.').next().unwrap_or(&fp.canonical);
    let kind = fp.ty.literal_kind();
    let mismatch = |ty: &str, quoted: bool| {
        SoqlError::at(
            "INVALID_FIELD",
            &q.text,
            pos,
            &format!(
                "value of filter criterion for field '{field}' must be of type {ty} and should {}be enclosed in quotes",
                if quoted { "" } else { "not " }
            ),
        )
    };
    match (kind, lit) {
        (LiteralKind::NotFilterable, _) => Err(SoqlError::at(
            "INVALID_FIELD",
            &q.text,
            pos,
            &format!("field '{field}' can not be filtered in a query call"),
        )),
        (_, Literal::Null) => Ok(Val::Null),
        (LiteralKind::String, Literal::Str(s)) => Ok(Val::str(s)),
        (LiteralKind::String, _) => Err(mismatch("string", true)),
        (LiteralKind::Boolean, Literal::Bool(b)) => Ok(Val::Bool(*b)),
        (LiteralKind::Boolean, _) => Err(mismatch("boolean", false)),
        (LiteralKind::Integer, Literal::Num(n)) => Ok(Val::Int(*n as i64)),
        (LiteralKind::Integer, _) => Err(mismatch("integer", false)),
        (LiteralKind::Double, Literal::Num(n)) => Ok(Val::Num(*n)),
        (LiteralKind::Double, _) => Err(mismatch("double", false)),
        (LiteralKind::Date, Literal::Date(d)) => Ok(Val::Date(*d)),
        (LiteralKind::Date, _) => Err(mismatch("date", false)),
        (LiteralKind::DateTime, Literal::DateTime(ms)) => Ok(Val::DateTime(*ms)),
        (LiteralKind::DateTime, _) => Err(mismatch("dateTime", false)),
    }
}

fn bind_expr(schema: &Schema, q: &Query, obj: usize, e: &Expr) -> Result<Cond, SoqlError> {
    Ok(match e {
        Expr::And(items) => Cond::And(
            items
                .iter()
                .map(|i| bind_expr(schema, q, obj, i))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Or(items) => Cond::Or(
            items
                .iter()
                .map(|i| bind_expr(schema, q, obj, i))
                .collect::<Result<_, _>>()?,
        ),
        Expr::Not(inner) => Cond::Not(Box::new(bind_expr(schema, q, obj, inner)?)),
        Expr::Cmp {
            path,
            op,
            value,
            value_pos,
        } => {
            let fp = resolve(schema, q, obj, path)?;
            let value = bind_literal(q, &fp, value, *value_pos)?;
            if value.is_null() && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                return Err(SoqlError::at(
                    "MALFORMED_QUERY",
                    &q.text,
                    *value_pos,
                    "invalid operator on null: only = and != may compare with null",
                ));
            }
            Cond::Cmp {
                path: fp,
                op: *op,
                value,
            }
        }
        Expr::In {
            path,
            negated,
            values,
        } => {
            let fp = resolve(schema, q, obj, path)?;
            let values = values
                .iter()
                .map(|(l, p)| bind_literal(q, &fp, l, *p))
                .collect::<Result<_, _>>()?;
            Cond::In {
                path: fp,
                negated: *negated,
                values,
            }
        }
        Expr::Like {
            path,
            pattern,
            value_pos,
        } => {
            let fp = resolve(schema, q, obj, path)?;
            if fp.ty.literal_kind() != LiteralKind::String {
                return Err(SoqlError::at(
                    "INVALID_FIELD",
                    &q.text,
                    *value_pos,
                    &format!("invalid operator on field '{}': LIKE", fp.canonical),
                ));
            }
            Cond::Like {
                path: fp,
                pattern: like_tokens(pattern),
            }
        }
    })
}

fn like_tokens(pattern: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push(LikeTok::Any),
            '_' => out.push(LikeTok::One),
            '\\' => {
                if let Some(n) = chars.next() {
                    out.extend(n.to_lowercase().map(LikeTok::Char));
                }
            }
            c => out.extend(c.to_lowercase().map(LikeTok::Char)),
        }
    }
    out
}

fn like_match(pat: &[LikeTok], text: &[char]) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((LikeTok::Any, rest)) => (0..=text.len()).any(|i| like_match(rest, &text[i..])),
        Some((LikeTok::One, rest)) => !text.is_empty() && like_match(rest, &text[1..]),
        Some((LikeTok::Char(c), rest)) => text.first() == Some(c) && like_match(rest, &text[1..]),
    }
}

/// Inclusive SystemModstamp bounds that every row matching `c` satisfies.
fn modstamp_range(c: &Cond, modstamp_field: Option<usize>, obj: usize) -> (i64, i64) {
    const ALL: (i64, i64) = (i64::MIN, i64::MAX);
    match c {
        Cond::And(items) => items.iter().fold(ALL, |acc, i| {
            let r = modstamp_range(i, modstamp_field, obj);
            (acc.0.max(r.0), acc.1.min(r.1))
        }),
        Cond::Or(items) => {
            let mut out: Option<(i64, i64)> = None;
            for i in items {
                let r = modstamp_range(i, modstamp_field, obj);
                out = Some(match out {
                    None => r,
                    Some(o) => (o.0.min(r.0), o.1.max(r.1)),
                });
            }
            out.unwrap_or(ALL)
        }
        Cond::Cmp {
            path,
            op,
            value: Val::DateTime(ms),
        } if path.steps.is_empty()
            && modstamp_field.is_some_and(|f| path.leaf == Leaf::Field { obj, field: f }) =>
        {
            match op {
                CmpOp::Gt => (ms.saturating_add(1), i64::MAX),
                CmpOp::Ge => (*ms, i64::MAX),
                CmpOp::Lt => (i64::MIN, ms.saturating_sub(1)),
                CmpOp::Le => (i64::MIN, *ms),
                CmpOp::Eq => (*ms, *ms),
                CmpOp::Ne => ALL,
            }
        }
        _ => ALL,
    }
}

impl Plan {
    /// Binds `q` to the schema. `q.from` decides the object.
    pub(crate) fn build(schema: &Schema, q: &Query) -> Result<Plan, SoqlError> {
        let Some(obj) = schema.object_index(&q.from) else {
            return Err(SoqlError::at(
                "INVALID_TYPE",
                &q.text,
                q.from_pos,
                &format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.",
                    q.from
                ),
            ));
        };
        let def = schema.objects.get(obj);
        let object_name = def.map(|d| d.name.clone()).unwrap_or_default();
        let mut columns: Vec<FieldPath> = Vec::new();
        let mut proj = Vec::new();
        let mut count_only = false;
        let mut compound_field = None;
        for item in &q.select {
            match item {
                SelectItem::Count(pos) => {
                    if q.select.len() > 1 {
                        return Err(SoqlError::at(
                            "MALFORMED_QUERY",
                            &q.text,
                            *pos,
                            "COUNT() cannot be combined with other fields",
                        ));
                    }
                    count_only = true;
                }
                SelectItem::Field(path) => {
                    let fp = resolve(schema, q, obj, path)?;
                    if columns
                        .iter()
                        .any(|c| c.canonical.eq_ignore_ascii_case(&fp.canonical))
                    {
                        return Err(SoqlError::at(
                            "MALFORMED_QUERY",
                            &q.text,
                            path.pos,
                            &format!("duplicate field selected: {}", fp.canonical),
                        ));
                    }
                    if fp.ty == FieldType::Address && compound_field.is_none() {
                        compound_field = Some(fp.canonical.clone());
                    }
                    insert_proj(&mut proj, &fp, 0);
                    columns.push(fp);
                }
            }
        }
        let filter = match &q.filter {
            Some(e) => Some(bind_expr(schema, q, obj, e)?),
            None => None,
        };
        let modstamp_field = def.and_then(|d| d.field_index("SystemModstamp"));
        let id_field = def.and_then(|d| d.field_index("Id"));
        let mut keys = Vec::new();
        for o in &q.order_by {
            let fp = resolve(schema, q, obj, &o.path)?;
            if matches!(
                fp.ty,
                FieldType::Address | FieldType::TextArea | FieldType::MultiPicklist
            ) {
                return Err(SoqlError::at(
                    "INVALID_FIELD",
                    &q.text,
                    o.path.pos,
                    &format!("field '{}' can not be sorted in a query call", fp.canonical),
                ));
            }
            keys.push(SortKey {
                path: fp,
                ascending: o.ascending,
                nulls_first: o.nulls_first,
            });
        }
        // The index order already is (SystemModstamp, Id) ascending.
        let is_field = |k: &SortKey, f: Option<usize>| {
            k.ascending
                && k.path.steps.is_empty()
                && f.is_some_and(|f| k.path.leaf == Leaf::Field { obj, field: f })
        };
        let natural = match keys.as_slice() {
            [] => true,
            [a] => is_field(a, modstamp_field),
            [a, b] => is_field(a, modstamp_field) && is_field(b, id_field),
            _ => false,
        };
        let range = filter
            .as_ref()
            .map(|f| modstamp_range(f, modstamp_field, obj))
            .unwrap_or((i64::MIN, i64::MAX));
        Ok(Plan {
            obj,
            object_name,
            count_only,
            proj,
            columns,
            filter,
            sort: if natural { None } else { Some(keys) },
            limit: q.limit,
            range,
            compound_field,
        })
    }

    /// Row positions matching the query, in result order.
    ///
    /// `timeout_over`: fail with QUERY_TIMEOUT when more rows than this match the filter
    /// (fault injection; LIMIT does not help, as a real scan still reads them all).
    pub(crate) fn execute(
        &self,
        org: &Org,
        include_deleted: bool,
        timeout_over: Option<usize>,
    ) -> Result<Vec<u32>, SoqlError> {
        let (Some(def), Some(table)) = (org.schema.objects.get(self.obj), org.tables.get(self.obj))
        else {
            return Ok(Vec::new());
        };
        let (lo, hi) = self.range;
        if lo > hi {
            return Ok(Vec::new());
        }
        let early_stop = match (self.sort.is_none(), timeout_over) {
            (true, None) => self.limit,
            _ => None,
        };
        let mut out = Vec::new();
        let start: (i64, Arc<str>) = (lo, Arc::from(""));
        for ((stamp, _), idx) in table.order.range(start..) {
            if *stamp > hi {
                break;
            }
            let Some(row) = table.row(*idx) else { continue };
            if row.purged {
                continue;
            }
            if !include_deleted && def.col_is_deleted.is_some_and(|c| row.get(c).as_bool()) {
                continue;
            }
            if let Some(f) = &self.filter
                && !eval(org, self.obj, row, f)
            {
                continue;
            }
            out.push(*idx);
            if early_stop.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        if let Some(max) = timeout_over
            && out.len() > max
        {
            return Err(SoqlError {
                code: "QUERY_TIMEOUT",
                message: "Your query request was running for too long.".to_string(),
            });
        }
        if let Some(keys) = &self.sort {
            let mut keyed: Vec<(Vec<Val>, u32)> = out
                .iter()
                .map(|i| {
                    let row = table.row(*i);
                    let vals = keys
                        .iter()
                        .map(|k| {
                            row.map(|r| path_value(org, self.obj, r, &k.path).into_val())
                                .unwrap_or(Val::Null)
                        })
                        .collect();
                    (vals, *i)
                })
                .collect();
            keyed.sort_by(|a, b| {
                for (k, (x, y)) in keys.iter().zip(a.0.iter().zip(&b.0)) {
                    let ord = match (x.is_null(), y.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => {
                            if k.nulls_first {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if k.nulls_first {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        (false, false) => {
                            let o = x
                                .cmp_soql(y, k.path.ty.is_id_like())
                                .unwrap_or(Ordering::Equal);
                            if k.ascending { o } else { o.reverse() }
                        }
                    };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                a.1.cmp(&b.1)
            });
            out = keyed.into_iter().map(|(_, i)| i).collect();
        }
        if let Some(l) = self.limit {
            out.truncate(l);
        }
        Ok(out)
    }

    /// Appends the REST JSON of row `idx` to `out`.
    pub(crate) fn write_record(&self, org: &Org, idx: u32, version: &str, out: &mut String) {
        let (Some(def), Some(row)) = (
            org.schema.objects.get(self.obj),
            org.tables.get(self.obj).and_then(|t| t.row(idx)),
        ) else {
            out.push_str("null");
            return;
        };
        write_object(org, def, &def.name, row, &self.proj, version, out);
    }

    /// The CSV header row of a Bulk result.
    pub(crate) fn csv_header(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.canonical.clone()).collect()
    }

    /// One Bulk CSV row.
    pub(crate) fn csv_row(&self, org: &Org, idx: u32) -> Vec<String> {
        let row = org.tables.get(self.obj).and_then(|t| t.row(idx));
        self.columns
            .iter()
            .map(|c| match row {
                Some(r) => path_value(org, self.obj, r, c).into_val().to_csv(),
                None => String::new(),
            })
            .collect()
    }
}

fn write_object(
    org: &Org,
    def: &ObjectDef,
    type_name: &str,
    row: &Row,
    proj: &[Proj],
    version: &str,
    out: &mut String,
) {
    out.push('{');
    write_attributes(out, type_name, &def.name, row.get(def.col_id), version);
    for p in proj {
        out.push(',');
        match p {
            Proj::Field { name, leaf } => {
                write_json_string(name, out);
                out.push(':');
                leaf_value(org, def, row, leaf).write_json(out);
            }
            Proj::Parent {
                rel,
                step,
                children,
            } => {
                write_json_string(rel, out);
                out.push(':');
                match follow(org, row, step) {
                    Some((pdef, prow)) => {
                        let type_name = match step.target {
                            Target::Poly => "Name",
                            Target::Object(_) => pdef.name.as_str(),
                        };
                        write_object(org, pdef, type_name, prow, children, version, out);
                    }
                    None => out.push_str("null"),
                }
            }
        }
    }
    out.push('}');
}

/// The parent row a reference column points at, if it exists and is not deleted.
fn follow<'a>(org: &'a Org, row: &Row, step: &Step) -> Option<(&'a ObjectDef, &'a Row)> {
    let Val::Str(id) = row.get(step.col) else {
        return None;
    };
    let obj = match step.target {
        Target::Object(o) => o,
        Target::Poly => org.schema.object_of_id(id)?,
    };
    let def = org.schema.objects.get(obj)?;
    let table = org.tables.get(obj)?;
    let prow = table.row(table.find(id)?)?;
    if prow.purged || def.col_is_deleted.is_some_and(|c| prow.get(c).as_bool()) {
        return None;
    }
    Some((def, prow))
}

fn leaf_value(org: &Org, def: &ObjectDef, row: &Row, leaf: &Leaf) -> FieldOut {
    match leaf {
        Leaf::Field { field, .. } => match def.fields.get(*field) {
            Some(f) => field_value(f, row),
            None => FieldOut::Val(Val::Null),
        },
        Leaf::Poly(name) => {
            if *name == "Type" {
                return FieldOut::Val(Val::str(&def.name));
            }
            let _ = org;
            match def.field(name) {
                Some(f) => field_value(f, row),
                None => FieldOut::Val(Val::Null),
            }
        }
    }
}

fn path_value(org: &Org, obj: usize, row: &Row, path: &FieldPath) -> FieldOut {
    let Some(mut def) = org.schema.objects.get(obj) else {
        return FieldOut::Val(Val::Null);
    };
    let mut cur = row;
    for step in &path.steps {
        match follow(org, cur, step) {
            Some((d, r)) => {
                def = d;
                cur = r;
            }
            None => return FieldOut::Val(Val::Null),
        }
    }
    leaf_value(org, def, cur, &path.leaf)
}

fn equals(a: &Val, b: &Val, ty: FieldType) -> bool {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) if ty.is_id_like() => same_id(x, y),
        (Val::Str(x), Val::Str(y)) => x.to_lowercase() == y.to_lowercase(),
        _ => a.cmp_soql(b, true) == Some(Ordering::Equal),
    }
}

fn eval(org: &Org, obj: usize, row: &Row, c: &Cond) -> bool {
    match c {
        Cond::And(items) => items.iter().all(|i| eval(org, obj, row, i)),
        Cond::Or(items) => items.iter().any(|i| eval(org, obj, row, i)),
        Cond::Not(inner) => !eval(org, obj, row, inner),
        Cond::Cmp { path, op, value } => {
            let v = path_value(org, obj, row, path).into_val();
            match (value.is_null(), v.is_null()) {
                (true, _) => match op {
                    CmpOp::Eq => v.is_null(),
                    _ => !v.is_null(),
                },
                // SOQL: a null field is "not equal" to any value and fails every range test.
                (false, true) => *op == CmpOp::Ne,
                (false, false) => match op {
                    CmpOp::Eq => equals(&v, value, path.ty),
                    CmpOp::Ne => !equals(&v, value, path.ty),
                    _ => {
                        let Some(ord) = v.cmp_soql(value, path.ty.is_id_like()) else {
                            return false;
                        };
                        match op {
                            CmpOp::Lt => ord == Ordering::Less,
                            CmpOp::Le => ord != Ordering::Greater,
                            CmpOp::Gt => ord == Ordering::Greater,
                            _ => ord != Ordering::Less,
                        }
                    }
                },
            }
        }
        Cond::In {
            path,
            negated,
            values,
        } => {
            let v = path_value(org, obj, row, path).into_val();
            let hit = values.iter().any(|x| {
                if x.is_null() {
                    v.is_null()
                } else {
                    !v.is_null() && equals(&v, x, path.ty)
                }
            });
            hit != *negated
        }
        Cond::Like { path, pattern } => match path_value(org, obj, row, path).into_val() {
            Val::Str(s) => {
                let text: Vec<char> = s.chars().flat_map(char::to_lowercase).collect();
                like_match(pattern, &text)
            }
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::OrgSpec;
    use crate::soql::parse;

    fn plan(org: &Org, q: &str) -> Result<Plan, SoqlError> {
        let q = parse(q)?;
        Plan::build(&org.schema, &q)
    }

    #[test]
    fn window_queries_use_the_index_range() {
        let org = Org::generate(&OrgSpec::tiny());
        let p = plan(
            &org,
            "SELECT Id FROM Contact WHERE SystemModstamp > 2024-01-01T00:00:00Z AND SystemModstamp <= 2024-03-01T00:00:00Z",
        );
        let p = p.map_err(|e| e.message);
        assert!(p.is_ok(), "{p:?}");
        if let Ok(p) = p {
            assert!(p.range.0 > 0 && p.range.1 > p.range.0);
            assert!(p.sort.is_none());
        }
    }

    #[test]
    fn binds_errors_like_salesforce() {
        let org = Org::empty();
        let e = plan(&org, "SELECT Id, Foo FROM Contact").err();
        assert_eq!(e.as_ref().map(|e| e.code), Some("INVALID_FIELD"));
        assert!(e.is_some_and(|e| {
            e.message
                .contains("No such column 'Foo' on entity 'Contact'")
        }));
        let e = plan(&org, "SELECT Id FROM Nope__c").err();
        assert_eq!(e.map(|e| e.code), Some("INVALID_TYPE"));
        let e = plan(
            &org,
            "SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01'",
        )
        .err();
        assert!(e.is_some_and(|e| e.message.contains("must be of type dateTime")));
        let e = plan(&org, "SELECT Id FROM Contact WHERE Email = 5").err();
        assert!(e.is_some_and(|e| e.message.contains("should be enclosed in quotes")));
        let e = plan(&org, "SELECT Id, Foo.Name FROM Contact").err();
        assert!(e.is_some_and(|e| e.message.contains("Didn't understand relationship 'Foo'")));
        let e = plan(&org, "SELECT Id, id FROM Contact").err();
        assert_eq!(e.map(|e| e.code), Some("MALFORMED_QUERY"));
        assert!(plan(&org, "SELECT Id, Who.Name, Who.Type, What.Name FROM Task").is_ok());
        let e = plan(&org, "SELECT Who.Department FROM Task").err();
        assert!(e.is_some_and(|e| e.message.contains("entity 'Name'")));
    }

    #[test]
    fn like_matching() {
        let p = like_tokens("Jo_é%");
        let t: Vec<char> = "josé garcía".chars().collect();
        assert!(like_match(&p, &t));
        let t: Vec<char> = "jose".chars().collect();
        assert!(!like_match(&p, &t));
    }
}
