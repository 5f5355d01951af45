"""Object localisation: boxes, IoU, and a digit-localisation dataset.

A box is 4 float32 coordinates `(ymin, xmin, ymax, xmax)` normalised by the
image height and width, so `(0, 0, 1, 1)` is the whole image (the convention
of tfds `BBoxFeature`, e.g. `caltech_birds2011`). A base model regresses the
4 coordinates; a parity model is trained toward the sum of the base model's
boxes and a box is decoded by subtraction, exactly as class scores are.

The digit-localisation task needs no download: each real MNIST digit of the
embedded dataset is scaled and placed at a random (seeded) position on a
black 64 x 64 canvas, and its true box is the box of its ink.
"""

import numpy as np

NUM_COORDS = 4
IOU_THRESHOLD = 0.75  # the reference's "correct localisation" threshold
CANVAS_SIZE = 64
DIGIT_SIZES = (16, 48)  # side of the scaled 28 x 28 digit, min and max


def iou(boxes_a, boxes_b) -> np.ndarray:
  """Intersection over union of `(..., 4)` boxes, elementwise.

  A box with ymax <= ymin or xmax <= xmin has no area; the IoU of two boxes
  without area is 0.
  """
  a, b = np.asarray(boxes_a, np.float64), np.asarray(boxes_b, np.float64)
  top = np.maximum(a[..., 0], b[..., 0])
  left = np.maximum(a[..., 1], b[..., 1])
  bottom = np.minimum(a[..., 2], b[..., 2])
  right = np.minimum(a[..., 3], b[..., 3])
  inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
  union = _area(a) + _area(b) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def clip_to_image(boxes) -> np.ndarray:
  """Predicted boxes cut to the image, as the reference does before IoU."""
  return np.clip(boxes, 0.0, 1.0)


def check_boxes(boxes, where: str) -> None:
  """Raises `ValueError` unless `boxes` are `(N, 4)` valid normalised boxes.

  Valid: finite, inside the image (every coordinate in [0, 1]) and with
  ymin < ymax and xmin < xmax.
  """
  boxes = np.asarray(boxes)
  if boxes.ndim != 2 or boxes.shape[1] != NUM_COORDS:
    raise ValueError(f"{where}: boxes must be (N, 4) (ymin, xmin, ymax, "
                     f"xmax), got shape {boxes.shape}")
  bad = ~np.isfinite(boxes).all(1)
  if bad.any():
    raise ValueError(f"{where}: box {_first(bad)} is not finite: "
                     f"{boxes[_first(bad)]}")
  outside = ((boxes < 0) | (boxes > 1)).any(1)
  if outside.any():
    raise ValueError(
        f"{where}: box {_first(outside)} = {boxes[_first(outside)]} lies "
        "outside the image; coordinates must be normalised to [0, 1] as "
        "(ymin, xmin, ymax, xmax)")
  empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
  if empty.any():
    raise ValueError(
        f"{where}: box {_first(empty)} = {boxes[_first(empty)]} has no area; "
        "expected (ymin, xmin, ymax, xmax) with ymin < ymax and xmin < xmax")


def digit_canvases(digits, seed: int):
  """Places each `(28, 28, 1)` uint8 digit on its own 64 x 64 canvas.

  Each digit is resized (bilinear) to a random side in `DIGIT_SIZES` and put
  at a random position where it fits whole.

  Returns:
    `(canvases, boxes)`: `(N, 64, 64, 1)` uint8 and `(N, 4)` float32 boxes
    of each digit's ink (its nonzero pixels before resizing).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  canvases = np.zeros((len(digits), CANVAS_SIZE, CANVAS_SIZE, 1), np.uint8)
  boxes = np.zeros((len(digits), NUM_COORDS), np.float32)
  for i, digit in enumerate(digits):
    digit = digit[..., 0]
    side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
    top, left = rng.integers(0, CANVAS_SIZE - side + 1, size=2)
    scaled = Image.fromarray(digit).resize((side, side), Image.BILINEAR)
    canvases[i, top:top + side, left:left + side, 0] = np.asarray(scaled)
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    scale = side / digit.shape[0]
    boxes[i] = (top + rows[0] * scale, left + cols[0] * scale,
                top + (rows[-1] + 1) * scale, left + (cols[-1] + 1) * scale)
  return canvases, boxes / CANVAS_SIZE


def _area(boxes):
  return (np.clip(boxes[..., 2] - boxes[..., 0], 0, None) *
          np.clip(boxes[..., 3] - boxes[..., 1], 0, None))


def _first(mask):
  return int(np.flatnonzero(mask)[0])
