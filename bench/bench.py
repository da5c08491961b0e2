#!/usr/bin/env python3
"""sfsync benchmarks (issue 7): drives the bench-profile binaries and prints the figures.

    python3 bench/bench.py [floor] [local] [memory] [python] [python_all] [economy] [coldstart]

With no argument, every benchmark runs but `python_all` (the side by side on issue 16's
mixed workload, about 280,000 calls: some 6 to 7 minutes more at 5 rounds); name it to run
it. Binaries come from `target/release/` (where cargo puts the `bench` profile): build them
first, as `bench/run-all.sh` does. SFSYNC_BENCH_BIN=<dir> takes them from another directory
(e.g. target/debug, for a quick trial of the scripts: such figures measure nothing). Each
benchmark writes its inputs and outputs under `bench/out/` and its figures to
`bench/out/results.json`; a Markdown summary is printed at the end.

The figures of each invocation are also written to `bench/results/<date>-<commit>.json`
(committed, and cited by docs/benchmarks.md) with the commit they measured, whether the
tree had uncommitted changes then (and in which files), and the load average.

Standard library only (the hand-written Python alternative runs in its own venv,
`bench/.venv-python`, which `bench/run-all.sh` creates).
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
RESULTS = BENCH / "results"
BIN = Path(os.environ.get("SFSYNC_BENCH_BIN", ROOT / "target" / "release")).resolve()
EXAMPLES = BIN / "examples"
TIME = "/usr/bin/time"
NICE = ["nice", "-n", "5"]

# Org sizes; the environment may shrink them for a quick trial of the scripts.
CONTACTS = int(os.environ.get("SFSYNC_BENCH_CONTACTS", 100_000))
BIG_CONTACTS = int(os.environ.get("SFSYNC_BENCH_BIG_CONTACTS", 1_000_000))
# Accounts and account-contact relationships scale with the contacts.
ACCOUNTS_PER_CONTACT = 0.1
RELATIONS_PER_CONTACT = 0.5
# Tasks too, for the mixed workload (python_all): 1.4 per contact, of which the simulator
# ties 85% to a person (60% contacts, 25% leads), so about 1.19 tracked calls per contact:
# 100,000 contacts give about 280,000 calls in all, the workload of issue 16.
TASKS_PER_CONTACT = 1.4

SALESFORCE = """\
[salesforce]
login_url = "${secret:simulator_url}"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"
page_size = 2000
"""

SYNCS = {
    "contacts": """\
[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "MiddleName", "LastName", "Suffix", "Title", "Phone", "CreatedDate", "MailingAddress", "Account.Name"]
deletes = DELETES
""",
    "accounts": """\
[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name", "Industry", "Phone", "Website", "Description"]
deletes = DELETES
""",
    "account_contacts": """\
[[syncs]]
name = "account_contacts"
object = "AccountContactRelation"
kind = "relationships"
user_id = "ContactId"
group_id = "AccountId"
object_type_id = "1"
fields = ["IsDirect", "IsActive", "Roles", "StartDate"]
deletes = DELETES
""",
    # As examples/sfsync.toml has it (events have no deletes).
    "tasks": """\
[[syncs]]
name = "tasks"
object = "Task"
kind = "events"
user_id = "WhoId"
event = "Task Logged"
timestamp_field = "CreatedDate"
fields = ["Subject", "Status", "Priority", "ActivityDate"]
""",
}

DESTINATIONS = {
    "file": """\
[[destinations]]
name = "export"
type = "file"
path = "${secret:output_path}"
""",
    "segment": """\
[[destinations]]
name = "segment"
type = "segment"
endpoint = "${secret:receiver_url}"
write_key = "bench-write-key"
""",
}

# The simulator's demo connected app (shared/simulator/src/keys.rs).
CLIENT_ID = "3MVG9sfsyncDemoConsumerKey.simulator"
CLIENT_SECRET = "sfsync-demo-consumer-secret"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def config_text(syncs, destination, api=None, deletes=True):
    parts = [SALESFORCE]
    for name in syncs:
        block = SYNCS[name].replace("DELETES", "true" if deletes else "false")
        if api:
            block += f'api = "{api}"\n'
        parts.append(block)
    parts.append(DESTINATIONS[destination])
    return "\n".join(parts)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


class Simulator:
    """The standalone `sfsync-simulator`, a separate process so its memory is its own."""

    def __init__(self, contacts, directory, tasks=None):
        self.contacts = contacts
        self.accounts = int(contacts * ACCOUNTS_PER_CONTACT)
        self.relations = int(contacts * RELATIONS_PER_CONTACT)
        self.tasks = tasks
        self.args = [
            str(BIN / "sfsync-simulator"), "--preset", "demo",
            "--contacts", str(contacts), "--accounts", str(self.accounts),
            "--account-contact-relations", str(self.relations),
        ]
        # Without --tasks, the demo preset's few (300), which no sync but python_all's reads.
        if tasks is not None:
            self.args += ["--tasks", str(tasks)]
        self.log_path = directory / "simulator.log"

    def command(self):
        return " ".join(["sfsync-simulator"] + self.args[1:])

    def __enter__(self):
        self.log_file = open(self.log_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            NICE + self.args, stdout=subprocess.PIPE, stderr=self.log_file, text=True
        )
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"simulator did not start; see {self.log_path}")
        log(f"  simulator at {self.url} ({self.contacts:,} contacts, "
            f"{self.accounts:,} accounts, {self.relations:,} relations"
            + (f", {self.tasks:,} tasks" if self.tasks is not None else "") + "; "
            f"ready in {time.monotonic() - started:.1f} s)")
        return self

    def stop(self):
        """Stops it (Ctrl-C) and returns its API call counters."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        self.log_file.close()
        text = self.log_path.read_text()
        m = re.search(r"served (\d+) API calls \((\d+) queries, (\d+) bulk jobs, (\d+) token requests\)", text)
        if not m:
            return {}
        keys = ["api_calls", "query_calls", "bulk_jobs", "token_requests"]
        return dict(zip(keys, map(int, m.groups())))

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Receiver:
    """`bench-receiver`: a Segment-shaped endpoint that answers 200 and counts."""

    def __enter__(self):
        self.proc = subprocess.Popen(
            [str(EXAMPLES / "bench-receiver")], stdout=subprocess.PIPE, text=True
        )
        self.url = self.proc.stdout.readline().strip()
        return self

    def stats(self):
        return get_json(self.url + "/__bench/stats")

    def reset(self):
        return get_json(self.url + "/__bench/reset")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()


def timed(command, directory, name):
    """Runs a command under /usr/bin/time -v: (wall seconds, peak RSS KiB, stdout); its
    CPU seconds (user + system) are left in `timed.cpu_seconds`."""
    time_file = directory / f"{name}.time"
    started = time.monotonic()
    result = subprocess.run(
        NICE + [TIME, "-v", "-o", str(time_file)] + command,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seconds = time.monotonic() - started
    (directory / f"{name}.stdout").write_text(result.stdout)
    (directory / f"{name}.stderr").write_text(result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}); see {directory}/{name}.stderr")
    report = time_file.read_text()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", report).group(1))
              for kind in ["User", "System"])
    timed.cpu_seconds = cpu
    # The parts, for telling the kernel's share (page faults, sockets) from the program's.
    timed.parts = {
        "user": float(re.search(r"User time \(seconds\): ([\d.]+)", report).group(1)),
        "sys": float(re.search(r"System time \(seconds\): ([\d.]+)", report).group(1)),
        "minor_faults": int(re.search(r"Minor \(reclaiming a frame\) page faults: (\d+)",
                                      report).group(1)),
        "voluntary_switches": int(re.search(r"Voluntary context switches: (\d+)",
                                            report).group(1)),
    }
    return seconds, rss, result.stdout


