#!/usr/bin/env bash
# Object localisation with no download, the protocol of the paper's CUB-200
# experiment (§V-E) on real MNIST digits placed at random on a 64 x 64 canvas
# (dataset=digits-localization): F regresses the digit's box, then a k = 2
# parity model learns the sum of F's boxes. About 10 minutes on two busy CPU
# cores.
#   bash experiments/localization.sh [WORKDIR]
# Results: WORKDIR/eval.json (default runs/digits-localization-k2), reported
# in docs/RESULTS.md.
set -euo pipefail
workdir=${1:-runs/digits-localization-k2}
python train.py \
  --config "configs/localization.py:dataset=digits-localization,image_size=0,model=lenet5,k=2,base_epochs=6,epochs=10,eval_every=2" \
  --workdir "$workdir"
