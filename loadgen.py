"""Open-loop HTTP load against a serving endpoint (any deployment).

  python serve.py &                       # or serve.py --backend ray
  python loadgen.py --url http://127.0.0.1:8000 --rate 200 --duration_s 10

Sends POST /predict requests at Poisson times (`--rate` per second, for
`--duration_s`) over up to `--connections` keep-alive connections, and prints
the latency percentiles (from each request's scheduled arrival to its full
answer, waits for a connection included), a histogram, the answers' sources
and every error by kind. Inputs: random examples of `--shape` and `--dtype`
(default: MNIST's uint8 28x28x1), or the examples of a `.npy` batch given by
`--inputs`, one per request. `--out` writes the summary as JSON.
"""

import asyncio
import io
import json

from absl import app
from absl import flags
import numpy as np

from jaxcc.serving import _http
from jaxcc.serving import _loadgen

_URL = flags.DEFINE_string("url", "http://127.0.0.1:8000", "The server.")
_RATE = flags.DEFINE_float("rate", 100.0, "Mean requests per second.")
_DURATION_S = flags.DEFINE_float("duration_s", 10.0, "Length of the run.")
_CONNECTIONS = flags.DEFINE_integer("connections", 64,
                                    "Most connections open at once.")
_TIMEOUT_S = flags.DEFINE_float("timeout_s", 10.0, "Per-request timeout.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of arrivals and inputs.")
_INPUTS = flags.DEFINE_string("inputs", None, "A .npy batch (B, *shape): "
                              "example i % B is request i's input.")
_SHAPE = flags.DEFINE_list("shape", ["28", "28", "1"],
                           "Shape of one random example.")
_DTYPE = flags.DEFINE_string("dtype", "uint8", "Dtype of random examples.")
_JSON = flags.DEFINE_bool("json", False, "Send JSON bodies, not .npy.")
_OUT = flags.DEFINE_string("out", None, "Write the summary here (JSON).")


def main(argv):
  del argv
  examples = _examples()
  if _JSON.value:
    bodies = [json.dumps({"inputs": x.tolist()}).encode() for x in examples]
  else:
    bodies = [_npy(x) for x in examples]
  num_requests = max(1, round(_RATE.value * _DURATION_S.value))
  result = asyncio.run(_loadgen.run(
      _URL.value, bodies, rate=_RATE.value, num_requests=num_requests,
      connections=_CONNECTIONS.value, timeout_s=_TIMEOUT_S.value,
      seed=_SEED.value, content_type=_http.JSON if _JSON.value else _http.NPY))
  summary = _loadgen.summary(result)
  summary.update(url=_URL.value, offered_per_s=_RATE.value,
                 connections=_CONNECTIONS.value)
  print(json.dumps(summary, indent=1))
  print("latency histogram (ms, upper bound: requests)")
  for upper_ms, count in _loadgen.histogram(result.latencies_s):
    print(f"  <= {upper_ms:9.3f}: {count:7d} {'#' * min(60, count)}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(summary, f, indent=1)


def _examples():
  if _INPUTS.value:
    return list(np.load(_INPUTS.value, allow_pickle=False))
  rng = np.random.default_rng(_SEED.value)
  shape, dtype = tuple(int(d) for d in _SHAPE.value), np.dtype(_DTYPE.value)
  if dtype.kind in "iu":
    return [rng.integers(0, 256, shape).astype(dtype) for _ in range(64)]
  return [rng.normal(size=shape).astype(dtype) for _ in range(64)]


def _npy(x):
  buffer = io.BytesIO()
  np.save(buffer, x, allow_pickle=False)
  return buffer.getvalue()


if __name__ == "__main__":
  app.run(main)
