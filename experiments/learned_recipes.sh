#!/usr/bin/env bash
# Learned MLP codes beyond the paper's recipe (issue 12), k = 2, on the F of
# experiments/recipes.sh (runs/recipes/<name>-mlp): the paper's loss
# (mse-base, constant learning rate) against kl-base with warm-up + cosine.
#   bash experiments/learned_recipes.sh mnist [EPOCHS] [DATA_ROOT] [RECIPES]
# RECIPES: any of "paper kl-cosine xent-cosine" (default: all three).
# Each run: runs/recipes/<name>-mlp/learned-<recipe>-e<EPOCHS>-s0.
set -euo pipefail
name=$1
epochs=${2:-60}
root=${3:-../shared/data}
which=${4:-paper kl-cosine xent-cosine}
base=runs/recipes/$name-mlp

declare -A recipe=(
  [paper]="loss=mse-base"
  [kl-cosine]="loss=kl-base,schedule=cosine,warmup_epochs=2"
  [xent-cosine]="loss=xent-label,schedule=cosine,warmup_epochs=2"
)
for r in $which; do
  dir="$base/learned-$r-e$epochs-s0"
  python train.py --config "configs/learned.py:dataset=npz:$root/$name,model=mlp,encoder=mlp,k=2,seed=0,base_epochs=30,epochs=$epochs,eval_every=5,${recipe[$r]}" \
    --config.base_workdir="$base" --workdir "$dir" > /dev/null
  python -c "import json, sys
v = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl') if 'val_degraded_accuracy' in l][-1]
e = json.load(open(sys.argv[1] + '/eval.json'))
print(sys.argv[1], 'val A_d', round(100 * v['val_degraded_accuracy'], 2), 'test A_a', round(100 * e['available_accuracy'], 2), 'test A_d', round(100 * e['degraded_accuracy'], 2))" "$dir"
done
