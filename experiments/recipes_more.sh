#!/usr/bin/env bash
# Beyond the first recipe study (issue 12): more capacity, a higher
# temperature and the concatenation code with the best recipe of
# experiments/recipes.sh, on the same F (runs/recipes/<name>-mlp, which
# recipes.sh must have trained); seeds 0 (default) or more.
#   bash experiments/recipes_more.sh NAME [EPOCHS] [DATA_ROOT] [KS] [RECIPES] [SEEDS]
#   bash experiments/recipes_more.sh mnist 50 ../shared/data "2 3" "kl-t4-w4" "0 1 2"
# Each run: runs/recipes/<name>-mlp/k<k>-<recipe>-e<EPOCHS>-s<seed>; prints
# its final validation A_d (metrics.jsonl, used to choose) and test A_d.
set -euo pipefail
name=$1
epochs=${2:-50}
root=${3:-../shared/data}
ks=${4:-2 3}
which=${5:-kl-t4-w4 kl-t4-w8 kl-t8-w4}
seeds=${6:-0}
base=runs/recipes/$name-mlp

declare -A recipe=(
  [kl-t4-w4]="parity_loss=decoded-kl,temperature=4,width=4"
  [kl-t4-w8]="parity_loss=decoded-kl,temperature=4,width=8"
  [kl-t8-w4]="parity_loss=decoded-kl,temperature=8,width=4"
  [concat]="code=concatenation"
  [concat-kl-t4-w4]="code=concatenation,parity_loss=decoded-kl,temperature=4,width=4"
  [concat-kl-t4-w4-cos]="code=concatenation,parity_loss=decoded-kl,temperature=4,width=4,schedule=cosine,warmup_epochs=2"
)
for seed in $seeds; do
for k in $ks; do
  for r in $which; do
    dir="$base/k$k-$r-e$epochs-s$seed"
    python train.py --config "configs/parity.py:dataset=npz:$root/$name,model=mlp,k=$k,seed=$seed,base_epochs=30,epochs=$epochs,eval_every=5,${recipe[$r]}" \
      --config.base_workdir="$base" --workdir "$dir" > /dev/null
    python experiments/run_summary.py "$dir"
  done
done
done
