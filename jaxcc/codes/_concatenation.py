"""The paper's image-specific concatenation code (r = 1).

The encoder downsamples each of the k images of a group and tiles them into
one image of the original size (the paper's Fig. 6): a grid with
`cols = ceil(sqrt(k))` columns and `rows = ceil(k / cols)` rows, each cell
`(H // rows, W // cols)` pixels, filled row by row. Empty cells and the pixels
left over at the right and bottom edges are zero. A parity model is trained
toward `sum_i F(X_i)` on these collages, so the decoder is the summation
code's subtraction decoder: `F(X_j) ~= F_P(P) - sum_{i != j} F(X_i)`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc.codes import _code
from jaxcc.codes import _linear


def grid(k: int) -> tuple[int, int]:
  """`(rows, cols)` of the collage grid for k images."""
  cols = math.isqrt(k - 1) + 1  # ceil(sqrt(k)) for k >= 1
  rows = -(-k // cols)
  return rows, cols


def concatenation(k: int, method: str = "linear") -> _code.Code:
  """A code whose single parity is a collage of the k downsampled inputs.

  Inputs are images shaped `(batch, k, H, W)` or `(batch, k, H, W, C)` (any
  trailing axes after H and W are carried along); the parity has the shape of
  one input, `(batch, 1, H, W, ...)`.

  Args:
    k: images per group (>= 1).
    method: a `jax.image.resize` method used (antialiased) to downsample.
  """
  _code.validate_k_r(k, 1)
  jax.image.ResizeMethod.from_string(method)  # Raises on an unknown method.
  rows, cols = grid(k)
  decoder = _linear.linear(k, 1, np.ones((1, k)))

  def encode(params, x_BK):
    del params
    return tile(x_BK, rows, cols, method)

  return _code.make_code(
      k, 1, f"concatenation(k={k})", _code.no_params, encode=encode,
      decode=decoder.decode, parity_target=decoder.parity_target)


def tile(x_BK, rows, cols, method="linear") -> jax.Array:
  """Downsamples `(B, k, H, W, ...)` images into a `(B, 1, H, W, ...)` tile."""
  if jnp.ndim(x_BK) < 4:
    raise ValueError(
        "concatenation expects images shaped (batch, k, H, W) or "
        f"(batch, k, H, W, C); got shape {jnp.shape(x_BK)}")
  b, k, h, w, *rest = jnp.shape(x_BK)
  if rows * cols < k:
    raise ValueError(f"a {rows}x{cols} grid cannot hold k={k} images")
  cell_h, cell_w = h // rows, w // cols
  if cell_h < 1 or cell_w < 1:
    raise ValueError(
        f"cannot tile k={k} images of size {h}x{w} into a {rows}x{cols} grid: "
        f"each cell would be {cell_h}x{cell_w} pixels")
  small_BK = jax.image.resize(x_BK, (b, k, cell_h, cell_w, *rest),
                              method=method, antialias=True)
  empty = jnp.zeros((b, rows * cols - k, cell_h, cell_w, *rest),
                    small_BK.dtype)
  cells = jnp.concatenate([small_BK, empty], axis=1)
  cells = cells.reshape(b, rows, cols, cell_h, cell_w, *rest)
  cells = jnp.swapaxes(cells, 2, 3)  # (b, rows, cell_h, cols, cell_w, ...)
  collage = cells.reshape(b, rows * cell_h, cols * cell_w, *rest)
  pad = [(0, 0), (0, h - rows * cell_h), (0, w - cols * cell_w)]
  collage = jnp.pad(collage, pad + [(0, 0)] * len(rest))
  return collage[:, None].astype(x_BK.dtype)
