"""Tests for jaxcc._conv: im2col equals XLA's convolution and nn.Conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import _conv
from jaxcc import models

# (input shape BHWC, kernel size, input->output channels, strides, padding,
# dilation): LeNet-5's first conv, a CIFAR stem, the conv encoder's first
# (dilated) layer, an ImageNet stem, a strided 1x1 shortcut, a VALID conv.
CASES = [
    ((3, 12, 12, 1), 5, 6, 1, "SAME", 1),
    ((2, 9, 9, 3), 3, 4, 2, 1, 1),
    ((2, 11, 11, 2), 3, 5, 1, "SAME", 4),
    ((2, 15, 13, 3), 7, 4, 2, 3, 1),
    ((2, 8, 8, 3), 1, 5, 2, "VALID", 1),
    ((2, 10, 10, 4), 5, 3, 1, ((1, 2), (0, 3)), 2),
]


def _inputs(x_shape, size, features, seed=0):
  x_key, w_key = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(x_key, x_shape)
  kernel = jax.random.normal(w_key, (size, size, x_shape[-1], features))
  return x, kernel


def _value_and_grads(lowering, x, kernel, strides, padding, dilation):
  def loss(x, kernel):
    y = _conv.conv(x, kernel, strides, padding, dilation, lowering)
    return jnp.sum(jnp.sin(y)), y  # sin: a gradient that varies per output
  (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      x, kernel)
  return y, grads


@pytest.mark.parametrize("x_shape, size, features, strides, padding, "
                         "dilation", CASES)
def test_im2col_equals_xla_outputs_and_gradients(x_shape, size, features,
                                                  strides, padding, dilation):
  x, kernel = _inputs(x_shape, size, features)
  y_xla, grads_xla = _value_and_grads("xla", x, kernel, strides, padding,
                                      dilation)
  y_im2col, grads_im2col = _value_and_grads("im2col", x, kernel, strides,
                                            padding, dilation)
  assert y_im2col.shape == y_xla.shape
  np.testing.assert_allclose(y_im2col, y_xla, rtol=1e-5, atol=1e-5)
  for got, want in zip(grads_im2col, grads_xla):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_auto_lowers_few_input_channels_to_a_matmul():
  def primitives(channels):
    x, kernel = _inputs((1, 8, 8, channels), 3, 4)
    jaxpr = jax.make_jaxpr(lambda x, k: _conv.conv(x, k))(x, kernel)
    return {eqn.primitive.name for eqn in jaxpr.jaxpr.eqns}
  few = primitives(_conv.IM2COL_MAX_IN_FEATURES)
  assert "conv_general_dilated" not in few and "dot_general" in few
  assert "conv_general_dilated" in primitives(
      _conv.IM2COL_MAX_IN_FEATURES + 1)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("lowering", ["im2col", "xla"])
def test_module_equals_flax_conv(use_bias, lowering):
  x, _ = _inputs((2, 10, 10, 3), 3, 1)
  kwargs = dict(features=5, kernel_size=(3, 3), strides=2, padding=1,
                use_bias=use_bias,
                kernel_init=nn.initializers.xavier_uniform(),
                bias_init=nn.initializers.normal(1.0))
  ours = _conv.Conv(lowering=lowering, **kwargs)
  flax_conv = nn.Conv(**kwargs)
  variables = ours.init(jax.random.key(1), x)
  # Same names, shapes and initial values: variables load in either.
  jax.tree.map(np.testing.assert_array_equal, variables,
               flax_conv.init(jax.random.key(1), x))

  def loss(module):
    return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))
  np.testing.assert_allclose(ours.apply(variables, x),
                             flax_conv.apply(variables, x), rtol=1e-5,
                             atol=1e-5)
  ours_grads = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  flax_grads = jax.grad(loss(flax_conv), argnums=(0, 1))(variables, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-4),
               ours_grads, flax_grads)


def test_models_keep_flax_conv_parameter_names():
  variables = jax.eval_shape(models.get("lenet5", (28, 28, 1), 10).init,
                             jax.random.key(0))
  assert {name: jax.tree.map(lambda a: a.shape, layer)
          for name, layer in variables["params"].items()
          if name.startswith("Conv")} == {
              "Conv_0": {"kernel": (5, 5, 1, 6), "bias": (6,)},
              "Conv_1": {"kernel": (5, 5, 6, 16), "bias": (16,)}}


def test_lenet5_lowers_its_one_channel_conv_to_a_matmul():
  model = models.get("lenet5", (28, 28, 1), 10)
  variables = jax.eval_shape(model.init, jax.random.key(0))
  jaxpr = jax.make_jaxpr(model.apply)(
      variables, jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
  convs = [eqn for eqn in jaxpr.jaxpr.eqns
           if eqn.primitive.name == "conv_general_dilated"]
  assert [eqn.invars[0].aval.shape[-1] for eqn in convs] == [6]


@pytest.mark.parametrize("kwargs, message", [
    (dict(lowering="eigen"), "lowering must be one of"),
    (dict(kernel=np.zeros((3, 3, 2, 4), np.float32)), "channels"),
])
def test_bad_arguments(kwargs, message):
  x = np.zeros((1, 5, 5, 3), np.float32)
  kernel = kwargs.pop("kernel", np.zeros((3, 3, 3, 4), np.float32))
  with pytest.raises(ValueError, match=message):
    _conv.conv(x, kernel, **kwargs)
