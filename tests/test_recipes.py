"""Recipe options of stage 2: decoder-aware parity losses, the parity model's
width, learning-rate schedules, and the workdir identity they enter."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import common
from jaxcc import approaches
from jaxcc import codes
from jaxcc import erasures
from jaxcc import experiment
from jaxcc import losses
from jaxcc import models
from jaxcc import training
from jaxcc import workdir

# A linear parity model on 2-feature inputs, 3 outputs; one group of k = 2.
_W = np.float32([[1, 0, 1], [0, 1, -1]])
_X_BK = np.float32([[[1, 2], [0, 1]]])  # parity X1 + X2 = [1, 3]
_F_BKC = np.float32([[[1, 2, 0], [0, 0, 1]]])  # F(X1), F(X2), given
_LABELS_BK = np.int32([[0, 1]])
# F_P(parity) = [1, 3, -2]; the decoder's reconstructions, pattern by pattern
# (X1 missing, then X2 missing): F_P - F(X2) and F_P - F(X1).
_RECON_PC = np.float32([[1, 3, -3], [0, 1, -2]])


def _linear_model():
  def apply(variables, x, train=False):
    out = x.reshape(x.shape[0], -1) @ variables["params"]["w"]
    return (out, {}) if train else out
  return models.Model("linear", None, apply, 3)


def _decoded(loss_name, temperature=1.0):
  loss = training.decoded_parity_loss(
      codes.summation(2), _linear_model(), loss_name,
      erasures.patterns(2, 1), temperature)
  value, _ = jax.jit(loss)({"w": jnp.asarray(_W)[None]}, {}, _X_BK, _F_BKC,
                           _LABELS_BK)
  return float(value)


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_decoded_mse_is_the_hand_computed_value():
  # Squared errors [0, 1, 9] in both patterns: mean 10 / 3.
  assert _decoded("decoded-mse") == pytest.approx(10 / 3)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_decoded_kl_is_the_hand_computed_value(temperature):
  log_p = _log_softmax(_F_BKC[0] / temperature)
  log_q = _log_softmax(_RECON_PC / temperature)
  want = temperature**2 * np.mean(
      np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))
  assert _decoded("decoded-kl", temperature) == pytest.approx(want, rel=1e-5)


def test_decoded_cross_entropies_are_the_hand_computed_values():
  log_q = _log_softmax(_RECON_PC)
  top1 = [1, 2]  # F's argmax of each slot
  assert _decoded("decoded-xent-top1") == pytest.approx(
      -np.mean(log_q[[0, 1], top1]), rel=1e-5)
  assert _decoded("decoded-xent-label") == pytest.approx(
      -np.mean(log_q[[0, 1], _LABELS_BK[0]]), rel=1e-5)


def test_decoded_mse_for_summation_is_the_paper_mse_over_classes():
  # Every pattern's error is F_P(P) - (F(X1) + F(X2)): the paper's target.
  want = np.mean((_X_BK.sum(1) @ _W - _F_BKC.sum(1))**2)
  assert _decoded("decoded-mse") == pytest.approx(want)


def _linear_code_setup(loss="decoded-kl", init="scratch"):
  model = models.get("mlp", (4, 4, 1), 5)
  code = codes.linear(3, 2)
  opt = training.optimizer(1e-2, 1e-5)
  base = training.init_base(model, opt, jax.random.PRNGKey(0))
  approach = approaches.parity_models(loss=loss, init=init)
  state = approach.init(jax.random.PRNGKey(1), model=model, code=code,
                        opt=opt, input_shape=(4, 4, 1), base_state=base)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (60, 4, 4, 1)).astype(np.uint8)
  base_vars = models.variables(base.params, base.batch_stats)
  normalize = training.normalizer(np.float32([100.0]), np.float32([50.0]))
  outputs = np.asarray(model.apply(base_vars, normalize(images)))
  arrays = approach.arrays(
      task=None, split=types.SimpleNamespace(label=rng.integers(0, 5, 60)),
      outputs_NC=outputs, base_vars=base_vars)
  step = approach.step(model=model, code=code, opt=opt, normalize=normalize,
                       mesh=None)
  return model, code, base, state, images, arrays, step


@pytest.mark.slow
def test_decoded_gradient_reaches_every_parity_model_and_nothing_else():
  model, code, _, state, images, arrays, _ = _linear_code_setup()
  loss = training.decoded_parity_loss(code, model, "decoded-kl",
                                      erasures.patterns(3, 2))
  x_BK = training.normalizer(np.float32([100.0]), np.float32([50.0]))(
      images[:30].reshape(10, 3, 4, 4, 1))
  grads = jax.jit(jax.grad(lambda p: loss(
      p, {}, x_BK, arrays["outputs"][:30].reshape(10, 3, 5), None)[0]))(
          state.params)
  # What is differentiated is exactly the r stacked parity models.
  assert jax.tree.structure(grads) == jax.tree.structure(state.params)
  for leaf in jax.tree.leaves(grads):
    assert leaf.shape[0] == code.r
    for j in range(code.r):
      assert np.abs(np.asarray(leaf[j])).sum() > 0, "a parity model got none"


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["decoded-mse", "decoded-xent-label"])
def test_f_stays_bit_identical_while_parity_models_train(loss):
  """Through donated epochs of the decoded step, from F's own weights."""
  _, code, base, state, images, arrays, step = _linear_code_setup(
      loss, init="base")
  f_before = jax.tree.map(np.array, base.params)
  p_before = jax.tree.map(np.array, state.params)
  epoch = training.epoch(step, training.group_indices(code.k, 4))
  for e in range(2):
    state, losses_S = epoch(state, jax.random.PRNGKey(e),
                            images=jnp.asarray(images),
                            **jax.device_put(arrays))
    assert np.all(np.isfinite(losses_S))
  jax.tree.map(np.testing.assert_array_equal, base.params, f_before)
  moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), state.params,
                       p_before)
  assert all(jax.tree.leaves(moved))


