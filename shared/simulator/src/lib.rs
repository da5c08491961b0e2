//! A Salesforce-shaped HTTP server with a seeded in-memory org.
//!
//! It answers everything sfsync's Salesforce client sends — OAuth (client_credentials, JWT
//! bearer, refresh_token), describe, SOQL query/queryAll with cursors, getDeleted/getUpdated,
//! Bulk API 2.0 query jobs and, on a port of its own, the Pub/Sub API's Change Data Capture
//! events — with Salesforce's response shapes, formats and errors. The handlers cite the
//! Salesforce documents they follow (REST API, Bulk API 2.0, SOAP API and Pub/Sub API
//! developer guides; the Object Reference for the objects in `schema/objects.rs`). Tests,
//! benchmarks and `sfsync demo` run it in-process with [`Simulator::start`]; the
//! `sfsync-simulator` binary serves it standalone.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};
//! let sim = Simulator::start(Org::generate(&OrgSpec::demo()), Credentials::demo(), Faults::default()).await?;
//! println!("Salesforce at {}", sim.url());
//! sim.org().lock().unwrap().touch_random("Contact", 50, 1);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod cdc;
mod generate;
mod ids;
mod keys;
mod lineage;
mod org;
mod plan;
mod rng;
mod schema;
mod server;
mod soql;
mod value;

pub use cdc::{ChangeType, DEFAULT_RETENTION as DEFAULT_CHANGE_EVENT_RETENTION};
pub use generate::OrgSpec;
pub use keys::{Credentials, DEMO_PRIVATE_KEY_PEM, DEMO_PUBLIC_KEY_PEM};
pub use lineage::{LeadConversion, LineageError};
pub use org::{Org, default_anchor};
pub use server::{
    API_VERSIONS, Faults, PubSubHandle, PubSubOptions, Simulator, SimulatorHandle, Stats,
};

/// The API version used for record URLs outside any request (`Org::records`).
pub const DEFAULT_API_VERSION: &str = "62.0";
