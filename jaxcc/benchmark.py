"""Throughput of base-model inference, training steps and codes.

`run(config)` measures, for every base model and k in the config:

- `inference`: F applied (jitted) to a batch of uint8 images, normalisation
  included; images/s.
- `parity_step`: one step of the parity-model approach (summation code,
  r = 1) in `training.epoch`, as stage 2 of `train.py` runs it; groups/s, a
  group being k data images and its parity.
- `learned_step`: one step of the learned-code approach (r = 1, every erasure
  pattern, one row per encoder) in `training.epoch`; groups/s.
- `patterns`: `training.learned_step` over all k patterns against over a
  single pattern, each in `training.epoch`, and their ratio; their calls
  alternate, so a change in machine load hits both alike.
- `encode` and `decode`: each code on its own (decode: one erasure pattern,
  passed as data); groups/s.

The training rows run the epoch the way `train.py` does: `config.epoch_loop`
("auto": `training.resolve_loop`, so on the CPU a loop of jitted steps for
a step with a convolution, else one `lax.scan`); each row records the loop it
used. An epoch has exactly `steps` steps; its time divided by `steps` is the
step time. FLOPs per step are XLA's cost analysis of the jitted single step.
Timing rules are `jaxcc.timing`'s; the data is synthetic and device-resident.

Shape names: B groups (or images) in a batch, K data inputs per group,
N = K + R outputs per group, C outputs of F, P erasure patterns.
"""

import functools
import json
import math
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import approaches
from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import experiment
from jaxcc import logs
from jaxcc import models
from jaxcc import tasks
from jaxcc import timing
from jaxcc import training

ROWS = ("inference", "parity", "learned", "patterns", "codes")
# Code rows: name -> (experiment.make_code name, r, learned encoder).
CODES = {"summation": ("summation", 1, "mlp"), "linear": ("linear", 2, "mlp"),
         "concatenation": ("concatenation", 1, "mlp"),
         "berrut": ("berrut", 1, "mlp"), "learned-mlp": ("learned", 1, "mlp"),
         "learned-conv": ("learned", 1, "conv")}
# Bytes one Adam step must move per parameter at the least: the gradient read,
# the parameter and both moments read and written, float32.
ADAM_BYTES_PER_PARAM = 7 * 4


def epoch_loop(config) -> training.EpochLoop:
  """The config's `epoch_loop` as a `training.EpochLoop`."""
  loops = [loop.value for loop in training.EpochLoop]
  if config.epoch_loop not in loops:
    raise ValueError(f"epoch_loop must be one of {loops}, got "
                     f"{config.epoch_loop!r}")
  return training.EpochLoop(config.epoch_loop)


def synthetic_dataset(num_examples: int, image_shape, num_classes: int,
                      seed: int = 0) -> data.Dataset:
  """Random uint8 images and labels; every split is the same one."""
  rng = np.random.default_rng(seed)
  split = data.Split(
      rng.integers(0, 256, (num_examples, *image_shape), dtype=np.uint8),
      rng.integers(0, num_classes, num_examples, dtype=np.int32))
  pixels = split.image.reshape(-1, image_shape[-1]) / 255.0
  return data.Dataset("synthetic", split, split, split, num_classes,
                      pixels.mean(0).astype(np.float32),
                      pixels.std(0).astype(np.float32))


def base_model(config, model_name) -> models.Model:
  """F for the config's synthetic examples (one object per model and shape,
  so every row reuses its compiled initialisation)."""
  return _base_model(model_name, _ints(config.image_shape), config.num_classes,
                     bool(config.train.mixed_precision))


def base_variables(model: models.Model):
  """F's initial variables (the same in every row)."""
  return jax.jit(model.init)(_init_key(0))


def inference_row(config, model_name) -> dict:
  """F on one device-resident batch of `inference_batch` images."""
  model = base_model(config, model_name)
  ds = synthetic_dataset(config.inference_batch, _ints(config.image_shape),
                         config.num_classes)
  normalize = training.normalizer(ds.mean, ds.std)
  model_vars = base_variables(model)
  images = jax.device_put(ds.train.image)
  apply = jax.jit(lambda v, x: model.apply(v, normalize(x)))
  compiled = apply.lower(model_vars, images).compile()
  measured = timing.time_calls(lambda: compiled(model_vars, images),
                               config.repeats, config.min_seconds)
  return _row("inference", model_name, "-", None, None, config.inference_batch,
              "images/s", measured, timing.flops(compiled))


