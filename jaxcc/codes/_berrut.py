"""Training-free codes by Berrut rational interpolation (ApproxIFER / BACC).

Berrut's interpolant through values `v_m` at real nodes `t_m` is

  u(z) = sum_m w_m(z) v_m / sum_m w_m(z),   w_m(z) = (-1)^m / (z - t_m),

with m counted in the order of the nodes along the real line. It has no real
poles for any node set, passes through every node (`u(t_m) = v_m`), is exact
for constants and approximate otherwise, improving as the nodes get denser.
The base model F itself (no parity model) runs on the coded queries.

Two codes use it:

- `berrut(k, r, systematic=False)`: ApproxIFER's code (Soleymani et al.,
  AAAI 2022). The k queries sit at Chebyshev points
  `alpha_j = cos((2j + 1) pi / (2k))`, the N = k + r workers at
  `z_i = cos(i pi / N)`, i = 0..N-1. Worker i computes F on `u(z_i)`, the
  interpolant of the queries; the decoder builds the interpolant through the
  outputs that arrived (signs alternating over the arrived nodes in node
  order) and reads all k predictions at the `alpha_j`. Where a query point
  coincides with a worker point (e.g. k = r = 2), that worker's query is the
  query itself and its output, when it arrives, is the prediction.
- `berrut(k, r)` (default): a systematic variant of ApproxIFER's code. The
  data inputs go to k workers unchanged, so arrived data outputs are passed
  through exactly; data input j sits at `alpha_j`, parity i at `z_i` (see
  `default_nodes`), parity i is `u(z_i)` through the k `(alpha_j, X_j)`,
  and the decoder reads the interpolant through whichever of the N outputs
  arrived at the missing data nodes.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc.codes import _code
from jaxcc.codes import _linear

# Nodes closer than this (absolute, in float64) count as the same point.
_SAME_NODE = 1e-12


def default_nodes(k: int, r: int) -> np.ndarray:
  """Nodes of the systematic code: `(data nodes..., parity nodes...)`.

  Chebyshev points of the first kind: the n = k + r points
  `cos((2m + 1) pi / (2n))` are shared out with parities at positions
  `floor((i + 0.5) n / r)`, spread among the data positions.
  """
  n = k + r
  beta_N = np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))
  parity_R = np.floor((np.arange(r) + 0.5) * n / r).astype(int)
  data_K = np.setdiff1d(np.arange(n), parity_R)
  return np.concatenate([beta_N[data_K], beta_N[parity_R]])


def approxifer_nodes(k: int, r: int) -> tuple[np.ndarray, np.ndarray]:
  """ApproxIFER's `(query points alpha_K, worker points z_N)`, N = k + r."""
  n = k + r
  alpha_K = np.cos((2 * np.arange(k) + 1) * np.pi / (2 * k))
  z_N = np.cos(np.arange(n) * np.pi / n)
  return alpha_K, z_N


def berrut_weights(targets_T, nodes_N) -> np.ndarray:
  """`(T, N)` float64 Berrut coefficients from values at nodes to targets.

  A target that coincides with a node gets that node's value exactly.
  """
  targets_T = np.asarray(targets_T, np.float64)
  nodes_N = np.asarray(nodes_N, np.float64)
  signs_N = np.empty(len(nodes_N))
  signs_N[np.argsort(nodes_N)] = (-1.0)**np.arange(len(nodes_N))
  diff_TN = targets_T[:, None] - nodes_N[None, :]
  same_TN = np.abs(diff_TN) <= _SAME_NODE
  w_TN = signs_N / np.where(same_TN, 1.0, diff_TN)
  w_TN = w_TN / w_TN.sum(axis=1, keepdims=True)
  hit_T = same_TN.any(axis=1, keepdims=True)
  return np.where(hit_T, same_TN.astype(np.float64), w_TN)


def berrut(k: int, r: int, nodes=None, systematic: bool = True) -> _code.Code:
  """A Berrut rational-interpolation code (no parameters).

  Args:
    k: data inputs (queries) per group (>= 1).
    r: parities per group, or redundant workers (>= 1).
    nodes: systematic variant only: k + r finite reals, distinct in float32,
      data nodes first then parity nodes; defaults to `default_nodes(k, r)`.
    systematic: True (default) for the systematic variant, False for
      ApproxIFER's code, where all N = k + r workers compute on coded
      queries and all k predictions come from the decoder.
  """
  _code.validate_k_r(k, r)
  if r < 1:
    raise ValueError(f"a Berrut code needs r >= 1 parities, got r={r}")
  if not systematic:
    if nodes is not None:
      raise ValueError("nodes can only be chosen for the systematic Berrut "
                       "code; ApproxIFER's code uses its own points")
    return _approxifer(k, r)
  n = k + r
  nodes_N = check_points(nodes, default_nodes(k, r), n, "nodes")
  g_RK = berrut_weights(nodes_N[k:], nodes_N[:k])

  def decode(params, y_BN, available_N):
    del params
    coef_KN = masked_berrut_weights(nodes_N[:k], nodes_N, available_N)
    recon_BK = apply_weights(coef_KN, y_BN, available_N)
    return _code.pass_through_available(y_BN, recon_BK, available_N, k)

  return _code.make_code(
      k, r, f"berrut(k={k}, r={r})", _code.no_params,
      encode=lambda params, x_BK: _linear.combine(g_RK, x_BK), decode=decode,
      encoding_MK=g_RK, decoding=lambda available_N: arrived_berrut_weights(
          nodes_N[:k], nodes_N, available_N))


