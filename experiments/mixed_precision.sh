#!/usr/bin/env bash
# Effect of mixed precision (bf16 compute, f32 master weights) on A_a and A_d:
# the same Base-MLP + k = 2 parity-model run on real MNIST in f32 and in bf16.
#   bash experiments/mixed_precision.sh [DATA_ROOT] [EPOCHS]
set -euo pipefail
root=${1:-../shared/data}
epochs=${2:-50}
for mp in false true; do
  python train.py \
    --config "configs/parity.py:dataset=npz:$root/mnist,k=2,base_epochs=10,epochs=$epochs,eval_every=10,mixed_precision=$mp" \
    --workdir "runs/mixed-precision-$mp"
done
