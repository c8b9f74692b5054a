#!/usr/bin/env bash
# The paper's table on the 1000-class triplet task (issue 14): three Fashion-MNIST items side by
# side, label 100*c1 + 10*c2 + c3 (data.kind=fmnist3, trainer/data.h). The same sweep and report
# as bench/fmnist_mrl.sh: MRL (SEEDS), and MRL-E, FF-m, SVD of FF-2048 at OTHER_SEEDS (0), every
# model on the same budget. Writes bench/results/fmnist3_mrl.{md,png,json}; each finished run's
# results are kept in bench/results/fmnist3_runs/ (commit them: the sweep spans sessions).
# Usage: EPOCHS=4 COMPOSITES=55000 bash bench/fmnist3_mrl.sh
cd "$(dirname "$0")/.." && TASK=fmnist3 exec bash bench/fmnist_mrl.sh "$@"
