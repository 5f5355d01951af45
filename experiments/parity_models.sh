#!/usr/bin/env bash
# Parity models with the paper's budget (500 epochs) on real MNIST or
# Fashion-MNIST, k = 2, 3, 4, one shared Base-MLP per dataset.
#   bash experiments/parity_models.sh mnist [DATA_ROOT]
#   bash experiments/parity_models.sh fashion_mnist [DATA_ROOT]
# DATA_ROOT holds <name>/train.npz and test.npz (default ../shared/data).
# Results: runs/<name>-mlp/parity-k<k>/eval.json (see docs/RESULTS.md).
set -euo pipefail
name=$1
root=${2:-../shared/data}
base=runs/$name-mlp
for k in 2 3 4; do
  python train.py \
    --config "configs/parity.py:dataset=npz:$root/$name,model=mlp,k=$k,base_epochs=30,epochs=500,eval_every=25" \
    --config.base_workdir="$base" --workdir "$base/parity-k$k"
done
