"""Throughput of base-model inference, training steps and codes.

`run(config)` measures, for every base model and k in the config:

- `inference`: F applied (jitted) to a batch of uint8 images, normalisation
  included; images/s.
- `parity_step`: one step of the library's `training.parity_epoch` (summation
  code, r = 1); groups/s, a group being k data images and its parity.
- `learned_step`: one step of the library's `training.learned_epoch` over
  every erasure pattern (r = 1, one row per encoder); groups/s.
- `patterns`: the learned-code step over all k patterns against the same step
  over a single pattern (both built as `training.learned_epoch` builds its
  step, with the patterns given), and their ratio; their calls alternate, so
  a change in machine load hits both alike.
- `encode` and `decode`: each code on its own (decode: one erasure pattern,
  passed as data); groups/s.

Timing rules: the data is synthetic and device-resident; every function is
compiled before it is timed; each call runs to completion
(`block_until_ready`); a timing is the median, min and max over `repeats`
repeats. A training row times one epoch of exactly `steps` steps (a
`lax.scan`, as in training) and divides by `steps`. FLOPs per call come from
XLA's cost analysis of the compiled function; for a training step, of the
same epoch compiled for a one-step dataset, because XLA counts the body of a
loop once whatever its trip count. The peak is a large float32 matmul and the
bandwidth an axpy `y <- 2x + y`, both timed in the same run (their fastest
repeat, as ceilings).

Shape names: B groups (or images) in a batch, K data inputs per group,
N = K + R outputs per group, C outputs of F, P erasure patterns.
"""

import datetime
import functools
import json
import math
import os
import statistics
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcc import codes
from jaxcc import data
from jaxcc import erasures
from jaxcc import experiment
from jaxcc import models
from jaxcc import training

ROWS = ("inference", "parity", "learned", "patterns", "codes")
CODES = ("summation", "linear", "concatenation", "berrut", "learned-mlp",
         "learned-conv")
# Bytes one Adam step must move per parameter at the least: the gradient read,
# the parameter and both moments read and written, float32.
ADAM_BYTES_PER_PARAM = 7 * 4
_MAX_CALLS_PER_REPEAT = 1000


class Timing(NamedTuple):
  """Seconds per call: median, min and max over the repeats."""
  median_s: float
  min_s: float
  max_s: float
  calls: int  # calls averaged within each repeat

  def scaled(self, factor: float) -> "Timing":
    return Timing(self.median_s * factor, self.min_s * factor,
                  self.max_s * factor, self.calls)


def time_calls(fn: Callable[[], Any], repeats: int,
               min_seconds: float = 0.0) -> Timing:
  """Seconds per call of `fn()`, each call run to completion.

  One warm-up call comes first. With `min_seconds > 0` each repeat averages
  as many calls as make it last about that long (for fast functions).
  """
  jax.block_until_ready(fn())
  calls = 1
  if min_seconds > 0:
    began = time.perf_counter()
    jax.block_until_ready(fn())
    once = time.perf_counter() - began
    calls = int(min(_MAX_CALLS_PER_REPEAT,
                    max(1, math.ceil(min_seconds / max(once, 1e-9)))))
  samples = []
  for _ in range(repeats):
    began = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(fn())
    samples.append((time.perf_counter() - began) / calls)
  return Timing(statistics.median(samples), min(samples), max(samples), calls)


def time_alternating(fns: dict, repeats: int) -> dict:
  """`time_calls` of several functions whose calls alternate.

  Each repeat times one call of every function, in turn and in the reverse
  order every other repeat, so a change in the machine's load during the
  run affects them alike (for ratios).
  """
  for fn in fns.values():
    jax.block_until_ready(fn())
  samples = {name: [] for name in fns}
  for i in range(repeats):
    for name, fn in list(fns.items())[::(-1)**i]:
      began = time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append(time.perf_counter() - began)
  return {name: Timing(statistics.median(s), min(s), max(s), 1)
          for name, s in samples.items()}