def run_reports(state):
    reports = [json.loads(p.read_text()) for p in (state / "runs").glob("*.json")]
    total = {"extracted": 0, "delivered": 0, "destination_requests": 0, "dead": 0,
             "skipped": 0, "salesforce_api_calls": 0}
    apis = {}
    per_sync = {}
    for r in reports:
        c = r["counts"]
        per_sync[r["sync"]] = {
            "extracted": c.get("extracted", 0), "delivered": c.get("delivered", 0),
            "skipped": c.get("skipped", 0) + c.get("skipped_deliberate", 0),
            "skip_reasons": c.get("skip_reasons", {}),
        }
        for k in ["extracted", "delivered", "destination_requests", "dead"]:
            total[k] += c.get(k, 0)
        total["skipped"] += c.get("skipped", 0) + c.get("skipped_deliberate", 0)
        total["salesforce_api_calls"] += r.get("salesforce_api_calls", 0)
        apis[r["sync"]] = r.get("api")
        if r.get("status") != "complete":
            raise RuntimeError(f"sync {r['sync']} ended {r.get('status')}: {r.get('error')}")
    total["api"] = apis
    total["per_sync"] = per_sync
    return total


def sfsync_sync(directory, sim, destination, syncs, api=None, receiver=None, deletes=True):
    """One `sfsync sync` into the file destination or the receiver."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    config = directory / "sfsync.toml"
    config.write_text(config_text(syncs, destination, api, deletes))
    output = directory / "calls.jsonl"
    secrets = {
        "simulator_url": sim.url,
        "sf_client_id": CLIENT_ID,
        "sf_client_secret": CLIENT_SECRET,
        "output_path": str(output),
        "receiver_url": receiver.url if receiver else "http://127.0.0.1:9",
    }
    (directory / "secrets.json").write_text(json.dumps(secrets))
    state = directory / "state"
    if receiver:
        receiver.reset()
    command = [str(BIN / "sfsync"), "sync", "--config", str(config),
               "--secrets", str(directory / "secrets.json"), "--state", str(state), "--quiet"]
    seconds, rss, _ = timed(command, directory, "sfsync")
    totals = run_reports(state)
    figures = {
        "records": totals["extracted"],
        "delivered": totals["delivered"],
        "dead": totals["dead"],
        "skipped": totals["skipped"],
        "seconds": round(seconds, 2),
        "records_per_s": round(totals["extracted"] / seconds),
        "peak_rss_mib": round(rss / 1024, 1),
        "cpu_seconds": round(timed.cpu_seconds, 2),
        "salesforce_api_calls": totals["salesforce_api_calls"],
        "extract_api": totals["api"],
        "destination_requests": totals["destination_requests"],
        "per_sync": totals["per_sync"],
    }
    if destination == "file":
        with open(output, "rb") as f:
            figures["output_lines"] = sum(1 for _ in f)
        output.unlink()
    if receiver:
        s = receiver.stats()
        figures["receiver"] = s
        items = s["body_bytes"] - 12 * s["requests"]
        figures["destination_minimum_requests"] = max(
            -(-items // (500_000 - 12)), -(-s["calls"] // 2500))
    return figures


def org_dir(name):
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    return d


ALL_SYNCS = ["contacts", "accounts", "account_contacts"]


def bench_local(results):
    """1. Local end to end at 100,000 contacts: into a file, and into the receiver."""
    log(f"== local end to end: {CONTACTS:,} contacts + accounts + relationships")
    out = {}
    directory = org_dir("local")
    with Receiver() as receiver:
        for destination in ["file", "segment"]:
            with Simulator(CONTACTS, directory) as sim:
                figures = sfsync_sync(directory / destination, sim, destination, ALL_SYNCS,
                                      receiver=receiver if destination == "segment" else None)
                figures["simulator"] = sim.stop()
                figures["simulator_command"] = sim.command()
            log(f"  → {destination}: {figures['records']:,} records in {figures['seconds']} s "
                f"= {figures['records_per_s']:,}/s, peak RSS {figures['peak_rss_mib']} MiB")
            out[destination] = figures
    results["local"] = out


# The default (auto: Bulk above 100,000 rows), and each API pinned. Contacts select
# MailingAddress, a compound field Bulk API 2.0 cannot return: they stay on REST.
MEMORY_APIS = ["auto", "rest", "bulk"]


def bench_memory(results):
    """2. Peak RSS at 100,000 and 1,000,000 contacts, per extraction API."""
    log("== memory: 100,000 vs 1,000,000 contacts")
    out = {}
    directory = org_dir("memory")
    for contacts in [CONTACTS, BIG_CONTACTS]:
        with Simulator(contacts, directory) as sim:
            for api in MEMORY_APIS:
                figures = sfsync_sync(directory / f"{contacts}-{api}", sim, "file", ALL_SYNCS,
                                      api=None if api == "auto" else api)
                figures["simulator_command"] = sim.command()
                out[f"{contacts}/{api}"] = figures
                log(f"  {contacts:>9,} contacts, api {api}: {figures['records']:,} records, "
                    f"{figures['records_per_s']:,}/s, peak RSS {figures['peak_rss_mib']} MiB "
                    f"({figures['extract_api']})")
            sim.stop()
    for api in MEMORY_APIS:
        small = out[f"{CONTACTS}/{api}"]["peak_rss_mib"]
        big = out[f"{BIG_CONTACTS}/{api}"]["peak_rss_mib"]
        out[f"ratio/{api}"] = round(big / small, 2)
        log(f"  ratio {api}: {out[f'ratio/{api}']}")
    results["memory"] = out


ROUNDS = int(os.environ.get("SFSYNC_BENCH_ROUNDS", 5))


def run_python(directory, sim, receiver, options=()):
    """One run of the hand-written script; the receiver's count of its calls must match."""
    python = BENCH / ".venv-python" / "bin" / "python"
    receiver.reset()
    command = [str(python), str(BENCH / "python" / "handwritten_sync.py"), *options,
               sim.url, receiver.url]
    seconds, rss, stdout = timed(command, directory, "python")
    own = json.loads(stdout.strip().splitlines()[-1])
    calls = receiver.stats()
    if calls["calls"] != own["records"] or own["failures"]:
        raise RuntimeError(f"python: {own['records']} sent, {calls['calls']} received, "
                           f"{own['failures']} failures")
    return {
        "records": own["records"],
        "read": own.get("read", own["records"]),
        "skipped": own.get("skipped", 0),
        "per_object": own.get("per_object"),
        "delivered_at_receiver": calls["calls"],
        "seconds": round(seconds, 2),
        "records_per_s": round(own["records"] / seconds),
        "peak_rss_mib": round(rss / 1024, 1),
        "cpu_seconds": round(timed.cpu_seconds, 2),
        "cpu_us_per_record": round(timed.cpu_seconds / own["records"] * 1e6, 2),
        "destination_requests": calls["requests"],
        "gzip_requests": calls["gzip_requests"],
        "load": round(os.getloadavg()[0], 1),
    }


