#!/usr/bin/env bash
# Data-parallel scaling of mrl-trainer on this machine: global img/s for 1 and 2 ranks (and 4, 8
# where the machine has the cores), one intra-op thread per rank so ranks do not share cores, and
# the MPI all-reduce bandwidth against the ring bound. Writes bench/results/scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-80}
BATCH=${BATCH:-128}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -x build/trainer/mrl-trainer ] && [ -x build/bench/allreduce_bench ] || bash ops/build.sh build
cores=$(nproc)
MPI="mpirun --oversubscribe --bind-to core --mca btl self,vader"
tmp=$(mktemp -d)
rate() {  # median img/s of the windows after the first
  grep -oE "[0-9]+ img/s" "$1" | awk 'NR>1{print $1}' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}
declare -A R
for n in 1 2 4 8; do
  [ "$n" -le "$cores" ] || continue
  # Per-rank batch B: global batch grows with ranks (weak scaling, as in Horovod's figures).
  $MPI -np "$n" build/trainer/mrl-trainer --out "$tmp/r$n" --set resume=false --set threads=1 \
    --set batch_size="$BATCH" --set stop_after_steps="$STEPS" --set log_every=10 > "$tmp/r$n.log" 2>&1
  R[$n]=$(rate "$tmp/r$n.log")
  echo "[scaling] $n rank(s) x 1 thread: ${R[$n]} img/s (global batch $((BATCH * n)))"
done
$MPI -np 2 build/bench/allreduce_bench 1 4 25 100 > "$tmp/ar.txt" 2>&1
cat "$tmp/ar.txt"
out=bench/results/scaling.md
{
  echo "# Data-parallel scaling of mrl-trainer (MPI, CPU)"
  echo
  echo "Reproduce: \`STEPS=$STEPS BATCH=$BATCH bash bench/scaling.sh\` (after \`bash ops/build.sh\`)."
  echo
  echo "conv4 encoder, d=2048, 9 MRL heads, batch $BATCH per rank, one intra-op thread per rank, ranks"
  echo "bound to cores (\`--bind-to core\`), Open MPI shared-memory transport; median img/s over"
  echo "10-step windows of $STEPS steps (first dropped). Gradient: ~0.96 M float32 = 3.8 MB per step, one"
  echo "bucket. This machine has $cores cores, so only 1 and $([ "$cores" -ge 2 ] && echo 2 || echo 1) ranks fit without sharing cores."
  echo
  echo "| ranks | global img/s | ideal (ranks x 1-rank) | scaling efficiency |"
  echo "|---:|---:|---:|---:|"
  for n in 1 2 4 8; do
    [ -n "${R[$n]:-}" ] || continue
    ideal=$((R[1] * n))
    eff=$(awk -v a="${R[$n]}" -v b="$ideal" 'BEGIN{printf "%.1f%%", 100*a/b}')
    echo "| $n | ${R[$n]} | $ideal | $eff |"
  done
  echo
  echo "## All-reduce bandwidth (mpirun -np 2 build/bench/allreduce_bench)"
  echo
  echo '```'
  cat "$tmp/ar.txt"
  echo '```'
  echo
  echo "busbw = S/t x 2(n-1)/n; ring bound on t = 2(n-1)/n x S/B with B = measured memcpy bandwidth."
} > "$out"
rm -rf "$tmp"
cat "$out"