def cost(compiled) -> dict:
  """XLA's cost analysis of a compiled function as one dict (maybe empty)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  return dict(analysis or {})


def flops(compiled) -> float:
  """FLOPs of one call by XLA's cost analysis; nan when it has none."""
  return _flops(cost(compiled))


def peak_matmul(size: int, repeats: int, min_seconds: float) -> dict:
  """FLOP/s of a `size` x `size` float32 matmul (default precision).

  The fastest repeat counts: a ceiling, not a typical speed.
  """
  a, b = _normal((2, size, size))
  compiled = jax.jit(jnp.matmul).lower(a, b).compile()
  timing = time_calls(lambda: compiled(a, b), repeats, min_seconds)
  count = 2.0 * size**3
  return {"size": size, "flops": count, "xla_flops": flops(compiled),
          "timing": timing._asdict(),
          "flops_per_sec": count / timing.min_s}


def bandwidth(mib: int, repeats: int, min_seconds: float) -> dict:
  """Bytes/s of `y <- 2x + y` over float32 arrays of `mib` MiB each.

  It reads x and y and writes y, so it moves 3 x `mib` MiB per call. The
  fastest repeat counts: a ceiling, not a typical speed.
  """
  n = mib * 2**20 // 4
  x = jnp.ones((n,), jnp.float32)
  axpy = jax.jit(lambda x, y: 2.0 * x + y, donate_argnums=1)
  box = [jnp.zeros((n,), jnp.float32)]

  def call():
    box[0] = axpy(x, box[0])
    return box[0]
  timing = time_calls(call, repeats, min_seconds)
  moved = 3.0 * n * 4
  return {"mib": mib, "bytes": moved, "timing": timing._asdict(),
          "bytes_per_sec": moved / timing.min_s}


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
  dtype = jnp.bfloat16 if config.train.mixed_precision else jnp.float32
  return models.get(model_name, _ints(config.image_shape), config.num_classes,
                    dtype)


def make_experiment(config, model_name, code_name, k,
                    encoder="mlp") -> experiment.Experiment:
  """An r = 1 Experiment over synthetic data of `steps` batches of groups."""
  cfg = config.train.copy_and_resolve_references()
  cfg.model, cfg.code, cfg.k, cfg.r = model_name, code_name, k, 1
  cfg.learned.encoder, cfg.parity.init = encoder, "scratch"
  cfg.parity.batch_size = config.batch
  # Timed as one compiled scan per epoch (what accelerators run); on the CPU
  # train.py loops over jitted steps for convolutional models instead.
  cfg.scan_epochs = "true"
  ds = synthetic_dataset(config.steps * config.batch * k,
                         _ints(config.image_shape), config.num_classes)
  approach = "learned" if code_name == "learned" else "parity-model"
  return experiment.Experiment(cfg, ds, base_model(config, model_name),
                               experiment.make_code(cfg), approach,
                               base_dir="", stage2_dir="")


def inference_row(config, model_name) -> dict:
  """F on one device-resident batch of `inference_batch` images."""
  model = base_model(config, model_name)
  ds = synthetic_dataset(config.inference_batch, _ints(config.image_shape),
                         config.num_classes)
  mean, std = ds.mean, ds.std
  model_vars = model.init(_init_key(0))
  images = jax.device_put(ds.train.image)
  apply = jax.jit(lambda v, x: model.apply(v, data.normalize(x, mean, std)))
  compiled = apply.lower(model_vars, images).compile()
  timing = time_calls(lambda: compiled(model_vars, images), config.repeats,
                      config.min_seconds)
  return _row("inference", model_name, "-", None, None, config.inference_batch,
              "images/s", timing, flops(compiled))


def parity_row(config, model_name, k) -> dict:
  """One step of `training.parity_epoch` (summation code, r = 1)."""
  exp = make_experiment(config, model_name, "summation", k)
  state = experiment.init_stage2(exp, _init_key(1), None)
  targets = _normal((exp.dataset.train.label.shape[0], config.num_classes))
  arrays = {"images": jax.device_put(exp.dataset.train.image),
            "targets": targets}
  timing, step_cost = _time_epoch(config, training.parity_epoch(exp), state,
                                  arrays, k)
  return _row("parity_step", model_name, exp.code.name, k, 1, config.batch,
              "groups/s", timing, _flops(step_cost), steps=config.steps)


