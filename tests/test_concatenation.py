"""Tests for the image concatenation (collage) code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import codes
from jaxcc import erasures
from jaxcc.codes import _concatenation


def constant_images(k, image_shape, batch=2):
  """Image i (0-based) is filled with the value i + 1."""
  values = np.arange(1, k + 1, dtype=np.float32)
  values = values.reshape((1, k) + (1,) * len(image_shape))
  return jnp.asarray(np.broadcast_to(values, (batch, k) + image_shape))


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (28, 28)])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_encode_shape(k, image_shape):
  code = codes.concatenation(k)
  x = jnp.ones((3, k) + image_shape)
  parity = jax.jit(code.encode)({}, x)
  assert code.r == 1
  assert parity.shape == (3, 1) + image_shape
  assert parity.dtype == x.dtype


def test_grid():
  assert [_concatenation.grid(k) for k in (1, 2, 3, 4, 5, 9, 10)] == [
      (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4)]


def test_two_images_side_by_side():
  parity = codes.concatenation(2).encode({}, constant_images(2, (28, 28, 1)))
  np.testing.assert_allclose(parity[:, 0, :, :14], 1.0, rtol=1e-5)
  np.testing.assert_allclose(parity[:, 0, :, 14:], 2.0, rtol=1e-5)


def test_downsamples_content():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 2, 8, 8, 3)), jnp.float32)
  parity = codes.concatenation(2).encode({}, x)
  want = jax.image.resize(x[:, 1], (1, 8, 4, 3), "linear", antialias=True)
  np.testing.assert_allclose(parity[:, 0, :, 4:], want, rtol=1e-5, atol=1e-6)


def test_four_images_in_quadrants():
  parity = codes.concatenation(4).encode({}, constant_images(4, (32, 32, 3)))
  quadrants = [parity[:, 0, :16, :16], parity[:, 0, :16, 16:],
               parity[:, 0, 16:, :16], parity[:, 0, 16:, 16:]]
  for value, quadrant in enumerate(quadrants, start=1):
    np.testing.assert_allclose(quadrant, value, rtol=1e-5)


def test_three_images_leave_a_cell_and_edges_empty():
  parity = codes.concatenation(3).encode({}, constant_images(3, (29, 29)))
  np.testing.assert_allclose(parity[:, 0, :14, :14], 1.0, rtol=1e-5)
  np.testing.assert_allclose(parity[:, 0, :14, 14:28], 2.0, rtol=1e-5)
  np.testing.assert_allclose(parity[:, 0, 14:28, :14], 3.0, rtol=1e-5)
  np.testing.assert_array_equal(parity[:, 0, 14:, 14:], 0.0)
  np.testing.assert_array_equal(parity[:, 0, 28:], 0.0)
  np.testing.assert_array_equal(parity[:, 0, :, 28:], 0.0)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_decode_every_pattern_compiled_once(k):
  code = codes.concatenation(k)
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.normal(size=(2, k, 8, 8, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(8 * 8 * 3, 5)), jnp.float32)
  model = lambda v: v.reshape(v.shape[:2] + (-1,)) @ w
  assert code.encode({}, x).shape == (2, 1, 8, 8, 3)
  f_x = model(x)
  # A perfect "parity model" stand-in: it returns the sum of the outputs.
  stand_in = lambda f: jnp.concatenate([f, f.sum(axis=1, keepdims=True)], 1)
  traces = []

  @jax.jit
  def decode_all(y, masks):
    traces.append(1)
    return jax.vmap(lambda a: code.decode({}, y, a))(masks)

  masks = jnp.asarray(erasures.patterns(k, 1))
  for f in (f_x, 2.0 * f_x + 1.0):
    out = decode_all(stand_in(f), masks)
    assert out.shape == (k, 2, k, 5)
    for j in range(k):  # Pattern j loses data output j.
      np.testing.assert_allclose(out[j], f, rtol=1e-4, atol=1e-3)
      untouched = [i for i in range(k) if i != j]
      np.testing.assert_array_equal(out[j][:, untouched], f[:, untouched])
  assert len(traces) == 1


def test_impossible_grid():
  code = codes.concatenation(100)
  with pytest.raises(ValueError, match="cell"):
    code.encode({}, jnp.ones((1, 100, 4, 4)))


def test_needs_two_spatial_dims():
  with pytest.raises(ValueError, match="H, W"):
    codes.concatenation(2).encode({}, jnp.ones((1, 2, 16)))


def test_bad_arguments():
  with pytest.raises(ValueError, match="k must be"):
    codes.concatenation(0)
  with pytest.raises(ValueError, match="resize method"):
    codes.concatenation(2, method="bogus")
