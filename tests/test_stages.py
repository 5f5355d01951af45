"""Training a config end to end on the embedded digits (tiny budget)."""

import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import parity as parity_config
from jaxcc import checkpoints
from jaxcc import evaluation
from jaxcc import experiment
from jaxcc import logs
from jaxcc import models
from jaxcc import stages
from jaxcc import training
from jaxcc import workdir

_TINY = ("base_epochs=2,epochs=3,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


def _config(extra=""):
  return parity_config.get_config(_TINY + ("," + extra if extra else ""))


def _epochs(directory):
  lines = [json.loads(l) for l in open(directory / "metrics.jsonl")]
  return [(l["stage"], l.get("epoch")) for l in lines]


@pytest.mark.slow
def test_train_and_evaluate_writes_metrics(tmp_path):
  config = _config()
  stages.train(config, str(tmp_path))
  results = evaluation.evaluate(config, str(tmp_path))
  saved = json.load(open(tmp_path / "eval.json"))
  assert saved["degraded_accuracy"] == results["degraded_accuracy"]
  assert saved["available_accuracy"] > 0.5  # two epochs of real MNIST
  assert saved["degraded_accuracy"] > saved["default_accuracy"]
  assert len(saved["per_pattern"]) == 2 and saved["k"] == 2
  assert set(saved["overall_accuracy"]) == {
      "0.0", "0.01", "0.05", "0.1", "0.2", "0.5", "1.0"}
  assert os.path.exists(tmp_path / "overall_accuracy.png")
  assert json.load(open(tmp_path / "config.json"))["k"] == 2
  assert _epochs(tmp_path) == [
      ("base", 1), ("base", 2), ("base", None),
      ("stage2", 1), ("stage2", 2), ("stage2", 3), ("stage2", None)]


class _Interrupt(Exception):
  pass


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_result(tmp_path,
                                                         monkeypatch):
  config = _config("checkpoint_every_secs=1000")  # saves only at the end...
  stages.train(config, str(tmp_path / "straight"))
  straight = evaluation.evaluate(config, str(tmp_path / "straight"))

  real_epoch, calls = training.epoch, []

  def crashing_epoch(step, indices, loop=training.EpochLoop.AUTO):
    run = real_epoch(step, indices, loop)

    def epoch(state, key, **arrays):
      calls.append(1)
      if len(calls) == 4:  # killed during stage 2's second epoch
        raise _Interrupt()
      return run(state, key, **arrays)
    return epoch

  config.checkpoint_every_secs = 0  # ...or after every epoch
  monkeypatch.setattr(training, "epoch", crashing_epoch)
  with pytest.raises(_Interrupt):
    stages.train(config, str(tmp_path / "resumed"))
  monkeypatch.undo()
  stages.train(config, str(tmp_path / "resumed"))
  resumed = evaluation.evaluate(config, str(tmp_path / "resumed"))
  for key in ("available_accuracy", "degraded_accuracy",
              "reconstruction_accuracy", "per_pattern"):
    assert resumed[key] == straight[key]
  # Each epoch once in metrics.jsonl, though stage 2 ran its first twice.
  assert _epochs(tmp_path / "resumed") == _epochs(tmp_path / "straight")


@pytest.mark.slow
def test_training_falls_back_from_a_damaged_latest_checkpoint(tmp_path):
  config = _config()
  stages.train(config, str(tmp_path / "straight"))
  straight = evaluation.evaluate(config, str(tmp_path / "straight"))
  damaged = tmp_path / "damaged"
  shutil.copytree(tmp_path / "straight", damaged)
  data_files = glob.glob(str(damaged / "stage2" / "3" / "state" / "ocdbt*" /
                         "d" / "*"))
  biggest = max(data_files, key=os.path.getsize)
  payload = bytearray(open(biggest, "rb").read())
  payload[len(payload) // 2] ^= 0xFF
  open(biggest, "wb").write(bytes(payload))
  with pytest.raises(ValueError, match="damaged"):
    evaluation.evaluate(config, str(damaged))  # evaluation never falls back
  stages.train(config, str(damaged))  # retrains epoch 3 from epoch 2
  assert os.path.isdir(damaged / "stage2" / "damaged" / "3")
  again = evaluation.evaluate(config, str(damaged))
  for key in ("available_accuracy", "degraded_accuracy", "per_pattern"):
    assert again[key] == straight[key]
  assert [e for stage, e in _epochs(damaged) if stage == "stage2" and e] == [
      1, 2, 3]  # epoch 3 recorded once, though trained twice


@pytest.mark.parametrize("extra, message", [
    ("dataset=nonexistent_dataset_xyz", "unknown dataset"),
    ("model=transformer", "unknown model"),
    ("code=fancy", "unknown code"),
    ("k=0", "k must be"),
    ("r=-1", "r must be"),
    ("r=2", "summation code has r = 1"),
    ("epoch_loop=maybe", "epoch_loop must be"),
    ("target=logits", "parity.target must be"),
    ("epochs=-1", "parity.epochs must be"),
    ("base_epochs=0", "base.epochs must be"),
    ("batch_size=0", "parity.batch_size must be"),
])
def test_bad_configs_fail_before_writing_anything(tmp_path, extra, message):
  with pytest.raises(ValueError, match=message):
    stages.train(_config(extra), str(tmp_path))
  assert not os.path.exists(tmp_path / "config.json")


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
  config = _config()
  stages.train(config, str(tmp_path))
  for root, _, files in os.walk(tmp_path / "stage2"):
    for name in files:
      if name == workdir.IDENTITY_FILE:
        continue
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"not a checkpoint")
  with pytest.raises(ValueError, match="damaged"):
    evaluation.evaluate(config, str(tmp_path))


def test_a_stage_whose_loss_is_not_finite_stops_with_a_clear_error(
    tmp_path, monkeypatch):
  """... and closes its checkpointers (their async saves finish)."""
  opened, closed = [], []
  monkeypatch.setattr(checkpoints.Checkpointer, "__init__", _recording(
      checkpoints.Checkpointer.__init__, opened))
  monkeypatch.setattr(checkpoints.Checkpointer, "close", _recording(
      checkpoints.Checkpointer.close, closed))
  writer = logs.MetricWriter(str(tmp_path))
  ctx = stages._Context(config=_config(), mesh=None, place=jax.device_put,
                        normalize=None, loop=None, images=None,
                        writer=writer)

  def epoch_fn(state, key_e, *, start, stop, progress):
    del key_e, progress
    return state, jnp.full(stop - start, jnp.nan)
  try:
    with pytest.raises(FloatingPointError,
                       match=r"\[base\] loss became nan in epoch 1;"):
      stages.run_stage("base", str(tmp_path / "base"), 2,
                       {"w": jnp.zeros(2)}, epoch_fn, lambda state: {}, ctx,
                       steps_per_epoch=3, examples_per_step=4,
                       key=jax.random.PRNGKey(0))
  finally:
    writer.close()
  assert len(opened) == 1 and closed == opened


def _recording(method, calls):
  """`method`, recording the instance of every call in `calls`."""
  def recorded(self, *args, **kwargs):
    calls.append(self)
    return method(self, *args, **kwargs)
  return recorded


def test_evaluate_without_training_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="no trained base model"):
    evaluation.evaluate(_config(), str(tmp_path))