def parity_row(config, model_name, k) -> dict:
  """One step of the parity-model approach (summation code, r = 1)."""
  stage = _stage2(config, model_name, approaches.parity_models(),
                  experiment.make_code("summation", k, 1))
  measured, loop, step_cost = _time_training(
      config, stage, stage.approach.step(**stage.parts))
  return _row("parity_step", model_name, stage.code.name, k, 1, config.batch,
              "groups/s", measured, _flops(step_cost), steps=config.steps,
              loop=loop.value)


def learned_row(config, model_name, k, encoder) -> dict:
  """One step of the learned-code approach over every erasure pattern."""
  stage = _learned_stage2(config, model_name, k, encoder)
  measured, loop, step_cost = _time_training(
      config, stage, stage.approach.step(**stage.parts))
  row = _row("learned_step", model_name, stage.code.name, k, 1, config.batch,
             "groups/s", measured, _flops(step_cost), steps=config.steps,
             loop=loop.value)
  params = sum(a.size for a in jax.tree.leaves(stage.state.params))
  row.update(params=params, adam_bytes=ADAM_BYTES_PER_PARAM * params,
             xla_bytes=float(step_cost.get("bytes accessed", math.nan)))
  return row


def patterns_row(config, model_name, k, encoder) -> dict:
  """`training.learned_step` over all k patterns against over one pattern."""
  stage = _learned_stage2(config, model_name, k, encoder)
  all_PN = erasures.patterns(k, 1)
  model, opt, normalize = (stage.parts[name]
                           for name in ("model", "opt", "normalize"))
  steps = {name: training.learned_step(stage.code, model, opt,
                                       config.train.learned.loss, patterns_PN,
                                       normalize)
           for name, patterns_PN in (("all", all_PN), ("single", all_PN[:1]))}
  loop = _resolve_loop(config, stage, steps["all"])
  calls = {name: _chained(training.epoch(step, stage.indices, loop), stage)
           for name, step in steps.items()}
  step_flops = {name: _flops(_step_cost(step, stage))
                for name, step in steps.items()}
  seconds = {name: measured.scaled(1 / config.steps)._asdict()
             for name, measured in timing.time_alternating(
                 calls, config.repeats).items()}
  return {"kind": "patterns", "model": model_name, "code": stage.code.name,
          "k": k, "patterns": len(all_PN), "batch": config.batch,
          "steps": config.steps, "loop": loop.value, "all": seconds["all"],
          "single": seconds["single"],
          "ratio": seconds["all"]["median_s"] / seconds["single"]["median_s"],
          "flops_all": step_flops["all"], "flops_single": step_flops["single"],
          "flops_ratio": step_flops["all"] / step_flops["single"]}


def code_rows(config, k, code_name) -> list:
  """Encode and decode (one pattern) of `code_batch` groups by one code."""
  name, r, encoder = CODES[code_name]
  code = experiment.make_code(name, k, r, encoder=encoder)
  image_shape = _ints(config.image_shape)
  x_BK = _normal((config.code_batch, k, *image_shape))
  y_BNC = _normal((config.code_batch, k + code.r, config.num_classes))
  params = code.init(_init_key(0), image_shape, (config.num_classes,))
  available_N = jnp.asarray(erasures.patterns(k, code.r)[0])
  rows = []
  for kind, fn, args in (("encode", code.encode, (params, x_BK)),
                         ("decode", code.decode, (params, y_BNC,
                                                  available_N))):
    compiled = jax.jit(fn).lower(*args).compile()
    measured = timing.time_calls(functools.partial(compiled, *args),
                                 config.repeats, config.min_seconds)
    rows.append(_row(kind, "-", code.name, k, code.r, config.code_batch,
                     "groups/s", measured, timing.flops(compiled)))
  return rows


