"""Step and epoch builders of `jaxcc.training`, and stage-2 approaches."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcc import approaches
from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import models
from jaxcc import training

_SHAPE = (8, 8, 1)


def _images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *_SHAPE), np.uint8)


def _normalize():
  return training.normalizer(np.float32([0.5]), np.float32([0.25]))


def _parity_setup(model_name="mlp", k=3):
  model = models.get(model_name,
                     _SHAPE if model_name == "mlp" else (16, 16, 1), 10)
  code = codes.summation(k)
  opt = training.optimizer(1e-3, 1e-5)
  base = training.init_base(model, opt, jax.random.PRNGKey(0))
  state = approaches.parity_models().init(
      jax.random.PRNGKey(1), model=model, code=code, opt=opt,
      input_shape=None, base_state=base)
  return model, code, opt, base, state


def test_parity_optimizer_covers_exactly_the_parity_models():
  model, code, opt, base, state = _parity_setup(k=2)
  adam = state.opt_state[1][0]
  shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)
  assert shapes(adam.mu) == shapes(state.params)
  # r = 1 stacked copy of F's shapes, nothing of F itself.
  assert shapes(state.params) == jax.tree.map(lambda a: (1,) + a.shape,
                                              base.params)


def test_learned_code_optimizer_covers_exactly_encoder_and_decoder():
  model = models.get("mlp", _SHAPE, 10)
  code = codes.learned(2, 1, "mlp")
  opt = training.optimizer(1e-3, 1e-5)
  state = approaches.learned_code("mse-base", erasures.patterns(2, 1)).init(
      jax.random.PRNGKey(0), model=model, code=code, opt=opt,
      input_shape=_SHAPE, base_state=None)
  adam = state.opt_state[1][0]
  assert set(state.params) == {"encoder", "decoder"}
  assert jax.tree.structure(adam.mu) == jax.tree.structure(state.params)
  assert jax.tree.map(jnp.shape, adam.nu) == jax.tree.map(jnp.shape,
                                                         state.params)


def test_parity_init_from_base_copies_f():
  model, code, opt, base, _ = _parity_setup(k=2)
  state = approaches.parity_models(init="base").init(
      jax.random.PRNGKey(1), model=model, code=code, opt=opt,
      input_shape=None, base_state=base)
  jax.tree.map(lambda s, b: np.testing.assert_array_equal(s[0], b),
               state.params, base.params)


def test_parity_step_matches_hand_computed_loss():
  """One step's loss is the MSE of F_P(X1 + X2 + X3) to the summed targets."""
  model, code, opt, _, state = _parity_setup()
  images = _images(6)
  targets = np.random.default_rng(1).normal(size=(6, 10)).astype(np.float32)
  idx_BK = jnp.arange(6).reshape(2, 3)
  step = training.parity_step(model, code, opt, _normalize())
  _, loss = step(state, idx_BK, images=jnp.asarray(images),
                 targets=jnp.asarray(targets))
  x = _normalize()(images).reshape(2, 3, *_SHAPE).sum(1)
  params_0 = jax.tree.map(lambda a: a[0], state.params)
  out = model.apply({"params": params_0}, x)
  want = np.mean((np.asarray(out) - targets.reshape(2, 3, 10).sum(1))**2)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)


def test_base_step_lowers_the_loss_and_keeps_batch_stats_shape():
  model = models.get("mlp", _SHAPE, 10)
  opt = training.optimizer(1e-2, 0.0)
  state = training.init_base(model, opt, jax.random.PRNGKey(0))
  images = jnp.asarray(_images(32))
  labels = jnp.asarray(np.arange(32) % 10)
  step = jax.jit(training.base_step(
      model, opt, lambda logits, y: jnp.mean(
          -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]), _normalize()))
  losses = []
  for _ in range(20):
    state, loss = step(state, jnp.arange(32), images, labels)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("model_name, expected", [
    ("mlp", training.EpochLoop.SCAN), ("lenet5", training.EpochLoop.STEPS)])
def test_auto_loop_steps_through_convolutions_on_cpu(model_name, expected):
  model, code, opt, _, state = _parity_setup(model_name)
  shape = _SHAPE if model_name == "mlp" else (16, 16, 1)
  images = jnp.zeros((12, *shape), jnp.uint8)
  step = training.parity_step(model, code, opt, _normalize())
  arrays = {"images": images, "targets": jnp.zeros((12, 10))}
  resolve = functools.partial(
      training.resolve_loop, step=step, indices=training.group_indices(3, 2),
      state=state, key=jax.random.key(0), arrays=arrays)
  assert resolve(training.EpochLoop.AUTO) is expected
  assert resolve(training.EpochLoop.SCAN) is training.EpochLoop.SCAN


def test_looped_epochs_equal_scanned_epochs():
  model, code, opt, _, state = _parity_setup()
  images = jnp.asarray(_images(240))
  targets = jnp.asarray(np.random.default_rng(0).normal(
      size=(240, 10)).astype(np.float32))
  results = []
  for loop in (training.EpochLoop.SCAN, training.EpochLoop.STEPS):
    epoch = training.epoch(training.parity_step(model, code, opt,
                                                _normalize()),
                           training.group_indices(3, 8), loop)
    new_state, losses = epoch(jax.tree.map(jnp.copy, state),
                              jax.random.PRNGKey(2), images=images,
                              targets=targets)
    results.append(jax.tree.map(np.asarray, (new_state.params, losses)))
  assert results[0][1].shape == (10,)  # 240 // (3 * 8) steps
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), *results)


def test_group_indices_use_each_example_at_most_once():
  idx = np.asarray(training.group_indices(3, 4)(jax.random.PRNGKey(0), 50))
  assert idx.shape == (4, 4, 3)  # 50 // 12 steps, the rest dropped
  assert len(np.unique(idx)) == idx.size
  with pytest.raises(ValueError, match="cannot fill one batch"):
    data.epoch_groups(jax.random.PRNGKey(0), 11, 3, 4)
