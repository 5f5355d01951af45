"""The utilisation sweep (issue 15): which policy wins at which load.

For every k and every offered load `rho` (a fraction of the base pool's
fault-free capacity, m instances / mean service time), each policy of
`config.modes` serves the same Poisson arrivals, simulated in virtual time
(`_simulator`) with the real frontend and pools. Service times come from
`config.service_times` (a `service_times.json` of a local run) or, without
one, from `synthetic_service_times`. Per run: p50 / p99 / p99.9, the answers'
sources, and the extra load of the policy: requests the frontend sent per
query and requests the instances began per query (a hedged copy withdrawn
while queued is sent but never begun).

Served accuracy: the simulated instances compute nothing, so each policy's
served accuracy is given by where its answers came from, the fractions
answered by the base model ("original"), by decoding ("reconstruction") and
by default; with `config.source_accuracy` ("A_a+A_d+default", offline
accuracies of those three, e.g. from a workdir's eval.json) also the
accuracy they imply, `sum_s fraction_s * accuracy_s`.

`run(config, outdir)` writes `outdir/results.json` and `outdir/sweep.png`
(p99.9 against utilisation, one line per policy, one panel per k);
`table(rows)` is the markdown summary, `pivot(rows)` the p99.9 of every
policy side by side.
"""

import json
import os

import numpy as np

from jaxcc import logs
from jaxcc.serving import _bench
from jaxcc.serving import _experiment
from jaxcc.serving import _faults
from jaxcc.serving import _frontend
from jaxcc.serving import _simulator

# The real local run's service times (docs/SERVING.md): median 1.11 ms.
SYNTHETIC_MEDIAN_S = 1.11e-3
SYNTHETIC_SIGMA = 0.45


def synthetic_service_times(n: int = 10_000, seed: int = 0) -> np.ndarray:
  """Lognormal service times (s) shaped like the local run's.

  Median 1.11 ms as measured; sigma 0.45 puts the p95 at 2.33 ms and the
  p99 at 3.14 ms, between the measured p95 (2.10 ms) and p99 (4.17 ms).
  """
  rng = np.random.default_rng(seed)
  return SYNTHETIC_MEDIAN_S * np.exp(SYNTHETIC_SIGMA * rng.normal(size=n))


def loads(config) -> list:
  """The utilisations of `config.loads` ("+"-separated)."""
  values = [float(v) for v in config.loads.split("+")]
  if not all(0 < v < 1 for v in values):
    raise ValueError(f"loads must lie in (0, 1), got {config.loads!r}")
  return values


def run(config, outdir: str) -> dict:
  """Runs the sweep of `config` (configs/serving.py with `loads` set)."""
  if config.backend != "sim":
    raise ValueError("the utilisation sweep is simulated: backend=sim")
  source_accuracy(config)  # Checked before the first run.
  os.makedirs(outdir, exist_ok=True)
  if config.service_times:
    with open(config.service_times) as f:
      service_s = np.asarray(json.load(f), float)
  else:
    service_s = synthetic_service_times(seed=config.seed)
  capacity = config.num_base / float(np.mean(service_s))
  hedge_after_s = float(np.quantile(service_s, config.hedge_quantile))
  modes = config.modes.split("+")
  ks = [int(k) for k in config.ks.split("+")]
  queries = [np.zeros((1, 1), np.float32)] * config.num_queries
  make_pool = _experiment.sim_pool_maker(config, service_s)
  seconds = lambda ms: ms / 1e3 if ms > 0 else None
  rows = []
  for k in ks:
    served = _experiment.sim_served(config, k)
    for load in loads(config):
      for mode in modes:
        if mode == "none" and k != ks[0]:
          continue  # The same system for every k.
        for r in range(config.runs):
          result = _simulator.simulate(_bench.run_mode(
              mode, served, make_pool, queries, rate=load * capacity,
              seed=config.seed + r, k=k, num_base=config.num_base,
              faults=_faults.Faults(**config.faults),
              group_timeout_s=seconds(config.group_timeout_ms),
              deadline_s=seconds(config.deadline_ms),
              hedge_after_s=hedge_after_s,
              adaptive=_experiment.adaptive_options(config)))
          rows.append(_row(mode, k, load, r, config, result))
          logs.info(json.dumps({key: rows[-1][key] for key in
                                ("mode", "k", "load", "latency_ms",
                                 "requests_per_query")}))
  results = {"config": config.to_dict(), "capacity_qps": capacity,
             "mean_service_ms": 1e3 * float(np.mean(service_s)),
             "hedge_after_ms": 1e3 * hedge_after_s, "runs": rows}
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  _plot(rows, ks, os.path.join(outdir, "sweep.png"))
  return results


def source_accuracy(config):
  """`{source: offline accuracy}` of `config.source_accuracy`, or None."""
  if not config.get("source_accuracy"):
    return None
  values = [float(v) for v in config.source_accuracy.split("+")]
  if len(values) != 3 or not all(0 <= v <= 1 for v in values):
    raise ValueError("source_accuracy must be A_a+A_d+default, three "
                     f"accuracies in [0, 1]; got {config.source_accuracy!r}")
  return dict(zip(_frontend.SOURCES, values))


def implied_accuracy(served, accuracy):
  """`sum_s served[s] * accuracy[s]` over the sources (None without
  accuracies)."""
  if accuracy is None:
    return None
  return sum(served[s] * accuracy[s] for s in _frontend.SOURCES)


