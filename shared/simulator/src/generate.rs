//! The seeded org generator.
//!
//! Every object draws from its own random stream (seed mixed with the object's name), so
//! changing one count does not reshuffle the other objects. The generator is built for size:
//! repeated strings (names, picklist values, owner ids) are shared `Arc<str>` values and the
//! indexes are bulk-built, which keeps a million contacts to a few seconds and about a
//! kilobyte each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::ids::write_id;
use crate::org::{FastMap, Org, Row, Table, default_anchor, shared_schema};
use crate::rng::Rng;
use crate::schema::{ACR_ROLES, LEAD_SOURCES, LEAD_STATUSES, ObjectDef, PROJECT_STATUSES, STAGES};
use crate::value::Val;

/// What to generate. Counts are rows per object; `soft_deleted` applies to each object
/// that has a Recycle Bin (CampaignMember rows are hard-deleted instead, User rows never).
#[derive(Debug, Clone, PartialEq)]
pub struct OrgSpec {
    pub seed: u64,
    pub contacts: usize,
    pub leads: usize,
    pub users: usize,
    pub accounts: usize,
    pub opportunities: usize,
    pub campaigns: usize,
    pub campaign_members: usize,
    pub tasks: usize,
    pub account_contact_relations: usize,
    pub opportunity_contact_roles: usize,
    /// Rows of the custom object `Project__c`.
    pub custom_objects: usize,
    /// How many rows share one SystemModstamp in a tie block (every fourth block of this
    /// many consecutive rows is one); 0 or 1 disables tie blocks.
    pub tie_block: usize,
    /// Rows per object moved to the Recycle Bin within the last 15 days.
    pub soft_deleted: usize,
    /// Whether the org has MiddleName and Suffix (an org-level feature in Salesforce).
    pub name_parts: bool,
    /// The org's "now": generated timestamps lie before it and the clock starts there.
    pub anchor: DateTime<Utc>,
}

impl Default for OrgSpec {
    fn default() -> Self {
        OrgSpec::demo()
    }
}

impl OrgSpec {
    /// A few hundred rows of each object: quick to generate and to sync.
    pub fn demo() -> Self {
        OrgSpec {
            seed: 42,
            contacts: 300,
            leads: 200,
            users: 10,
            accounts: 100,
            opportunities: 150,
            campaigns: 10,
            campaign_members: 200,
            tasks: 300,
            account_contact_relations: 150,
            opportunity_contact_roles: 150,
            custom_objects: 100,
            tie_block: 25,
            soft_deleted: 5,
            name_parts: true,
            anchor: default_anchor(),
        }
    }

    /// A handful of rows of each object.
    pub fn tiny() -> Self {
        OrgSpec {
            seed: 7,
            contacts: 20,
            leads: 10,
            users: 3,
            accounts: 5,
            opportunities: 5,
            campaigns: 2,
            campaign_members: 10,
            tasks: 10,
            account_contact_relations: 8,
            opportunity_contact_roles: 8,
            custom_objects: 5,
            tie_block: 4,
            soft_deleted: 2,
            name_parts: true,
            anchor: default_anchor(),
        }
    }

    /// The demo org with `n` contacts (for benchmarks: `with_contacts(1_000_000)`).
    pub fn with_contacts(n: usize) -> Self {
        OrgSpec {
            contacts: n,
            ..OrgSpec::demo()
        }
    }
}

const FIRST_NAMES: &[(&str, &str)] = &[
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("Anna", "anna"),
    ("Mohammed", "mohammed"),
    ("Wei", "wei"),
    ("Søren", "soren"),
    ("François", "francois"),
    ("Aisha", "aisha"),
    ("John", "john"),
    ("Mary", "mary"),
    ("Olga", "olga"),
    ("Hiroshi", "hiroshi"),
    ("Priya", "priya"),
    ("Chloé", "chloe"),
    ("Björn", "bjorn"),
    ("Emily", "emily"),
    ("Carlos", "carlos"),
    ("Fatima", "fatima"),
    ("太郎", "taro"),
];

const LAST_NAMES: &[(&str, &str)] = &[
    ("山田", "yamada"),
    ("García", "garcia"),
    ("O'Brien", "obrien"),
    ("Nguyễn", "nguyen"),
    ("Smith", "smith"),
    ("Dvořák", "dvorak"),
    ("Müller", "muller"),
    ("Kowalski", "kowalski"),
    ("Иванов", "ivanov"),
    ("Schäfer", "schafer"),
    ("Johnson", "johnson"),
    ("Patel", "patel"),
    ("Silva", "silva"),
    ("Kim", "kim"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
    ("Andersen", "andersen"),
    ("Cohen", "cohen"),
    ("Okafor", "okafor"),
    ("van der Berg", "vanderberg"),
];

const MIDDLE_NAMES: &[&str] = &["Marie", "J.", "Ann", "Karl", "Lee"];
const SUFFIXES: &[&str] = &["Jr.", "Sr.", "III", "PhD"];
const SALUTATIONS: &[&str] = &["Mr.", "Ms.", "Mrs.", "Dr.", "Prof."];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "VP, Sales",
    "Head of \"Growth\"",
    "Software Engineer",
    "Account Executive",
    "Director of Marketing",
    "Office Manager",
    "Consultant",
    "Directeur général",
];
const DEPARTMENTS: &[&str] = &["Sales", "Engineering", "Marketing", "Finance", "Operations"];
const DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "mail.example"];
const DESCRIPTIONS: &[&str] = &[
    "Met at Dreamforce.\nWants a demo, \"ASAP\".",
    "Prefers email; no calls before 10am",
    "Renewal due, see \"Q3 plan\"",
    "Première réunion à Paris — très intéressé",
    "Line one\r\nLine two, with a comma",
];
/// City, state, postal code, country, latitude, longitude.
type Place = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    f64,
    f64,
);
const PLACES: &[Place] = &[
    (
        "San Francisco",
        Some("CA"),
        "94105",
        "United States",
        37.7897,
        -122.3972,
    ),
    ("Paris", None, "75002", "France", 48.8686, 2.3429),
    ("東京都", None, "100-0005", "Japan", 35.6812, 139.7671),
    (
        "Kraków",
        Some("Małopolskie"),
        "30-001",
        "Poland",
        50.0614,
        19.9366,
    ),
    (
        "London",
        None,
        "EC1A 1BB",
        "United Kingdom",
        51.5194,
        -0.0977,
    ),
    (
        "São Paulo",
        Some("SP"),
        "01000-000",
        "Brazil",
        -23.5505,
        -46.6333,
    ),
    (
        "Austin",
        Some("TX"),
        "73301",
        "United States",
        30.2672,
        -97.7431,
    ),
];
const STREETS: &[&str] = &[
    "Main St",
    "Market Street",
    "Rue de Rivoli",
    "Hauptstraße",
    "Elm Ave",
];
const COMPANIES: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Industries",
    "Wayne Enterprises",
    "Müller GmbH",
    "株式会社山田",
    "Soylent, Inc.",
    "\"Quoted\" Holdings",
];
const SUBJECTS: &[&str] = &[
    "Call",
    "Send Letter",
    "Send Quote",
    "Email: Re: \"Pricing\", next steps",
    "Follow up\nafter demo",
    "Other",
];

