//! The floor of sfsync's work per record, and sfsync's own stages, on the same records
//! (issue 16).
//!
//! Run: `cargo bench -p sfsync-e2e --bench floor` (SFSYNC_BENCH_FLOOR_PAGES to change the
//! number of 2,000-record pages measured, default 5).
//!
//! The records are the side-by-side workload's (`bench/bench.py python`): the demo org with
//! 100,000 contacts, 10,000 accounts and 50,000 relations (seed 42), the contacts sync
//! (ten fields with `MailingAddress` and `Account.Name`), extracted over REST by the real
//! client from the simulator, and delivered by the real Segment destination to a capturing
//! server in this process, which keeps the request bodies. Then, per record:
//!
//! - **floor**: the least work any sync of these records must do — parse the Salesforce
//!   REST query pages (serde_json into `Value`s), serialize the calls as sent (the very
//!   JSON the destination received, from `Value`s: no mapping), gzip the request bodies at
//!   the level sfsync uses. `floor/total` is the three in a row. `floor/scan` only
//!   tokenizes the pages (serde's `IgnoredAny`: nothing kept), a bound below any parser;
//! - **bound**: below the floor: scan the pages, copy the bodies' bytes (no JSON written),
//!   gzip them. sfsync no longer builds `Value`s, so it can do less than the floor's general
//!   parse and serialize; the bound is what no program reading those pages and sending those
//!   bodies can go under;
//! - **stage**: sfsync's own code for what lies between: `map` (`map_calls`: records →
//!   calls), `encode_pack` (the destination engine: calls → wire JSON → batches → request
//!   bodies), and `sfsync_in_process` = read the pages (each record kept as its text, as the
//!   client does) + map + encode/pack + gzip;
//! - **lambda**: the map function's work on one records message as it comes off SQS
//!   (gunzip + base64 + parse, map, pack gzip calls messages) and the deliver function's on
//!   the calls messages (decode, encode/pack, gzip), without the HTTP around them;
//! - **gzip_level**: each level's time for the request bodies and for SQS records
//!   messages; the compressed sizes are printed first.
//!
//! Times are the benchmark thread's CPU time (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), not wall time:
//! the machine is shared, and CPU time is what other processes disturb least. Criterion's
//! "thrpt" line is then µs of CPU per contact.
//!
//! HTTP reads and writes and the run's bookkeeping are not in here: the end-to-end run
//! (`bench/bench.py python`) measures them, and `docs/benchmarks.md` puts the two together.

use std::hint::black_box;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use sfsync_destinations::Destination;
use sfsync_mapping::{Config, Record};
use sfsync_pipeline::map::map_calls;
use sfsync_pipeline::message::{
    CallsMessage, Compression, DEFAULT_MAX_BODY_BYTES, MESSAGE_VERSION, Packer, RecordsMessage,
    decode, pack_message,
};
use sfsync_salesforce::{Client, ClientConfig, Window};
use sfsync_simulator::{Faults, Org, OrgSpec, Simulator};

/// The binaries' allocator (cli and functions): the floor and the stages are measured with
/// what production runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gzip level of destination request bodies and, here, of SQS messages (the figures of
/// issue 16 were taken at 1; the SQS default is now `[pipeline] compression_level`'s).
const LEVEL: u32 = 1;

/// What the benchmark measures on, gathered once.
struct Workload {
    config: Config,
    /// REST query pages as JSON, 2,000 records each.
    pages: Vec<Vec<u8>>,
    records: Vec<Record>,
    /// The request bodies the Segment destination sent, uncompressed.
    bodies: Vec<Vec<u8>>,
    /// The same bodies parsed: what "serialize the calls" writes back out.
    body_values: Vec<Value>,
    destination: Destination,
    /// Records messages and calls messages as the Lambdas exchange them (gzip + base64).
    records_messages: Vec<String>,
    calls_messages: Vec<String>,
}

