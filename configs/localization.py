"""Object localisation (paper §V-E): CUB-200-2011 bird boxes, ResNet-18.

  python train.py --config configs/localization.py --workdir runs/cub
  # No download: real MNIST digits placed on a 64 x 64 canvas (the run of
  # docs/RESULTS.md is experiments/localization.sh):
  python train.py --config configs/localization.py:\
dataset=digits-localization,image_size=0 --workdir runs/digits-loc

F regresses 4 box coordinates (ymin, xmin, ymax, xmax), normalised to [0, 1],
with MSE; the parity model is trained with MSE toward the sum of F's boxes
and a missing box is decoded by subtraction. eval.json reports the mean IoU
and the fraction with IoU >= 0.75 of F's boxes (available) and of the
reconstructions (degraded) against the true boxes, the reconstructions' IoU
with F's own boxes, and a default prediction (the mean training box); the
classification accuracy fields are null.

Paper setup (§V-E and the reference's `train/cub-localization`): images
resized to 224 x 224, ResNet-18 (ImageNet layout, not pretrained), F trained
with smooth-L1 for 160 epochs, the k = 2 parity model with MSE, batch 128,
1000 epochs, Adam 1e-3, L2 1e-5, on its own 80/20 split of CUB-200-2011
(tfds `caltech_birds2011` has the official 5,994 / 5,794 split). Result: mean
IoU 0.95 for F and 0.67 for k = 2 reconstructions.
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.dataset = "caltech_birds2011"
  config.image_size = 224
  config.model = "resnet18"
  return common.apply_args(config, arg)
