"""TensorBoard event files beside metrics.jsonl (jaxcc.logs.MetricWriter),
read back with tensorboard's EventAccumulator."""

import json
import sys
import types

import numpy as np
import pytest

from configs import parity as parity_config
from jaxcc import logs
from jaxcc import stages


@pytest.fixture(name="read_events")
def _read_events(monkeypatch):
  """`read_events(directory) -> {tag: [(step, value)]}` with tensorboard's
  EventAccumulator, on its TensorFlow stub (importing TensorFlow takes 20 s
  here)."""
  monkeypatch.setitem(sys.modules, "tensorboard.compat.notf",
                      types.ModuleType("notf"))
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator

  def read(directory):
    acc = event_accumulator.EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(s.step, s.value) for s in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}
  return read


def _records(stage, epochs, loss=1.0):
  return [{"stage": stage, "epoch": e, "loss": loss / e, "seconds": 0.5,
           "examples_per_sec": 1e4 + e, "val_accuracy": 0.25 * e}
          for e in epochs]


def test_tensorboard_gets_every_numeric_field_at_the_epoch(tmp_path,
                                                           read_events):
  writer = logs.MetricWriter(str(tmp_path))
  for record in _records("base", [1, 2]) + _records("stage2", [1]):
    writer.write(record)
  writer.write({"stage": "base", "summary": True, "epochs": 2,
                "seconds": 1.0, "examples_per_sec": 5.0})
  writer.close()
  base = read_events(tmp_path / logs.TENSORBOARD_DIR / "base")
  assert sorted(base) == ["base/examples_per_sec", "base/loss",
                          "base/seconds", "base/val_accuracy"]
  for record in _records("base", [1, 2]):
    for name in ("loss", "seconds", "examples_per_sec", "val_accuracy"):
      assert (record["epoch"], np.float32(record[name])) in base[
          f"base/{name}"]
  assert read_events(tmp_path / logs.TENSORBOARD_DIR / "stage2")[
      "stage2/loss"] == [(1, 1.0)]


def test_a_resumed_stage_replaces_its_later_points(tmp_path, read_events):
  writer = logs.MetricWriter(str(tmp_path))
  for record in _records("base", [1]) + _records("stage2", [1, 2, 3]):
    writer.write(record)
  writer.close()
  writer = logs.MetricWriter(str(tmp_path))  # resumed from stage 2's epoch 1
  writer.resume("stage2", 1)
  for record in _records("stage2", [2, 3], loss=7.0):
    writer.write(record)
  writer.close()
  assert read_events(tmp_path / logs.TENSORBOARD_DIR / "stage2")[
      "stage2/loss"] == [(1, 1.0), (2, 3.5), (3, np.float32(7 / 3))]
  assert read_events(tmp_path / logs.TENSORBOARD_DIR / "base")[
      "base/loss"] == [(1, 1.0)]


def test_without_tensorboard_only_metrics_jsonl_and_one_line(tmp_path,
                                                              monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)
  messages = []
  monkeypatch.setattr(logs, "info", messages.append)
  writer = logs.MetricWriter(str(tmp_path))
  for record in _records("base", [1, 2]):
    writer.write(record)
  writer.resume("base", 1)
  writer.close()
  assert not (tmp_path / logs.TENSORBOARD_DIR).exists()
  assert len(open(tmp_path / logs.METRICS_FILE).readlines()) == 1
  assert len(messages) == 1 and "tensorboard package is not installed" in (
      messages[0])


@pytest.mark.slow
def test_a_training_run_s_events_hold_the_values_of_metrics_jsonl(
    tmp_path, read_events):
  stages.train(parity_config.get_config(
      "base_epochs=2,epochs=1,validation_size=200,eval_every=1"),
               str(tmp_path))
  records = [json.loads(l) for l in open(tmp_path / logs.METRICS_FILE)]
  for stage in ("base", "stage2"):
    events = read_events(tmp_path / logs.TENSORBOARD_DIR / stage)
    want = {}
    for r in records:
      if r["stage"] == stage and not r.get("summary"):
        for name, value in r.items():
          if name not in ("stage", "epoch"):
            want.setdefault(f"{stage}/{name}", []).append(
                (r["epoch"], np.float32(value)))
    assert events == want
  assert len(want["stage2/val_degraded_accuracy"]) == 1
