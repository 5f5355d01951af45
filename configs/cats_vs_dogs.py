"""Cat v. Dog (paper §V-E): 224 x 224 images, ResNet-18, concatenation code.

  python train.py --config configs/cats_vs_dogs.py --workdir runs/cats-dogs
  # The generic addition encoder instead of the image concatenation one:
  python train.py --config configs/cats_vs_dogs.py:code=summation \
      --workdir runs/cats-dogs-sum

tfds `cats_vs_dogs` has a train split only (23,262 images): a tenth is held
out as the test split, then a tenth of the rest for validation (seeded).

Paper setup (§V-E and the reference's cat_v_dog configs): images resized to
224 x 224, ResNet-18 base and parity models, the concatenation encoder (each
image downsampled and tiled into one parity image, k = 2 and 4) or the
addition encoder, subtraction decoder, MSE, Adam 1e-3, L2 1e-5, batch
32-64, 1000 parity-model epochs. Result: at k = 2 the degraded accuracy is
at most 6.5 points below A_a across the image and speech tasks (Fig. 8; the
Cat v. Dog values appear only in the figure).
"""

from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.dataset = "cats_vs_dogs"
  config.image_size = 224
  config.model = "resnet18"
  config.code = "concatenation"
  return common.apply_args(config, arg)
