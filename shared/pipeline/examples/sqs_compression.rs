//! SQS body compression level, measured: billed SQS requests against Lambda CPU, for each
//! gzip level of `[pipeline] compression_level` (issue 13/16; docs/benchmarks.md, "SQS
//! compression level").
//!
//! Run: `cargo run --profile bench -p sfsync-pipeline --example sqs_compression`
//! (`SFSYNC_BENCH_FLOOR_PAGES` pages of 2,000 contacts, default 5).
//!
//! The records are the floor benchmark's (`tests/benches/floor.rs`): the demo org with
//! 100,000 contacts, 10,000 accounts and 50,000 relations (seed 42), the contacts sync with
//! ten fields including `MailingAddress` and `Account.Name`, extracted over REST by the real
//! client from the simulator. Per level, each 2,000-record page is packed as the extract
//! function sends it (a records message) and, mapped, as the map function sends it (a calls
//! message), both through `message::pack_message`, the SQS queue's own packing.
//!
//! - billed requests: SQS bills every 64 KiB of a request's payload as one request
//!   (Amazon SQS pricing). Bodies are grouped into SendMessageBatch requests as `SqsQueue`
//!   groups them (≤ 10 entries, ≤ 256 KiB), each billed ⌈bytes / 64 KiB⌉; receiving bills the
//!   same bytes again, so both are counted; deletes are one request per batch either way;
//! - CPU: the thread's CPU time (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`) to pack (compress) and to
//!   decode the bodies, best of 5.

use std::time::Duration;

use sfsync_mapping::Config;
use sfsync_mapping::secrets::SecretMap;
use sfsync_pipeline::map::map_calls;
use sfsync_pipeline::message::{
    CallsMessage, Compression, DEFAULT_MAX_BODY_BYTES, MESSAGE_VERSION, PackedBody, RecordsMessage,
    decode, pack_message,
};
use sfsync_salesforce::{Client, ClientConfig, Window};
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator};

const PAGE: usize = 2000;
const CHUNK: usize = 64 * 1024;
/// Lambda's GB-seconds per second of CPU for single-threaded work below 1,769 MB
/// (docs/benchmarks.md, "The Lambda view"): 1,769 / 1,024.
const GB_S_PER_CPU_S: f64 = 1.73;
/// us-east-1 list prices (docs/cost.md).
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
const LAMBDA_PER_GB_S: f64 = 0.000_013_333_4;

/// The side-by-side workload's contacts sync (`bench/contacts-sync.toml`, which the floor
/// benchmark reads too) against the simulator at `sim_url`. Nothing is sent, so the
/// destination's endpoint is a port nothing listens on.
fn bench_config(sim_url: &str) -> Result<Config, Box<dyn std::error::Error>> {
    let text = include_str!("../../../bench/contacts-sync.toml");
    let creds = Credentials::demo();
    let secrets = SecretMap::from_json(
        &serde_json::json!({
            "sf_url": sim_url,
            "sf_client_id": creds.client_id,
            "sf_client_secret": creds.client_secret,
            "receiver_url": "http://127.0.0.1:9",
        })
        .to_string(),
    )?;
    Ok(Config::parse(text)?.resolve_references(text, &secrets)?)
}

async fn contacts(
    pages: usize,
) -> Result<(Config, Vec<sfsync_mapping::Record>), Box<dyn std::error::Error>> {
    let spec = OrgSpec {
        contacts: 100_000,
        accounts: 10_000,
        account_contact_relations: 50_000,
        ..OrgSpec::demo()
    };
    let sim =
        Simulator::start(Org::generate(&spec), Credentials::demo(), Faults::default()).await?;
    let config = bench_config(&sim.url())?;
    let sync = config.syncs[0].clone();
    let client = Client::new(ClientConfig::from_config(&config.salesforce)?)?;
    let plan = client.plan(&sync).await?;
    let mut extraction = client.extract(
        &plan,
        Window {
            after: None,
            until: chrono::Utc::now(),
            include_deleted: false,
            api: sync.api,
            where_clause: None,
        },
    );
    let mut records = Vec::new();
    for _ in 0..pages {
        match extraction.next_page().await? {
            Some(page) => records.extend(page.records),
            None => break,
        }
    }
    sim.shutdown().await;
    Ok((config, records))
}

