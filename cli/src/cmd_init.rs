//! `sfsync init`: writes a commented starter config with the usual mappings. With
//! `--online`, every sync lists the org's real fields (custom ones included) and the org's
//! custom objects get a sync each, so that the user only deletes lines.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use sfsync_mapping::Config;
use sfsync_mapping::config::SalesforceConfig;
use sfsync_salesforce::{Client, ClientConfig, Error, ObjectDescribe};

use crate::{common, output};

#[derive(clap::Args)]
pub struct Args {
    /// Connect to the org (with the [salesforce] settings of --config) and list its real
    /// fields.
    #[arg(long)]
    pub online: bool,
    /// The config file to write (with --online, also where [salesforce] is read from).
    #[arg(long, short, value_name = "FILE", default_value = "sfsync.toml")]
    pub config: PathBuf,
    /// Write here instead of --config (with --online, keeps the original file).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// JSON object of secrets for `${secret:NAME}` references (with --online).
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = args.output.clone().unwrap_or_else(|| args.config.clone());
    if target.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it{}",
            target.display(),
            if args.online && args.output.is_none() {
                " (or --output FILE to write elsewhere)"
            } else {
                ""
            }
        );
    }
    let text = if args.online {
        online_config(&args).await?
    } else {
        starter_config()
    };
    // Never write a file the other commands would reject.
    Config::parse(&text)
        .map_err(|e| anyhow::anyhow!("internal: the generated config is invalid: {e}"))?;
    write_file(&target, &text, args.force)?;
    output::note(format_args!("wrote {}", target.display()));
    if args.online {
        output::note(format_args!(
            "next: delete the fields and syncs you do not want, then `sfsync validate --online --config {}`",
            target.display()
        ));
    } else {
        output::note(format_args!(
            "next: fill in [salesforce], then `sfsync init --online --force --config {}` to list your org's real fields",
            target.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, text: &str, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// One starter sync.
struct Starter<'a> {
    comment: &'a str,
    name: &'a str,
    object: &'a str,
    kind: &'a str,
    user_id: Option<&'a str>,
    group_id: Option<&'a str>,
    object_type_id: Option<&'a str>,
    event: Option<&'a str>,
    deletes: bool,
    fields: &'a [&'a str],
    extra: &'a str,
}

const STARTERS: &[Starter<'static>] = &[
    Starter {
        comment: "Contacts become people (identify), keyed by their Salesforce id.",
        name: "contacts",
        object: "Contact",
        kind: "people",
        user_id: Some("Id"),
        group_id: None,
        object_type_id: None,
        event: None,
        deletes: true,
        fields: &[
            "Email",
            "FirstName",
            "LastName",
            "Phone",
            "Title",
            "AccountId",
            "Account.Name",
            "MailingCity",
            "MailingCountry",
            "CreatedDate",
        ],
        extra: "",
    },
    Starter {
        comment: "Leads become people too.",
        name: "leads",
        object: "Lead",
        kind: "people",
        user_id: Some("Id"),
        group_id: None,
        object_type_id: None,
        event: None,
        deletes: true,
        fields: &[
            "Email",
            "FirstName",
            "LastName",
            "Company",
            "Title",
            "Phone",
            "Website",
            "Status",
            "LeadSource",
            "IsConverted",
            "ConvertedContactId",
            "CreatedDate",
        ],
        extra: "# A converted lead becomes a merge into its contact (sfsync selects what it needs);\n# conversions = false turns that off.\n",
    },
    Starter {
        comment: "Tasks become events (track) of the contact or lead they are about (WhoId).",
        name: "tasks",
        object: "Task",
        kind: "events",
        user_id: Some("WhoId"),
        group_id: None,
        object_type_id: None,
        event: Some("Salesforce Task"),
        deletes: false,
        fields: &["Subject", "Status", "Priority", "ActivityDate", "WhatId"],
        extra: "# Name the event after a field instead of a fixed name:\n# event_field = \"Subject\"\n# timestamp_field = \"CreatedDate\"   # the default\n",
    },
    Starter {
        comment: "Accounts become objects (group) of type 1.",
        name: "accounts",
        object: "Account",
        kind: "objects",
        user_id: None,
        group_id: Some("Id"),
        object_type_id: Some("1"),
        event: None,
        deletes: true,
        fields: &[
            "Name",
            "Website",
            "Phone",
            "Industry",
            "Type",
            "BillingCity",
            "BillingCountry",
            "AnnualRevenue",
            "NumberOfEmployees",
        ],
        extra: "",
    },
    Starter {
        comment: "Opportunities become objects of type 2.",
        name: "opportunities",
        object: "Opportunity",
        kind: "objects",
        user_id: None,
        group_id: Some("Id"),
        object_type_id: Some("2"),
        event: None,
        deletes: true,
        fields: &[
            "Name",
            "StageName",
            "Amount",
            "CloseDate",
            "AccountId",
            "Account.Name",
        ],
        extra: "",
    },
    Starter {
        comment: "Campaigns become objects of type 3.",
        name: "campaigns",
        object: "Campaign",
        kind: "objects",
        user_id: None,
        group_id: Some("Id"),
        object_type_id: Some("3"),
        event: None,
        deletes: true,
        fields: &["Name", "Type", "Status", "StartDate", "EndDate", "IsActive"],
        extra: "",
    },
    Starter {
        comment: "Which contacts belong to which accounts: relationships between a person and an object of type 1.",
        name: "account_contacts",
        object: "AccountContactRelation",
        kind: "relationships",
        user_id: Some("ContactId"),
        group_id: Some("AccountId"),
        object_type_id: Some("1"),
        event: None,
        deletes: true,
        fields: &["Roles", "IsDirect", "IsActive", "StartDate", "EndDate"],
        extra: "",
    },
    Starter {
        comment: "Contact roles on opportunities: relationships to objects of type 2.",
        name: "opportunity_contacts",
        object: "OpportunityContactRole",
        kind: "relationships",
        user_id: Some("ContactId"),
        group_id: Some("OpportunityId"),
        object_type_id: Some("2"),
        event: None,
        deletes: true,
        fields: &["Role", "IsPrimary"],
        extra: "",
    },
];

const HEADER: &str = "\
# sfsync configuration.
#
# Values may reference secrets (${secret:NAME}, from --secrets FILE locally or AWS Secrets
# Manager in Lambda) and environment variables (${env:NAME}).
# Check this file with `sfsync validate --config FILE`, and against your org with
# `sfsync validate --online --config FILE --secrets secrets.json`.
";

const SALESFORCE_STARTER: &str = "\
[salesforce]
# client_credentials needs your org's My Domain host (login.salesforce.com refuses it).
login_url = \"https://YOUR-DOMAIN.my.salesforce.com\"
api_version = \"62.0\"
auth = \"client_credentials\"
client_id = \"${secret:SALESFORCE_CLIENT_ID}\"
client_secret = \"${secret:SALESFORCE_CLIENT_SECRET}\"
# JWT bearer instead (no secret, a certificate uploaded to the connected app):
#   auth = \"jwt_bearer\"
#   username = \"integration@example.com\"
#   private_key = \"${secret:SALESFORCE_PRIVATE_KEY}\"   # PEM text or a file path
#   jwt_audience = \"https://test.salesforce.com\"      # sandboxes; the default follows login_url
# Refresh token instead:
#   auth = \"refresh_token\"
#   refresh_token = \"${secret:SALESFORCE_REFRESH_TOKEN}\"
page_size = 2000           # REST batchSize, 200..=2000
lookback_seconds = 300     # re-read this much before each checkpoint (late commits)
bulk_threshold = 100000    # above this many changed records, use Bulk API 2.0
max_api_share = 0.8        # stop cleanly at 80% of the org's daily API requests
";

const DESTINATIONS_STARTER: &str = "\
# Where the calls go. A local file to start with; add the real destinations below.
[[destinations]]
name = \"local\"
type = \"file\"
path = \"sfsync-calls.jsonl\"

# [[destinations]]
# name = \"customerio\"
# type = \"customerio\"
# region = \"us\"
# api_key = \"${secret:CUSTOMERIO_API_KEY}\"
#
# [[destinations]]
# name = \"segment\"
# type = \"segment\"
# write_key = \"${secret:SEGMENT_WRITE_KEY}\"
";

/// The offline starter config.
pub fn starter_config() -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push('\n');
    out.push_str(SALESFORCE_STARTER);
    out.push_str(
        "\n# Each sync reads one Salesforce object incrementally (by SystemModstamp) and maps\n\
         # every record to one call. `fields` are passed on as traits/properties; parent fields\n\
         # use the relationship name (Account.Name). Id, SystemModstamp and IsDeleted are always\n\
         # read. `deletes = true` propagates deletions downstream.\n",
    );
    for starter in STARTERS {
        let fields: Vec<FieldLine> = starter
            .fields
            .iter()
            .map(|f| FieldLine {
                name: f.to_string(),
                note: None,
            })
            .collect();
        render_sync(&mut out, starter, starter.name, &fields, false);
    }
    out.push('\n');
    out.push_str(DESTINATIONS_STARTER);
    out
}