/// Pools of shared strings, so a million rows reuse a few hundred allocations.
struct Pool(Vec<Arc<str>>);

impl Pool {
    fn new(items: impl IntoIterator<Item = impl AsRef<str>>) -> Pool {
        Pool(items.into_iter().map(|s| Arc::from(s.as_ref())).collect())
    }

    fn pick(&self, rng: &mut Rng) -> Val {
        match rng.pick(&self.0) {
            Some(s) => Val::Str(s.clone()),
            None => Val::Null,
        }
    }

    fn get(&self, i: usize) -> Val {
        match self.0.get(i) {
            Some(s) => Val::Str(s.clone()),
            None => Val::Null,
        }
    }
}

const SECOND: i64 = 1000;
const HOUR: i64 = 3600 * SECOND;
const DAY: i64 = 24 * HOUR;

/// Builds one row column by column, by field name. The object's definition says which
/// fields it has; a name it lacks is ignored, so that org options (MiddleName/Suffix) and
/// the fields some objects lack (OwnerId) need no special cases here.
struct RowBuilder<'a> {
    def: &'a ObjectDef,
    /// Every stored field's column, by its exact name (a million rows look names up here,
    /// so not through the case-insensitive `ObjectDef::column`).
    cols: FastMap<&'a str, usize>,
}

