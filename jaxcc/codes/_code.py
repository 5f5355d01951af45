"""The `Code` contract shared by every coding scheme.

Shape names: B groups in a batch, K data inputs per group, R parities,
N = K + R outputs (workers) per group, P erasure patterns.

A code is *systematic* (`Code.systematic` is True) or not:

- Systematic: the K data inputs themselves go to K workers.
  `encode(params, x_BK...) -> parities_BR...` makes the R parity queries;
  `y_BN` holds the K data outputs `F(x_k)` first, then the R parity outputs.
  `decode(params, y_BN..., available_N) -> y_BK...` passes arrived data
  outputs through unchanged and reconstructs the missing ones.
- Non-systematic: every worker computes on a coded query.
  `encode(params, x_BK...) -> coded_BN...` makes N = K + R coded queries, one
  per worker; `y_BN` holds the N worker outputs in worker order.
  `decode(params, y_BN..., available_N) -> y_BK...` returns all K predictions
  from the decoder, whatever the pattern (also when every worker arrived).

In both cases `available_N` is True where an output arrived, at most R are
False, and it is data (a boolean array), so every pattern is decoded by one
`jax.vmap` and compiled once. `jaxcc.erasures` lists the patterns each kind
of code is evaluated on (`erasures.decoding_patterns`).

A linear code (summation, linear, Berrut, spline) also exposes its two maps
as matrices (`Code.maps`, a `LinearMaps`), so a host can encode and decode
a group with one small NumPy product, without JAX.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import erasures


class LinearMaps(NamedTuple):
  """A linear code's encoder and decoder as float64 NumPy matrices.

  With M = R (systematic) or N (not), `encode(x_BK)[:, m]` is
  `sum_k encoding_MK[m, k] x_BK[:, k]`, and with `d_KN = decoding(available_N)`,
  `decode(y_BN, available_N)[:, k]` is `sum_n d_KN[k, n] y_BN[:, n]`. The
  columns of missing outputs are zero, and for a systematic code the row of
  an arrived data output is its unit vector (passed through).

  Attributes:
    encoding_MK: `(R, K)` or `(N, K)`.
    decoding: `available_N -> d_KN`, for one concrete pattern.
  """
  encoding_MK: np.ndarray
  decoding: Callable[[np.ndarray], np.ndarray]

  # By identity, as the functions of a `Code`: a code stays hashable (a
  # static argument of `jax.jit`, a cache key) though it holds an array.
  __hash__ = object.__hash__

  def __eq__(self, other):
    return self is other


class Code(NamedTuple):
  """An erasure code over model inputs and outputs, as pure functions.

  Attributes:
    k: data inputs per coding group.
    r: parity inputs per coding group.
    init: `(key, input_shape, output_shape) -> params`; shapes are those of
      one example (no group or batch axes). Codes without parameters ignore
      them and return `{}`.
    encode: `(params, x_BK...) -> parities_BR...` for a systematic code,
      `(params, x_BK...) -> coded_BN...` (one query per worker) otherwise.
    decode: `(params, y_BN..., available_N) -> y_BK...`; see the module
      docstring for what `y_BN` holds.
    name: a short human-readable name.
    parity_target: `(params, y_BK...) -> y_BR...`, the parity outputs that
      the decoder expects from perfect parity computations given the data
      outputs (for a linear code `sum_i G[j, i] y_i`): what parity models are
      trained toward. None for codes that run F itself on the parities.
    systematic: True if the K data inputs go unchanged to K workers and
      `encode` returns only the R parity queries; False if `encode` returns
      N = K + R coded queries and all K outputs come from `decode`.
    maps: a linear code's encoder and decoder as matrices; None for codes
      that are not linear (learned, concatenation). A code whose `encode` or
      `decode` is replaced must drop them (`_replace(maps=None)`).
  """
  k: int
  r: int
  init: Callable[..., Any]
  encode: Callable[..., jax.Array]
  decode: Callable[..., jax.Array]
  name: str
  parity_target: Optional[Callable[..., jax.Array]] = None
  systematic: bool = True
  maps: Optional[LinearMaps] = None


def make_code(k, r, name, init, encode, decode, parity_target=None,
              systematic=True, encoding_MK=None, decoding=None) -> Code:
  """Wraps raw encode/decode functions with argument checks."""

  def checked_encode(params, x_BK):
    check_group_inputs(x_BK, k)
    _check_finite(x_BK, "encode inputs")
    return encode(params, x_BK)

  def checked_decode(params, y_BN, available_N):
    available_N = check_available(available_N, k, r)
    check_group_outputs(y_BN, k, r, systematic)
    if not isinstance(available_N, jax.core.Tracer):
      _check_finite(y_BN, "available decode outputs",
                    (slice(None), np.asarray(available_N)))
    return decode(params, y_BN, available_N)

  maps = None
  if encoding_MK is not None:
    encoding_MK = np.asarray(encoding_MK, np.float64)
    m = r if systematic else k + r
    if encoding_MK.shape != (m, k):
      raise ValueError(f"encoding_MK must have shape ({m}, {k}), got "
                       f"{encoding_MK.shape}")

    def checked_decoding(available_N):
      available_N = np.asarray(check_available(available_N, k, r))
      d_KN = np.asarray(decoding(available_N), np.float64).copy()
      d_KN[:, ~available_N] = 0.0
      if systematic:
        arrived_K = available_N[:k]
        d_KN[arrived_K] = np.eye(k, k + r)[arrived_K]
      return d_KN

    maps = LinearMaps(encoding_MK, checked_decoding)
  return Code(k=k, r=r, init=init, encode=checked_encode,
              decode=checked_decode, name=name, parity_target=parity_target,
              systematic=systematic, maps=maps)


def no_params(key, input_shape=None, output_shape=None):
  """`init` of a code without learned parameters."""
  del key, input_shape, output_shape
  return {}


def _check_finite(values, what, index=...) -> None:
  """Raises on NaN or infinity in concrete (not traced) float values.

  Checked with NumPy: under `jit` even constants are traced by jnp.
  """
  if isinstance(values, jax.core.Tracer):
    return
  values = np.asarray(values)
  if np.issubdtype(values.dtype, np.floating) and not np.isfinite(
      values[index]).all():
    raise ValueError(f"{what} contain NaN or infinite values")


def check_group_inputs(x_BK, k) -> None:
  if jnp.ndim(x_BK) < 2 or jnp.shape(x_BK)[1] != k:
    raise ValueError(
        f"encode expects inputs shaped (batch, k={k}, *input_shape); "
        f"got shape {jnp.shape(x_BK)}")


def check_group_outputs(y_BN, k, r, systematic=True) -> None:
  if jnp.ndim(y_BN) < 2 or jnp.shape(y_BN)[1] != k + r:
    order = ("data outputs first, then parity outputs" if systematic else
             "one output per worker, in worker order")
    raise ValueError(
        f"decode expects outputs shaped (batch, k+r={k + r}, *output_shape) "
        f"with {order}; got shape {jnp.shape(y_BN)}")


def check_available(available_N, k, r) -> jax.Array:
  """Checks the mask's shape, and its erasure count when it is concrete."""
  if jnp.shape(available_N) != (k + r,):
    raise ValueError(
        f"available must be a boolean array of shape (k+r,) = ({k + r},); "
        f"got shape {jnp.shape(available_N)}")
  if not isinstance(available_N, jax.core.Tracer):
    missing = int(np.sum(~np.asarray(available_N, dtype=bool)))
    if missing > r:
      raise ValueError(
          f"{missing} outputs are unavailable but a code with r={r} can "
          f"rebuild at most {r}; available={np.asarray(available_N)}")
  return jnp.asarray(available_N, dtype=bool)


def pass_through_available(y_BN, recon_BK, available_N, k) -> jax.Array:
  """Keeps arrived data outputs and fills the rest from `recon_BK`."""
  y_BK = y_BN[:, :k]
  keep = available_N[:k].reshape((1, k) + (1,) * (y_BK.ndim - 2))
  return jnp.where(keep, y_BK, recon_BK.astype(y_BK.dtype))


def validate_k_r(k, r) -> None:
  erasures.check_k_r(k, r)
