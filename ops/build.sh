#!/usr/bin/env bash
# Configures and builds (Ninja + ccache). Usage: ops/build.sh [build-dir] [extra cmake args...]
# MRL_BUILD_TARGETS="a b" builds only those targets (and what they need) instead of everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
# ccache keyed on paths relative to the checkout, so a fresh clone in another folder (CI) reuses
# the objects of this one instead of compiling everything again.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
shift || true
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
targets=()
for t in ${MRL_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" --parallel "$(nproc)" "${targets[@]}"
