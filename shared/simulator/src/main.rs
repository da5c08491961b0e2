//! `sfsync-simulator`: serve a generated Salesforce org on localhost until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Preset {
    Demo,
    Tiny,
}

/// A Salesforce-shaped HTTP server with a seeded org, for tests, benchmarks and demos.
#[derive(Debug, Parser)]
#[command(name = "sfsync-simulator", version)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0, env = "SFSYNC_SIMULATOR_PORT")]
    port: u16,
    /// Address to bind; keep it on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Row counts start from this preset; the flags below override single counts.
    #[arg(long, value_enum, default_value = "demo")]
    preset: Preset,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    contacts: Option<usize>,
    #[arg(long)]
    leads: Option<usize>,
    #[arg(long)]
    users: Option<usize>,
    #[arg(long)]
    accounts: Option<usize>,
    #[arg(long)]
    opportunities: Option<usize>,
    #[arg(long)]
    campaigns: Option<usize>,
    #[arg(long)]
    campaign_members: Option<usize>,
    #[arg(long)]
    tasks: Option<usize>,
    #[arg(long)]
    account_contact_relations: Option<usize>,
    #[arg(long)]
    opportunity_contact_roles: Option<usize>,
    /// Rows of the custom object Project__c.
    #[arg(long)]
    custom_objects: Option<usize>,
    /// Rows sharing one SystemModstamp in a tie block.
    #[arg(long)]
    tie_block: Option<usize>,
    /// Soft-deleted rows per object.
    #[arg(long)]
    soft_deleted: Option<usize>,
    /// Leave MiddleName and Suffix out of the org.
    #[arg(long)]
    no_name_parts: bool,
    /// Fault: sessions expire after this many API calls.
    #[arg(long)]
    expire_token_after_calls: Option<u64>,
    /// Fault: every Nth API call answers 503.
    #[arg(long)]
    fail_every_nth: Option<u64>,
    /// The daily API request limit (default 100000).
    #[arg(long)]
    daily_limit: Option<u64>,
    /// Fault: milliseconds added to every response.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Fault: QUERY_TIMEOUT when a query matches more rows than this.
    #[arg(long)]
    query_timeout_over_rows: Option<usize>,
    /// How long such a query runs before it answers QUERY_TIMEOUT (Salesforce: 120000).
    #[arg(long, default_value_t = 120_000)]
    query_timeout_after_ms: u64,
    /// Query locators (nextRecordsUrl) expire after this long unused (Salesforce: 900).
    #[arg(long, default_value_t = 900)]
    query_locator_idle_secs: u64,
    /// getDeleted/getUpdated cover changes only up to this many seconds before the org's
    /// clock (latestDateCovered lags): changes still in flight.
    #[arg(long, default_value_t = 0)]
    replication_lag_secs: u64,
    /// The host name the token endpoint answers as; on login.salesforce.com or
    /// test.salesforce.com it refuses client_credentials, as Salesforce does.
    #[arg(long)]
    login_host: Option<String>,
    /// Fault: Bulk jobs end in this state (Failed or Aborted).
    #[arg(long)]
    bulk_final_state: Option<String>,
    /// Status polls that answer InProgress before a Bulk job completes.
    #[arg(long, default_value_t = 1)]
    bulk_polls: u32,
    /// Also serve the Pub/Sub API (Change Data Capture for every object) on this port (0
    /// picks a free one); its URL is printed on stdout's second line.
    #[arg(long)]
    pubsub_port: Option<u16>,
    /// Refresh Token Rotation: every refresh_token grant answers a new refresh token and
    /// invalidates the one presented; reusing an invalidated one revokes the chain.
    #[arg(long)]
    rotate_refresh_tokens: bool,
}

impl Args {
    fn spec(&self) -> OrgSpec {
        let mut s = match self.preset {
            Preset::Demo => OrgSpec::demo(),
            Preset::Tiny => OrgSpec::tiny(),
        };
        let set = |slot: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        set(&mut s.contacts, self.contacts);
        set(&mut s.leads, self.leads);
        set(&mut s.users, self.users);
        set(&mut s.accounts, self.accounts);
        set(&mut s.opportunities, self.opportunities);
        set(&mut s.campaigns, self.campaigns);
        set(&mut s.campaign_members, self.campaign_members);
        set(&mut s.tasks, self.tasks);
        set(
            &mut s.account_contact_relations,
            self.account_contact_relations,
        );
        set(
            &mut s.opportunity_contact_roles,
            self.opportunity_contact_roles,
        );
        set(&mut s.custom_objects, self.custom_objects);
        set(&mut s.tie_block, self.tie_block);
        set(&mut s.soft_deleted, self.soft_deleted);
        s.name_parts = !self.no_name_parts;
        s
    }

    fn faults(&self) -> Faults {
        Faults {
            expire_token_after_calls: self.expire_token_after_calls,
            fail_every_nth: self.fail_every_nth,
            daily_limit: self.daily_limit,
            latency: self.latency_ms.map(Duration::from_millis),
            query_timeout_over_rows: self.query_timeout_over_rows,
            query_timeout_after: Duration::from_millis(self.query_timeout_after_ms),
            query_locator_idle: Duration::from_secs(self.query_locator_idle_secs),
            replication_lag: Duration::from_secs(self.replication_lag_secs),
            bulk_final_state: self.bulk_final_state.clone(),
            bulk_polls_before_complete: self.bulk_polls,
            rotate_refresh_tokens: self.rotate_refresh_tokens,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let spec = args.spec();
    let started = std::time::Instant::now();
    let org = Org::generate(&spec);
    let generated = started.elapsed();
    let credentials = Credentials::demo();
    let sim = Simulator::start_on(
        SocketAddr::new(args.bind, args.port),
        org,
        credentials.clone(),
        args.faults(),
    )
    .await
    .context("could not start the simulator")?;
    sim.set_login_host(args.login_host.as_deref());
    let pubsub = match args.pubsub_port {
        Some(port) => Some(
            sim.start_pubsub_on(
                SocketAddr::new(args.bind, port),
                sfsync_simulator::PubSubOptions::default(),
            )
            .await
            .context("could not start the Pub/Sub API")?,
        ),
        None => None,
    };
    // The URL goes to stdout alone on its first line so that scripts can read it.
    println!("{}", sim.url());
    if let Some(pubsub) = &pubsub {
        println!("{}", pubsub.url());
    }
    eprintln!(
        "sfsync-simulator: {} contacts generated in {:.2?} (seed {})",
        spec.contacts, generated, spec.seed
    );
    eprintln!("  login/instance URL  {}", sim.url());
    eprintln!("  client_id           {}", credentials.client_id);
    eprintln!("  client_secret       {}", credentials.client_secret);
    eprintln!("  refresh_token       {}", credentials.refresh_token);
    eprintln!("  username            {}", credentials.username);
    eprintln!("  JWT key             sfsync_simulator::DEMO_PRIVATE_KEY_PEM (test key)");
    if let Some(pubsub) = &pubsub {
        eprintln!(
            "  Pub/Sub API         {} (SFSYNC_PUBSUB_ENDPOINT)",
            pubsub.url()
        );
    }
    eprintln!("Ctrl-C stops.");
    tokio::signal::ctrl_c()
        .await
        .context("could not wait for Ctrl-C")?;
    let stats = sim.stats();
    sim.shutdown().await;
    eprintln!(
        "served {} API calls ({} queries, {} bulk jobs, {} token requests)",
        stats.api_calls, stats.query_calls, stats.bulk_jobs, stats.token_requests
    );
    Ok(())
}
