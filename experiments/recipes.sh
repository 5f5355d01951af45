#!/usr/bin/env bash
# Recipe study for parity models (issue 12), Base-MLP, real MNIST or
# Fashion-MNIST, at a reduced stage-2 budget (docs/RESULTS.md).
#   bash experiments/recipes.sh mnist [EPOCHS] [DATA_ROOT] [KS]
#   bash experiments/recipes.sh fashion_mnist 50 ../shared/data "2 3 4"
# DATA_ROOT holds <name>/train.npz and test.npz (default ../shared/data).
#
# 1. F once per dataset (30 epochs), reused by every run (base_workdir).
# 2. k = 2, seed 0: the paper's recipe and each lever alone, EPOCHS each.
# 3. Their combination; the best recipe is the highest *validation* A_d at
#    the last epoch (metrics.jsonl), never the test split.
# 4. For each k in KS: the paper's recipe and the best one, seeds 0, 1, 2
#    (data_seed fixed at 0).
# Prints the tables; each run is runs/recipes/<name>-mlp/k<k>-<recipe>-s<seed>.
set -euo pipefail
name=$1
epochs=${2:-50}
root=${3:-../shared/data}
ks=${4:-2 3 4}
base=runs/recipes/$name-mlp

declare -A recipe=(
  [paper]=""
  [init-base]="init=base"
  [width2]="width=2"
  [cosine]="schedule=cosine,warmup_epochs=2"
  [decoded-kl]="parity_loss=decoded-kl"
  [decoded-kl-t4]="parity_loss=decoded-kl,temperature=4"
  [decoded-xent-top1]="parity_loss=decoded-xent-top1"
  [decoded-xent-label]="parity_loss=decoded-xent-label"
)
levers="init-base width2 cosine decoded-kl decoded-kl-t4 decoded-xent-top1
  decoded-xent-label"

run() {  # run <recipe name> <overrides> <k> <seed>
  local args="dataset=npz:$root/$name,model=mlp,k=$3,seed=$4,base_epochs=30"
  args="$args,epochs=$epochs,eval_every=5${2:+,$2}"
  python train.py --config "configs/parity.py:$args" \
    --config.base_workdir="$base" --workdir "$base/k$3-$1-s$4" > /dev/null
}

val() {  # final validation A_d of a run
  python -c "import json, sys; print([json.loads(l) for l in open(sys.argv[1])
      if 'val_degraded_accuracy' in l][-1]['val_degraded_accuracy'])" \
    "$base/$1/metrics.jsonl"
}

better() {  # 1 if $1 > $2
  python -c "import sys; print(int(float(sys.argv[1]) > float(sys.argv[2])))" \
    "$1" "$2"
}

# Levers alone, k = 2, seed 0.
for r in paper $levers; do
  run "$r" "${recipe[$r]}" 2 0
  echo "k=2 $r: validation A_d $(val "k2-$r-s0")"
done

# The combination of the levers that helped: the best loss, the better of
# init-base and width2, and the cosine schedule.
paper_val=$(val k2-paper-s0)
pick() {  # the best of the given levers that beat the paper, or nothing
  local best="" best_val=$paper_val
  for r in "$@"; do
    v=$(val "k2-$r-s0")
    if [[ $(better "$v" "$best_val") == 1 ]]; then best=$r; best_val=$v; fi
  done
  echo "$best"
}
combo=""
for r in $(pick decoded-kl decoded-kl-t4 decoded-xent-top1 decoded-xent-label) \
    $(pick init-base width2) $(pick cosine); do
  combo="${combo:+$combo,}${recipe[$r]}"
done
recipe[combo]=$combo
echo "combination: ${combo:-(none helped)}"
if [[ -n $combo ]]; then
  run combo "$combo" 2 0
  echo "k=2 combo: validation A_d $(val k2-combo-s0)"
fi

best=paper best_val=$paper_val
for r in $levers ${combo:+combo}; do
  v=$(val "k2-$r-s0")
  if [[ $(better "$v" "$best_val") == 1 ]]; then best=$r; best_val=$v; fi
done
echo "best recipe on validation: $best (${recipe[$best]:-paper}), $best_val"
echo "$best ${recipe[$best]}" > "$base/best-recipe.txt"

# Three seeds, paper and best, each k.
for k in $ks; do
  for seed in 0 1 2; do
    for r in paper $best; do
      run "$r" "${recipe[$r]}" "$k" "$seed"
    done
  done
done

recipes=paper
[[ $best == paper ]] || recipes="paper,$best"
python experiments/recipe_table.py --runs "$base" --recipes "$recipes" \
  --ks "${ks// /,}"