def run(config, on_row: Callable[[dict], None] | None = None) -> dict:
  """Runs every benchmark the config asks for; returns the results dict.

  Progress goes to `jaxcc.logs`. `on_row(results)` is called after each row
  with the results so far (so a run stopped part-way can still leave its
  rows behind).
  """
  wanted, ks = _names(config.rows), [int(k) for k in _names(config.ks)]
  unknown = (set(wanted) - set(ROWS)) | (set(_names(config.codes)) -
                                         set(CODES))
  if unknown:
    raise ValueError(f"unknown rows or codes {sorted(unknown)}; rows: "
                     f"{list(ROWS)}, codes: {list(CODES)}")
  epoch_loop(config)
  results = {"machine": timing.machine(), "config": _plain(config)}
  logs.info(f"machine: {results['machine']}")
  results["peak"] = timing.peak_matmul(config.peak_size, config.repeats,
                                       config.min_seconds)
  logs.info(f"peak: {results['peak']['flops_per_sec'] / 1e9:,.1f} GFLOP/s")
  results["bandwidth"] = timing.bandwidth(config.bandwidth_mib, config.repeats,
                                          config.min_seconds)
  logs.info(f"bandwidth: {results['bandwidth']['bytes_per_sec'] / 1e9:,.1f} "
            "GB/s")
  jobs = []
  for model_name in _names(config.models):
    if "inference" in wanted:
      jobs.append(functools.partial(inference_row, config, model_name))
    for k in ks:
      if "parity" in wanted:
        jobs.append(functools.partial(parity_row, config, model_name, k))
      for encoder in _names(config.encoders):
        for kind, fn in (("learned", learned_row), ("patterns", patterns_row)):
          if kind in wanted:
            jobs.append(functools.partial(fn, config, model_name, k, encoder))
  if "codes" in wanted:
    jobs += [functools.partial(code_rows, config, k, name) for k in ks
             for name in _names(config.codes)]
  results.update(rows=[], patterns=[])
  for job in jobs:
    result = job()
    for row in result if isinstance(result, list) else [result]:
      _add_fractions(row, results)
      results["patterns" if row["kind"] == "patterns" else "rows"].append(row)
      results["machine"]["loadavg_end"] = list(os.getloadavg())
      logs.info(format_row(row))
      if on_row is not None:
        on_row(results)
  return results


