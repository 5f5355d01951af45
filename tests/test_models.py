"""Tests for jaxcc.models (CPU, tiny inputs; big models via eval_shape)."""

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


@pytest.fixture(scope="module")
def lenet5():
  """LeNet-5 for MNIST and its variables (real init: compiling one is slow)."""
  model = models.get("lenet5", (28, 28), 10)
  return model, model.init(KEY)


@pytest.fixture(scope="module")
def vgg11_bf16():
  """VGG-11 computing in bfloat16 on tiny 4x4 inputs, and its variables."""
  model = models.get("vgg11", (4, 4, 1), 3, dtype=jnp.bfloat16)
  return model, model.init(KEY)


def test_init_statistics(lenet5):
  _, variables = lenet5
  params = variables["params"]
  assert set(variables) == {"params"}
  assert np.std(params["Dense_0"]["kernel"]) == pytest.approx(0.01, rel=0.05)
  for name, leaf in _named_leaves(params):
    assert leaf.dtype == jnp.float32
    if name == "bias":
      assert np.all(leaf == 0)
  kernel = params["Conv_1"]["kernel"]  # 5x5x6 -> 16, Xavier uniform
  bound = np.sqrt(6 / (25 * 6 + 25 * 16))
  assert np.max(np.abs(kernel)) <= bound
  assert np.std(kernel) == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_apply_without_batch_norm(lenet5):
  model, variables = lenet5
  x = jax.random.normal(KEY, (2, 28, 28))
  outputs = jax.jit(model.apply)(variables, x)
  assert outputs.shape == (2, 10) and outputs.dtype == jnp.float32
  assert np.all(np.isfinite(outputs))
  # A channel axis is optional; train=True returns a pair even without BN.
  train_outputs, stats = jax.jit(model.apply, static_argnames="train")(
      variables, x[..., None], train=True)
  np.testing.assert_allclose(train_outputs, outputs, rtol=1e-6)
  assert stats == {}


def test_batch_norm_init(vgg11_bf16):
  _, variables = vgg11_bf16
  for name, leaf in _named_leaves(variables):
    assert leaf.dtype == jnp.float32
    if name in ("bias", "mean"):
      assert np.all(leaf == 0)
    if name in ("scale", "var"):
      assert np.all(leaf == 1)


def test_train_mode_updates_batch_stats_in_float32(vgg11_bf16):
  model, variables = vgg11_bf16
  x = 3.0 + jax.random.normal(KEY, (2, 4, 4, 1))
  apply = jax.jit(model.apply, static_argnames="train")
  outputs, stats = apply(variables, x, train=True)
  assert outputs.shape == (2, 3) and outputs.dtype == jnp.float32
  assert jax.tree.structure(stats) == jax.tree.structure(
      variables["batch_stats"])
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(stats))
  # Momentum 0.9: the running mean moves 10% of the way to the batch mean.
  conv = variables["params"]["Conv_0"]
  features = jax.lax.conv_general_dilated(
      x, conv["kernel"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"][None, None, None]
  np.testing.assert_allclose(stats["BatchNorm_0"]["mean"],
                             0.1 * np.mean(features, axis=(0, 1, 2)),
                             rtol=0.02, atol=1e-3)
  outputs = apply(
      {"params": variables["params"], "batch_stats": stats}, x)
  assert outputs.shape == (2, 3) and outputs.dtype == jnp.float32


def test_bfloat16_compute(vgg11_bf16):
  model, variables = vgg11_bf16
  x = jnp.zeros((2, 4, 4, 1))
  hlo = jax.jit(model.apply).lower(variables, x).as_text()
  assert "bf16" in hlo


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
  assert jax.eval_shape(lambda k: model.init(k, (28, 28)), KEY)["params"]
  with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(28, 28, 1\)"):
    model.init(KEY, CIFAR)


def test_apply_with_other_shape_names_both_shapes():
  model = models.get("mlp", MNIST, 10)
  variables = jax.eval_shape(model.init, KEY)  # Shapes are checked first.
  x = jnp.zeros((2, 32, 32, 3))
  for apply in (model.apply, jax.jit(model.apply)):
    with pytest.raises(ValueError, match=r"\(28, 28, 1\).*\(32, 32, 3\)"):
      apply(variables, x)


def test_an_importable_module_is_a_model():
  model = models.get("jaxcc.models:MLP", (4, 4, 1), 3)
  assert model.name == "jaxcc.models:MLP" and model.num_outputs == 3
  variables = model.init(KEY)
  x = jax.random.normal(KEY, (2, 4, 4, 1))
  np.testing.assert_array_equal(
      model.apply(variables, x), models.MLP(3).apply(variables, x))


@pytest.mark.parametrize("spec, message", [
    ("no_such_package.sub:Net", "cannot be imported"),
    ("jaxcc.models:NoSuchNet", "cannot be imported"),
    ("jaxcc.models:NAMES", "not a flax.linen.Module class or factory"),
    ("jaxcc.models:variables", "callable with num_outputs= or with no"),
])
def test_bad_importable_models_are_clear_errors(spec, message):
  with pytest.raises(ValueError, match=message):
    models.get(spec, (4, 4, 1), 3)


def test_width_needs_a_zoo_model():
  with pytest.raises(ValueError, match="width=2 needs a zoo model"):
    models.get("jaxcc.models:MLP", (4, 4, 1), 3, width=2)