impl<'a> RowBuilder<'a> {
    fn new(def: &'a ObjectDef) -> RowBuilder<'a> {
        let cols = def
            .fields
            .iter()
            .filter_map(|f| f.column().map(|c| (f.name.as_str(), c)))
            .collect();
        RowBuilder { def, cols }
    }

    fn blank(&self) -> Vec<Val> {
        vec![Val::Null; self.def.n_columns]
    }

    fn set(&self, vals: &mut [Val], name: &'static str, v: Val) {
        if let Some(slot) = self.cols.get(name).and_then(|c| vals.get_mut(*c)) {
            *slot = v;
        }
    }

    /// Sets `name` in `pct` percent of rows. `value` draws from `rng` only for those rows,
    /// exactly as `if rng.chance(pct) { set(…) }` would, so a seed keeps its org.
    fn set_in_pct(
        &self,
        rng: &mut Rng,
        vals: &mut [Val],
        pct: u64,
        name: &'static str,
        value: impl FnOnce(&mut Rng) -> Val,
    ) {
        if rng.chance(pct) {
            let v = value(rng);
            self.set(vals, name, v);
        }
    }
}

/// One of `items`, uniformly: one draw, the same as indexing with `rng.below(len)`.
fn one_of(rng: &mut Rng, items: &[&str]) -> Val {
    Val::str(rng.pick(items).copied().unwrap_or(""))
}

const INDUSTRIES: &[&str] = &["Technology", "Finance", "Retail", "Healthcare"];

/// How large the companies of one object are (accounts are bigger than leads' companies).
struct CompanySizes {
    /// Rows with revenue and headcount; the others leave both empty.
    known_pct: u64,
    /// Revenue is `revenue_step` times a number below `revenue_steps`.
    revenue_steps: u64,
    revenue_step: u64,
    /// Headcount is 1 to this.
    max_employees: u64,
}

/// Industry, AnnualRevenue and NumberOfEmployees: what Account and Lead both say of a company.
fn set_industry_and_size(rng: &mut Rng, b: &RowBuilder, vals: &mut [Val], sizes: &CompanySizes) {
    b.set(vals, "Industry", one_of(rng, INDUSTRIES));
    if rng.chance(sizes.known_pct) {
        let revenue = rng.below(sizes.revenue_steps) * sizes.revenue_step;
        b.set(vals, "AnnualRevenue", Val::Num(revenue as f64));
        let employees = 1 + rng.below(sizes.max_employees) as i64;
        b.set(vals, "NumberOfEmployees", Val::Int(employees));
    }
}

/// Creation and modification times of one object's rows.
struct Timeline {
    created: Vec<i64>,
    modstamp: Vec<i64>,
    last_modified: Vec<i64>,
    deleted: Vec<bool>,
}

fn timeline(rng: &mut Rng, n: usize, spec: &OrgSpec, anchor: i64) -> Timeline {
    let latest = anchor - SECOND;
    let span = 400 * DAY;
    let start = anchor - span;
    let step = if n == 0 { 0 } else { (span - DAY) / n as i64 };
    let secs = |ms: i64| ms - ms.rem_euclid(SECOND);
    let mut created = Vec::with_capacity(n);
    for i in 0..n {
        let jitter = rng.below(step.max(1) as u64) as i64;
        created.push(secs(start + i as i64 * step + jitter).min(latest));
    }
    let mut modstamp = Vec::with_capacity(n);
    for c in &created {
        let room = (latest - c).max(0);
        let delta = if rng.chance(70) {
            rng.below((HOUR.min(room) + 1) as u64) as i64
        } else {
            rng.below((room + 1) as u64) as i64
        };
        modstamp.push(secs(c + delta).min(latest).max(*c));
    }
    // Tie blocks: every fourth run of `tie_block` consecutive rows was changed by one bulk
    // update, so the rows share one SystemModstamp (thousands of ties are possible).
    let tb = spec.tie_block;
    if tb >= 2 {
        let mut k = 1;
        while (k + 1) * tb <= n {
            let range = k * tb..(k + 1) * tb;
            let newest = created
                .get(range.clone())
                .and_then(|s| s.iter().max().copied())
                .unwrap_or(start);
            let room = (latest - newest).max(0);
            let t = secs(newest + rng.below((room + 1) as u64) as i64).max(newest);
            for m in modstamp.get_mut(range).into_iter().flatten() {
                *m = t;
            }
            k += 4;
        }
    }
    let mut last_modified = Vec::with_capacity(n);
    for (c, m) in created.iter().zip(&modstamp) {
        // One row in ten was last bumped by a system process: SystemModstamp moved,
        // LastModifiedDate did not.
        if rng.chance(10) && m > c {
            last_modified.push(secs(c + rng.below((m - c) as u64) as i64));
        } else {
            last_modified.push(*m);
        }
    }
    Timeline {
        created,
        modstamp,
        last_modified,
        deleted: vec![false; n],
    }
}

/// Whether row `i` of `n` falls in one of [`timeline`]'s tie blocks.
fn in_tie_block(i: usize, n: usize, tb: usize) -> bool {
    tb >= 2 && (i / tb) % 4 == 1 && (i / tb + 1) * tb <= n
}

/// Spreads `count` deletions over the rows and stamps them within the last two weeks.
fn mark_deleted(rng: &mut Rng, tl: &mut Timeline, count: usize, anchor: i64, tie_block: usize) {
    let n = tl.created.len();
    let count = count.min(n);
    let mut taken = vec![false; n];
    for j in 0..count {
        // Keep tie blocks whole (their shared stamp is what tests rely on) unless every
        // row is in one; never pick a row twice.
        let mut i = j * n / count + (n / count) / 2;
        let mut tries = 0;
        while tries < n
            && (taken.get(i).copied().unwrap_or(true)
                || (in_tie_block(i, n, tie_block) && tries < n / 2))
        {
            i = (i + 1) % n.max(1);
            tries += 1;
        }
        if let Some(t) = taken.get_mut(i) {
            if *t {
                continue;
            }
            *t = true;
        }
        let Some(created) = tl.created.get(i).copied() else {
            continue;
        };
        let when = anchor - HOUR - rng.below((14 * DAY) as u64) as i64;
        let when = (when - when.rem_euclid(SECOND))
            .max(created)
            .min(anchor - SECOND);
        if let (Some(d), Some(m), Some(l)) = (
            tl.deleted.get_mut(i),
            tl.modstamp.get_mut(i),
            tl.last_modified.get_mut(i),
        ) {
            *d = true;
            *m = when;
            *l = when;
        }
    }
}

/// Everything rows of one object have in common: id, audit fields, owner, IsDeleted.
fn base_row(b: &RowBuilder, tl: &Timeline, i: usize, id: Arc<str>, owner: &Val) -> Vec<Val> {
    let mut vals = b.blank();
    let at = |v: &Vec<i64>| v.get(i).copied().unwrap_or(0);
    b.set(&mut vals, "Id", Val::Str(id));
    b.set(&mut vals, "CreatedDate", Val::DateTime(at(&tl.created)));
    b.set(
        &mut vals,
        "LastModifiedDate",
        Val::DateTime(at(&tl.last_modified)),
    );
    b.set(&mut vals, "SystemModstamp", Val::DateTime(at(&tl.modstamp)));
    b.set(&mut vals, "CreatedById", owner.clone());
    b.set(&mut vals, "LastModifiedById", owner.clone());
    b.set(&mut vals, "OwnerId", owner.clone());
    b.set(
        &mut vals,
        "IsDeleted",
        Val::Bool(tl.deleted.get(i).copied().unwrap_or(false)),
    );
    vals
}

const STREET_NUMBERS: u64 = 999;

struct Gen {
    anchor: i64,
    phones: Pool,
    mobiles: Pool,
    /// Number × street name × (without, with "Suite 400").
    streets: Pool,
    users: Vec<Arc<str>>,
    first: Pool,
    first_ascii: Vec<&'static str>,
    last: Pool,
    last_ascii: Vec<&'static str>,
}

impl Gen {
    fn owner(&self, rng: &mut Rng, fallback: &Arc<str>) -> Val {
        Val::Str(rng.pick(&self.users).unwrap_or(fallback).clone())
    }

    fn date_days(&self, rng: &mut Rng, back: i64, ahead: i64) -> Val {
        let day = self.anchor.div_euclid(DAY) - back + rng.below((back + ahead) as u64) as i64;
        Val::Date(day as i32)
    }