def learned_row(config, model_name, k, encoder) -> dict:
  """One step of `training.learned_epoch` over every erasure pattern."""
  exp, state, arrays = _learned_setup(config, model_name, k, encoder)
  timing, step_cost = _time_epoch(config, training.learned_epoch(exp), state,
                                  arrays, k)
  row = _row("learned_step", model_name, exp.code.name, k, 1, config.batch,
             "groups/s", timing, _flops(step_cost), steps=config.steps)
  params = sum(a.size for a in jax.tree.leaves(state.params))
  row.update(params=params, adam_bytes=ADAM_BYTES_PER_PARAM * params,
             xla_bytes=float(step_cost.get("bytes accessed", math.nan)))
  return row


def patterns_row(config, model_name, k, encoder) -> dict:
  """The learned-code step over all k patterns against over one pattern."""
  exp, state, arrays = _learned_setup(config, model_name, k, encoder)
  all_PN = erasures.patterns(k, 1)
  calls, step_flops = {}, {}
  for name, patterns_PN in (("all", all_PN), ("single", all_PN[:1])):
    compiled, step_cost = _compile_epoch(
        config, _pattern_epoch(exp, patterns_PN), state, arrays, k)
    calls[name] = _chained(compiled, state, arrays)
    step_flops[name] = _flops(step_cost)
  seconds = {name: timing.scaled(1 / config.steps)._asdict() for name, timing
             in time_alternating(calls, config.repeats).items()}
  return {"kind": "patterns", "model": model_name, "code": exp.code.name,
          "k": k, "patterns": len(all_PN), "batch": config.batch,
          "steps": config.steps, "all": seconds["all"],
          "single": seconds["single"],
          "ratio": seconds["all"]["median_s"] / seconds["single"]["median_s"],
          "flops_all": step_flops["all"], "flops_single": step_flops["single"],
          "flops_ratio": step_flops["all"] / step_flops["single"]}


def code_rows(config, k, code_name) -> list:
  """Encode and decode (one pattern) of `code_batch` groups by one code."""
  code = _make_code(code_name, k)
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
    timing = time_calls(functools.partial(compiled, *args), config.repeats,
                        config.min_seconds)
    rows.append(_row(kind, "-", code.name, k, code.r, config.code_batch,
                     "groups/s", timing, flops(compiled)))
  return rows


def run(config, log: Callable[[str], None] = print,
        on_row: Callable[[dict], None] | None = None) -> dict:
  """Runs every benchmark the config asks for; returns the results dict.

  `on_row(results)` is called after each row with the results so far (so a
  run stopped part-way can still leave its rows behind).
  """
  wanted, ks = _names(config.rows), [int(k) for k in _names(config.ks)]
  unknown = (set(wanted) - set(ROWS)) | (set(_names(config.codes)) -
                                         set(CODES))
  if unknown:
    raise ValueError(f"unknown rows or codes {sorted(unknown)}; rows: {ROWS}, "
                     f"codes: {CODES}")
  results = {"machine": machine(), "config": _plain(config)}
  log(f"machine: {results['machine']}")
  results["peak"] = peak_matmul(config.peak_size, config.repeats,
                                config.min_seconds)
  log(f"peak: {results['peak']['flops_per_sec'] / 1e9:,.1f} GFLOP/s")
  results["bandwidth"] = bandwidth(config.bandwidth_mib, config.repeats,
                                   config.min_seconds)
  log(f"bandwidth: {results['bandwidth']['bytes_per_sec'] / 1e9:,.1f} GB/s")
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
      log(format_row(row))
      if on_row is not None:
        on_row(results)
  return results


