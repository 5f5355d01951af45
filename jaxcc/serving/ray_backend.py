"""The Ray Serve backend: the same frontend over a (possibly remote) cluster.

F and each parity model are Ray Serve deployments whose replicas are the
model instances; the coding frontend is the ingress deployment, reached over
HTTP with the same endpoints and checks as the local server (see
`jaxcc.serving.Endpoint`). Ray's router balances requests over replicas; a
failed replica call counts as a failure and is rebuilt or defaulted like a
crashed local instance. Needs `ray[serve]`.

Each replica batches the requests queued at it (Ray Serve's `@serve.batch`),
like the local pool: a batch takes what is queued, up to `max_batch` rows
(a longer request goes alone), and runs as one call padded to its
power-of-two bucket (`_batching`); every bucket up to `max_batch` compiles
before the replica is ready. With `batch_slo_s`, the row cap follows
Clipper's AIMD on the replica's compute time (`_batching.AimdSizer`).

  app = ray_backend.application(served, num_base=2, num_parity=1)
  ray_backend.run(app, port=8000)  # then jaxcc.serving.Client(url)
"""

import asyncio
import os
import time
from typing import Optional

import numpy as np
import ray
from ray import serve
from starlette import requests
from starlette import responses

from jaxcc.serving import _batching
from jaxcc.serving import _frontend
from jaxcc.serving import _http


def _rows(xs_B) -> int:
  """A batch's size for `@serve.batch`: its rows; one request always fits."""
  return sum(len(x_B) for x_B in xs_B) if len(xs_B) > 1 else 1


@serve.deployment
class ModelInstance:
  """A replica of F or of a parity model, batching its queued requests.

  Args:
    model_factory: builds `fn(x_B) -> y_BC` (a `Served` factory).
    example_B: an input to compile the model on.
    max_batch: most rows in one call.
    batch_slo_s: the compute time a call should stay within (AIMD row cap);
      None: always up to `max_batch`.
    batch_wait_s: how long a batch waits for more requests (0: takes what
      is queued).
  """

  def __init__(self, model_factory, example_B, max_batch: int,
               batch_slo_s: Optional[float] = None, batch_wait_s: float = 0.0):
    self._fn = _batching.padded(model_factory())
    for size in _batching.buckets(max_batch):
      self._fn(_batching.pad(example_B[:1], size))
    self._sizer = _batching.sizer(max_batch, batch_slo_s)
    self.__call__.set_max_batch_size(self._sizer.rows())
    self.__call__.set_batch_wait_timeout_s(batch_wait_s)

  @serve.batch(batch_size_fn=_rows)
  async def __call__(self, xs_B):
    return self.predict(xs_B)

  def predict(self, xs_B) -> list:
    """The outputs of each input, from one call on all their rows."""
    tic = time.perf_counter()
    x_B, ends = _batching.join(xs_B)
    ys_B = _batching.split(self._fn(x_B), ends)
    self._sizer.observe(int(ends[-1]), time.perf_counter() - tic)
    self.__call__.set_max_batch_size(self._sizer.rows())
    return ys_B


class _HandlePool:
  """A frontend pool over a deployment handle."""

  def __init__(self, handle):
    self._handle = handle

  def submit(self, x_B) -> asyncio.Future:
    return asyncio.ensure_future(self._call(x_B))

  async def _call(self, x_B):
    return await self._handle.remote(x_B)


@serve.deployment
class CodingFrontend:
  """The ingress: checks HTTP requests and serves them through a Frontend."""

  def __init__(self, base, parities, served, group_timeout_s, deadline_s,
               max_batch):
    self._served = served
    self._frontend = _frontend.Frontend(
        _HandlePool(base), served.default_output,
        code=served.code if parities else None,
        parity_pools=[_HandlePool(p) for p in parities],
        group_timeout_s=group_timeout_s, deadline_s=deadline_s,
        clock=time.perf_counter)  # Ray's uvloop clock ticks in ms.
    self._endpoint = _http.Endpoint(
        self._predict, served.input_shape, served.input_dtype,
        lambda: dict(self._frontend.counts), max_batch=max_batch)
    self._max_batch = max_batch
    self._start = None

  async def _predict(self, x_B):
    if self._start is None:  # Compiles every batch bucket up to max_batch.
      self._start = asyncio.ensure_future(
          self._frontend.start(self._served.input_shape, self._max_batch))
    await self._start
    return await self._frontend.predict(self._served.preprocess(x_B))

  async def __call__(self, request: requests.Request):
    try:
      self._endpoint.check_length(request.method,
                                  request.headers.get("content-length"))
    except _http.HttpError as e:
      return responses.JSONResponse({"error": e.message},
                                    status_code=e.status)
    status, answer = await self._endpoint.handle(
        request.method, request.url.path,
        request.headers.get("content-type", ""), await request.body())
    return responses.JSONResponse(answer, status_code=status)


def application(served, *, num_base: int, num_parity: int,
                group_timeout_s: Optional[float] = None,
                deadline_s: Optional[float] = None, max_batch: int = 64,
                batch_slo_s: Optional[float] = None, batch_wait_s: float = 0.0,
                num_cpus: float = 0.25) -> serve.Application:
  """The coded serving application (`num_parity=0`: no coding).

  Args:
    served: a `jaxcc.serving.Served` system (r = 1 when coded).
    num_base: replicas of F.
    num_parity: replicas of the parity model.
    group_timeout_s: frontend group timeout.
    deadline_s: frontend deadline for the default prediction.
    max_batch: most examples in one HTTP request, and most rows in one
      call of a replica (queued requests are batched up to it).
    batch_slo_s: the compute time a replica's call should stay within: its
      row cap then follows AIMD up to `max_batch` (None: always `max_batch`).
    batch_wait_s: how long a replica's batch waits for more requests.
    num_cpus: CPUs reserved per replica; fractional so that every replica
      fits on a small machine.
  """
  if num_parity and served.code.r != 1:
    raise ValueError("the Ray backend deploys one parity model (r = 1)")
  options = {"ray_actor_options": {"num_cpus": num_cpus}}
  # Room for one batch in progress and the next one queued.
  replica = dict(options, max_ongoing_requests=2 * max_batch)
  example_B = served.preprocess(
      np.zeros((1,) + tuple(served.input_shape), served.input_dtype))
  batching = (example_B, max_batch, batch_slo_s, batch_wait_s)
  base = ModelInstance.options(name="base", num_replicas=num_base,
                               **replica).bind(served.base, *batching)
  parities = [ModelInstance.options(name="parity", num_replicas=num_parity,
                                    **replica).bind(served.parities[0],
                                                    *batching)
              ] if num_parity else []
  return CodingFrontend.options(**options).bind(
      base, parities, served, group_timeout_s, deadline_s, max_batch)


def run(app: serve.Application, port: int = 8000,
        num_cpus: Optional[int] = None, host: str = "127.0.0.1") -> str:
  """Starts Ray (if needed) and Serve on `host`:`port`; returns the URL.

  Returns once every replica is ready. Stop with `shutdown()`. The default
  host takes local clients only (there is no authentication).
  """
  if not ray.is_initialized():
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))  # Replicas import jaxcc from here.
    ray.init(num_cpus=num_cpus, include_dashboard=False,
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
  serve.start(http_options={"host": host, "port": port})
  serve.run(app, name="jaxcc", route_prefix="/")
  return f"http://{host}:{port}"


def shutdown() -> None:
  serve.shutdown()
  ray.shutdown()