    /// A person's name, address, phone and email; used for Contact, Lead and User.
    fn person(&self, rng: &mut Rng, b: &RowBuilder, vals: &mut [Val], i: usize, addr: &str) {
        let fi = rng.below(FIRST_NAMES.len() as u64) as usize;
        let li = rng.below(LAST_NAMES.len() as u64) as usize;
        let has_first = !rng.chance(3);
        if has_first {
            b.set(vals, "FirstName", self.first.get(fi));
        }
        b.set(vals, "LastName", self.last.get(li));
        b.set_in_pct(rng, vals, 10, "MiddleName", |rng| one_of(rng, MIDDLE_NAMES));
        b.set_in_pct(rng, vals, 3, "Suffix", |rng| one_of(rng, SUFFIXES));
        b.set_in_pct(rng, vals, 40, "Salutation", |rng| one_of(rng, SALUTATIONS));
        if !rng.chance(5) {
            let first = self.first_ascii.get(fi).copied().unwrap_or("x");
            let last = self.last_ascii.get(li).copied().unwrap_or("x");
            let domain = rng.pick(DOMAINS).copied().unwrap_or("example.com");
            let mut email = String::with_capacity(48);
            if has_first {
                let _ = write!(email, "{first}.{last}{i}@{domain}");
            } else {
                let _ = write!(email, "{last}{i}@{domain}");
            }
            // A few addresses keep the case someone typed them in.
            if rng.chance(3) {
                email = email.to_uppercase();
            }
            b.set(vals, "Email", Val::str(&email));
        }
        // Phones and streets come from pools covering every value the generator can
        // produce: shared strings instead of millions of small allocations.
        b.set_in_pct(rng, vals, 70, "Phone", |rng| {
            self.phones.get(rng.below(10_000) as usize)
        });
        b.set_in_pct(rng, vals, 30, "MobilePhone", |rng| {
            self.mobiles.get(rng.below(10_000) as usize)
        });
        if !rng.chance(15) {
            self.address(rng, b, vals, addr);
        }
    }

    fn address(&self, rng: &mut Rng, b: &RowBuilder, vals: &mut [Val], prefix: &str) {
        let Some(place) = rng.pick(PLACES) else {
            return;
        };
        let (city, state, postal, country, lat, lon) = *place;
        let n = rng.below(STREET_NUMBERS) as usize;
        let s = rng.below(STREETS.len() as u64) as usize;
        let suite = usize::from(rng.chance(10));
        let street = self.streets.get(((n * STREETS.len()) + s) * 2 + suite);
        let names = address_fields(prefix);
        b.set(vals, names[0], street);
        b.set(vals, names[1], Val::str(city));
        b.set(vals, names[2], state.map(Val::str).unwrap_or(Val::Null));
        if !rng.chance(10) {
            b.set(vals, names[3], Val::str(postal));
        }
        b.set(vals, names[4], Val::str(country));
        if rng.chance(50) {
            b.set(vals, names[5], Val::Num(lat));
            b.set(vals, names[6], Val::Num(lon));
            b.set(vals, names[7], Val::str("Address"));
        }
    }
}

/// The compound address fields with `prefix` ("Mailing", "Billing", or none), in the order
/// [`Gen::address`] fills them: street, city, state, postal code, country, latitude,
/// longitude, geocode accuracy.
fn address_fields(prefix: &str) -> &'static [&'static str; 8] {
    match prefix {
        "Mailing" => &[
            "MailingStreet",
            "MailingCity",
            "MailingState",
            "MailingPostalCode",
            "MailingCountry",
            "MailingLatitude",
            "MailingLongitude",
            "MailingGeocodeAccuracy",
        ],
        "Billing" => &[
            "BillingStreet",
            "BillingCity",
            "BillingState",
            "BillingPostalCode",
            "BillingCountry",
            "BillingLatitude",
            "BillingLongitude",
            "BillingGeocodeAccuracy",
        ],
        _ => &[
            "Street",
            "City",
            "State",
            "PostalCode",
            "Country",
            "Latitude",
            "Longitude",
            "GeocodeAccuracy",
        ],
    }
}