def write(results: dict, out_dir: str, name: str = "benchmark") -> str:
  """Writes `<name>.json` and `<name>.md` under `out_dir`; returns the table."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(results, f, indent=1)
  table = markdown(results)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(table)
  return table


def markdown(results: dict) -> str:
  """The results as markdown tables."""
  m, peak, bw = results["machine"], results["peak"], results["bandwidth"]
  lines = [
      f"Machine: {m['backend']} ({m['device']}, {m['cpus']} CPUs), jax "
      f"{m['jax']}, {m['utc']}; load average {_load(m['loadavg_start'])} at "
      f"the start, {_load(m.get('loadavg_end'))} at the end.",
      f"Peak (fastest repeat): {peak['size']}x{peak['size']} float32 matmul "
      f"{peak['flops_per_sec'] / 1e9:,.1f} GFLOP/s. Bandwidth (fastest "
      f"repeat): axpy over {bw['mib']} MiB arrays "
      f"{bw['bytes_per_sec'] / 1e9:,.1f} GB/s."]
  if results["rows"]:
    lines += _head("row", "model", "code", "k", "batch", "loop", "unit",
                   "median", "min-max", "ms/call", "GFLOP/call", "GFLOP/s",
                   "% peak")
  for row in results["rows"]:
    lines.append(
        f"| {row['kind']} | {row['model']} | {row['code']} | {row['k'] or '-'}"
        f" | {row['batch']} | {row.get('loop', '-')} | {row['unit']} | "
        f"{_rate(row['throughput'])} | "
        f"{_rate(row['throughput_min'])}-{_rate(row['throughput_max'])} | "
        f"{1e3 * row['timing']['median_s']:,.3f} | "
        f"{row['flops'] / 1e9:,.4f} | {row['flops_per_sec'] / 1e9:,.2f} | "
        f"{100 * row['fraction_of_peak']:.1f} |")
  if results["patterns"]:
    lines += _head("model", "code", "k", "patterns", "batch", "loop",
                   "ms/step all (min-max)", "ms/step single (min-max)",
                   "all / single", "FLOPs all / single")
    for p in results["patterns"]:
      lines.append(
          f"| {p['model']} | {p['code']} | {p['k']} | {p['patterns']} | "
          f"{p['batch']} | {p['loop']} | {_ms_range(p['all'])} | "
          f"{_ms_range(p['single'])} | {p['ratio']:.2f} | "
          f"{p['flops_ratio']:.3f} |")
  learned = [r for r in results["rows"] if "adam_bytes" in r]
  if learned:
    lines += _head("model", "code", "k", "loop", "params", "ms/step",
                   "Adam MB/step", "Adam GB/s", "% bandwidth", "XLA MB/step",
                   "XLA GB/s", "% bandwidth")
    for r in learned:
      lines.append(
          f"| {r['model']} | {r['code']} | {r['k']} | {r['loop']} | "
          f"{r['params']:,} | {1e3 * r['timing']['median_s']:,.2f} | "
          f"{r['adam_bytes'] / 1e6:,.1f}"
          f" | {r['adam_bytes_per_sec'] / 1e9:,.2f} | "
          f"{100 * r['adam_fraction_of_bandwidth']:.1f} | "
          f"{r['xla_bytes'] / 1e6:,.1f} | {r['xla_bytes_per_sec'] / 1e9:,.2f}"
          f" | {100 * r['xla_fraction_of_bandwidth']:.1f} |")
  return "\n".join(lines) + "\n"


def format_row(row: dict) -> str:
  """One measured row as a log line."""
  if row["kind"] == "patterns":
    return (f"patterns {row['model']} {row['code']} k={row['k']} "
            f"loop={row['loop']}: all {1e3 * row['all']['median_s']:.2f} "
            f"ms/step, single {1e3 * row['single']['median_s']:.2f} ms/step, "
            f"ratio {row['ratio']:.2f} (FLOPs {row['flops_ratio']:.3f})")
  loop = f" loop={row['loop']}" if "loop" in row else ""
  return (f"{row['kind']} {row['model']} {row['code']} k={row['k'] or '-'} "
          f"batch={row['batch']}{loop}: {_rate(row['throughput'])} "
          f"{row['unit']} ({1e3 * row['timing']['median_s']:.3f} ms/call, "
          f"{100 * row['fraction_of_peak']:.1f}% of peak)")


# Training rows: the pieces stage 2 of train.py builds, on synthetic data.


class _Stage2(NamedTuple):
  """One stage-2 setup: its approach, code, step arguments, state, arrays."""
  approach: approaches.Approach
  code: codes.Code
  parts: dict  # the step builder's keyword arguments
  state: training.TrainState
  arrays: dict  # the epoch's arrays, `images` included, on the device
  indices: Callable


def _stage2(config, model_name, approach, code) -> _Stage2:
  """`approach` on synthetic data of exactly `steps` batches of groups."""
  model = base_model(config, model_name)
  ds = synthetic_dataset(config.steps * config.batch * code.k,
                         _ints(config.image_shape), config.num_classes)
  cfg = config.train.parity
  opt = training.optimizer(cfg.learning_rate, cfg.weight_decay)
  parts = {"model": model, "code": code, "opt": opt,
           "normalize": training.normalizer(ds.mean, ds.std), "mesh": None}
  state = approach.init(_init_key(1), model=model, code=code, opt=opt,
                        input_shape=ds.input_shape, base_state=None)
  arrays = approach.arrays(
      task=tasks.for_dataset(ds), split=ds.train,
      outputs_NC=_normal((ds.train.label.shape[0], config.num_classes)),
      base_vars=base_variables(model))
  return _Stage2(approach, code, parts, state,
                 jax.device_put({"images": ds.train.image, **arrays}),
                 training.group_indices(code.k, config.batch))


def _learned_stage2(config, model_name, k, encoder) -> _Stage2:
  return _stage2(config, model_name,
                 approaches.learned_code(config.train.learned.loss,
                                         erasures.patterns(k, 1)),
                 experiment.make_code("learned", k, 1, encoder=encoder))


def _resolve_loop(config, stage, step) -> training.EpochLoop:
  """`config.epoch_loop`, with AUTO resolved as `training.epoch` does."""
  return training.resolve_loop(epoch_loop(config), step, stage.indices,
                               stage.state, _epoch_key(), stage.arrays)


def _time_training(config, stage, step) -> tuple:
  """`(timing, loop, cost)`: the per-step Timing of `step` in
  `training.epoch`, the loop that ran it, and XLA's cost of one step."""
  loop = _resolve_loop(config, stage, step)
  step_cost = _step_cost(step, stage)
  epoch = training.epoch(step, stage.indices, loop)
  measured = timing.time_calls(_chained(epoch, stage), config.repeats)
  return measured.scaled(1 / config.steps), loop, step_cost


