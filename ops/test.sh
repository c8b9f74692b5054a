#!/usr/bin/env bash
# The README's test command: install, build, run the whole GoogleTest suite under CTest, then the
# plain (non-LibTorch) tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then a
# bounded libFuzzer run over the wire decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/setup.sh
bash ops/build.sh build
(cd build && ctest --output-on-failure --timeout 900)
# Sanitizer build of everything that does not link LibTorch (LibTorch's own allocations are not
# ours to chase, and each LibTorch TU costs ~20 s to compile twice).
bash ops/build.sh build-asan -DMRL_BUILD_TRAINER=OFF -DMRL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd build-asan && ctest --output-on-failure --timeout 300)
# libFuzzer over the frame decoder and the message verifier (clang, ASan + fatal UBSan), bounded.
bash ops/fuzz.sh "${MRL_FUZZ_SECONDS:-30}"