impl Org {
    /// Generates an org from `spec`; the same spec always yields the same org.
    pub fn generate(spec: &OrgSpec) -> Org {
        let schema = shared_schema(spec.name_parts);
        let mut org = Org::with_schema(schema.clone(), spec.anchor);
        let anchor = spec.anchor.timestamp_millis();
        let mut g = Gen {
            anchor,
            phones: Pool::new((0..10_000).map(|n| format!("+1 415-555-{n:04}"))),
            mobiles: Pool::new((0..10_000).map(|n| format!("(650) 555-{n:04}"))),
            streets: Pool::new((1..=STREET_NUMBERS).flat_map(|n| {
                STREETS
                    .iter()
                    .flat_map(move |s| [format!("{n} {s}"), format!("{n} {s}\nSuite 400")])
            })),
            users: Vec::new(),
            first: Pool::new(FIRST_NAMES.iter().map(|p| p.0)),
            first_ascii: FIRST_NAMES.iter().map(|p| p.1).collect(),
            last: Pool::new(LAST_NAMES.iter().map(|p| p.0)),
            last_ascii: LAST_NAMES.iter().map(|p| p.1).collect(),
        };
        let fallback = org.default_owner.clone();
        let lead_sources = Pool::new(LEAD_SOURCES);
        let titles = Pool::new(TITLES);
        let departments = Pool::new(DEPARTMENTS);
        let descriptions = Pool::new(DESCRIPTIONS);

        // Users first: everything else is owned by one of them.
        let users = org.build_object(spec, "User", spec.users, |rng, b, vals, i, ids| {
            g.person(rng, b, vals, i, "");
            let username = if i == 0 {
                "integration@sfsync-demo.example".to_string()
            } else {
                format!("user{i}@sfsync-demo.example")
            };
            b.set(vals, "Username", Val::str(&username));
            if vals
                .get(b.def.column("Email").unwrap_or(usize::MAX))
                .is_none_or(Val::is_null)
            {
                b.set(
                    vals,
                    "Email",
                    Val::str(&format!("user{i}@sfsync-demo.example")),
                );
            }
            b.set(vals, "Alias", Val::str(&format!("u{i}")));
            b.set(vals, "IsActive", Val::Bool(i == 0 || !rng.chance(10)));
            b.set(vals, "TimeZoneSidKey", Val::str("America/Los_Angeles"));
            b.set(vals, "UserType", Val::str("Standard"));
            b.set(vals, "Title", titles.pick(rng));
            b.set(vals, "Department", departments.pick(rng));
            b.set(vals, "CompanyName", Val::str("sfsync Demo"));
            if i > 0 {
                b.set(
                    vals,
                    "ManagerId",
                    Val::Str(ids.first().cloned().unwrap_or_else(|| fallback.clone())),
                );
            }
            b.set(
                vals,
                "LastLoginDate",
                Val::DateTime(g.anchor - rng.below((30 * DAY) as u64) as i64),
            );
            // Users are their own creators: the integration user made them all.
            let first = ids.first().cloned().unwrap_or_else(|| fallback.clone());
            b.set(vals, "OwnerId", Val::Null);
            b.set(vals, "CreatedById", Val::Str(first.clone()));
            b.set(vals, "LastModifiedById", Val::Str(first));
        });
        g.users = users;
        if let Some(first) = g.users.first() {
            org.default_owner = first.clone();
        }

        let accounts = org.build_object(spec, "Account", spec.accounts, |rng, b, vals, i, ids| {
            let company = rng.pick(COMPANIES).copied().unwrap_or("Acme");
            b.set(vals, "Name", Val::str(&format!("{company} {i}")));
            b.set(
                vals,
                "Type",
                one_of(
                    rng,
                    &[
                        "Prospect",
                        "Customer - Direct",
                        "Customer - Channel",
                        "Partner",
                    ],
                ),
            );
            if rng.chance(5) && !ids.is_empty() {
                b.set(vals, "ParentId", Val::opt_str(rng.pick(ids)));
            }
            if rng.chance(80) {
                g.address(rng, b, vals, "Billing");
            }
            b.set(
                vals,
                "Phone",
                Val::str(&format!("+44 20 7946 {:04}", rng.below(10_000))),
            );
            if rng.chance(80) {
                b.set(
                    vals,
                    "Website",
                    Val::str(&format!(
                        "https://www.{}{i}.example",
                        company
                            .to_ascii_lowercase()
                            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
                    )),
                );
            }
            set_industry_and_size(
                rng,
                b,
                vals,
                &CompanySizes {
                    known_pct: 70,
                    revenue_steps: 500,
                    revenue_step: 100_000,
                    max_employees: 50_000,
                },
            );
            b.set_in_pct(rng, vals, 20, "Description", |rng| descriptions.pick(rng));
            b.set(vals, "OwnerId", g.owner(rng, &fallback));
        });

        let contacts = org.build_object(spec, "Contact", spec.contacts, |rng, b, vals, i, _| {
            g.person(rng, b, vals, i, "Mailing");
            // One contact in ten is private (no account): the parent comes back null.
            if !rng.chance(10) {
                b.set(vals, "AccountId", Val::opt_str(rng.pick(&accounts)));
            }
            if !rng.chance(20) {
                b.set(vals, "Title", titles.pick(rng));
            }
            b.set_in_pct(rng, vals, 60, "Department", |rng| departments.pick(rng));
            b.set_in_pct(rng, vals, 70, "LeadSource", |rng| lead_sources.pick(rng));
            if rng.chance(30) {
                b.set(vals, "Birthdate", g.date_days(rng, 365 * 60, -(365 * 20)));
            }
            b.set_in_pct(rng, vals, 10, "Description", |rng| descriptions.pick(rng));
            b.set(vals, "HasOptedOutOfEmail", Val::Bool(rng.chance(5)));
            b.set(vals, "DoNotCall", Val::Bool(rng.chance(3)));
            b.set_in_pct(rng, vals, 40, "LastActivityDate", |rng| {
                g.date_days(rng, 200, 0)
            });
            b.set_in_pct(rng, vals, 60, "Tier__c", |rng| {
                one_of(rng, &["Gold", "Silver", "Bronze"])
            });
            b.set_in_pct(rng, vals, 50, "Score__c", |rng| {
                Val::Num(rng.below(1000) as f64 / 10.0)
            });
            b.set(vals, "OwnerId", g.owner(rng, &fallback));
        });

        let leads = org.build_object(spec, "Lead", spec.leads, |rng, b, vals, i, _| {
            g.person(rng, b, vals, i, "");
            let company = rng.pick(COMPANIES).copied().unwrap_or("Acme");
            b.set(
                vals,
                "Company",
                Val::str(&format!("{company} Prospect {i}")),
            );
            if !rng.chance(25) {
                b.set(vals, "Title", titles.pick(rng));
            }
            if rng.chance(50) {
                b.set(
                    vals,
                    "Website",
                    Val::str(&format!("http://lead{i}.example")),
                );
            }
            b.set_in_pct(rng, vals, 10, "Description", |rng| descriptions.pick(rng));
            b.set(vals, "LeadSource", lead_sources.pick(rng));
            let converted = rng.chance(10) && !contacts.is_empty();
            if converted {
                b.set(vals, "Status", Val::str("Closed - Converted"));
                b.set(vals, "IsConverted", Val::Bool(true));
                b.set(vals, "ConvertedDate", g.date_days(rng, 100, 0));
                b.set(
                    vals,
                    "ConvertedContactId",
                    Val::opt_str(rng.pick(&contacts)),
                );
                b.set(
                    vals,
                    "ConvertedAccountId",
                    Val::opt_str(rng.pick(&accounts)),
                );
            } else {
                b.set(
                    vals,
                    "Status",
                    Val::str(LEAD_STATUSES[[0, 1, 3][rng.below(3) as usize]]),
                );
                b.set(vals, "IsConverted", Val::Bool(false));
            }
            set_industry_and_size(
                rng,
                b,
                vals,
                &CompanySizes {
                    known_pct: 40,
                    revenue_steps: 100,
                    revenue_step: 50_000,
                    max_employees: 5000,
                },
            );
            b.set(vals, "HasOptedOutOfEmail", Val::Bool(rng.chance(5)));
            b.set(vals, "IsUnreadByOwner", Val::Bool(rng.chance(30)));
            b.set(vals, "OwnerId", g.owner(rng, &fallback));
        });

        let campaigns = org.build_object(spec, "Campaign", spec.campaigns, |rng, b, vals, i, _| {
            let kind = ["Conference", "Webinar", "Email", "Advertisement"][rng.below(4) as usize];
            b.set(vals, "Name", Val::str(&format!("{kind} {}", 2023 + i % 3)));
            b.set(vals, "Type", Val::str(kind));
            b.set(
                vals,
                "Status",
                one_of(rng, &["Planned", "In Progress", "Completed", "Aborted"]),
            );
            b.set(vals, "StartDate", g.date_days(rng, 300, 30));
            b.set(vals, "EndDate", g.date_days(rng, 100, 200));
            b.set(
                vals,
                "BudgetedCost",
                Val::Num((rng.below(100) * 1000) as f64),
            );
            b.set_in_pct(rng, vals, 50, "ActualCost", |rng| {
                Val::Num((rng.below(100) * 1000) as f64)
            });
            b.set(
                vals,
                "ExpectedRevenue",
                Val::Num((rng.below(100) * 10_000) as f64),
            );
            b.set(vals, "IsActive", Val::Bool(rng.chance(60)));
            b.set_in_pct(rng, vals, 30, "Description", |rng| descriptions.pick(rng));
            b.set(vals, "OwnerId", g.owner(rng, &fallback));
        });

        let opportunities = org.build_object(
            spec,
            "Opportunity",
            spec.opportunities,
            |rng, b, vals, i, _| {
                let account = rng.pick(&accounts).cloned();
                b.set(vals, "AccountId", Val::opt_str(account.as_ref()));
                b.set(
                    vals,
                    "Name",
                    Val::str(&format!(
                        "Deal {i} — {}",
                        ["Renewal", "Upsell", "New, big", "Pilot \"A\""][rng.below(4) as usize]
                    )),
                );
                let stage_i = rng.below(STAGES.len() as u64) as usize;
                let stage = STAGES.get(stage_i).copied().unwrap_or("Prospecting");
                b.set(vals, "StageName", Val::str(stage));
                b.set_in_pct(rng, vals, 85, "Amount", |rng| {
                    Val::Num((1 + rng.below(2000)) as f64 * 500.0)
                });
                let closed = stage.starts_with("Closed");
                let probability = match stage {
                    "Closed Won" => 100.0,
                    "Closed Lost" => 0.0,
                    _ => 10.0 + 20.0 * stage_i as f64,
                };
                b.set(vals, "Probability", Val::Num(probability));
                b.set(vals, "CloseDate", g.date_days(rng, 200, 200));
                b.set(
                    vals,
                    "Type",
                    one_of(rng, &["New Business", "Existing Business"]),
                );
                b.set(vals, "LeadSource", lead_sources.pick(rng));
                b.set(vals, "IsClosed", Val::Bool(closed));
                b.set(vals, "IsWon", Val::Bool(stage == "Closed Won"));
                b.set_in_pct(rng, vals, 10, "CampaignId", |rng| {
                    Val::opt_str(rng.pick(&campaigns))
                });
                b.set_in_pct(rng, vals, 10, "Description", |rng| descriptions.pick(rng));
                b.set(vals, "OwnerId", g.owner(rng, &fallback));
            },
        );

        // CampaignMember needs a campaign and a person; without them there are none.
        let cm_count = if campaigns.is_empty() || (contacts.is_empty() && leads.is_empty()) {
            0
        } else {
            spec.campaign_members
        };
        org.build_object(spec, "CampaignMember", cm_count, |rng, b, vals, _, _| {
            b.set(vals, "CampaignId", Val::opt_str(rng.pick(&campaigns)));
            let person = if leads.is_empty() || (!contacts.is_empty() && rng.chance(70)) {
                b.set(vals, "ContactId", Val::opt_str(rng.pick(&contacts)));
                vals.get(b.def.column("ContactId").unwrap_or(usize::MAX))
                    .cloned()
            } else {
                b.set(vals, "LeadId", Val::opt_str(rng.pick(&leads)));
                vals.get(b.def.column("LeadId").unwrap_or(usize::MAX))
                    .cloned()
            };
            b.set(vals, "LeadOrContactId", person.unwrap_or(Val::Null));
            let responded = rng.chance(30);
            b.set(
                vals,
                "Status",
                Val::str(if responded { "Responded" } else { "Sent" }),
            );
            b.set(vals, "HasResponded", Val::Bool(responded));
            if responded {
                b.set(vals, "FirstRespondedDate", g.date_days(rng, 100, 0));
            }
        });

        let projects_ids = org.build_object(
            spec,
            "Project__c",
            spec.custom_objects,
            |rng, b, vals, i, _| {
                b.set(vals, "Name", Val::str(&format!("PRJ-{:06}", i + 1)));
                b.set_in_pct(rng, vals, 80, "Budget__c", |rng| {
                    Val::Num((1 + rng.below(1000)) as f64 * 250.0)
                });
                b.set(
                    vals,
                    "Status__c",
                    Val::str(PROJECT_STATUSES[rng.below(4) as usize]),
                );
                if !rng.chance(15) {
                    b.set(vals, "Account__c", Val::opt_str(rng.pick(&accounts)));
                }
                b.set_in_pct(rng, vals, 60, "Primary_Contact__c", |rng| {
                    Val::opt_str(rng.pick(&contacts))
                });
                b.set(vals, "Start_Date__c", g.date_days(rng, 300, 60));
                b.set_in_pct(rng, vals, 20, "Description__c", |rng| {
                    descriptions.pick(rng)
                });
                b.set(vals, "OwnerId", g.owner(rng, &fallback));
            },
        );

        org.build_object(spec, "Task", spec.tasks, |rng, b, vals, _, _| {
            // Who: a contact (60%), a lead (25%) or nobody.
            let r = rng.below(100);
            if r < 60 && !contacts.is_empty() {
                b.set(vals, "WhoId", Val::opt_str(rng.pick(&contacts)));
            } else if r < 85 && !leads.is_empty() {
                b.set(vals, "WhoId", Val::opt_str(rng.pick(&leads)));
            }
            let w = rng.below(100);
            if w < 30 && !accounts.is_empty() {
                let a = Val::opt_str(rng.pick(&accounts));
                b.set(vals, "WhatId", a.clone());
                b.set(vals, "AccountId", a);
            } else if w < 45 && !opportunities.is_empty() {
                b.set(vals, "WhatId", Val::opt_str(rng.pick(&opportunities)));
            } else if w < 50 && !projects_ids.is_empty() {
                b.set(vals, "WhatId", Val::opt_str(rng.pick(&projects_ids)));
            }
            let subject = SUBJECTS[rng.below(SUBJECTS.len() as u64) as usize];
            b.set(vals, "Subject", Val::str(subject));
            b.set(vals, "ActivityDate", g.date_days(rng, 300, 30));
            let status = [
                "Not Started",
                "In Progress",
                "Completed",
                "Completed",
                "Deferred",
            ][rng.below(5) as usize];
            b.set(vals, "Status", Val::str(status));
            let priority = ["High", "Normal", "Normal", "Low"][rng.below(4) as usize];
            b.set(vals, "Priority", Val::str(priority));
            b.set(vals, "IsHighPriority", Val::Bool(priority == "High"));
            b.set(vals, "IsClosed", Val::Bool(status == "Completed"));
            b.set(vals, "IsArchived", Val::Bool(false));
            let kind = ["Call", "Email", "Meeting", "Other"][rng.below(4) as usize];
            b.set(vals, "Type", Val::str(kind));
            b.set(
                vals,
                "TaskSubtype",
                Val::str(match kind {
                    "Call" => "Call",
                    "Email" => "Email",
                    _ => "Task",
                }),
            );
            if kind == "Call" {
                b.set(
                    vals,
                    "CallDurationInSeconds",
                    Val::Int(rng.below(3600) as i64),
                );
            }
            b.set_in_pct(rng, vals, 15, "Description", |rng| descriptions.pick(rng));
            b.set(vals, "OwnerId", g.owner(rng, &fallback));
        });

        // Relationship objects need both ends.
        let contact_accounts: Vec<Val> = {
            let col = org
                .schema
                .object("Contact")
                .and_then(|d| d.column("AccountId"));
            org.schema
                .object_index("Contact")
                .and_then(|o| org.tables.get(o))
                .map(|t| {
                    t.rows
                        .iter()
                        .map(|r| col.map(|c| r.get(c).clone()).unwrap_or(Val::Null))
                        .collect()
                })
                .unwrap_or_default()
        };
        let acr_count = if accounts.is_empty() || contacts.is_empty() {
            0
        } else {
            spec.account_contact_relations
        };
        let roles = Pool::new(ACR_ROLES);
        org.build_object(
            spec,
            "AccountContactRelation",
            acr_count,
            |rng, b, vals, i, _| {
                let ci = i % contacts.len().max(1);
                b.set(vals, "ContactId", Val::opt_str(contacts.get(ci)));
                // The first relation of a contact with an account is its direct one.
                let direct =
                    i < contacts.len() && contact_accounts.get(ci).is_some_and(|a| !a.is_null());
                if direct {
                    b.set(
                        vals,
                        "AccountId",
                        contact_accounts.get(ci).cloned().unwrap_or(Val::Null),
                    );
                } else {
                    b.set(vals, "AccountId", Val::opt_str(rng.pick(&accounts)));
                }
                b.set(vals, "IsDirect", Val::Bool(direct));
                b.set(vals, "IsActive", Val::Bool(!rng.chance(10)));
                match rng.below(3) {
                    0 => {}
                    1 => b.set(vals, "Roles", roles.pick(rng)),
                    _ => {
                        let a = rng.below(ACR_ROLES.len() as u64) as usize;
                        let c = (a + 1 + rng.below(ACR_ROLES.len() as u64 - 1) as usize)
                            % ACR_ROLES.len();
                        let (x, y) = (a.min(c), a.max(c));
                        b.set(
                            vals,
                            "Roles",
                            Val::str(&format!("{};{}", ACR_ROLES[x], ACR_ROLES[y])),
                        );
                    }
                }
                b.set_in_pct(rng, vals, 50, "StartDate", |rng| g.date_days(rng, 700, 0));
                b.set_in_pct(rng, vals, 10, "EndDate", |rng| g.date_days(rng, 30, 300));
                b.set(vals, "OwnerId", Val::Null);
            },
        );

        let ocr_count = if opportunities.is_empty() || contacts.is_empty() {
            0
        } else {
            spec.opportunity_contact_roles
        };
        org.build_object(
            spec,
            "OpportunityContactRole",
            ocr_count,
            |rng, b, vals, i, _| {
                b.set(
                    vals,
                    "OpportunityId",
                    Val::opt_str(opportunities.get(i % opportunities.len().max(1))),
                );
                // Any contact, including ones in the Recycle Bin: the role outlives them.
                b.set(vals, "ContactId", Val::opt_str(rng.pick(&contacts)));
                b.set_in_pct(rng, vals, 80, "Role", |rng| roles.pick(rng));
                b.set(vals, "IsPrimary", Val::Bool(i < opportunities.len()));
                b.set(vals, "OwnerId", Val::Null);
            },
        );
        org
    }

