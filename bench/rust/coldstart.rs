//! `bench-coldstart`: cold start of Lambda function binaries against a fake Runtime API.
//!
//! For each run it starts the binary with `AWS_LAMBDA_RUNTIME_API` pointing at a loopback
//! listener of its own and measures the time from just before the exec to the arrival of
//! the first `GET /2018-06-01/runtime/invocation/next`; it then reads the process's peak RSS
//! (`VmHWM`), kills it and never answers (the connection is held until then). Anything else
//! arriving first (`/runtime/init/error`) fails the run. Binaries are run in turn, round by
//! round, so that background load on a shared machine hits them alike; one warm-up round
//! (page cache) is discarded.
//!
//! ```text
//! bench-coldstart [--runs N] [--secret-id ID --secret-file FILE | --instant-secret FILE] LABEL=PATH…
//! ```
//!
//! The environment is passed on to the binaries (set `AWS_ENDPOINT_URL`, `AWS_REGION`,
//! credentials and the functions' variables before running this). With `--secret-id`, the
//! JSON object in FILE is first stored as that Secrets Manager secret (created or updated)
//! at `AWS_ENDPOINT_URL`. With `--instant-secret`, `AWS_ENDPOINT_URL` points instead at a
//! stub of this process that answers every request at once with FILE as the `SecretString`:
//! the init work without an emulator's latency. One JSON line per binary goes to stdout.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

struct Target {
    label: String,
    path: String,
    millis: Vec<f64>,
    rss_kib: Vec<u64>,
}

/// What the fake Runtime API saw first on a connection: the request line and when its
/// headers had arrived.
struct Arrival {
    line: String,
    at: Instant,
}

fn main() -> Result<()> {
    let mut runs = 15usize;
    let mut secret: Option<(String, String)> = None;
    let mut instant: Option<String> = None;
    let mut targets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--secret-id" => {
                let id = args.next().context("--secret-id ID")?;
                let file = match args.next().as_deref() {
                    Some("--secret-file") => args.next().context("--secret-file FILE")?,
                    _ => bail!("--secret-id ID must be followed by --secret-file FILE"),
                };
                secret = Some((id, file));
            }
            "--instant-secret" => instant = Some(args.next().context("--instant-secret FILE")?),
            other => {
                let (label, path) = other
                    .split_once('=')
                    .ok_or_else(|| anyhow!("expected LABEL=PATH, got {other:?}"))?;
                targets.push(Target {
                    label: label.to_string(),
                    path: path.to_string(),
                    millis: Vec::new(),
                    rss_kib: Vec::new(),
                });
            }
        }
    }
    if targets.is_empty() {
        bail!("usage: bench-coldstart [--runs N] [--secret-id ID --secret-file FILE] LABEL=PATH…");
    }
    if let Some((id, file)) = &secret {
        store_secret(id, file)?;
    }
    let endpoint = match &instant {
        Some(file) => Some(instant_secrets(file)?),
        None => None,
    };

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    let (tx, rx) = mpsc::channel::<Arrival>();
    // The fake Runtime API: reads each request's head, reports it, and holds the
    // connection open (unanswered) until the client goes away.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let _ = tx.send(Arrival {
                    line: line.trim().to_string(),
                    at: Instant::now(),
                });
                // Hold: wait until the client closes (it is killed after the measurement).
                let mut rest = String::new();
                while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                    rest.clear();
                }
            });
        }
    });

    for round in 0..=runs {
        for target in targets.iter_mut() {
            let (millis, rss) = run_once(&target.path, &api, endpoint.as_deref(), &rx)
                .with_context(|| format!("{} ({})", target.label, target.path))?;
            if round > 0 {
                target.millis.push(millis);
                target.rss_kib.push(rss);
            }
        }
    }

    let mut out = std::io::stdout();
    for target in &targets {
        let mut sorted = target.millis.clone();
        sorted.sort_by(f64::total_cmp);
        let mut rss = target.rss_kib.clone();
        rss.sort_unstable();
        let size = std::fs::metadata(&target.path)
            .map(|m| m.len())
            .unwrap_or(0);
        let line = json!({
            "label": target.label,
            "runs": sorted.len(),
            "median_ms": round3(median(&sorted)),
            "min_ms": round3(sorted.first().copied().unwrap_or(0.0)),
            "max_ms": round3(sorted.last().copied().unwrap_or(0.0)),
            "peak_rss_kib_median": rss.get(rss.len() / 2).copied().unwrap_or(0),
            "size_bytes": size,
            "all_ms": sorted.iter().map(|m| round3(*m)).collect::<Vec<_>>(),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// One cold start: (milliseconds from exec to the first `/next`, peak RSS in KiB then).
fn run_once(
    path: &str,
    api: &str,
    endpoint: Option<&str>,
    rx: &mpsc::Receiver<Arrival>,
) -> Result<(f64, u64)> {
    // Nothing left over from a previous run.
    while rx.try_recv().is_ok() {}
    let mut command = Command::new(path);
    command
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(url) = endpoint {
        command.env("AWS_ENDPOINT_URL", url);
    }
    for (k, v) in [
        ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ] {
        if std::env::var_os(k).is_none() {
            command.env(k, v);
        }
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {path}"))?;
    // The arrival time is taken by the server thread; this loop only notices a process that
    // exits instead (a failed cold start) or never calls.
    let arrival = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(a) => break Ok(a),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("the fake Runtime API stopped"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait()?.is_some() {
                    break Err("the process exited before calling /next");
                }
                if started.elapsed() > Duration::from_secs(20) {
                    break Err("no request within 20 s");
                }
            }
        }
    };
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let output = child.wait_with_output()?;
    let arrival = match arrival {
        Ok(a) => a,
        Err(why) => bail!("{why}; stderr: {}", String::from_utf8_lossy(&output.stderr)),
    };
    if !arrival
        .line
        .starts_with("GET /2018-06-01/runtime/invocation/next")
    {
        bail!(
            "first request was {:?}, not /next; stderr: {}",
            arrival.line,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let millis = arrival.at.saturating_duration_since(started).as_secs_f64() * 1000.0;
    Ok((millis, rss))
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A Secrets Manager stand-in that answers every request at once (`GetSecretValue` is the
/// only one the functions make at cold start) with FILE's text as the `SecretString`.
/// Returns its URL.
fn instant_secrets(file: &str) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    let body = json!({
        "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sfsync-bench-AbCdEf",
        "Name": "sfsync-bench",
        "VersionId": "00000000-0000-0000-0000-000000000001",
        "SecretString": text,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1_764_000_000,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let response = response.clone();
            std::thread::spawn(move || serve_instantly(stream, &response));
        }
    });
    Ok(url)
}

/// Answers each request of a keep-alive connection with the same response.
fn serve_instantly(stream: std::net::TcpStream, response: &str) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // The request head, then its body (Content-Length bytes), then the answer.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err()
            || writer.write_all(response.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// Creates (or overwrites) a Secrets Manager secret from a JSON file, at the endpoint the
/// environment names.
fn store_secret(id: &str, file: &str) -> Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .with_context(|| format!("{file} is not JSON"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let created = client
            .create_secret()
            .name(id)
            .secret_string(&text)
            .send()
            .await;
        if created.is_err() {
            client
                .put_secret_value()
                .secret_id(id)
                .secret_string(&text)
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "cannot store secret {id}: {}",
                        aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                    )
                })?;
        }
        Ok(())
    })
}