def _row(mode, k, load, run, config, result):
  n = len(result.predictions)
  served = {s: result.counts[s] / n for s in _frontend.SOURCES}
  accuracy = source_accuracy(config)
  return {"mode": mode, "k": k, "load": load, "run": run,
          "instances": _bench.instance_counts(mode, k, config.num_base),
          "latency_ms": _bench.latency_summary(result.predictions),
          "counts": result.counts, "served": served,
          "served_accuracy": implied_accuracy(served, accuracy),
          "requests_per_query": {
              "sent": sum(result.sent.values()) / n,
              "hedges": result.sent["hedge"] / n,
              "started": result.started / n},
          "decisions": result.decisions}


def _medians(rows):
  """`{(mode, k, load): row of medians over runs}`."""
  out = {}
  for key in dict.fromkeys((r["mode"], r["k"], r["load"]) for r in rows):
    runs = [r for r in rows if (r["mode"], r["k"], r["load"]) == key]
    out[key] = {
        "latency_ms": {q: float(np.median([r["latency_ms"][q] for r in runs]))
                       for q in runs[0]["latency_ms"]},
        "requests_per_query": {
            q: float(np.median([r["requests_per_query"][q] for r in runs]))
            for q in runs[0]["requests_per_query"]},
        "served": {s: float(np.median([r["served"][s] for r in runs]))
                   for s in _frontend.SOURCES},
        "served_accuracy": (None if runs[0]["served_accuracy"] is None else
                            float(np.median([r["served_accuracy"]
                                             for r in runs]))),
        "policy": ({
            choice: float(np.median([
                sum(v for key, v in r["decisions"].items() if choice in key)
                / sum(r["decisions"].values()) for r in runs]))
            for choice in ("code", "hedge")} if runs[0]["decisions"]
                   else None),
        "instances": runs[0]["instances"]}
  return out


def table(rows) -> str:
  """Medians over runs, as a markdown table; the best p99.9 of each (k,
  load) in bold, and each policy's p99.9 relative to it."""
  medians = _medians(rows)
  lines = ["| k | load | mode | instances | p50 ms | p99 ms | "
           "p99.9 ms | vs best p99.9 | sent / begun per query | "
           "original / reconstructed / default | served accuracy | "
           "coded / hedged by policy |", "|" + " --- |" * 12]
  ks = sorted({k for _, k, _ in medians})
  for k in ks:
    for load in sorted({l for _, kk, l in medians if kk == k}):
      here = {m: v for (m, kk, l), v in medians.items()
              if (kk == k or m == "none") and l == load}
      best = min(v["latency_ms"]["p99.9"] for v in here.values())
      for mode, v in here.items():
        lat, req = v["latency_ms"], v["requests_per_query"]
        p999 = f"{lat['p99.9']:.2f}"
        if lat["p99.9"] == best:
          p999 = f"**{p999}**"
        policy = "-" if v["policy"] is None else (
            f"{100 * v['policy']['code']:.0f}% / "
            f"{100 * v['policy']['hedge']:.0f}%")
        base, extra = v["instances"]
        instances = (f"{base} serving both" if mode in _bench.SHARED else
                     f"{base} + {extra}")
        lines.append(
            f"| {k} | {100 * load:.0f}% | {mode} | {instances} | "
            f"{lat['p50']:.2f} | {lat['p99']:.2f} | {p999} | "
            f"{lat['p99.9'] / best:.2f}x | {req['sent']:.3f} / "
            f"{req['started']:.3f} | {_fractions(v['served'])} | "
            f"{_percent(v['served_accuracy'])} | {policy} |")
  return "\n".join(lines)


def _fractions(served):
  return " / ".join(f"{100 * served[s]:.1f}%" for s in _frontend.SOURCES)


def _percent(value):
  return "-" if value is None else f"{100 * value:.2f}%"


def pivot(rows) -> str:
  """p99.9 (ms) of every mode (columns) at every k and load (rows), and
  "adaptive"'s against the best fixed mode's, as a markdown table."""
  medians = _medians(rows)
  modes = list(dict.fromkeys(m for m, _, _ in medians))
  fixed = [m for m in modes if m != "adaptive"]
  head = "| k | load | " + " | ".join(modes) + " |"
  if "adaptive" in modes and fixed:
    head += " adaptive / best fixed |"
  lines = [head, "|" + " --- |" * (head.count("|") - 1)]
  for k in sorted({k for _, k, _ in medians}):
    for load in sorted({l for _, kk, l in medians if kk == k}):
      p999 = {m: v["latency_ms"]["p99.9"] for (m, kk, l), v in medians.items()
              if (kk == k or m == "none") and l == load}
      cells = [f"{p999[m]:.2f}" if m in p999 else "-" for m in modes]
      line = f"| {k} | {100 * load:.0f}% | " + " | ".join(cells) + " |"
      if "adaptive" in modes and fixed:
        best = min(p999[m] for m in fixed if m in p999)
        line += f" {p999['adaptive'] / best:.2f} |"
      lines.append(line)
  return "\n".join(lines)


def _plot(rows, ks, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  medians = _medians(rows)
  fig, axes = plt.subplots(1, len(ks), figsize=(5 * len(ks), 4),
                           squeeze=False)
  for ax, k in zip(axes[0], ks):
    for mode in dict.fromkeys(m for m, _, _ in medians):
      points = sorted((l, v["latency_ms"]["p99.9"])
                      for (m, kk, l), v in medians.items()
                      if m == mode and (kk == k or m == "none"))
      loads_, p999 = zip(*points)
      ax.plot(100 * np.array(loads_), p999, "o-", label=mode)
    ax.set_yscale("log")
    ax.set(xlabel="offered load (% of the base pool's capacity)",
           ylabel="p99.9 latency (ms)", title=f"k = {k}")
    ax.grid(True, which="both", alpha=0.3)
  axes[0][0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
