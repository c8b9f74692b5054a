#!/usr/bin/env bash
# One shard engine against hnswlib full-d HNSW and FAISS exact on real MRL embeddings of
# Fashion-MNIST (bench/shard_bench.cc), rendered by bench/shard_report.py. Every method runs in
# one process on the same vectors and cores; the JSON holds every figure and its provenance.
#
#   N=240000 bash bench/shard_bench.sh    # the smaller-scale check (4 copies per image, ~20 min)
#   N=1020000 bash bench/shard_bench.sh   # the acceptance scale (17 copies; ~1 h, ~20 GB RAM)
#
# Writes bench/results/shard.md + shard.json at N >= 1M, else shard-$N.{md,json}. Embeddings:
# mrl-embed over MRL seed 0 of bench/fmnist_mrl.sh ($RUN), made when missing: $DATA/fmnist_q_*
# (10000 test images) and the database prefix $DB (default by number of copies, as bench/e2e.sh).
# The engine data directory ($DATA/bench_engine_$N) stays for bench/e2e.sh's ENGINE_DIR;
# REUSE=1 reopens it instead of ingesting again (the page then says so).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-240000}
Q=${Q:-1000}
DATA=${DATA:-/work/data}
RUN=${RUN:-bench/runs/fmnist/mrl-s0}
B=./build
[ -x $B/bench/shard_bench ] && [ -x $B/trainer/mrl-embed ] || bash ops/build.sh build
mkdir -p "$DATA" bench/results
copies=$(( (N + 59999) / 60000 ))
if [ -n "${DB:-}" ]; then db=$DB
elif [ "$copies" -ge 17 ]; then db=$DATA/fmnist1m_db
elif [ "$copies" -eq 4 ]; then db=$DATA/fmnist240k_db
else db=$DATA/fmnist_x${copies}_db; fi
if [ ! -f "${db}_embeddings.npy" ]; then
  [ -f "$RUN/results.json" ] || { echo "[shard_bench] no trained run in $RUN: run bash bench/fmnist_mrl.sh first"; exit 1; }
  $B/trainer/mrl-embed --run "$RUN" --split train --copies "$copies" --out "$db"
fi
[ -f "$DATA/fmnist_q_embeddings.npy" ] || $B/trainer/mrl-embed --run "$RUN" --split test --out "$DATA/fmnist_q"
rows=$(/usr/bin/python3 -c "import numpy as np; print(np.load('${db}_embeddings.npy', mmap_mode='r').shape[0])")
[ "$rows" -eq "$N" ] || { echo "[shard_bench] ${db}_embeddings.npy has $rows rows, not N=$N (set DB)"; exit 1; }
if [ "$N" -ge 1000000 ]; then name=shard; else name=shard-$N; fi
extra=()
[ "${REUSE:-0}" = 1 ] && extra+=(--reuse)
$B/bench/shard_bench --db "${db}_embeddings.npy" --queries "$DATA/fmnist_q_embeddings.npy" \
  --db-labels "${db}_labels.npy" --query-labels "$DATA/fmnist_q_labels.npy" \
  --data-dir "$DATA/bench_engine_$N" --max-queries "$Q" --faiss-queries 100 \
  --K 20 30 50 100 200 --compare-rerank --compare-int8 --cold "${extra[@]}" --json "bench/results/$name.json"
/usr/bin/python3 bench/shard_report.py --json "bench/results/$name.json" --out "bench/results/$name.md" \
  --about "$N database vectors of d = 2048 (fp16 in the engine): mrl-embed of MRL seed 0 \
($RUN, 4 epochs, conv4; bench/results/fmnist_mrl.md) over the 60000 Fashion-MNIST training \
images, $copies copies of each (copy 0 the image, the others a random flip + shift of up to 2 px \
drawn from (seed, copy)), from \`mrl-embed --run $RUN --split train --copies $copies --out $db\`. \
Queries: the first $Q of the 10000 test-image embeddings (\`--split test\`). Command: \
\`N=$N bash bench/shard_bench.sh\`." \
  ${CHANGES:+--changes "$CHANGES"}
