"""Erasure patterns: which of the k+r outputs of a coding group are unavailable.

A pattern is a boolean row of length k+r (data outputs first, then parity
outputs) with True where the output *arrived*. Patterns are data, not Python
branches: decoding every pattern is one `jax.vmap` over the rows of
`patterns(k, r)`.
"""

import itertools

import numpy as np


def patterns(k: int, r: int, missing=None) -> np.ndarray:
  """Boolean `(P, k+r)` availability masks to train and evaluate on.

  Args:
    k: number of data outputs.
    r: number of parity outputs.
    missing: how many outputs are unavailable; an int or a sequence of ints,
      each in `1..r`. Defaults to `r` (the paper's training setup).

  Returns:
    Every mask with the requested number of unavailable outputs in which at
    least one *data* output is unavailable (losing only parities needs no
    decoding), in lexicographic order of the missing positions. For `r = 1`
    row j is "data output j missing".
  """
  check_k_r(k, r)
  if r == 0:
    raise ValueError("r = 0 has no parity outputs, so no erasure can be decoded")
  counts = [r] if missing is None else np.atleast_1d(missing).tolist()
  for m in counts:
    if not 1 <= m <= r:
      raise ValueError(f"missing={m} must be between 1 and r={r}")
  rows = []
  for m in sorted(set(counts)):
    for lost in itertools.combinations(range(k + r), m):
      if min(lost) < k:
        row = np.ones(k + r, dtype=bool)
        row[list(lost)] = False
        rows.append(row)
  return np.stack(rows)


def check_k_r(k, r) -> None:
  """Raises `ValueError` unless k >= 1 and r >= 0 are integers."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be an integer >= 1, got {k!r}")
  if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
    raise ValueError(f"r must be an integer >= 0, got {r!r}")
