"""Tests for the learned code (paper §IV)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import codes
from jaxcc import erasures
from jaxcc import losses

M = 10  # outputs of F per input (classes)


_PARAMS = {}


def _init(code, input_shape, seed=0):
  """`code.init`, shared between tests (init compiles once per shape)."""
  cache_key = (code.name, tuple(input_shape), seed)
  if cache_key not in _PARAMS:
    _PARAMS[cache_key] = code.init(jax.random.PRNGKey(seed), input_shape, (M,))
  return _PARAMS[cache_key]


def _outputs(code, batch=2, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed),
                           (batch, code.k + code.r, M))


@pytest.mark.parametrize("encoder,k,r,input_shape,x_shape", [
    ("mlp", 2, 1, (28, 28), (28, 28)),
    ("mlp", 3, 2, (28, 28, 1), (28, 28, 1)),
    ("mlp", 3, 2, (8, 8, 3), (8, 8, 3)),
    ("conv", 3, 2, (28, 28), (28, 28)),
    ("conv", 2, 1, (28, 28, 1), (28, 28, 1)),
    ("conv", 2, 1, (8, 8, 3), (8, 8, 3)),
])
def test_shapes(encoder, k, r, input_shape, x_shape):
  code = codes.learned(k, r, encoder)
  params = _init(code, input_shape)
  assert set(params) == {"encoder", "decoder"}
  x_BK = jax.random.normal(jax.random.PRNGKey(2), (2, k) + x_shape)
  parities_BR = jax.jit(code.encode)(params, x_BK)
  assert parities_BR.shape == (2, r) + x_shape
  assert parities_BR.dtype == jnp.float32
  assert np.all(np.isfinite(parities_BR))
  available_N = erasures.patterns(k, r)[0]
  y_BK = jax.jit(code.decode)(params, _outputs(code), available_N)
  assert y_BK.shape == (2, k, M)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_grayscale_without_channel_axis_matches_c1(encoder):
  code = codes.learned(2, 1, encoder)
  params = _init(code, (8, 8))
  x_BK = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 8, 8))
  np.testing.assert_allclose(code.encode(params, x_BK),
                             code.encode(params, x_BK[..., None])[..., 0],
                             rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_colour_channels_encoded_independently(encoder):
  code = codes.learned(2, 2, encoder)
  params = _init(code, (8, 8, 3))
  x_BK = jax.random.normal(jax.random.PRNGKey(4), (2, 2, 8, 8, 3))
  together = code.encode(params, x_BK)
  apart = jnp.stack([code.encode(params, x_BK[..., c]) for c in range(3)],
                    axis=-1)
  np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-6)
  # Changing one colour plane leaves the other planes' parities unchanged.
  changed = code.encode(params, x_BK.at[..., 0].add(1.0))
  np.testing.assert_array_equal(changed[..., 1:], together[..., 1:])


def test_mlp_parameter_count_k2_mnist():
  params = _init(codes.learned(2, 1, "mlp"), (28, 28))
  n = sum(a.size for a in jax.tree_util.tree_leaves(params["encoder"]))
  kn2 = 2 * 784
  assert n == kn2 * kn2 + kn2 + kn2 * 784 + 784  # 3,690,288


def test_conv_encoder_layers():
  params = _init(codes.learned(3, 2, "conv"), (8, 8))
  kernels = [params["encoder"][f"conv_{i}"]["kernel"].shape for i in range(7)]
  assert kernels == [(3, 3, 3, 60)] + [(3, 3, 60, 60)] * 5 + [(1, 1, 60, 2)]


def test_decoder_layers():
  params = _init(codes.learned(3, 2), (8, 8))
  kernels = [params["decoder"][f"fc_{i}"]["kernel"].shape for i in range(3)]
  assert kernels == [(5 * M, 3 * M), (3 * M, 3 * M), (3 * M, 3 * M)]


def test_decoder_width_widens_hidden_layers_only():
  code = codes.learned(3, 2, decoder_width=4)
  assert code.name == "learned(k=3, r=2, encoder='mlp', decoder_width=4)"
  params = _init(code, (8, 8))
  kernels = [params["decoder"][f"fc_{i}"]["kernel"].shape for i in range(3)]
  assert kernels == [(5 * M, 12 * M), (12 * M, 12 * M), (12 * M, 3 * M)]
  available_N = erasures.patterns(3, 2)[0]
  assert code.decode(params, _outputs(code), available_N).shape == (2, 3, M)


def test_init_statistics():
  params = _init(codes.learned(2, 1, "mlp"), (28, 28))
  for layer in jax.tree_util.tree_leaves(
      params, is_leaf=lambda t: isinstance(t, dict) and "kernel" in t):
    np.testing.assert_array_equal(layer["bias"], 0.0)
  fc = np.asarray(params["encoder"]["fc_0"]["kernel"])
  assert abs(fc.std() - 0.01) < 1e-4
  assert abs(fc.mean()) < 1e-4
  conv = _init(codes.learned(2, 1, "conv"), (8, 8))["encoder"]
  for i in range(7):
    kernel = np.asarray(conv[f"conv_{i}"]["kernel"])
    h, w, c_in, c_out = kernel.shape
    bound = math.sqrt(6.0 / (h * w * (c_in + c_out)))  # Xavier uniform
    assert np.abs(kernel).max() <= bound
    np.testing.assert_array_equal(conv[f"conv_{i}"]["bias"], 0.0)
  big = np.asarray(conv["conv_3"]["kernel"])
  bound = math.sqrt(6.0 / (9 * 80))
  assert abs(big.std() - bound / math.sqrt(3.0)) < 0.05 * bound


@pytest.mark.parametrize("k,r", [(2, 1), (3, 2)])
def test_arrived_outputs_passed_through_and_nan_ignored(k, r):
  code = codes.learned(k, r)
  params = _init(code, (8, 8))
  y_BN = _outputs(code)
  for available_N in erasures.patterns(k, r, missing=range(1, r + 1)):
    out_BK = code.decode(params, y_BN, available_N)
    arrived = available_N[:k]
    np.testing.assert_array_equal(out_BK[:, arrived], y_BN[:, :k][:, arrived])
    # Garbage in the missing slots changes nothing.
    garbage = np.asarray(y_BN).copy()
    garbage[:, ~available_N] = np.nan
    out_nan = code.decode(params, garbage, available_N)
    assert np.all(np.isfinite(out_nan))
    np.testing.assert_array_equal(out_nan, out_BK)


def test_decoder_sees_only_available_outputs():
  code = codes.learned(2, 1)
  params = _init(code, (8, 8))
  y_BN = _outputs(code)
  available_N = np.array([False, True, True])
  out = code.decode(params, y_BN, available_N)
  out2 = code.decode(params, y_BN.at[:, 0].set(123.0), available_N)
  np.testing.assert_array_equal(out, out2)
  out3 = code.decode(params, y_BN.at[:, 2].add(1.0), available_N)
  assert not np.allclose(out[:, 0], out3[:, 0])


def test_vmap_over_patterns_compiles_once():
  k, r = 3, 2
  code = codes.learned(k, r, "conv")
  params = _init(code, (8, 8))
  traces = []

  def decode(params, y_BN, available_N):
    traces.append(1)
    return code.decode(params, y_BN, available_N)

  decode_all = jax.jit(jax.vmap(decode, in_axes=(None, None, 0)))
  patterns_PN = erasures.patterns(k, r)
  y_BN = _outputs(code)
  out_PBK = decode_all(params, y_BN, patterns_PN)
  assert out_PBK.shape == (len(patterns_PN), 2, k, M)
  decode_all(params, y_BN + 1.0, patterns_PN[::-1].copy())
  assert len(traces) == 1
  for p in (0, len(patterns_PN) - 1):
    np.testing.assert_allclose(
        out_PBK[p], code.decode(params, y_BN, patterns_PN[p]),
        rtol=1e-5, atol=1e-6)


def test_gradients_flow_through_encoder_and_decoder():
  code = codes.learned(2, 1, "conv")
  params = _init(code, (8, 8))
  x_BK = jax.random.normal(jax.random.PRNGKey(5), (2, 2, 8, 8))
  w = jax.random.normal(jax.random.PRNGKey(6), (64, M))
  base = lambda x: x.reshape(x.shape[:2] + (-1,)) @ w
  available_N = jnp.array([False, True, True])

  def loss(params):
    y_BN = jnp.concatenate([base(x_BK), base(code.encode(params, x_BK))],
                           axis=1)
    recon_BK = code.decode(params, y_BN, available_N)
    return losses.mse_base(recon_BK, base(x_BK), ~available_N[:2])

  grads = jax.jit(jax.grad(loss))(params)
  for part in ("encoder", "decoder"):
    norm = sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads[part]))
    assert np.isfinite(norm) and norm > 0


def test_errors():
  for width in (0, 1.5, True):
    with pytest.raises(ValueError, match="decoder_width must be an integer"):
      codes.learned(2, 1, decoder_width=width)
  with pytest.raises(ValueError, match="unknown encoder 'rnn'.*mlp, conv"):
    codes.learned(2, 1, "rnn")
  with pytest.raises(ValueError, match="r >= 1"):
    codes.learned(2, 0)
  with pytest.raises(ValueError, match="r must be"):
    codes.learned(2, -1)
  with pytest.raises(ValueError, match="k must be"):
    codes.learned(0, 1)
  code = codes.learned(2, 1)
  for bad in [(784,), (2, 28, 28, 3), (28, 0), 28]:
    with pytest.raises(ValueError, match="input_shape"):
      code.init(jax.random.PRNGKey(0), bad, (M,))
  params = _init(code, (28, 28))
  with pytest.raises(ValueError, match="do not match the MLP encoder"):
    code.encode(params, jnp.zeros((1, 2, 14, 14)))
  with pytest.raises(ValueError, match=r"\(batch, k, H, W\)"):
    code.encode(params, jnp.zeros((1, 2, 784)))
  with pytest.raises(ValueError, match="k=2"):
    code.encode(params, jnp.zeros((1, 3, 28, 28)))
  with pytest.raises(ValueError, match="do not match the decoder"):
    code.decode(params, jnp.zeros((1, 3, 5)), np.array([False, True, True]))


# Losses.
