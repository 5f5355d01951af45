"""Smoothing-spline codes (NeRCC, arXiv 2402.04377; LeTCC, arXiv 2406.00300).

A non-systematic code: the k queries sit at points `alpha_k` on the real
line, the N = k + r workers at points `beta_n`. The encoder fits the cubic
smoothing spline

  u_e = argmin_u  (1/k) sum_k |u(alpha_k) - X_k|^2 + lambda_e int u''(t)^2 dt

and worker n computes F on `u_e(beta_n)`. The decoder fits the smoothing
spline through the outputs that arrived,

  u_d = argmin_u  (1/|A|) sum_{n in A} |u(beta_n) - y_n|^2
                  + lambda_d int u''(t)^2 dt,

and returns all k predictions `u_d(alpha_k)`. The minimiser over all
functions with square-integrable second derivative is the natural cubic
spline with knots at the data points, linear outside them (Reinsch). For
fixed points and lambdas both maps are linear; missing workers get weight
zero, so the availability mask is data and one compiled decoder serves every
pattern. `lambda = 0` is the natural cubic interpolating spline (the limit
lambda -> 0). Linear functions have no curvature, so both fits reproduce
them exactly, for every lambda and every pattern: a code over a linear F
that maps straight lines to straight lines is exact.

Computation: the spline's values g at its knots minimise
`(g - y)^T W (g - y) + lambda g^T K g` with W the diagonal of data weights
and K the natural-spline roughness matrix (Green & Silverman, "Nonparametric
Regression and Generalized Linear Models", section 2.3), so
`(W + lambda K) g = W y`; the spline is then evaluated anywhere by a fixed
linear map E of g. Penalty and evaluation matrices are built once in float64
NumPy; the decoder's mask-dependent N x N solve runs in float32 under `jit`,
with row i of the system for a missing worker written as `(K g)_i = 0` (the
spline has no kink there) so that it stays well conditioned as lambda -> 0.
"""

import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc.codes import _berrut
from jaxcc.codes import _code
from jaxcc.codes import _linear

DEFAULT_LAMBDA_ENCODER = 1e-4
DEFAULT_LAMBDA_DECODER = 1e-4
# The search grid: 0 (interpolation) and every decade from 1e-7 to 1e0.
LAMBDA_GRID = (0.0,) + tuple(10.0**e for e in range(-7, 1))


def roughness_matrix(knots) -> np.ndarray:
  """`(m, m)` float64 K with `int g''^2 = g^T K g` for the natural spline.

  g holds the natural cubic spline's values at the knots, in the order
  given; knots must be distinct.
  """
  knots, order = _sorted_knots(knots)
  q, r_inverse = _q_and_r_inverse(knots)
  k_sorted = q @ r_inverse @ q.T
  unsort = np.argsort(order)
  return k_sorted[np.ix_(unsort, unsort)]


def evaluation_matrix(knots, targets) -> np.ndarray:
  """`(T, m)` float64 E: the natural spline with knot values g at targets.

  Outside the knots the spline continues as a straight line.
  """
  knots, order = _sorted_knots(knots)
  targets = np.asarray(targets, np.float64).reshape(-1)
  m = len(knots)
  h = np.diff(knots)
  q, r_inverse = _q_and_r_inverse(knots)
  gamma = np.zeros((m, m))  # second derivatives at the knots, from g
  gamma[1:m - 1] = r_inverse @ q.T
  eye = np.eye(m)
  rows = []
  for t in targets:
    if t < knots[0]:
      slope = (eye[1] - eye[0]) / h[0] - h[0] * gamma[1] / 6
      rows.append(eye[0] + (t - knots[0]) * slope)
    elif t > knots[-1]:
      slope = (eye[-1] - eye[-2]) / h[-1] + h[-1] * gamma[-2] / 6
      rows.append(eye[-1] + (t - knots[-1]) * slope)
    else:
      i = min(int(np.searchsorted(knots, t, side="right")) - 1, m - 2)
      left, right = t - knots[i], knots[i + 1] - t
      linear = (left * eye[i + 1] + right * eye[i]) / h[i]
      bend = ((1 + left / h[i]) * gamma[i + 1] + (1 + right / h[i]) * gamma[i])
      rows.append(linear - left * right * bend / 6)
  e_sorted = np.stack(rows)
  return e_sorted[:, np.argsort(order)]


def smoothing_matrix(knots, lam, targets) -> np.ndarray:
  """`(T, m)` float64 map from data at the knots to the fitted spline's
  values at targets, every knot weighted equally (mean squared error)."""
  m = len(knots)
  fit = np.linalg.solve(np.eye(m) + lam * m * roughness_matrix(knots),
                        np.eye(m))
  return evaluation_matrix(knots, targets) @ fit