/// The side-by-side workload's contacts sync (`bench/contacts-sync.toml`, which the SQS
/// compression example reads too), against the simulator and the capturing receiver.
fn bench_config(sim_url: &str, receiver_url: &str) -> Config {
    sfsync_e2e::fixtures::resolve(
        include_str!("../../bench/contacts-sync.toml"),
        sim_url,
        receiver_url,
    )
}

/// A Segment-shaped endpoint that keeps every body, gunzipped.
async fn capture(
    State(bodies): State<Arc<Mutex<Vec<Vec<u8>>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let plain = if gzip { gunzip(&body) } else { body.to_vec() };
    if let Ok(mut all) = bodies.lock() {
        all.push(plain);
    }
    "{}"
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the destination sent valid gzip");
    out
}

fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

fn pages_wanted() -> usize {
    std::env::var("SFSYNC_BENCH_FLOOR_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

async fn gather() -> Workload {
    let spec = OrgSpec {
        contacts: 100_000,
        accounts: 10_000,
        account_contact_relations: 50_000,
        ..OrgSpec::demo()
    };
    let sim = Simulator::start(
        Org::generate(&spec),
        sfsync_simulator::Credentials::demo(),
        Faults::default(),
    )
    .await
    .expect("simulator");

    let bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .fallback(capture)
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver_url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = bench_config(&sim.url(), &receiver_url);
    let sync = config.syncs[0].clone();
    let client = Client::new(ClientConfig::from_config(&config.salesforce).expect("client config"))
        .expect("client");
    let plan = client.plan(&sync).await.expect("plan");
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
    let mut pages = Vec::new();
    let mut records = Vec::new();
    while pages.len() < pages_wanted() {
        let Some(page) = extraction.next_page().await.expect("page") else {
            break;
        };
        // The page as Salesforce shapes it: the records (with their `attributes`) under
        // `records`, beside `totalSize`, `done` and `nextRecordsUrl`.
        let json = serde_json::json!({
            "totalSize": 100_000,
            "done": false,
            "nextRecordsUrl": "/services/data/v62.0/query/01gD0000002HU6KIAW-2000",
            "records": page.records,
        });
        pages.push(serde_json::to_vec(&json).expect("page JSON"));
        records.extend(page.records);
    }

    let names = sfsync_destinations::object_names(&config);
    let http = sfsync_destinations::http_client().expect("http client");
    let destination =
        Destination::with_object_names(&config.destinations[0], http, &names).expect("destination");
    let mut message = RecordsMessage {
        v: MESSAGE_VERSION,
        run_id: "bench".into(),
        sync: sync.name.clone(),
        records: records.clone(),
    };
    let calls = map_calls(&config, &mut message).expect("map").calls;
    assert_eq!(calls.len(), records.len(), "every contact maps to a call");
    let report = destination.deliver(calls, Duration::from_secs(60)).await;
    assert_eq!(report.delivered(), records.len(), "every call delivered");
    let bodies = std::mem::take(&mut *bodies.lock().expect("bodies"));
    let body_values: Vec<Value> = bodies
        .iter()
        .map(|b| serde_json::from_slice(b).expect("a JSON body"))
        .collect();
    let received: usize = body_values
        .iter()
        .map(|v| v["batch"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(received, records.len(), "the receiver saw every call");

    // What the Lambdas exchange: records messages of one page each (SQS bodies of at most
    // 256 KiB, gzip + base64), and the calls messages the map function makes of them.
    let mut records_messages = Vec::new();
    for chunk in records.chunks(2000) {
        let mut packer = Packer::new(
            Packer::records_prefix("bench", &sync.name),
            DEFAULT_MAX_BODY_BYTES,
            Compression::Gzip(LEVEL),
        );
        for record in chunk {
            packer.push(record).expect("pack a record");
        }
        records_messages.extend(packer.finish().expect("pack").into_iter().map(|b| b.body));
    }
    let mut calls_messages = Vec::new();
    for body in &records_messages {
        let message: RecordsMessage = decode(body).expect("records message");
        calls_messages.extend(map_and_pack(&config, message));
    }

    sim.shutdown().await;
    Workload {
        config,
        pages,
        records,
        bodies,
        body_values,
        destination,
        records_messages,
        calls_messages,
    }
}

/// The map function's work on one records message, without the network: map the records,
/// then pack one calls message per destination as the SQS queue does (at `LEVEL`).
fn map_and_pack(config: &Config, mut message: RecordsMessage) -> Vec<String> {
    let mut mapped = map_calls(config, &mut message).expect("map");
    let last = mapped.destinations.len().saturating_sub(1);
    let mut bodies = Vec::new();
    for (i, destination) in mapped.destinations.iter().enumerate() {
        let calls = if i == last {
            std::mem::take(&mut mapped.calls)
        } else {
            mapped.calls.clone()
        };
        let calls_message = CallsMessage {
            v: MESSAGE_VERSION,
            run_id: message.run_id.clone(),
            destination: destination.clone(),
            attempt: 0,
            paused_since: None,
            calls,
        };
        let packed = pack_message(
            &calls_message,
            DEFAULT_MAX_BODY_BYTES,
            Compression::Gzip(LEVEL),
        )
        .expect("pack");
        bodies.extend(packed.into_iter().map(|b| b.body));
    }
    bodies
}

/// The CPU time of the benchmark thread, in ns: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
/// Everything measured here runs on that one thread. (`/proc/thread-self/schedstat`, used
/// before, moves only at scheduler ticks, every 4 ms here: each sample was off by up to a
/// tick, which made short samples noisy.)
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (divisor, unit) = if typical < 1e3 {
            (1.0, "ns CPU")
        } else if typical < 1e6 {
            (1e3, "µs CPU")
        } else if typical < 1e9 {
            (1e6, "ms CPU")
        } else {
            (1e9, "s CPU")
        };
        values.iter_mut().for_each(|v| *v /= divisor);
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Elements(n)
            | Throughput::Bytes(n)
            | Throughput::BytesDecimal(n)
            | Throughput::Bits(n) => *n as f64,
        };
        values.iter_mut().for_each(|v| *v = *v / per / 1e3);
        "µs CPU/contact"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

#[derive(serde::Deserialize)]
struct QueryPage {
    #[allow(dead_code)]
    #[serde(rename = "totalSize")]
    total_size: u64,
    #[allow(dead_code)]
    done: bool,
    #[allow(dead_code)]
    #[serde(rename = "nextRecordsUrl")]
    next_records_url: Option<String>,
    records: Vec<Value>,
}

fn parse_pages(pages: &[Vec<u8>]) -> Vec<Value> {
    let mut out = Vec::new();
    for page in pages {
        let page: QueryPage = serde_json::from_slice(page).expect("a page");
        out.extend(page.records);
    }
    out
}

/// A page as sfsync's client reads it: each record kept as its JSON text.
#[derive(serde::Deserialize)]
struct RecordsPage {
    records: Vec<Record>,
}

fn read_pages(pages: &[Vec<u8>]) -> Vec<Record> {
    let mut out = Vec::new();
    for page in pages {
        let page: RecordsPage = serde_json::from_slice(page).expect("a page");
        out.extend(page.records);
    }
    out
}

/// Tokenize the pages (nothing kept): the least any reader of them does.
fn scan_pages(pages: &[Vec<u8>]) {
    for page in pages {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(page)).expect("JSON"));
    }
}

/// Copy the request bodies' bytes: the least any writer of them does.
fn copy_bodies(bodies: &[Vec<u8>]) -> usize {
    let mut buffer = Vec::with_capacity(512 * 1024);
    let mut total = 0;
    for body in bodies {
        buffer.clear();
        buffer.extend_from_slice(body);
        total += black_box(&buffer).len();
    }
    total
}

fn serialize_calls(values: &[Value]) -> usize {
    let mut buffer = Vec::with_capacity(512 * 1024);
    let mut total = 0;
    for value in values {
        buffer.clear();
        serde_json::to_writer(&mut buffer, value).expect("serialize");
        total += buffer.len();
    }
    total
}

fn gzip_bodies(bodies: &[Vec<u8>], level: u32) -> usize {
    bodies.iter().map(|b| gzip(b, level).len()).sum()
}

/// The floor: parse the pages, serialize the calls, gzip the bodies.
fn floor_total(w: &Workload) -> usize {
    black_box(parse_pages(black_box(&w.pages)));
    black_box(serialize_calls(black_box(&w.body_values)));
    black_box(gzip_bodies(black_box(&w.bodies), LEVEL))
}

/// Below the floor: tokenize the pages without keeping anything, copy the bodies' bytes
/// (no JSON written), gzip them. No program that reads those pages and sends those bodies
/// does less; the gap to it is what any design could still win.
fn bound_total(w: &Workload) -> usize {
    scan_pages(black_box(&w.pages));
    black_box(copy_bodies(black_box(&w.bodies)));
    black_box(gzip_bodies(black_box(&w.bodies), LEVEL))
}

/// sfsync's own work on the same records in one thread: read the pages (each record's
/// text), map, encode and pack the calls, gzip the bodies.
fn sfsync_in_process(w: &Workload) -> usize {
    let mut m = RecordsMessage {
        v: MESSAGE_VERSION,
        run_id: "bench".into(),
        sync: "contacts".into(),
        records: read_pages(&w.pages),
    };
    let calls = map_calls(&w.config, &mut m).expect("map").calls;
    black_box(w.destination.plan(&calls));
    black_box(gzip_bodies(&w.bodies, LEVEL))
}

/// Pairs measured: enough for steady quartiles, about ten seconds in all.
const PAIRS: usize = 31;

/// sfsync in process as a multiple of the floor (or of the bound), measured in pairs: the
/// floor, then sfsync (or the other way round, alternately), each pair a fraction of a
/// second apart.
/// This machine's speed drifts by tens of per cent within seconds, and criterion measures
/// one function for seconds before the next, so a ratio of two criterion rows moves with
/// the drift (1.31 to 1.96 in one run); within a pair it mostly cancels. Prints the median
/// of the pairs' ratios with its quartiles, and each side's median per contact.
fn paired_ratio(w: &Workload, label: &str, floor_total: &dyn Fn(&Workload) -> usize) {
    let n = w.records.len() as f64;
    let timed = |work: &dyn Fn(&Workload) -> usize| {
        let start = thread_cpu_ns();
        black_box(work(w));
        (thread_cpu_ns() - start) as f64
    };
    // Warm-up: the allocator's pages and the caches, as criterion's warm-up does.
    for _ in 0..2 {
        timed(floor_total);
        timed(&sfsync_in_process);
    }
    let (mut ratios, mut floors, mut sfsyncs) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        let (f, s) = if pair % 2 == 0 {
            let f = timed(floor_total);
            (f, timed(&sfsync_in_process))
        } else {
            let s = timed(&sfsync_in_process);
            (timed(floor_total), s)
        };
        ratios.push(s / f);
        floors.push(f / n / 1e3);
        sfsyncs.push(s / n / 1e3);
    }
    for v in [&mut ratios, &mut floors, &mut sfsyncs] {
        v.sort_by(f64::total_cmp);
    }
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "paired{label}: {PAIRS} pairs, in process / floor median {:.3} (quartiles {:.3} to {:.3}); \
         floor {:.3} us, in process {:.3} us per contact (medians)",
        median(&ratios),
        ratios[PAIRS / 4],
        ratios[3 * PAIRS / 4],
        median(&floors),
        median(&sfsyncs),
    );
}

