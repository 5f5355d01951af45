"""Training learned codes through the frozen F over every erasure pattern."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import learned as learned_config
from jaxcc import codes
from jaxcc import erasures
from jaxcc import experiment
from jaxcc import models
from jaxcc import stages
from jaxcc import training

_TINY = "base_epochs=1,epochs=1,validation_size=200,checkpoint_every_secs=0"


def _setup(encoder, workdir):
  config = learned_config.get_config(f"{_TINY},encoder={encoder}")
  exp = experiment.setup(config, str(workdir))
  opt = training.optimizer(1e-3, 1e-5)
  base = training.init_base(exp.model, opt, jax.random.PRNGKey(0))
  code_state = exp.approach.init(
      jax.random.PRNGKey(1), model=exp.model, code=exp.code, opt=opt,
      input_shape=exp.dataset.input_shape, base_state=base)
  base_vars = models.variables(base.params, base.batch_stats)
  images = exp.dataset.train.image[:2 * 6].reshape(6, 2, 28, 28, 1)
  x = (images / 255.0 - exp.dataset.mean) / exp.dataset.std
  outputs = models.apply_groups(exp.model, base_vars,
                                         jnp.asarray(x, jnp.float32))
  labels = exp.dataset.train.label[:12].reshape(6, 2)
  return exp, base_vars, code_state, (jnp.asarray(x, jnp.float32), outputs,
                                      labels)


@pytest.fixture(scope="module", params=["mlp", "conv"])
def setup(request, tmp_path_factory):
  return _setup(request.param, tmp_path_factory.mktemp("learned"))


@pytest.mark.parametrize("loss_name", ["mse-base", "kl-base", "xent-label"])
@pytest.mark.parametrize("patterns, combine", [("mean", np.mean),
                                               ("worst", np.max)])
def test_loss_combines_the_per_pattern_losses(setup, loss_name, patterns,
                                              combine):
  exp, base_vars, state, batch = setup
  params = jax.tree.map(lambda a: 30 * a, state.params)  # away from ~0 output
  patterns_PN = erasures.patterns(2, 1)
  all_at_once = training.learned_loss(exp.code, exp.model, loss_name,
                                      patterns_PN, patterns)
  one_by_one = [training.learned_loss(exp.code, exp.model, loss_name, p[None])
                for p in patterns_PN]
  total = jax.jit(all_at_once)(params, base_vars, *batch)
  singles = [float(fn(params, base_vars, *batch)) for fn in one_by_one]
  np.testing.assert_allclose(float(total), combine(singles), rtol=1e-5)
  assert len(set(singles)) == len(singles)  # the patterns really differ


def test_worst_pattern_gradient_is_that_patterns_alone(setup):
  exp, base_vars, state, batch = setup
  params = jax.tree.map(lambda a: 30 * a, state.params)
  patterns_PN = erasures.patterns(2, 1)
  singles = [training.learned_loss(exp.code, exp.model, "kl-base", p[None])
             for p in patterns_PN]
  worst = max(singles, key=lambda fn: float(fn(params, base_vars, *batch)))
  got = jax.grad(training.learned_loss(exp.code, exp.model, "kl-base",
                                       patterns_PN, "worst"))(
                                           params, base_vars, *batch)
  want = jax.grad(worst)(params, base_vars, *batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7),
               got, want)


def test_epoch_compiles_once_and_trains_encoder_and_decoder(tmp_path):
  exp, base_vars, state, _ = _setup("mlp", tmp_path)
  ds = exp.dataset
  images, labels = ds.train.image[:256], ds.train.label[:256]  # 2 steps
  outputs = models.predict(exp.model, base_vars, images, ds.mean, ds.std)
  epoch = training.epoch(
      training.learned_step(exp.code, exp.model,
                            training.optimizer(1e-3, 1e-5), "mse-base",
                            erasures.patterns(2, 1),
                            training.normalizer(ds.mean, ds.std)),
      training.group_indices(2, 64), training.EpochLoop.SCAN)
  args = dict(images=jnp.asarray(images), outputs=jnp.asarray(outputs),
              labels=jnp.asarray(labels), base_vars=base_vars)
  params_before = jax.tree.map(np.array, state.params)
  state, losses = epoch(state, jax.random.PRNGKey(0), **args)
  state, losses = epoch(state, jax.random.PRNGKey(1), **args)
  assert epoch.scanned._cache_size() == 1  # pylint: disable=protected-access
  assert np.all(np.isfinite(losses))
  # F is frozen by construction: the trained state holds the code only.
  assert jax.tree.structure(state.params) == jax.tree.structure(params_before)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), params_before,
                         jax.tree.map(np.array, state.params))
  assert all(jax.tree.leaves(changed["encoder"]))  # gradients reach E via F
  assert all(jax.tree.leaves(changed["decoder"]))


def test_parities_go_through_the_same_frozen_f(setup):
  exp, base_vars, state, batch = setup
  loss = training.learned_loss(exp.code, exp.model, "mse-base",
                               erasures.patterns(2, 1))
  other_f = jax.tree.map(lambda a: a * 1.5, base_vars)
  # Data outputs are fixed by `batch`; only the parities' pass through F
  # can make the loss depend on F's parameters.
  assert float(loss(state.params, base_vars, *batch)) != float(
      loss(state.params, other_f, *batch))
  grads = jax.grad(loss, argnums=1)(state.params, base_vars, *batch)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("extra, message", [
    ("encoder=transformer", "unknown encoder"),
    ("loss=hinge", "unknown loss"),
    ("patterns=best", "unknown pattern reduction"),
    ("k=0", "k must be"),
    ("r=0", "r >= 1"),
])
def test_bad_learned_configs(tmp_path, extra, message):
  with pytest.raises(ValueError, match=message):
    stages.train(learned_config.get_config(f"{_TINY},{extra}"),
                 str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("k, r", [(2, 2), (3, 3)])
def test_learned_loss_covers_multi_erasure_patterns(k, r):
  code, model = codes.learned(k, r, "mlp"), models.get("mlp", (8, 8, 1), 4)
  params = jax.tree.map(lambda a: 30 * a, code.init(jax.random.PRNGKey(0),
                                                     (8, 8, 1), (4,)))
  base_vars = model.init(jax.random.PRNGKey(1))
  x = jax.random.normal(jax.random.PRNGKey(2), (5, k, 8, 8, 1))
  outputs = models.apply_groups(model, base_vars, x)
  labels = jnp.zeros((5, k), jnp.int32)
  patterns = erasures.patterns(k, r)  # exactly r missing, >= 1 data output
  assert len(patterns) > k
  total, grads = jax.value_and_grad(training.learned_loss(
      code, model, "mse-base", patterns))(params, base_vars, x, outputs,
                                          labels)
  singles = [training.learned_loss(code, model, "mse-base", p[None])(
      params, base_vars, x, outputs, labels) for p in patterns]
  np.testing.assert_allclose(float(total), np.mean(singles), rtol=1e-5)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
