"""A workdir bound to what trained it; its config and states, read back.

Each stage directory (`base/`, `stage2/`) holds `identity.json`: the config
fields its checkpoints depend on (data and split, model, code, k, r, the
approach's own fields and, for stage 2, how many epochs F was trained). A
run that would resume, reuse (`base_workdir`) or evaluate a stage under a
config that differs in one of them is refused with an error naming the
field. Evaluation, comparison and serving all restore through `restore`, so
they rebuild exactly the experiment that `train.py` trained.
"""

import contextlib
import fcntl
import json
import os
from typing import Any, NamedTuple, Optional

import jax
import ml_collections

from jaxcc import checkpoints
from jaxcc import experiment as experiment_lib
from jaxcc import training


IDENTITY_FILE = "identity.json"
LOCK_FILE = ".training.lock"
# Fields that F's checkpoints depend on.
_BASE_FIELDS = ("dataset", "data_seed", "validation_size", "image_size",
                "model", "mixed_precision", "base_checkpoint")
# Fields of every stage 2 besides F's and the approach's own.
_STAGE2_FIELDS = ("code", "k", "r", "generator")
# Top-level fields added after the first workdirs were written, with the
# value that reproduces how those workdirs were trained (the parity.* fields
# added since are read with their defaults by `approaches.from_config`).
_ADDED_FIELDS = {"base_checkpoint": "", "input_pipeline": "auto",
                 "max_device_bytes": 2 * 1024**3, "checkpoint_every_steps": 0}


def base_identity(config) -> dict:
  """What a base stage's checkpoints depend on."""
  return {f: experiment_lib.field(config, f) for f in _BASE_FIELDS
          if f in config}


def stage2_identity(exp, base_epochs: int) -> dict:
  """What a stage 2's checkpoints depend on, F trained `base_epochs`."""
  fields = _BASE_FIELDS + _STAGE2_FIELDS + exp.approach.config_fields
  return {**{f: experiment_lib.field(exp.config, f) for f in fields},
          "base_epochs": base_epochs}


def check_identity(directory: str, identity: dict) -> None:
  """Raises `ValueError` if the stage in `directory` was trained otherwise.

  A stage without `identity.json` (not trained yet, or trained before
  workdirs were bound) passes.
  """
  path = os.path.join(directory, IDENTITY_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is damaged ({e}); delete {directory} to train "
                     "that stage anew") from e
  for name, value in identity.items():
    if name in saved and saved[name] != value:
      raise ValueError(
          f"{directory} was trained with {name}={saved[name]!r}, but this "
          f"run has {name}={value!r}; use another workdir (or delete that "
          "directory to train it anew)")


def bind(directory: str, identity: dict) -> None:
  """Checks `directory`'s stage against `identity`, recording it if new."""
  check_identity(directory, identity)
  if jax.process_index() == 0:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, IDENTITY_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump(identity, f, indent=2)
    os.replace(path + ".tmp", path)


@contextlib.contextmanager
def training_lock(workdir: str):
  """Holds `workdir` for one training process (process 0 of a job).

  Raises `ValueError` if another process trains there: two runs in one
  workdir would resume from each other's checkpoints. The operating system
  releases the lock when its process ends, however it ends.
  """
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, LOCK_FILE), "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
      raise ValueError(f"another process is training in {workdir}; wait for "
                       "it to end or use another workdir") from e
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def trained_epochs(directory: str) -> int:
  """The epoch of the newest checkpoint in `directory` (0 if none)."""
  ckpt = checkpoints.Checkpointer(directory)
  try:
    return ckpt.latest_step() or 0
  finally:
    ckpt.close()


class Restored(NamedTuple):
  """A workdir's experiment and trained states (`stage2` None if untrained)."""
  experiment: experiment_lib.Experiment
  base: training.TrainState
  stage2: Optional[training.TrainState]


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config that trained `workdir` (its `config.json`), with the fields
  a config saved by an older jaxcc lacks set as that version trained."""
  path = os.path.join(workdir, experiment_lib.CONFIG_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{workdir} has no {experiment_lib.CONFIG_FILE}: train "
                     "it with train.py first")
  with open(path) as f:
    return ml_collections.ConfigDict({**_ADDED_FIELDS, **json.load(f)})


def restore(workdir: str, config: Any = None) -> Restored:
  """Rebuilds `workdir`'s experiment (from `config`, default its own saved
  config) and restores its trained stages."""
  config = saved_config(workdir) if config is None else config
  exp = experiment_lib.setup(config, workdir)
  check_identity(exp.base_dir, base_identity(config))
  base_opt = training.optimizer(config.base.learning_rate,
                                config.base.weight_decay)
  base_like = jax.eval_shape(lambda: training.init_base(
      exp.model, base_opt, jax.random.PRNGKey(0)))
  base = _restore(exp.base_dir, base_like, "base model")
  if not exp.approach.trains:
    return Restored(exp, base, None)
  check_identity(exp.stage2_dir,
                 stage2_identity(exp, trained_epochs(exp.base_dir)))
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
