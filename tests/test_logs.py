"""Script errors as one line, progress lines, and metrics.jsonl after a
resume (TensorBoard: test_tensorboard.py)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxcc import logs
from jaxcc import training

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_deliberate_error_is_one_line_and_exit_1(capsys):
  with pytest.raises(SystemExit) as stop:
    with logs.clear_errors(verbose=False):
      raise ValueError("k must be >= 1, got 0\nsecond line")
  assert stop.value.code == 1
  assert capsys.readouterr().err == (
      "error: k must be >= 1, got 0 (rerun with --verbose for the "
      "traceback)\n")


def test_verbose_keeps_the_traceback_and_bugs_are_not_hidden():
  with pytest.raises(ValueError, match="bad"):
    with logs.clear_errors(verbose=True):
      raise ValueError("bad")
  with pytest.raises(KeyError):  # not a deliberate error: untouched
    with logs.clear_errors(verbose=False):
      raise KeyError("bug")


def test_resume_drops_the_stage_s_later_epochs_only(tmp_path):
  writer = logs.MetricWriter(str(tmp_path))
  for record in ({"stage": "base", "epoch": 1}, {"stage": "base", "epoch": 2},
                 {"stage": "stage2", "epoch": 1},
                 {"stage": "stage2", "epoch": 2},
                 {"stage": "stage2", "epoch": 3}):
    writer.write(record)
  writer.resume("stage2", 1)
  writer.write({"stage": "stage2", "epoch": 2})
  lines = [json.loads(l) for l in open(tmp_path / logs.METRICS_FILE)]
  assert [(r["stage"], r["epoch"]) for r in lines] == [
      ("base", 1), ("base", 2), ("stage2", 1), ("stage2", 2)]


@pytest.mark.slow
def test_evaluate_py_prints_one_line_for_a_workdir_it_cannot_use(tmp_path):
  done = subprocess.run(
      [sys.executable, "evaluate.py", f"--workdir={tmp_path}"], cwd=_ROOT,
      capture_output=True, text=True, timeout=300, check=False)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      f"error: {tmp_path} has no config.json: train it with train.py first "
      "(rerun with --verbose for the traceback)"]


def test_progress_logs_steps_speed_and_time_left_at_most_every_interval(
    monkeypatch):
  messages = []
  monkeypatch.setattr(logs, "info", messages.append)
  logs.Progress(25, 4, every_secs=1000)(5)
  assert not messages
  every_time = logs.Progress(25, 4, start=3, every_secs=0)
  every_time(3)  # nothing done yet in this run
  every_time(5)
  every_time(25)  # the epoch's own line follows; no progress line
  assert len(messages) == 1 and messages[0].startswith("  step 5/25:")
  assert "examples/s" in messages[0] and "s left" in messages[0]


def test_in_memory_steps_report_progress_and_a_scan_does_not(monkeypatch):
  """The STEPS loop of `training.epoch` goes through `logs.Progress`."""
  messages = []
  monkeypatch.setattr(logs, "info", messages.append)
  monkeypatch.setattr(logs, "PROGRESS_SECS", 0.0)

  def step(state, idx, images):
    return state + jnp.sum(images[idx]), jnp.float32(0)
  images = jnp.ones((40, 2))
  for loop, lines in ((training.EpochLoop.STEPS, 7), (training.EpochLoop.SCAN,
                                                      0)):
    messages.clear()
    run = training.epoch(step, training.batch_indices(4), loop)
    run(jnp.float32(0), jax.random.PRNGKey(0), images=images, start=1,
        progress=logs.Progress(10, 4, start=1))
    # steps 2..8 of 10 finish while two run ahead; the last ones report
    # nothing (the epoch's own line follows)
    assert len(messages) == lines, messages
