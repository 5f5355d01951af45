"""Orbax checkpoints behind one small interface, with auto-resume.

Each training stage keeps its own `Checkpointer` in a subdirectory of the
workdir. A checkpoint holds the stage's state pytree and a JSON dict of plain
integers (the epoch reached), so a rerun of the same command continues from the
last saved epoch. Orbax writes each checkpoint to a temporary directory and
renames it when complete, so a kill during a save leaves the previous one.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


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
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore(self, like: Any, step: Optional[int] = None):
    """Returns `(state, meta)` of `step` (default: latest) shaped like `like`.

    Raises:
      ValueError: no checkpoint exists, or it cannot be read (corrupt,
        truncated, or written for a different model or configuration).
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise ValueError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f"checkpoint {step} in {self.directory} cannot be restored (corrupt "
          f"or from a different configuration): {type(e).__name__}: "
          f"{str(e)[:300]}. Delete that directory to start the stage again."
      ) from e
    _check_finite(restored.state, self.directory, step)
    return restored.state, dict(restored.meta)

  def close(self) -> None:
    self._manager.close()


def _check_finite(state, directory, step):
  for leaf in jax.tree.leaves(state):
    if hasattr(leaf, "dtype") and jax.numpy.issubdtype(leaf.dtype,
                                                       jax.numpy.floating):
      if not bool(jax.numpy.isfinite(leaf).all()):
        raise ValueError(f"checkpoint {step} in {directory} holds NaN or "
                         "infinite values; delete it to retrain the stage")


def load_params(directory: str, step: Optional[int] = None):
  """The parameters a training stage saved in `directory`, as a plain pytree.

  Needs no config: e.g. `load_params("runs/x/stage2")` returns a learned
  code's `{"encoder": ..., "decoder": ...}` (or the stacked parity models) to
  use with `code.encode`/`code.decode` in another project.
  """
  manager = ocp.CheckpointManager(os.path.abspath(directory))
  step = manager.latest_step() if step is None else step
  if step is None:
    raise ValueError(f"no checkpoint in {directory}")
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"checkpoint {step} in {directory} cannot be restored: "
                     f"{type(e).__name__}: {str(e)[:300]}") from e
  finally:
    manager.close()
  return restored.state["params"]