def _step_cost(step, stage) -> dict:
  """XLA's cost analysis of one jitted `step` on the epoch's first batch.

  Jitted as `training.epoch` jits it, so a loop of steps reuses this compile.
  """
  idx = stage.indices(_epoch_key(), stage.arrays["images"].shape[0])[0]
  return timing.cost(jax.jit(step, donate_argnums=0).lower(
      stage.state, idx, **stage.arrays).compile())


def _chained(epoch, stage):
  """A `call()` running one epoch from the state the previous call left.

  As in training; the epoch donates its state, so the first call gets a copy.
  """
  box = [jax.tree.map(jnp.copy, stage.state)]

  def call():
    box[0], loss_S = epoch(box[0], _epoch_key(), **stage.arrays)
    return loss_S
  return call


def _epoch_key() -> jax.Array:
  return jax.random.PRNGKey(0)


def _row(kind, model_name, code_name, k, r, batch, unit, measured, call_flops,
         steps=None, loop=None) -> dict:
  row = {"kind": kind, "model": model_name, "code": code_name, "k": k, "r": r,
         "batch": batch, "unit": unit, "timing": measured._asdict(),
         "throughput": batch / measured.median_s,
         "throughput_min": batch / measured.max_s,
         "throughput_max": batch / measured.min_s,
         "flops": call_flops, "flops_per_sec": call_flops / measured.median_s}
  if steps is not None:
    row.update(steps=steps, loop=loop)
  return row


def _add_fractions(row, results):
  """Adds a row's fractions of the measured peak FLOP/s and bandwidth."""
  if row["kind"] == "patterns":
    return
  row["fraction_of_peak"] = (row["flops_per_sec"] /
                             results["peak"]["flops_per_sec"])
  if "adam_bytes" in row:
    for name in ("adam", "xla"):
      per_sec = row[f"{name}_bytes"] / row["timing"]["median_s"]
      row[f"{name}_bytes_per_sec"] = per_sec
      row[f"{name}_fraction_of_bandwidth"] = (
          per_sec / results["bandwidth"]["bytes_per_sec"])


@functools.lru_cache(maxsize=None)
def _base_model(name, image_shape, num_classes, mixed_precision):
  return models.get(name, image_shape, num_classes,
                    jnp.bfloat16 if mixed_precision else jnp.float32)


def _init_key(seed) -> jax.Array:
  """A key for initial parameters only (the same distributions).

  "unsafe_rbg" compiles several times faster on CPU than the default
  threefry, which the epochs keep for their permutations, as in training.
  """
  return jax.random.key(seed, impl="unsafe_rbg")


def _normal(shape) -> jax.Array:
  """Standard normal float32 values, drawn by numpy (nothing to compile)."""
  rng = np.random.default_rng(0)
  return jax.device_put(rng.standard_normal(shape, dtype=np.float32))


def _flops(analysis: dict) -> float:
  return float(analysis.get("flops", math.nan))


def _names(value) -> list:
  return [v for v in str(value).replace(",", "+").split("+") if v]


def _ints(value) -> tuple:
  return tuple(int(v) for v in _names(value))


def _head(*columns) -> list:
  """A blank line, then a markdown table's header and separator."""
  return ["", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def _rate(per_sec: float) -> str:
  return f"{per_sec:,.0f}" if per_sec >= 100 else f"{per_sec:.3g}"


def _ms_range(t: dict) -> str:
  return (f"{1e3 * t['median_s']:,.2f} ({1e3 * t['min_s']:,.2f}-"
          f"{1e3 * t['max_s']:,.2f})")


def _load(loadavg) -> str:
  return "/".join(f"{v:.1f}" for v in loadavg) if loadavg else "?"


def _plain(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)
