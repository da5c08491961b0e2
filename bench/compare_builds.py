"""Compares `sfsync` binaries on the same workload, taking turns: the side-by-side workload
(the contacts sync alone, 100,000 contacts over REST, into `bench-receiver`), three rounds.

    cp target/release/sfsync /tmp/sfsync-before      # build, copy, change, build again
    python3 bench/compare_builds.py /tmp/sfsync-before target/release/sfsync

Needs what `bench/run-all.sh` builds (the simulator and `bench-receiver`). Prints one line
per run: wall, CPU (user + sys), peak RSS, calls and requests the receiver counted.
"""

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    work = bench.OUT / "compare"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with bench.Receiver() as receiver, bench.Simulator(bench.CONTACTS, work) as sim:
        for _ in range(3):
            for i, binary in enumerate(binaries):
                run = work / f"{i}-{Path(binary).name}"
                shutil.rmtree(run, ignore_errors=True)
                run.mkdir()
                (run / "sfsync.toml").write_text(
                    bench.config_text(["contacts"], "segment", "rest", False))
                (run / "secrets.json").write_text(json.dumps({
                    "simulator_url": sim.url,
                    "sf_client_id": bench.CLIENT_ID,
                    "sf_client_secret": bench.CLIENT_SECRET,
                    "output_path": str(run / "calls.jsonl"),
                    "receiver_url": receiver.url,
                }))
                receiver.reset()
                seconds, rss, _ = bench.timed(
                    [binary, "sync", "--config", str(run / "sfsync.toml"),
                     "--secrets", str(run / "secrets.json"), "--state", str(run / "state"),
                     "--quiet"], run, "sfsync")
                stats = receiver.stats()
                parts = bench.timed.parts
                print(f"{binary}: wall {seconds:.2f} s, CPU {bench.timed.cpu_seconds:.2f} s, "
                      f"(user {parts['user']:.2f}, sys {parts['sys']:.2f}, "
                      f"{parts['minor_faults']} minor faults, "
                      f"{parts['voluntary_switches']} voluntary switches), "
                      f"peak RSS {rss / 1024:.1f} MiB, {stats['calls']} calls in "
                      f"{stats['requests']} requests", flush=True)


if __name__ == "__main__":
    main()
