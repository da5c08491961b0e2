//! `sfsync runs`: the latest run reports, from the local state directory or, with
//! `--table`, from the DynamoDB table of a deployment.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use sfsync_pipeline::state::StateStore;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = ".sfsync")]
    state: PathBuf,
    /// Read a deployment's DynamoDB table instead (AWS credentials from the environment).
    #[arg(long)]
    table: Option<String>,
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let reports = match &args.table {
        Some(table) => {
            let sdk = sfsync_pipeline::aws::sdk_config().await;
            sfsync_pipeline::state::dynamo::DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table,
            )
            .runs(args.limit)
            .await?
        }
        None => {
            if !args.state.exists() {
                anyhow::bail!(
                    "no state directory at {} (run `sfsync sync` first, or pass --state)",
                    args.state.display()
                );
            }
            sfsync_pipeline::state::file::FileStore::new(&args.state)?
                .runs(args.limit)
                .await?
        }
    };
    if reports.is_empty() {
        eprintln!("no runs yet");
    }
    for r in reports {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{r}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
