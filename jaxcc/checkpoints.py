"""Verified Orbax checkpoints behind one small interface, with auto-resume.

Each training stage keeps its own `Checkpointer` in a subdirectory of the
workdir. A checkpoint holds the stage's state pytree, a JSON dict of plain
integers (the epoch reached), so a rerun of the same command continues from the
last saved epoch, and a JSON item `digests`: the SHA-256 of every saved array
(and of the dict). Orbax writes each checkpoint to a temporary directory and
renames it when complete, so a kill during a save leaves the previous one.

Digests are needed because Orbax's files carry no checksum of array data
(zarr chunks in OCDBT files; its only crc32c covers zarr3 shard indexes):
bytes flipped in a data file restore silently as wrong numbers. `restore`
recomputes the digests and compares them. A checkpoint is *damaged* when it
cannot be read, does not match its digests or holds NaN or infinite values;
then `restore(..., fallback=False)` (evaluation) raises a ValueError naming
its directory, and `restore(..., fallback=True)` (training) logs one warning
line, moves it to `<directory>/damaged/` and restores the newest intact
earlier checkpoint instead.

Checkpoints written before digests existed (no `digests` item) still
restore, with a warning that they cannot be verified.
"""

import hashlib
import json
import os
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

DAMAGED_DIR = "damaged"
_DIGESTS = "digests"
_META_KEY = "<meta>"  # the digest of the JSON dict, beside the arrays'


