#!/usr/bin/env bash
# The large-k study (issue 14): k = 8, 10, 12 with r = 1, 2, 3 stragglers on
# real MNIST and Fashion-MNIST, one Base-MLP per dataset shared by every code:
# the training-free codes (systematic Berrut, ApproxIFER's non-systematic
# Berrut, smoothing splines with lambdas chosen on the validation split),
# linear-code parity models (EPOCHS epochs each) and the default prediction.
#   bash experiments/large_k.sh [DATA_ROOT] [EPOCHS]
# DATA_ROOT holds <name>/train.npz and test.npz (default ../shared/data).
# Resumable: finished runs are reused. Results: docs/large_k/<name>/compare.*
# Learned codes and a LeNet-5 F: experiments/large_k_extra.sh, afterwards.
set -euo pipefail
root=${1:-../shared/data}
epochs=${2:-60}
for name in mnist fashion_mnist; do
  base=runs/large_k/$name-mlp
  data="dataset=npz:$root/$name,model=mlp,base_epochs=30"
  # F alone (a training-free code trains nothing else).
  python train.py --config "configs/parity.py:$data,code=berrut" \
    --workdir "$base"
  workdirs=() free=()
  for k in 8 10 12; do
    for r in 1 2 3; do
      python train.py --config \
        "configs/parity.py:$data,code=linear,k=$k,r=$r,epochs=$epochs,eval_every=$epochs" \
        --config.base_workdir="$base" --workdir "$base/linear-k$k-r$r"
      workdirs+=("$base/linear-k$k-r$r")
      for code in berrut approxifer spline; do free+=("$code:$k:$r:$r"); done
    done
  done
  python compare.py --out "docs/large_k/$name" --base_workdir "$base" \
    --training_free "$(IFS=,; echo "${free[*]}")" \
    --workdirs "$(IFS=,; echo "${workdirs[*]}")"
done
