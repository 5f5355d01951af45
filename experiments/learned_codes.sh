#!/usr/bin/env bash
# Learned codes (k = 2, r = 1, Base-MLP) on real MNIST and Fashion-MNIST with
# both encoders, through the frozen base models trained by parity_models.sh.
#   bash experiments/learned_codes.sh [DATA_ROOT] [MLP_EPOCHS] [CONV_EPOCHS]
# The paper trains 500 epochs; a 2-core CPU affords far fewer (an epoch of the
# conv encoder takes minutes), so the budget is an argument and is recorded
# in each run's config.json and in docs/RESULTS.md.
set -euo pipefail
root=${1:-../shared/data}
mlp_epochs=${2:-40}
conv_epochs=${3:-3}
for name in mnist fashion_mnist; do
  base=runs/$name-mlp
  python train.py \
    --config "configs/learned.py:dataset=npz:$root/$name,encoder=mlp,loss=mse-base,k=2,epochs=$mlp_epochs,eval_every=5" \
    --config.base_workdir="$base" --workdir "$base/learned-mlp-k2"
  python train.py \
    --config "configs/learned.py:dataset=npz:$root/$name,encoder=conv,loss=mse-base,k=2,epochs=$conv_epochs,eval_every=1" \
    --config.base_workdir="$base" --workdir "$base/learned-conv-k2"
done
