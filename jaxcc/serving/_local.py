"""The local backend: model instances as worker processes on this machine.

Each instance is a Python process (`jaxcc.serving._worker`) that builds its
model from a factory, compiles it on the CPU (one thread) for the batch sizes
it will see and answers requests over a socket pair. An instance can hold
several models (F and its parity models, for the "adaptive" mode): a request
then names its model (`_bench.ModelRequest`), a bare input being for the
first. The frontend's side of each socket is an asyncio stream, so no call
ever blocks the event loop: not a request to a hung worker, not the model
sent to a starting one.

A pool restarts an instance `faults.restart_s` after its process dies (or
after it was killed for missing `max_missed` deadlines in a row), retrying
with exponential back-off whatever goes wrong, and can kill instances at
Poisson times (`faults.crash_rate`) to inject crashes. Deaths, restarts and
failed restarts are logged (rate-limited) and counted in `stats()`.
"""

import asyncio
import functools
import logging
import os
import pickle
import socket
import subprocess
import sys
from typing import Optional

import numpy as np

from jaxcc.serving import _batching
from jaxcc.serving import _bench
from jaxcc.serving import _faults
from jaxcc.serving import _logs
from jaxcc.serving import _pool
from jaxcc.serving import _worker

_log = _logs.Limited(logging.getLogger(__name__))
_WORKER_ENV = {"JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1"}
_WORKER_MAIN = ("import sys; from jaxcc.serving import _worker; "
                "_worker.serve_fd(int(sys.argv[1]))")


class WorkerInstance:
  """One model instance: a worker process and the stream to it.

  Start one with `await WorkerInstance.launch(...)`.
  """

  def __init__(self, process, reader, writer, num_models=1):
    self._process = process
    self.num_models = num_models
    self._reader, self._writer = reader, writer
    self._pending = {}
    self._next_id = 0
    self.alive = True
    self.exited = asyncio.get_running_loop().create_future()
    self._reading = None

  @classmethod
  async def launch(cls, setup: bytes, timeout_s: float,
                   num_models: int = 1) -> "WorkerInstance":
    """Spawns a worker, sends it `setup` and waits until it is ready.

    Args:
      setup: the framed `(factories, example_B, batch sizes)` message.
      timeout_s: how long the worker may take to build and compile.
      num_models: how many factories `setup` holds.
    """
    parent, child = socket.socketpair()
    process = None
    try:
      with child:  # Forked off the event loop: a big process forks slowly.
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-c", _WORKER_MAIN, str(child.fileno())],
            pass_fds=[child.fileno()], env=_worker_env())
      reader, writer = await asyncio.open_connection(sock=parent)
    except BaseException:
      parent.close()
      if process is not None:
        process.kill()
        await asyncio.to_thread(process.wait)
      raise
    instance = cls(process, reader, writer, num_models)
    writer.write(setup)  # Buffered: the loop sends it as the worker reads.
    try:
      ready = await asyncio.wait_for(_read_message(reader), timeout_s)
      if ready != _worker.READY:
        raise _pool.InstanceFailed(f"worker sent {ready!r}, not ready")
    except BaseException:
      await instance.stop()
      raise
    instance._reading = asyncio.create_task(instance._read_replies())
    return instance

  @property
  def pid(self) -> int:
    return self._process.pid

  def call(self, x_B, delay_s: float) -> asyncio.Future:
    """`y_BC` of the first model, or of the one a `ModelRequest` names."""
    future = asyncio.get_running_loop().create_future()
    model = 0
    if isinstance(x_B, _bench.ModelRequest):
      x_B, model = x_B.x_B, x_B.model
    if not self.alive:
      future.set_exception(_pool.InstanceFailed("instance is not running"))
      return future
    if not 0 <= model < self.num_models:
      future.set_exception(ValueError(
          f"a request for model {model}: worker {self.pid} holds models 0 "
          f"to {self.num_models - 1}"))
      return future
    self._next_id += 1
    self._pending[self._next_id] = future
    message = (self._next_id, x_B, delay_s) + ((model,) if model else ())
    self._writer.write(_worker.frame(message))
    return future

  def kill(self) -> None:
    """Kills the process (SIGKILL, works on a stopped one too)."""
    if self._process.poll() is None:
      self._process.kill()

  async def stop(self) -> None:
    """Kills the process, fails what it held and reaps it."""
    self.kill()
    if self._reading is not None:
      await asyncio.gather(self._reading, return_exceptions=True)
    self._on_exit()
    await asyncio.to_thread(self._process.wait)

  async def _read_replies(self):
    try:
      while True:
        request_id, y_BC = await _read_message(self._reader)
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
          future.set_result(y_BC)
    except (asyncio.IncompleteReadError, ConnectionError):
      pass  # The process died.
    except Exception as e:  # pylint: disable=broad-except
      _log.error("reply", "bad reply from worker %d, killing it: %r",
                 self.pid, e)
      self.kill()
    finally:
      self._on_exit()

  def _on_exit(self):
    """The process is gone (or going): fail what it held."""
    if not self.alive:
      return
    self.alive = False
    self._writer.close()
    for future in self._pending.values():
      if not future.done():
        future.set_exception(_pool.InstanceFailed(
            f"instance process {self.pid} died"))
    self._pending.clear()
    self.exited.set_result(None)