@pytest.mark.slow
def test_default_parity_step_is_the_papers():
  model = models.get("mlp", (4, 4, 1), 5)
  code = codes.summation(2)
  opt = training.optimizer(1e-3, 1e-5)
  base = training.init_base(model, opt, jax.random.PRNGKey(0))
  approach = approaches.from_config(common.base_config())
  state = approach.init(jax.random.PRNGKey(1), model=model, code=code,
                        opt=opt, input_shape=(4, 4, 1), base_state=base)
  images = jnp.asarray(np.random.default_rng(0).integers(
      0, 256, (8, 4, 4, 1)).astype(np.uint8))
  targets = jnp.ones((8, 5))
  normalize = training.normalizer(np.float32([100.0]), np.float32([50.0]))
  idx = jnp.arange(8).reshape(4, 2)
  got = jax.jit(approach.step(model=model, code=code, opt=opt,
                              normalize=normalize, mesh=None))(
                                  state, idx, images, targets=targets)
  want = jax.jit(training.parity_step(model, code, opt, normalize))(
      state, idx, images, targets=targets)
  jax.tree.map(np.testing.assert_array_equal, got, want)


# Width.


def test_width_scales_hidden_units_and_conv_features():
  def shapes(model):
    return jax.tree.map(jnp.shape, jax.eval_shape(
        model.init, jax.random.PRNGKey(0)))["params"]
  mlp = shapes(models.get("mlp", (4, 4, 1), 5, width=2))
  assert [mlp[f"Dense_{i}"]["kernel"] for i in range(3)] == [
      (16, 400), (400, 200), (200, 5)]
  lenet = shapes(models.get("lenet5", (16, 16, 1), 10, width=0.5))
  assert lenet["Conv_0"]["kernel"] == (5, 5, 1, 3)
  assert lenet["Dense_1"]["kernel"] == (60, 42)