def machine() -> dict:
  """What the numbers were measured on, and how busy it was."""
  return {"backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind,
          "devices": jax.device_count(), "cpus": os.cpu_count(),
          "jax": jax.__version__,
          "matmul_precision": str(jax.config.jax_default_matmul_precision),
          "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec="seconds"),
          "loadavg_start": list(os.getloadavg())}


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
    lines += ["", "| row | model | code | k | batch | unit | median | min-max "
              "| ms/call | GFLOP/call | GFLOP/s | % peak |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in results["rows"]:
    lines.append(
        f"| {row['kind']} | {row['model']} | {row['code']} | {row['k'] or '-'}"
        f" | {row['batch']} | {row['unit']} | {_rate(row['throughput'])} | "
        f"{_rate(row['throughput_min'])}-{_rate(row['throughput_max'])} | "
        f"{1e3 * row['timing']['median_s']:,.3f} | "
        f"{row['flops'] / 1e9:,.4f} | {row['flops_per_sec'] / 1e9:,.2f} | "
        f"{100 * row['fraction_of_peak']:.1f} |")
  if results["patterns"]:
    lines += ["", "| model | code | k | patterns | batch | ms/step all "
              "(min-max) | ms/step single (min-max) | all / single | "
              "FLOPs all / single |", "|---|---|---|---|---|---|---|---|---|"]
    for p in results["patterns"]:
      lines.append(
          f"| {p['model']} | {p['code']} | {p['k']} | {p['patterns']} | "
          f"{p['batch']} | {_ms_range(p['all'])} | {_ms_range(p['single'])} | "
          f"{p['ratio']:.2f} | {p['flops_ratio']:.3f} |")
  learned = [r for r in results["rows"] if "adam_bytes" in r]
  if learned:
    lines += ["", "| model | code | k | params | ms/step | Adam MB/step | "
              "Adam GB/s | % bandwidth | XLA MB/step | XLA GB/s | "
              "% bandwidth |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in learned:
      lines.append(
          f"| {r['model']} | {r['code']} | {r['k']} | {r['params']:,} | "
          f"{1e3 * r['timing']['median_s']:,.2f} | {r['adam_bytes'] / 1e6:,.1f}"
          f" | {r['adam_bytes_per_sec'] / 1e9:,.2f} | "
          f"{100 * r['adam_fraction_of_bandwidth']:.1f} | "
          f"{r['xla_bytes'] / 1e6:,.1f} | {r['xla_bytes_per_sec'] / 1e9:,.2f}"
          f" | {100 * r['xla_fraction_of_bandwidth']:.1f} |")
  return "\n".join(lines) + "\n"


def format_row(row: dict) -> str:
  """One measured row as a log line."""
  if row["kind"] == "patterns":
    return (f"patterns {row['model']} {row['code']} k={row['k']}: all "
            f"{1e3 * row['all']['median_s']:.2f} ms/step, single "
            f"{1e3 * row['single']['median_s']:.2f} ms/step, ratio "
            f"{row['ratio']:.2f} (FLOPs {row['flops_ratio']:.3f})")
  return (f"{row['kind']} {row['model']} {row['code']} k={row['k'] or '-'} "
          f"batch={row['batch']}: {_rate(row['throughput'])} {row['unit']} "
          f"({1e3 * row['timing']['median_s']:.3f} ms/call, "
          f"{100 * row['fraction_of_peak']:.1f}% of peak)")


def _learned_setup(config, model_name, k, encoder):
  """A learned-code Experiment, its initial state and the epoch's arrays."""
  exp = make_experiment(config, model_name, "learned", k, encoder)
  base_vars = exp.model.init(_init_key(0))
  state = experiment.init_stage2(exp, _init_key(1), None)
  n = exp.dataset.train.label.shape[0]
  arrays = {"images": jax.device_put(exp.dataset.train.image),
            "outputs": _normal((n, config.num_classes)),
            "labels": jax.device_put(exp.dataset.train.label),
            "base_vars": base_vars}
  return exp, state, arrays


def _pattern_epoch(exp, patterns_PN):
  """`training.learned_epoch` with the erasure patterns given explicitly."""
  cfg = exp.config
  opt = experiment.optimizer(cfg.parity)
  mean, std = exp.dataset.mean, exp.dataset.std
  loss = training.learned_loss(exp.code, exp.model, cfg.learned.loss,
                               patterns_PN)

  @functools.partial(jax.jit, donate_argnums=0)
  def epoch(state, key, images, outputs, labels, base_vars):
    def step(state, idx_BK):
      def loss_fn(params):
        x_BK = data.normalize(images[idx_BK], mean, std)
        return loss(params, base_vars, x_BK, outputs[idx_BK],
                    labels[idx_BK]), {}
      return training._apply_gradients(opt, state, loss_fn)  # pylint: disable=protected-access
    return jax.lax.scan(step, state, data.epoch_groups(
        key, images.shape[0], cfg.k, cfg.parity.batch_size))
  return epoch


def _time_epoch(config, epoch, state, arrays, k):
  """Per-step Timing and XLA cost analysis of an epoch function.

  Each call runs one epoch of `config.steps` steps, its state chained from
  call to call as in training.
  """
  compiled, step_cost = _compile_epoch(config, epoch, state, arrays, k)
  timing = time_calls(_chained(compiled, state, arrays), config.repeats)
  return timing.scaled(1 / config.steps), step_cost


def _compile_epoch(config, epoch, state, arrays, k):
  """The epoch compiled for `arrays`, and XLA's cost analysis of one step.

  The cost is that of the same epoch compiled for a one-step dataset (the
  scan is then that step), since XLA counts a loop body once, whatever its
  trip count.
  """
  key = jax.random.PRNGKey(0)
  compiled = epoch.lower(state, key, **arrays).compile()
  one_step = compiled
  if config.steps != 1:
    one_batch = {name: a if name == "base_vars" else a[:k * config.batch]
                 for name, a in arrays.items()}
    one_step = epoch.lower(state, key, **one_batch).compile()
  return compiled, cost(one_step)


def _chained(epoch, state, arrays):
  """A `call()` running one epoch from the state the previous call left.

  As in training; the epoch donates its state, so the first call gets a copy.
  """
  box = [jax.tree.map(jnp.copy, state)]
  key = jax.random.PRNGKey(0)

  def call():
    box[0], loss_S = epoch(box[0], key, **arrays)
    return loss_S
  return call


def _make_code(name, k):
  if name == "summation":
    return codes.summation(k)
  if name == "linear":
    return codes.linear(k, 2)
  if name == "concatenation":
    return codes.concatenation(k)
  if name == "berrut":
    return codes.berrut(k, 1)
  return codes.learned(k, 1, encoder=name[len("learned-"):])


def _row(kind, model_name, code_name, k, r, batch, unit, timing, call_flops,
         steps=None) -> dict:
  row = {"kind": kind, "model": model_name, "code": code_name, "k": k, "r": r,
         "batch": batch, "unit": unit, "timing": timing._asdict(),
         "throughput": batch / timing.median_s,
         "throughput_min": batch / timing.max_s,
         "throughput_max": batch / timing.min_s,
         "flops": call_flops, "flops_per_sec": call_flops / timing.median_s}
  if steps is not None:
    row["steps"] = steps
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


def _rate(per_sec: float) -> str:
  return f"{per_sec:,.0f}" if per_sec >= 100 else f"{per_sec:.3g}"


def _ms_range(timing: dict) -> str:
  return (f"{1e3 * timing['median_s']:,.2f} ({1e3 * timing['min_s']:,.2f}-"
          f"{1e3 * timing['max_s']:,.2f})")


def _load(loadavg) -> str:
  return "/".join(f"{v:.1f}" for v in loadavg) if loadavg else "?"


def _plain(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


if __name__ == "__main__":
  # `python -m jaxcc.benchmark [key=value ...]`, from the repository root:
  # configs/benchmark.py with those arguments; results in benchmarks/results.
  import sys  # pylint: disable=g-import-not-at-top
  from configs import benchmark as benchmark_config  # pylint: disable=g-import-not-at-top
  _config = benchmark_config.get_config(",".join(sys.argv[1:]))
  _write = functools.partial(write, out_dir="benchmarks/results",
                             name=_config.name)
  print(_write(run(_config, on_row=_write)))