struct FieldLine {
    name: String,
    note: Option<String>,
}

fn toml_string(s: &str) -> String {
    // JSON string escapes are valid TOML basic-string escapes.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn render_sync(out: &mut String, s: &Starter, name: &str, fields: &[FieldLine], commented: bool) {
    let mut block = String::new();
    let _ = writeln!(block, "[[syncs]]");
    let _ = writeln!(block, "name = {}", toml_string(name));
    let _ = writeln!(block, "object = {}", toml_string(s.object));
    let _ = writeln!(block, "kind = {}", toml_string(s.kind));
    for (key, value) in [
        ("user_id", s.user_id),
        ("group_id", s.group_id),
        ("object_type_id", s.object_type_id),
        ("event", s.event),
    ] {
        if let Some(v) = value {
            let _ = writeln!(block, "{key} = {}", toml_string(v));
        }
    }
    if s.deletes {
        let _ = writeln!(block, "deletes = true");
    }
    block.push_str(s.extra);
    let _ = writeln!(block, "fields = [");
    let width = fields
        .iter()
        .map(|f| toml_string(&f.name).len() + 1)
        .max()
        .unwrap_or(0);
    for f in fields {
        let item = format!("{},", toml_string(&f.name));
        match &f.note {
            Some(note) => {
                let _ = writeln!(block, "  {item:<width$}  # {note}");
            }
            None => {
                let _ = writeln!(block, "  {item}");
            }
        }
    }
    let _ = writeln!(block, "]");

    out.push('\n');
    let _ = writeln!(out, "# {}", s.comment);
    for line in block.lines() {
        if commented {
            let _ = writeln!(out, "# {line}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Field types not listed: compound fields (their parts are) and binary content.
fn listable(field_type: &str) -> bool {
    !matches!(field_type, "address" | "location" | "base64")
}

/// Every field of the object worth syncing, with its label and type.
fn org_fields(describe: &ObjectDescribe, s: &Starter) -> Vec<FieldLine> {
    let always = ["Id", "SystemModstamp", "IsDeleted"];
    describe
        .fields
        .iter()
        .filter(|f| listable(&f.field_type))
        .filter(|f| !always.iter().any(|a| a.eq_ignore_ascii_case(&f.name)))
        .filter(|f| {
            ![s.user_id, s.group_id]
                .iter()
                .flatten()
                .any(|id| id.eq_ignore_ascii_case(&f.name))
        })
        .map(|f| FieldLine {
            name: f.name.clone(),
            note: Some(format!(
                "{} ({}{})",
                f.label,
                f.field_type,
                if f.custom { ", custom" } else { "" }
            )),
        })
        .collect()
}

/// The text sections of an existing config: [salesforce] and every [[destinations]] are
/// kept verbatim (references and comments included); the syncs are regenerated.
fn kept_sections(text: &str) -> (String, String) {
    #[derive(PartialEq)]
    enum Section {
        Preamble,
        Salesforce,
        Syncs,
        Destinations,
    }
    let mut section = Section::Preamble;
    let mut salesforce = String::new();
    let mut destinations = String::new();
    for line in text.lines() {
        let header = line.split('#').next().unwrap_or("").trim();
        match header {
            "[salesforce]" => section = Section::Salesforce,
            "[[syncs]]" => section = Section::Syncs,
            "[[destinations]]" => section = Section::Destinations,
            _ => {}
        }
        let target = match section {
            Section::Salesforce => &mut salesforce,
            Section::Destinations => &mut destinations,
            _ => continue,
        };
        target.push_str(line);
        target.push('\n');
    }
    (trim_trailing_comments(&salesforce), destinations)
}

/// Comments and blank lines at the end of a section introduce the next one: drop them.
fn trim_trailing_comments(section: &str) -> String {
    let lines: Vec<&str> = section.lines().collect();
    let keep = lines
        .iter()
        .rposition(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(0, |i| i + 1);
    let mut out = lines[..keep].join("\n");
    out.push('\n');
    out
}

async fn online_config(args: &Args) -> anyhow::Result<String> {
    if !args.config.exists() {
        bail!(
            "init --online reads the [salesforce] settings from {0}, which does not exist: run \
             `sfsync init --config {0}` first, fill in [salesforce], then \
             `sfsync init --online --force --config {0}`",
            args.config.display()
        );
    }
    let loaded = common::load_config(&args.config)?;
    let resolved = common::load_resolved(&args.config, args.secrets.as_deref())?;
    let client = connect(&resolved.salesforce)?;
    client
        .authenticate()
        .await
        .context("cannot connect to Salesforce with the [salesforce] settings")?;
    let global = client.describe_global().await?;

    let (salesforce, destinations) = kept_sections(&loaded.text);
    let mut out = String::new();
    out.push_str(HEADER);
    let _ = writeln!(
        out,
        "#\n# Generated from the org at {} on {}: every sync lists the object's fields;\n\
         # delete the lines you do not want.\n",
        client.instance_url().await?,
        chrono::Utc::now().format("%Y-%m-%d")
    );
    out.push_str(&salesforce);

    for starter in STARTERS {
        match client.describe(starter.object).await {
            Ok(describe) => {
                let fields = org_fields(&describe, starter);
                render_sync(&mut out, starter, starter.name, &fields, false);
            }
            Err(Error::Api { status: 404, .. }) | Err(Error::InvalidSync { .. }) => {
                let fields: Vec<FieldLine> = starter
                    .fields
                    .iter()
                    .map(|f| FieldLine {
                        name: f.to_string(),
                        note: None,
                    })
                    .collect();
                let _ = write!(
                    out,
                    "\n# {} is not available in this org (not enabled, or not visible to the integration user).",
                    starter.object
                );
                render_sync(&mut out, starter, starter.name, &fields, true);
            }
            Err(e) => return Err(e.into()),
        }
    }

    let mut type_id = STARTERS
        .iter()
        .filter_map(|s| s.object_type_id?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    let mut names: Vec<String> = STARTERS.iter().map(|s| s.name.to_string()).collect();
    for object in global
        .sobjects
        .iter()
        .filter(|o| o.custom && o.queryable && o.replicateable && o.name.ends_with("__c"))
    {
        let describe = client.describe(&object.name).await?;
        type_id += 1;
        let mut name: String = object
            .name
            .trim_end_matches("__c")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(56)
            .collect();
        while names.contains(&name) {
            name.push('_');
        }
        names.push(name.clone());
        let type_id_text = type_id.to_string();
        let starter = Starter {
            comment: "A custom object of your org: delete this block if you do not want it.",
            name: &name,
            object: &object.name,
            kind: "objects",
            user_id: None,
            group_id: Some("Id"),
            object_type_id: Some(&type_id_text),
            event: None,
            deletes: true,
            fields: &[],
            extra: "",
        };
        let fields = org_fields(&describe, &starter);
        render_sync(&mut out, &starter, &name, &fields, false);
    }

    out.push('\n');
    if destinations.trim().is_empty() {
        out.push_str(DESTINATIONS_STARTER);
    } else {
        out.push_str(&destinations);
    }
    Ok(out)
}

fn connect(sf: &SalesforceConfig) -> anyhow::Result<Client> {
    let config = ClientConfig::from_config(sf).context("the [salesforce] settings")?;
    Ok(Client::new(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_config_parses_and_has_every_mapping() {
        let text = starter_config();
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.syncs.len(), STARTERS.len());
        let tasks = config.sync("tasks").unwrap();
        assert_eq!(tasks.user_id.as_deref(), Some("WhoId"));
        let acr = config.sync("account_contacts").unwrap();
        assert_eq!(acr.user_id.as_deref(), Some("ContactId"));
        assert_eq!(acr.group_id.as_deref(), Some("AccountId"));
        let ocr = config.sync("opportunity_contacts").unwrap();
        assert_eq!(ocr.group_id.as_deref(), Some("OpportunityId"));
    }

    #[test]
    fn kept_sections_keep_references_verbatim() {
        let text = starter_config();
        let (sf, dest) = kept_sections(&text);
        assert!(sf.starts_with("[salesforce]"));
        assert!(sf.contains("${secret:SALESFORCE_CLIENT_SECRET}"));
        assert!(!sf.contains("[[syncs]]"));
        assert!(!sf.contains("Each sync reads"), "{sf}");
        assert!(
            sf.trim_end().ends_with("of the org's daily API requests"),
            "{sf}"
        );
        assert!(dest.contains("type = \"file\""));
    }

    #[test]
    fn rendered_org_fields_parse() {
        let describe = ObjectDescribe {
            name: "Contact".into(),
            fields: vec![
                sfsync_salesforce::FieldDescribe {
                    name: "Email".into(),
                    label: "Email".into(),
                    field_type: "email".into(),
                    ..Default::default()
                },
                sfsync_salesforce::FieldDescribe {
                    name: "MailingAddress".into(),
                    field_type: "address".into(),
                    ..Default::default()
                },
                sfsync_salesforce::FieldDescribe {
                    name: "Tier__c".into(),
                    label: "Tier \"quoted\"".into(),
                    field_type: "picklist".into(),
                    custom: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let fields = org_fields(&describe, &STARTERS[0]);
        assert_eq!(
            fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["Email", "Tier__c"]
        );
        let mut text = String::from(SALESFORCE_STARTER);
        render_sync(&mut text, &STARTERS[0], "contacts", &fields, false);
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.syncs[0].fields, ["Email", "Tier__c"]);
    }
}

#[cfg(test)]
mod online_tests {
    use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};

    use super::*;

    #[tokio::test]
    async fn online_lists_the_org_fields_and_custom_objects() {
        let sim = Simulator::start(
            Org::generate(&OrgSpec::tiny()),
            Credentials::demo(),
            Faults::default(),
        )
        .await
        .unwrap();
        let demo = Credentials::demo();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sfsync.toml");
        let output = dir.path().join("full.toml");
        let text = starter_config()
            .replace("https://YOUR-DOMAIN.my.salesforce.com", &sim.url())
            .replace("${secret:SALESFORCE_CLIENT_ID}", &demo.client_id);
        std::fs::write(&config, text).unwrap();
        std::fs::write(
            dir.path().join("secrets.json"),
            format!(
                r#"{{"SALESFORCE_CLIENT_SECRET": "{}"}}"#,
                demo.client_secret
            ),
        )
        .unwrap();
        let args = || Args {
            online: true,
            config: config.clone(),
            output: Some(output.clone()),
            secrets: Some(dir.path().join("secrets.json")),
            force: false,
        };
        run(args()).await.unwrap();
        let written = std::fs::read_to_string(&output).unwrap();
        // The secret stays a reference.
        assert!(written.contains("${secret:SALESFORCE_CLIENT_SECRET}"));
        assert!(!written.contains(&demo.client_secret));
        let parsed = Config::parse(&written).unwrap();
        let contacts = parsed.sync("contacts").unwrap();
        assert!(
            contacts.fields.iter().any(|f| f == "Tier__c"),
            "{:?}",
            contacts.fields
        );
        assert!(contacts.fields.iter().any(|f| f == "MailingCity"));
        assert!(!contacts.fields.iter().any(|f| f == "MailingAddress"));
        assert!(parsed.syncs.iter().any(|s| s.object == "Project__c"));

        // Every generated sync matches the org.
        let resolved =
            common::load_resolved(&output, Some(&dir.path().join("secrets.json"))).unwrap();
        let problems = sfsync_salesforce::check_online(&resolved).await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");

        // A second run refuses to overwrite.
        assert!(run(args()).await.is_err());
        sim.shutdown().await;
    }
}
