#!/usr/bin/env bash
# Learned MLP codes beyond the paper's recipe (issue 12), k = 2, on the F of
# experiments/recipes.sh (runs/recipes/<name>-mlp): the paper's loss
# (mse-base, constant learning rate) against kl-base with warm-up + cosine.
#   bash experiments/learned_recipes.sh mnist [EPOCHS] [DATA_ROOT] [RECIPES] [SEEDS]
# RECIPES: any of "paper kl-cosine xent-cosine" (default: all three); SEEDS
# e.g. "0 1 2" (default 0).
# Each run: runs/recipes/<name>-mlp/learned-<recipe>-e<EPOCHS>-s<seed>.
set -euo pipefail
name=$1
epochs=${2:-60}
root=${3:-../shared/data}
which=${4:-paper kl-cosine xent-cosine}
seeds=${5:-0}
base=runs/recipes/$name-mlp

declare -A recipe=(
  [paper]="loss=mse-base"
  [kl-cosine]="loss=kl-base,schedule=cosine,warmup_epochs=2"
  [xent-cosine]="loss=xent-label,schedule=cosine,warmup_epochs=2"
)
for seed in $seeds; do
  for r in $which; do
    dir="$base/learned-$r-e$epochs-s$seed"
    python train.py --config "configs/learned.py:dataset=npz:$root/$name,model=mlp,encoder=mlp,k=2,seed=$seed,base_epochs=30,epochs=$epochs,eval_every=5,${recipe[$r]}" \
      --config.base_workdir="$base" --workdir "$dir" > /dev/null
    python experiments/run_summary.py --available "$dir"
  done
done
