#!/usr/bin/env bash
# The large-k study's additions (issue 14), after experiments/large_k.sh:
# 1. learned MLP codes (configs/learned.py, encoder=mlp, LOSS, cosine
#    schedule, LEARNED_EPOCHS epochs; kl-base was chosen over mse-base on
#    MNIST's validation split) at k = 8, 10, 12 with r = 1 on each
#    dataset's Base-MLP F from large_k.sh, merged into its compare table
#    (compare.py --merge: the other rows are kept, not evaluated again);
# 2. a LeNet-5 F on MNIST (LENET_EPOCHS epochs) with the training-free codes
#    (both Berrut variants, spline) at k = 8, 10, 12, r = 1, 2, 3.
#   bash experiments/large_k_extra.sh [DATA_ROOT] [LEARNED_EPOCHS] \
#       [LENET_EPOCHS] [LOSS]
# DATA_ROOT holds <name>/train.npz and test.npz (default ../shared/data).
# Defaults 2, 3, kl-base: about 65 minutes on a shared 2-core CPU
# (docs/RESULTS.md). Resumable: finished runs are reused. Results:
# docs/large_k/<name>/compare.* and docs/large_k/mnist_lenet5/compare.*
set -euo pipefail
root=${1:-../shared/data}
learned_epochs=${2:-2}
lenet_epochs=${3:-3}
loss=${4:-kl-base}

# LeNet-5 F on MNIST and the training-free codes on it.
base=runs/large_k/mnist-lenet5
python train.py --config \
  "configs/parity.py:dataset=npz:$root/mnist,model=lenet5,base_epochs=$lenet_epochs,code=berrut" \
  --workdir "$base"
free=()
for k in 8 10 12; do
  for r in 1 2 3; do
    for code in berrut approxifer spline; do free+=("$code:$k:$r:$r"); done
  done
done
python compare.py --out docs/large_k/mnist_lenet5 --base_workdir "$base" \
  --training_free "$(IFS=,; echo "${free[*]}")"

# Learned MLP codes on the Base-MLP F of large_k.sh.
for name in mnist fashion_mnist; do
  base=runs/large_k/$name-mlp
  data="dataset=npz:$root/$name,model=mlp,base_epochs=30"
  workdirs=()
  for k in 8 10 12; do
    run="$base/learned-k$k-r1"
    python train.py --config \
      "configs/learned.py:$data,encoder=mlp,loss=$loss,schedule=cosine,k=$k,r=1,epochs=$learned_epochs,eval_every=1" \
      --config.base_workdir="$base" --workdir "$run"
    workdirs+=("$run")
  done
  python compare.py --merge "docs/large_k/$name" --out "docs/large_k/$name" \
    --workdirs "$(IFS=,; echo "${workdirs[*]}")"
done
