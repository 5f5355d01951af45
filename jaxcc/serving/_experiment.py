"""The tail-latency experiment of `serve_bench.py` (paper §V-F).

`run(config, outdir)` serves the same queries in every mode of the config
(`_bench.MODES`) for every k, on the local backend (worker processes running
the trained F and F_P, both in each worker for "adaptive"; the instances'
service times are first measured under the same load, without faults, into
`outdir/service_times.json`) or simulated in virtual time with service times
drawn from such a file. It writes `outdir/results.json` and
`outdir/latency_cdf.png`; `table(rows)` is the markdown summary.
"""

import asyncio
import json
import os

import numpy as np

from jaxcc import codes
from jaxcc import logs
from jaxcc.serving import _bench
from jaxcc.serving import _faults
from jaxcc.serving import _frontend
from jaxcc.serving import _local
from jaxcc.serving import _pool
from jaxcc.serving import _served
from jaxcc.serving import _simulator


def run(config, outdir: str) -> dict:
  """Runs the experiment of `config` (configs/serving.py); returns and
  writes the results."""
  os.makedirs(outdir, exist_ok=True)
  plan = _plan(config.modes.split("+"), [int(k) for k in config.ks.split("+")])
  if config.backend == "local":
    rows = asyncio.run(_run_local(config, plan, outdir))
  elif config.backend == "sim":
    rows = _run_sim(config, plan)
  else:
    raise ValueError(f"unknown backend {config.backend!r}: local or sim")
  _plot_cdf(rows, os.path.join(outdir, "latency_cdf.png"))
  for row in rows:
    del row["latencies_ms"]
  results = {"config": config.to_dict(), "runs": rows}
  if config.backend == "local":
    results["coding_cost_us"] = _coding_costs(config, plan)
    logs.info(f"coding cost (us): {json.dumps(results['coding_cost_us'])}")
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  return results


def code(config, k: int):
  """The config's training-free code for groups of k (`code=berrut`), or
  None for the workdirs' own parity models."""
  if not config.code:
    return None
  if config.code != "berrut":
    raise ValueError(f"serving code must be '' (the workdir's parity "
                     f"models) or 'berrut', got {config.code!r}")
  if config.r != 1:
    raise ValueError(f"the serving backends deploy r = 1 parity pool, got "
                     f"r={config.r}")
  return codes.berrut(k, config.r, systematic=config.berrut.systematic)


def served_system(config, k: int):
  """`(served, dataset)` of `config.workdirs[k]` under the config's code."""
  return _served.from_workdir(config.workdirs[str(k)], code(config, k))


def _plan(modes, ks):
  """`(mode, k)` pairs: "none" once, every other mode for every k."""
  plan = [("none", ks[0])] if "none" in modes else []
  return plan + [(m, k) for k in ks for m in modes if m != "none"]


def _options(config, mode, k, seed, hedge_after_s):
  seconds = lambda ms: ms / 1e3 if ms > 0 else None
  return dict(rate=config.rate, k=k, num_base=config.num_base,
              faults=_faults.Faults(**config.faults), seed=seed,
              group_timeout_s=seconds(config.group_timeout_ms),
              deadline_s=seconds(config.deadline_ms),
              hedge_after_s=hedge_after_s, adaptive=adaptive_options(config))


def adaptive_options(config) -> dict:
  """The "adaptive" mode's `Adaptive` options from the config."""
  return dict(code_below=config.code_below, hedge_below=config.hedge_below,
              hedge_quantile=config.hedge_quantile)


async def _run_local(config, plan, outdir):
  systems = {k: served_system(config, k) for k in sorted({k for _, k in plan})}
  served, dataset = systems[plan[0][1]]
  test = dataset.test
  index = np.arange(config.num_queries) % len(test.label)
  queries = [served.preprocess(test.image[i:i + 1]) for i in index]
  labels = test.label[index]
  service_s = await _calibrate(config, served,
                               queries[:config.calibration_queries])
  with open(os.path.join(outdir, "service_times.json"), "w") as f:
    json.dump(service_s, f)
  hedge_after_s = float(np.quantile(service_s, config.hedge_quantile))
  faults = _faults.Faults(**config.faults)

  async def make_pool(factory, num_instances, intervals, seed):
    return await _local.LocalPool.create(
        factory, queries[0], num_instances, faults=faults,
        intervals=intervals, seed=seed,
        rpc_timeout_s=config.rpc_timeout_ms / 1e3)

  rows = []
  for mode, k in plan:
    for run in range(config.runs):
      result = await _bench.run_mode(
          mode, systems[k][0], make_pool, queries,
          **_options(config, mode, k, config.seed + run, hedge_after_s))
      rows.append(_row(mode, k, run, config, result, labels))
      logs.info(json.dumps({key: rows[-1][key] for key in
                            ("mode", "k", "latency_ms", "counts")}))
  return rows


async def _calibrate(config, served, queries):
  """Service times of the instances under the run's load, without faults.

  Measured by the pool from dispatch to reply (worker compute, IPC and the
  frontend's event loop), so the simulator sees what the frontend sees.
  """
  pool = await _local.LocalPool.create(served.base, queries[0],
                                        config.num_base)

  async def call(x_B):
    return await pool.submit(x_B)

  try:
    await _bench.poisson_load(call, queries, config.rate, config.seed)
  finally:
    await pool.close()
  return pool.service_s


