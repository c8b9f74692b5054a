#!/usr/bin/env bash
# The README's main command, the whole product on one machine:
#   set up (Debian packages) -> build -> train MRL on the real Fashion-MNIST files (evaluating
#   every nesting dim, the SVD baseline and adaptive classification) -> export embeddings ->
#   start a local cluster (2 mrl-shard processes + mrl-coordinator, data under $OUT/cluster) ->
#   ingest the training-set embeddings through the coordinator -> run test-set queries through
#   it (exact, the paper's adaptive plan, one-trip, funnel, calibrated budgets: mAP@10,
#   recall@10 against exact full-d fp32 cosine over the exported vectors, latency, QPS) -> stop the cluster.
# Knobs: MRL_EPOCHS (1), MRL_OUT (runs/main), MRL_QUERIES (1000 of the 10000 test queries; the
# exact plan runs at ~11 QPS on 2 cores, twice: as itself and as the "exact" budget),
# MRL_KEEP_RUNNING=1 leaves the cluster up (stop it with: build/ops/mrlctl down --dir $OUT/cluster).
# Extra arguments go to mrl-trainer (e.g. --epochs 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
# Only what this job runs (4 of the build's ~100 targets: no tests, no benchmarks).
MRL_BUILD_TARGETS="mrl-trainer mrlctl mrl-shard mrl-coordinator" bash ops/build.sh build
OUT=${MRL_OUT:-runs/main}
./build/trainer/mrl-trainer --out "$OUT" --epochs "${MRL_EPOCHS:-1}" --set resume=false "$@"
echo "[main] training results: $OUT/results.json, embeddings: $OUT/export/"

CL="$OUT/cluster"
./build/ops/mrlctl down --dir "$CL" >/dev/null 2>&1 || true
rm -rf "$CL"
./build/ops/mrlctl up --dir "$CL" --shards 2
if [ "${MRL_KEEP_RUNNING:-0}" != "1" ]; then
  trap './build/ops/mrlctl down --dir "$CL"' EXIT
fi
E="$OUT/export"
# Each image as a PNG in its point's payload (the web console shows results as pictures); data
# without pixels (composites, .npy features) exports none.
IMAGES=()
if [ -f "$E/db_images.npy" ]; then IMAGES=(--images "$E/db_images.npy"); fi
./build/ops/mrlctl ingest --dir "$CL" --collection fmnist --create --index-dims 16 --storage fp16 \
  --embeddings "$E/db_embeddings.npy" --ids "$E/db_ids.npy" --labels "$E/db_labels.npy" \
  ${IMAGES[@]+"${IMAGES[@]}"}
./build/ops/mrlctl status --dir "$CL"
./build/ops/mrlctl eval --dir "$CL" --collection fmnist --limit "${MRL_QUERIES:-1000}" \
  --queries "$E/query_embeddings.npy" --query-labels "$E/query_labels.npy" \
  --db-embeddings "$E/db_embeddings.npy" --db-ids "$E/db_ids.npy" --db-labels "$E/db_labels.npy" --json "$OUT/serving.json"
echo "[main] serving results: $OUT/serving.json"
if [ "${MRL_KEEP_RUNNING:-0}" = "1" ]; then
  URL=$(python3 -c "import json;print(json.load(open('$CL/cluster.json'))['url'])")
  echo "[main] cluster left running: $URL"
  echo "[main] web console: $URL/ui/ (cluster, collection fmnist, search with the results as images)"
fi