def run_sfsync_side_by_side(directory, sim, receiver):
    """One `sfsync sync` of the contacts alone; the receiver's count of its calls must match."""
    f = sfsync_sync(directory / "sfsync", sim, "segment", ["contacts"],
                    api="rest", receiver=receiver, deletes=False)
    got = f["receiver"]["calls"]
    if got != f["records"] or f["delivered"] != f["records"] or f["dead"]:
        raise RuntimeError(f"sfsync: {f['records']} extracted, {f['delivered']} delivered, "
                           f"{got} received, {f['dead']} dead")
    f["delivered_at_receiver"] = got
    f["gzip_requests"] = f["receiver"]["gzip_requests"]
    f["cpu_us_per_record"] = round(f["cpu_seconds"] / f["records"] * 1e6, 2)
    f["load"] = round(os.getloadavg()[0], 1)
    return f


def bench_python(results, rounds=ROUNDS):
    """5. sfsync vs the hand-written simple-salesforce + analytics-python script: the same
    Contacts, the same fields, the same simulator and receiver, gzip on both sides. The two
    take turns (who goes first alternates by round: the machine is shared and its load
    changes) and the medians are compared. Each side's calls are counted at the receiver."""
    log(f"== side by side with Python: {CONTACTS:,} contacts, {rounds} rounds each")
    python = BENCH / ".venv-python" / "bin" / "python"
    if not python.exists():
        raise RuntimeError("bench/.venv-python is missing: run bench/run-all.sh")
    directory = org_dir("python")
    runs = {"sfsync": [], "python": []}
    with Receiver() as receiver, Simulator(CONTACTS, directory) as sim:
        for n in range(rounds):
            order = ["sfsync", "python"] if n % 2 == 0 else ["python", "sfsync"]
            for who in order:
                if who == "sfsync":
                    runs["sfsync"].append(run_sfsync_side_by_side(directory, sim, receiver))
                else:
                    runs["python"].append(run_python(directory, sim, receiver))
            s, p = runs["sfsync"][-1], runs["python"][-1]
            log(f"  round {n + 1}: sfsync {s['records']:,} records in {s['seconds']} s "
                f"({s['cpu_seconds']} s CPU, {s['delivered_at_receiver']:,} received); "
                f"python {p['records']:,} in {p['seconds']} s ({p['cpu_seconds']} s CPU, "
                f"{p['delivered_at_receiver']:,} received); load {p['load']}")
        simulator = sim.stop()
    out = {"rounds": runs, "simulator": simulator, "simulator_command": sim.command()}
    medians(out, runs, "records_per_s", "cpu_us_per_record")
    log(f"  ratio sfsync/python: {out['ratio']}× records/s (medians), "
        f"{out['cpu_ratio']}× less CPU time per record "
        f"({out['sfsync_median_cpu_us_per_record']} µs against {out['python_median_cpu_us_per_record']} µs)")
    results["python"] = out


