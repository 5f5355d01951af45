"""CIFAR-100 (paper §V-E): ResNet-152 base and parity models, top-5 accuracy.

  python train.py --config configs/cifar100.py --workdir runs/cifar100
  python train.py --config configs/cifar100.py:k=3 --workdir runs/cifar100-k3

eval.json holds top-1 and top-5 accuracy (`available_top5_accuracy`,
`degraded_top5_accuracy`); the paper reports top-5 for CIFAR-100.

Paper setup (§V-E and the reference's cifar100 config): ResNet-152 (CIFAR
stem) base and parity models, addition encoder and subtraction decoder, MSE,
Adam 1e-3, L2 1e-5, batch 32-64, k = 2, 3, 4, 1000 parity-model epochs.
Result: at k = 2 the degraded accuracy is at most 6.5 points below A_a across
the image and speech tasks (Fig. 8; the CIFAR-100 values appear only in the
figure).
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.dataset = "cifar100"
  config.model = "resnet152"
  return common.apply_args(config, arg)
