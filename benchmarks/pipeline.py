"""Streaming against in-memory input: stage-2 epochs side by side, one run.

  python benchmarks/pipeline.py [--dataset npz:../shared/data/mnist] \
      [--model mlp] [--generated 120000] [--max_device_bytes 67108864] \
      [--repeats 5] [--out pipeline.md]

Rows: (1) the parity-model stage (summation code, k = 2, 64 groups a step)
on `--dataset`, an epoch through `training.epoch` over device-resident
arrays and through `pipeline.epoch` over host arrays, alternating; (2) the
same on `--generated` random images of the dataset's shape, written to a
temporary .npy file and memory-mapped, larger than `--max_device_bytes` (so
`input_pipeline=auto` streams it; the in-memory epoch is timed beside it
where the host can hold it, for reference). Prints a Markdown table: median
epoch seconds, groups/s, examples/s (groups x k) and stream / memory, and
the loader alone: the stream path's chunks placed on the device, no step.
`--out` also writes the printed lines to a file (`benchmarks/gpu.sh`).
"""

import os
import sys
import tempfile

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import parity as parity_config
from jaxcc import experiment
from jaxcc import models
from jaxcc import pipeline
from jaxcc import timing
from jaxcc import training

_DATASET = flags.DEFINE_string("dataset", "npz:../shared/data/mnist",
                               "Dataset of the first row (a config name).")
_MODEL = flags.DEFINE_string("model", "mlp", "Base and parity model.")
_GENERATED = flags.DEFINE_integer("generated", 120_000, "Examples in the "
                                  "generated dataset (0: no second row).")
_MAX_DEVICE_BYTES = flags.DEFINE_integer(
    "max_device_bytes", 64 * 2**20, "The device budget the generated "
    "dataset exceeds.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed epochs per path.")
_OUT = flags.DEFINE_string("out", "", "Also write the output to this file.")


def _row(exp, images, targets, repeats):
  """Median epoch timings of both paths over `images` and `targets`."""
  config = exp.config
  opt = training.optimizer(1e-3, 1e-5)
  step = exp.approach.step(
      model=exp.model, code=exp.code, opt=opt,
      normalize=training.normalizer(exp.dataset.mean, exp.dataset.std),
      mesh=None)
  indices = training.group_indices(config.k, config.parity.batch_size)
  loop = training.EpochLoop(config.epoch_loop)
  init = lambda: exp.approach.init(  # pylint: disable=g-long-lambda
      jax.random.PRNGKey(0), model=exp.model, code=exp.code, opt=opt,
      input_shape=exp.dataset.input_shape, base_state=None)
  arrays = {"images": images, "targets": targets}
  paths = {"stream": pipeline.epoch(step, indices, arrays, loop)}
  memory = training.epoch(step, indices, loop)
  device_arrays = jax.device_put({name: np.asarray(a)
                                  for name, a in arrays.items()})
  paths["memory"] = lambda state, key: memory(state, key, **device_arrays)
  states, epochs = {name: init() for name in paths}, [0]
  resolved = training.resolve_loop(
      loop, step, indices, states["stream"], jax.random.PRNGKey(0),
      jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), arrays))
  rows = config.k * config.parity.batch_size
  steps_per_chunk = 1 if resolved is training.EpochLoop.STEPS else (
      pipeline.chunk_steps(arrays, rows))

  def timed(name):
    def run():
      epochs[0] += 1
      states[name], losses = paths[name](states[name],
                                         jax.random.PRNGKey(epochs[0]))
      return losses
    return run

  def loader():  # the stream path's chunks on the device, no step
    for chunk in pipeline.epoch_batches(
        arrays, indices(jax.random.PRNGKey(0), len(images)),
        steps_per_chunk=steps_per_chunk):
      pass
    return chunk
  timings = timing.time_alternating(
      {"loader only": loader, **{n: timed(n) for n in paths}}, repeats)
  steps = len(images) // (config.k * config.parity.batch_size)
  groups = steps * config.parity.batch_size
  return {name: {"seconds": t.median_s, "groups_per_sec": groups / t.median_s,
                 "examples_per_sec": groups * config.k / t.median_s}
          for name, t in timings.items()}


def _table(rows):
  lines = ["| data | examples | MiB | path | epoch s | groups/s | "
           "examples/s | stream / memory |", "|---" * 8 + "|"]
  for (data, n, mib), result in rows:
    ratio = result["memory"]["seconds"] / result["stream"]["seconds"]
    for name in ("memory", "stream", "loader only"):
      r = result[name]
      lines.append(
          f"| {data} | {n:,} | {mib:,.0f} | {name} | {r['seconds']:.3f} | "
          f"{r['groups_per_sec']:,.0f} | {r['examples_per_sec']:,.0f} | "
          + (f"{ratio:.2f} |" if name == "stream" else " |"))
  return "\n".join(lines)


def main(argv):
  del argv
  lines = []

  def say(text):
    print(text, flush=True)
    lines.append(text)
    if _OUT.value:
      with open(_OUT.value, "w") as f:
        f.write("\n\n".join(lines) + "\n")
  config = parity_config.get_config(f"dataset={_DATASET.value},"
                                    f"model={_MODEL.value}")
  exp = experiment.setup(config, tempfile.gettempdir())
  train = exp.dataset.train
  base_vars = exp.model.init(jax.random.PRNGKey(1))
  outputs_NC = models.predict(exp.model, base_vars, train.image,
                              exp.dataset.mean, exp.dataset.std)
  machine = timing.machine()
  say(f"{machine['device']} x{machine['devices']}, {machine['cpus']} "
      f"CPUs, load average at start {machine['loadavg_start']}, "
      f"{machine['utc']}")
  mib = (train.image.nbytes + outputs_NC.nbytes) / 2**20
  rows = [((config.dataset, len(train.image), mib),
           _row(exp, train.image, outputs_NC, _REPEATS.value))]
  say(_table(rows))
  if _GENERATED.value:
    n = _GENERATED.value
    with tempfile.TemporaryDirectory() as tmp:
      rng = np.random.default_rng(0)
      path = os.path.join(tmp, "images.npy")
      image = np.lib.format.open_memmap(path, "w+", train.image.dtype,
                                        (n,) + train.image.shape[1:])
      for start in range(0, n, 10_000):
        image[start:start + 10_000] = rng.integers(
            0, 256, image[start:start + 10_000].shape, dtype=np.uint8)
      image.flush()
      image = np.load(path, mmap_mode="r")
      targets = rng.normal(size=(n, outputs_NC.shape[1])).astype(np.float32)
      size = image.nbytes + targets.nbytes
      if size <= _MAX_DEVICE_BYTES.value:
        raise ValueError(f"the generated data ({size:,} bytes) must exceed "
                         f"--max_device_bytes={_MAX_DEVICE_BYTES.value:,}")
      rows.append((("generated, memory-mapped", n, size / 2**20),
                   _row(exp, image, targets, _REPEATS.value)))
    say(_table(rows[1:]))
  say(f"load average at end {list(os.getloadavg())}")


if __name__ == "__main__":
  app.run(main)
