"""Tests for the smoothing-spline code (NeRCC / LeTCC)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy import interpolate

from jaxcc import codes
from jaxcc import erasures
from jaxcc.codes import _berrut
from jaxcc.codes import _spline


def scipy_fit(points, values, lam):
  """Float64 reference: SciPy's smoothing spline, continued linearly.

  `lam` is ours (mean misfit); SciPy sums the misfit, so it gets m * lam.
  Returns a function of the evaluation points.
  """
  order = np.argsort(points)
  t, v = np.asarray(points)[order], np.asarray(values, np.float64)[order]
  if lam == 0:
    fit = interpolate.CubicSpline(t, v, bc_type="natural")
  else:
    fit = interpolate.make_smoothing_spline(t, v, lam=len(t) * lam)

  def evaluate(at):
    at = np.asarray(at, np.float64)
    out = fit(at)
    for end, side in ((t[0], at < t[0]), (t[-1], at > t[-1])):
      out[side] = fit(end) + (at[side] - end)[:, None] * fit(end, 1)
    return out

  return evaluate


def reference(x_BK, y_BN, available_N, lam_e, lam_d):
  """Coded queries (B, N, C) and decoded outputs (B, K, C) in float64."""
  k, n = x_BK.shape[1], y_BN.shape[1]
  alpha, beta = _berrut.approxifer_nodes(k, n - k)
  coded = np.stack([scipy_fit(alpha, x, lam_e)(beta) for x in x_BK])
  arrived = np.flatnonzero(available_N)
  decoded = np.stack([scipy_fit(beta[arrived], y[arrived], lam_d)(alpha)
                      for y in y_BN])
  return coded, decoded


def decode_all(code, y, masks):
  return jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
      {}, jnp.asarray(y, jnp.float32), jnp.asarray(masks))


def test_spline_matrices_match_scipy():
  rng = np.random.default_rng(0)
  knots = rng.uniform(-1, 1, size=7)  # unsorted on purpose
  values = rng.normal(size=7)
  targets = np.linspace(-1.5, 1.5, 31)
  natural = scipy_fit(knots, values[:, None], 0.0)
  np.testing.assert_allclose(
      _spline.evaluation_matrix(knots, targets) @ values,
      natural(targets)[:, 0], atol=1e-12)
  order = np.sort(knots)
  curvature = sum(integrate.quad(
      lambda t: interpolate.CubicSpline(knots[np.argsort(knots)],
                                        values[np.argsort(knots)],
                                        bc_type="natural")(t, 2)**2, a, b)[0]
                  for a, b in zip(order[:-1], order[1:]))
  np.testing.assert_allclose(
      values @ _spline.roughness_matrix(knots) @ values, curvature, rtol=1e-9)
  for lam in (1e-4, 1e-2, 1.0):
    np.testing.assert_allclose(
        _spline.smoothing_matrix(knots, lam, targets) @ values,
        scipy_fit(knots, values[:, None], lam)(targets)[:, 0], atol=1e-9)


@pytest.mark.parametrize("k, r, lam_e, lam_d", [
    (5, 1, 0.0, 0.0), (8, 3, 1e-3, 1e-4), (10, 2, 1e-5, 1e-2),
    (12, 3, 1e-1, 0.0)])
def test_matches_scipy_reference(k, r, lam_e, lam_d):
  rng = np.random.default_rng(k + r)
  code = codes.spline(k, r, lam_e, lam_d)
  assert not code.systematic and code.parity_target is None
  x = rng.normal(size=(3, k, 4))
  y = rng.normal(size=(3, k + r, 4))
  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  masks = masks[rng.choice(len(masks), size=min(len(masks), 12),
                           replace=False)]
  coded = code.encode({}, jnp.asarray(x, jnp.float32))
  outs = decode_all(code, y, masks)
  for available, out in zip(masks, outs):
    want_coded, want = reference(x, y, available, lam_e, lam_d)
    np.testing.assert_allclose(coded, want_coded, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out, want, rtol=1e-3, atol=1e-3,
                               err_msg=f"{available}")


@pytest.mark.parametrize("lam", [0.0, 1e-3])  # lambda = 1: see CODES.md
def test_reproduces_linear_functions_exactly(lam):
  # X_k = a + b alpha_k: both fits are exact for straight lines, so through
  # an identity F every pattern decodes back to the queries.
  k, r = 8, 3
  alpha, beta = _berrut.approxifer_nodes(k, r)
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(2, 2, 1, 5))
  x = a + b * alpha[None, :, None]
  code = codes.spline(k, r, lam, lam)
  coded = code.encode({}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(coded, a + b * beta[None, :, None], atol=1e-5)
  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  np.testing.assert_allclose(decode_all(code, coded, masks),
                             np.broadcast_to(x, (len(masks),) + x.shape),
                             atol=1e-3)  # float32 solve; 3e-4 measured


def test_all_patterns_compile_once():
  k, r = 10, 3
  code = codes.spline(k, r)
  traces = []

  @jax.jit
  def decode_all_patterns(y, masks):
    traces.append(1)
    return jax.vmap(lambda a: code.decode({}, y, a))(masks)

  masks = erasures.straggler_patterns(k, r, missing=range(r + 1))
  rng = np.random.default_rng(2)
  for _ in range(3):
    y = rng.normal(size=(2, k + r, 3))
    out = decode_all_patterns(jnp.asarray(y, jnp.float32), jnp.asarray(masks))
  assert len(traces) == 1
  for available, got in zip(masks[::37], out[::37]):
    _, want = reference(np.zeros((2, k, 3)), y, available,
                        _spline.DEFAULT_LAMBDA_ENCODER,
                        _spline.DEFAULT_LAMBDA_DECODER)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_missing_workers_are_ignored_even_if_nan():
  k, r = 6, 2
  code = codes.spline(k, r, 0.0, 1e-3)
  y = np.random.default_rng(3).normal(size=(2, k + r, 4))
  available = np.array([True, True, False, True, True, True, True, False])
  clean = code.decode({}, jnp.asarray(y, jnp.float32), available)
  y[:, ~available] = np.nan
  dirty = code.decode({}, jnp.asarray(y, jnp.float32), available)
  np.testing.assert_array_equal(clean, dirty)
  grad = jax.grad(lambda v: jnp.sum(code.decode({}, v, available)))(
      jnp.asarray(np.nan_to_num(y), jnp.float32))
  assert np.all(np.isfinite(grad))
  with pytest.raises(ValueError, match="NaN"):
    code.decode({}, jnp.asarray(y, jnp.float32), np.ones(k + r, bool))
  with pytest.raises(ValueError, match="NaN"):
    code.encode({}, jnp.full((1, k, 2), jnp.nan))


@pytest.mark.parametrize("kwargs, match", [
    (dict(k=1, r=1), "k >= 2"),
    (dict(k=0, r=1), "k must be"),
    (dict(k=3, r=0), "r >= 1"),
    (dict(k=3, r=-1), "r must be"),
    (dict(k=3, r=1, lambda_encoder=-1e-3), "lambda_encoder"),
    (dict(k=3, r=1, lambda_decoder=np.nan), "lambda_decoder"),
    (dict(k=3, r=1, lambda_decoder=np.inf), "lambda_decoder"),
    (dict(k=3, r=1, lambda_encoder=True), "lambda_encoder"),
    (dict(k=3, r=1, lambda_encoder=[0.1]), "lambda_encoder"),
    (dict(k=3, r=1, query_points=[0.0, 1.0]), "3 reals"),
    (dict(k=3, r=1, query_points=[0.0, 1.0, 1.0]), "distinct"),
    (dict(k=3, r=1, worker_points=[0.0, 1.0, np.nan, 2.0]), "finite"),
    (dict(k=3, r=1, worker_points=[[0.0, 1.0], [2.0, 3.0]]), "flat"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    codes.spline(**kwargs)


def test_bad_shapes_and_masks():
  code = codes.spline(3, 1)
  with pytest.raises(ValueError, match="k=3"):
    code.encode({}, jnp.zeros((2, 4, 5)))
  with pytest.raises(ValueError, match="one output per worker"):
    code.decode({}, jnp.zeros((2, 3, 5)), np.ones(4, bool))
  with pytest.raises(ValueError, match="at most 1"):
    code.decode({}, jnp.zeros((2, 4, 5)), np.array([0, 0, 1, 1], bool))


def test_custom_points_match_reference():
  query, workers = np.linspace(-1, 1, 5), np.linspace(-0.9, 0.9, 7)
  code = codes.spline(5, 2, 1e-3, 1e-3, query_points=query,
                      worker_points=workers[::-1])
  x = np.random.default_rng(4).normal(size=(1, 5, 2))
  coded = code.encode({}, jnp.asarray(x, jnp.float32))
  want = scipy_fit(query, x[0], 1e-3)(workers[::-1])
  np.testing.assert_allclose(coded[0], want, atol=1e-5)


def test_search_lambdas():
  grid = (0.0, 1e-3, 1e-2, 1e-1)
  calls = []

  def loss(lam_e, lam_d):
    calls.append((lam_e, lam_d))
    return (np.log10(lam_e + 1e-9) + 2)**2 + (np.log10(lam_d + 1e-9) + 3)**2

  lam_e, lam_d, losses = codes.search_lambdas(loss, grid)
  assert (lam_e, lam_d) == (1e-2, 1e-3)
  assert sorted(calls) == sorted(itertools.product(grid, grid))
  assert losses[(1e-2, 1e-3)] == min(losses.values())
  # Ties go to the larger lambdas.
  assert codes.search_lambdas(lambda e, d: 1.0, grid)[:2] == (1e-1, 1e-1)
  assert len(codes.search_lambdas(lambda e, d: e + d)[2]) == 81
  with pytest.raises(ValueError, match="not finite"):
    codes.search_lambdas(lambda e, d: np.nan, grid)
  with pytest.raises(ValueError, match="grid"):
    codes.search_lambdas(loss, (0.1, -1.0))
  with pytest.raises(ValueError, match="grid"):
    codes.search_lambdas(loss, ())