    /// Generates `n` rows of `object` with `fill`, marks `spec.soft_deleted` of them deleted
    /// (none of User, which has no Recycle Bin), loads them with bulk-built indexes and
    /// returns every generated id (deleted ones included).
    fn build_object<F>(
        &mut self,
        spec: &OrgSpec,
        object: &str,
        n: usize,
        mut fill: F,
    ) -> Vec<Arc<str>>
    where
        F: FnMut(&mut Rng, &RowBuilder, &mut Vec<Val>, usize, &[Arc<str>]),
    {
        let schema = self.schema.clone();
        let Some(obj) = schema.object_index(object) else {
            return Vec::new();
        };
        let Some(def) = schema.objects.get(obj) else {
            return Vec::new();
        };
        let anchor = spec.anchor.timestamp_millis();
        let mut rng = Rng::for_object(spec.seed, object);
        let mut tl = timeline(&mut rng, n, spec, anchor);
        let deletable = def.col_is_deleted.is_some() && object != "User";
        if deletable {
            mark_deleted(&mut rng, &mut tl, spec.soft_deleted, anchor, spec.tie_block);
        }
        let b = RowBuilder::new(def);
        let mut buf = String::with_capacity(18);
        let ids: Vec<Arc<str>> = (0..n)
            .map(|i| {
                write_id(def.key_prefix, i as u64 + 1, &mut buf);
                Arc::from(buf.as_str())
            })
            .collect();
        let owner = Val::Str(self.default_owner.clone());
        let mut rows = Vec::with_capacity(n);
        for (i, id) in ids.iter().enumerate() {
            let mut vals = base_row(&b, &tl, i, id.clone(), &owner);
            fill(&mut rng, &b, &mut vals, i, &ids[..i]);
            if !def.soft_deletable {
                // No Recycle Bin: the row is generated live and purged below.
                b.set(&mut vals, "IsDeleted", Val::Bool(false));
            }
            rows.push(Row {
                vals: vals.into_boxed_slice(),
                purged: false,
            });
        }
        let Some(table) = self.tables.get_mut(obj) else {
            return ids;
        };
        *table = bulk_table(def, rows, n as u64);
        if deletable && !def.soft_deletable {
            for (i, gone) in tl.deleted.iter().enumerate() {
                let (Some(true), Some(id), Some(when)) =
                    (Some(*gone), ids.get(i), tl.modstamp.get(i))
                else {
                    continue;
                };
                purge(table, def, i as u32, id, *when);
            }
        }
        ids
    }
}

