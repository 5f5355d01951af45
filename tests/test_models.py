"""Tests for jaxcc.models (CPU, small inputs; big models only via eval_shape)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import models

KEY = jax.random.key(0)
MNIST, CIFAR, SPECTROGRAM = (28, 28, 1), (32, 32, 3), (161, 101, 1)


def _shapes(model, shape, batch=2):
  """Abstract (variables, outputs) of init + apply, without computing."""
  variables = jax.eval_shape(model.init, KEY)
  x = jax.ShapeDtypeStruct((batch,) + shape, jnp.float32)
  return variables, jax.eval_shape(model.apply, variables, x)


def _num_params(variables):
  return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


def _named_leaves(tree):
  """`(name, leaf)` for every leaf, name being its last key."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(path[-1].key, leaf) for path, leaf in leaves]


@pytest.mark.parametrize("name", ["mlp", "lenet5", "vgg11", "resnet18"])
@pytest.mark.parametrize("shape", [MNIST, CIFAR, SPECTROGRAM])
def test_output_shapes(name, shape):
  _, outputs = _shapes(models.get(name, shape, 7), shape)
  assert outputs.shape == (2, 7)
  assert outputs.dtype == jnp.float32


def test_resnet152_shapes_and_size():
  model = models.get("resnet152", CIFAR, 10)
  variables, outputs = _shapes(model, CIFAR, batch=1)
  assert outputs.shape == (1, 10)
  # torchvision's ResNet-152 (60,192,808) with a 10-way head, 3x3 stem.
  assert _num_params(variables) == 58_156_618


@pytest.mark.parametrize("name, shape, expected", [
    ("mlp", MNIST, 178_110),          # 784-200-100-10
    ("lenet5", MNIST, 61_706),        # classic LeNet-5
    ("vgg11", CIFAR, 9_231_114),      # CIFAR VGG-11 with BN
    ("resnet18", CIFAR, 11_173_962),  # CIFAR ResNet-18
    ("resnet18", MNIST, 2_776_522),   # last stage dropped for 28x28
])
def test_parameter_counts_match_reference(name, shape, expected):
  variables, _ = _shapes(models.get(name, shape, 10), shape)
  assert _num_params(variables) == expected


def test_stems():
  small, _ = _shapes(models.get("resnet18", CIFAR, 10), CIFAR)
  large, outputs = _shapes(models.get("resnet18", (224, 224, 3), 10),
                           (224, 224, 3))
  assert small["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 64)
  assert large["params"]["Conv_0"]["kernel"].shape == (7, 7, 3, 64)
  assert outputs.shape == (2, 10)


@pytest.mark.parametrize("name, shape", [("mlp", MNIST), ("lenet5", MNIST),
                                         ("lenet5", (16, 20, 2))])
def test_apply_computes_finite_outputs(name, shape):
  model = models.get(name, shape, 10)
  variables = model.init(KEY)
  x = jax.random.normal(KEY, (2,) + shape)
  outputs = jax.jit(model.apply)(variables, x)
  assert outputs.shape == (2, 10)
  assert np.all(np.isfinite(outputs))
  outputs, stats = model.apply(variables, x, train=True)
  assert outputs.shape == (2, 10) and stats == {}


def test_init_statistics():
  variables = models.get("lenet5", MNIST, 10).init(KEY)
  params = variables["params"]
  assert np.std(params["Dense_0"]["kernel"]) == pytest.approx(0.01, rel=0.05)
  for name, leaf in _named_leaves(params):
    assert leaf.dtype == jnp.float32
    if name == "bias":
      assert np.all(leaf == 0)
  kernel = params["Conv_1"]["kernel"]  # 5x5x6 -> 16, Xavier uniform
  bound = np.sqrt(6 / (25 * 6 + 25 * 16))
  assert np.max(np.abs(kernel)) <= bound
  assert np.std(kernel) == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_batch_norm_init_and_train_mode_updates_stats():
  model = models.get("resnet18", (8, 8, 1), 10)
  variables = model.init(KEY)
  for name, leaf in _named_leaves(variables):
    if name in ("bias", "mean"):
      assert np.all(leaf == 0)
    if name in ("scale", "var"):
      assert np.all(leaf == 1)
  x = 3.0 + jax.random.normal(KEY, (2, 8, 8, 1))
  outputs, stats = jax.jit(model.apply, static_argnames="train")(
      variables, x, train=True)
  assert outputs.shape == (2, 10)
  assert jax.tree.structure(stats) == jax.tree.structure(
      variables["batch_stats"])
  # Momentum 0.9: the running mean moves 10% of the way to the batch mean.
  mean = stats["BatchNorm_0"]["mean"]
  assert np.all(mean != 0)
  new_variables = {"params": variables["params"], "batch_stats": stats}
  assert model.apply(new_variables, x).shape == (2, 10)


def test_bfloat16_computes_with_float32_params_and_outputs():
  model = models.get("vgg11", (4, 4, 1), 3, dtype=jnp.bfloat16)
  variables = model.init(KEY)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  x = jax.random.normal(KEY, (2, 4, 4, 1))
  outputs = model.apply(variables, x)
  assert outputs.dtype == jnp.float32 and outputs.shape == (2, 3)
  outputs, stats = model.apply(variables, x, train=True)
  assert outputs.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(stats))
  hlo = jax.jit(model.apply).lower(variables, x).as_text()
  assert "bf16" in hlo


def test_accepts_inputs_without_channel_axis():
  model = models.get("lenet5", (28, 28), 10)
  variables = model.init(KEY)
  x = jax.random.normal(KEY, (2, 28, 28))
  np.testing.assert_allclose(model.apply(variables, x),
                             model.apply(variables, x[..., None]))


def test_unknown_name():
  with pytest.raises(ValueError, match="known models.*resnet152"):
    models.get("resnet50", CIFAR, 10)


@pytest.mark.parametrize("num_outputs", [0, -1, 2.5])
def test_bad_num_outputs(num_outputs):
  with pytest.raises(ValueError, match="num_outputs"):
    models.get("mlp", MNIST, num_outputs)


@pytest.mark.parametrize("shape", [(28,), (1, 28, 28, 1), (0, 28, 1), 28])
def test_bad_input_shape(shape):
  with pytest.raises(ValueError, match="input_shape"):
    models.get("mlp", shape, 10)


@pytest.mark.parametrize("shape", [(4, 4, 1), (15, 64, 1)])
def test_input_too_small_for_lenet5(shape):
  with pytest.raises(ValueError, match="lenet5.*at least 16x16"):
    models.get("lenet5", shape, 10)


def test_init_with_other_shape():
  model = models.get("mlp", MNIST, 10)
  assert jax.eval_shape(model.init, KEY, (28, 28))["params"]
  with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(28, 28, 1\)"):
    model.init(KEY, CIFAR)


def test_apply_with_other_shape_names_both_shapes():
  model = models.get("mlp", MNIST, 10)
  variables = model.init(KEY)
  x = jnp.zeros((2, 32, 32, 3))
  for apply in (model.apply, jax.jit(model.apply)):
    with pytest.raises(ValueError, match=r"\(28, 28, 1\).*\(32, 32, 3\)"):
      apply(variables, x)
