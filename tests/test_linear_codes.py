"""Summation and linear codes: exact over a linear base model, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcc


def _linear_model(rng, in_dim, out_dim):
  w = jnp.asarray(rng.normal(size=(in_dim, out_dim)), jnp.float32)
  return lambda x: x.reshape(x.shape[:2] + (-1,)) @ w


def _coded_outputs(code, f, x):
  return jnp.concatenate([f(x), f(code.encode({}, x))], axis=1)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_summation_reconstructs_every_pattern_exactly(k):
  rng = np.random.default_rng(k)
  code = jaxcc.codes.summation(k)
  x = jnp.asarray(rng.normal(size=(8, k, 6, 6, 1)), jnp.float32)
  f = _linear_model(rng, 36, 10)
  y = _coded_outputs(code, f, x)
  traces = []

  @jax.jit
  def decode_all(y, patterns):
    traces.append(1)
    return jax.vmap(code.decode, in_axes=(None, None, 0))({}, y, patterns)

  patterns = jaxcc.erasures.patterns(k, 1)
  assert patterns.shape == (k, k + 1)
  recon = decode_all(y, patterns)
  decode_all(y + 1.0, patterns)
  assert len(traces) == 1  # one compile covers every pattern
  np.testing.assert_allclose(recon, jnp.broadcast_to(f(x), recon.shape),
                             rtol=1e-5, atol=1e-4)


def test_summation_decodes_by_subtraction():
  y = jnp.asarray([[[1.0], [2.0], [3.0], [10.0]]])  # F(X1..3), F_P(P)
  recon = jaxcc.codes.summation(3).decode({}, y, np.array([1, 0, 1, 1], bool))
  np.testing.assert_allclose(recon[0, :, 0], [1.0, 6.0, 3.0], rtol=1e-6)


@pytest.mark.slow
def test_linear_property_random_k_r():
  rng = np.random.default_rng(0)
  for _ in range(12):
    k, r = int(rng.integers(1, 9)), int(rng.integers(1, 5))
    shape = tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 3)))
    code = jaxcc.codes.linear(k, r)
    x = jnp.asarray(rng.normal(size=(5, k) + shape), jnp.float32)
    f = _linear_model(rng, int(np.prod(shape)), int(rng.integers(2, 12)))
    y = _coded_outputs(code, f, x)
    patterns = jaxcc.erasures.patterns(k, r, missing=range(1, r + 1))
    recon = jax.jit(jax.vmap(code.decode, in_axes=(None, None, 0)))(
        {}, y, patterns)
    true = np.asarray(f(x))
    for recon_GK, available in zip(np.asarray(recon), patterns):
      lost = ~available[:k]
      error = np.linalg.norm(recon_GK[:, lost] - true[:, lost])
      assert error / np.linalg.norm(true[:, lost]) < 1e-4, (k, r, available)
      np.testing.assert_array_equal(recon_GK[:, ~lost], true[:, ~lost])


def test_summation_encodes_the_plain_sum():
  x = jnp.asarray([[[1.0, -2.0], [3.0, 0.5], [10.0, 4.0]]])  # B=1, k=3
  parities_BR = jaxcc.codes.summation(3).encode({}, x)
  np.testing.assert_allclose(parities_BR, [[[14.0, 2.5]]], rtol=1e-6)


def test_paper_example_generator():
  np.testing.assert_array_equal(
      jaxcc.codes.generator(2, 2, "vandermonde"), [[1, 1], [1, 2]])
  assert np.all(jaxcc.codes.generator(5, 3)[0] == 1)


def test_patterns():
  np.testing.assert_array_equal(
      jaxcc.erasures.patterns(2, 1), [[False, True, True], [True, False, True]])
  both = jaxcc.erasures.patterns(2, 2)  # exactly 2 missing, >= 1 data
  assert both.shape == (5, 4) and np.all((~both).sum(1) == 2)
  upto = jaxcc.erasures.patterns(4, 2, missing=(1, 2))
  assert len(upto) == 4 + (15 - 1)


@pytest.mark.parametrize("make, message", [
    (lambda: jaxcc.codes.summation(0), "k must be"),
    (lambda: jaxcc.codes.linear(2, -1), "r must be"),
    (lambda: jaxcc.codes.linear(2, 0), "r >= 1"),
    (lambda: jaxcc.codes.linear(2, 2, [[1, 1], [2, 2]]), "singular"),
    (lambda: jaxcc.codes.linear(2, 1, "nope"), "unknown generator"),
    (lambda: jaxcc.erasures.patterns(2, 1, missing=2), "missing=2"),
])
def test_bad_arguments(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_bad_shapes_and_masks():
  code = jaxcc.codes.summation(2)
  with pytest.raises(ValueError, match="k=2"):
    code.encode({}, jnp.zeros((4, 3, 5)))
  with pytest.raises(ValueError, match="k\\+r=3"):
    code.decode({}, jnp.zeros((4, 2, 5)), np.ones(3, bool))
  with pytest.raises(ValueError, match="shape \\(k\\+r,\\)"):
    code.decode({}, jnp.zeros((4, 3, 5)), np.ones(4, bool))
  with pytest.raises(ValueError, match="at most 1"):
    code.decode({}, jnp.zeros((4, 3, 5)), np.array([0, 0, 1], bool))


def test_nan_inputs_are_rejected_eagerly_and_ignored_when_missing():
  code = jaxcc.codes.summation(2)
  with pytest.raises(ValueError, match="NaN"):
    code.encode({}, jnp.full((1, 2, 3), jnp.nan))
  y = jnp.asarray([[[1.0], [jnp.nan], [3.0]]])
  with pytest.raises(ValueError, match="NaN"):
    code.decode({}, y, np.array([1, 1, 0], bool))
  # A NaN in a missing slot is never read.
  recon = code.decode({}, y, np.array([1, 0, 1], bool))
  np.testing.assert_allclose(recon[0, :, 0], [1.0, 2.0])
