#!/usr/bin/env bash
# Installs every Debian package the build, the tests, the benchmarks and the demo need.
# Idempotent and quick when everything is present. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl
  libtorch-dev
  # Debian's LibTorch uses whatever BLAS the alternatives point to; the reference BLAS is >10x
  # slower, so install OpenBLAS (OpenMP) and point the alternatives at it below.
  libopenblas0-openmp libopenblas-openmp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev zlib1g-dev
  libopenmpi-dev openmpi-bin
  libflatbuffers-dev flatbuffers-compiler librocksdb-dev libboost-all-dev
  libhnswlib-dev libfaiss-dev
  # TLS on the coordinator's HTTP API (Boost.Beast over OpenSSL); openssl makes the test certs.
  libssl-dev openssl
  # WebDataset tar shards: libarchive reads tars, libjpeg-turbo decodes JPEG, libpng decodes PNG.
  libarchive-dev libturbojpeg0-dev libpng-dev
  # libFuzzer target for the frame decoder (clang -fsanitize=fuzzer).
  clang libclang-rt-14-dev
  dataset-fashion-mnist
  # PyTorch baselines, export round-trip check, plots.
  python3 python3-torch python3-numpy python3-matplotlib
)

# Only the test suite needs these (ops/test.sh passes --tests): the main job and `mrlctl up` run
# without etcd; iproute2's `ip netns` builds the multi-host tests' network (tests/netns_lab.h).
# The web console's browser test (tests/console_e2e_test.cc) drives Debian's chromium with
# puppeteer-core from npm (pinned in tests/console/package-lock.json, installed below); Node.js
# from Debian unless a node is already installed (its own npm then comes with it).
if [ "${1:-}" = "--tests" ]; then
  PACKAGES+=(etcd-server iproute2 chromium)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then PACKAGES+=(nodejs npm); fi
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "[setup] all ${#PACKAGES[@]} Debian packages present"
fi

# Make sure LibTorch's BLAS is OpenBLAS (OpenMP), not the reference implementation.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  target=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-openmp | head -n1 || true)
  if [ -n "$target" ]; then $SUDO update-alternatives --quiet --set "$alt" "$target"; fi
done
echo "[setup] BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"

if [ "${1:-}" = "--tests" ]; then
  # puppeteer-core at the lock file's exact versions, into tests/console/node_modules (ignored by
  # git); skipped when that tree is already installed from this lock file.
  CONSOLE_DIR="$(cd "$(dirname "$0")/.." && pwd)/tests/console"
  if ! cmp -s "$CONSOLE_DIR/package-lock.json" "$CONSOLE_DIR/node_modules/.mrl-installed-lock" 2>/dev/null; then
    echo "[setup] npm ci in tests/console (puppeteer-core for the console's browser test)"
    (cd "$CONSOLE_DIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error &&
     cp package-lock.json node_modules/.mrl-installed-lock)
  else
    echo "[setup] tests/console/node_modules matches its lock file"
  fi
fi
