"""Erasure patterns: which of the k+r outputs of a coding group are unavailable.

A pattern is a boolean row of length k+r with True where the output *arrived*:
data outputs first, then parity outputs for a systematic code, the N = k+r
worker outputs in worker order for a non-systematic one (see
`jaxcc.codes.Code`). Patterns are data, not Python branches: decoding every
pattern is one `jax.vmap` over the rows of a pattern array.

- `patterns(k, r, missing)`: systematic codes; only patterns that lose a
  data output (nothing else needs decoding).
- `straggler_patterns(k, r, missing)`: non-systematic codes; any workers
  missing, and with `missing=0` the pattern where all arrived (every
  prediction of a non-systematic code goes through the decoder).
- `decoding_patterns(k, r, systematic, missing)`: the one of the two that
  fits a code.
- `reconstructed_slots(patterns_PN, k, systematic)`: which of the k decoded
  outputs are reconstructions under each pattern.
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
  counts = _missing_counts(missing, r, lowest=1)
  return np.stack([row for row in _rows(k + r, counts) if not row[:k].all()])


def straggler_patterns(k: int, r: int, missing=None) -> np.ndarray:
  """Boolean `(P, k+r)` worker-availability masks for a non-systematic code.

  Args:
    k: number of queries per group.
    r: number of redundant workers (N = k + r workers).
    missing: how many workers are unavailable; an int or a sequence of ints,
      each in `0..r`. 0 gives the single all-available row (the decoder's
      accuracy without stragglers, A_a of a non-systematic code). Defaults
      to `r`.

  Returns:
    Every mask with the requested number of unavailable workers, any of the
    N, grouped by that number in increasing order, then in lexicographic
    order of the missing positions: `C(k+r, m)` rows for each m.
  """
  check_k_r(k, r)
  return np.stack(list(_rows(k + r, _missing_counts(missing, r, lowest=0))))


def decoding_patterns(k: int, r: int, systematic: bool,
                      missing=None) -> np.ndarray:
  """`patterns` for a systematic code, `straggler_patterns` otherwise."""
  if systematic:
    return patterns(k, r, missing)
  return straggler_patterns(k, r, missing)


def reconstructed_slots(patterns_PN, k: int, systematic: bool) -> np.ndarray:
  """Boolean `(P, k)`: True where a decoded output is a reconstruction.

  For a systematic code these are the unavailable data outputs (arrived ones
  are passed through); for a non-systematic code every one of the k outputs
  comes from the decoder, so all are True.
  """
  patterns_PN = np.asarray(patterns_PN, dtype=bool)
  if patterns_PN.ndim != 2 or patterns_PN.shape[1] <= k:
    raise ValueError(f"patterns must be shaped (P, k+r) with k={k} and r >= 1; "
                     f"got shape {patterns_PN.shape}")
  if systematic:
    return ~patterns_PN[:, :k]
  return np.ones((len(patterns_PN), k), dtype=bool)


def _missing_counts(missing, r, lowest) -> list:
  counts = [r] if missing is None else np.atleast_1d(missing).tolist()
  for m in counts:
    if isinstance(m, bool) or not isinstance(m, int) or not lowest <= m <= r:
      raise ValueError(f"missing={m!r} must be an integer between {lowest} "
                       f"and r={r}")
  return sorted(set(counts))


def _rows(n, counts):
  """Availability rows with each count of missing positions, in order."""
  for m in counts:
    for lost in itertools.combinations(range(n), m):
      row = np.ones(n, dtype=bool)
      row[list(lost)] = False
      yield row


def check_k_r(k, r) -> None:
  """Raises `ValueError` unless k >= 1 and r >= 0 are integers."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be an integer >= 1, got {k!r}")
  if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
    raise ValueError(f"r must be an integer >= 0, got {r!r}")
