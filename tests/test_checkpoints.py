"""Checkpoints: round trip, plain-parameter export, clear errors."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcc import checkpoints
from jaxcc.experiment import TrainState


def _state():
  params = {"encoder": {"w": jnp.arange(6.0).reshape(2, 3)}}
  return TrainState(params, {}, optax.adam(1e-3).init(params))


def test_round_trip_and_load_params(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  ckpt.save(7, _state(), {"epoch": 7})
  state, meta = checkpoints.Checkpointer(str(tmp_path)).restore(_state())
  assert meta == {"epoch": 7}
  assert isinstance(state.opt_state[0], optax.ScaleByAdamState)
  params = checkpoints.load_params(str(tmp_path))
  np.testing.assert_array_equal(params["encoder"]["w"],
                                np.arange(6.0).reshape(2, 3))


def test_missing_and_nonfinite_checkpoints(tmp_path):
  with pytest.raises(ValueError, match="no checkpoint"):
    checkpoints.load_params(str(tmp_path / "empty"))
  bad = _state()._replace(params={"encoder": {"w": jnp.full((2, 3), jnp.nan)}})
  checkpoints.Checkpointer(str(tmp_path)).save(1, bad, {"epoch": 1})
  with pytest.raises(ValueError, match="NaN"):
    checkpoints.Checkpointer(str(tmp_path)).restore(_state())
