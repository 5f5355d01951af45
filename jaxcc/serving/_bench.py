"""The tail-latency experiment (paper §V-F) on any backend.

Modes, for m base-model instances and coding parameter k:

- "none": m instances of F, no redundancy;
- "equal-resources": m + m/k instances of F on the shared queue;
- "hedged": the same m + m/k instances; a query still unanswered after
  `hedge_after_s` is sent again (Dean and Barroso), the first answer wins;
- "parm": m instances of F and m/k of the parity model, coding groups of k
  (with a training-free code such as Berrut, the m/k instances run F; with
  a non-systematic one, every query of a group reaches F only encoded);
- "parm-hedged": ParM's instances; every query coded and hedged (first of
  original, copy and reconstruction wins);
- "adaptive": m + m/k instances that each hold F and the parity model, on
  one shared queue (a request names its model, `ModelRequest`); `Adaptive`
  decides per query whether to code it and whether to hedge it from the
  pool's estimated utilisation.

Queries arrive as a Poisson process; a latency is measured from when the
frontend receives a query to when it answers, as in the paper.
"""

import asyncio
import time
from typing import Callable, NamedTuple, Optional

import numpy as np

from jaxcc.serving import _adaptive
from jaxcc.serving import _coding
from jaxcc.serving import _faults
from jaxcc.serving import _frontend

MODES = ("none", "equal-resources", "hedged", "parm", "parm-hedged",
         "adaptive")
CODED = ("parm", "parm-hedged", "adaptive")
HEDGED = ("hedged", "parm-hedged")
SHARED = ("adaptive",)  # One pool of instances serving F and F_P.
PERCENTILES = (50.0, 99.0, 99.5, 99.9)


class ModelRequest:
  """A request for model `model` of instances that hold several models
  (the `SHARED` modes), in place of the bare input `x_B`, which is a
  request for model 0. A pool queues it as it queues `x_B` (`np.shape` and
  `len` see `x_B`'s); an instance's `call` gets it whole.
  """
  __slots__ = ("x_B", "model")

  def __init__(self, x_B, model: int):
    self.x_B, self.model = x_B, model

  @property
  def shape(self) -> tuple:
    return np.shape(self.x_B)

  def __len__(self) -> int:
    return len(self.x_B)


class ModelView:
  """One model of a pool whose instances hold several: what the frontend
  submits to it becomes a `ModelRequest` for that model."""

  def __init__(self, pool, model: int):
    self._pool, self._model = pool, model

  def submit(self, x_B) -> asyncio.Future:
    return self._pool.submit(ModelRequest(x_B, self._model))


class Run(NamedTuple):
  """What one mode served."""
  predictions: list  # one `Prediction` per query, in arrival order
  counts: dict  # originals, reconstructions, defaults, failures
  encode_us: list  # per coding group
  decode_us: list  # per decoded group
  sent: dict  # requests the frontend sent: base, hedge, parity
  started: int  # requests the instances began, all pools
  decisions: dict  # "adaptive": queries per choice ("code+hedge", ...)


def instance_counts(mode: str, k: int, num_base: int) -> tuple:
  """`(base instances, parity instances)` of a mode."""
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
  if num_base % k:
    raise ValueError(f"num_base={num_base} must be a multiple of k={k} so "
                     "that the redundant instances number num_base / k")
  extra = num_base // k
  return {"none": (num_base, 0), "equal-resources": (num_base + extra, 0),
          "hedged": (num_base + extra, 0), "parm": (num_base, extra),
          "parm-hedged": (num_base, extra),
          "adaptive": (num_base + extra, 0)}[mode]


class System(NamedTuple):
  """A frontend over its pools of instances, faults scheduled."""
  frontend: _frontend.Frontend
  pools: list  # the base pool, then the parity pools

  async def close(self) -> None:
    await asyncio.gather(*(pool.close() for pool in self.pools))