fn thread_cpu() -> Duration {
    // clock_gettime(CLOCK_THREAD_CPUTIME_ID): exact, where /proc/thread-self/schedstat
    // moves only at scheduler ticks.
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The least CPU of five runs of `work`, and its result.
fn best_of_5<T>(mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..5 {
        let start = thread_cpu();
        let result = work();
        best = best.min(thread_cpu().saturating_sub(start));
        out = Some(result);
    }
    (best, out.expect("five runs"))
}

/// Billed 64 KiB chunks of sending `bodies` as `SqsQueue` batches them.
fn billed_chunks(bodies: &[PackedBody]) -> usize {
    let mut chunks = 0;
    let (mut entries, mut bytes) = (0, 0);
    for body in bodies {
        let len = body.body.len();
        if entries == 10 || (entries > 0 && bytes + len > DEFAULT_MAX_BODY_BYTES) {
            chunks += bytes.div_ceil(CHUNK);
            (entries, bytes) = (0, 0);
        }
        entries += 1;
        bytes += len;
    }
    chunks + bytes.div_ceil(CHUNK)
}

struct Measured {
    bodies: usize,
    bytes: usize,
    /// Sent and received.
    billed: usize,
    pack: Duration,
    decode: Duration,
}

fn measure<M: sfsync_pipeline::message::Packable>(
    messages: &[M],
    compression: Compression,
    decode_one: impl Fn(&str),
) -> Measured {
    let (pack, bodies) = best_of_5(|| {
        messages
            .iter()
            .flat_map(|m| pack_message(m, DEFAULT_MAX_BODY_BYTES, compression).expect("pack"))
            .collect::<Vec<_>>()
    });
    let (decode, ()) = best_of_5(|| bodies.iter().for_each(|b| decode_one(&b.body)));
    Measured {
        bodies: bodies.len(),
        bytes: bodies.iter().map(|b| b.body.len()).sum(),
        billed: 2 * billed_chunks(&bodies),
        pack,
        decode,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pages = std::env::var("SFSYNC_BENCH_FLOOR_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (config, records) = contacts(pages).await?;
    let n = records.len();
    let records_messages: Vec<RecordsMessage> = records
        .chunks(PAGE)
        .map(|chunk| RecordsMessage {
            v: MESSAGE_VERSION,
            run_id: "bench".into(),
            sync: "contacts".into(),
            records: chunk.to_vec(),
        })
        .collect();
    let calls_messages: Vec<CallsMessage> = records_messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            CallsMessage {
                v: MESSAGE_VERSION,
                run_id: "bench".into(),
                destination: "segment".into(),
                attempt: 0,
                paused_since: None,
                calls: map_calls(&config, &mut m).expect("map").calls,
            }
        })
        .collect();
    let per_million = 1e6 / n as f64;
    println!(
        "{n} contacts, {} pages of {PAGE}; per million records:",
        records_messages.len()
    );
    println!(
        "level | records msgs: bodies, MB, billed req | calls msgs: bodies, MB, billed req \
         | CPU s pack+decode | SQS req saved vs 1 | GB-s added vs 1 | net $ vs 1 \
         | by bytes: req saved vs 1, net $ vs 1"
    );
    let mut rows = Vec::new();
    for level in 0..=9 {
        let compression = Compression::from_level(level);
        let r = measure(&records_messages, compression, |b| {
            decode::<RecordsMessage>(b).map(drop).expect("decode")
        });
        let c = measure(&calls_messages, compression, |b| {
            decode::<CallsMessage>(b).map(drop).expect("decode")
        });
        rows.push((level, r, c));
    }
    let billed = |r: &Measured, c: &Measured| (r.billed + c.billed) as f64 * per_million;
    let cpu = |r: &Measured, c: &Measured| {
        (r.pack + r.decode + c.pack + c.decode).as_secs_f64() * per_million
    };
    // Pages end where they end, so this fixture's billed chunks jump in steps; with other
    // page and record sizes they follow the bytes on average: 2 × bytes / 64 KiB.
    let by_bytes =
        |r: &Measured, c: &Measured| 2.0 * (r.bytes + c.bytes) as f64 / CHUNK as f64 * per_million;
    let (_, r1, c1) = &rows[1];
    let (base_billed, base_cpu, base_bytes) = (billed(r1, c1), cpu(r1, c1), by_bytes(r1, c1));
    for (level, r, c) in &rows {
        let saved = base_billed - billed(r, c);
        let gb_s = (cpu(r, c) - base_cpu) * GB_S_PER_CPU_S;
        println!(
            "{level} | {:.0}, {:.1}, {:.0} | {:.0}, {:.1}, {:.0} | {:.2} | {saved:.0} | {gb_s:.1} | {:+.5} | {:.0}, {:+.5}",
            r.bodies as f64 * per_million,
            r.bytes as f64 * per_million / 1e6,
            r.billed as f64 * per_million,
            c.bodies as f64 * per_million,
            c.bytes as f64 * per_million / 1e6,
            c.billed as f64 * per_million,
            cpu(r, c),
            saved * SQS_PER_REQUEST - gb_s * LAMBDA_PER_GB_S,
            base_bytes - by_bytes(r, c),
            (base_bytes - by_bytes(r, c)) * SQS_PER_REQUEST - gb_s * LAMBDA_PER_GB_S,
        );
    }
    Ok(())
}
