"""Training and evaluation end to end on the embedded dataset (tiny budget)."""

import json
import os

import jax
import numpy as np
import pytest

from configs import parity as parity_config
from jaxcc import evaluation
from jaxcc import experiment
from jaxcc import training

_TINY = ("base_epochs=2,epochs=3,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


def _config(extra=""):
  return parity_config.get_config(_TINY + ("," + extra if extra else ""))


def test_train_and_evaluate_writes_metrics(tmp_path):
  config = _config()
  training.train(config, str(tmp_path))
  results = evaluation.evaluate(config, str(tmp_path))
  saved = json.load(open(tmp_path / "eval.json"))
  assert saved["degraded_accuracy"] == results["degraded_accuracy"]
  assert saved["available_accuracy"] > 0.5  # two epochs of real MNIST
  assert saved["degraded_accuracy"] > saved["default_accuracy"]
  assert len(saved["per_pattern"]) == 2 and saved["k"] == 2
  assert set(saved["overall_accuracy"]) == {
      "0.0", "0.01", "0.05", "0.1", "0.2", "0.5", "1.0"}
  assert os.path.exists(tmp_path / "overall_accuracy.png")
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [(l["stage"], l.get("epoch")) for l in lines] == [
      ("base", 1), ("base", 2), ("base", None),
      ("stage2", 1), ("stage2", 2), ("stage2", 3), ("stage2", None)]
  summary = lines[-1]
  assert summary["summary"] and summary["epochs"] == 3
  assert summary["examples_per_sec"] > 0


def test_base_model_is_not_in_parity_optimizer(tmp_path):
  config = _config()
  exp = experiment.setup(config, str(tmp_path))
  base = experiment.init_base(exp, jax.random.PRNGKey(0))
  stage2 = experiment.init_stage2(exp, jax.random.PRNGKey(1), base)
  # Adam's moments cover exactly the parity models' parameters: r stacked
  # copies of F's shapes, nothing of F itself.
  adam = stage2.opt_state[1][0]
  shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)
  assert shapes(adam.mu) == shapes(stage2.params)
  assert shapes(stage2.params) == jax.tree.map(lambda a: (1,) + a.shape,
                                               base.params)
  # One parity model per parity, stacked on a leading axis of size r.
  assert all(x.shape[0] == 1 for x in jax.tree.leaves(stage2.params))


class _Interrupt(Exception):
  pass


def test_interrupted_training_resumes_to_the_same_result(tmp_path,
                                                         monkeypatch):
  config = _config()
  training.train(config, str(tmp_path / "straight"))
  straight = evaluation.evaluate(config, str(tmp_path / "straight"))

  real_parity_epoch = training.parity_epoch

  def crashing_parity_epoch(exp, mesh=None):
    epoch_fn = real_parity_epoch(exp, mesh)
    calls = []

    def epoch(state, key, **kwargs):
      calls.append(1)
      if len(calls) == 2:  # killed in the middle of the second epoch
        raise _Interrupt()
      return epoch_fn(state, key, **kwargs)
    return epoch

  monkeypatch.setattr(training, "parity_epoch", crashing_parity_epoch)
  with pytest.raises(_Interrupt):
    training.train(config, str(tmp_path / "resumed"))
  monkeypatch.undo()
  training.train(config, str(tmp_path / "resumed"))
  resumed = evaluation.evaluate(config, str(tmp_path / "resumed"))
  for key in ("available_accuracy", "degraded_accuracy",
              "reconstruction_accuracy"):
    assert resumed[key] == straight[key]


@pytest.mark.parametrize("extra, message", [
    ("dataset=nonexistent_dataset_xyz", "unknown dataset"),
    ("model=transformer", "unknown model"),
    ("code=fancy", "unknown code"),
    ("k=0", "k must be"),
    ("r=-1", "r must be"),
    ("r=2", "summation code has r = 1"),
])
def test_bad_configs_fail_clearly(tmp_path, extra, message):
  with pytest.raises(ValueError, match=message):
    training.train(_config(extra), str(tmp_path))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  config = _config()
  training.train(config, str(tmp_path))
  for root, _, files in os.walk(tmp_path / "stage2"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"not a checkpoint")
  with pytest.raises(ValueError, match="cannot be restored"):
    evaluation.evaluate(config, str(tmp_path))


def test_evaluate_without_training_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="no trained base model"):
    evaluation.evaluate(_config(), str(tmp_path))


def test_unknown_config_field():
  with pytest.raises(ValueError, match="unknown config field"):
    _config("colour=blue")


def test_metrics_agree_with_hand_computation():
  outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]  # F predicts 0,1,2,0
  labels = np.array([0, 1, 1, 0])
  groups = np.array([[0, 1], [2, 3]])
  patterns = np.array([[0, 1, 1], [1, 0, 1]], bool)
  recon = np.stack([outputs[groups]] * 2)  # perfect reconstructions
  m = evaluation.coded_metrics(outputs, labels, groups, np.zeros((2, 1, 3)),
                               recon, patterns, 2)
  assert m["available_accuracy"] == 0.75
  assert m["degraded_accuracy"] == 0.75
  assert m["reconstruction_accuracy"] == 1.0
  assert m["overall_accuracy"]["0.5"] == 0.75
  assert m["default_accuracy"] == 1 / 3


def test_looped_epochs_equal_scanned_epochs():
  results = []
  for scan in ("true", "false"):
    config = _config(f"k=3,batch_size=8,scan_epochs={scan}")
    exp = experiment.setup(config, "/unused")
    base = experiment.init_base(exp, jax.random.PRNGKey(0))
    state = experiment.init_stage2(exp, jax.random.PRNGKey(1), base)
    images = exp.dataset.train.image[:240]
    targets = np.random.default_rng(0).normal(size=(240, 10)).astype(
        np.float32)
    state, losses = training.parity_epoch(exp)(
        state, jax.random.PRNGKey(2), images=jax.device_put(images),
        targets=jax.device_put(targets))
    results.append(jax.tree.map(np.asarray, (state.params, losses)))
  assert results[0][1].shape == (10,)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), *results)
  with pytest.raises(ValueError, match="scan_epochs"):
    training.scan_epochs(experiment.setup(_config("scan_epochs=maybe"),
                                          "/unused"))
