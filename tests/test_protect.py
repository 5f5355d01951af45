"""The public API for a user's own Flax model (`jaxcc.protect`)."""

import json
import logging
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcc
from jaxcc import data
from jaxcc import logs
from jaxcc import models
from jaxcc import tasks
from jaxcc import training

_SHAPE = (4, 4, 1)


class _Linear(nn.Module):
  """A linear F without bias and without a `train` argument."""
  num_outputs: int = 3

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.num_outputs, use_bias=False)(
        x.reshape(x.shape[0], -1))


class _BatchNormNet(nn.Module):
  """Dense, BatchNorm, ReLU, Dense; takes `train`."""
  num_outputs: int = 3

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Dense(8)(x.reshape(x.shape[0], -1))
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(self.num_outputs)(x)


class _Grouped(nn.Module):
  """Outputs shaped (batch, 2, 3): not class scores."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(6)(x.reshape(x.shape[0], -1)).reshape(-1, 2, 3)


def _images(n=64, seed=0, shape=_SHAPE):
  return np.random.default_rng(seed).integers(0, 256, (n,) + shape, np.uint8)


def _labels(n=64, seed=1):
  return np.random.default_rng(seed).integers(0, 3, n)


def _init(module, seed=0, shape=_SHAPE):
  return module.init(jax.random.PRNGKey(seed), jnp.zeros((1,) + shape))


def _stack(variables, r):
  return jax.tree.map(lambda a: jnp.stack([a] * r), variables)


def _preprocess(images):
  return np.asarray(images, np.float32) / 255.0


@pytest.mark.parametrize("code", [jaxcc.codes.summation(2),
                                  jaxcc.codes.linear(3, 2)],
                         ids=["summation", "linear"])
def test_linear_f_with_exact_parity_models_reconstructs_every_pattern(code):
  # Parity model j = F is exact for a linear F: F(sum G x) = sum G F(x).
  module = _Linear()
  variables = _init(module)
  results = jaxcc.evaluate_coded(
      module, variables, code, _images(66), _labels(66),
      key=jax.random.PRNGKey(0), preprocess=_preprocess,
      parity_variables=_stack(variables, code.r))
  assert results["reconstruction_accuracy"] == 1.0
  assert results["degraded_accuracy"] == pytest.approx(
      results["available_accuracy"])
  assert results["default_accuracy"] == pytest.approx(1 / 3)
  assert results["num_groups"] == 66 // code.k
  assert (results["k"], results["r"], results["code"], results["approach"],
          results["model"]) == (code.k, code.r, code.name, "parity-model",
                                "_Linear")
  assert set(results["overall_accuracy"]) >= {"0.0", "0.1", "1.0"}
  assert len(results["per_pattern"]) == len(jaxcc.erasures.patterns(
      code.k, code.r))


def test_evaluation_grouping_comes_from_the_key():
  module, code = _Linear(), jaxcc.codes.summation(2)
  variables = _init(module)
  noisy = jax.tree.map(
      lambda a: a + jax.random.normal(jax.random.PRNGKey(1), a.shape),
      _stack(variables, 1))

  def degraded(seed):
    return jaxcc.evaluate_coded(
        module, variables, code, _images(), _labels(),
        key=jax.random.PRNGKey(seed), preprocess=_preprocess,
        parity_variables=noisy)["per_pattern"]
  assert degraded(0) == degraded(0)
  assert degraded(0) != degraded(1)


@pytest.mark.slow
def test_parity_models_learn_a_linear_f_from_scratch():
  module, code = _Linear(), jaxcc.codes.summation(2)
  variables = _init(module)
  records = []
  parity_vars = jaxcc.fit_parity_models(
      module, variables, _images(256), code, key=jax.random.PRNGKey(1),
      epochs=30, batch_size=16, learning_rate=3e-2, weight_decay=0.0,
      preprocess=_preprocess, callback=records.append, progress=False)
  assert jax.tree.map(jnp.shape, parity_vars) == jax.tree.map(
      lambda a: (1,) + a.shape, variables)
  assert [r["epoch"] for r in records] == list(range(1, 31))
  assert records[-1]["loss"] < 0.01 * records[0]["loss"]
  assert all(r["examples_per_sec"] > 0 for r in records)
  results = jaxcc.evaluate_coded(
      module, variables, code, _images(64, seed=5), _labels(64),
      key=jax.random.PRNGKey(0), preprocess=_preprocess,
      parity_variables=parity_vars)
  assert results["reconstruction_accuracy"] >= 0.9


@pytest.mark.slow
def test_batchnorm_parity_models_keep_their_own_statistics(caplog):
  module, code = _BatchNormNet(), jaxcc.codes.linear(2, 2)
  variables = _init(module)
  caplog.set_level(logging.INFO, logger="absl")
  parity_vars = jaxcc.fit_parity_models(
      module, variables, _images(), code, key=jax.random.PRNGKey(1),
      epochs=2, batch_size=8, preprocess=_preprocess, init_from_base=True)
  stats = parity_vars["batch_stats"]["BatchNorm_0"]
  assert stats["mean"].shape == (2, 8)
  # Trained with train=True: the parity models' statistics moved from F's.
  assert not np.allclose(stats["mean"][0],
                         variables["batch_stats"]["BatchNorm_0"]["mean"])
  assert "[parity models] epoch 2/2 loss=" in caplog.text
  results = jaxcc.evaluate_coded(
      module, variables, code, _images(), _labels(),
      key=jax.random.PRNGKey(0), preprocess=_preprocess,
      parity_variables=parity_vars)
  assert results["finite_parity_outputs"]


@pytest.mark.slow
def test_a_parity_architecture_other_than_fs():
  module, code = _Linear(), jaxcc.codes.summation(2)
  variables = _init(module)
  parity_vars = jaxcc.fit_parity_models(
      module, variables, _images(), code, key=jax.random.PRNGKey(1),
      epochs=1, batch_size=8, preprocess=_preprocess,
      parity_model=_BatchNormNet(), progress=False)
  assert "batch_stats" in parity_vars
  results = jaxcc.evaluate_coded(
      module, variables, code, _images(), _labels(),
      key=jax.random.PRNGKey(0), preprocess=_preprocess,
      parity_variables=parity_vars, parity_model=_BatchNormNet())
  assert results["finite_parity_outputs"]
  with pytest.raises(ValueError, match="do not fit _Linear"):
    jaxcc.evaluate_coded(
        module, variables, code, _images(), _labels(),
        key=jax.random.PRNGKey(0), preprocess=_preprocess,
        parity_variables=parity_vars)


@pytest.mark.slow
def test_a_resumed_fit_ends_as_an_uninterrupted_one(tmp_path):
  module, code = _BatchNormNet(), jaxcc.codes.summation(2)
  variables = _init(module)

  def fit(epochs, checkpoint_dir=None):
    return jaxcc.fit_parity_models(
        module, variables, _images(), code, key=jax.random.PRNGKey(3),
        epochs=epochs, batch_size=8, preprocess=_preprocess,
        checkpoint_dir=checkpoint_dir, progress=False)
  fit(1, str(tmp_path))  # Interrupted after one epoch.
  resumed_epochs = []
  resumed = jaxcc.fit_parity_models(
      module, variables, _images(), code, key=jax.random.PRNGKey(3),
      epochs=3, batch_size=8, preprocess=_preprocess,
      checkpoint_dir=str(tmp_path),
      callback=lambda r: resumed_epochs.append(r["epoch"]))
  assert resumed_epochs == [2, 3]
  jax.tree.map(np.testing.assert_array_equal, resumed, fit(3))
  with pytest.raises(ValueError, match="not of linear"):
    jaxcc.fit_parity_models(
        module, variables, _images(), jaxcc.codes.linear(2, 1),
        key=jax.random.PRNGKey(3), epochs=4, batch_size=8,
        checkpoint_dir=str(tmp_path))


@pytest.mark.slow
def test_learned_code_fits_and_evaluates():
  module, code = _Linear(), jaxcc.codes.learned(2, 1)
  variables = _init(module)
  records = []
  params = jaxcc.fit_learned_code(
      module, variables, _images(), code, key=jax.random.PRNGKey(1),
      epochs=2, batch_size=8, preprocess=_preprocess,
      callback=records.append, progress=False)
  assert set(params) == {"encoder", "decoder"}
  assert len(records) == 2 and np.isfinite(records[-1]["loss"])
  results = jaxcc.evaluate_coded(
      module, variables, code, _images(), _labels(),
      key=jax.random.PRNGKey(0), preprocess=_preprocess, code_params=params)
  assert results["approach"] == "learned"
  assert 0.0 <= results["degraded_accuracy"] <= 1.0
  with pytest.raises(ValueError, match="needs the labels"):
    jaxcc.fit_learned_code(module, variables, _images(), code,
                           key=jax.random.PRNGKey(1), loss="xent-label")


def test_training_free_code_needs_nothing_trained():
  module = _Linear()
  results = jaxcc.evaluate_coded(
      module, _init(module), jaxcc.codes.berrut(2, 1), _images(), _labels(),
      key=jax.random.PRNGKey(0), preprocess=_preprocess)
  assert results["approach"] == "none"
  assert 0.0 <= results["degraded_accuracy"] <= 1.0


def test_wrap_reads_the_outputs_and_checks_inputs():
  model = models.wrap(_BatchNormNet(num_outputs=5), _SHAPE)
  assert model.num_outputs == 5 and model.name == "_BatchNormNet"
  variables = model.init(jax.random.PRNGKey(0))
  x = jnp.ones((2,) + _SHAPE)
  apply = jax.jit(model.apply, static_argnames="train")
  assert apply(variables, x).shape == (2, 5)
  outputs, stats = apply(variables, x, train=True)
  assert outputs.shape == (2, 5) and set(stats) == {"BatchNorm_0"}
  with pytest.raises(ValueError, match="wrapped for inputs shaped"):
    model.apply(variables, jnp.ones((2, 5, 5, 1)))
  with pytest.raises(ValueError, match=r"outputs shaped \(batch, C\)"):
    models.wrap(_Grouped(), _SHAPE)


def _fit(**kwargs):
  args = dict(model=_Linear(), variables=_init(_Linear()), images=_images(),
              code=jaxcc.codes.summation(2), key=jax.random.PRNGKey(0),
              epochs=1, batch_size=8, progress=False)
  args.update(kwargs)
  return jaxcc.fit_parity_models(**args)


def _evaluate(**kwargs):
  args = dict(model=_Linear(), variables=_init(_Linear()),
              code=jaxcc.codes.summation(2), images=_images(),
              labels=_labels(), key=jax.random.PRNGKey(0),
              parity_variables=_stack(_init(_Linear()), 1))
  args.update(kwargs)
  return jaxcc.evaluate_coded(**args)


def _nan_images():
  images = _images().astype(np.float32)
  images[3, 0, 0, 0] = np.nan
  return images


@pytest.mark.parametrize("call, match", [
    (lambda: _fit(images=_images(shape=(5, 5, 1))), "does not accept"),
    (lambda: _evaluate(images=_images(shape=(5, 5, 1))), "does not accept"),
    (lambda: _evaluate(labels=_labels(63)), r"labels must be shaped \(64,\)"),
    (lambda: _fit(images=_nan_images()), "NaN or infinite"),
    (lambda: _evaluate(images=_nan_images()), "NaN or infinite"),
    (lambda: _fit(code=jaxcc.codes.summation(2)._replace(k=0)),
     "k >= 1 and r >= 1"),
    (lambda: jaxcc.codes.summation(0), "k"),
    (lambda: _evaluate(parity_variables=None), "needs parity_variables"),
    (lambda: _evaluate(code=jaxcc.codes.learned(2, 1)), "needs code_params"),
    (lambda: _fit(parity_model=_Linear(num_outputs=4)),
     "parity model returns 4 outputs"),
    (lambda: _evaluate(parity_variables=_stack(_init(_Linear()), 2)),
     "leading axis of r=1"),
    (lambda: _fit(images=_images(1)), "cannot form one coding group"),
    (lambda: _evaluate(images=_images(1), labels=_labels(1)),
     "cannot form one coding group"),
    (lambda: _fit(images=_images(10)), "pass a smaller batch_size"),
    (lambda: _fit(code=jaxcc.codes.learned(2, 1)), "no parity models"),
    (lambda: jaxcc.fit_learned_code(
        _Linear(), _init(_Linear()), _images(), jaxcc.codes.summation(2),
        key=jax.random.PRNGKey(0), batch_size=8), "no trained encoder"),
    (lambda: jaxcc.fit_learned_code(
        _Linear(), _init(_Linear()), _images(), jaxcc.codes.learned(2, 1),
        key=jax.random.PRNGKey(0), batch_size=8, patterns="best"),
     "unknown pattern reduction"),
    (lambda: _fit(variables={"params": {}, "cache": {}}),
     "variables must hold 'params'"),
    (lambda: _fit(parity_model=_BatchNormNet(), init_from_base=True),
     "init_from_base needs"),
    (lambda: _evaluate(labels=_labels() + 3), "not a class"),
])
def test_clear_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_a_diverging_fit_stops_at_its_first_non_finite_epoch():
  with pytest.raises(FloatingPointError,
                     match=r"\[parity models\] loss became .* in epoch 1;"):
    _fit(preprocess=_preprocess, learning_rate=1e30)


# Real data: the embedded MNIST digits (no download).


class _DigitsCNN(nn.Module):
  """A small CNN with BatchNorm, defined here (not in jaxcc's zoo)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), strides=2)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def digits_cnn():
  """`(module, variables, dataset)`: the CNN trained 3 epochs on digits."""
  ds = data.load("embedded")
  module = _DigitsCNN()
  x_N = _preprocess(ds.train.image)
  model = models.wrap(module, x_N.shape[1:])
  opt = training.optimizer(1e-3, 0.0)
  state = training.init_base(model, opt, jax.random.PRNGKey(0))
  epoch = training.epoch(
      training.base_step(model, opt, tasks.classification(10).base_loss,
                         lambda x: x), training.batch_indices(64))
  for e in range(3):
    state, _ = epoch(state, jax.random.PRNGKey(e), images=jnp.asarray(x_N),
                     labels=jnp.asarray(ds.train.label))
  return module, _variables(state), ds


def _variables(state):
  return {"params": state.params, "batch_stats": state.batch_stats}


@pytest.mark.slow
def test_parity_models_for_a_custom_cnn_on_digits(digits_cnn):
  module, variables, ds = digits_cnn
  code = jaxcc.codes.summation(2)
  parity_vars = jaxcc.fit_parity_models(
      module, variables, ds.train.image, code, key=jax.random.PRNGKey(1),
      epochs=3, preprocess=_preprocess, init_from_base=True)
  results = jaxcc.evaluate_coded(
      module, variables, code, ds.test.image, ds.test.label,
      key=jax.random.PRNGKey(2), preprocess=_preprocess,
      parity_variables=parity_vars)
  assert results["available_accuracy"] > 0.8
  # 0.867 when written (3600 training digits, 1000 test digits).
  assert results["default_accuracy"] == 0.1
  assert results["degraded_accuracy"] > 0.7


@pytest.mark.slow
def test_learned_code_for_a_custom_cnn_on_digits(digits_cnn):
  module, variables, ds = digits_cnn
  code = jaxcc.codes.learned(2, 1)
  params = jaxcc.fit_learned_code(
      module, variables, ds.train.image, code, key=jax.random.PRNGKey(1),
      epochs=4, batch_size=32, loss="kl-base", preprocess=_preprocess)
  results = jaxcc.evaluate_coded(
      module, variables, code, ds.test.image, ds.test.label,
      key=jax.random.PRNGKey(2), preprocess=_preprocess, code_params=params)
  # 0.272 when written: a learned code needs far more epochs to approach
  # the parity model, but is already well above the default prediction.
  assert results["degraded_accuracy"] > 2 * results["default_accuracy"]


@pytest.mark.slow
def test_train_py_takes_a_module_defined_here(tmp_path):
  """`model=test_protect:_BatchNormNet`: this file's own CNN via the CLI."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.join(root, "tests"), os.environ.get("PYTHONPATH", "")]))
  done = subprocess.run(
      [sys.executable, "train.py",
       "--config=configs/parity.py:model=test_protect:_BatchNormNet,"
       "base_epochs=2,epochs=2,validation_size=200",
       f"--workdir={tmp_path}"],
      cwd=root, env=env, capture_output=True, text=True, timeout=600,
      check=False)
  assert done.returncode == 0, done.stderr[-2000:]
  results = json.load(open(tmp_path / "eval.json"))
  assert results["model"] == "test_protect:_BatchNormNet"
  assert results["available_accuracy"] > 0.5  # trained, on real digits
  assert results["degraded_accuracy"] > 2 * results["default_accuracy"]


class _TinyConv(nn.Module):
  """One convolution: `training.epoch` steps it one by one on the CPU."""

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(2, (3, 3))(x)
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


@pytest.mark.slow
def test_progress_lines_inside_epochs_only_when_asked(monkeypatch):
  lines = []
  monkeypatch.setattr(logs, "PROGRESS_SECS", 0.0)
  monkeypatch.setattr(logs, "info", lines.append)
  module = _TinyConv()
  for progress in (False, True):
    lines.clear()
    jaxcc.fit_parity_models(module, _init(module), _images(32),
                            jaxcc.codes.summation(2),
                            key=jax.random.PRNGKey(0), epochs=1,
                            batch_size=2, preprocess=_preprocess,
                            progress=progress)
    steps = [l for l in lines if l.startswith("  step ")]
    # 8 steps: steps 1 to 6 finish while two run ahead
    assert len(steps) == 6 * progress, lines
  assert steps[0].startswith("  step 1/8:")
