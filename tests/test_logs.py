"""Script errors as one line, and metrics.jsonl after a resume."""

import json
import os
import subprocess
import sys

import pytest

from jaxcc import logs

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