class LocalPool(_pool.SharedQueuePool):
  """Worker-process instances behind a shared queue, restarted on a crash.

  Create with `await LocalPool.create(...)`; stop with `await pool.close()`.

  Args:
    instances: started instances, one per slot.
    spawn: `async () -> instance`, starts a replacement.
    faults: faults to inject once `begin_faults` is called.
    intervals: slow intervals per instance (`schedule`).
    seed: seed of the injected delays, drops and crashes.
    rpc_timeout_s: a response not back by then is lost.
    max_in_flight: most unanswered calls one instance holds.
    max_missed: calls in a row past their timeout after which the worker is
      killed and replaced; at most `max_in_flight`.
    max_backoff_s: longest wait between two failed restarts.
    max_rows: most rows in one call to a worker (`SharedQueuePool`).
    batch_slo_s: a call's service-time objective: each worker's row cap
      then follows AIMD up to `max_rows` (`SharedQueuePool`); None: off.
  """

  def __init__(self, instances, spawn, *, faults=_faults.Faults(),
               intervals=None, seed=0, rpc_timeout_s=1.0, max_in_flight=2,
               max_missed=2, max_backoff_s=30.0, max_rows=1,
               batch_slo_s=None):
    if intervals is None:
      intervals = [np.zeros((0, 2))] * len(instances)
    super().__init__(instances,
                     injector=_faults.Injector(faults, intervals, seed),
                     rpc_timeout_s=rpc_timeout_s,
                     max_in_flight=max_in_flight, max_missed=max_missed,
                     max_rows=max_rows, batch_slo_s=batch_slo_s)
    self._spawn = spawn
    self._faults, self._seed = faults, seed
    self._max_backoff_s = max_backoff_s
    self.deaths = self.restarts = self.failed_restarts = 0
    self._tasks = [asyncio.create_task(self._supervise(slot))
                   for slot in range(len(instances))]

  @classmethod
  async def create(cls, model_factory, example_B, num_instances: int, *,
                   faults: _faults.Faults = _faults.Faults(), intervals=None,
                   seed: int = 0, rpc_timeout_s: Optional[float] = 1.0,
                   max_in_flight: int = 2, max_missed: Optional[int] = 2,
                   max_batch: int = 1, batch_slo_s: Optional[float] = None,
                   start_timeout_s: float = 120.0):
    """Starts `num_instances` workers of `model_factory`.

    Args:
      model_factory: a factory from `jaxcc.serving` (e.g. `Served.base`), or
        a tuple of them: each worker then holds every model, a request names
        its model by its index (`_bench.ModelRequest`; a bare input is for
        the first), and the pool sends one request per call (it batches by
        example shape, not by model).
      example_B: an input batch to compile the model on.
      num_instances: number of worker processes.
      faults: faults to inject once `begin_faults` is called.
      intervals: slow intervals per instance (`schedule`); None: none.
      seed: seed of the injected delays, drops and crashes.
      rpc_timeout_s: a response not back by then counts as lost.
      max_in_flight: most unanswered calls one worker holds.
      max_missed: calls in a row past their timeout after which a worker is
        killed and replaced (None: never); at most `max_in_flight`.
      max_batch: the largest query batch; workers compile every bucket up to
        it (for every model) before they take requests, and a pool of one
        model batches queued queries into calls of up to that many rows.
      batch_slo_s: a call's service-time objective for the AIMD row cap
        (`SharedQueuePool`); None: calls take up to `max_batch` rows.
      start_timeout_s: how long a worker may take to become ready.
    """
    factories = (model_factory if isinstance(model_factory, tuple)
                 else (model_factory,))
    setup = _worker.frame((factories, np.asarray(example_B),
                           _batching.buckets(max_batch)))
    spawn = functools.partial(WorkerInstance.launch, setup, start_timeout_s,
                              len(factories))
    started = await asyncio.gather(*(spawn() for _ in range(num_instances)),
                                   return_exceptions=True)
    errors = [s for s in started if isinstance(s, BaseException)]
    if errors:
      await asyncio.gather(*(s.stop() for s in started
                             if not isinstance(s, BaseException)))
      raise errors[0]
    return cls(started, spawn, faults=faults, intervals=intervals, seed=seed,
               rpc_timeout_s=rpc_timeout_s, max_in_flight=max_in_flight,
               max_missed=max_missed,
               max_rows=max_batch if len(factories) == 1 else 1,
               batch_slo_s=batch_slo_s)

  def begin_faults(self, t0: float, horizon_s: float) -> None:
    """Also kills instances at the Poisson times of `faults.crash_rate`."""
    super().begin_faults(t0, horizon_s)
    crashes = _faults.crash_times(self._faults, len(self.instances),
                                  horizon_s, self._seed)
    self._tasks += [asyncio.create_task(self._crash_at(slot, t0, times))
                    for slot, times in enumerate(crashes) if len(times)]

  def kill(self, slot: int) -> None:
    self.instances[slot].kill()

  def stats(self) -> dict:
    return dict(super().stats(), deaths=self.deaths, restarts=self.restarts,
                failed_restarts=self.failed_restarts)

  async def close(self) -> None:
    for task in self._tasks:
      task.cancel()
    await asyncio.gather(*self._tasks, return_exceptions=True)
    await asyncio.gather(*(i.stop() for i in self.instances),
                         return_exceptions=True)

  def _unresponsive(self, index):
    super()._unresponsive(index)
    self.instances[index].kill()  # Its supervisor replaces it.

  async def _supervise(self, slot):
    """Replaces the instance of `slot` whenever its process dies.

    Everything that can fail (reaping, spawning) is retried inside
    `_restart`, so this loop only ends when the pool closes.
    """
    while True:
      dead = self.instances[slot]
      await asyncio.shield(dead.exited)
      self.deaths += 1
      _log.warning("death", "instance %d (pid %d) died; restarting it in "
                   "%.1f s", slot, dead.pid, self._faults.restart_s)
      self.replace(slot, await self._restart(slot, dead))

  async def _restart(self, slot, dead):
    """Reaps `dead`, then starts a new instance, with exponential back-off."""
    try:
      await dead.stop()
    except Exception as e:  # pylint: disable=broad-except
      _log.error("reap", "reaping instance %d (pid %d) failed: %r", slot,
                 dead.pid, e)
    delay_s = self._faults.restart_s
    while True:
      await asyncio.sleep(delay_s)
      try:
        instance = await self._spawn()
      except Exception as e:  # pylint: disable=broad-except
        self.failed_restarts += 1
        delay_s = min(max(2 * delay_s, 0.1), self._max_backoff_s)
        _log.error("restart", "restart of instance %d failed (%r); retrying "
                   "in %.1f s", slot, e, delay_s)
        continue
      self.restarts += 1
      _log.info("restarted", "instance %d restarted as pid %d", slot,
                instance.pid)
      return instance

  async def _crash_at(self, slot, t0, times):
    loop = asyncio.get_running_loop()
    for t in times:
      await asyncio.sleep(max(0.0, t0 + t - loop.time()))
      self.kill(slot)


async def _read_message(reader):
  (length,) = _worker.HEADER.unpack(
      await reader.readexactly(_worker.HEADER.size))
  return pickle.loads(await reader.readexactly(length))


def _worker_env():
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  return dict(os.environ, **_WORKER_ENV, PYTHONPATH=os.pathsep.join(
      filter(None, [root, os.environ.get("PYTHONPATH")])))
