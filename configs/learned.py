"""Learned encoder and decoder (paper §IV), trained through the frozen F.

  python train.py --config configs/learned.py:encoder=conv,loss=mse-base,k=2 \
      --workdir runs/learned

Paper setup: Adam 1e-3, L2 1e-5, 64 groups per minibatch (32 for k >= 3),
500 epochs on MNIST and Fashion-MNIST (Table IV: MNIST Base-MLP A_d 97.76 /
97.70, Fashion-MNIST 81.96 / 82.53 for the MLP / Conv encoders).
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.code = "learned"
  config = common.apply_args(config, arg)
  if config.k >= 3 and "batch_size" not in (arg or ""):
    config.parity.batch_size = 32
  return config