fn floor(c: &mut Criterion<ThreadCpu>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let w = runtime.block_on(gather());
    let n = w.records.len();
    let body_bytes: usize = w.bodies.iter().map(Vec::len).sum();
    let page_bytes: usize = w.pages.iter().map(Vec::len).sum();
    println!(
        "\n{n} contacts: {} pages ({page_bytes} bytes), {} request bodies ({body_bytes} bytes), \
         {} records messages, {} calls messages",
        w.pages.len(),
        w.bodies.len(),
        w.records_messages.len(),
        w.calls_messages.len(),
    );

    // Bytes saved against CPU, per level, for the two kinds of body sfsync compresses.
    let records_raw: Vec<Vec<u8>> = w
        .records
        .chunks(2000)
        .map(|chunk| serde_json::to_vec(chunk).expect("records JSON"))
        .collect();
    println!("gzip level: compressed bytes (ratio) and CPU time per MB of input, best of 5");
    for level in [1, 2, 3, 4, 6, 9] {
        for (what, input) in [
            ("request bodies", &w.bodies),
            ("records messages", &records_raw),
        ] {
            let raw: usize = input.iter().map(Vec::len).sum();
            let mut best = u64::MAX;
            let mut out = 0;
            for _ in 0..5 {
                let start = thread_cpu_ns();
                out = gzip_bodies(input, level);
                best = best.min(thread_cpu_ns() - start);
            }
            println!(
                "  level {level} {what:<17} {out:>9} bytes ({:.2}x)  {:.2} ms CPU per MB",
                raw as f64 / out as f64,
                best as f64 / 1e6 / (raw as f64 / 1e6)
            );
        }
    }

    paired_ratio(&w, "", &floor_total);
    paired_ratio(&w, " (bound)", &bound_total);

    let mut group = c.benchmark_group("per_contact");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    // The least any reader of these pages can do: tokenize them (no values kept).
    group.bench_function("floor/scan", |b| b.iter(|| scan_pages(black_box(&w.pages))));
    group.bench_function("bound/total", |b| b.iter(|| bound_total(&w)));
    group.bench_function("floor/parse", |b| {
        b.iter(|| black_box(parse_pages(black_box(&w.pages))))
    });
    group.bench_function("floor/serialize", |b| {
        b.iter(|| black_box(serialize_calls(black_box(&w.body_values))))
    });
    group.bench_function("floor/gzip", |b| {
        b.iter(|| black_box(gzip_bodies(black_box(&w.bodies), LEVEL)))
    });
    group.bench_function("floor/total", |b| b.iter(|| floor_total(&w)));

    let message = || RecordsMessage {
        v: MESSAGE_VERSION,
        run_id: "bench".into(),
        sync: "contacts".into(),
        records: w.records.clone(),
    };
    group.bench_function("stage/map", |b| {
        b.iter_batched(
            message,
            |mut m| black_box(map_calls(&w.config, &mut m).expect("map")),
            BatchSize::LargeInput,
        )
    });
    let calls = map_calls(&w.config, &mut message()).expect("map").calls;
    group.bench_function("stage/encode_pack", |b| {
        b.iter(|| black_box(w.destination.plan(black_box(&calls))))
    });
    group.bench_function("stage/sfsync_in_process", |b| {
        b.iter(|| sfsync_in_process(&w))
    });

    group.bench_function("lambda/map_function", |b| {
        b.iter(|| {
            for body in &w.records_messages {
                let m: RecordsMessage = decode(body).expect("records message");
                black_box(map_and_pack(&w.config, m));
            }
        })
    });
    group.bench_function("lambda/deliver_function", |b| {
        b.iter(|| {
            for body in &w.calls_messages {
                let m: CallsMessage = decode(body).expect("calls message");
                black_box(w.destination.plan(&m.calls));
            }
            black_box(gzip_bodies(&w.bodies, LEVEL))
        })
    });

    for level in [1, 6] {
        group.bench_function(format!("gzip_level/{level}/request_bodies"), |b| {
            b.iter(|| black_box(gzip_bodies(black_box(&w.bodies), level)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = floor
}
criterion_main!(benches);