@pytest.mark.slow
def test_wide_parity_models_train_and_compute_parity_outputs():
  model = models.get("mlp", (4, 4, 1), 5)
  code = codes.summation(2)
  opt = training.optimizer(1e-3, 1e-5)
  approach = approaches.parity_models(width=1.5)
  state = approach.init(jax.random.PRNGKey(1), model=model, code=code,
                        opt=opt, input_shape=(4, 4, 1), base_state=None)
  assert state.params["Dense_0"]["kernel"].shape == (1, 16, 300)
  variables, apply = approach.parity_network(None, state)
  y_BRC = apply(model, variables, jnp.ones((3, 1, 4, 4, 1)))
  assert y_BRC.shape == (3, 1, 5)
  step = jax.jit(approach.step(model=model, code=code, opt=opt,
                               normalize=lambda x: x.astype(jnp.float32),
                               mesh=None))
  _, loss = step(state, jnp.arange(4).reshape(2, 2),
                 jnp.ones((4, 4, 4, 1)), targets=jnp.ones((4, 5)))
  assert np.isfinite(float(loss))


# Schedules.


def test_cosine_schedule_values():
  factor = training.lr_schedule("cosine", 10, 110)
  for step, want in [(0, 0.0), (5, 0.5), (10, 1.0), (60, 0.5), (110, 0.0),
                     (200, 0.0)]:
    assert float(factor(step)) == pytest.approx(want, abs=1e-6), step
  assert training.lr_schedule("constant", 0, 10) is None


def test_scheduled_optimizer_scales_adam_and_keeps_its_state():
  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.float32([1.0, -2.0, 3.0])}
  plain = training.optimizer(1e-2, 0.0)
  sched = training.optimizer(1e-2, 0.0, lambda count: 0.25 * (count + 1))
  assert (jax.tree.structure(sched.init(params)) ==
          jax.tree.structure(plain.init(params)))
  p_state, s_state = plain.init(params), sched.init(params)
  for count in range(3):
    p_up, p_state = plain.update(grads, p_state, params)
    s_up, s_state = sched.update(grads, s_state, params)
    np.testing.assert_allclose(s_up["w"], 0.25 * (count + 1) * p_up["w"],
                               rtol=1e-6)


def _unit_gradient_step(params):
  """`build(opt)`: a step whose output is `opt`'s update of a gradient 1."""
  def build(opt):
    def step(state, idx, images):
      del idx, images
      return opt.update({"w": jnp.float32(1.0)}, state, params)[0]["w"]
    return step
  return build


def test_scheduled_step_spans_the_stage_from_the_data_size():
  """100 examples, 10 a step: 10 steps an epoch; 3 epochs, 1 of warm-up."""
  opt = training.optimizer(1.0, 0.0)
  params = {"w": jnp.zeros(())}
  build = _unit_gradient_step(params)
  step = training.scheduled_step(build, opt, "cosine", 1, 3)
  state = opt.init(params)
  first = float(build(opt)(state, None, None))  # Adam's first update, lr 1
  for count, factor in [(0, 0.0), (5, 0.5), (10, 1.0), (20, 0.5), (30, 0.0)]:
    counted = optax.tree_utils.tree_set(state, count=jnp.int32(count))
    got = step(counted, jnp.zeros((5, 2), jnp.int32), jnp.zeros((100, 1)))
    adam_first = float(build(opt)(counted, None, None))
    assert float(got) == pytest.approx(factor * adam_first, abs=1e-6), count
  assert first != 0.0
  assert training.scheduled_step(build, opt, "constant", 0, 3)(
      state, None, None) == pytest.approx(first)
  with pytest.raises(ValueError, match="whole training set"):
    step(state, jnp.zeros((5, 2), jnp.int32), jnp.zeros((10, 1)))  # a batch


def test_a_schedule_given_the_epoch_steps_needs_no_whole_training_set():
  """100 examples, 10 a step: the schedule of a step that sees one batch
  (a streamed epoch) is the one read from the whole training set."""
  opt = training.optimizer(1.0, 0.0)
  params = {"w": jnp.zeros(())}
  build = _unit_gradient_step(params)
  step = training.scheduled_step(build, opt, "cosine", 1, 3)
  fixed = training.with_epoch_steps(step, 10)
  idx = jnp.zeros((5, 2), jnp.int32)
  for count in (0, 3, 10, 17, 29):
    state = optax.tree_utils.tree_set(opt.init(params), count=jnp.int32(count))
    assert float(fixed(state, idx, jnp.zeros((10, 1)))) == float(
        step(state, idx, jnp.zeros((100, 1)))), count
  plain = build(opt)
  assert training.with_epoch_steps(plain, 10) is plain


# Bad options and the workdir.


