"""A trained workdir, read back: its config and both stages' states.

Evaluation, comparison and serving all start here, so they rebuild exactly
the experiment that `train.py` trained.
"""

import json
import os
from typing import Any, NamedTuple, Optional

import jax
import ml_collections

from jaxcc import checkpoints
from jaxcc import experiment as experiment_lib
from jaxcc import training


class Restored(NamedTuple):
  """A workdir's experiment and trained states (`stage2` None if untrained)."""
  experiment: experiment_lib.Experiment
  base: training.TrainState
  stage2: Optional[training.TrainState]


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config that trained `workdir` (its `config.json`)."""
  path = os.path.join(workdir, experiment_lib.CONFIG_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{workdir} has no {experiment_lib.CONFIG_FILE}: train "
                     "it with train.py first")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore(workdir: str, config: Any = None) -> Restored:
  """Rebuilds `workdir`'s experiment (from `config`, default its own saved
  config) and restores its trained stages."""
  config = saved_config(workdir) if config is None else config
  exp = experiment_lib.setup(config, workdir)
  base_opt = training.optimizer(config.base.learning_rate,
                                config.base.weight_decay)
  base_like = jax.eval_shape(lambda: training.init_base(
      exp.model, base_opt, jax.random.PRNGKey(0)))
  base = _restore(exp.base_dir, base_like, "base model")
  if not exp.approach.trains:
    return Restored(exp, base, None)
  opt = training.optimizer(config.parity.learning_rate,
                           config.parity.weight_decay)
  stage2_like = jax.eval_shape(lambda: exp.approach.init(
      jax.random.PRNGKey(0), model=exp.model, code=exp.code, opt=opt,
      input_shape=exp.dataset.input_shape, base_state=base))
  return Restored(exp, base, _restore(exp.stage2_dir, stage2_like,
                                      f"{exp.approach.name} stage"))


def _restore(directory, like, what):
  ckpt = checkpoints.Checkpointer(directory)
  try:
    if ckpt.latest_step() is None:
      raise ValueError(f"no trained {what} in {directory}: run train.py with "
                       "this config and workdir first")
    state, _ = ckpt.restore(like)
  finally:
    ckpt.close()
  return state
