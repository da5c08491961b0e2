#!/usr/bin/env python3
"""Where sfsync's CPU goes, per stage (issue 16): `perf record` of one `sfsync sync` on the
side-by-side workload (the contacts sync alone, 100,000 contacts over REST, into
`bench-receiver`, gzip on), then the samples of sfsync's process sorted into stages by the
functions on their stacks.

    python3 bench/profile.py            # needs perf, and what bench/run-all.sh builds

Writes bench/out/profile/perf.data and prints a table: stage, share of sfsync's CPU samples.
A sample counts for the innermost stage function on its stack (gzip inside the HTTP write
is gzip), else for the code it runs under (see CONTEXT_STAGES); what no stage claims is
listed by its top functions.
"""

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

# Work that has a function of its own on the stack: a sample belongs to the first of these
# found reading its stack from the innermost frame outwards (gzip inside an HTTP write is
# gzip; a malloc inside the JSON parser is parsing). Patterns are substrings of demangled
# Rust symbols of the bench build (thin LTO inlines small functions into their callers, so
# each stage is named by functions that survive as frames).
LEAF_STAGES = [
    ("gzip", ["zlib_rs::", "flate2::"]),
    ("JSON parse (pages)", ["serde_json::de::", "serde_json::value::de::",
                            "<serde_json::value::Value as serde_core::de::Deserialize>"]),
    ("call serialization", ["serde_json::ser::", "serde_json::value::ser::", "segment_spec::",
                            "wire::to_json", "Protocol>::encode"]),
    ("mapping", ["sfsync_mapping::"]),
    ("packing (batches, request bodies)", ["join_body", "::batch", "build_request"]),
]
# The rest by where it runs: under the Salesforce client, under the destination client, in
# the HTTP connection tasks (hyper runs each connection as a task of its own, so those frames
# do not say which side they serve), the pipeline's own code, the runtime.
CONTEXT_STAGES = [
    ("HTTP read (Salesforce client)", ["sfsync_salesforce::"]),
    ("HTTP write (destination client)", ["sfsync_destinations::"]),
    ("HTTP connection tasks (both sides)", ["hyper::", "hyper_util::", "h2::", "reqwest::"]),
    ("bookkeeping (pipeline: state, reports, queue)", ["sfsync_pipeline::", "sfsync::"]),
    ("runtime (tokio)", ["tokio::"]),
]
STAGES = LEAF_STAGES + CONTEXT_STAGES


def main():
    if not shutil.which("perf"):
        sys.exit("perf is not installed (apt-get install linux-perf)")
    work = bench.OUT / "profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = work / "perf.data"
    with bench.Receiver() as receiver, bench.Simulator(bench.CONTACTS, work) as sim:
        (work / "sfsync.toml").write_text(bench.config_text(["contacts"], "segment", "rest", False))
        (work / "secrets.json").write_text(json.dumps({
            "simulator_url": sim.url,
            "sf_client_id": bench.CLIENT_ID,
            "sf_client_secret": bench.CLIENT_SECRET,
            "output_path": str(work / "calls.jsonl"),
            "receiver_url": receiver.url,
        }))
        command = ["perf", "record", "-F", "1999", "--call-graph", "dwarf,32768", "-o", str(data),
                   "--", str(bench.BIN / "sfsync"), "sync", "--config", str(work / "sfsync.toml"),
                   "--secrets", str(work / "secrets.json"), "--state", str(work / "state"), "--quiet"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stats = receiver.stats()
    print(f"command: {' '.join(command[:8])} -- sfsync sync … ({stats['calls']:,} calls received)")
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,tid,ip,sym"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    stages = collections.Counter()
    unclaimed = collections.Counter()
    total = 0
    for sample in script.split("\n\n"):
        lines = [line.strip() for line in sample.strip().splitlines()]
        if len(lines) < 2:
            continue
        frames = [line.split(" ", 1)[1] if " " in line else line for line in lines[1:]]
        total += 1
        stage = classify(frames)
        stages[stage] += 1
        if stage == "other":
            unclaimed[frames[0][:90]] += 1
    print(f"{total} samples of sfsync's threads\n")
    print("| stage | share of sfsync's CPU |\n|---|---|")
    for stage, _ in STAGES + [("other", [])]:
        print(f"| {stage} | {100 * stages[stage] / max(total, 1):.1f} % |")
    print("\nother, top functions:")
    for name, n in unclaimed.most_common(15):
        print(f"  {100 * n / max(total, 1):5.1f} %  {name}")


def classify(frames):
    for frame in frames:
        for stage, patterns in LEAF_STAGES:
            if any(p in frame for p in patterns):
                return stage
    for stage, patterns in CONTEXT_STAGES:
        if any(p in frame for frame in frames for p in patterns):
            return stage
    return "other"


if __name__ == "__main__":
    main()
