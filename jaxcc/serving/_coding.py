"""How the frontend encodes and decodes a coding group: NumPy or jitted.

`coder(code, params)` chooses once, from the code:

- `Host`, for a linear code (`code.maps`): the encode is one small matrix
  product on the host, the decode another with the pattern's decoding matrix
  (computed once per pattern, then cached). No JAX dispatch and no device
  transfer: a few microseconds per group, so it runs inline
  (`offload = False`), even when the frontend has an executor.
- `Jitted`, for any other code (learned, concatenation): `jax.jit` of the
  code's own encode and decode, over rows padded to power-of-two buckets
  (`_batching`), all compiled at start; it runs in the frontend's executor
  when there is one (`offload = True`).

Both take and return float32 NumPy arrays: `encode(x_BK...) -> coded_BM...`
(M = R parities, or N coded queries) and `decode(y_BN..., available_N) ->
y_BK...`, as the code's own functions.
"""

import jax
import numpy as np

from jaxcc import codes
from jaxcc.serving import _batching


class Host:
  """A linear code's maps applied with NumPy, decoding matrices cached."""
  offload = False

  def __init__(self, code: codes.Code):
    self._code = code
    self._encoding_MK = np.asarray(code.maps.encoding_MK, np.float32)
    self._decoding = {}  # pattern bytes -> (arrived_N, d_KA float32)

  def encode(self, x_BK) -> np.ndarray:
    x_BK = np.asarray(x_BK, np.float32)
    b, k = x_BK.shape[:2]
    coded_BMS = np.matmul(self._encoding_MK, x_BK.reshape(b, k, -1))
    return coded_BMS.reshape((b, -1) + x_BK.shape[2:])

  def decode(self, y_BN, available_N) -> np.ndarray:
    """Reads the arrived outputs only (missing ones may hold anything)."""
    available_N = np.asarray(available_N, bool)
    key = available_N.tobytes()
    if key not in self._decoding:
      d_KN = self._code.maps.decoding(available_N)
      self._decoding[key] = (available_N.copy(),
                             np.asarray(d_KN[:, available_N], np.float32))
    arrived_N, d_KA = self._decoding[key]
    y_BA = np.asarray(y_BN, np.float32)[:, arrived_N]
    b, a = y_BA.shape[:2]
    y_BKS = np.matmul(d_KA, y_BA.reshape(b, a, -1))
    return y_BKS.reshape((b, -1) + y_BA.shape[2:])

  def prepare(self, params, x_BK, y_BN) -> None:
    """Checks the maps against the code's own functions on one group
    (`x_BK`, `y_BN`: random values), so maps left stale by a replaced
    `encode` or `decode` are caught at start, not served."""
    k, r = self._code.k, self._code.r
    available_N = np.arange(k + r) >= r  # The first r outputs missing.
    for what, ours, theirs in (
        ("encode", self.encode(x_BK), self._code.encode(params, x_BK)),
        ("decode", self.decode(y_BN, available_N),
         self._code.decode(params, y_BN, available_N))):
      scale = 1.0 + np.abs(np.asarray(theirs)).max()
      if not np.allclose(ours, theirs, rtol=0.0, atol=1e-4 * scale):
        raise ValueError(
            f"{self._code.name}: its maps disagree with its own {what}; a "
            "code whose encode or decode is replaced must drop its maps "
            "(code._replace(maps=None))")


class Jitted:
  """The code's own encode and decode, jitted over bucketed batch sizes."""
  offload = True

  def __init__(self, code: codes.Code, params):
    self._code = code
    encode, decode = jax.jit(code.encode), jax.jit(code.decode)
    self.encode = _batching.padded(lambda x_BK: encode(params, x_BK))
    self.decode = _batching.padded(
        lambda y_BN, available_N: decode(params, y_BN, available_N))

  def prepare(self, params, x_BK, y_BN) -> None:
    """Compiles every bucket up to `len(x_BK)` rows."""
    del params
    n = self._code.k + self._code.r
    for size in _batching.buckets(len(x_BK)):
      self.encode(np.zeros((size,) + x_BK.shape[1:], np.float32))
      self.decode(np.zeros((size,) + y_BN.shape[1:], np.float32),
                  np.arange(n) != 0)


def coder(code: codes.Code, params):
  """`Host` for a linear code, `Jitted` otherwise."""
  return Host(code) if code.maps is not None else Jitted(code, params)