class Checkpointer:
  """Saves and restores `(state, meta)` pairs under `directory`."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=False))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state`, `meta` and their digests as checkpoint `step`.

    Raises:
      ValueError: `state` holds NaN or infinite values, or `step` is not after
        the latest checkpoint.
    """
    host_state = jax.device_get(state)
    bad = _first_nonfinite(host_state)
    if bad is not None:
      raise ValueError(f"refusing to save checkpoint {step} in "
                       f"{self.directory}: {bad} holds NaN or infinite values")
    saved = self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
        **{_DIGESTS: ocp.args.JsonSave(digests(host_state, meta))}))
    if not saved:
      raise ValueError(f"checkpoint {step} was not saved in {self.directory}: "
                       f"it already holds step {self.latest_step()}")
    self._manager.wait_until_finished()

  def restore(self, like: Any, step: Optional[int] = None, *,
              fallback: bool = False):
    """Returns `(state, meta)` of `step` (default: latest) shaped like `like`.

    Args:
      like: a pytree of arrays or `jax.ShapeDtypeStruct`s shaped as the state.
      step: the checkpoint to restore; default: the latest.
      fallback: what to do when that checkpoint is damaged. False (for
        evaluation): raise. True (for training): log one warning line, move
        each damaged checkpoint to `<directory>/damaged/<step>` (so that
        training saves again from the intact step) and restore the newest
        intact earlier checkpoint; nothing is moved if none is intact.

    Raises:
      ValueError: no checkpoint exists; the checkpoint is damaged (unreadable,
        not matching its digests, NaN), naming its directory; with
        `fallback`, no checkpoint is intact.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    if step is not None:
      if step not in steps:
        raise ValueError(f"no checkpoint {step} in {self.directory} (it has "
                         f"{sorted(steps) or 'none'})")
      steps = [s for s in steps if s <= step]
    if not steps:
      raise ValueError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    damaged = []
    for candidate in steps:
      try:
        state, meta = _read(self._manager, self.directory, candidate,
                            abstract)
      except _Damaged as e:
        if not fallback:
          raise ValueError(str(e)) from e
        damaged.append(e)
        continue
      if damaged:
        self._set_aside(damaged, candidate)
      return state, meta
    raise ValueError(
        f"no intact checkpoint in {self.directory}: {damaged[0]}; "
        f"{len(damaged) - 1} earlier damaged too. Delete the directory to "
        "start the stage again") from damaged[0]

  def _set_aside(self, damaged, restored_step):
    """Moves damaged checkpoints into `damaged/`, logging one line."""
    moved_to = os.path.join(self.directory, DAMAGED_DIR)
    if jax.process_index() == 0:
      os.makedirs(moved_to, exist_ok=True)
      for e in damaged:
        target = os.path.join(moved_to, str(e.step))
        suffix = 0
        while os.path.exists(target):
          suffix += 1
          target = os.path.join(moved_to, f"{e.step}.{suffix}")
        os.replace(e.path, target)
    self._manager.reload()
    logging.warning(
        "%s; restoring checkpoint %d instead (damaged checkpoints %s moved "
        "to %s)", damaged[0], restored_step, [e.step for e in damaged],
        moved_to)

  def close(self) -> None:
    self._manager.close()


def load_params(directory: str, step: Optional[int] = None):
  """The parameters a training stage saved in `directory`, as a plain pytree.

  Needs no config: e.g. `load_params("runs/x/stage2")` returns a learned
  code's `{"encoder": ..., "decoder": ...}` (or the stacked parity models) to
  use with `code.encode`/`code.decode` in another project. The checkpoint is
  verified as by `Checkpointer.restore` (no fallback).

  Raises:
    ValueError: no checkpoint, or it is damaged.
  """
  directory = os.path.abspath(directory)
  manager = ocp.CheckpointManager(directory)
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise ValueError(f"no checkpoint in {directory}")
    state, _ = _read(manager, directory, step, None)
  except _Damaged as e:
    raise ValueError(str(e)) from e
  finally:
    manager.close()
  return state["params"]


def load_variables(directory: str, like: Any) -> Any:
  """A model's variables saved with `ocp.StandardCheckpointer().save`.

  Args:
    directory: what was given to `save`.
    like: variables of the same model (e.g. `model.init(key)`), for the
      structure, shapes and dtypes.

  Raises:
    ValueError: the directory is missing, does not hold variables shaped
      like `like`, or holds NaN or infinite values.
  """
  directory = os.path.abspath(directory)
  if not os.path.isdir(directory):
    raise ValueError(f"checkpoint {directory} does not exist")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  checkpointer = ocp.StandardCheckpointer()
  try:
    variables = checkpointer.restore(directory, abstract)
  except Exception as e:  # pylint: disable=broad-except
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise ValueError(f"checkpoint {directory} does not hold this model's "
                     f"variables ({type(e).__name__}: {text[:200]})") from e
  finally:
    checkpointer.close()
  bad = _first_nonfinite(variables)
  if bad is not None:
    raise ValueError(f"checkpoint {directory}: {bad} holds NaN or infinite "
                     "values")
  return variables


def digests(state: Any, meta: Optional[dict] = None) -> dict:
  """`{leaf path: "<dtype><shape>:<sha256>"}` of every array in `state`.

  Paths name dict keys, attributes and indices alike (`"params/w"`), so a
  state restored as plain dicts has the digests of the one saved. `meta`'s
  JSON gets a digest too.
  """
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    array = np.asarray(jax.device_get(leaf))
    out[_path_name(path)] = (f"{array.dtype}{list(array.shape)}:"
                             f"{hashlib.sha256(array.tobytes()).hexdigest()}")
  if meta is not None:
    text = json.dumps(meta, sort_keys=True).encode()
    out[_META_KEY] = hashlib.sha256(text).hexdigest()
  return out


class _Damaged(Exception):
  """A checkpoint that cannot be used; `str` is one line naming it."""

  def __init__(self, step, path, what):
    super().__init__(f"checkpoint {path} is damaged: {what}")
    self.step, self.path = step, path


def _read(manager, directory, step, abstract):
  """`(state, meta)` of checkpoint `step`, verified; raises `_Damaged`."""
  path = os.path.join(directory, str(step))
  verified = os.path.isdir(os.path.join(path, _DIGESTS))
  items = {"state": ocp.args.StandardRestore(abstract),
           "meta": ocp.args.JsonRestore()}
  if verified:
    items[_DIGESTS] = ocp.args.JsonRestore()
  try:
    restored = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # pylint: disable=broad-except
    raise _Damaged(step, path, f"unreadable ({type(e).__name__} from orbax; "
                   "truncated, or saved for a different model)") from e
  state, meta = restored.state, dict(restored.meta)
  if verified:
    mismatch = _first_mismatch(dict(restored[_DIGESTS]), digests(state, meta))
    if mismatch:
      raise _Damaged(step, path, mismatch)
  else:
    logging.warning("checkpoint %s has no digests (saved by an older jaxcc): "
                    "restoring it unverified", path)
  bad = _first_nonfinite(state)
  if bad is not None:
    raise _Damaged(step, path, f"{bad} holds NaN or infinite values")
  return state, meta


def _first_mismatch(saved, actual):
  """A one-line description of the first difference, or None."""
  if set(saved) != set(actual):
    missing = sorted(set(saved) ^ set(actual))
    return (f"its arrays differ from those digested at save time "
            f"(e.g. {missing[0]!r})")
  for name in sorted(saved):
    if saved[name] != actual[name]:
      what = "the epoch dict" if name == _META_KEY else f"array {name!r}"
      return f"{what} does not match its SHA-256 digest"
  return None


def _first_nonfinite(state):
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    array = np.asarray(leaf)
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
      return f"array {_path_name(path)!r}"
  return None


def _path_name(path):
  return "/".join(
      str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
      for k in path)
