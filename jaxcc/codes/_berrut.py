"""A training-free code by Berrut rational interpolation (ApproxIFER / BACC).

Each of the n = k + r outputs of a group sits at a real interpolation node:
data input j at `alpha_j`, parity i at `z_i`. Parity i is the Berrut
interpolant through the k `(alpha_j, X_j)` pairs evaluated at `z_i`,

  u(z) = sum_j w_j(z) X_j / sum_j w_j(z),   w_j(z) = (-1)^j / (z - alpha_j),

with j counted in the order of the nodes along the real line. The base model
F itself (no parity model) runs on the parities. The decoder builds the Berrut
interpolant through whichever outputs arrived (signs alternating in the order
of the arrived nodes) and reads it at the missing data nodes. Berrut's
interpolant has no real poles for any node set, so every pattern decodes
stably; it is exact for constants and approximate otherwise, improving as the
nodes get denser.

This is the systematic form: the data inputs themselves are sent to k of the
n workers, so arrived data outputs are passed through exactly.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc.codes import _code
from jaxcc.codes import _linear


def default_nodes(k: int, r: int) -> np.ndarray:
  """`(data nodes..., parity nodes...)`: Chebyshev points of the first kind.

  The n = k + r points `cos((2m + 1) pi / (2n))` are shared out with parities
  at positions `floor((i + 0.5) n / r)`, spread among the data positions.
  """
  n = k + r
  beta_N = np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))
  parity_R = np.floor((np.arange(r) + 0.5) * n / r).astype(int)
  data_K = np.setdiff1d(np.arange(n), parity_R)
  return np.concatenate([beta_N[data_K], beta_N[parity_R]])


def berrut_weights(targets_T, nodes_N) -> np.ndarray:
  """`(T, N)` float64 Berrut coefficients from values at nodes to targets.

  Targets must differ from every node.
  """
  targets_T = np.asarray(targets_T, np.float64)
  nodes_N = np.asarray(nodes_N, np.float64)
  signs_N = np.empty(len(nodes_N))
  signs_N[np.argsort(nodes_N)] = (-1.0)**np.arange(len(nodes_N))
  w_TN = signs_N / (targets_T[:, None] - nodes_N[None, :])
  return w_TN / w_TN.sum(axis=1, keepdims=True)


def berrut(k: int, r: int, nodes=None) -> _code.Code:
  """A systematic Berrut rational-interpolation code (no parameters).

  Args:
    k: data inputs per group (>= 1).
    r: parities per group (>= 1).
    nodes: optional k + r finite reals, distinct in float32, data nodes
      first then parity nodes; defaults to `default_nodes(k, r)`.
  """
  _code.validate_k_r(k, r)
  if r < 1:
    raise ValueError(f"a Berrut code needs r >= 1 parities, got r={r}")
  n = k + r
  if nodes is None:
    nodes_N = default_nodes(k, r)
  else:
    nodes_N = np.asarray(nodes, dtype=np.float64).reshape(-1)
    if np.ndim(nodes) != 1 or len(nodes_N) != n:
      raise ValueError(f"nodes must be a flat sequence of k+r={n} reals, got "
                       f"shape {np.shape(nodes)}")
    if not np.all(np.isfinite(nodes_N)):
      raise ValueError(f"nodes must be finite, got {nodes_N}")
    if len(np.unique(nodes_N.astype(np.float32))) != n:
      raise ValueError(f"nodes must be distinct, got {nodes_N}")
  g_RK = berrut_weights(nodes_N[k:], nodes_N[:k])

  return _code.make_code(
      k, r, f"berrut(k={k}, r={r})", _code.no_params,
      encode=lambda params, x_BK: _linear.combine(g_RK, x_BK),
      decode=lambda params, y_BN, available_N: _decode(
          nodes_N, y_BN, available_N, k))


def _decode(nodes_N, y_BN, available_N, k) -> jax.Array:
  """Berrut-interpolates the arrived outputs at the missing data nodes."""
  order_N = np.argsort(nodes_N)
  rank_N = jnp.cumsum(available_N[order_N])[np.argsort(order_N)]
  signs_N = jnp.where(rank_N % 2 == 0, 1.0, -1.0)
  nodes = jnp.asarray(nodes_N, jnp.float32)
  diff_KN = nodes[:k, None] - nodes[None, :]
  # Node j's own column (the only zero difference) is never used: a missing
  # node has no weight and an arrived data output is passed through.
  use_KN = available_N[None, :] & (diff_KN != 0)
  w_KN = jnp.where(use_KN, signs_N / jnp.where(use_KN, diff_KN, 1.0), 0.0)
  total_K = jnp.sum(w_KN, axis=1, keepdims=True)
  # Rows of arrived data outputs are discarded; keep their division finite.
  total_K = jnp.where(available_N[:k, None], 1.0, total_K)
  coef_KN = (w_KN / total_K).astype(y_BN.dtype)
  arrived = available_N.reshape((1, -1) + (1,) * (y_BN.ndim - 2))
  y_BN_arrived = jnp.where(arrived, y_BN, jnp.zeros((), y_BN.dtype))
  recon_BK = jnp.einsum("kn,bn...->bk...", coef_KN, y_BN_arrived,
                        precision=jax.lax.Precision.HIGHEST)
  return _code.pass_through_available(y_BN, recon_BK, available_N, k)