def _approxifer(k, r) -> _code.Code:
  """ApproxIFER's non-systematic code on `approxifer_nodes(k, r)`."""
  alpha_K, z_N = approxifer_nodes(k, r)
  g_NK = berrut_weights(z_N, alpha_K)

  def decode(params, y_BN, available_N):
    del params
    return apply_weights(masked_berrut_weights(alpha_K, z_N, available_N), y_BN,
                  available_N)

  return _code.make_code(
      k, r, f"berrut(k={k}, r={r}, systematic=False)", _code.no_params,
      encode=lambda params, x_BK: _linear.combine(g_NK, x_BK), decode=decode,
      systematic=False, encoding_MK=g_NK,
      decoding=lambda available_N: arrived_berrut_weights(alpha_K, z_N,
                                                          available_N))


def arrived_berrut_weights(targets_T, nodes_N, available_N) -> np.ndarray:
  """`masked_berrut_weights` for one concrete pattern, in float64 NumPy."""
  available_N = np.asarray(available_N, bool)
  w_TN = np.zeros((len(targets_T), len(nodes_N)))
  w_TN[:, available_N] = berrut_weights(targets_T,
                                        np.asarray(nodes_N)[available_N])
  return w_TN


def masked_berrut_weights(targets_T, nodes_N, available_N) -> jax.Array:
  """`(T, N)` float32 Berrut coefficients through the arrived nodes only.

  Traceable in `available_N`: signs alternate over the arrived nodes in node
  order, missing nodes get weight 0, and a target that coincides with an
  arrived node takes that node's value. Targets and nodes are fixed NumPy
  arrays; at least one node must arrive.
  """
  nodes_N = np.asarray(nodes_N, np.float64)
  order_N = np.argsort(nodes_N)
  rank_N = jnp.cumsum(available_N[order_N])[np.argsort(order_N)]
  signs_N = jnp.where(rank_N % 2 == 0, 1.0, -1.0)
  diff_TN = np.asarray(targets_T, np.float64)[:, None] - nodes_N[None, :]
  same_TN = np.abs(diff_TN) <= _SAME_NODE
  inverse_TN = jnp.asarray(1.0 / np.where(same_TN, 1.0, diff_TN), jnp.float32)
  use_TN = available_N[None, :] & ~same_TN
  w_TN = jnp.where(use_TN, signs_N[None, :] * inverse_TN, 0.0)
  hit_TN = available_N[None, :] & same_TN
  hit_T = jnp.any(hit_TN, axis=1, keepdims=True)
  # Rows that hit a node ignore the sum; keep their division finite.
  total_T = jnp.where(hit_T, 1.0, jnp.sum(w_TN, axis=1, keepdims=True))
  return jnp.where(hit_T, hit_TN.astype(jnp.float32), w_TN / total_T)


def apply_weights(coef_KN, y_BN, available_N) -> jax.Array:
  """`sum_n coef[k, n] y[b, n]` over arrived outputs (missing ones unread)."""
  arrived = available_N.reshape((1, -1) + (1,) * (y_BN.ndim - 2))
  y_BN_arrived = jnp.where(arrived, y_BN, jnp.zeros((), y_BN.dtype))
  return jnp.einsum("kn,bn...->bk...", coef_KN.astype(y_BN.dtype),
                    y_BN_arrived, precision=jax.lax.Precision.HIGHEST)


def check_points(points, default, count: int, name: str) -> np.ndarray:
  """`points` as float64 (or `default` if None): `count` finite reals,
  distinct in float32, in a flat sequence; else a ValueError naming it."""
  if points is None:
    return default
  values = np.asarray(points, dtype=np.float64).reshape(-1)
  if np.ndim(points) != 1 or len(values) != count:
    raise ValueError(f"{name} must be a flat sequence of {count} reals, got "
                     f"shape {np.shape(points)}")
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{name} must be finite, got {values}")
  if len(np.unique(values.astype(np.float32))) != count:
    raise ValueError(f"{name} must be distinct, got {values}")
  return values
