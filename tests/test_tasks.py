"""Every task of the paper end to end: data, F, parity model, evaluation.

Tiny budgets on `tfds.testing.mock_data` (and the real speech subset when
present); small models stand in where the paper's are too slow for a CPU
test, and the paper's models are only built (`jax.eval_shape`).
"""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import cats_vs_dogs
from configs import cifar100
from configs import localization as localization_config
from configs import speech
from jaxcc import evaluation
from jaxcc import experiment
from jaxcc import models
from jaxcc import stages

_TINY = ("base_epochs=1,epochs=1,checkpoint_every_secs=0,eval_every=100,"
         "base.batch_size=8,batch_size=4")
_SHARED_FIELDS = {
    "available_accuracy", "degraded_accuracy", "reconstruction_accuracy",
    "default_accuracy", "overall_accuracy", "available_top5_accuracy",
    "degraded_top5_accuracy", "per_pattern", "num_groups",
    "finite_parity_outputs", "k", "r", "dataset", "model", "code", "task"}


def _pipeline(config_module, arg, workdir):
  """Trains F and the parity model, evaluates; returns the saved eval.json."""
  config = config_module.get_config(f"{_TINY},{arg}")
  stages.train(config, str(workdir))
  results = evaluation.evaluate(config, str(workdir))
  saved = json.load(open(workdir / "eval.json"))
  assert saved["degraded_accuracy"] == results["degraded_accuracy"]
  assert _SHARED_FIELDS <= set(saved) and saved["finite_parity_outputs"]
  assert os.path.exists(workdir / "overall_accuracy.png")
  return saved


def _check_classification(saved):
  assert saved["task"] == "classification"
  for key in ("available_accuracy", "degraded_accuracy",
              "degraded_top5_accuracy"):
    assert 0.0 <= saved[key] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="tfds's speech_commands builder needs TensorFlow "
                    "(pip install -r requirements.txt)")
def test_speech_commands_tfds(tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    saved = _pipeline(speech, "model=mlp", tmp_path)
  _check_classification(saved)


def _write_speech_npz(directory, rng):
  """Clips in the npz speech format: int16 16 kHz audio, length, label."""
  directory.mkdir()
  for split, n in (("train", 40), ("val", 10), ("test", 11)):
    length = rng.integers(8000, 16001, n).astype(np.int32)
    audio = (rng.normal(0, 3000, (n, 16000)) *
             (np.arange(16000) < length[:, None])).astype(np.int16)
    np.savez(directory / f"{split}.npz", audio=audio, length=length,
             label=rng.integers(0, 3, n))


@pytest.mark.slow
def test_speech_clips_from_local_files(tmp_path):
  _write_speech_npz(tmp_path / "speech", np.random.default_rng(0))
  saved = _pipeline(speech, f"dataset=npz:{tmp_path / 'speech'},model=mlp",
                    tmp_path / "run")
  _check_classification(saved)
  assert saved["num_groups"] == 5  # 11 test clips, k = 2


@pytest.mark.slow
def test_cifar100_top5(tmp_path):
  with tfds.testing.mock_data(num_examples=40):
    saved = _pipeline(cifar100, "model=mlp", tmp_path)
  _check_classification(saved)
  assert saved["default_top5_accuracy"] == 0.05  # 5 of the 100 classes


@pytest.mark.slow
def test_cats_vs_dogs_concatenation(tmp_path):
  with tfds.testing.mock_data(num_examples=40):
    saved = _pipeline(cats_vs_dogs, "image_size=16,model=mlp", tmp_path)
  _check_classification(saved)
  assert saved["code"] == "concatenation(k=2)"


def _bird_source(self, split, **kwargs):
  """caltech_birds2011 mock examples of varying size with valid boxes."""
  del self, kwargs
  rng = np.random.default_rng(0)
  examples = []
  for _ in range(40):
    top, left = rng.uniform(0, 0.5, 2)
    height, width = rng.uniform(0.1, 0.5, 2)
    examples.append({
        "image": rng.integers(0, 255, (rng.integers(20, 40), 30, 3),
                              np.uint8),
        "bbox": np.float32([top, left, top + height, left + width]),
        "label": 0})
  return {"train": examples, "test": examples} if split is None else examples


def _check_localization(saved):
  assert saved["task"] == "localization"
  for key in ("available_accuracy", "degraded_accuracy", "overall_accuracy"):
    assert saved[key] is None
  for key in ("available_mean_iou", "degraded_mean_iou",
              "reconstruction_mean_iou", "default_mean_iou",
              "available_iou_at_0.75", "degraded_iou_at_0.75"):
    assert 0.0 <= saved[key] <= 1.0
  assert set(saved["per_pattern"][0]) == {
      "missing", "degraded_mean_iou", "reconstruction_mean_iou"}


@pytest.mark.slow
def test_cub_localization(tmp_path):
  with tfds.testing.mock_data(as_data_source_fn=_bird_source):
    saved = _pipeline(localization_config, "image_size=16,model=mlp",
                      tmp_path)
  _check_localization(saved)


@pytest.mark.slow
def test_digit_localization_learns_boxes(tmp_path):
  saved = _pipeline(localization_config,
                    "dataset=digits-localization,image_size=0,model=mlp,"
                    "base_epochs=3,base.batch_size=64,batch_size=64",
                    tmp_path)
  _check_localization(saved)
  # F beats the constant mean-box prediction after three epochs.
  assert saved["available_mean_iou"] > saved["default_mean_iou"] + 0.2
  last = {}  # the last epoch record of each stage
  for line in open(tmp_path / "metrics.jsonl"):
    record = json.loads(line)
    if "epoch" in record:
      last[record["stage"]] = record
  assert "val_mean_iou" in last["base"]
  assert "val_degraded_mean_iou" in last["stage2"]


@pytest.mark.parametrize("config_module, arg, input_shape, outputs", [
    (speech, "", (161, 101, 1), 12),
    (speech, "model=lenet5", (161, 101, 1), 12),
    (localization_config, "", (224, 224, 3), 4),
    (cifar100, "", (32, 32, 3), 100),
    (cats_vs_dogs, "", (224, 224, 3), 2),
])
def test_paper_models_build(config_module, arg, input_shape, outputs):
  config = config_module.get_config(arg)
  if config.image_size:
    assert input_shape[:2] == (config.image_size,) * 2
  model = models.get(config.model, input_shape, outputs)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  out = jax.eval_shape(model.apply, variables,
                       jax.ShapeDtypeStruct((2,) + input_shape, np.float32))
  assert out.shape == (2, outputs)


def test_learned_codes_on_boxes_need_the_mse_loss(tmp_path):
  config = localization_config.get_config(
      "dataset=digits-localization,image_size=0,code=learned,loss=xent-label")
  with pytest.raises(ValueError, match="must be 'mse-base'"):
    experiment.setup(config, str(tmp_path))
