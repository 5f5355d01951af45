"""Systematic real-valued linear codes: summation (r = 1) and general r.

Parity j of a group is `P_j = sum_i G[j, i] X_i`. A parity model for parity j
is trained toward `sum_i G[j, i] F(X_i)`, so the k+r outputs satisfy
`y_N = A @ F(X)_K` with `A = [I_k; G]`. Decoding takes the first k available
outputs (data outputs first), solves that k x k system and reads the missing
data outputs from the solution: exact for a linear F and any pattern with at
most r erasures, because every square submatrix of G is invertible.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc.codes import _code

_RANDOM_DRAWS = 256


def worst_condition(g_RK) -> float:
  """Largest condition number over all square submatrices of `g_RK`."""
  g_RK = np.asarray(g_RK, dtype=np.float64)
  r, k = g_RK.shape
  worst = 1.0
  for m in range(1, min(r, k) + 1):
    rows = np.array(list(itertools.combinations(range(r), m)))
    cols = np.array(list(itertools.combinations(range(k), m)))
    subs = g_RK[rows[:, None, :, None], cols[None, :, None, :]]
    worst = max(worst, float(np.linalg.cond(subs.reshape(-1, m, m)).max()))
  return worst


def generator(k: int, r: int, kind: str = "random") -> np.ndarray:
  """The `(r, k)` coefficient matrix G of a linear code; row 0 is all ones.

  Kinds:
    "random" (default): rows 1.. drawn uniformly from [-1, 1]; the
      best-conditioned of 256 seeded draws, so the same (k, r) always gives the
      same G. Random real matrices have far better conditioned square
      submatrices than structured ones (worst case at k = 8, r = 4: about 180
      against 1.5e5 for Vandermonde), which is what float32 decoding needs.
    "vandermonde": row j holds the j-th powers of the nodes 1..k (for k = 2,
      r = 2 the paper's X1 + X2, X1 + 2 X2). Every square submatrix is
      invertible (totally positive), but badly conditioned for large k and r
      (1.5e5 at k = 8, r = 4).
  """
  _code.validate_k_r(k, r)
  if kind == "vandermonde":
    nodes = np.arange(1, k + 1, dtype=np.float64)
    return np.stack([nodes**j for j in range(r)]).reshape(r, k)
  if kind != "random":
    raise ValueError(f"unknown generator kind {kind!r}; "
                     "expected 'random' or 'vandermonde'")
  return _best_random_generator(k, r).copy()


@functools.lru_cache(maxsize=None)
def _best_random_generator(k, r):
  draws = []
  for seed in range(_RANDOM_DRAWS):
    g_RK = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(r, k))
    g_RK[:1] = 1.0
    draws.append(g_RK)
  return min(draws, key=worst_condition)


def linear(k: int, r: int = 1, coefficients="random") -> _code.Code:
  """A systematic linear code with parities `P_j = sum_i G[j, i] X_i`.

  Args:
    k: data inputs per group (>= 1).
    r: parities per group (>= 1).
    coefficients: a `generator` kind ("random" or "vandermonde") or an
      explicit `(r, k)` matrix G. Every square submatrix must be invertible for every pattern with at most
      r erasures to be decodable; this is checked.
  """
  _code.validate_k_r(k, r)
  if r < 1:
    raise ValueError(f"a linear code needs r >= 1 parities, got r={r}")
  if isinstance(coefficients, str):
    g_RK = generator(k, r, coefficients)
  else:
    g_RK = np.asarray(coefficients, dtype=np.float64)
  if g_RK.shape != (r, k):
    raise ValueError(f"coefficients must have shape (r, k) = ({r}, {k}), "
                     f"got {g_RK.shape}")
  _check_mds(g_RK)
  a_NK = np.concatenate([np.eye(k), g_RK])
  return _code.make_code(
      k, r, f"linear(k={k}, r={r})", _code.no_params,
      encode=lambda params, x_BK: combine(g_RK, x_BK),
      decode=lambda params, y_BN, available_N: _solve_decode(
          a_NK, y_BN, available_N, k),
      parity_target=lambda params, y_BK: combine(g_RK, y_BK),
      encoding_MK=g_RK, decoding=lambda available_N: _solve_matrix(
          a_NK, available_N, k))


def summation(k: int) -> _code.Code:
  """The paper's addition/subtraction code: `P = sum_i X_i` (r = 1).

  Decoding gives `F(X_j) ~= F_P(P) - sum_{i != j} F(X_i)`.
  """
  return linear(k, 1)._replace(name=f"summation(k={k})")


def combine(g_RK, x_BK) -> jax.Array:
  """`out[b, j] = sum_i g[j, i] x[b, i]` over any trailing shape."""
  g_RK = jnp.asarray(g_RK, dtype=x_BK.dtype)
  return jnp.einsum("rk,bk...->br...", g_RK, x_BK,
                    precision=jax.lax.Precision.HIGHEST)


def _solve_decode(a_NK, y_BN, available_N, k) -> jax.Array:
  """Solves for the data outputs from the first k available outputs."""
  chosen_N = available_N & (jnp.cumsum(available_N) <= k)
  rows_K = jnp.nonzero(chosen_N, size=k)[0]
  a_KK = jnp.asarray(a_NK, dtype=jnp.float32)[rows_K]
  inverse_KK = jnp.linalg.inv(a_KK)
  y_chosen_BK = jnp.take(y_BN, rows_K, axis=1)
  recon_BK = jnp.einsum("ij,bj...->bi...", inverse_KK.astype(y_BN.dtype),
                        y_chosen_BK, precision=jax.lax.Precision.HIGHEST)
  return _code.pass_through_available(y_BN, recon_BK, available_N, k)


def _solve_matrix(a_NK, available_N, k) -> np.ndarray:
  """`_solve_decode` as a `(K, N)` matrix, in float64."""
  rows_K = np.flatnonzero(available_N)[:k]
  d_KN = np.zeros((k, len(available_N)))
  d_KN[:, rows_K] = np.linalg.inv(a_NK[rows_K])
  return d_KN


def _check_mds(g_RK) -> None:
  """Raises unless every square submatrix of g is finite and invertible."""
  if not np.all(np.isfinite(g_RK)):
    raise ValueError("coefficients must be finite")
  if worst_condition(g_RK) > 1e7:
    raise ValueError(
        "coefficients have a singular or nearly singular square submatrix "
        "(condition number > 1e7): some erasure patterns could not be decoded")
