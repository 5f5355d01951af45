#!/usr/bin/env bash
# The coding-scheme comparison on real Fashion-MNIST with one Base-MLP:
# summation (from parity_models.sh), concatenation and linear r = 2 parity
# models, learned codes (from learned_codes.sh), Berrut, default prediction.
#   bash experiments/compare_fashion.sh [DATA_ROOT] [EPOCHS]
set -euo pipefail
root=${1:-../shared/data}
epochs=${2:-500}
base=runs/fashion_mnist-mlp
data="dataset=npz:$root/fashion_mnist,model=mlp,base_epochs=30,epochs=$epochs,eval_every=25"
for k in 2 3 4; do
  python train.py --config "configs/parity.py:$data,code=concatenation,k=$k" \
    --config.base_workdir="$base" --workdir "$base/concat-k$k"
done
python train.py --config "configs/parity.py:$data,code=linear,k=4,r=2" \
  --config.base_workdir="$base" --workdir "$base/linear-k4-r2"
python compare.py --out docs/compare_fashion --berrut 2:1:1,3:1:1,4:1:1,4:2:2 \
  --workdirs "$base/parity-k2,$base/parity-k3,$base/parity-k4,$base/concat-k2,$base/concat-k3,$base/concat-k4,$base/linear-k4-r2,$base/learned-mlp-k2,$base/learned-conv-k2"
