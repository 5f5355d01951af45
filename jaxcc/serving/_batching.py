"""Batches: their sizes rounded up to powers of two, and their row caps.

A jitted function compiles once per input shape. Padding a batch of B rows
with zero rows up to the next power of two bounds the shapes a server ever
compiles to log2(max_batch) + 1, few enough to compile all at start.

How many rows one call to an instance may take is a *sizer*'s choice
(`sizer`): always `max_rows` (`FixedSizer`), or Clipper's AIMD against a
latency objective (`AimdSizer`): the cap grows by `step` rows after a full
call that met the objective and shrinks by 10 % after one that missed it.
"""

import math
from typing import Optional

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


def join(xs_B) -> tuple:
  """The inputs' rows as one batch, and where each input's rows end."""
  ends = np.cumsum([len(x_B) for x_B in xs_B])
  return (xs_B[0] if len(xs_B) == 1 else np.concatenate(xs_B)), ends


def split(y_B, ends) -> list:
  """The output rows of each input of `join`."""
  return [y_B] if len(ends) == 1 else np.split(np.asarray(y_B), ends[:-1])


class FixedSizer:
  """Always `max_rows` rows."""

  def __init__(self, max_rows: int):
    if max_rows < 1:
      raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    self.max_rows = max_rows

  def rows(self) -> int:
    """The most rows the next call may take."""
    return self.max_rows

  def observe(self, rows: int, seconds: float) -> None:
    """A call of `rows` rows took `seconds`: nothing to learn."""


class AimdSizer(FixedSizer):
  """Clipper's additive-increase, multiplicative-decrease row cap.

  The cap starts at one row. After a call that met `slo_s` and was full (as
  many rows as the cap, or more), it grows by `step`; after a call that
  missed `slo_s`, it shrinks to `floor(backoff * cap)`; always within
  [1, max_rows]. A call below the cap says nothing about a larger one, so
  at low load (short queue, small calls) the cap stays where it is.

  Args:
    max_rows: the largest cap.
    slo_s: the service time a call should stay within.
    step: rows added after a full call within `slo_s`.
    backoff: the factor of the cap after a call over `slo_s` (Clipper: 0.9).
  """

  def __init__(self, max_rows: int, slo_s: float, *, step: int = 1,
               backoff: float = 0.9):
    super().__init__(max_rows)
    if not slo_s > 0 or step < 1 or not 0 < backoff < 1:
      raise ValueError(f"need slo_s > 0, step >= 1 and 0 < backoff < 1; got "
                       f"slo_s={slo_s}, step={step}, backoff={backoff}")
    self.slo_s, self.step, self.backoff = slo_s, step, backoff
    self._rows = 1

  def rows(self) -> int:
    return self._rows

  def observe(self, rows: int, seconds: float) -> None:
    if seconds > self.slo_s:
      self._rows = max(1, math.floor(self.backoff * self._rows))
    elif rows >= self._rows:
      self._rows = min(self.max_rows, self._rows + self.step)


def sizer(max_rows: int, slo_s: Optional[float] = None) -> FixedSizer:
  """`AimdSizer(max_rows, slo_s)`, or `FixedSizer(max_rows)` without one."""
  return FixedSizer(max_rows) if slo_s is None else AimdSizer(max_rows,
                                                              slo_s)
