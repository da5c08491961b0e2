//! `sfsync validate`: every problem in a config file, with its key and line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::{common, output};

#[derive(clap::Args)]
// The shared --secrets help, plus what validate does without the file.
#[command(mut_arg("secrets", |a| a.help(
    "A JSON object of secrets for `${secret:NAME}` references; without it, secret \
     references are checked for syntax only"
)))]
pub struct Args {
    #[command(flatten)]
    files: common::ConfigFiles,
    /// Also sign in to Salesforce and check every object and field against describe.
    #[arg(long)]
    online: bool,
    /// The state directory `sfsync sync` uses: with `--online`, `auth = "refresh_token"` and
    /// a connected app that rotates refresh tokens, the newest one is read from and kept in
    /// `<DIR>/secrets/` (presenting a rotated-out token would revoke the chain).
    #[arg(long, default_value = ".sfsync", value_name = "DIR")]
    state: PathBuf,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let loaded = match common::load_config(&args.files.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            output::note(format_args!("{e:#}"));
            return Ok(ExitCode::FAILURE);
        }
    };
    // References: environment variables always, secrets when a secrets file is given.
    let secrets = common::load_secrets(args.files.secrets.as_deref())?;
    let resolver = CheckingResolver {
        secrets,
        check_secrets: args.files.secrets.is_some(),
    };
    let resolved = match loaded.config.resolve_references(&loaded.text, &resolver) {
        Ok(resolved) => resolved,
        Err(e) => {
            output::note(format_args!("{}: {e}", loaded.path.display()));
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.online {
        if args.files.secrets.is_none() && has_secret_refs(&loaded.text) {
            anyhow::bail!("--online needs --secrets to sign in to Salesforce");
        }
        let client = sfsync_salesforce::Client::with_refresh_token_store(
            sfsync_salesforce::ClientConfig::from_config(&resolved.salesforce)?,
            std::sync::Arc::new(sfsync_pipeline::token_store::FileTokenStore::new(
                &args.state,
            )),
        )?;
        let problems = sfsync_salesforce::check_online_with(&client, &resolved).await?;
        if !problems.is_empty() {
            output::note(format_args!(
                "{}: {} problem(s) against the org:",
                loaded.path.display(),
                problems.len()
            ));
            for p in &problems {
                output::note(format_args!("  {}: {}", p.key, p.message));
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    let c = &loaded.config;
    output::line(format_args!(
        "{}: valid ({} sync{}, {} destination{}){}",
        loaded.path.display(),
        c.syncs.len(),
        if c.syncs.len() == 1 { "" } else { "s" },
        c.destinations.len(),
        if c.destinations.len() == 1 { "" } else { "s" },
        if args.online {
            ", checked against the org"
        } else {
            ""
        }
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn has_secret_refs(text: &str) -> bool {
    text.contains("${secret:")
}

/// Resolves secrets only when a secrets file was given; otherwise answers a placeholder so
/// that only their syntax is checked.
struct CheckingResolver {
    secrets: sfsync_mapping::secrets::SecretMap,
    check_secrets: bool,
}

impl sfsync_mapping::secrets::Resolver for CheckingResolver {
    fn secret(&self, name: &str) -> Option<String> {
        if self.check_secrets {
            sfsync_mapping::secrets::Resolver::secret(&self.secrets, name)
        } else {
            Some(String::new())
        }
    }
}
