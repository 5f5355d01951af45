"""Serves a trained F and its parity model over HTTP, coded (ParM).

  python train.py --config configs/parity.py --workdir runs/serve-mnist
  python serve.py --demo 200                  # local backend, 200 test digits
  python serve.py --backend ray --demo 200    # the same on Ray Serve
  python serve.py                             # serve until interrupted

The models come from `workdirs[k]` of the serving config, timeouts and
injected faults from its other fields (see configs/serving.py).
Query it with `jaxcc.serving.Client("http://127.0.0.1:8000").predict(x)`,
where x is a uint8 28x28x1 image (or a batch of them).
"""

import asyncio
import collections
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
_PORT = flags.DEFINE_integer("port", 8000, "HTTP port on 127.0.0.1.")
_NUM_BASE = flags.DEFINE_integer("num_base", 2, "Base-model instances (a "
                                 "multiple of k); k of them share a parity "
                                 "instance.")
_DEMO = flags.DEFINE_integer("demo", 0, "Send this many test digits over "
                             "HTTP, print a summary and exit (0: serve on).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config, k = _CONFIG.value, _K.value
  served, dataset = serving.from_workdir(config.workdirs[str(k)])
  if _BACKEND.value == "local":
    asyncio.run(_serve_local(config, served, dataset))
    return
  from jaxcc.serving import ray_backend  # pylint: disable=g-import-not-at-top
  seconds = lambda ms: ms / 1e3 if ms > 0 else None
  url = ray_backend.run(ray_backend.application(
      served, num_base=_NUM_BASE.value, num_parity=_NUM_BASE.value // k,
      group_timeout_s=seconds(config.group_timeout_ms),
      deadline_s=seconds(config.deadline_ms)), port=_PORT.value)
  try:
    _run_client(url, dataset)
  finally:
    ray_backend.shutdown()


async def _serve_local(config, served, dataset):
  k, num_base = served.code.k, _NUM_BASE.value
  faults = serving.Faults(**config.faults)
  horizon_s = 3600.0
  intervals = serving.schedule(faults, num_base + num_base // k, horizon_s,
                               config.seed)
  example = served.preprocess(dataset.test.image[:1])
  base = await serving.LocalPool.create(
      served.base, example, num_base, faults=faults,
      intervals=intervals[:num_base], seed=config.seed)
  parity = await serving.LocalPool.create(
      served.parities[0], example, num_base // k, faults=faults,
      intervals=intervals[num_base:], seed=config.seed + 1)
  seconds = lambda ms: ms / 1e3 if ms > 0 else None
  frontend = serving.Frontend(
      base, served.default_output, code=served.code, parity_pools=[parity],
      group_timeout_s=seconds(config.group_timeout_ms),
      deadline_s=seconds(config.deadline_ms))
  await frontend.start(served.input_shape)
  for pool in (base, parity):
    pool.begin_faults(asyncio.get_running_loop().time(), horizon_s)

  async def predict(x_B):
    return await frontend.predict(served.preprocess(x_B))

  endpoint = serving.Endpoint(predict, served.input_shape, served.input_dtype,
                              lambda: dict(frontend.counts))
  server = await serving.serve_http(endpoint, port=_PORT.value)
  url = f"http://127.0.0.1:{_PORT.value}"
  try:
    if _DEMO.value:
      await asyncio.to_thread(_run_client, url, dataset)
    else:
      print(f"serving on {url} (Ctrl-C to stop)", flush=True)
      await server.serve_forever()
  finally:
    server.close()
    await base.close()
    await parity.close()


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
