"""A streaming input pipeline: batches gathered on the host, prefetched.

For a training set that does not fit the device (config `input_pipeline`),
each epoch reads its examples from host arrays (NumPy arrays in memory or
memory-mapped, or a tfds data source's records as `data.SourceArray`:
anything that integer-array indexing reads) instead of gathering them from
device-resident arrays. The order is the in-memory path's: the epoch's
indices come from the same `indices(key, num_examples)` function
(`training.batch_indices`, `training.group_indices`) and the same key, so
both paths train on the same batches; shuffling by seed and epoch is the
key's (`jax.random.fold_in(stage_key, epoch)`).

grain gathers chunks of S steps on background threads (`host_dataset`;
a `SourceArray` reads its records there, by index);
`device_batches` places each chunk on the device a few chunks ahead,
assembled into the global batch of the data mesh. With several processes
(`jax.distributed`), each process gathers only its own rows of every step
(`host_rows`: a contiguous equal share, as `parallel.data_mesh` orders the
devices by process). A chunk is a dict of `(S, R, ...)` arrays: R rows a
step, the step's indices flattened (B examples, or B groups of K).
`epoch` puts them together: `training.epoch`'s contract over host arrays.
"""

import functools
import math
from typing import Iterator, Mapping, Optional

import grain
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from jaxcc import training

# Host bytes one chunk of steps aims at (`chunk_steps`).
CHUNK_BYTES = 32 * 1024 * 1024


