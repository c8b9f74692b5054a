#!/usr/bin/env bash
# The serving path (p50/p99 at one client, QPS at 8) and the trainer's all-reduce bandwidth
# across network-namespace hosts vs loopback, in one invocation (bench/multihost_bench.cc);
# writes bench/results/multihost.{json,md}. Needs root (ip netns). ~2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bench/multihost_bench ] && [ -x build/bench/allreduce_bench ] || bash ops/build.sh build
mkdir -p bench/results
./build/bench/multihost_bench --bin-dir build --src-dir . --json bench/results/multihost.json "$@"
/usr/bin/python3 bench/multihost_report.py --json bench/results/multihost.json --out bench/results/multihost.md
