#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in their own build dir and runs the
# frame/verifier fuzzer for N seconds from a seed corpus of valid frames.
# Usage: ops/fuzz.sh [seconds=30] [build-dir=build-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-30}
BUILD_DIR=${2:-build-fuzz}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DMRL_BUILD_FUZZERS=ON -DMRL_BUILD_TRAINER=OFF \
  -DMRL_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD_DIR" --target frame_fuzzer --parallel "$(nproc)"
CORPUS="$BUILD_DIR/fuzz-corpus/frame"
mkdir -p "$CORPUS"
MRL_FUZZ_WRITE_SEEDS="$CORPUS" "$BUILD_DIR/fuzz/frame_fuzzer"
# Crash reproducers land in $BUILD_DIR/fuzz-artifacts/; a crash exits non-zero.
mkdir -p "$BUILD_DIR/fuzz-artifacts"
"$BUILD_DIR/fuzz/frame_fuzzer" "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 \
  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD_DIR/fuzz-artifacts/"
