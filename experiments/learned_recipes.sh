#!/usr/bin/env bash
# Learned MLP codes beyond the paper's recipe (issue 12), k = 2, on the F of
# experiments/recipes.sh (runs/recipes/<name>-mlp): the paper's loss
# (mse-base, constant learning rate) against kl-base with warm-up + cosine.
#   bash experiments/learned_recipes.sh mnist [EPOCHS] [DATA_ROOT] [RECIPES] [SEEDS] [ENCODER]
# RECIPES: any of "paper kl-cosine kl-cosine-worst kl-cosine-d4
# kl-cosine-worst-d4 kl-cosine-w1 kl-cosine-w1-worst xent-cosine
# xent-cosine-d4" (default:
# paper kl-cosine xent-cosine; "worst": the loss of the worst erasure
# pattern, learned.patterns=worst; "d4": a 4x wider decoder);
# SEEDS e.g. "0 1 2" (default 0); ENCODER mlp (default) or conv.
# Each run: runs/recipes/<name>-mlp/learned-[conv-]<recipe>-e<EPOCHS>-s<seed>
# (conv: validated every epoch and saved every 100 steps too, so a stopped
# run resumes mid-epoch).
set -euo pipefail
name=$1
epochs=${2:-60}
root=${3:-../shared/data}
which=${4:-paper kl-cosine xent-cosine}
seeds=${5:-0}
encoder=${6:-mlp}
prefix=learned- every=5 extra=
if [ "$encoder" = conv ]; then
  prefix=learned-conv- every=1 extra=,checkpoint_every_steps=100
fi
base=runs/recipes/$name-mlp

declare -A recipe=(
  [paper]="loss=mse-base"
  [kl-cosine]="loss=kl-base,schedule=cosine,warmup_epochs=2"
  [kl-cosine-worst]="loss=kl-base,schedule=cosine,warmup_epochs=2,patterns=worst"
  [kl-cosine-d4]="loss=kl-base,schedule=cosine,warmup_epochs=2,decoder_width=4"
  [kl-cosine-worst-d4]="loss=kl-base,schedule=cosine,warmup_epochs=2,patterns=worst,decoder_width=4"
  [kl-cosine-w1]="loss=kl-base,schedule=cosine,warmup_epochs=1"
  [kl-cosine-w1-worst]="loss=kl-base,schedule=cosine,warmup_epochs=1,patterns=worst"
  [xent-cosine]="loss=xent-label,schedule=cosine,warmup_epochs=2"
  [xent-cosine-d4]="loss=xent-label,schedule=cosine,warmup_epochs=2,decoder_width=4"
)
for seed in $seeds; do
  for r in $which; do
    dir="$base/$prefix$r-e$epochs-s$seed"
    python train.py --config "configs/learned.py:dataset=npz:$root/$name,model=mlp,encoder=$encoder,k=2,seed=$seed,base_epochs=30,epochs=$epochs,eval_every=$every,${recipe[$r]}$extra" \
      --config.base_workdir="$base" --workdir "$dir" > /dev/null
    python experiments/run_summary.py --available "$dir"
  done
done