def test_unknown_config_field():
  with pytest.raises(ValueError, match="unknown config field"):
    _config("colour=blue")


@pytest.mark.slow
def test_label_targets_train_parity_models_toward_one_hot_sums(tmp_path):
  config = _config("target=label,base_epochs=1,epochs=2")
  stages.train(config, str(tmp_path))
  results = evaluation.evaluate(config, str(tmp_path))
  assert results["degraded_accuracy"] > results["default_accuracy"]
  assert np.isfinite(results["reconstruction_accuracy"])


@pytest.mark.slow
def test_a_trained_f_from_a_checkpoint_is_used_as_it_is(tmp_path):
  spec = "jaxcc.models:MLP"
  config = _config(f"model={spec},epochs=1")
  exp = experiment.setup(config, str(tmp_path / "probe"))
  variables = exp.model.init(jax.random.key(7))
  saver = ocp.StandardCheckpointer()
  saver.save(str(tmp_path / "f"), variables)
  saver.wait_until_finished()
  saver.close()
  config.base_checkpoint = str(tmp_path / "f")
  stages.train(config, str(tmp_path / "run"))
  results = evaluation.evaluate(config, str(tmp_path / "run"))
  test = exp.dataset.test
  outputs = models.predict(exp.model, variables, test.image, exp.dataset.mean,
                           exp.dataset.std)
  assert results["available_accuracy"] == pytest.approx(
      float(np.mean(np.argmax(outputs, -1) == test.label)))
  assert ("base", 1) not in _epochs(tmp_path / "run")  # F not trained
  config.base_checkpoint = str(tmp_path / "other")
  with pytest.raises(ValueError, match="trained with base_checkpoint="):
    stages.train(config, str(tmp_path / "run"))
