"""Timing device work: per-call seconds, XLA costs and the machine's ceilings.

Every timed call runs to completion (`jax.block_until_ready`) after one
warm-up call (which compiles); a `Timing` is the median, min and max over
repeats. The peak (a large float32 matmul) and the bandwidth (an axpy) report
their fastest repeat, as ceilings.
"""

import datetime
import math
import os
import statistics
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
  return float(cost(compiled).get("flops", math.nan))


def peak_matmul(size: int, repeats: int, min_seconds: float) -> dict:
  """FLOP/s of a `size` x `size` float32 matmul (default precision).

  The fastest repeat counts: a ceiling, not a typical speed.
  """
  rng = np.random.default_rng(0)
  a, b = jax.device_put(rng.standard_normal((2, size, size), np.float32))
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
