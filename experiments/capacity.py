"""Serving capacity: the highest rate whose p99 stays under a bound.

For each configuration it starts `serve.py` (local worker processes or Ray
Serve), loads it with the load generator (`jaxcc.serving._loadgen`, the code
behind `loadgen.py`: open-loop Poisson arrivals over keep-alive
connections, MNIST-shaped uint8 inputs) at a rate that grows by `--growth`
until a probe fails, then bisects between the last passing and the first
failing rate. A probe of `--duration_s` passes when every request got a 200
and the p99 is under `--bound_ms` (arrivals are open-loop, so a server that
cannot keep up queues and fails the bound). Each probe also reports its
three slowest answers (ms at the load generator, ms inside the frontend,
source) and, from `GET /stats` before and after it (local backend), the
frontend process's CPU time per query; each configuration, its frontend's
CPU time per second while idle (5 s without queries, after a 2 s warm-up
at `--start_rate` that precedes its probes).

  python experiments/capacity.py --workdir runs/serve-mnist \
      --configs local:none,local:parm,ray:none,ray:parm --out runs/capacity

`--in_process` measures the frontend alone instead: the coding frontend in
this process over in-process instances that answer zeros after 1 ms (no
HTTP, no workers), `--queries` queries at each of `--rates` (default 200),
without a code and with ParM's k = 2 code, coded in NumPy (the summation
code's `maps`, inline) and jitted (its maps dropped) inline and in a
one-thread executor; it reports the process's CPU time per query, the
latency percentiles and the median encode and decode times, in turn,
`--repeats` times. With `--slow_prob 0.05`, 5 % of the instances' answers
take 20 ms instead of 1 ms, so that some groups decode.

`--max_batch 8` starts `serve.py` with that `--max_batch` (default 1): its
pools then batch queued queries into calls of up to 8 rows. `--batch_slo_ms
5` also passes `--batch_slo_ms 5`: each instance's row cap then follows
Clipper's AIMD against a 5 ms service time. On the local backend each probe
reports the base pool's queries per call (from `/stats`) and its instances'
row caps at the end.

`--rates 100,200` measures those rates only (no search), e.g. to compare
coding inline and in a thread (`--configs local:parm:inline,local:parm:
thread`); `--repeats 3` runs the configurations that many times, in turn,
each on a fresh server. Prints a markdown table and writes
`OUT/capacity.json`. Paths are relative to the repository root (run it
from there).
"""

import argparse
import asyncio
import concurrent.futures
import io
import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np