def host_rows(rows: int, process_index: int, process_count: int) -> slice:
  """Process `process_index`'s contiguous share of a step's `rows` rows."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process index {process_index} is not in "
                     f"[0, {process_count})")
  if rows % process_count:
    raise ValueError(f"a step's {rows} rows cannot be split evenly over "
                     f"{process_count} processes")
  share = rows // process_count
  return slice(process_index * share, (process_index + 1) * share)


def chunk_steps(arrays: Mapping[str, np.ndarray], rows: int,
                target_bytes: int = CHUNK_BYTES) -> int:
  """Steps a chunk holds so that it is about `target_bytes` (at least 1)."""
  step_bytes = rows * sum(a.nbytes // max(len(a), 1) for a in arrays.values())
  return max(1, target_bytes // max(step_bytes, 1))


def host_dataset(arrays: Mapping[str, np.ndarray], indices, *,
                 steps_per_chunk: int = 1, start_step: int = 0,
                 process_index: int = 0, process_count: int = 1,
                 num_threads: int = 2,
                 buffer_size: int = 2) -> grain.IterDataset:
  """One epoch as a grain dataset of host chunks, gathered ahead on threads.

  Args:
    arrays: per-example arrays of equal length N (e.g. `images`, `labels`).
    indices: `(steps, ...)` integer indices into them, one row per step.
    steps_per_chunk: S, steps a chunk holds (the last one may hold fewer).
    start_step: the first step to read (resuming inside an epoch).
    process_index, process_count: this process's rows only (`host_rows`).
    num_threads, buffer_size: grain's reader threads and chunks read ahead.
  Returns:
    chunks `{name: (S, R / process_count, ...)}` of steps `start_step`, ...
  """
  if not arrays:
    raise ValueError("host_dataset needs at least one array")
  lengths = {name: len(a) for name, a in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"arrays differ in length: {lengths}")
  indices_SR = np.asarray(indices)
  if indices_SR.ndim < 2 or not np.issubdtype(indices_SR.dtype, np.integer):
    raise ValueError(f"indices must be integer (steps, ...), got "
                     f"{indices_SR.dtype} {indices_SR.shape}")
  steps = indices_SR.shape[0]
  indices_SR = indices_SR.reshape(steps, -1)
  indices_SR = indices_SR[:, host_rows(indices_SR.shape[1], process_index,
                                       process_count)]
  if steps_per_chunk < 1 or not 0 <= start_step <= steps:
    raise ValueError(f"steps_per_chunk={steps_per_chunk} must be >= 1 and "
                     f"start_step={start_step} in [0, {steps}]")

  def gather(first):
    idx_SR = indices_SR[first:first + steps_per_chunk]
    flat = idx_SR.reshape(-1)
    return {name: np.asarray(a[flat]).reshape(idx_SR.shape + a.shape[1:])
            for name, a in arrays.items()}

  return grain.MapDataset.range(start_step, steps, steps_per_chunk).map(
      gather).to_iter_dataset(grain.ReadOptions(
          num_threads=num_threads, prefetch_buffer_size=buffer_size))


def device_batches(chunks: grain.IterDataset, mesh=None, *,
                   buffer_size: int = 2) -> Iterator[dict]:
  """The chunks on the device, `buffer_size` placed ahead on a thread.

  Without a mesh, on the default device; with one, as global arrays split
  along the rows axis over `data` (each process gave its own rows).
  """
  if mesh is None:
    place = jax.device_put
  else:
    sharding = NamedSharding(mesh, P(None, "data"))

    def place(chunk):
      return {name: jax.make_array_from_process_local_data(
          sharding, a, (a.shape[0], a.shape[1] * jax.process_count()) +
          a.shape[2:]) for name, a in chunk.items()}
  return iter(grain.experimental.ThreadPrefetchIterDataset(
      chunks.map(place), prefetch_buffer_size=buffer_size))


def epoch_batches(arrays: Mapping[str, np.ndarray], indices, mesh=None, *,
                  steps_per_chunk: int = 1, start_step: int = 0,
                  process_index: Optional[int] = None,
                  process_count: Optional[int] = None) -> Iterator[dict]:
  """One epoch's device chunks: `host_dataset` then `device_batches`.

  The process defaults to this one under a mesh, else the only one.
  """
  if process_index is None:
    process_index = jax.process_index() if mesh is not None else 0
  if process_count is None:
    process_count = jax.process_count() if mesh is not None else 1
  return device_batches(
      host_dataset(arrays, indices, steps_per_chunk=steps_per_chunk,
                   start_step=start_step, process_index=process_index,
                   process_count=process_count), mesh)


def epoch(step, indices, arrays: Mapping[str, np.ndarray],
          loop: training.EpochLoop = training.EpochLoop.AUTO, mesh=None):
  """`epoch(state, key, *, start=0, stop=None, progress=None, **constants)
  -> (state, losses_S)` streaming `arrays`.

  As `training.epoch(step, indices, loop)` with the per-example host
  `arrays` (`images` and the others the step reads) given here and the
  arrays every step reads whole (`constants`, on the device) at the call.
  SCAN runs chunks of about `CHUNK_BYTES` as one `lax.scan` each, STEPS one
  jitted step a chunk; AUTO decides at the first call (`resolve_loop`).
  Steps `start` to `stop` read from step `start` on: the epoch's indices
  and its step are the whole position of the stream, so resuming inside an
  epoch needs nothing else. `progress(steps done in the epoch)`
  (`logs.Progress`) follows each chunk.
  """
  if "images" not in arrays:
    raise ValueError(f"pipeline.epoch needs arrays['images'], got "
                     f"{sorted(arrays)}")
  num_examples = len(arrays["images"])
  epoch_indices = jax.jit(indices, static_argnums=1)
  built = []

  def run(state, key, *, start=0, stop=None, progress=None, **constants):
    if not built:
      shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                            {**arrays, **constants})
      resolved = training.resolve_loop(loop, step, indices, state, key,
                                       shapes)
      index_shape = jax.eval_shape(functools.partial(
          indices, num_examples=num_examples), key).shape[1:]
      steps_per_chunk = 1 if resolved is training.EpochLoop.STEPS else (
          chunk_steps(arrays, math.prod(index_shape)))
      built.append((training.streamed_epoch(step, index_shape, resolved),
                    steps_per_chunk))
    streamed, steps_per_chunk = built[0]
    indices_S = np.asarray(epoch_indices(key, num_examples))
    indices_S = indices_S[training.epoch_slice(len(indices_S), start, stop)]
    return streamed(state, epoch_batches(arrays, indices_S, mesh,
                                         steps_per_chunk=steps_per_chunk),
                    progress=progress, start=start, **constants)
  return run