def spline(k: int, r: int, lambda_encoder: float = DEFAULT_LAMBDA_ENCODER,
           lambda_decoder: float = DEFAULT_LAMBDA_DECODER, query_points=None,
           worker_points=None) -> _code.Code:
  """A non-systematic smoothing-spline code (no learned parameters).

  Args:
    k: queries per group (>= 2: a spline through one point is not unique).
    r: redundant workers (>= 1); N = k + r workers.
    lambda_encoder: the encoder's regulariser lambda_e (>= 0).
    lambda_decoder: the decoder's regulariser lambda_d (>= 0).
    query_points: k distinct finite reals; defaults to ApproxIFER's
      Chebyshev points `cos((2j + 1) pi / (2k))`.
    worker_points: N distinct finite reals (distinct in float32); defaults
      to ApproxIFER's `cos(i pi / N)`, i = 0..N-1.

  The lambdas weigh curvature, integrated over the points' line, against
  the mean squared misfit; `search_lambdas` chooses them.
  """
  _code.validate_k_r(k, r)
  if k < 2:
    raise ValueError(f"a spline code needs k >= 2 queries, got k={k}")
  if r < 1:
    raise ValueError(f"a spline code needs r >= 1 redundant workers, got r={r}")
  n = k + r
  default_alpha, default_beta = _berrut.approxifer_nodes(k, r)
  alpha_K = _berrut.check_points(query_points, default_alpha, k,
                                 "query_points")
  beta_N = _berrut.check_points(worker_points, default_beta, n,
                                "worker_points")
  for name, lam in (("lambda_encoder", lambda_encoder),
                    ("lambda_decoder", lambda_decoder)):
    if isinstance(lam, bool) or not np.isscalar(lam) or not (
        np.isfinite(lam) and lam >= 0):
      raise ValueError(f"{name} must be a finite real >= 0, got {lam!r}")
  g_NK = smoothing_matrix(alpha_K, float(lambda_encoder), beta_N)
  roughness_NN = roughness_matrix(beta_N)
  evaluate_KN = evaluation_matrix(beta_N, alpha_K)

  def decode(params, y_BN, available_N):
    del params
    coef_KN = masked_smoothing_weights(evaluate_KN, roughness_NN,
                                       float(lambda_decoder), available_N)
    return _berrut.apply_weights(coef_KN, y_BN, available_N)

  return _code.make_code(
      k, r, f"spline(k={k}, r={r}, lambda_encoder={lambda_encoder:g}, "
      f"lambda_decoder={lambda_decoder:g})", _code.no_params,
      encode=lambda params, x_BK: _linear.combine(g_NK, x_BK), decode=decode,
      systematic=False, encoding_MK=g_NK,
      decoding=lambda available_N: np.asarray(masked_smoothing_weights(
          evaluate_KN, roughness_NN, float(lambda_decoder),
          jnp.asarray(available_N))))


def masked_smoothing_weights(evaluate_TN, roughness_NN, lam,
                             available_N) -> jax.Array:
  """`(T, N)` float32 map from the arrived outputs to the decoded values.

  Traceable in `available_N`; missing outputs get zero weight. Row i of the
  system is `g_i + lam |A| (K g)_i = y_i` for an arrived output (the data
  term divided by its weight 1/|A|) and `(K g)_i = 0` for a missing one.
  """
  n = len(roughness_NN)
  roughness = jnp.asarray(roughness_NN, jnp.float32)
  arrived = jnp.sum(available_N).astype(jnp.float32)
  fit_rows = jnp.eye(n, dtype=jnp.float32) + (lam * arrived) * roughness
  kink_rows = jnp.asarray(roughness_NN / np.diag(roughness_NN)[:, None],
                          jnp.float32)
  system_NN = jnp.where(available_N[:, None], fit_rows, kink_rows)
  select_NN = jnp.diag(available_N.astype(jnp.float32))
  values_NN = jnp.linalg.solve(system_NN, select_NN)
  return jnp.matmul(jnp.asarray(evaluate_TN, jnp.float32), values_NN,
                    precision=jax.lax.Precision.HIGHEST)


def search_lambdas(
    loss: Callable[[float, float], float],
    grid: Sequence[float] = LAMBDA_GRID) -> tuple[float, float, dict]:
  """Chooses `(lambda_encoder, lambda_decoder)` by exhaustive grid search.

  Every pair from `grid x grid` (by default 0 and each decade 1e-7..1, 81
  pairs) is scored by `loss(lambda_encoder, lambda_decoder)`, e.g. the mean
  squared error or the error rate of the decoded predictions on a
  validation split; the pair with the lowest loss wins, ties going to the
  larger (smoother) lambdas, which come later in the grid.

  Returns:
    `(best_lambda_encoder, best_lambda_decoder, losses)` with `losses`
    mapping every pair to its loss.
  """
  grid = [float(lam) for lam in grid]
  if not grid or any(not (np.isfinite(lam) and lam >= 0) for lam in grid):
    raise ValueError(f"grid must hold finite reals >= 0, got {grid}")
  losses = {}
  for pair in itertools.product(grid, grid):
    value = float(loss(*pair))
    if not np.isfinite(value):
      raise ValueError(f"loss{pair} = {value} is not finite")
    losses[pair] = value
  best = min(sorted(losses, reverse=True), key=losses.__getitem__)
  return best[0], best[1], losses


def _sorted_knots(knots) -> tuple[np.ndarray, np.ndarray]:
  knots = np.asarray(knots, np.float64).reshape(-1)
  order = np.argsort(knots)
  if len(knots) < 2 or np.any(np.diff(knots[order]) <= 0):
    raise ValueError(f"a spline needs at least 2 distinct knots, got {knots}")
  return knots[order], order


def _q_and_r_inverse(knots) -> tuple[np.ndarray, np.ndarray]:
  """Green & Silverman's Q (m x m-2) and R^-1 (m-2 x m-2), sorted knots."""
  m = len(knots)
  h = np.diff(knots)
  q = np.zeros((m, m - 2))
  r = np.zeros((m - 2, m - 2))
  for c in range(m - 2):  # interior knot c + 1
    q[c, c] = 1 / h[c]
    q[c + 1, c] = -1 / h[c] - 1 / h[c + 1]
    q[c + 2, c] = 1 / h[c + 1]
    r[c, c] = (h[c] + h[c + 1]) / 3
    if c + 1 < m - 2:
      r[c, c + 1] = r[c + 1, c] = h[c + 1] / 6
  return q, np.linalg.inv(r) if m > 2 else r
