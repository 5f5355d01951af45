"""Serves a trained F and its parity model over HTTP, coded (ParM).

  python train.py --config configs/parity.py --workdir runs/serve-mnist
  python serve.py --demo 200                  # local backend, 200 test digits
  python serve.py --backend ray --demo 200    # the same on Ray Serve
  python serve.py                             # serve until interrupted
  python serve.py --faults                    # ... with the config's faults
  python serve.py --max_batch 8 --batch_slo_ms 5
      # queued queries batched into calls of up to 8 rows, each instance's
      # row cap kept where its calls take at most 5 ms (Clipper's AIMD)
  python serve.py --config \
      configs/serving.py:code=berrut,berrut.systematic=false
      # F under ApproxIFER's Berrut code: k + r instances of F, all decoded

The models come from `workdirs[k]` of the serving config, the timeouts from
its other fields (see configs/serving.py); its faults are injected only with
`--faults`. With `code=berrut` (and `berrut.systematic`) in the config it
serves the workdir's F under a Berrut code instead of its parity models.
Query it with `jaxcc.serving.Client("http://127.0.0.1:8000")
.predict(x)`, where x is a uint8 28x28x1 image (or a batch of them), or load
it with `loadgen.py`. SIGINT or SIGTERM drains: no new connections, queries
in progress are answered, then the workers stop.

The server has no authentication and binds 127.0.0.1 by default. To reach it
from elsewhere, keep it on localhost and put an authenticating TLS proxy
(nginx, Caddy, an SSH tunnel) in front; bind `--host 0.0.0.0` only on a
network you trust.
"""

import asyncio
import collections
import concurrent.futures
import signal
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np

from jaxcc import serving

_CONFIG = config_flags.DEFINE_config_file("config", "configs/serving.py",
                                          "Serving configuration.")
_K = flags.DEFINE_integer("k", 2, "Coding group size (selects the workdir).")
_BACKEND = flags.DEFINE_enum("backend", "local", ["local", "ray"],
                             "Where the model instances run.")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind (default: "
                            "localhost only; no authentication, see the "
                            "module docstring).")
_PORT = flags.DEFINE_integer("port", 8000, "HTTP port.")
_NUM_BASE = flags.DEFINE_integer("num_base", 2, "Base-model instances (a "
                                 "multiple of k); k of them share a parity "
                                 "instance.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 64, "Most examples in one "
                                  "query, and in one call of a model instance "
                                  "(a local worker or a Ray replica: queued "
                                  "queries are batched up to it); every batch "
                                  "bucket up to it is compiled at start.")
_BATCH_SLO_MS = flags.DEFINE_float("batch_slo_ms", 0.0, "If > 0, the service "
                                   "time a call of an instance should stay "
                                   "within: each instance's row cap then "
                                   "follows Clipper's AIMD (+1 row after a "
                                   "full call within it, -10 % after a call "
                                   "over it) up to --max_batch. 0: calls take "
                                   "up to --max_batch rows.")
_MODE = flags.DEFINE_enum("mode", "parm", ["parm", "none"], "parm: coded "
                          "(num_base / k redundant instances); none: no "
                          "redundancy.")
_FAULTS = flags.DEFINE_bool("faults", False, "Inject the config's faults "
                            "(slowdowns, crashes, drops): for demos only.")
_DRAIN_S = flags.DEFINE_float("drain_s", 30.0, "On shutdown, how long "
                              "queries in progress may take to finish.")
_CODING = flags.DEFINE_enum("coding", "thread", ["thread", "inline"],
                            "For codes that are not linear (learned, "
                            "concatenation): encode and decode in a thread, "
                            "off the event loop, or inline on it. Linear "
                            "codes always code inline with NumPy (microseconds).")
