#!/usr/bin/env bash
# Paper Table 1/2 shape on Fashion-MNIST: MRL, MRL-E, FF-m (one model per m) and SVD, every model
# on the same budget (epochs, batch, schedule, augmentation, encoder). Writes
# bench/results/fmnist_mrl.md + .png + .json. Resumable: finished runs are reused.
# Usage: bash bench/fmnist_mrl.sh   (EPOCHS=4 FF_DIMS="8 16 32 64 2048" SEEDS="0 1 2" by default)
# Every model is trained once per seed (runs NAME-sSEED); the report gives mean ± sd over seeds.
# One binary (mrl-trainer) trains every model; each run's effective config is copied next to the
# report (bench/results/fmnist_mrl_configs/).
# TASK=fmnist3 (bench/fmnist3_mrl.sh) runs the same sweep on the 1000-class triplet task
# (data.kind=fmnist3) into bench/results/fmnist3_mrl*, with COMPOSITES training composites per
# epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=${TASK:-fmnist}
EPOCHS=${EPOCHS:-4}
FF_DIMS=${FF_DIMS:-"8 16 32 64 2048"}
SEEDS=${SEEDS:-"0 1 2"}
if [ "$TASK" = fmnist3 ]; then
  COMPOSITES=${COMPOSITES:-55000}
  # LR 0.2: a 1-epoch probe of MRL on 20000 composites (bench/results/fmnist3_lr_probe/) gave
  # linear top-1 at 8-d / 2048-d of 0.5/26.9 (lr 0.05), 1.9/35.4 (0.1), 7.4/37.6 (0.2).
  # MRL-E keeps the ratio that trained on Fashion-MNIST (0.02 of 0.05): 0.4 x LR.
  LR=${LR:-0.2}
  MRL_E_LR=${MRL_E_LR:-$(echo "$LR * 0.4" | bc -l | sed 's/^\./0./;s/0*$//')}
  # Runs beside the table that try to close the FF-8 gap (the report's variants section), as
  # NAME:SEED,SEED...: mrl-lw (loss weights c_m = 2 at 8 and 16 dims, 1 elsewhere), mrl-lwn (the
  # same renormalised to mean 1), mrl-lr (plain MRL at LR x 11/9, mrl-lw's gradient scale),
  # lr-ff-8 (FF-8 at that lr).
  VARIANTS=${VARIANTS-"mrl-lw:0 mrl-lwn:0,1,2"}
  CMD="EPOCHS=$EPOCHS COMPOSITES=$COMPOSITES LR=$LR FF_DIMS=\"$FF_DIMS\" SEEDS=\"$SEEDS\" VARIANTS=\"$VARIANTS\" bash bench/fmnist3_mrl.sh"
  TASK_ARGS=(--set data.kind=fmnist3 --set data.composites="$COMPOSITES" --set optim.lr="$LR")
  OUT=bench/results/fmnist3_mrl
else
  VARIANTS=${VARIANTS-}
  CMD="EPOCHS=$EPOCHS FF_DIMS=\"$FF_DIMS\" SEEDS=\"$SEEDS\" bash bench/fmnist_mrl.sh"
  TASK_ARGS=()
  MRL_E_LR=0.02
  OUT=bench/results/fmnist_mrl
