#!/usr/bin/env bash
# The README's main command: install, build, then train MRL on the real Fashion-MNIST files,
# evaluate every nesting dim (linear / 1-NN / mAP@10, SVD baseline, adaptive classification) and
# export embeddings + model. Extra arguments go to mrl-trainer (e.g. --epochs 4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
bash ops/build.sh build
OUT=${MRL_OUT:-runs/main}
./build/trainer/mrl-trainer --out "$OUT" --epochs "${MRL_EPOCHS:-1}" "$@"
echo "[main] results: $OUT/results.json, embeddings: $OUT/export/"
