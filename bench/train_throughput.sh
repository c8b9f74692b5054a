#!/usr/bin/env bash
# img/s of mrl-trainer against the equivalent PyTorch script (Debian's python3-torch, the same
# LibTorch 1.13 underneath): same conv4 encoder, d=2048, MRL heads 8..2048, batch 256, SGD,
# flip+shift augmentation, in-RAM Fashion-MNIST, same thread count; run alternately in the same
# session, REPEATS times each. Writes bench/results/train_throughput.md.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-120}
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-$(nproc)}
BIN=./build/trainer/mrl-trainer
[ -x "$BIN" ] || bash ops/build.sh build
tmp=$(mktemp -d)
BATCH=${BATCH:-128}
cpp=() py=() pycl=()
for r in $(seq "$REPEATS"); do
  "$BIN" --out "$tmp/cpp$r" --set resume=false --set stop_after_steps="$STEPS" --set log_every=20 \
    --set threads="$THREADS" --set batch_size="$BATCH" --set optim.lr=0.05 > "$tmp/cpp$r.log" 2>&1
  # median of the 20-step windows after the first (warm-up) one
  c=$(grep -oE "[0-9]+ img/s" "$tmp/cpp$r.log" | awk 'NR>1{print $1}' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  pyrun() { /usr/bin/python3 bench/train_throughput.py --steps "$STEPS" --window 20 --threads "$THREADS" \
      --batch "$BATCH" "$@" | /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["median_img_per_s"]))'; }
  p=$(pyrun)
  q=$(pyrun --channels-last)
  echo "[throughput] repeat $r: mrl-trainer $c img/s, PyTorch $p img/s, PyTorch channels_last $q img/s"
  cpp+=("$c"); py+=("$p"); pycl+=("$q")
done
rm -rf "$tmp"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mc=$(median "${cpp[@]}"); mp=$(median "${py[@]}"); mq=$(median "${pycl[@]}")
ratio=$(awk -v a="$mc" -v b="$mp" 'BEGIN{printf "%.3f", a/b}')
ratio_cl=$(awk -v a="$mc" -v b="$mq" 'BEGIN{printf "%.3f", a/b}')
out=bench/results/train_throughput.md
{
  echo "# Training throughput: mrl-trainer (C++) vs PyTorch (Python), same model and data"
  echo
  echo "Reproduce: \`STEPS=$STEPS REPEATS=$REPEATS THREADS=$THREADS BATCH=$BATCH bash bench/train_throughput.sh\` (after \`bash ops/build.sh\`)."
  echo
  echo "Both: conv4 encoder (32-64-128-256), d=2048, 9 MRL heads (8..2048), summed cross-entropy,"
  echo "SGD Nesterov + weight decay, batch $BATCH, no augmentation (the trainer's default), Fashion-MNIST in RAM,"
  echo "$THREADS intra-op threads, Debian LibTorch 1.13.1 + OpenBLAS (OpenMP) underneath both."
  echo "Figure: median over 20-step windows of $STEPS steps (first window = warm-up, dropped); runs alternate."
  echo
  echo "mrl-trainer runs NCHW (its default; channels-last measured slower in it); the PyTorch script is"
  echo "timed as usually written (NCHW) and with channels-last (which a tuned PyTorch user might pick)."
  echo
  echo "| repeat | mrl-trainer img/s | PyTorch (NCHW) img/s | PyTorch (channels_last) img/s |"
  echo "|---:|---:|---:|---:|"
  for i in "${!cpp[@]}"; do echo "| $((i+1)) | ${cpp[$i]} | ${py[$i]} | ${pycl[$i]} |"; done
  echo
  echo "Median: mrl-trainer **$mc img/s**; PyTorch NCHW **$mp img/s** (ratio **${ratio}x**);"
  echo "PyTorch channels_last **$mq img/s** (ratio **${ratio_cl}x**). Target: >= 1.1x."
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))."
} > "$out"
cat "$out"
