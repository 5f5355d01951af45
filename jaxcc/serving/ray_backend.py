"""The Ray Serve backend: the same frontend over a (possibly remote) cluster.

F and each parity model are Ray Serve deployments whose replicas are the
model instances; the coding frontend is the ingress deployment, reached over
HTTP with the same endpoints and checks as the local server (see
`jaxcc.serving.Endpoint`). Ray's router balances requests over replicas; a
failed replica call counts as a failure and is rebuilt or defaulted like a
crashed local instance. Needs `ray[serve]`.

  app = ray_backend.application(served, num_base=2, num_parity=1)
  ray_backend.run(app, port=8000)  # then jaxcc.serving.Client(url)
"""

import asyncio
import os
import time
from typing import Optional

import ray
from ray import serve
from starlette import requests
from starlette import responses

from jaxcc.serving import _frontend
from jaxcc.serving import _http


@serve.deployment
class ModelInstance:
  """A replica of F or of a parity model."""

  def __init__(self, model_factory):
    self._fn = model_factory()

  def __call__(self, x_B):
    return self._fn(x_B)


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
                num_cpus: float = 0.25) -> serve.Application:
  """The coded serving application (`num_parity=0`: no coding).

  Args:
    served: a `jaxcc.serving.Served` system (r = 1 when coded).
    num_base: replicas of F.
    num_parity: replicas of the parity model.
    group_timeout_s: frontend group timeout.
    deadline_s: frontend deadline for the default prediction.
    max_batch: most examples in one HTTP request.
    num_cpus: CPUs reserved per replica; fractional so that every replica
      fits on a small machine.
  """
  if num_parity and served.code.r != 1:
    raise ValueError("the Ray backend deploys one parity model (r = 1)")
  options = {"ray_actor_options": {"num_cpus": num_cpus}}
  base = ModelInstance.options(name="base", num_replicas=num_base,
                               **options).bind(served.base)
  parities = [ModelInstance.options(name="parity", num_replicas=num_parity,
                                    **options).bind(served.parities[0])
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