@pytest.mark.parametrize("kwargs, match", [
    (dict(loss="decoded-l1"), "parity.loss must be one of"),
    (dict(width=0.0), "parity.width must be > 0"),
    (dict(init="base", width=2.0), "parity.width must be 1"),
    (dict(loss="decoded-kl", temperature=0.0), "parity.temperature"),
    (dict(target="label", loss="decoded-kl"), "applies to parity.loss='mse'"),
    (dict(schedule="linear", epochs=5), "parity.schedule must be one of"),
    (dict(schedule="cosine", epochs=None), "needs the stage's epochs"),
    (dict(schedule="cosine", warmup_epochs=5, epochs=5),
     "parity.warmup_epochs must be"),
])
def test_bad_parity_options_are_refused(kwargs, match):
  with pytest.raises(ValueError, match=match):
    approaches.parity_models(**kwargs)


def test_bad_widths_and_learned_schedules_are_refused():
  with pytest.raises(ValueError, match="width must be a number > 0"):
    models.get("mlp", (4, 4), 3, width=-1)
  with pytest.raises(ValueError, match="parity.warmup_epochs must be"):
    approaches.learned_code("mse-base", erasures.patterns(2, 1),
                            schedule="cosine", warmup_epochs=-1, epochs=3)
  with pytest.raises(ValueError, match="unknown decoded parity loss"):
    training.decoded_parity_loss(codes.summation(2), _linear_model(), "mse",
                                 erasures.patterns(2, 1))


_NEW_FIELDS = ("parity.loss", "parity.temperature", "parity.width",
               "parity.schedule", "parity.warmup_epochs")


def _identity(config):
  exp = types.SimpleNamespace(config=config,
                              approach=approaches.from_config(config))
  return workdir.stage2_identity(exp, base_epochs=3)


def test_workdir_identity_binds_the_recipe_fields(tmp_path):
  config = common.apply_args(common.base_config(),
                             "parity_loss=decoded-kl,width=2")
  identity = _identity(config)
  assert {f: identity[f] for f in _NEW_FIELDS} == {
      "parity.loss": "decoded-kl", "parity.temperature": 1.0,
      "parity.width": 2.0, "parity.schedule": "constant",
      "parity.warmup_epochs": 0}
  workdir.bind(str(tmp_path), identity)
  config.parity.schedule = "cosine"
  with pytest.raises(ValueError, match="parity.schedule='constant'"):
    workdir.check_identity(str(tmp_path), _identity(config))
  learned = common.apply_args(common.base_config(), "code=learned")
  assert "parity.schedule" in _identity(learned)


def test_configs_saved_before_the_recipe_fields_still_build():
  saved = common.base_config().to_dict()
  for name in _NEW_FIELDS:
    del saved["parity"][name.split(".")[1]]
  approach = approaches.from_config(ml_collections.ConfigDict(saved))
  assert not set(_NEW_FIELDS) & set(approach.config_fields)
  assert {"parity.target", "parity.init"} <= set(approach.config_fields)
  learned = common.apply_args(common.base_config(), "code=learned").to_dict()
  del learned["learned"]["patterns"], learned["learned"]["decoder_width"]
  code, approach = experiment.choose(ml_collections.ConfigDict(learned))
  assert not {"learned.patterns", "learned.decoder_width"} & set(
      approach.config_fields)
  assert code.name == "learned(k=2, r=1, encoder='mlp')"


def test_decoder_width_reaches_the_learned_code(tmp_path):
  config = common.apply_args(common.base_config(),
                             "code=learned,decoder_width=3")
  config.validation_size = 200
  exp = experiment.setup(config, str(tmp_path))
  assert exp.code.name == "learned(k=2, r=1, encoder='mlp', decoder_width=3)"
  assert _identity(config)["learned.decoder_width"] == 3


def test_xent_top1_is_xent_to_the_argmax():
  recon_BKC = jnp.asarray(_RECON_PC)[None]
  erased_K = np.array([True, False])
  assert float(losses.xent_top1(recon_BKC, _F_BKC, erased_K)) == (
      pytest.approx(float(losses.xent_label(recon_BKC, np.int32([[1, 2]]),
                                            erased_K))))
