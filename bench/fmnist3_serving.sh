#!/usr/bin/env bash
# Issue 14, item 3: the 1000-class triplet task served. The MRL model of bench/fmnist3_mrl.sh
# (RUN) embeds COPIES x 60000 training composites (copy c = the composites of epoch c: the same
# 1000 classes, other items; 1,020,000 points at COPIES=17) as the database and the first Q test
# composites as queries.
#  1. bench/shard_bench, in one process on the same vectors: the exact truth (FAISS IndexFlatIP
#     over the normalised fp32 vectors, also written for step 2), the paper's plan on the shard
#     engine in process, and hnswlib full-d HNSW over an ef sweep (recall@10, mAP@10, latency).
#  2. mrlctl up (mrl-coordinator + 2 mrl-shard processes), ingest, and mrlctl eval against that
#     truth over HTTP: the paper's adaptive plan, one trip, the funnel and each calibrated budget,
#     and the coordinator's own exact plan on the first EXACT queries.
# Writes bench/results/fmnist3_serving.{md,json}.
#
#   Q=2000 COPIES=17 bash bench/fmnist3_serving.sh   (~75 min on 2 cores with the embeddings
#                                                    made: ~35 min more for them; ~20 GB RAM)
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${Q:-2000}
COPIES=${COPIES:-17}
EXACT=${EXACT:-100}
DATA=${DATA:-/work/data3}
RUN=${RUN:-bench/runs/fmnist3/mrl-s1}
OUT=${OUT:-bench/runs/fmnist3-serving}
REPORT=${REPORT:-bench/results/fmnist3_serving}
CMD="Q=$Q COPIES=$COPIES EXACT=$EXACT RUN=$RUN${REUSE_SHARD_BENCH:+ REUSE_SHARD_BENCH=$REUSE_SHARD_BENCH} bash bench/fmnist3_serving.sh"
B=./build
PY=/usr/bin/python3
[ -x $B/ops/mrlctl ] && [ -x $B/bench/shard_bench ] && [ -x $B/trainer/mrl-embed ] || bash ops/build.sh build
[ -f "$RUN/results.json" ] || { echo "[serving] no trained run in $RUN: EPOCHS=4 SEEDS=1 bash bench/fmnist3_mrl.sh"; exit 1; }
mkdir -p "$DATA" "$OUT" bench/results
STAMP=$($PY bench/provenance.py "$CMD")
db=$DATA/fmnist3_x${COPIES}_db
qp=$DATA/fmnist3_q
step() { echo "[serving $(date +%H:%M:%S)] $*"; }
if [ ! -f "${db}_embeddings.npy" ]; then
  step "embedding $COPIES x the training composites"
  $B/trainer/mrl-embed --run "$RUN" --split train --copies "$COPIES" --out "$db" 2>&1 | tail -3
fi
if [ ! -f "${qp}_embeddings.npy" ]; then
  step "embedding the test composites"
  $B/trainer/mrl-embed --run "$RUN" --split test --out "$qp" 2>&1 | tail -3
fi
# REUSE_SHARD_BENCH=1 keeps a finished shard_bench pass of the same Q (its JSON names its commit).
if [ "${REUSE_SHARD_BENCH:-0}" = 1 ] && [ -f "$OUT/shard_bench.json" ] && [ -f "$OUT/truth.npy" ]; then
  step "shard_bench: reusing $OUT/shard_bench.json"
else
step "shard_bench: truth, the engine in process, hnswlib full-d"
$B/bench/shard_bench --db "${db}_embeddings.npy" --queries "${qp}_embeddings.npy" \
  --db-labels "${db}_labels.npy" --query-labels "${qp}_labels.npy" --max-queries "$Q" \
  --shortlist-dims 16 --K 200 --ef-sweep 10 20 40 80 160 320 --faiss-queries 20 --no-sync \
  --data-dir "$OUT/engine" --truth-out "$OUT/truth_rows.npy" --json "$OUT/shard_bench.json" \
  > "$OUT/shard_bench.md"
rm -rf "$OUT/engine"
# shard_bench numbers the database by row; the cluster by the embeddings' ids.
$PY -c "import numpy as np, sys; ids = np.load(sys.argv[1]); np.save(sys.argv[3], ids[np.load(sys.argv[2])].astype(np.int64))" \
  "${db}_ids.npy" "$OUT/truth_rows.npy" "$OUT/truth.npy"
fi
CL="$OUT/cluster"
$B/ops/mrlctl down --dir "$CL" >/dev/null 2>&1 || true
rm -rf "$CL"
step "mrlctl up --shards 2"
$B/ops/mrlctl up --dir "$CL" --shards 2
trap '$B/ops/mrlctl down --dir "$CL"' EXIT
t0=$(date +%s.%N)
$B/ops/mrlctl ingest --dir "$CL" --collection fmnist3 --create --index-dims 16 --storage fp16 \
  --embeddings "${db}_embeddings.npy" --ids "${db}_ids.npy" --labels "${db}_labels.npy"
ingest_s=$(echo "$(date +%s.%N) - $t0" | bc)
step "ingested in $ingest_s s; mrlctl eval"
$B/ops/mrlctl eval --dir "$CL" --collection fmnist3 --limit "$Q" --concurrency 1 8 --warmup "$Q" \
  --queries "${qp}_embeddings.npy" --query-labels "${qp}_labels.npy" --truth "$OUT/truth.npy" \
  --exact-limit "$EXACT" --db-ids "${db}_ids.npy" --db-labels "${db}_labels.npy" \
  --json "$OUT/coordinator.json" | tee "$OUT/eval.txt"
$B/ops/mrlctl down --dir "$CL"
trap - EXIT
rm -rf "$CL"
$PY bench/fmnist3_serving_report.py --dir "$OUT" --ingest-s "$ingest_s" --stamp "$STAMP" \
  --run "$RUN" --copies "$COPIES" --db "$db" --queries "$qp" --out "$REPORT"
step "wrote $REPORT.md"
