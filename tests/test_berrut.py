"""Tests for the Berrut rational-interpolation code (ApproxIFER / BACC)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import codes
from jaxcc import erasures
from jaxcc.codes import _berrut


def reference_interpolant(z, nodes, values):
  """Berrut's u(z) in float64: signs alternate in the nodes' sorted order."""
  nodes = np.asarray(nodes, np.float64)
  values = np.asarray(values, np.float64)
  numerator = np.zeros(values.shape[1:])
  denominator = 0.0
  for rank, m in enumerate(sorted(range(len(nodes)), key=lambda m: nodes[m])):
    weight = (-1.0)**rank / (z - nodes[m])
    numerator = numerator + weight * values[m]
    denominator += weight
  return numerator / denominator


def reference_encode(x_BK, data_nodes, parity_nodes):
  x_KB = np.moveaxis(np.asarray(x_BK, np.float64), 1, 0)
  parities = [reference_interpolant(z, data_nodes, x_KB) for z in parity_nodes]
  return np.stack(parities, axis=1)


def reference_decode(y_BN, available_N, nodes, k):
  y_BN = np.asarray(y_BN, np.float64)
  arrived = np.flatnonzero(available_N)
  y_NB = np.moveaxis(y_BN, 1, 0)
  out = y_BN[:, :k].copy()
  for j in range(k):
    if not available_N[j]:
      out[:, j] = reference_interpolant(nodes[j], np.asarray(nodes)[arrived],
                                        y_NB[arrived])
  return out


def random_mask(rng, k, r):
  missing = rng.integers(0, r + 1)
  available = np.ones(k + r, dtype=bool)
  available[rng.choice(k + r, size=missing, replace=False)] = False
  return available


def test_default_nodes_layout():
  nodes = _berrut.default_nodes(2, 1)
  beta = np.cos(np.array([1, 3, 5]) * np.pi / 6)
  np.testing.assert_allclose(nodes, [beta[0], beta[2], beta[1]])
  for k, r in itertools.product(range(1, 9), range(1, 5)):
    nodes = _berrut.default_nodes(k, r)
    assert nodes.shape == (k + r,)
    assert len(np.unique(nodes)) == k + r


def test_passes_data_through_exactly_when_nothing_is_missing():
  rng = np.random.default_rng(0)
  for k, r in [(1, 1), (3, 2), (8, 4)]:
    code = codes.berrut(k, r)
    y = jnp.asarray(rng.normal(size=(5, k + r, 3, 2)), jnp.float32)
    out = jax.jit(code.decode)({}, y, jnp.ones(k + r, bool))
    assert out.shape == (5, k, 3, 2)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(y[:, :k]))


def test_matches_float64_reference():
  rng = np.random.default_rng(1)
  for trial in range(9):
    k, r = int(rng.integers(1, 9)), int(rng.integers(1, 5))
    if trial % 3 == 2:
      nodes = rng.permutation(np.linspace(-1.0, 1.0, k + r))
      code = codes.berrut(k, r, nodes=nodes)
    else:
      nodes = _berrut.default_nodes(k, r)
      code = codes.berrut(k, r)
    x = rng.normal(size=(4, k, 3))
    parities = code.encode({}, jnp.asarray(x, jnp.float32))
    want = reference_encode(x, nodes[:k], nodes[k:])
    np.testing.assert_allclose(parities, want, rtol=1e-4, atol=1e-4)

    y = rng.normal(size=(4, k + r, 3))
    masks = np.stack([random_mask(rng, k, r) for _ in range(6)])
    outs = jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
        {}, jnp.asarray(y, jnp.float32), jnp.asarray(masks))
    for available, out in zip(masks, outs):
      want = reference_decode(y, available, nodes, k)
      np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4,
                                 err_msg=f"k={k} r={r} {available}")


def test_reconstruction_improves_with_more_parities():
  k = 4
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(64, k, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(16, 10)) / 4, jnp.float32)
  model = lambda v: jnp.tanh(v @ w)
  errors = []
  for r in (1, 2, 4):
    code = codes.berrut(k, r)
    y = jnp.concatenate([model(x), model(code.encode({}, x))], axis=1)
    masks = erasures.patterns(k, r, missing=1)
    out = jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
        {}, y, jnp.asarray(masks))
    lost = ~masks[:, :k]
    squared_PK = jnp.mean((out - model(x)[None])**2, axis=(1, 3))
    errors.append(float(jnp.mean(squared_PK[jnp.asarray(lost)])))
  # Measured: about 0.41, 0.11, 0.04 (output variance 0.34).
  assert errors[0] > errors[1] > errors[2], errors
  assert errors[2] < errors[0] / 2, errors


def test_reproduces_constants():
  rng = np.random.default_rng(3)
  for k, r in [(1, 1), (4, 2), (7, 3)]:
    code = codes.berrut(k, r)
    c = rng.normal(size=(2, 1, 5))
    x = jnp.asarray(np.broadcast_to(c, (2, k, 5)), jnp.float32)
    np.testing.assert_allclose(code.encode({}, x),
                               np.broadcast_to(c, (2, r, 5)), rtol=1e-5,
                               atol=1e-5)
    y = jnp.asarray(np.broadcast_to(c, (2, k + r, 5)), jnp.float32)
    masks = jnp.asarray(erasures.patterns(k, r, missing=range(1, r + 1)))
    outs = jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
        {}, y, masks)
    np.testing.assert_allclose(outs, np.broadcast_to(c, (len(masks), 2, k, 5)),
                               rtol=1e-5, atol=1e-5)


def test_missing_slots_are_ignored_even_if_nan():
  k, r = 3, 2
  code = codes.berrut(k, r)
  rng = np.random.default_rng(4)
  y = rng.normal(size=(2, k + r, 4))
  available = np.array([True, False, True, False, True])
  clean = code.decode({}, jnp.asarray(y, jnp.float32), jnp.asarray(available))
  y[:, ~available] = np.nan
  dirty = code.decode({}, jnp.asarray(y, jnp.float32), jnp.asarray(available))
  assert np.all(np.isfinite(dirty))
  np.testing.assert_array_equal(clean, dirty)
  grad = jax.grad(lambda v: jnp.sum(code.decode({}, v, available)))(
      jnp.asarray(np.nan_to_num(y), jnp.float32))
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=3, r=0), "r >= 1"),
    (dict(k=0, r=1), "k must be"),
    (dict(k=2, r=1.5), "r must be"),
    (dict(k=2, r=1, nodes=[0.0, 1.0]), "flat sequence of 3 reals"),
    (dict(k=2, r=1, nodes=[0.0, 1.0, 0.0]), "distinct"),
    (dict(k=2, r=1, nodes=[0.0, 1.0, np.inf]), "finite"),
    (dict(k=2, r=1, nodes=[0.0, np.nan, 1.0]), "finite"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    codes.berrut(**kwargs)


def test_too_many_erasures_rejected():
  code = codes.berrut(3, 1)
  with pytest.raises(ValueError, match="at most 1"):
    code.decode({}, jnp.zeros((1, 4)), np.array([False, False, True, True]))


def test_all_patterns_compile_once():
  k, r = 4, 2
  code = codes.berrut(k, r)
  traces = []

  @jax.jit
  def decode_all(y, masks):
    traces.append(1)
    return jax.vmap(lambda a: code.decode({}, y, a))(masks)

  masks = jnp.asarray(erasures.patterns(k, r, missing=[1, 2]))
  rng = np.random.default_rng(5)
  for _ in range(3):
    y = jnp.asarray(rng.normal(size=(2, k + r, 3)), jnp.float32)
    out = decode_all(y, masks)
  assert out.shape == (len(masks), 2, k, 3)
  assert len(traces) == 1
  for i, available in enumerate(np.asarray(masks)):
    want = reference_decode(y, available, _berrut.default_nodes(k, r), k)
    np.testing.assert_allclose(out[i], want, rtol=1e-4, atol=1e-4)


# ApproxIFER's non-systematic code.


def approxifer_reference(x_BK, y_BN, available_N):
  """Float64 ApproxIFER, written from its definition in index order.

  Returns the coded queries (B, N, ...) and the decoded outputs (B, K, ...).
  Signs alternate with the query index j and with the position among the
  returned workers sorted by index (both point sets decrease with the
  index); a target on a node takes that node's value.
  """
  x_BK = np.asarray(x_BK, np.float64)
  y_BN = np.asarray(y_BN, np.float64)
  k, n = x_BK.shape[1], y_BN.shape[1]
  alpha = [np.cos((2 * j + 1) * np.pi / (2 * k)) for j in range(k)]
  z = [np.cos(i * np.pi / n) for i in range(n)]

  def interpolate(at, points, values):
    for point, value in zip(points, values):
      if abs(at - point) < 1e-12:
        return value
    weights = [(-1.0)**m / (at - point) for m, point in enumerate(points)]
    return sum(w * v for w, v in zip(weights, values)) / sum(weights)

  coded = np.stack([interpolate(z_i, alpha, list(np.moveaxis(x_BK, 1, 0)))
                    for z_i in z], axis=1)
  returned = [i for i in range(n) if available_N[i]]
  values = [y_BN[:, i] for i in returned]
  decoded = np.stack([interpolate(a, [z[i] for i in returned], values)
                      for a in alpha], axis=1)
  return coded, decoded


def decode_all(code, y, masks):
  return jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
      {}, jnp.asarray(y, jnp.float32), jnp.asarray(masks))


@pytest.mark.parametrize("k, r", [(1, 1), (2, 2), (3, 1), (5, 3), (8, 1),
                                  (9, 3), (10, 2), (12, 3)])
def test_approxifer_matches_float64_reference(k, r):
  rng = np.random.default_rng(10 * k + r)
  code = codes.berrut(k, r, systematic=False)
  assert not code.systematic and code.parity_target is None
  x = rng.normal(size=(3, k, 4))
  coded = code.encode({}, jnp.asarray(x, jnp.float32))
  assert coded.shape == (3, k + r, 4)
  want, _ = approxifer_reference(x, np.zeros((3, k + r)), np.ones(k + r))
  np.testing.assert_allclose(coded, want, rtol=1e-5, atol=1e-5)

  y = rng.normal(size=(3, k + r, 4))
  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  outs = decode_all(code, y, masks)
  assert outs.shape == (len(masks), 3, k, 4)
  for available, out in zip(masks, outs):
    _, want = approxifer_reference(x, y, available)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4,
                               err_msg=f"k={k} r={r} {available}")


def test_approxifer_reproduces_the_nodes():
  # k = r = 2: alpha_0 = z_1 = cos(pi / 4) and alpha_1 = z_3 = cos(3 pi / 4).
  alpha, z = _berrut.approxifer_nodes(2, 2)
  np.testing.assert_allclose(alpha, z[[1, 3]], atol=1e-15)
  code = codes.berrut(2, 2, systematic=False)
  x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 2, 3)), jnp.float32)
  np.testing.assert_array_equal(code.encode({}, x)[:, [1, 3]], x)
  y = jnp.asarray(np.random.default_rng(7).normal(size=(2, 4, 3)), jnp.float32)
  out = code.decode({}, y, np.array([False, True, False, True]))
  np.testing.assert_array_equal(out, y[:, [1, 3]])
  # The interpolant passes through every node, wherever the nodes are.
  nodes = np.random.default_rng(8).uniform(-1, 1, size=7)
  np.testing.assert_allclose(_berrut.berrut_weights(nodes, nodes), np.eye(7),
                             atol=1e-12)


def test_approxifer_decodes_even_when_every_worker_arrives():
  k, r = 4, 1
  code = codes.berrut(k, r, systematic=False)
  x = jnp.asarray(np.random.default_rng(9).normal(size=(2, k, 3)), jnp.float32)
  out = code.decode({}, code.encode({}, x), np.ones(k + r, bool))
  # Through an identity F the decoder approximates, not copies, the queries.
  assert 1e-3 < float(jnp.max(jnp.abs(out - x))) < 10.0


@pytest.mark.parametrize("k, r", [(1, 1), (3, 3), (8, 2), (12, 3)])
def test_approxifer_reproduces_constants(k, r):
  c = np.random.default_rng(k).normal(size=(2, 1, 5))
  code = codes.berrut(k, r, systematic=False)
  x = jnp.asarray(np.broadcast_to(c, (2, k, 5)), jnp.float32)
  y = code.encode({}, x)  # through an identity F
  np.testing.assert_allclose(y, np.broadcast_to(c, (2, k + r, 5)), atol=1e-5)
  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  np.testing.assert_allclose(decode_all(code, y, masks),
                             np.broadcast_to(c, (len(masks), 2, k, 5)),
                             atol=1e-5)


def test_approxifer_all_patterns_compile_once():
  k, r = 8, 3
  code = codes.berrut(k, r, systematic=False)
  traces = []

  @jax.jit
  def decode_all_patterns(y, masks):
    traces.append(1)
    return jax.vmap(lambda a: code.decode({}, y, a))(masks)

  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  rng = np.random.default_rng(11)
  for _ in range(3):
    y = rng.normal(size=(2, k + r, 3))
    out = decode_all_patterns(jnp.asarray(y, jnp.float32), jnp.asarray(masks))
  assert len(traces) == 1
  for available, got in zip(masks[::11], out[::11]):
    _, want = approxifer_reference(np.zeros((2, k)), y, available)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_approxifer_missing_workers_are_ignored_even_if_nan():
  k, r = 5, 2
  code = codes.berrut(k, r, systematic=False)
  y = np.random.default_rng(12).normal(size=(2, k + r, 4))
  available = np.array([True, False, True, True, True, False, True])
  clean = code.decode({}, jnp.asarray(y, jnp.float32), available)
  y[:, ~available] = np.nan
  dirty = code.decode({}, jnp.asarray(y, jnp.float32), available)
  np.testing.assert_array_equal(clean, dirty)
  grad = jax.grad(lambda v: jnp.sum(code.decode({}, v, available)))(
      jnp.asarray(np.nan_to_num(y), jnp.float32))
  assert np.all(np.isfinite(grad))
  with pytest.raises(ValueError, match="NaN"):
    code.decode({}, jnp.asarray(y, jnp.float32), np.ones(k + r, bool))


def test_approxifer_bad_arguments():
  with pytest.raises(ValueError, match="systematic"):
    codes.berrut(2, 1, nodes=[0.0, 0.5, 1.0], systematic=False)
  with pytest.raises(ValueError, match="r >= 1"):
    codes.berrut(2, 0, systematic=False)
  with pytest.raises(ValueError, match="k must be"):
    codes.berrut(0, 1, systematic=False)
  code = codes.berrut(3, 1, systematic=False)
  with pytest.raises(ValueError, match="at most 1"):
    code.decode({}, jnp.zeros((1, 4)), np.array([False, False, True, True]))
  with pytest.raises(ValueError, match="one output per worker"):
    code.decode({}, jnp.zeros((1, 3)), np.ones(4, bool))
  with pytest.raises(ValueError, match="k=3"):
    code.encode({}, jnp.zeros((1, 4, 2)))
