"""Checkpoints: verified round trip, damaged checkpoints, clear errors."""

import glob
import logging
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxcc import checkpoints


class _State(NamedTuple):  # shaped like a training stage's state
  params: dict
  batch_stats: dict
  opt_state: tuple


def _state(offset=0.0):
  rng = np.random.default_rng(0)
  params = {"encoder": {
      "w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32) + offset,
      "b": jnp.arange(3.0) + offset}}
  return _State(params, {}, optax.adam(1e-3).init(params))


def _zeros():
  return jax.tree.map(jnp.zeros_like, _state())


def _assert_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _saved(directory, steps=(1, 2)):
  ckpt = checkpoints.Checkpointer(str(directory))
  for step in steps:
    ckpt.save(step, _state(float(step)), {"epoch": step})
  ckpt.close()


def _largest_array_file(directory, step):
  """The biggest OCDBT data file of a checkpoint: it holds `w`'s chunk."""
  files = glob.glob(os.path.join(str(directory), str(step), "state",
                                 "ocdbt.process_*", "d", "*"))
  return max(files, key=os.path.getsize)


def _flip_bytes(path, count=20):
  payload = bytearray(open(path, "rb").read())
  middle = len(payload) // 2  # inside the array data, past any header
  for i in range(middle, middle + count):
    payload[i] ^= 0xFF
  with open(path, "wb") as f:
    f.write(payload)


def test_round_trip_into_zeroed_template_and_load_params(tmp_path):
  _saved(tmp_path, steps=(7,))
  state, meta = checkpoints.Checkpointer(str(tmp_path)).restore(_zeros())
  assert meta == {"epoch": 7}
  assert isinstance(state.opt_state[0], optax.ScaleByAdamState)
  _assert_equal(state, _state(7.0))
  params = checkpoints.load_params(str(tmp_path))
  _assert_equal(params, _state(7.0).params)


def test_restore_accepts_an_abstract_template(tmp_path):
  _saved(tmp_path, steps=(3,))
  abstract = jax.eval_shape(_state)
  state, _ = checkpoints.Checkpointer(str(tmp_path)).restore(abstract)
  _assert_equal(state, _state(3.0))


def test_flipped_bytes_raise_in_strict_mode_and_fall_back(tmp_path, caplog):
  _saved(tmp_path)
  _flip_bytes(_largest_array_file(tmp_path, 2))
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(ValueError, match="digest") as error:
    ckpt.restore(_zeros())
  message = str(error.value)
  assert os.path.join(str(tmp_path), "2") in message
  assert "\n" not in message
  with pytest.raises(ValueError, match="digest"):
    checkpoints.load_params(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    state, meta = ckpt.restore(_zeros(), fallback=True)
  assert meta == {"epoch": 1}
  _assert_equal(state, _state(1.0))
  warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
  assert len(warnings) == 1 and "damaged" in warnings[0].getMessage()
  assert "\n" not in warnings[0].getMessage()
  # The damaged checkpoint is set aside, so training saves step 2 again.
  assert ckpt.latest_step() == 1
  assert os.listdir(tmp_path / checkpoints.DAMAGED_DIR) == ["2"]
  ckpt.save(2, _state(5.0), {"epoch": 2})
  _assert_equal(ckpt.restore(_zeros())[0], _state(5.0))


def test_flipped_bytes_in_meta_are_detected(tmp_path):
  _saved(tmp_path)
  path = tmp_path / "2" / "meta" / "metadata"
  path.write_text(path.read_text().replace("2", "9"))
  with pytest.raises(ValueError, match="epoch dict"):
    checkpoints.Checkpointer(str(tmp_path)).restore(_zeros())


def test_truncated_file(tmp_path):
  _saved(tmp_path)
  path = _largest_array_file(tmp_path, 2)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(ValueError, match="damaged") as error:
    ckpt.restore(_zeros())
  assert len(str(error.value)) < 250 and error.value.__cause__ is not None
  state, meta = ckpt.restore(_zeros(), fallback=True)
  assert meta == {"epoch": 1}
  _assert_equal(state, _state(1.0))


def test_no_intact_checkpoint_moves_nothing(tmp_path):
  _saved(tmp_path)
  for step in (1, 2):
    _flip_bytes(_largest_array_file(tmp_path, step))
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(ValueError, match="no intact checkpoint"):
    ckpt.restore(_zeros(), fallback=True)
  assert ckpt.latest_step() == 2  # a rerun must not silently start afresh


def test_nan_state_refused(tmp_path):
  bad = _state()._replace(params={"encoder": {"w": jnp.full((64, 64), jnp.nan),
                                              "b": jnp.zeros(3)}})
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(ValueError, match="refusing.*NaN"):
    ckpt.save(1, bad, {"epoch": 1})
  assert ckpt.latest_step() is None


def _save_without_digests(directory, step, state):
  """A checkpoint as written before digests existed."""
  manager = ocp.CheckpointManager(str(directory))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      meta=ocp.args.JsonSave({"epoch": step})))
  manager.wait_until_finished()
  manager.close()


def test_checkpoint_without_digests_restores_with_a_warning(tmp_path, caplog):
  _save_without_digests(tmp_path, 4, _state(4.0))
  with caplog.at_level(logging.WARNING):
    state, meta = checkpoints.Checkpointer(str(tmp_path)).restore(_zeros())
  assert meta == {"epoch": 4}
  _assert_equal(state, _state(4.0))
  assert any("no digests" in r.getMessage() for r in caplog.records)


def test_nan_checkpoint_refused_on_restore(tmp_path):
  _saved(tmp_path, steps=(1,))
  bad = _state()._replace(params={"encoder": {"w": jnp.full((64, 64), jnp.nan),
                                              "b": jnp.zeros(3)}})
  _save_without_digests(tmp_path, 2, bad)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  with pytest.raises(ValueError, match="NaN"):
    ckpt.restore(_zeros())
  assert ckpt.restore(_zeros(), fallback=True)[1] == {"epoch": 1}


def test_missing_checkpoints(tmp_path):
  with pytest.raises(ValueError, match="no checkpoint"):
    checkpoints.load_params(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="no checkpoint"):
    checkpoints.Checkpointer(str(tmp_path / "empty")).restore(_zeros())
  _saved(tmp_path, steps=(1,))
  with pytest.raises(ValueError, match="no checkpoint 5"):
    checkpoints.Checkpointer(str(tmp_path)).restore(_zeros(), step=5)


def test_save_refuses_a_step_that_is_not_new(tmp_path):
  _saved(tmp_path)
  with pytest.raises(ValueError, match="not saved"):
    checkpoints.Checkpointer(str(tmp_path)).save(1, _state(), {"epoch": 1})
