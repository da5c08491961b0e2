#!/usr/bin/env bash
# Builds what the benchmarks need and runs them all, printing the figures (issue 7).
#   bench/run-all.sh                 # everything but python_all (about 15 minutes once built)
#   bench/run-all.sh local python    # only some: floor ratio local memory python python_all economy coldstart
#   bench/run-all.sh python_all      # the side by side on issue 16's mixed workload (contacts,
#                                    # accounts, relations, tasks: ~280,000 calls; ~7 minutes)
# Figures go to stdout (Markdown), bench/out/results.json and, with the commit measured,
# bench/results/<date>-<commit>-<benchmarks>.json (commit it: docs/benchmarks.md cites it);
# logs and inputs to bench/out/.
# Needs the Rust toolchain, Python 3, /usr/bin/time (Debian: apt-get install time) and
# network access to PyPI the first time (moto server into ./.venv, simple-salesforce and
# segment-analytics-python into bench/.venv-python).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

command -v /usr/bin/time >/dev/null || { echo "/usr/bin/time is missing (apt-get install -y time)" >&2; exit 1; }

step "release binaries (the bench profile: release with thin LTO; it builds into target/release/)"
# One cargo invocation, so that features unify the same way every time and nothing is
# rebuilt between the binaries; the bench helpers are examples of the sfsync-e2e package,
# the floor benchmark (issue 16) its bench target (bench.py runs it with the same packages).
nice cargo build --profile bench \
  -p sfsync -p sfsync-simulator -p sfsync-extract -p sfsync-map -p sfsync-deliver \
  -p sfsync-e2e --bins --examples --bench floor

step "moto server in ./.venv (as scripts/test installs it)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import moto' 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi

step "the hand-written Python alternative in bench/.venv-python"
if [ ! -x bench/.venv-python/bin/python ]; then
  python3 -m venv bench/.venv-python
fi
if ! bench/.venv-python/bin/python -c 'import simple_salesforce, segment.analytics' 2>/dev/null; then
  bench/.venv-python/bin/pip install --quiet --disable-pip-version-check \
    "simple-salesforce>=1.12,<2" "segment-analytics-python>=2.3,<3"
fi

step "benchmarks"
python3 bench/bench.py "$@"
