"""Checkpoints inside an epoch, and a cosine schedule on either pipeline
(stages.train on the embedded digits, a tiny budget)."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from configs import parity as parity_config
from jaxcc import logs
from jaxcc import stages
from jaxcc import training
from jaxcc import workdir

# 3,800 training examples: base 59 steps an epoch, stage 2 29 (groups of 2).
_TINY = ("base_epochs=1,epochs=2,validation_size=200,checkpoint_every_secs=0,"
         "eval_every=100")


def _config(extra):
  return parity_config.get_config(_TINY + ("," + extra if extra else ""))


def _states(directory):
  restored = workdir.restore(str(directory))
  return jax.tree.leaves(jax.tree.map(np.asarray, (restored.base,
                                                   restored.stage2)))


def _records(directory):
  return [json.loads(l) for l in open(directory / "metrics.jsonl")]


class _Interrupt(Exception):
  pass


def _watch(monkeypatch, calls, kill_at=None):
  """Records stage 2's `(start, stop)` parts; raises at part `kill_at`."""
  real, stage = stages._epoch_fn, []  # pylint: disable=protected-access

  def epoch_fn(*args):
    run = real(*args)
    stage.append(1)
    if len(stage) == 1:
      return run  # the base stage

    def part(state, key, *, start, stop, progress):
      calls.append((start, stop))
      if len(calls) == kill_at:
        raise _Interrupt()
      return run(state, key, start=start, stop=stop, progress=progress)
    return part
  monkeypatch.setattr(stages, "_epoch_fn", epoch_fn)


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["memory", "stream"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_bits(tmp_path,
                                                         monkeypatch,
                                                         pipeline):
  config = _config(f"checkpoint_every_steps=10,input_pipeline={pipeline}")
  messages, info = [], logs.info
  monkeypatch.setattr(logs, "PROGRESS_SECS", 0.0)
  monkeypatch.setattr(logs, "info", lambda m: (messages.append(m), info(m)))
  stages.train(config, str(tmp_path / "straight"))
  monkeypatch.undo()
  lines = [m.split(":")[0].strip() for m in messages if m.startswith(
      "  step ")]
  if pipeline == "memory":  # scanned parts report when they end
    assert lines == [f"step {s}/59" for s in range(10, 60, 10)] + [
        f"step {s}/29" for s in (10, 20)] * 2
  else:  # chunks report when they end
    assert set(lines) >= {"step 10/59", "step 20/29"}
  calls = []
  _watch(monkeypatch, calls, kill_at=6)
  with pytest.raises(_Interrupt):  # in stage 2's second epoch, at step 20
    stages.train(config, str(tmp_path / "resumed"))
  assert calls == [(0, 10), (10, 20), (20, 29), (0, 10), (10, 20), (20, 29)]
  mid = tmp_path / "resumed" / "stage2" / stages.MID_EPOCH_DIR
  assert sorted(os.listdir(mid)) == ["39", "49"]  # epoch 1's steps 10, 20
  if pipeline == "memory":  # a damaged one falls back to the one before
    data = glob.glob(str(mid / "49" / "state" / "ocdbt*" / "d" / "*"))
    biggest = max(data, key=os.path.getsize)
    payload = bytearray(open(biggest, "rb").read())
    payload[len(payload) // 2] ^= 0xFF
    open(biggest, "wb").write(bytes(payload))
  monkeypatch.undo()
  calls.clear()
  _watch(monkeypatch, calls)
  stages.train(config, str(tmp_path / "resumed"))
  assert calls == [(10, 20)] * (pipeline == "memory") + [(20, 29)]
  assert not mid.exists()  # removed once the stage ends
  for resumed, straight in zip(_states(tmp_path / "resumed"),
                               _states(tmp_path / "straight")):
    np.testing.assert_array_equal(resumed, straight)
  # each epoch once, its loss over the steps before the kill too
  epochs = lambda d: [(r["stage"], r["epoch"], r["loss"], r.get(
      "val_degraded_accuracy")) for r in _records(d) if not r.get("summary")]
  assert epochs(tmp_path / "resumed") == epochs(tmp_path / "straight")


@pytest.mark.slow
def test_a_cosine_schedule_spans_the_same_steps_on_both_pipelines(
    tmp_path, monkeypatch):
  spans, real = [], training.lr_schedule

  def spy(name, warmup_steps, total_steps):
    spans.append((name, warmup_steps, total_steps))
    return real(name, warmup_steps, total_steps)
  monkeypatch.setattr(training, "lr_schedule", spy)
  for pipeline in ("memory", "stream"):
    stages.train(_config(f"schedule=cosine,warmup_epochs=1,input_pipeline="
                         f"{pipeline}"), str(tmp_path / pipeline))
  assert set(spans) == {("cosine", 29, 58)}
  for stream, memory in zip(_states(tmp_path / "stream"),
                            _states(tmp_path / "memory")):
    np.testing.assert_allclose(stream, memory, rtol=1e-6, atol=1e-7)


def test_bad_checkpoint_every_steps_fails_before_writing_anything(tmp_path):
  with pytest.raises(ValueError, match="checkpoint_every_steps must be"):
    stages.train(_config("checkpoint_every_steps=-1"), str(tmp_path))
  assert not (tmp_path / "config.json").exists()
