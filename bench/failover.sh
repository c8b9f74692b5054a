#!/usr/bin/env bash
# Searches and writes per second around a silent shard (SIGSTOP), hedging off and on, on a real
# local cluster (bench/failover_bench.cc); writes bench/results/failover.{json,md}. ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bench/failover_bench ] && [ -x build/shard/mrl-shard ] || bash ops/build.sh build
mkdir -p bench/results
./build/bench/failover_bench --bin-dir build --json bench/results/failover.json "$@"
/usr/bin/python3 bench/failover_report.py --json bench/results/failover.json --out bench/results/failover.md
