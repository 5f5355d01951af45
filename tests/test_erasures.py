"""Erasure patterns for systematic and non-systematic codes."""

import math

import numpy as np
import pytest

from jaxcc import erasures


def _missing_positions(rows):
  return [tuple(np.flatnonzero(~row)) for row in rows]


def test_patterns_r1_row_j_loses_data_output_j():
  np.testing.assert_array_equal(
      erasures.patterns(3, 1),
      [[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1]])


@pytest.mark.parametrize("k, r", [(1, 1), (2, 2), (4, 3), (8, 2)])
def test_patterns_counts_and_order(k, r):
  n = k + r
  rows = erasures.patterns(k, r, missing=range(1, r + 1))
  want = sum(math.comb(n, m) - math.comb(r, m) for m in range(1, r + 1))
  assert rows.shape == (want, n) and rows.dtype == bool
  assert not rows[:, :k].all(axis=1).any()  # a data output is always lost
  lost = _missing_positions(rows)
  assert lost == sorted(lost, key=lambda p: (len(p), p))
  assert len(set(lost)) == len(lost)


def test_patterns_default_is_r_missing():
  rows = erasures.patterns(3, 2)
  assert np.all((~rows).sum(axis=1) == 2)
  assert len(rows) == math.comb(5, 2) - 1


@pytest.mark.parametrize("k, r", [(1, 1), (3, 2), (8, 3), (12, 3)])
def test_straggler_patterns_counts_and_order(k, r):
  n = k + r
  rows = erasures.straggler_patterns(k, r, missing=range(0, r + 1))
  assert rows.shape == (sum(math.comb(n, m) for m in range(r + 1)), n)
  np.testing.assert_array_equal(rows[0], np.ones(n, bool))
  lost = _missing_positions(rows)
  assert lost == sorted(lost, key=lambda p: (len(p), p))
  assert len(set(lost)) == len(lost)
  # Losing only the last r workers counts too (no data output needs losing).
  assert tuple(range(k, n)) in lost


def test_straggler_patterns_default_and_all_available():
  rows = erasures.straggler_patterns(2, 1)
  np.testing.assert_array_equal(rows, [[0, 1, 1], [1, 0, 1], [1, 1, 0]])
  np.testing.assert_array_equal(erasures.straggler_patterns(4, 2, missing=0),
                                np.ones((1, 6), bool))


def test_decoding_patterns_dispatch():
  np.testing.assert_array_equal(erasures.decoding_patterns(3, 2, True, 1),
                                erasures.patterns(3, 2, 1))
  np.testing.assert_array_equal(erasures.decoding_patterns(3, 2, False, 1),
                                erasures.straggler_patterns(3, 2, 1))


def test_reconstructed_slots():
  rows = np.array([[0, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(
      erasures.reconstructed_slots(rows, 3, systematic=True),
      [[1, 0, 0], [0, 0, 0], [0, 0, 0]])
  np.testing.assert_array_equal(
      erasures.reconstructed_slots(rows, 3, systematic=False),
      np.ones((3, 3), bool))


@pytest.mark.parametrize("make, match", [
    (lambda: erasures.patterns(0, 1), "k must be"),
    (lambda: erasures.patterns(2, -1), "r must be"),
    (lambda: erasures.patterns(2, 1.0), "r must be"),
    (lambda: erasures.patterns(True, 1), "k must be"),
    (lambda: erasures.patterns(2, 0), "r = 0"),
    (lambda: erasures.patterns(2, 1, missing=0), "missing=0"),
    (lambda: erasures.patterns(2, 1, missing=2), "missing=2"),
    (lambda: erasures.patterns(2, 2, missing=1.5), "missing=1.5"),
    (lambda: erasures.straggler_patterns(2, 1, missing=2), "missing=2"),
    (lambda: erasures.straggler_patterns(2, 1, missing=-1), "missing=-1"),
    (lambda: erasures.straggler_patterns(0, 1), "k must be"),
    (lambda: erasures.reconstructed_slots(np.ones((2, 3), bool), 3, True),
     "shaped \\(P, k\\+r\\)"),
    (lambda: erasures.reconstructed_slots(np.ones(4, bool), 3, False),
     "shaped \\(P, k\\+r\\)"),
])
def test_bad_arguments(make, match):
  with pytest.raises(ValueError, match=match):
    make()
