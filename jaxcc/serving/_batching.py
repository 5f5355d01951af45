"""Batch sizes rounded up to powers of two.

A jitted function compiles once per input shape. Padding a batch of B rows
with zero rows up to the next power of two bounds the shapes a server ever
compiles to log2(max_batch) + 1, few enough to compile all at start.
"""

import numpy as np


def bucket(b: int) -> int:
  """The smallest power of two >= b."""
  return 1 << max(0, b - 1).bit_length()


def buckets(max_batch: int) -> tuple:
  """Every bucket a batch of 1..max_batch rows falls into."""
  if max_batch < 1:
    raise ValueError(f"max_batch must be at least 1, got {max_batch}")
  return tuple(1 << i for i in range(bucket(max_batch).bit_length()))


def pad(x_B, size: int) -> np.ndarray:
  """`x_B` with zero rows appended up to `size` rows."""
  x_B = np.asarray(x_B)
  if len(x_B) == size:
    return x_B
  return np.concatenate([x_B, np.zeros((size - len(x_B),) + x_B.shape[1:],
                                       x_B.dtype)])


def padded(fn):
  """`fn` over rows, called on the batch padded to its bucket."""
  def call(x_B, *args):
    return np.asarray(fn(pad(x_B, bucket(len(x_B))), *args))[:len(x_B)]
  return call