def sim_pool_maker(config, service_s):
  """`make_pool` of simulated instances drawing from `service_s`."""

  async def make_pool(factory, num_instances, intervals, seed):
    del factory  # Simulated instances stand in for the models.
    rng = np.random.default_rng([seed, 3])
    return _pool.SharedQueuePool(
        [_simulator.SimInstance(service_s, rng)
         for _ in range(num_instances)],
        injector=_faults.Injector(_faults.Faults(**config.faults), intervals,
                                  seed),
        rpc_timeout_s=config.rpc_timeout_ms / 1e3)

  return make_pool


def _run_sim(config, plan):
  if not config.service_times:
    raise ValueError("backend=sim needs service_times=PATH, a "
                     "service_times.json written by a local run")
  with open(config.service_times) as f:
    service_s = json.load(f)
  hedge_after_s = float(np.quantile(service_s, config.hedge_quantile))
  queries = [np.zeros((1, 1), np.float32)] * config.num_queries
  make_pool = sim_pool_maker(config, service_s)
  rows = []
  for mode, k in plan:
    served = sim_served(config, k)
    for run in range(config.runs):
      result = _simulator.simulate(_bench.run_mode(
          mode, served, make_pool, queries,
          **_options(config, mode, k, config.seed + run, hedge_after_s)))
      rows.append(_row(mode, k, run, config, result, None))
      logs.info(json.dumps({key: rows[-1][key] for key in
                            ("mode", "k", "latency_ms", "counts")}))
  return rows


def sim_served(config, k: int):
  """The stand-in system the simulator serves (its instances compute
  nothing), under the config's code."""
  served = _served.linear(np.zeros((1, 1)), k, (1,))
  coded = code(config, k)
  return served if coded is None else _served.with_code(served, coded)


def _coding_costs(config, plan):
  """Isolated encode and decode cost per group of each k served."""
  costs = {}
  for k in sorted({k for mode, k in plan if mode in _bench.CODED}):
    served, _ = served_system(config, k)
    costs[k] = _bench.coding_cost_us(served.code, served.input_shape,
                                     served.num_outputs)
  return costs


def _row(mode, k, run, config, result, labels):
  row = {"mode": mode, "k": k, "run": run,
         "instances": _bench.instance_counts(mode, k, config.num_base),
         "latency_ms": _bench.latency_summary(result.predictions),
         "counts": result.counts, "sent": result.sent,
         "started": result.started, "decisions": result.decisions,
         "latencies_ms": [1e3 * p.latency_s for p in result.predictions]}
  if labels is not None:
    correct = np.array([p.output[0].argmax() == y
                        for p, y in zip(result.predictions, labels)])
    sources = np.array([p.source for p in result.predictions])
    row["accuracy"] = {"served": float(correct.mean()), **{
        s: float(correct[sources == s].mean()) for s in _frontend.SOURCES
        if (sources == s).any()}}
    row["encode_us"] = _median(result.encode_us)
    row["decode_us"] = _median(result.decode_us)
  return row


def _median(values):
  return float(np.median(values)) if values else None


def table(rows):
  """Medians over runs of each (mode, k), as a markdown table."""
  lines = ["| mode | k | base + redundant | p50 ms | p99 ms | p99.5 ms | "
           "p99.9 ms | original / reconstructed / default / failed | "
           "served accuracy | encode / decode us |", "|" + " --- |" * 10]
  for mode, k in dict.fromkeys((r["mode"], r["k"]) for r in rows):
    runs = [r for r in rows if (r["mode"], r["k"]) == (mode, k)]
    lat = {q: np.median([r["latency_ms"][q] for r in runs])
           for q in runs[0]["latency_ms"]}
    counts = " / ".join(str(int(np.median([r["counts"][s] for r in runs])))
                        for s in _frontend.SOURCES + ("failure",))
    acc = (f"{100 * np.median([r['accuracy']['served'] for r in runs]):.2f}%"
           if "accuracy" in runs[0] else "-")
    coding = "-"
    if runs[0].get("encode_us") is not None:
      decode = runs[0]["decode_us"]
      coding = (f"{runs[0]['encode_us']:.0f} / "
                f"{'-' if decode is None else f'{decode:.0f}'}")
    base, extra = runs[0]["instances"]
    lines.append(
        f"| {mode} | {k if mode != 'none' else '-'} | {base} + {extra} | "
        f"{lat['p50']:.2f} | {lat['p99']:.2f} | {lat['p99.5']:.2f} | "
        f"{lat['p99.9']:.2f} | {counts} | {acc} | {coding} |")
  return "\n".join(lines)


def _plot_cdf(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, tail) = plt.subplots(1, 2, figsize=(10, 4))
  for row in rows:
    if row["run"]:
      continue
    ms = np.sort(row["latencies_ms"])
    cdf = np.arange(1, len(ms) + 1) / len(ms)
    label = row["mode"] + (f" k={row['k']}" if row["mode"] != "none" else "")
    ax.plot(ms, cdf, label=label)
    tail.loglog(ms, 1 - cdf + 1 / len(ms), label=label)
  ax.set_xscale("log")
  ax.set(xlabel="latency (ms)", ylabel="CDF")
  tail.set(xlabel="latency (ms)", ylabel="1 - CDF (tail)")
  for a in (ax, tail):
    a.grid(True, which="both", alpha=0.3)
  tail.axhline(1e-3, color="gray", ls=":", lw=1)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
