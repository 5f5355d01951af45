"""Parity models (paper §V): a simple code plus a learned parity model F_P.

  python train.py --config configs/parity.py --workdir runs/quickstart
  python evaluate.py --config configs/parity.py --workdir runs/quickstart

Arguments after the file name override fields, e.g. the paper's MNIST budget:

  python train.py --config configs/parity.py:dataset=npz:../shared/data/mnist,\
base_epochs=30,epochs=500,k=2 --workdir runs/mnist-mlp-k2

Codes: summation (r = 1), linear (any r, one parity model per parity),
concatenation (images tiled into one parity image). See docs/RESULTS.md for
measured accuracies beside the paper's.
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  return common.apply_args(config, arg)