fi
STAMP=$(/usr/bin/python3 bench/provenance.py "$CMD")
RUNS=${RUNS:-bench/runs/$TASK}
BIN=./build/trainer/mrl-trainer
[ -x "$BIN" ] || bash ops/build.sh build
ALL_DIMS="[8,16,32,64,128,256,512,1024,2048]"
common=(--epochs "$EPOCHS" --set log_every=100 --set export_embeddings=false ${TASK_ARGS[@]+"${TASK_ARGS[@]}"})
# Each finished run's results.json is also kept in git (bench/results/fmnist_runs/NAME.json,
# a few KB each): the sweep is ~2.5 h on 2 cores, so it may span sessions; a run found there is
# restored and not trained again. The report names the commit every run was trained at.
KEEP=bench/results/${TASK}_runs
run() {  # name, args...
  local name=$1; shift
  if [ ! -f "$RUNS/$name/results.json" ] && [ -f "$KEEP/$name.json" ]; then
    mkdir -p "$RUNS/$name" && cp "$KEEP/$name.json" "$RUNS/$name/results.json"
  fi
  if [ -f "$RUNS/$name/results.json" ]; then echo "[bench] $name: done already"; return; fi
  echo "[bench] $name: $BIN ${common[*]} $* --out $RUNS/$name"
  "$BIN" "${common[@]}" "$@" --out "$RUNS/$name" > "$RUNS/$name.log" 2>&1 || {
    echo "[bench] $name failed:"; tail -5 "$RUNS/$name.log"; exit 1; }
  grep -E "^\[train\].*step ([0-9]+)/\1 " "$RUNS/$name.log" | tail -1 || true
  cp "$RUNS/$name/results.json" "$KEEP/$name.json"
}
mkdir -p "$RUNS" "$KEEP" bench/results
# The models in the order they are trained (per seed). OTHER_SEEDS: the seeds at which the models
# other than MRL are trained (all of SEEDS for fmnist; seed 0 for fmnist3, where the issue asks
# for MRL at 3 seeds and the others at least once). fmnist3 trains MRL, FF-2048 (+ SVD) and FF-8
# first: the headline comparisons.
if [ "$TASK" = fmnist3 ]; then
  OTHER_SEEDS=${OTHER_SEEDS:-0}
  ORDER="mrl ff-2048 ff-8 mrl-e $(for m in $FF_DIMS; do [ "$m" = 2048 ] || [ "$m" = 8 ] || echo "ff-$m"; done)"
else
  OTHER_SEEDS=${OTHER_SEEDS:-$SEEDS}
  ORDER="mrl mrl-e $(for m in $FF_DIMS; do echo "ff-$m"; done)"
fi
train_model() {  # model seed
  local model=$1 seed=$2
  local S=(--set seed="$seed")
  case "$model" in
    mrl) run "mrl-s$seed" --head mrl --set eval_svd=false "${S[@]}" ;;
    # MRL-E's shared head receives the summed gradient of all 9 nested losses: at lr 0.05 it
    # diverged on Fashion-MNIST (NaN at step 167); 0.02 is the largest of {0.05, 0.02} that trains.
    mrl-e) run "mrl-e-s$seed" --head mrl-e --set eval_svd=false --set optim.lr="$MRL_E_LR" "${S[@]}" ;;
    # The SVD baseline projects this fixed-feature model's 2048-d embedding (as in the paper).
    ff-2048) run "ff-2048-s$seed" --head ff --dim 2048 --set eval_dims="$ALL_DIMS" --set eval_svd=true "${S[@]}" ;;
    ff-*) run "$model-s$seed" --head ff --dim "${model#ff-}" --set eval_svd=false "${S[@]}" ;;
    mrl-lw) run "mrl-lw-s$seed" --head mrl --set eval_svd=false "${S[@]}" \
      --set 'model.nesting_weights=[2,2,1,1,1,1,1,1,1]' ;;
    mrl-lwn) run "mrl-lwn-s$seed" --head mrl --set eval_svd=false "${S[@]}" \
      --set 'model.nesting_weights=[1.636,1.636,0.818,0.818,0.818,0.818,0.818,0.818,0.818]' ;;
    mrl-lr) run "mrl-lr-s$seed" --head mrl --set eval_svd=false "${S[@]}" \
      --set optim.lr="$(awk "BEGIN { printf \"%.4g\", $LR * 11 / 9 }")" ;;
    lr-ff-8) run "lr-ff-8-s$seed" --head ff --dim 8 --set eval_svd=false "${S[@]}" \
      --set optim.lr="$(awk "BEGIN { printf \"%.4g\", $LR * 11 / 9 }")" ;;
    *) echo "[bench] unknown model '$model'"; exit 2 ;;
  esac
}
for seed in $SEEDS; do
  for model in $ORDER; do
    if [ "$model" != mrl ] && ! echo " $OTHER_SEEDS " | grep -q " $seed "; then continue; fi
    if [[ "$model" == ff-* ]] && ! echo " $FF_DIMS " | grep -q " ${model#ff-} "; then continue; fi
    train_model "$model" "$seed"
    [ -z "${AFTER_EACH:-}" ] || eval "$AFTER_EACH"
  done
done
for v in $VARIANTS; do
  for seed in $(echo "${v#*:}" | tr , ' '); do train_model "${v%%:*}" "$seed"; done
done
/usr/bin/python3 bench/fmnist_report.py --runs "$RUNS" --out "$OUT" --stamp "$STAMP" \
  --seeds "$SEEDS" --task "$TASK" --command "$CMD"