import jaxcc
from jaxcc import serving
from jaxcc.serving import _bench
from jaxcc.serving import _http
from jaxcc.serving import _loadgen

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bodies(n=64, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    buffer = io.BytesIO()
    np.save(buffer, rng.integers(0, 256, (28, 28, 1)).astype(np.uint8))
    out.append(buffer.getvalue())
  return out


def _get(url, path):
  with urllib.request.urlopen(url + path, timeout=10) as answer:
    return json.loads(answer.read())


class Server:
  """`serve.py` in a subprocess, stopped on exit."""

  def __init__(self, backend, mode, coding, args, port):
    self.url = f"http://127.0.0.1:{port}"
    config = f"configs/serving.py:workdirs.2={args.workdir}"
    if args.code:
      config += f",{args.code}"
    command = [sys.executable, "serve.py", f"--config={config}",
               f"--backend={backend}", f"--mode={mode}", f"--port={port}",
               f"--coding={coding if coding == 'inline' else 'thread'}",
               f"--max_batch={args.max_batch}",
               f"--batch_slo_ms={args.batch_slo_ms}"]
    self._process = subprocess.Popen(command, cwd=_ROOT,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
    for _ in range(600):
      if self._process.poll() is not None:
        raise RuntimeError(f"{' '.join(command)} exited with "
                           f"{self._process.returncode}")
      try:
        if _get(self.url, "/healthz").get("ok"):
          return
      except OSError:
        pass
      time.sleep(1.0)
    raise RuntimeError("serve.py did not become healthy in 600 s")

  def stats(self):
    return _get(self.url, "/stats")

  def close(self):
    self._process.terminate()
    try:
      self._process.wait(60)
    except subprocess.TimeoutExpired:
      self._process.kill()
      self._process.wait()


def _idle_cpu(server, seconds=5.0):
  """The frontend process's CPU ms per second without queries (or None)."""
  before = server.stats()
  time.sleep(seconds)
  after = server.stats()
  if "cpu_s" not in after:
    return None
  return 1e3 * (after["cpu_s"] - before["cpu_s"]) / seconds


def probe(server, rate, args, bodies):
  """One open-loop run at `rate`; its summary, pass/fail and CPU/query."""
  before = server.stats()
  result = asyncio.run(_loadgen.run(
      server.url, bodies, rate=rate,
      num_requests=max(1, round(rate * args.duration_s)),
      connections=args.connections, timeout_s=args.timeout_s, seed=0,
      content_type=_http.NPY))
  after = server.stats()
  s = _loadgen.summary(result)
  s["offered_per_s"] = rate
  # The slowest answers: at the load generator, inside the frontend, source.
  ms = np.nan_to_num(1e3 * result.latencies_s, nan=-1.0)
  s["slowest"] = [(round(float(ms[i]), 1),
                   round(result.answers[i]["latency_ms"], 1),
                   result.answers[i]["source"])
                  for i in np.argsort(-ms)[:3] if ms[i] >= 0]
  s["passed"] = bool(s["errors"] == 0
                     and s.get("p99_ms", np.inf) <= args.bound_ms)
  if "cpu_s" in after:
    answered = sum(after[k] - before[k]
                   for k in ("original", "reconstruction", "default"))
    s["cpu_us_per_query"] = 1e6 * (after["cpu_s"] - before["cpu_s"]) / max(
        answered, 1)
    s["encode_us"], s["decode_us"] = after["encode_us"], after["decode_us"]
  if "base" in after:  # The local backend's base pool.
    calls = after["base"]["calls"] - before["base"]["calls"]
    s["queries_per_call"] = (after["base"]["started"]
                             - before["base"]["started"]) / max(calls, 1)
    s["row_caps"] = after["base"]["row_caps"]
  s["load_average"] = os.getloadavg()[0]
  print(json.dumps({k: s.get(k) for k in (
      "offered_per_s", "passed", "answered_per_s", "errors", "p50_ms",
      "p99_ms", "cpu_us_per_query", "encode_us", "decode_us",
      "queries_per_call", "row_caps", "load_average", "slowest")}),
        flush=True)
  return s


def search(server, args, bodies):
  """Probes up to the first failure, then bisects; every probe's summary."""
  probes, rate, good, bad = [], args.start_rate, None, None
  while bad is None and len(probes) < 12:
    probes.append(probe(server, rate, args, bodies))
    if probes[-1]["passed"]:
      good, rate = rate, rate * args.growth
    else:
      bad = rate
  for _ in range(args.bisections if good and bad else 0):
    rate = round((good + bad) / 2)
    probes.append(probe(server, rate, args, bodies))
    if probes[-1]["passed"]:
      good = rate
    else:
      bad = rate
  return good, probes


class _Zeros:
  """An in-process instance answering zeros after `service_s`, or with
  probability `slow_prob` after `slow_s`."""
  alive = True

  def __init__(self, slow_prob=0.0, seed=0, service_s=1e-3, slow_s=0.02,
               num_outputs=10):
    self._service_s, self._num_outputs = service_s, num_outputs
    self._slow_prob, self._slow_s = slow_prob, slow_s
    self._rng = np.random.default_rng(seed)

  def call(self, x_B, delay_s):
    del delay_s
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    slow = self._slow_prob and self._rng.random() < self._slow_prob
    loop.call_later(self._slow_s if slow else self._service_s,
                    future.set_result,
                    np.zeros((len(x_B), self._num_outputs), np.float32))
    return future


async def _frontend_alone(code, executor, rate, num_queries, slow_prob=0.0,
                          seed=0):
  """CPU us per query, p50 and p99 ms, median encode and decode us of a
  frontend over 2 + 1 in-process instances at Poisson `rate`."""
  base = serving.SharedQueuePool([_Zeros(slow_prob, 1), _Zeros(slow_prob, 2)])
  parities = [serving.SharedQueuePool([_Zeros(slow_prob, 3)])] if code else []
  frontend = serving.Frontend(base, np.zeros(10), code=code,
                              parity_pools=parities, group_timeout_s=0.02,
                              executor=executor)
  await frontend.start((28, 28, 1))
  x = np.zeros((1, 28, 28, 1), np.float32)
  tic = time.process_time()
  predictions = await _bench.poisson_load(frontend.predict,
                                          [x] * num_queries, rate, seed)
  cpu_us = 1e6 * (time.process_time() - tic) / num_queries
  ms = 1e3 * np.array([p.latency_s for p in predictions])
  return {"cpu_us_per_query": cpu_us, "p50_ms": float(np.median(ms)),
          "p99_ms": float(np.percentile(ms, 99)),
          "encode_us": _median(frontend.encode_us),
          "decode_us": _median(frontend.decode_us),
          "decodes": len(frontend.decode_us)}


def _median(values):
  return float(np.median(values)) if values else None


def in_process(args):
  """The frontend's own cost: no code; coded in NumPy; jitted, inline and
  in a thread."""
  code = jaxcc.codes.summation(2)
  jitted = code._replace(maps=None)
  isolated = {name: _bench.coding_cost_us(c, (28, 28, 1), 10)
              for name, c in (("numpy", code), ("jit", jitted))}
  print(json.dumps({"isolated_us": isolated}), flush=True)
  rows = []
  with concurrent.futures.ThreadPoolExecutor(1, "coding") as thread:
    for _ in range(args.repeats):
      for rate in [float(r) for r in (args.rates or "200").split(",")]:
        for coding, c, executor in (("-", None, None),
                                    ("numpy", code, None),
                                    ("jit inline", jitted, None),
                                    ("jit thread", jitted, thread)):
          row = asyncio.run(_frontend_alone(c, executor, rate, args.queries,
                                            args.slow_prob))
          row.update(mode="parm" if c else "none", coding=coding, rate=rate,
                     load_average=os.getloadavg()[0])
          print(json.dumps(row), flush=True)
          rows.append(row)
  with open(os.path.join(args.out, "in_process.json"), "w") as f:
    json.dump({"args": vars(args), "isolated_us": isolated, "rows": rows}, f,
              indent=1)
  lines = ["| redundancy | coding | rate /s | frontend CPU us/query | p50 ms | "
           "p99 ms | encode us | decode us (decodes) | load average |",
           "|" + " --- |" * 9]
  for r in rows:
    encode = "-" if r["encode_us"] is None else f"{r['encode_us']:.0f}"
    decode = ("-" if r["decode_us"] is None else
              f"{r['decode_us']:.0f} ({r['decodes']})")
    lines.append(f"| {r['mode']} | {r['coding']} | {r['rate']:g} | "
                 f"{r['cpu_us_per_query']:.0f} | {r['p50_ms']:.2f} | "
                 f"{r['p99_ms']:.1f} | {encode} | {decode} | "
                 f"{r['load_average']:.1f} |")
  print("\n".join(lines))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", default="runs/serve-mnist")
  parser.add_argument("--configs", default="local:none,local:parm",
                      help="backend:mode[:coding] (mode: none | parm; "
                      "coding: thread (default) | inline)")
  parser.add_argument("--code", default="", help="config overrides of the "
                      "code, e.g. code=berrut,berrut.systematic=false")
  parser.add_argument("--bound_ms", type=float, default=50.0)
  parser.add_argument("--duration_s", type=float, default=10.0)
  parser.add_argument("--start_rate", type=float, default=50.0)
  parser.add_argument("--growth", type=float, default=1.5)
  parser.add_argument("--bisections", type=int, default=3)
  parser.add_argument("--rates", default="", help="fixed rates, no search")
  parser.add_argument("--connections", type=int, default=64)
  parser.add_argument("--max_batch", type=int, default=1,
                      help="serve.py --max_batch: workers compile buckets "
                      "up to it and the pool batches queued queries into "
                      "calls of up to that many rows (1: no batching)")
  parser.add_argument("--batch_slo_ms", type=float, default=0.0,
                      help="serve.py --batch_slo_ms: each instance's row "
                      "cap follows AIMD against this service time, up to "
                      "--max_batch (0: off)")
  parser.add_argument("--timeout_s", type=float, default=10.0)
  parser.add_argument("--port", type=int, default=8140)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--in_process", action="store_true")
  parser.add_argument("--queries", type=int, default=2000)
  parser.add_argument("--slow_prob", type=float, default=0.0,
                      help="--in_process: the fraction of answers that take "
                      "20 ms instead of 1 ms (so that groups decode)")
  parser.add_argument("--out", default="runs/capacity")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  if args.in_process:
    in_process(args)
    return
  bodies = _bodies()
  rows = []
  pairs = args.configs.split(",") * args.repeats
  for i, pair in enumerate(pairs):
    backend, mode, coding = (pair + ":thread").split(":")[:3]
    if mode == "none":
      coding = "-"
    elif backend == "ray":
      coding = "inline"  # The Ray ingress codes on its own event loop.
    server = Server(backend, mode, coding, args, args.port + i)
    try:
      asyncio.run(_loadgen.run(server.url, bodies, rate=args.start_rate,
                               num_requests=round(2 * args.start_rate),
                               connections=args.connections))  # Warm-up.
      idle_ms_per_s = _idle_cpu(server)
      if args.rates:
        probes = [probe(server, float(r), args, bodies)
                  for r in args.rates.split(",")]
        capacity = max([p["offered_per_s"] for p in probes if p["passed"]],
                       default=None)
      else:
        capacity, probes = search(server, args, bodies)
    finally:
      server.close()
    rows.append({"backend": backend, "mode": mode, "coding": coding,
                 "code": args.code, "capacity_qps": capacity,
                 "idle_cpu_ms_per_s": idle_ms_per_s,
                 "probes": probes})
    with open(os.path.join(args.out, "capacity.json"), "w") as f:
      json.dump({"args": vars(args), "rows": rows}, f, indent=1)
  print(probes_table(rows) if args.rates else table(rows, args.bound_ms))


def probes_table(rows):
  """Every probe: latency, frontend CPU and coding time."""
  lines = ["| backend | redundancy | coding | offered /s | answered /s | "
           "p50 ms | p99 ms | frontend CPU us/query | encode / decode us | "
           "base queries/call (row caps) | load average |",
           "|" + " --- |" * 11]
  for row in rows:
    for p in row["probes"]:
      coding = ("-" if p.get("encode_us") is None else
                f"{p['encode_us']:.0f} / {p['decode_us'] or 0:.0f}")
      cpu = p.get("cpu_us_per_query")
      per_call = ("-" if p.get("queries_per_call") is None else
                  f"{p['queries_per_call']:.2f} {p['row_caps']}")
      lines.append(
          f"| {row['backend']} | {row['mode']} | {row['coding']} | "
          f"{p['offered_per_s']:g} | {p['answered_per_s']:.1f} | "
          f"{p['p50_ms']:.2f} | {p['p99_ms']:.1f} | "
          f"{'-' if cpu is None else f'{cpu:.0f}'} | {coding} | "
          f"{per_call} | {p['load_average']:.1f} |")
  return "\n".join(lines)


def table(rows, bound_ms):
  """The capacity of every configuration, at its highest passing rate."""
  lines = [f"| backend | redundancy | coding | highest rate with p99 <= "
           f"{bound_ms:g} ms | p50 / p99 ms there | frontend CPU us/query "
           "there | frontend CPU idle ms/s | load average |",
           "|" + " --- |" * 8]
  for row in rows:
    best = [p for p in row["probes"] if p["passed"]
            and p["offered_per_s"] == row["capacity_qps"]]
    if not best:
      lines.append(f"| {row['backend']} | {row['mode']} | {row['coding']} "
                   f"| below "
                   f"{min(p['offered_per_s'] for p in row['probes']):g}/s "
                   f"| - | - | {_ms(row['idle_cpu_ms_per_s'])} | - |")
      continue
    p = best[-1]
    cpu = p.get("cpu_us_per_query")
    lines.append(
        f"| {row['backend']} | {row['mode']} | {row['coding']} | "
        f"{row['capacity_qps']:g}/s | "
        f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} | "
        f"{'-' if cpu is None else f'{cpu:.0f}'} | "
        f"{_ms(row['idle_cpu_ms_per_s'])} | {p['load_average']:.1f} |")
  return "\n".join(lines)


def _ms(value):
  return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
  main()