/// A table whose indexes are built in one pass over pre-sorted keys.
fn bulk_table(def: &ObjectDef, rows: Vec<Row>, next_seq: u64) -> Table {
    let mut keys: Vec<((i64, Arc<str>), u32)> = Vec::with_capacity(rows.len());
    let mut by_id = FastMap::with_capacity_and_hasher(rows.len(), Default::default());
    let mut deleted = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let Val::Str(id) = row.get(def.col_id) else {
            continue;
        };
        let stamp = match row.get(def.col_modstamp) {
            Val::DateTime(ms) => *ms,
            _ => 0,
        };
        keys.push(((stamp, id.clone()), i as u32));
        by_id.insert(id.clone(), i as u32);
        if def.col_is_deleted.is_some_and(|c| row.get(c).as_bool()) {
            deleted.insert(id.clone(), stamp);
        }
    }
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Table {
        rows,
        by_id,
        order: keys.into_iter().collect(),
        deleted,
        delete_log_purged_until: 0,
        next_seq,
    }
}

fn purge(table: &mut Table, def: &ObjectDef, idx: u32, id: &Arc<str>, when: i64) {
    let stamp = table.row(idx).map(|r| match r.get(def.col_modstamp) {
        Val::DateTime(ms) => *ms,
        _ => 0,
    });
    if let Some(stamp) = stamp {
        table.order.remove(&(stamp, id.clone()));
    }
    table.by_id.remove(id);
    if let Some(row) = table.rows.get_mut(idx as usize) {
        row.purged = true;
    }
    table.deleted.insert(id.clone(), when);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn generation_is_deterministic_and_varied() {
        let a = Org::generate(&OrgSpec::demo());
        let b = Org::generate(&OrgSpec::demo());
        for obj in a.object_names() {
            assert_eq!(a.records(&obj), b.records(&obj), "{obj}");
        }
        let c = Org::generate(&OrgSpec {
            seed: 43,
            ..OrgSpec::demo()
        });
        assert_ne!(a.records("Contact"), c.records("Contact"));
    }

    #[test]
    fn counts_and_deletes_follow_spec() {
        let spec = OrgSpec::demo();
        let org = Org::generate(&spec);
        assert_eq!(org.count("Contact", true), spec.contacts);
        assert_eq!(
            org.count("Contact", false),
            spec.contacts - spec.soft_deleted
        );
        assert_eq!(org.count("User", true), spec.users);
        assert_eq!(org.count("Project__c", true), spec.custom_objects);
        // CampaignMember deletes are hard: the rows are gone from both views.
        assert_eq!(
            org.count("CampaignMember", true),
            spec.campaign_members - spec.soft_deleted
        );
        let contacts = org.records("Contact");
        assert!(contacts.iter().any(|c| c["AccountId"].is_null()));
        assert!(contacts.iter().any(|c| c["MailingAddress"].is_null()));
        assert!(contacts.iter().any(|c| c["MailingAddress"].is_object()));
        assert!(
            contacts
                .iter()
                .any(|c| c["LastName"].as_str().is_some_and(|s| !s.is_ascii()))
        );
        let tasks = org.records("Task");
        assert!(tasks.iter().any(|t| t["WhoId"].is_null()));
        assert!(
            tasks
                .iter()
                .any(|t| t["WhoId"].as_str().is_some_and(|s| s.starts_with("003")))
        );
        assert!(
            tasks
                .iter()
                .any(|t| t["WhoId"].as_str().is_some_and(|s| s.starts_with("00Q")))
        );
        let acr = org.records("AccountContactRelation");
        assert!(
            acr.iter()
                .any(|r| r["Roles"].as_str().is_some_and(|s| s.contains(';')))
        );
    }

    #[test]
    fn tie_blocks_share_modstamps() {
        let org = Org::generate(&OrgSpec::tiny());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for c in org.records("Contact") {
            *counts
                .entry(c["SystemModstamp"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        assert!(counts.values().any(|n| *n >= OrgSpec::tiny().tie_block));
        let newest = org
            .records("Contact")
            .iter()
            .filter_map(|c| c["SystemModstamp"].as_str().map(str::to_string))
            .max()
            .unwrap_or_default();
        assert!(newest < crate::value::format_rest_datetime(org.now().timestamp_millis()));
    }
}