def medians(out, runs, rate, cpu):
    """Each side's median run (by `rate`), its median CPU (`cpu`), seconds and peak RSS,
    and the two ratios sfsync/python (rate) and python/sfsync (CPU)."""
    for who, list_ in runs.items():
        middle = sorted(list_, key=lambda f: f[rate])[len(list_) // 2]
        out[who] = middle
        out[f"{who}_median_{cpu}"] = round(statistics.median(f[cpu] for f in list_), 2)
        out[f"{who}_median_seconds"] = statistics.median(f["seconds"] for f in list_)
        out[f"{who}_median_peak_rss_mib"] = statistics.median(f["peak_rss_mib"] for f in list_)
    out["ratio"] = round(out["sfsync"][rate] / out["python"][rate], 1)
    out["cpu_ratio"] = round(out[f"python_median_{cpu}"] / out[f"sfsync_median_{cpu}"], 1)


MIXED_SYNCS = ALL_SYNCS + ["tasks"]
# sfsync sync's names for the objects the script reads.
MIXED_OBJECTS = {"contacts": "Contact", "accounts": "Account",
                 "account_contacts": "AccountContactRelation", "tasks": "Task"}


def run_sfsync_all(directory, sim, receiver):
    """One `sfsync sync` of the four syncs; every record extracted is delivered and counted
    at the receiver, except the tasks that name no person (skipped as missing_identifier)."""
    f = sfsync_sync(directory / "sfsync", sim, "segment", MIXED_SYNCS,
                    api="rest", receiver=receiver, deletes=False)
    got = f["receiver"]["calls"]
    reasons = {}
    for name, c in f["per_sync"].items():
        for reason, n in c["skip_reasons"].items():
            reasons[f"{name}/{reason}"] = n
    if (got != f["delivered"] or f["delivered"] != f["records"] - f["skipped"] or f["dead"]
            or set(reasons) - {"tasks/missing_identifier"}):
        raise RuntimeError(f"sfsync: {f['records']} extracted, {f['skipped']} skipped "
                           f"({reasons}), {f['delivered']} delivered, {got} received, "
                           f"{f['dead']} dead")
    f["delivered_at_receiver"] = got
    f["gzip_requests"] = f["receiver"]["gzip_requests"]
    f["load"] = round(os.getloadavg()[0], 1)
    return f


def per_call(f):
    """CPU and rate per call delivered (counted at the receiver): the two sides both leave
    out the tasks without a person, so calls, not records read, are the common unit."""
    calls = f["delivered_at_receiver"]
    f["calls_per_s"] = round(calls / f["seconds"])
    f["cpu_us_per_call"] = round(f["cpu_seconds"] / calls * 1e6, 2)
    return f


def bench_python_all(results, rounds=ROUNDS):
    """5b. As `python`, on issue 16's mixed workload: contacts (identify), accounts (group),
    account-contact relations (group with userId and groupId) and tasks (track tied to a
    person) into the one receiver, one `sfsync sync` of the four syncs against the script
    with `--all`. Both sides must read the same records per object, skip the same tasks and
    deliver the same number of calls, each counted at the receiver."""
    tasks = int(CONTACTS * TASKS_PER_CONTACT)
    log(f"== side by side with Python, mixed workload: {CONTACTS:,} contacts + accounts + "
        f"relations + {tasks:,} tasks, {rounds} rounds each")
    python = BENCH / ".venv-python" / "bin" / "python"
    if not python.exists():
        raise RuntimeError("bench/.venv-python is missing: run bench/run-all.sh")
    directory = org_dir("python_all")
    runs = {"sfsync": [], "python": []}
    with Receiver() as receiver, Simulator(CONTACTS, directory, tasks=tasks) as sim:
        for n in range(rounds):
            order = ["sfsync", "python"] if n % 2 == 0 else ["python", "sfsync"]
            for who in order:
                if who == "sfsync":
                    runs["sfsync"].append(per_call(run_sfsync_all(directory, sim, receiver)))
                else:
                    runs["python"].append(per_call(
                        run_python(directory, sim, receiver, options=["--all"])))
            s, p = runs["sfsync"][-1], runs["python"][-1]
            for name, obj in MIXED_OBJECTS.items():
                mine, theirs = s["per_sync"][name], p["per_object"][obj]
                if (mine["extracted"], mine["delivered"]) != (theirs["read"], theirs["sent"]):
                    raise RuntimeError(f"{obj}: sfsync extracted {mine['extracted']} and "
                                       f"delivered {mine['delivered']}, python read "
                                       f"{theirs['read']} and sent {theirs['sent']}")
            log(f"  round {n + 1}: sfsync {s['records']:,} records, {s['delivered_at_receiver']:,} "
                f"calls received, {s['seconds']} s ({s['cpu_seconds']} s CPU); python "
                f"{p['read']:,} records, {p['delivered_at_receiver']:,} calls received, "
                f"{p['seconds']} s ({p['cpu_seconds']} s CPU); load {p['load']}")
        simulator = sim.stop()
    out = {"rounds": runs, "simulator": simulator, "simulator_command": sim.command(),
           "workload": {name: {"records": runs["sfsync"][0]["per_sync"][name]["extracted"],
                               "calls": runs["sfsync"][0]["per_sync"][name]["delivered"]}
                        for name in MIXED_SYNCS}}
    medians(out, runs, "calls_per_s", "cpu_us_per_call")
    log(f"  ratio sfsync/python: {out['ratio']}× calls/s (medians), "
        f"{out['cpu_ratio']}× less CPU time per call "
        f"({out['sfsync_median_cpu_us_per_call']} µs against {out['python_median_cpu_us_per_call']} µs)")
    results["python_all"] = out


# The floor benchmark's package set is run-all.sh's, so that cargo resolves features the
# same way and rebuilds nothing (tests/benches/floor.rs).
FLOOR_COMMAND = ["cargo", "bench", "-p", "sfsync", "-p", "sfsync-simulator", "-p", "sfsync-extract",
                 "-p", "sfsync-map", "-p", "sfsync-deliver", "-p", "sfsync-e2e", "--bench", "floor",
                 "--", "--noplot"]


PAIRED = re.compile(r"^paired: (\d+) pairs, in process / floor median ([\d.]+) \(quartiles "
                    r"([\d.]+) to ([\d.]+)\); floor ([\d.]+) us, in process ([\d.]+) us", re.M)
# The same against the bound below the floor (scan the pages, copy the bodies, gzip).
PAIRED_BOUND = re.compile(PAIRED.pattern.replace("^paired:", r"^paired \(bound\):"), re.M)


def paired(stdout, pattern=PAIRED):
    """The floor benchmark's paired measurement (in process against the floor, or with
    PAIRED_BOUND against the bound, pair by pair): its median ratio, quartiles and each
    side's median µs per contact."""
    m = pattern.search(stdout)
    if not m:
        raise RuntimeError("the floor benchmark printed no paired measurement")
    return {"pairs": int(m.group(1)), "in_process_ratio": float(m.group(2)),
            "quartiles": [float(m.group(3)), float(m.group(4))],
            "floor_us": float(m.group(5)), "in_process_us": float(m.group(6))}


def run_floor(directory, name, *criterion_args):
    """Runs the floor benchmark (FLOOR_COMMAND, then `criterion_args`: a filter, say), keeps
    its output as `directory/name.stdout|stderr`, and returns (its stdout, the contacts it
    measured, µs of CPU per contact for each benchmark it ran)."""
    proc = subprocess.run(NICE + FLOOR_COMMAND + list(criterion_args), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (directory / f"{name}.stdout").write_text(proc.stdout)
    (directory / f"{name}.stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"the floor benchmark failed; see {directory}/{name}.stderr")
    contacts = int(re.search(r"^(\d+) contacts:", proc.stdout, re.M).group(1))
    per_contact = {}
    base = ROOT / "target" / "criterion" / "per_contact"
    for estimates in sorted(base.glob("*/new/estimates.json")):
        # Criterion names the directory after the id with "/" made "_": the id is in
        # benchmark.json.
        function = json.loads((estimates.parent / "benchmark.json").read_text())["function_id"]
        median_ns = json.loads(estimates.read_text())["median"]["point_estimate"]
        per_contact[function] = round(median_ns / contacts / 1e3, 3)
    return proc.stdout, contacts, per_contact


def bench_floor(results):
    """0. The floor per record and sfsync's stages on the same records, in CPU time of the
    benchmark thread (criterion, tests/benches/floor.rs)."""
    log("== floor: parse + serialize + gzip per contact, and sfsync's stages")
    stdout, contacts, per_contact = run_floor(org_dir("floor"), "floor")
    out = {"command": " ".join(FLOOR_COMMAND), "contacts": contacts,
           "cpu_us_per_contact": per_contact, "paired": paired(stdout),
           "paired_bound": paired(stdout, PAIRED_BOUND),
           "gzip_levels": [line.strip() for line in stdout.splitlines()
                           if line.strip().startswith("level ")]}
    for name, us in per_contact.items():
        log(f"  {name:<36} {us:7.3f} µs CPU per contact")
    for key, what in [("paired", "the floor"), ("paired_bound", "the bound")]:
        p = out[key]
        log(f"  paired ({p['pairs']} pairs): in process {p['in_process_ratio']}× {what} "
            f"(quartiles {p['quartiles'][0]}–{p['quartiles'][1]})")
    results["floor"] = out


# The two rows the ratio benchmark needs (the group's own settings: 1 s warm-up, 4 s each).
RATIO_FILTER = "^per_contact/(floor/total|bound/total|stage/sfsync_in_process)$"


def floor_once(directory, name):
    """One short run of the floor benchmark, its floor and in-process rows only: µs of CPU
    per contact for each, and the paired measurement."""
    stdout, _, per_contact = run_floor(directory, name, RATIO_FILTER)
    figures = {k: per_contact[k] for k in ("floor/total", "bound/total", "stage/sfsync_in_process")}
    figures["paired"] = paired(stdout)
    figures["paired_bound"] = paired(stdout, PAIRED_BOUND)
    return figures


def bench_ratio(results, rounds=ROUNDS):
    """sfsync end to end as a multiple of the floor, robust to the machine's speed: this
    machine's speed drifts by tens of per cent over minutes (the same binary took 1.38 s and
    2.07 s of CPU ten minutes apart), so a floor measured in one run and `sfsync sync`
    measured in another give a ratio that moves with the drift. Here each round measures
    the floor (and the in-process stages) and then, right after, one `sfsync sync` of the
    side-by-side workload, and the ratio is taken within the round; the median of the
    rounds' ratios is the figure."""
    log(f"== ratio to the floor: floor, then sfsync end to end, {rounds} rounds")
    directory = org_dir("ratio")
    rounds_out = []
    with Receiver() as receiver, Simulator(CONTACTS, directory) as sim:
        for n in range(rounds):
            floor = floor_once(directory, f"floor-{n}")
            run = run_sfsync_side_by_side(directory, sim, receiver)
            one = {"floor_us": floor["floor/total"],
                   "bound_us": floor["bound/total"],
                   "in_process_us": floor["stage/sfsync_in_process"],
                   "paired_in_process_ratio": floor["paired"]["in_process_ratio"],
                   "paired_floor_us": floor["paired"]["floor_us"],
                   "end_to_end_us": run["cpu_us_per_record"],
                   "calls_at_receiver": run["delivered_at_receiver"],
                   "requests": run["destination_requests"],
                   "load": run["load"]}
            one["in_process_ratio"] = round(one["in_process_us"] / one["floor_us"], 2)
            one["end_to_end_ratio"] = round(one["end_to_end_us"] / one["floor_us"], 2)
            # Against the paired floor too, measured seconds before the sfsync run.
            one["end_to_end_ratio_paired_floor"] = round(
                one["end_to_end_us"] / one["paired_floor_us"], 2)
            # And against the bound below the floor (nothing parsed or written as JSON).
            one["end_to_end_ratio_bound"] = round(one["end_to_end_us"] / one["bound_us"], 2)
            one["paired_in_process_ratio_bound"] = floor["paired_bound"]["in_process_ratio"]
            rounds_out.append(one)
            log(f"  round {n + 1}: floor {one['floor_us']} µs, in process "
                f"{one['in_process_us']} µs ({one['in_process_ratio']}×), end to end "
                f"{one['end_to_end_us']} µs ({one['end_to_end_ratio']}×); paired in process "
                f"{one['paired_in_process_ratio']}×; "
                f"{one['calls_at_receiver']:,} calls received; load {one['load']}")
    out = {"rounds": rounds_out, "floor_command": " ".join(FLOOR_COMMAND) + f" '{RATIO_FILTER}'"}
    for key in ["floor_us", "bound_us", "in_process_us", "end_to_end_us", "in_process_ratio",
                "end_to_end_ratio", "paired_in_process_ratio", "end_to_end_ratio_paired_floor",
                "end_to_end_ratio_bound", "paired_in_process_ratio_bound"]:
        out[f"median_{key}"] = round(statistics.median(r[key] for r in rounds_out), 3)
        out[f"range_{key}"] = [min(r[key] for r in rounds_out), max(r[key] for r in rounds_out)]
    log(f"  paired in process (median of the rounds' medians): "
        f"{out['median_paired_in_process_ratio']}× (range {out['range_paired_in_process_ratio']})")
    log(f"  medians: in process {out['median_in_process_ratio']}× the floor, end to end "
        f"{out['median_end_to_end_ratio']}× (ranges {out['range_in_process_ratio']}, "
        f"{out['range_end_to_end_ratio']}); against the bound: in process (paired) "
        f"{out['median_paired_in_process_ratio_bound']}×, end to end "
        f"{out['median_end_to_end_ratio_bound']}× ({out['range_end_to_end_ratio_bound']})")
    results["ratio"] = out


class Moto:
    def __enter__(self):
        moto = ROOT / ".venv" / "bin" / "moto_server"
        if not moto.exists():
            raise RuntimeError("moto server is not installed in .venv: run bench/run-all.sh")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(OUT / "moto.log", "w")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def bench_economy(results, contacts=10_000):
    """3. AWS economy per 10,000 records, against moto."""
    log(f"== AWS economy: {contacts:,} contacts + accounts + relationships through moto")
    with Moto() as moto:
        env = dict(os.environ, SFSYNC_MOTO_URL=moto.url)
        proc = subprocess.run(
            NICE + [str(EXAMPLES / "bench-aws-economy"), "--contacts", str(contacts)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    (OUT / "economy.stderr").write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"bench-aws-economy failed; see {OUT}/economy.stderr")
    prefix = "bench-aws-economy "
    runs = [json.loads(line[len(prefix):]) for line in proc.stdout.splitlines()
            if line.startswith(prefix)]
    log(proc.stderr.split("== per 10,000", 1)[-1].rstrip())
    results["economy"] = {"command": f"bench-aws-economy --contacts {contacts}",
                          "runs": {r["mode"]: r for r in runs}}


LAMBDA_CONFIG = """\
[salesforce]
login_url = "${secret:sf_url}"
auth = "client_credentials"
client_id = "${secret:sf_client_id}"
client_secret = "${secret:sf_client_secret}"
page_size = 200
lookback_seconds = 300

[[syncs]]
name = "contacts"
object = "Contact"
kind = "people"
user_id = "Id"
fields = ["Email", "FirstName", "LastName", "Account.Name"]
deletes = true

[[syncs]]
name = "accounts"
object = "Account"
kind = "objects"
group_id = "Id"
object_type_id = "1"
fields = ["Name", "Industry"]

[[destinations]]
name = "seg"
type = "segment"
endpoint = "${secret:receiver_url}"
write_key = "${secret:seg_key}"
"""


def bench_coldstart(results, runs=20):
    """4. Cold start: exec → first GET /next against a fake Runtime API, per binary."""
    log(f"== cold start: median of {runs} runs each")
    directory = org_dir("coldstart")
    secret = {
        "sf_url": "http://127.0.0.1:9",
        "sf_client_id": CLIENT_ID,
        "sf_client_secret": CLIENT_SECRET,
        "receiver_url": "http://127.0.0.1:9",
        "seg_key": "bench-write-key",
        "sfsync_config": LAMBDA_CONFIG,
    }
    (directory / "secret.json").write_text(json.dumps(secret))
    # Measured as stripped copies, as the release profile builds them (the bench profile
    # keeps symbols); sizes as built are reported too.
    binaries = {
        "hello-world": EXAMPLES / "bench-hello-lambda",
        "hello-world + secret": EXAMPLES / "bench-hello-lambda-secret",
        "sfsync-extract": BIN / "sfsync-extract",
        "sfsync-map": BIN / "sfsync-map",
        "sfsync-deliver": BIN / "sfsync-deliver",
    }
    stripped = {}
    for label, path in binaries.items():
        copy = directory / (path.name + ".stripped")
        subprocess.run(["strip", "-o", str(copy), str(path)], check=True)
        stripped[label] = copy
    out = {}
    with Moto() as moto:
        env = dict(
            os.environ,
            AWS_ENDPOINT_URL=moto.url,
            AWS_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_EC2_METADATA_DISABLED="true",
            SFSYNC_SECRET_ID="sfsync-bench",
            STATE_TABLE="sfsync-bench-state",
            RECORDS_QUEUE_URL=f"{moto.url}/123456789012/records",
            DELIVERY_QUEUE_URL=f"{moto.url}/123456789012/delivery",
            DEAD_LETTER_QUEUE_URL=f"{moto.url}/123456789012/dead-letters",
            AWS_LAMBDA_FUNCTION_NAME="sfsync-bench",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        )
        env.pop("RUST_LOG", None)
        secret_file = str(directory / "secret.json")
        # Root certificates as Lambda's provided.al2023 has them: one bundle file. Debian
        # also has /etc/ssl/certs/ with ~290 per-certificate files, which rustls-native-certs
        # reads one by one at every HTTPS client's creation (measured in the "debian" pass).
        empty = directory / "empty-cert-dir"
        empty.mkdir(exist_ok=True)
        bundle = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "SSL_CERT_DIR": str(empty)}
        # The secret read from moto (a Python server: its latency counts), and from an
        # instant stub in the driver (what is left is the functions' own init work).
        passes = {
            "moto": (["--secret-id", "sfsync-bench", "--secret-file", secret_file], bundle),
            "instant": (["--instant-secret", secret_file], bundle),
            "debian": (["--instant-secret", secret_file], {}),
        }
        for name, (extra, certs) in passes.items():
            command = [str(EXAMPLES / "bench-coldstart"), "--runs", str(runs)] + extra
            command += [f"{label}={path}" for label, path in stripped.items()]
            proc = subprocess.run(NICE + command, env=dict(env, **certs), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"bench-coldstart failed: {proc.stderr}")
            figures = {}
            for line in proc.stdout.splitlines():
                r = json.loads(line)
                r["size_bytes_as_built"] = binaries[r["label"]].stat().st_size
                figures[r["label"]] = r
            base = figures["hello-world"]["median_ms"]
            base_secret = figures["hello-world + secret"]["median_ms"]
            for label in ["sfsync-extract", "sfsync-map", "sfsync-deliver"]:
                figures[label]["over_hello"] = round(figures[label]["median_ms"] / base, 2)
                figures[label]["over_hello_secret"] = round(figures[label]["median_ms"] / base_secret, 2)
            log(f"  pass {name}:")
            for label, r in figures.items():
                log(f"    {label:<22} median {r['median_ms']:7.2f} ms  (min {r['min_ms']:.2f}, "
                    f"max {r['max_ms']:.2f})  RSS {r['peak_rss_kib_median'] / 1024:.1f} MiB  "
                    f"size {r['size_bytes'] / 1e6:.1f} MB stripped, "
                    f"{r['size_bytes_as_built'] / 1e6:.1f} MB as built")
            out[name] = figures
    results["coldstart"] = out


def summary(results, chosen):
    """A Markdown summary of what ran in this invocation."""
    results = {k: v for k, v in results.items() if k in chosen or k == "date"}
    lines = [f"## Figures ({results['date']})", ""]
    if "floor" in results:
        f = results["floor"]["cpu_us_per_contact"]
        lines += ["| floor benchmark (CPU per contact) | µs |", "|---|---|"]
        lines += [f"| {name} | {us} |" for name, us in f.items()]
        for key, what in [("paired", "floor"), ("paired_bound", "bound")]:
            p = results["floor"].get(key)
            if p:
                lines += [f"| paired: in process ÷ {what} ({p['pairs']} pairs, median; "
                          f"quartiles) | {p['in_process_ratio']} "
                          f"({p['quartiles'][0]}–{p['quartiles'][1]}) |"]
        lines.append("")
        if "python" in results and "floor/total" in f:
            e2e = results["python"]["sfsync_median_cpu_us_per_record"]
            lines += [f"sfsync end to end: {e2e} µs CPU per contact = "
                      f"**{e2e / f['floor/total']:.2f} × the floor** ({f['floor/total']} µs)", ""]
    if "ratio" in results:
        r = results["ratio"]
        lines += ["| round | floor µs | in process µs (× floor) | end to end µs (× floor) | calls received |",
                  "|---|---|---|---|---|"]
        lines += [f"| {n + 1} | {x['floor_us']} | {x['in_process_us']} ({x['in_process_ratio']}) | "
                  f"{x['end_to_end_us']} ({x['end_to_end_ratio']}) | {x['calls_at_receiver']:,} |"
                  for n, x in enumerate(r["rounds"])]
        lines += ["", f"medians: in process **{r['median_in_process_ratio']} ×** the floor, "
                      f"end to end **{r['median_end_to_end_ratio']} ×**; paired in process "
                      f"**{r['median_paired_in_process_ratio']} ×**", ""]
    if "local" in results:
        lines += ["| local end to end | records | s | records/s | peak RSS MiB | SF API calls | dest. requests (min) |",
                  "|---|---|---|---|---|---|---|"]
        for dest, f in results["local"].items():
            minimum = f.get("destination_minimum_requests")
            requests = f"{f['destination_requests']}" + (f" ({minimum})" if minimum else "")
            lines.append(f"| → {dest} | {f['records']:,} | {f['seconds']} | {f['records_per_s']:,} | "
                         f"{f['peak_rss_mib']} | {f['salesforce_api_calls']} | {requests} |")
        lines.append("")
    if "memory" in results:
        m = results["memory"]
        lines += ["| memory (file destination) | 100,000 contacts | 1,000,000 contacts | ratio |", "|---|---|---|---|"]
        for api in MEMORY_APIS:
            a, b = m[f"{CONTACTS}/{api}"], m[f"{BIG_CONTACTS}/{api}"]
            lines.append(f"| api {api} | {a['peak_rss_mib']} MiB ({a['records']:,} rec, {a['records_per_s']:,}/s) | "
                         f"{b['peak_rss_mib']} MiB ({b['records']:,} rec, {b['records_per_s']:,}/s) | {m[f'ratio/{api}']} |")
        lines.append("")
    if "python" in results:
        p = results["python"]
        lines += ["| side by side (contacts → receiver, medians) | records | received | s | records/s | µs CPU per record | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|"]
        for who in ["sfsync", "python"]:
            f = p[who]
            lines.append(f"| {who} | {f['records']:,} | {f['delivered_at_receiver']:,} | {p[who + '_median_seconds']} | "
                         f"{f['records_per_s']:,} | {p[who + '_median_cpu_us_per_record']} | {p[who + '_median_peak_rss_mib']} |")
        lines += [f"| **ratio** | | | | **{p['ratio']}×** | **{p['cpu_ratio']}×** | |", ""]
    if "python_all" in results:
        p = results["python_all"]
        lines += ["| side by side, mixed workload (→ receiver, medians) | records | calls received | s | calls/s | µs CPU per call | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|"]
        for who in ["sfsync", "python"]:
            f = p[who]
            read = f["records"] if who == "sfsync" else f["read"]
            lines.append(f"| {who} | {read:,} | {f['delivered_at_receiver']:,} | {p[who + '_median_seconds']} | "
                         f"{f['calls_per_s']:,} | {p[who + '_median_cpu_us_per_call']} | {p[who + '_median_peak_rss_mib']} |")
        lines += [f"| **ratio** | | | | **{p['ratio']}×** | **{p['cpu_ratio']}×** | |", ""]
        lines.append("Workload: " + ", ".join(f"{name} {w['records']:,} records → {w['calls']:,} calls"
                                                 for name, w in p["workload"].items()))
        lines.append("")
    if "economy" in results:
        runs = results["economy"]["runs"]
        on, off = runs.get("Shipped", {}), runs.get("Uncompressed", {})
        lines += ["| AWS economy | compression on | compression off |", "|---|---|---|"]
        for key in ["records", "salesforce_api_calls_per_10k", "salesforce_query_calls_per_10k",
                    "sqs_billed_per_10k", "sqs_billed_per_million", "naive_sqs_billed_per_million",
                    "naive_over_ours", "lambda_invocations_per_10k", "naive_lambda_invocations_per_10k",
                    "destination_requests_per_10k", "destination_over_minimum"]:
            lines.append(f"| {key} | {on.get(key)} | {off.get(key)} |")
        lines.append("")
    if "coldstart" in results:
        c = results["coldstart"]
        lines += ["| cold start (median ms; × hello-world; × hello-world + secret) | secret from moto "
                  "| instant secret | instant secret, Debian cert dir | peak RSS MiB | size MB (stripped / as built) |",
                  "|---|---|---|---|---|---|"]
        cell = lambda r: " ; ".join(str(x) for x in [r["median_ms"], r.get("over_hello"),
                                                      r.get("over_hello_secret")] if x is not None)
        for label, r in c["moto"].items():
            lines.append(f"| {label} | {cell(r)} | {cell(c['instant'][label])} | {cell(c['debian'][label])} | "
                         f"{r['peak_rss_kib_median'] / 1024:.1f} | {r['size_bytes'] / 1e6:.1f} / {r['size_bytes_as_built'] / 1e6:.1f} |")
        lines.append("")
    return "\n".join(lines)


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout.strip()


def measured_commit():
    """The commit measured, and the tracked files that differed from it (binaries built
    from a tree with changes measure those changes too). SFSYNC_BENCH_BUILT_FROM=<commit>
    says the binaries were built from an export of that commit instead (`git archive`, as
    for a before/after pair), so the working tree does not matter."""
    built_from = os.environ.get("SFSYNC_BENCH_BUILT_FROM")
    if built_from:
        commit = git("rev-parse", built_from)
        return {"commit": commit, "subject": git("log", "-1", "--format=%s", commit),
                "built_from": f"git archive {commit[:8]} (plus any patch named in the docs)",
                "uncommitted_changes": [],
                "sfsync_binary_built": datetime.fromtimestamp(
                    (BIN / "sfsync").stat().st_mtime, timezone.utc).isoformat(timespec="seconds")}
    # `git` strips the output, and with it the first line's leading status column.
    changed = [line[2:].strip()
               for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "subject": git("log", "-1", "--format=%s"),
            "uncommitted_changes": changed,
            "sfsync_binary_built": datetime.fromtimestamp(
                (BIN / "sfsync").stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
            if (BIN / "sfsync").exists() else None}


def main():
    chosen = sys.argv[1:] or ["floor", "local", "memory", "python", "economy", "coldstart"]
    OUT.mkdir(parents=True, exist_ok=True)
    results_path = OUT / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    started = datetime.now(timezone.utc)
    results["date"] = date.today().isoformat()
    results["machine"] = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start"
    this_run = {"measured": measured_commit(), "started": started.isoformat(timespec="seconds"),
                "machine": results["machine"], "benchmarks": {}}
    benches = {"floor": bench_floor, "ratio": bench_ratio, "local": bench_local,
               "memory": bench_memory,
               "python": bench_python, "python_all": bench_python_all,
               "economy": bench_economy, "coldstart": bench_coldstart}
    for name in chosen:
        if name not in benches:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(benches)}")
    done = []
    try:
        for name in chosen:
            benches[name](results)
            results[f"{name}_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            results_path.write_text(json.dumps(results, indent=2))
            this_run["benchmarks"][name] = results[name]
            done.append(name)
    except Exception as e:
        # The benchmarks that finished keep their figures (a later one failing, say on a
        # full disk, must not lose minutes of measurements); the failure is recorded.
        this_run["failed"] = f"{chosen[len(done)]}: {e}"
        if done:
            write_results(started, this_run, results, done)
        raise
    write_results(started, this_run, results, done)


def write_results(started, this_run, results, done):
    """One file per invocation, named by date, commit and the benchmarks that finished
    (committed: docs/benchmarks.md cites it)."""
    this_run["load_at_end"] = round(os.getloadavg()[0], 1)
    text = summary(results, done)
    this_run["summary"] = text
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{started.strftime('%Y-%m-%dT%H%M')}-{this_run['measured']['commit'][:8]}-{'-'.join(done)}.json"
    (RESULTS / name).write_text(json.dumps(this_run, indent=2, ensure_ascii=False) + "\n")
    log(f"figures written to bench/results/{name}")
    print(text)


if __name__ == "__main__":
    main()
