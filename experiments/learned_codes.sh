#!/usr/bin/env bash
# Learned codes (k = 2, r = 1, Base-MLP) on real MNIST and Fashion-MNIST,
# trained through the frozen base models trained by parity_models.sh.
#   bash experiments/learned_codes.sh [DATA_ROOT] [EPOCHS] [ENCODERS]
# The paper trains 500 epochs. On a 2-core CPU an epoch of the MLP encoder
# takes 5-15 s and one of the conv encoder about 5 minutes, so the budgets
# run here were 80 (mlp) and 2 (conv) epochs; on an accelerator:
# bash experiments/learned_codes.sh ../shared/data 500 "mlp conv".
set -euo pipefail
root=${1:-../shared/data}
epochs=${2:-40}
encoders=${3:-mlp}
for name in mnist fashion_mnist; do
  base=runs/$name-mlp
  for encoder in $encoders; do
    python train.py \
      --config "configs/learned.py:dataset=npz:$root/$name,encoder=$encoder,loss=mse-base,k=2,epochs=$epochs,eval_every=5" \
      --config.base_workdir="$base" --workdir "$base/learned-$encoder-k2"
  done
done