async def build_system(served, make_pool: Callable, *, mode: str, k: int,
                       num_base: int, faults: _faults.Faults, seed: int,
                       horizon_s: float, input_shape,
                       group_timeout_s: Optional[float] = None,
                       deadline_s: Optional[float] = None,
                       hedge_after_s: Optional[float] = None,
                       adaptive: Optional[dict] = None,
                       max_batch: int = 1, executor=None) -> System:
  """Starts the pools and frontend of one mode; faults begin now.

  `serve.py` and the latency experiment both serve through this builder.

  Args:
    mode: one of `MODES`.
    served: a `Served` system; for the `CODED` modes its code must have
      this k.
    make_pool: `async (factory, num_instances, intervals, seed) -> pool`;
      for the `SHARED` modes the factory is a tuple of the distinct models'
      factories, F's first: every instance holds them all, and requests
      name theirs (`ModelRequest`; `LocalPool.create` takes such a tuple,
      simulated instances ignore it).
    k: coding parameter (sets the redundant instances in every mode).
    num_base: m, the base-model instances of "none" and "parm".
    faults: slowdowns (and more) to inject into every instance.
    seed: seed of the faults.
    horizon_s: how long the fault schedule runs.
    input_shape: the shape of one example.
    group_timeout_s: frontend group timeout ("parm").
    deadline_s: frontend deadline, after which the default is served.
    hedge_after_s: delay of the second copy (`HEDGED` modes; "adaptive"'s
      until it has observed the service times).
    adaptive: options of "adaptive"'s `Adaptive` (code_below, hedge_below,
      ...).
    max_batch: the largest query batch (its buckets compile at start).
    executor: where the frontend encodes and decodes (None: inline).
  """
  if mode in CODED and served.code.k != k:
    raise ValueError(f"{mode} with k={k} needs parity models for k={k}, got "
                     f"a code with k={served.code.k}")
  num_base_pool, num_parity = instance_counts(mode, k, num_base)
  intervals = _faults.schedule(faults, num_base_pool + num_parity, horizon_s,
                               seed)
  shared = mode in SHARED
  models = tuple(dict.fromkeys((served.base,) + served.parities))
  makes = [make_pool(models if shared else served.base, num_base_pool,
                     intervals[:num_base_pool], seed)]
  if num_parity:
    makes.append(make_pool(served.parities[0], num_parity,
                           intervals[num_base_pool:], seed + 1))
  pools = list(await asyncio.gather(*makes))
  parity_pools = ([ModelView(pools[0], models.index(parity))
                   for parity in served.parities] if shared else pools[1:])
  policy = None
  if mode == "adaptive":
    if hedge_after_s is None:
      raise ValueError("adaptive needs an initial hedge_after_s")
    policy = _adaptive.Adaptive(pools[0], hedge_after_s=hedge_after_s,
                                redundancy=served.code.r / k,
                                **(adaptive or {}))
  frontend = _frontend.Frontend(
      pools[0], served.default_output,
      code=served.code if parity_pools else None, parity_pools=parity_pools,
      group_timeout_s=group_timeout_s, deadline_s=deadline_s,
      hedge_after_s=hedge_after_s if mode in HEDGED else None, policy=policy,
      executor=executor)
  system = System(frontend, pools)
  try:
    await frontend.start(tuple(input_shape), max_batch)
  except BaseException:
    await system.close()
    raise
  began = asyncio.get_running_loop().time()
  for pool in pools:
    pool.begin_faults(began, horizon_s)
  return system


async def run_mode(mode: str, served, make_pool: Callable, queries, *,
                   rate: float, seed: int, **options) -> Run:
  """Serves `queries` (one `(B, ...)` batch each) at Poisson `rate` in one
  mode; `options` as `build_system`'s (k, num_base, faults, timeouts)."""
  horizon_s = 2.0 * len(queries) / rate + 60.0
  system = await build_system(served, make_pool, mode=mode, seed=seed,
                              horizon_s=horizon_s,
                              input_shape=np.shape(queries[0])[1:], **options)
  try:
    predictions = await poisson_load(system.frontend.predict, queries, rate,
                                     seed)
  finally:
    await system.close()
  frontend = system.frontend
  return Run(predictions, dict(frontend.counts), frontend.encode_us,
             frontend.decode_us, dict(frontend.sent),
             sum(pool.started for pool in system.pools),
             dict(frontend.policy.decisions) if frontend.policy else {})


async def poisson_load(predict, queries, rate: float, seed: int) -> list:
  """Sends each query at Poisson times; the answers in arrival order."""
  loop = asyncio.get_running_loop()
  arrivals = np.cumsum(np.random.default_rng(seed).exponential(
      1.0 / rate, len(queries)))
  start, tasks = loop.time(), []
  for arrival, x in zip(arrivals, queries):
    await asyncio.sleep(max(0.0, start + arrival - loop.time()))
    tasks.append(asyncio.create_task(predict(x)))
  return await asyncio.gather(*tasks)


def latency_summary(predictions) -> dict:
  """Median, p99, p99.5, p99.9 and mean latency in milliseconds."""
  ms = 1e3 * np.array([p.latency_s for p in predictions])
  summary = {f"p{q:g}": float(np.percentile(ms, q)) for q in PERCENTILES}
  summary["mean"] = float(ms.mean())
  return summary


def coding_cost_us(code, input_shape, num_outputs: int,
                   repeats: int = 1000) -> dict:
  """Median encode and decode time of one group of single examples (us).

  Measured in isolation, warm, as the frontend calls them (`_coding`:
  NumPy for a linear code, else jitted with results copied back to NumPy).
  """
  rng = np.random.default_rng(0)
  x_BK = rng.random((1, code.k) + tuple(input_shape), np.float32)
  y_BN = rng.random((1, code.k + code.r, num_outputs), np.float32)
  available_N = np.arange(code.k + code.r) != 0
  coder = _coding.coder(code, {})
  calls = {"encode_us": lambda: coder.encode(x_BK),
           "decode_us": lambda: coder.decode(y_BN, available_N)}
  cost = {}
  for name, call in calls.items():
    call()
    times = []
    for _ in range(repeats):
      tic = time.perf_counter()
      call()
      times.append(time.perf_counter() - tic)
    cost[name] = 1e6 * float(np.median(times))
  return cost