_DEMO = flags.DEFINE_integer("demo", 0, "Send this many test digits over "
                             "HTTP, print a summary and exit (0: serve on).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config, k = _CONFIG.value, _K.value
  served, dataset = serving.served_system(config, k)
  if _BACKEND.value == "local":
    asyncio.run(_serve_local(config, served, dataset))
    return
  from jaxcc.serving import ray_backend  # pylint: disable=g-import-not-at-top
  url = ray_backend.run(ray_backend.application(
      served, num_base=_NUM_BASE.value,
      num_parity=_NUM_BASE.value // k if _MODE.value == "parm" else 0,
      group_timeout_s=_seconds(config.group_timeout_ms),
      deadline_s=_seconds(config.deadline_ms), max_batch=_MAX_BATCH.value,
      batch_slo_s=_seconds(_BATCH_SLO_MS.value)),
                        host=_HOST.value, port=_PORT.value)
  try:
    _run_client(url, dataset)
  finally:
    ray_backend.shutdown()


def faults(config, inject: bool) -> serving.Faults:
  """The faults to inject: the config's with `--faults`, else none."""
  return serving.Faults(**config.faults) if inject else serving.Faults()


def _seconds(ms):
  return ms / 1e3 if ms > 0 else None


async def _serve_local(config, served, dataset):
  example = served.preprocess(dataset.test.image[:1])
  injected = faults(config, _FAULTS.value)
  options = dict(faults=injected, max_batch=_MAX_BATCH.value,
                 batch_slo_s=_seconds(_BATCH_SLO_MS.value),
                 rpc_timeout_s=_seconds(config.rpc_timeout_ms))

  async def make_pool(factory, num_instances, intervals, seed):
    return await serving.LocalPool.create(factory, example, num_instances,
                                          intervals=intervals, seed=seed,
                                          **options)

  executor = (concurrent.futures.ThreadPoolExecutor(1, "coding")
              if _CODING.value == "thread" else None)
  system = await serving.build_system(
      served, make_pool, mode=_MODE.value, k=served.code.k,
      num_base=_NUM_BASE.value, faults=injected, seed=config.seed,
      horizon_s=3600.0, input_shape=served.input_shape,
      group_timeout_s=_seconds(config.group_timeout_ms),
      deadline_s=_seconds(config.deadline_ms), max_batch=_MAX_BATCH.value,
      executor=executor)
  frontend, pools = system.frontend, system.pools

  async def predict(x_B):
    return await frontend.predict(served.preprocess(x_B))

  def stats():
    return dict(frontend.counts, base=pools[0].stats(),
                parity=pools[1].stats() if len(pools) > 1 else None,
                http=server.stats(),
                code=served.code.name if _MODE.value == "parm" else None,
                coding=("numpy" if served.code.maps is not None
                        else _CODING.value), cpu_s=time.process_time(),
                encode_us=_median(frontend.encode_us),
                decode_us=_median(frontend.decode_us))

  endpoint = serving.Endpoint(predict, served.input_shape, served.input_dtype,
                              stats, max_batch=_MAX_BATCH.value)
  server = await serving.serve_http(endpoint, _HOST.value, _PORT.value)
  url = f"http://{_HOST.value}:{server.port}"
  stop = asyncio.Event()
  loop = asyncio.get_running_loop()
  for signum in (signal.SIGINT, signal.SIGTERM):
    loop.add_signal_handler(signum, stop.set)
  try:
    if _DEMO.value:
      await asyncio.to_thread(_run_client, url, dataset)
    else:
      print(f"serving on {url} (Ctrl-C to stop)", flush=True)
      await stop.wait()
    await server.shutdown(_DRAIN_S.value)
  finally:
    server.close()
    await system.close()
    if executor is not None:
      executor.shutdown()


def _median(values):
  return float(np.median(values[-10000:])) if values else None


def _run_client(url, dataset):
  """Sends test digits one by one, then prints what came back."""
  if not _DEMO.value:
    print(f"serving on {url} (Ctrl-C to stop)", flush=True)
    while True:
      time.sleep(3600)
  client = serving.Client(url)
  sources, correct, latencies = collections.Counter(), [], []
  for i in range(_DEMO.value):
    j = i % len(dataset.test.label)
    answer = client.predict(dataset.test.image[j])
    sources[answer["source"]] += 1
    correct.append(answer["predictions"][0] == dataset.test.label[j])
    latencies.append(answer["latency_ms"])
  print(f"{_DEMO.value} queries over HTTP at {url}: accuracy "
        f"{100 * np.mean(correct):.1f}%, sources {dict(sources)}, frontend "
        f"latency median {np.median(latencies):.2f} ms, max "
        f"{np.max(latencies):.2f} ms; stats {client.stats()}")
  client.close()


if __name__ == "__main__":
  app.run(main)
